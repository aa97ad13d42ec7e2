//! Loading, overriding and validating whole files.

use super::*;
use crate::wire::subject::SubjectStrategy;

const MINIMAL: &str = r#"
    tables = ["shop.orders"]
    [source]
    host = "127.0.0.1"
    user = "sluice"
    password = "hunter2"
    server_id = 5401
    state_dir = "/tmp/state"
    [kafka]
    brokers = "127.0.0.1:9092"
    topic_prefix = "sluice"
    [registry]
    url = "http://127.0.0.1:8081"
    [elasticsearch]
    url = "http://127.0.0.1:9200"
"#;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml(text, env, Path::new("sluice.toml"), Role::All)
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../sluice.example.toml");
    let c = load(text, &[]).unwrap();
    assert_eq!(c.tables.len(), 2);
    assert_eq!(c.exclude_tables.len(), 1);
    assert_eq!(c.columns.hash_salt.expose(), "change-me");
}

#[test]
fn an_embedded_registry_is_one_line_and_registry_auth_is_checked() {
    let base = include_str!("../../sluice.example.toml").replace(
        "url = \"http://127.0.0.1:8081\"",
        "serve = \"127.0.0.1:18555\"\nsubject_strategy = \"topic_record\"",
    );
    let base = base.replace("subject_strategy = \"topic\"\n", "");
    let c = load(&base, &[]).unwrap();
    assert_eq!(c.registry.url.as_str(), "http://127.0.0.1:18555");
    assert_eq!(c.registry.subject_strategy, SubjectStrategy::TopicRecord);
    let m = load(&base, &[("SLUICE_REGISTRY__PASSWORD", "pw")])
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("`registry.password` is set without `registry.username`"),
        "{m}"
    );
    let m = load(&base, &[("SLUICE_REGISTRY__CA_FILE", "/nonexistent.pem")])
        .unwrap_err()
        .to_string();
    assert!(m.contains("`registry.ca_file`"), "{m}");
}

