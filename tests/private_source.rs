//! The source role against private servers, whose settings and binlogs a test may change:
//! resuming by position and by GTID, rows over 16 MB, TLS.

mod common;

use std::time::Duration;

use common::private::{PrivateServer, ROW_CDC, private_config};
use common::*;

/// Inserts rows with the given ids into `d.t`.
fn insert(server: &PrivateServer, ids: std::ops::RangeInclusive<u32>) {
    let values: Vec<String> = ids.map(|i| format!("({i})")).collect();
    let out = server.sql(&format!("INSERT INTO d.t VALUES {}", values.join(", ")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the source until it has published `records` records to `topic`, then stops it.
fn run_until(config: &std::path::Path, log: &std::path::Path, topic: &str, records: i64) -> String {
    let mut sluice = Sluice::start(config, "source", log);
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let deadline = std::time::Instant::now() + PATIENCE;
    while topic_records(topic) < records {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} holds {} of {records} records:\n{}",
            topic_records(topic),
            sluice.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A clean stop stores the last acknowledged commit.
    let status = sluice.terminate(PATIENCE);
    let out = sluice.output();
    assert!(status.success(), "{out}");
    out
}

#[test]
fn resume_by_gtid_survives_purged_files_that_resume_by_position_cannot() {
    let server = PrivateServer::start(&ROW_CDC);
    let dir = tempfile::tempdir().unwrap();
    let config = private_config(dir.path(), server.port);
    let text = std::fs::read_to_string(&config).unwrap();
    let topic = format!("{}.d.t", config_prefix(&config));
    let log = |n: &str| dir.path().join(format!("{n}.log"));

    // First run: snapshot of the empty table, then three streamed rows.
    insert(&server, 1..=3);
    run_until(&config, &log("first"), &topic, 3);
    insert(&server, 4..=5);
    let out = run_until(&config, &log("second"), &topic, 5);
    assert!(out.contains("resume_by=Position"), "{out}");

    // The file holding the stored position goes away; two more rows land in the next file.
    assert!(server.sql("FLUSH BINARY LOGS").status.success());
    server.purge_to("binlog.000002");
    insert(&server, 6..=7);
    let out = run_failing_as(&config, "source");
    assert!(out.contains("no longer has the binlog"), "{out}");

    // The same stored checkpoint, resumed by its GTID: nothing missing, nothing repeated.
    std::fs::write(
        &config,
        text.replace("[source]\n", "[source]\nresume_by = \"gtid\"\n"),
    )
    .unwrap();
    let out = run_until(&config, &log("gtid"), &topic, 7);
    assert!(out.contains("resume_by=Gtid"), "{out}");
    // The process has exited: the topic holds all it will.
    assert_eq!(topic_records(&topic), 7, "rows were published twice");
}

#[test]
fn rows_over_16_mb_stream_through() {
    let mut args = ROW_CDC.to_vec();
    args.push("--max-allowed-packet=128M");
    let server = PrivateServer::start(&args);
    let created = server.sql("CREATE TABLE d.big (id INT PRIMARY KEY, b LONGBLOB)");
    assert!(created.status.success());
    let dir = tempfile::tempdir().unwrap();
    let config = private_config(dir.path(), server.port);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("tables = [\"d.t\"]", "tables = [\"d.big\"]")
        + "[kafka.properties]\n\"message.max.bytes\" = \"134217728\"\n";
    std::fs::write(&config, &text).unwrap();
    let topic = format!("{}.d.big", config_prefix(&config));
    // 17 MB: more than one protocol packet, in one rows event.
    let insert = "INSERT INTO d.big VALUES (1, REPEAT('x', 17825792)), (2, 'small')";
    let mut sluice = Sluice::start(&config, "source", &dir.path().join("big.log"));
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let out = server.sql(insert);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while topic_records(&topic) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: {} records\n{}",
            topic_records(&topic),
            sluice.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(sluice.terminate(PATIENCE).success(), "{}", sluice.output());
}

/// Writes a CA and a server certificate for 127.0.0.1 signed by it into `dir`; returns the
/// CA file.
fn certificates(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca_key, ca) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &format!("{name}-server.key"),
        "-out",
        &format!("{name}-server.csr"),
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &format!("{name}-server.csr"),
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-extfile",
        "san.ext",
        "-out",
        &format!("{name}-server.pem"),
    ]);
    dir.join(ca)
}

#[test]
fn tls_connections_verify_the_server_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = certificates(certs.path(), "good");
    let other_ca = certificates(certs.path(), "other");
    let file = |n: &str| certs.path().join(n).display().to_string();
    let mut args = ROW_CDC.to_vec();
    let tls_args = [
        format!("--ssl-ca={}", ca.display()),
        format!("--ssl-cert={}", file("good-server.pem")),
        format!("--ssl-key={}", file("good-server.key")),
    ];
    args.extend(tls_args.iter().map(String::as_str));
    let server = PrivateServer::start(&args);
    let s = stack();
    let require = server.sql(&format!("ALTER USER '{}'@'%' REQUIRE SSL", s.cdc_user));
    assert!(
        require.status.success(),
        "{}",
        String::from_utf8_lossy(&require.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let config = private_config(dir.path(), server.port);
    let text = std::fs::read_to_string(&config).unwrap();
    let with = |tls: &str| {
        std::fs::write(
            &config,
            text.replace("[source]\n", &format!("[source]\n{tls}\n")),
        )
        .unwrap();
        config.to_str().unwrap().to_string()
    };
    let fails = |tls: &str| {
        let out = run_failing_as(std::path::Path::new(&with(tls)), "source");
        assert!(out.contains("cannot connect"), "{tls}: {out}");
    };
    // The user must use TLS; a CA that did not sign the server's certificate is refused.
    fails("");
    fails(&format!(
        "tls = \"verify_ca\"\ntls_ca_file = \"{}\"",
        other_ca.display()
    ));
    for tls in [
        format!("tls = \"verify_ca\"\ntls_ca_file = \"{}\"", ca.display()),
        format!(
            "tls = \"verify_identity\"\ntls_ca_file = \"{}\"",
            ca.display()
        ),
        "tls = \"required\"".to_string(),
    ] {
        let mut sluice = Sluice::start(
            std::path::Path::new(&with(&tls)),
            "source",
            &dir.path().join(format!("{}.log", unique("tls"))),
        );
        sluice.wait_for_log("streaming the binlog", PATIENCE);
        assert!(
            sluice.terminate(PATIENCE).success(),
            "{tls}: {}",
            sluice.output()
        );
    }
}
