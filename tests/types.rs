//! The type matrix: a table per type family with edge values, copied by the snapshot and then
//! changed in the stream; every field of every row in the index must equal what `SELECT`
//! returns for it.

mod common;

use std::time::Duration;

use common::families::FAMILIES;
use common::*;

const START: Duration = Duration::from_secs(60);
const CATCH_UP: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_family_snapshots_and_streams_exactly() {
    let names: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    let (mut conn, setup) = fresh("it_types", &names).await;
    // Zero dates and invalid ENUM values need a permissive session.
    exec(&mut conn, &["SET SESSION sql_mode = ''"]).await;
    for (table, definition, rows, _) in FAMILIES {
        exec(
            &mut conn,
            &[
                &format!("CREATE TABLE {table} ({definition}) DEFAULT CHARSET utf8mb4"),
                &format!("INSERT INTO {table} VALUES {rows}"),
            ],
        )
        .await;
    }
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", START);
    for (_, _, _, changes) in FAMILIES {
        exec(&mut conn, changes).await;
    }
    for table in &names {
        setup.assert_index_matches(&mut conn, table, CATCH_UP).await;
    }
    // The snapshot's schemas (information_schema) and the stream's (TABLE_MAP) agree, so
    // every subject has one version.
    for table in &names {
        let subject = format!("{}-value", setup.topic(table));
        assert_eq!(subject_versions(&subject).await, vec![1], "{subject}");
    }
    assert!(sluice.terminate(Duration::from_secs(30)).success());
}
