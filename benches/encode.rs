//! Avro encoding of one change of the demo `orders` table (9 columns, an update: before and
//! after images): Sluice's direct writer against apache-avro's generic datum writer, the path
//! schema_registry_converter's own encoder takes (build a `types::Value`, validate, write).
//! And the loader's side: the same change as consumed (key and value in Confluent's wire
//! format) into a `_bulk` body (action line with id and version, document JSON with
//! `_sluice`), per document on one core.
//!
//! `cargo bench --bench encode`; figures in docs/benchmarks.md.

use std::hint::black_box;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use criterion::{Criterion, Throughput, criterion_main};
use sluice::encode::{avro, schema};
use sluice::load::bulk::{self, Action};
use sluice::load::document::Options;
use sluice::load::plan::{KeyPlan, ValuePlan};
use sluice::model::{
    Change, Column, ColumnType, Decimal, Op, Origin, SourceInfo, TableId, TableSchema, Value,
    Version,
};

fn orders() -> TableSchema {
    let int = |bytes, unsigned| ColumnType::Integer { bytes, unsigned };
    let columns = [
        ("id", int(8, false), false),
        ("customer_id", int(4, true), false),
        ("status", ColumnType::Text, false),
        (
            "total",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
            false,
        ),
        ("quantity", int(2, false), false),
        ("note", ColumnType::Text, true),
        ("ordered_on", ColumnType::Date, false),
        ("created_at", ColumnType::DateTime { fsp: 6 }, false),
        ("updated_at", ColumnType::Timestamp { fsp: 6 }, false),
    ];
    TableSchema {
        id: TableId::new("shop", "orders"),
        columns: columns
            .into_iter()
            .map(|(n, t, null)| Column::new(n, t, null))
            .collect(),
        key: vec![0],
    }
}

fn row(status: &str) -> Vec<Value> {
    vec![
        Value::Int(123_456),
        Value::Int(42),
        Value::String(status.into()),
        Value::Decimal(Decimal::from_unscaled(123_456, 2)),
        Value::Int(3),
        Value::String("order 123456 – gift wrap ✓".into()),
        Value::Date(19_876),
        Value::DateTime(1_717_171_717_123_456),
        Value::Timestamp(1_717_171_717_654_321),
    ]
}

fn change() -> Change {
    Change {
        table: Arc::new(orders()),
        op: Op::Update,
        before: Some(row("paid")),
        after: Some(row("shipped")),
        version: Version::at(7, 123_456),
        source: SourceInfo {
            origin: Arc::new(Origin {
                gtid: Some("0-1-4242".into()),
                ..Origin::snapshot("binlog.000007")
            }),
            pos: 123_400,
            row: 0,
            server_id: 1,
            ts_ms: 1_717_171_717_000,
            snapshot: false,
            query: None,
            transaction: None,
        },
    }
}

fn bench(c: &mut Criterion) {
    let change = change();
    let avsc = schema::table_avro("bench", &change.table).unwrap();
    let envelope = Schema::parse(&avsc.value).unwrap();

    let constants = avro::EnvelopeConstants::new("bench", &change.table.id);
    let mut direct = Vec::new();
    avro::write_envelope(&mut direct, &change, &constants, 0).unwrap();
    // The same record as apache-avro's generic value; its encoding must be byte-identical.
    let reader = GenericDatumReader::builder(&envelope).build().unwrap();
    let generic = reader.read_value(&mut direct.as_slice()).unwrap();
    let writer = GenericDatumWriter::builder(&envelope).build().unwrap();
    assert_eq!(writer.write_value_to_vec(generic.clone()).unwrap(), direct);

    let mut g = c.benchmark_group("encode_orders_update");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sluice_direct", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            avro::write_envelope(&mut out, black_box(&change), &constants, 0).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("apache_avro_datum", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            black_box(
                writer
                    .write_value(&mut out, black_box(generic.clone()))
                    .unwrap(),
            )
        })
    });
    g.finish();

    // The loader: the record's key and value bytes -> index action -> NDJSON bulk body,
    // 1,000 at a time, through the plans compiled for their schemas.
    let mut loader = Loader::new(&change);
    let mut g = c.benchmark_group("bulk_body_orders");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("record_to_bulk_1000", |b| {
        b.iter(|| black_box(loader.bulk_1000()))
    });
    g.finish();
}

/// The loader's side of the bench: one change as consumed, and the plans of its schemas.
struct Loader {
    key: Vec<u8>,
    value: Vec<u8>,
    key_plan: KeyPlan,
    value_plan: ValuePlan,
    doc: Vec<u8>,
}

impl Loader {
    fn new(change: &Change) -> Loader {
        let avsc = schema::table_avro("bench", &change.table).unwrap();
        let (mut key, mut value) = (Vec::new(), Vec::new());
        avro::write_key(&mut key, &change.table, change.after.as_ref().unwrap()).unwrap();
        let constants = avro::EnvelopeConstants::new("bench", &change.table.id);
        avro::write_envelope(&mut value, change, &constants, 0).unwrap();
        Loader {
            key,
            value,
            key_plan: KeyPlan::new(&Schema::parse(&avsc.key).unwrap()),
            value_plan: ValuePlan::new(&Schema::parse(&avsc.value).unwrap(), &Options::default()),
            doc: Vec::with_capacity(512),
        }
    }

    /// A bulk body of 1,000 documents; its length.
    fn bulk_1000(&mut self) -> usize {
        let mut body = bulk::Body::default();
        for _ in 0..1000 {
            let id = self.key_plan.id(black_box(&self.key)).unwrap();
            self.doc.clear();
            let read = self
                .value_plan
                .read(black_box(&self.value), &mut self.doc)
                .unwrap();
            body.push(Action::Index {
                index: &read.route.index,
                id: &id,
                version: read.version,
                doc: &self.doc,
            });
        }
        body.bytes().len()
    }
}

/// `SLUICE_BENCH_BULK_ROUNDS=n`: build n bodies of 1,000 and exit, without criterion, for
/// instruction counts (`valgrind --tool=callgrind`; two runs with different n give the cost
/// per document by difference).
fn rounds_from_env() {
    let Ok(n) = std::env::var("SLUICE_BENCH_BULK_ROUNDS") else {
        return;
    };
    let mut loader = Loader::new(&change());
    for _ in 0..n.parse::<usize>().expect("a number of rounds") {
        black_box(loader.bulk_1000());
    }
    std::process::exit(0);
}

fn benches() {
    rounds_from_env();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
