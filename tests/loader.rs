//! The loader on the real stack: poison records to the dead-letter topic, metadata fields,
//! https nodes with credentials, an index-server outage, replays, mapping changes, two
//! loaders in one group, index name templates and aliases.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A record as read back.
#[derive(Clone)]
struct Read {
    partition: i32,
    headers: HashMap<String, String>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// Every record of `topic` (all partitions, from the start), once `n` are there.
fn read_topic(topic: &str, n: usize) -> Vec<Read> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack().brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let (mut out, deadline) = (Vec::new(), Instant::now() + PATIENCE);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} records in {topic}",
            out.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_string(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Read {
            partition: m.partition(),
            headers,
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        });
    }
    out
}

/// The documents of `index` once `ready` holds for them (within 120 s); on timeout the panic
/// shows them and `sluice`'s log.
async fn docs_when(
    index: &str,
    sluice: &Sluice,
    ready: impl Fn(&BTreeMap<String, serde_json::Value>) -> bool,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let docs = index_docs(index).await;
        if ready(&docs) {
            return docs;
        }
        assert!(Instant::now() < deadline, "{docs:?}\n{}", sluice.output());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_and_the_partition_goes_on() {
    let (mut conn, setup) = fresh("it_dlq", &["t"]).await;
    exec(
        &mut conn,
        &["CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20) NOT NULL)"],
    )
    .await;
    // An index made by hand whose mapping also reads `s` as a number (a multi-field, which
    // Sluice's own mapping leaves alone): 'abc' is refused for good.
    let index = format!("{}.t", setup.db);
    let mapping = serde_json::json!({"mappings": {"properties": {"s": {"type": "text",
        "fields": {"keyword": {"type": "keyword", "ignore_above": 256},
                   "num": {"type": "integer"}}}}}});
    let created = reqwest::Client::new()
        .put(format!("{}/{index}", stack().es_url))
        .json(&mapping)
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &["INSERT INTO t VALUES (1, '12'), (2, 'abc'), (3, '34')"],
    )
    .await;
    // Bytes that are not Sluice's Avro, and a Confluent frame with a schema id no registry has.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack().brokers)
        .create()
        .unwrap();
    let topic = setup.topic("t");
    for payload in [&b"not avro"[..], &[0, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3][..]] {
        producer
            .send(
                FutureRecord::<(), [u8]>::to(&topic)
                    .payload(payload)
                    .partition(0),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // Later records of every partition are still applied.
    exec(&mut conn, &["INSERT INTO t VALUES (4, '56'), (5, '78')"]).await;
    let want: BTreeSet<String> = ["1", "3", "4", "5"].map(String::from).into();
    docs_when(&index, &sluice, |docs| {
        docs.keys().cloned().collect::<BTreeSet<_>>() == want
    })
    .await;
    let dlq = format!("{}.dlq", setup.prefix);
    let mut letters = read_topic(&dlq, 3);
    letters.sort_by_key(|r| r.headers["sluice.errors.class"].clone());
    let classes: Vec<&str> = letters
        .iter()
        .map(|r| r.headers["sluice.errors.class"].as_str())
        .collect();
    assert_eq!(classes, ["decode", "decode", "rejected"]);
    for Read { headers, .. } in &letters {
        assert_eq!(headers["sluice.errors.topic"], topic);
        assert!(headers["sluice.errors.offset"].parse::<i64>().is_ok());
        assert!(headers["sluice.errors.partition"].parse::<i32>().is_ok());
    }
    let (rejected, payload) = (&letters[2].headers, letters[2].payload.as_ref().unwrap());
    assert!(
        rejected["sluice.errors.message"].contains("400"),
        "{rejected:?}"
    );
    // The refused record travels as it was read: Confluent framing, Avro inside.
    assert_eq!(payload[0], 0);
    let decode: Vec<&String> = letters[..2]
        .iter()
        .map(|r| &r.headers["sluice.errors.message"])
        .collect();
    assert!(
        decode.iter().any(|m| m.contains("magic byte")),
        "{decode:?}"
    );
    assert!(decode.iter().any(|m| m.contains("404")), "{decode:?}");
    assert!(letters[..2].iter().all(|r| r.key.is_none()));
    sluice.wait_for_log("dead_letters_total=3", PATIENCE);
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_fields_show_version_time_and_operation_when_asked() {
    let (mut conn, setup) = fresh("it_meta", &["m"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE m (id INT PRIMARY KEY, v INT)",
            "INSERT INTO m VALUES (1, 1), (2, 2)",
        ],
    )
    .await;
    setup.write_config("metadata_fields = true\n");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["UPDATE m SET v = 5 WHERE id = 2"]).await;
    let index = format!("{}.m", setup.db);
    let docs = docs_when(&index, &sluice, |docs| {
        docs.get("2").is_some_and(|d| d["v"] == 5) && docs.contains_key("1")
    })
    .await;
    let meta = |id: &str| docs[id]["_sluice"].clone();
    assert_eq!(meta("1")["op"], "r");
    assert_eq!(meta("2")["op"], "u");
    assert!(meta("2")["ts_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(meta("2")["version"].as_u64() > meta("1")["version"].as_u64());
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_nodes_with_a_private_ca_an_api_key_and_gzip_bodies() {
    let (mut conn, setup) = fresh("it_es_tls", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(200))",
            "INSERT INTO t SELECT seq, REPEAT('x', 150) FROM seq_1_to_400",
        ],
    )
    .await;
    let key = "c2x1aWNlOnNlY3JldA=="; // base64("sluice:secret")
    let proxy = TlsProxy::start(
        setup.dir.path(),
        &stack().es_url,
        Some(&format!("ApiKey {key}")),
    );
    // Two nodes, one of them down: requests that meet it are retried on the other.
    let down = free_port();
    let nodes = |api_key: &str| {
        format!(
            "url = [\"https://localhost:{}\", \"http://127.0.0.1:{down}\"]\napi_key = \
             \"{api_key}\"\nca_file = \"{}\"\ntimeout_ms = 5000\ngzip_min_bytes = 1024",
            proxy.port,
            proxy.cert.display()
        )
    };
    let plain = format!("url = \"{}\"", stack().es_url);
    let config = setup.dir.path().join("sluice.toml");
    let good = setup.config_text("").replace(&plain, &nodes(key));
    std::fs::write(&config, &good).unwrap();
    let mut source = setup.start("source");
    source.wait_for_log("snapshot stored", PATIENCE);
    assert!(source.terminate(PATIENCE).success());
    // A wrong key is a refusal, not an outage: the loader stops and says so.
    let wrong = setup.config_text("").replace(&plain, &nodes("d3Jvbmc="));
    std::fs::write(&config, wrong).unwrap();
    let out = run_failing_as(&config, "loader");
    assert!(out.contains("401"), "{out}");
    std::fs::write(&config, &good).unwrap();
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["UPDATE t SET s = 'changed' WHERE id % 3 = 0"]).await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    assert!(
        !sluice.output().contains(key),
        "the API key reached the log"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

/// The sum of the group's committed offsets over `topic`'s partitions.
fn committed(group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack().brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    offsets
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_server_outage_is_waited_out_without_loss_or_early_commits() {
    let (mut conn, mut setup) = fresh("it_outage", &["t"]).await;
    exec(
        &mut conn,
        &["CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT NOT NULL)"],
    )
    .await;
    // Its own index server, so stopping it stalls no other test.
    let es = PrivateOsmem::start();
    setup.es_url = es.url.clone();
    let text = setup
        .config_text("")
        .replace("[loader]", "timeout_ms = 2000\n[loader]");
    std::fs::write(setup.dir.path().join("sluice.toml"), text).unwrap();
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    // Load: one insert or update every 20 ms, through the whole outage.
    let load = {
        let db = setup.db.clone();
        Writer::spawn(|writes| async move {
            let mut conn = admin_pool().get_conn().await.unwrap();
            let mut n = 0u64;
            while writes.go_on() {
                let sql = if n % 3 == 2 {
                    format!("UPDATE `{db}`.t SET v = v + 1 WHERE id = {}", n / 2)
                } else {
                    format!("INSERT INTO `{db}`.t (v) VALUES ({n})")
                };
                mysql_async::prelude::Queryable::query_drop(&mut conn, sql)
                    .await
                    .unwrap();
                writes.count();
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let index = format!("{}.t", setup.db);
    eventually("a first document", async || {
        match index_count_at(&es.url, &index).await {
            0 => Err(sluice.output()),
            _ => Ok(()),
        }
    })
    .await;
    es.signal(libc::SIGSTOP);
    let (group, topic) = (format!("{}-loader", setup.prefix), setup.topic("t"));
    // The loader meets the outage (a bulk times out after 2 s)...
    let retrying = "index server unavailable; retrying the batch";
    sluice.wait_for_log(retrying, PATIENCE);
    // ...and a bulk that settled just before the stop has committed: the offsets rest.
    let before = settled_commits(&group, &topic).await;
    // Through 25 s more of outage and 100 more writes, nothing is committed.
    let outage = Instant::now();
    load.wait_more(100).await;
    tokio::time::sleep(Duration::from_secs(25).saturating_sub(outage.elapsed())).await;
    assert_eq!(
        committed(&group, &topic),
        before,
        "offsets advanced while the index server was stopped"
    );
    es.signal(libc::SIGCONT);
    load.wait_more(100).await;
    load.stop().await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    // Committed just after the documents are written.
    wait_committed(&group, &topic, before + 1, PATIENCE, &sluice);
    assert!(sluice.terminate(PATIENCE).success());
}

/// The group's committed offsets over `topic` once they stopped moving: the same sum read
/// over 3 s (commits follow a settled bulk within milliseconds).
async fn settled_commits(group: &str, topic: &str) -> i64 {
    let mut last = committed(group, topic);
    eventually("the committed offsets to rest", async || {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = committed(group, topic);
        let rested = now == last;
        last = now;
        if rested {
            Ok(now)
        } else {
            Err(format!("{now} committed, still moving"))
        }
    })
    .await
}

/// Waits until the group's committed offsets over `topic` sum to at least `want`; panics
/// with the loader's log after `timeout`.
fn wait_committed(group: &str, topic: &str, want: i64, timeout: Duration, sluice: &Sluice) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = committed(group, topic);
        if now >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} of {want} offsets of {topic} committed after {timeout:?}; log:\n{}",
            sluice.output()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Appends `records` to `topic` in a random order, each to its own partition.
async fn replay_shuffled(topic: &str, mut records: Vec<Read>) {
    fastrand::shuffle(&mut records);
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack().brokers)
        .create()
        .unwrap();
    for read in &records {
        let mut r = FutureRecord::<[u8], [u8]>::to(topic).partition(read.partition);
        if let Some(k) = &read.key {
            r = r.key(k);
        }
        if let Some(p) = &read.payload {
            r = r.payload(p);
        }
        producer.send(r, Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_reordered_records_leave_the_index_equal_to_the_table() {
    let (mut conn, setup) = fresh("it_replay", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO t SELECT seq, 0 FROM seq_1_to_200",
        ],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    // Several versions per key: updates, deletes, keys deleted and inserted again.
    exec(
        &mut conn,
        &[
            "UPDATE t SET v = v + 1",
            "UPDATE t SET v = v + 1 WHERE id % 2 = 0",
            "DELETE FROM t WHERE id % 5 = 0",
            "INSERT INTO t SELECT seq, 7 FROM seq_1_to_200 WHERE seq % 10 = 0",
            "UPDATE t SET id = id + 1000 WHERE id % 7 = 0",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    let (topic, group) = (setup.topic("t"), format!("{}-loader", setup.prefix));
    let total = topic_records(&topic);
    let all = read_topic(&topic, total as usize);
    // Everything again in a random order, read by the running loader...
    replay_shuffled(&topic, all.clone()).await;
    let caught_up = |want: i64, sluice: &Sluice| {
        wait_committed(&group, &topic, want, PATIENCE, sluice);
    };
    caught_up(2 * total, &sluice);
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    // ...and once more across a restart of the loader.
    assert!(sluice.terminate(PATIENCE).success());
    replay_shuffled(&topic, all).await;
    let mut sluice = setup.start("loader");
    caught_up(3 * total, &sluice);
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_columns_extend_the_mapping_and_a_type_change_holds_only_its_table() {
    let (mut conn, setup) = fresh("it_mapping", &["o", "g"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE o (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE g (id INT PRIMARY KEY, n VARCHAR(10))",
            "INSERT INTO o VALUES (1, 1)",
            "INSERT INTO g VALUES (1, '5')",
        ],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let catch_up = PATIENCE;
    setup.assert_index_matches(&mut conn, "g", catch_up).await;
    // An added column: the index learns its mapping before the first document with it.
    exec(
        &mut conn,
        &[
            "ALTER TABLE o ADD COLUMN price DECIMAL(10,2) NULL",
            "INSERT INTO o VALUES (2, 2, 9.99)",
            // Documents show the column once their row changes after the ALTER.
            "UPDATE o SET v = 10 WHERE id = 1",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "o", catch_up).await;
    let index = format!("{}.o", setup.db);
    let mapping = index_mapping(&index).await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["price"]["type"], "keyword",
        "{mapping}"
    );
    // A type the index cannot take (the registry told to accept it): g is held, o goes on.
    let subject = format!("{}-value", setup.topic("g"));
    let none = reqwest::Client::new()
        .put(format!("{}/config/{subject}", stack().registry_url))
        .json(&serde_json::json!({"compatibility": "NONE"}))
        .send()
        .await
        .unwrap();
    assert!(none.status().is_success());
    exec(
        &mut conn,
        &["ALTER TABLE g MODIFY n INT", "INSERT INTO g VALUES (2, 7)"],
    )
    .await;
    sluice.wait_for_log("table held", catch_up);
    exec(&mut conn, &["INSERT INTO o VALUES (3, 3, 1.50)"]).await;
    setup.assert_index_matches(&mut conn, "o", catch_up).await;
    let g: BTreeSet<String> = index_docs(&format!("{}.g", setup.db))
        .await
        .into_keys()
        .collect();
    assert_eq!(g, ["1".to_string()].into());
    let out = sluice.output();
    assert!(
        out.contains("cannot take its table's new schema") && out.contains("reindex"),
        "{out}"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

/// A batch can read a record of an older schema after one of a newer (partitions interleave;
/// a dropped column brings the older schema back): the index must still map every field any
/// of them adds before a document carries it, or the server guesses (a binary column taken
/// for text can never change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_schemas_maps_the_fields_of_each() {
    let (mut conn, setup) = fresh("it_mixed", &["t"]).await;
    let rows = 60;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
            &format!("INSERT INTO t SELECT seq, seq FROM seq_1_to_{rows}"),
        ],
    )
    .await;
    let mut source = setup.start("source");
    source.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "ALTER TABLE t ADD COLUMN b VARBINARY(8) NULL",
            "UPDATE t SET b = UNHEX('00FF'), v = v + 1",
            "ALTER TABLE t DROP COLUMN b",
            "UPDATE t SET v = v + 1",
        ],
    )
    .await;
    let topic = setup.topic("t");
    eventually(
        "the source to publish every record",
        async || match topic_records(&topic) {
            n if n == 3 * rows => Ok(()),
            n => Err(format!("{n} of {} records", 3 * rows)),
        },
    )
    .await;
    assert!(source.terminate(PATIENCE).success());
    // Started now, the loader reads the three runs of records in one batch.
    let mut loader = setup.start("loader");
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    let index = format!("{}.t", setup.db);
    let mapping = index_mapping(&index).await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["b"]["type"], "binary",
        "{mapping}"
    );
    assert!(loader.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loaders_share_the_partitions_and_a_stopped_ones_move_to_the_other() {
    let (mut conn, setup) = fresh("it_two_loaders", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO t SELECT seq, 0 FROM seq_1_to_300",
        ],
    )
    .await;
    let mut source = setup.start("source");
    source.wait_for_log("snapshot stored", PATIENCE);
    // Two members of one group; a dead one is noticed in 6 s. Dynamic membership: tansu
    // never settles a group of static members.
    let loader = |id: &str| {
        let extra = "instance_id = \"\"\n[kafka.consumer_properties]\n\"session.timeout.ms\" = \"6000\"\n\
             \"heartbeat.interval.ms\" = \"1000\"\n";
        let config = setup.dir.path().join(format!("loader-{id}.toml"));
        std::fs::write(&config, setup.config_text(extra)).unwrap();
        let log = setup.dir.path().join(format!("loader-{id}.log"));
        Sluice::start(&config, "loader", &log)
    };
    let (mut a, mut b) = (loader("a"), loader("b"));
    let deadline = Instant::now() + PATIENCE;
    // Shared: each holds some of the 3 partitions.
    while !(a.output().contains("partitions assigned")
        && b.output().contains("partitions assigned")
        && assigned(&a.output()) + assigned(&b.output()) == 3)
    {
        assert!(
            Instant::now() < deadline,
            "a:\n{}\nb:\n{}",
            a.output(),
            b.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let index = format!("{}.t", setup.db);
    let deadline = Instant::now() + PATIENCE;
    while index_count(&index).await < 300 {
        assert!(
            Instant::now() < deadline,
            "a:\n{}\nb:\n{}",
            a.output(),
            b.output()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // b stops (drains, commits, leaves the group); changes keep coming; a takes b's
    // partitions over. (A SIGKILLed member is never expired by tansu, so its partitions
    // would stay with nobody there. Kafka expires it after session.timeout.ms.)
    assert!(b.terminate(PATIENCE).success());
    exec(
        &mut conn,
        &[
            "UPDATE t SET v = v + 1",
            "DELETE FROM t WHERE id % 4 = 0",
            "INSERT INTO t SELECT seq, 9 FROM seq_301_to_400",
        ],
    )
    .await;
    let deadline = Instant::now() + PATIENCE;
    while assigned(&a.output()) < 3 {
        assert!(
            Instant::now() < deadline,
            "a never took b's partitions:\n{}",
            a.output()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    setup
        .assert_index_matches(&mut conn, "t", Duration::from_secs(180))
        .await;
    assert!(a.terminate(PATIENCE).success());
    assert!(source.terminate(PATIENCE).success());
}

/// How many partitions the last "partitions assigned" line of a loader's log lists.
fn assigned(log: &str) -> usize {
    log.lines()
        .rfind(|l| l.contains("partitions assigned"))
        .map(|l| l.matches('/').count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_names_follow_the_template_and_readers_use_the_alias() {
    let (mut conn, setup) = fresh("it_alias", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
            "INSERT INTO t VALUES (1, 1), (2, 2)",
        ],
    )
    .await;
    setup.write_config("index = \"{db}.{table}-v1\"\nalias = \"{db}.{table}\"\n");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["UPDATE t SET v = 5 WHERE id = 2"]).await;
    // The harness reads `<db>.t`: here, the alias.
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    let alias = format!("{}.t", setup.db);
    let aliases: serde_json::Value = reqwest::get(format!("{}/_alias/{alias}", stack().es_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        aliases[format!("{alias}-v1")]["aliases"][&alias].is_object(),
        "{aliases}"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_options_index_flags_json_and_decimals_as_asked() {
    let (mut conn, setup) = fresh("it_map_opts", &["x"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE x (id INT PRIMARY KEY, flag TINYINT(1), doc JSON, price DECIMAL(10,2))",
            "INSERT INTO x VALUES (1, 1, '{\"a\": {\"b\": 1}}', 12.34), \
             (2, 0, '{\"c\": [1, 2]}', 3.50), (3, NULL, NULL, NULL)",
        ],
    )
    .await;
    setup.write_config(&format!(
        "[loader.mapping]\ndecimals = \"scaled_float\"\njson = \"object\"\n\
         booleans = [\"{db}.x.flag\"]\njson_columns = [\"{db}.x.doc\"]\n",
        db = setup.db
    ));
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let index = format!("{}.x", setup.db);
    let docs = docs_when(&index, &sluice, |docs| docs.len() == 3).await;
    assert_eq!(docs["1"]["flag"], true);
    assert_eq!(docs["2"]["flag"], false);
    // MariaDB's JSON is LONGTEXT: `json_columns` names it.
    assert_eq!(docs["1"]["doc"], serde_json::json!({"a": {"b": 1}}));
    assert_eq!(docs["3"]["doc"], serde_json::Value::Null);
    // The decimal is a number to the index: a range query finds it.
    let found: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/{index}/_search", stack().es_url))
        .json(&serde_json::json!({"query": {"range": {"price": {"gte": 10}}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hits = found["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["_id"], "1");
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_index_pauses_only_its_own_partitions_and_the_others_go_on() {
    let (mut conn, setup) = fresh("it_lanes", &["x", "y"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE x (id INT PRIMARY KEY, v INT NOT NULL)",
            "CREATE TABLE y (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO x SELECT seq, 0 FROM seq_1_to_200",
            "INSERT INTO y SELECT seq, 0 FROM seq_1_to_200",
        ],
    )
    .await;
    // Bulk writes to x's index get 429 while this file names it.
    let refuse = setup.dir.path().join("refuse");
    std::fs::write(&refuse, format!("{}.x", setup.db)).unwrap();
    let proxy = TlsProxy::start_with(setup.dir.path(), &stack().es_url, None, Some(&refuse));
    // Six lanes: each of the two tables' three partitions has its own.
    setup.write_config_via(&proxy, "", "max_in_flight = 6\n");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let group = format!("{}-loader", setup.prefix);
    let (x, y) = (setup.topic("x"), setup.topic("y"));
    // y is applied and keeps being applied while every bulk of x is refused.
    setup.assert_index_matches(&mut conn, "y", PATIENCE).await;
    exec(&mut conn, &["UPDATE x SET v = 1", "UPDATE y SET v = 1"]).await;
    setup.assert_index_matches(&mut conn, "y", PATIENCE).await;
    // y's offsets are committed just after its documents are written.
    wait_committed(&group, &y, 400, PATIENCE, &sluice);
    assert_eq!(index_count(&format!("{}.x", setup.db)).await, 0);
    assert_eq!(committed(&group, &x), 0, "x's offsets moved while refused");
    let out = sluice.output();
    assert!(
        out.contains("index server unavailable; retrying the batch") && out.contains("429"),
        "{out}"
    );
    // The index takes x again: its partitions resume and catch up.
    std::fs::remove_file(&refuse).unwrap();
    setup.assert_index_matches(&mut conn, "x", PATIENCE).await;
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_reaches_the_index_server_and_never_the_log() {
    let (mut conn, setup) = fresh("it_es_basic", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
            "INSERT INTO t SELECT seq, seq FROM seq_1_to_50",
        ],
    )
    .await;
    let proxy = TlsProxy::start(
        setup.dir.path(),
        &stack().es_url,
        Some("Basic c2x1aWNlOnMzY3JldC1wdw=="), // base64("sluice:s3cret-pw")
    );
    setup.write_config_via(
        &proxy,
        "username = \"sluice\"\npassword = \"s3cret-pw\"\n",
        "",
    );
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["UPDATE t SET v = 0 WHERE id % 2 = 0"]).await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    assert!(
        !sluice.output().contains("s3cret-pw"),
        "the password reached the log"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_started_before_its_index_server_waits_for_it() {
    let (mut conn, mut setup) = fresh("it_late_index", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO t SELECT seq, seq FROM seq_1_to_50",
        ],
    )
    .await;
    let port = free_port();
    setup.es_url = format!("http://127.0.0.1:{port}");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("index server unavailable", PATIENCE);
    let _es = PrivateOsmem::start_at(port);
    exec(
        &mut conn,
        &["INSERT INTO t SELECT seq, seq FROM seq_51_to_80"],
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    assert!(sluice.terminate(PATIENCE).success());
}
