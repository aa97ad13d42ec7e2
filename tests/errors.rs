//! Bad input gets a clear error and a non-zero exit, never a panic or a silent skip.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::*;

const EXIT: Duration = Duration::from_secs(60);

/// Runs `sluice run` on `config` to its exit; returns its output, asserting a failed exit
/// without a panic.
fn run_failing(config: &std::path::Path) -> String {
    let (status, out) = run_to_exit(&["run", "--config", config.to_str().unwrap()], EXIT);
    assert!(!status.success(), "sluice exited 0:\n{out}");
    assert!(!out.contains("panicked"), "sluice panicked:\n{out}");
    out
}

#[test]
fn config_errors_name_the_key_and_list_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");

    std::fs::write(
        &path,
        "tables = [\"shop.orders\"]\n[source]\nhost = \"h\"\nuser = \"u\"\npasword = \"x\"\n",
    )
    .unwrap();
    let out = run_failing(&path);
    assert!(
        out.contains("source.pasword") || out.contains("pasword"),
        "{out}"
    );

    std::fs::write(
        &path,
        r#"tables = ["orders"]
[source]
host = "h"
user = "u"
password = "topsecret"
server_id = 77
state_dir = "/tmp/x"
[kafka]
brokers = "b:9092"
topic_prefix = "p"
[registry]
url = "not a url"
[elasticsearch]
url = "http://localhost:9200"
"#,
    )
    .unwrap();
    let out = run_failing(&path);
    assert!(
        out.contains("orders"),
        "the table name problem is listed:\n{out}"
    );
    assert!(
        out.contains("registry.url"),
        "the URL problem is listed:\n{out}"
    );
    assert!(
        !out.contains("topsecret"),
        "a secret reached the output:\n{out}"
    );

    let (status, out) = run_to_exit(&["run", "--config", "/nonexistent/sluice.toml"], EXIT);
    assert!(!status.success());
    assert!(out.contains("/nonexistent/sluice.toml"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_column_type_at_startup_names_table_column_and_type() {
    let pool = admin_pool();
    let mut conn = pool.get_conn().await.unwrap();
    let db = unique("it_err_type");
    let setup = Setup::new(&mut conn, &db, &["t"]).await;
    exec(
        &mut conn,
        &[
            &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, y YEAR)"),
            &format!("INSERT INTO `{db}`.t VALUES (1, 2024)"),
        ],
    )
    .await;
    let out = run_failing(&setup.write_config(""));
    assert!(out.contains(&format!("{db}.t")), "{out}");
    assert!(out.contains("column `y` has type YEAR"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_column_type_mid_stream_stops_with_the_column_named() {
    let pool = admin_pool();
    let mut conn = pool.get_conn().await.unwrap();
    let db = unique("it_err_alter");
    let setup = Setup::new(&mut conn, &db, &["t"]).await;
    exec(
        &mut conn,
        &[&format!(
            "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, n INT)"
        )],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", Duration::from_secs(60));
    exec(
        &mut conn,
        &[
            &format!("INSERT INTO `{db}`.t VALUES (1, 1)"),
            &format!("ALTER TABLE `{db}`.t ADD COLUMN f FLOAT"),
            &format!("INSERT INTO `{db}`.t VALUES (2, 2, 1.5)"),
        ],
    )
    .await;
    let status = sluice.wait_exit(EXIT);
    let out = sluice.output();
    assert!(!status.success(), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(out.contains("column `f` has type FLOAT"), "{out}");
    assert!(out.contains(&format!("{db}.t")), "{out}");
    // The row before the change reached Kafka (a loader started afterwards indexes it), and
    // the row with the undecodable column was never invented.
    let mut loader = setup.start("loader");
    let index = format!("{db}.t");
    let deadline = std::time::Instant::now() + EXIT;
    let docs = loop {
        let docs = index_docs(&index).await;
        if docs.contains_key("1") || std::time::Instant::now() > deadline {
            break docs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        docs.contains_key("1"),
        "the row before the change was lost: {docs:?}\n{}",
        loader.output()
    );
    assert!(
        !docs.contains_key("2"),
        "a row with an undecodable column was invented: {docs:?}"
    );
    assert!(loader.terminate(EXIT).success(), "{}", loader.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_and_missing_privileges_are_named() {
    let pool = admin_pool();
    let mut conn = pool.get_conn().await.unwrap();
    let db = unique("it_err_missing");
    let setup = Setup::new(&mut conn, &db, &["nope"]).await;
    let out = run_failing(&setup.write_config(""));
    assert!(
        out.contains(&format!("table {db}.nope does not exist")),
        "{out}"
    );

    // A user that may only SELECT cannot read the binlog.
    let user = unique("ro");
    exec(
        &mut conn,
        &[
            &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"),
            &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"),
            &format!("GRANT SELECT ON *.* TO '{user}'@'%'"),
        ],
    )
    .await;
    let s = stack();
    let config = setup.config_text("").replace(
        &format!(
            "user = \"{}\"\npassword = \"{}\"",
            s.cdc_user, s.cdc_password
        ),
        &format!("user = \"{user}\"\npassword = \"pw\""),
    );
    let config = config.replace(&format!("{db}.nope"), &format!("{db}.t"));
    let path = setup.dir.path().join("readonly.toml");
    std::fs::write(&path, config).unwrap();
    let out = run_failing(&path);
    assert!(out.contains("REPLICATION SLAVE"), "{out}");
    assert!(out.contains("REPLICATION CLIENT"), "{out}");
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_says_what_to_check_and_hides_the_password() {
    let pool = admin_pool();
    let mut conn = pool.get_conn().await.unwrap();
    let db = unique("it_err_auth");
    let setup = Setup::new(&mut conn, &db, &["t"]).await;
    exec(
        &mut conn,
        &[&format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")],
    )
    .await;
    let s = stack();
    let config = setup.config_text("").replace(
        &format!("password = \"{}\"", s.cdc_password),
        "password = \"wrong-Secret-42\"",
    );
    let path = setup.dir.path().join("badpw.toml");
    std::fs::write(&path, config).unwrap();
    let out = run_failing(&path);
    assert!(out.contains("cannot connect"), "{out}");
    assert!(
        !out.contains("wrong-Secret-42"),
        "the password reached the output:\n{out}"
    );
}
