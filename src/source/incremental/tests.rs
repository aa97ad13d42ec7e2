//! The stream and worker halves together, against a real position store.

use std::collections::HashMap;
use std::time::Instant;

use super::signal::{CLOSE, OPEN};
use super::*;
use crate::model::{
    Change, Checkpoint, Column, ColumnType, Op, Position, SourceEvent, SourceInfo, Value, Version,
};
use crate::positions::PositionStore;

fn signal_schema() -> Arc<TableSchema> {
    let text = |n: &str, null| Column::new(n, ColumnType::Text, null);
    Arc::new(TableSchema {
        id: TableId::new("sluice", "sluice_signal"),
        columns: vec![text("id", false), text("type", false), text("data", true)],
        key: vec![0],
    })
}

fn table() -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new("shop", "t"),
        columns: vec![
            Column::new(
                "id",
                ColumnType::Integer {
                    bytes: 4,
                    unsigned: false,
                },
                false,
            ),
            Column::new("v", ColumnType::Text, true),
        ],
        key: vec![0],
    })
}

fn change(
    table: &Arc<TableSchema>,
    op: Op,
    before: Option<Row>,
    after: Option<Row>,
    v: u32,
) -> Change {
    Change {
        table: table.clone(),
        op,
        before,
        after,
        version: Version::at(1, v),
        source: SourceInfo::at("binlog.000001", u64::from(v)),
    }
}

/// A state store and both halves, capturing `t`.
fn capturing(t: &TableSchema) -> (tempfile::TempDir, PositionStore, Windows, Worker) {
    let dir = tempfile::tempdir().unwrap();
    let state = PositionStore::open(dir.path()).unwrap();
    let cfg = crate::config::sections::source(
        "host = \"h\"\nuser = \"u\"\nserver_id = 1\nstate_dir = \"/x\"",
    );
    let worker = WorkerConfig {
        source: Arc::new(cfg),
        keys: HashMap::new(),
    };
    let (windows, w) = pair(signal_schema(), [t.id.clone()].into(), worker, Vec::new());
    (dir, state, windows, w)
}

fn row(id: i64, v: &str) -> Row {
    vec![Value::Int(id), Value::String(v.into())]
}

fn signal(kind: &str, data: &str, v: u32) -> Change {
    let s = signal_schema();
    let r = vec![
        Value::String("watermark-1".into()),
        Value::String(kind.into()),
        Value::String(data.into()),
    ];
    change(&s, Op::Update, None, Some(r), v)
}

fn changes_of(events: &[SourceEvent]) -> Vec<(Op, i64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Changes { changes, .. } => Some(changes),
            _ => None,
        })
        .flatten()
        .map(|c| {
            let r = c.after.as_ref().or(c.before.as_ref()).unwrap();
            let Value::Int(id) = r[0] else { panic!() };
            (c.op, id, c.version.get())
        })
        .collect()
}