#[test]
fn table_and_column_patterns() {
    let p = TablePattern::parse("shop.ord?r*").unwrap();
    assert!(p.matches(&TableId::new("shop", "orders")));
    assert!(p.matches(&TableId::new("shop", "ordxr")));
    assert!(!p.matches(&TableId::new("shop", "customers")));
    assert!(!p.matches(&TableId::new("shopx", "orders")));
    assert_eq!(p.exact(), None);
    assert_eq!(
        TablePattern::parse("a.b").unwrap().exact(),
        Some(TableId::new("a", "b"))
    );
    assert!(glob("*a*b*", "xxaxxbxx") && !glob("*a*b", "xxaxxbxx"));
    let c = ColumnPattern::parse("*.*.phone").unwrap();
    assert!(c.matches(&TableId::new("a", "b"), "phone"));
    assert!(!c.matches(&TableId::new("a", "b"), "phones"));
    assert!(ColumnPattern::parse("a.b").is_none());
    let e = load(
        &MINIMAL.replace(
            "[source]",
            "exclude_tables = [\"x\"]\n[columns]\nhash = [\"a.b.c\"]\nmask = [\"a.b\"]\n[source]",
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "`exclude_tables`: \"x\"",
        "columns.hash_salt",
        "`columns.mask`: \"a.b\"",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn environment_overrides_file_values() {
    let c = load(
        MINIMAL,
        &[
            ("SLUICE_SOURCE__PASSWORD", "123456"),
            ("SLUICE_SOURCE__PORT", "13306"),
            ("SLUICE_LOADER__BATCH_SIZE", "7"),
            ("SLUICE_STACK_DIR", "/ignored"),
        ],
    )
    .unwrap();
    let s = c.source.unwrap();
    assert_eq!(s.password.expose(), "123456");
    assert_eq!(s.port.get(), 13306);
    assert_eq!(c.loader.batch_size.get(), 7);
    // What TOML would rewrite (exponent, hex, digit separators, trailing zeros, a comment, a
    // date) stays the string it is.
    for raw in [
        "1e3",
        "0x10",
        "1_000",
        "0.10",
        "1.0",
        "+5",
        "12 # x",
        "1979-05-27",
    ] {
        let c = load(
            MINIMAL,
            &[
                ("SLUICE_SOURCE__PASSWORD", raw),
                ("SLUICE_KAFKA__PROPERTIES__SASL.PASSWORD", raw),
            ],
        )
        .unwrap();
        assert_eq!(c.source.unwrap().password.expose(), raw);
        assert_eq!(c.kafka.properties["sasl.password"], raw);
    }
    let m = load(MINIMAL, &[("SLUICE_LOADER__BATCH_SIZE", "1_000")])
        .unwrap_err()
        .to_string();
    assert!(m.contains("`loader.batch_size`"), "{m}");
}

#[test]
fn unknown_keys_are_named_with_their_origin() {
    let e = load(&MINIMAL.replace("server_id", "serverid"), &[]).unwrap_err();
    assert!(e.to_string().contains("`source.serverid`"), "{e}");
    let e = load(MINIMAL, &[("SLUICE_SOURCE__PASWORD", "x")]).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("source.pasword") && m.contains("SLUICE_SOURCE__PASWORD"),
        "{m}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = MINIMAL
        .replace("http://127.0.0.1:8081", "127.0.0.1:8081")
        .replace("127.0.0.1:9092", "localhost")
        .replace(r#"["shop.orders"]"#, r#"["orders", "a.b"]"#);
    let m = load(
        &text,
        &[
            ("SLUICE_LOADER__FETCH_WAIT_MS", "0"),
            ("SLUICE_SOURCE__SNAPSHOT_PARALLELISM", "0"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("`registry.url`"), "{m}");
    assert!(m.contains("`kafka.brokers`"), "{m}");
    assert!(m.contains("\"orders\" is not of the form"), "{m}");
    assert!(
        m.contains("`loader.fetch_wait_ms` must be at least 1"),
        "{m}"
    );
    assert!(
        m.contains("`source.snapshot_parallelism` must be at least 1"),
        "{m}"
    );
}

#[test]
fn secrets_never_print() {
    let text = format!(
        "{MINIMAL}[kafka.properties]\n\"ssl.key.password\" = \"hunter3\"\n\
         \"sasl.oauthbearer.assertion.private.key.passphrase\" = \"hunter6\"\n\
         \"sasl.oauthbearer.client.secret\" = \"hunter4\"\n"
    );
    // A numeric password from the environment is a number to TOML: taken as its string.
    let c = load(
        &text,
        &[("SLUICE_KAFKA__PROPERTIES__SASL.PASSWORD", "271828")],
    )
    .unwrap();
    assert_eq!(c.kafka.properties["sasl.password"], "271828");
    let printed = format!("{c:?}");
    for secret in ["hunter2", "hunter3", "hunter4", "271828", "hunter6"] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    assert!(printed.contains("\"sasl.password\": \"***\""), "{printed}");
    // A value of the wrong type is named by its key, never echoed.
    let m = load(
        &text,
        &[("SLUICE_KAFKA__PROPERTIES__SASL.PASSWORD", "[271828]")],
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("`kafka.properties.sasl.password`"), "{m}");
    assert!(m.contains("expected a string, number or boolean"), "{m}");
    assert!(!m.contains("271828"), "{m}");
    for (text, env) in [
        (
            format!("{MINIMAL}[kafka.properties]\nsasl.password = \"271828\"\n"),
            None,
        ),
        (
            MINIMAL.to_string(),
            Some(("SLUICE_KAFKA__PROPERTIES__SASL__PASSWORD", "271828")),
        ),
    ] {
        let m = load(&text, env.as_slice()).unwrap_err().to_string();
        assert!(
            m.contains("`kafka.properties.sasl`: is a table holding `password`: quote"),
            "{m}"
        );
        assert!(!m.contains("271828"), "{m}");
    }
}

#[test]
fn kafka_properties_take_any_scalar_and_refuse_what_sluice_sets() {
    let text = format!(
        "{MINIMAL}[kafka.producer_properties]\n\"linger.ms\" = 5\n\"enable.gapless.guarantee\" \
         = true\n"
    );
    let c = load(&text, &[]).unwrap();
    assert_eq!(c.kafka.producer_properties["linger.ms"], "5");
    assert_eq!(
        c.kafka.producer_properties["enable.gapless.guarantee"],
        "true"
    );
    let text = format!(
        "{MINIMAL}[kafka.properties]\n\"fetch.wait.max.ms\" = \"0\"\n\"group.id\" = \"g\"\n\
         [kafka.producer_properties]\n\"request.required.acks\" = \"1\"\n\
         \"sasl.username\" = \"u\"\n\
         \"compression.type\" = \"lz4\"\n\"compression.codec\" = \"zstd\"\n\
         [kafka.consumer_properties]\n\"auto.offset.reset\" = \"latest\"\n\
         \"auto.commit.enable\" = \"true\"\n\"topic.auto.offset.reset\" = \"latest\"\n\
         \"security.protocol\" = \"SASL_SSL\"\n"
    );
    let m = load(&text, &[]).unwrap_err().to_string();
    for expected in [
        "`kafka.properties.\"fetch.wait.max.ms\"`: remove it and set `loader.fetch_wait_ms`",
        "`kafka.properties.\"group.id\"`: remove it and set `loader.group_id` instead",
        "`kafka.producer_properties.\"request.required.acks\"`: remove it: Sluice sets it",
        "`kafka.producer_properties.\"sasl.username\"`: move it to `[kafka.properties]`",
        "`kafka.consumer_properties.\"auto.offset.reset\"`: remove it: Sluice sets it",
        "`kafka.consumer_properties.\"auto.commit.enable\"`: remove it: Sluice sets it",
        "`[kafka.consumer_properties]`: \"auto.offset.reset\" and \"topic.auto.offset.reset\" name \
         the same librdkafka property; keep one",
        "`kafka.consumer_properties.\"topic.auto.offset.reset\"`: remove it: Sluice sets it",
        "`[kafka.producer_properties]`: \"compression.codec\" and \"compression.type\" name the \
         same librdkafka property; keep one",
        "`kafka.consumer_properties.\"security.protocol\"`: move it to `[kafka.properties]`",
    ] {
        assert!(m.contains(expected), "{expected} missing from: {m}");
    }
}

#[test]
fn roles_need_their_sections() {
    let no_es = MINIMAL.split("[elasticsearch]").next().unwrap();
    let env = std::iter::empty();
    assert!(Config::from_toml(no_es, env, Path::new("x"), Role::Source).is_ok());
    let m = load(no_es, &[]).unwrap_err().to_string();
    assert!(m.contains("`[elasticsearch]` is missing"), "{m}");
}