#[tokio::test]
async fn keys_changed_inside_a_window_are_left_to_the_binlog() {
    let (_dir, state, mut windows, mut worker) = capturing(&table());
    let t = table();
    windows.active.insert(t.id.clone(), ("req".into(), None));
    // A change before the window is passed on and not noted.
    worker
        .send(ToStream::Announce {
            window: "w1".into(),
            table: t.id.clone(),
        })
        .unwrap();
    let before = windows
        .absorb(
            vec![change(
                &t,
                Op::Update,
                Some(row(1, "a")),
                Some(row(1, "b")),
                10,
            )],
            Instant::now(),
            &state,
        )
        .unwrap();
    assert_eq!(
        changes_of(&before),
        [(Op::Update, 1, Version::at(1, 10).get())]
    );
    windows
        .absorb(vec![signal(OPEN, "w1", 20)], Instant::now(), &state)
        .unwrap();
    // Inside: 2 updated, 3 deleted, 4 re-keyed to 9, 5 inserted.
    windows
        .absorb(
            vec![
                change(&t, Op::Update, Some(row(2, "a")), Some(row(2, "b")), 30),
                change(&t, Op::Delete, Some(row(3, "a")), None, 31),
                change(&t, Op::Update, Some(row(4, "a")), Some(row(9, "a")), 32),
                change(&t, Op::Create, None, Some(row(5, "n")), 33),
            ],
            Instant::now(),
            &state,
        )
        .unwrap();
    let chunk: Vec<Row> = [1, 2, 3, 4, 5, 6].iter().map(|&i| row(i, "s")).collect();
    let progress = WindowProgress {
        id: "req".into(),
        filter: None,
        last_key: vec![Value::Int(6)],
        rows: 6,
        windows: 1,
    };
    worker
        .send(ToStream::Chunk {
            window: "w1".into(),
            chunk: Chunk {
                schema: t.clone(),
                rows: Some(chunk),
                progress: progress.clone(),
                last: false,
            },
        })
        .unwrap();
    let at_close = windows
        .absorb(vec![signal(CLOSE, "w1", 40)], Instant::now(), &state)
        .unwrap();
    let h = Version::at(1, 40).get();
    assert_eq!(changes_of(&at_close), [(Op::Read, 1, h), (Op::Read, 6, h)]);
    assert!(matches!(
        at_close.last(),
        Some(SourceEvent::Checkpoint(Checkpoint::Window { progress: p, .. })) if *p == progress
    ));
    assert!(matches!(
        worker.from_stream.try_recv(),
        Ok(ToWorker::Closed(w)) if w == "w1"
    ));
    // After the window, nothing is noted and stale watermarks are ignored.
    let after = windows
        .absorb(
            vec![
                signal(OPEN, "old", 50),
                change(&t, Op::Delete, Some(row(1, "s")), None, 51),
                signal(CLOSE, "old", 52),
            ],
            Instant::now(),
            &state,
        )
        .unwrap();
    assert_eq!(
        changes_of(&after),
        [(Op::Delete, 1, Version::at(1, 51).get())]
    );
}

#[tokio::test]
async fn signals_request_captured_tables_once() {
    let (_dir, state, mut windows, mut worker) = capturing(&table());
    let t = table();
    let execute = |id: &str, data: &str| {
        let r = vec![
            Value::String(id.into()),
            Value::String(EXECUTE.into()),
            Value::String(data.into()),
        ];
        change(&signal_schema(), Op::Create, None, Some(r), 5)
    };
    let data = r#"{"data-collections": ["shop.t", "shop.other"], "type": "incremental",
        "additional-conditions": [{"data-collection": "shop.t", "filter": "id > 5"}]}"#;
    let out = windows
        .absorb(
            vec![
                execute("s1", data),
                execute("s2", data),
                execute("bad", "{not json"),
                execute(
                    "blocking",
                    r#"{"data-collections": ["shop.t"], "type": "blocking"}"#,
                ),
            ],
            Instant::now(),
            &state,
        )
        .unwrap();
    // s1 requests a copy of shop.t; s2 finds it running and restarts it for the rows both
    // want; shop.other is not captured, the others are bad.
    assert_eq!(out.len(), 2);
    let Ok(ToWorker::Copy(table, p)) = worker.from_stream.try_recv() else {
        panic!()
    };
    assert_eq!(table, t.id);
    assert_eq!(p.id, "s1/shop.t");
    assert_eq!(p.filter.as_deref(), Some("id > 5"));
    let Ok(ToWorker::Copy(table, p)) = worker.from_stream.try_recv() else {
        panic!()
    };
    assert_eq!(table, t.id);
    assert_eq!((p.id.as_str(), p.rows), ("s2/shop.t", 0));
    assert_eq!(p.filter.as_deref(), Some("(id > 5) OR (id > 5)"));
    assert!(worker.from_stream.try_recv().is_err());
    // Done and read again after a restart: not copied again.
    state
        .save(&[Checkpoint::WindowsDone {
            table: t.id.clone(),
            id: "s1/shop.t".into(),
            position: Position::new("binlog.000001", 4),
        }])
        .await
        .unwrap();
    windows.active.clear();
    let out = windows
        .absorb(vec![execute("s1", data)], Instant::now(), &state)
        .unwrap();
    assert!(out.is_empty());
    assert!(state.is_snapshotted(&t.id).unwrap());
}

#[test]
fn the_migration_creates_the_default_signal_table() {
    let migration = include_str!("../../../migrations/003_sluice_signal.sql");
    let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for statement in setup_statements(&TableId::new("sluice", "sluice_signal")) {
        assert!(
            normal(migration).contains(&normal(&statement)),
            "{statement}"
        );
    }
}
