//! The chaos suite: a seeded OLTP writer on three tables while faults hit every component and
//! every link at random, then `sluice verify` judges the index against the tables.
//!
//! The default is the short run `.ci/run` does. `scripts/chaos.sh` runs the long one; the
//! environment chooses: `SLUICE_CHAOS_SEED` (else random, printed), `SLUICE_CHAOS_ROWS`
//! (rows per table at the start), `SLUICE_CHAOS_FAULTS` (faults of each kind),
//! `SLUICE_CHAOS_MINUTES` (go on injecting until this long), `SLUICE_CHAOS_MAX_MINUTES` (stop
//! injecting after this long even if faults are left), `SLUICE_CHAOS_KINDS` (comma list,
//! default all), `SLUICE_CHAOS_DDL` (ADD COLUMN statements, each re-copying its table),
//! `SLUICE_CHAOS_RATE` (writer statements per second), `SLUICE_CHAOS_REPORT` (a file for the
//! Markdown report).

#[path = "../common/mod.rs"]
mod common;
mod faults;
mod report;
mod world;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faults::{Fault, KINDS, Kind};
use world::{DB, World};

/// How long the pipeline may take to come back after one fault.
const RECOVERY: Duration = Duration::from_secs(300);

struct Plan {
    seed: u64,
    rows: u64,
    faults_per_kind: usize,
    minutes: u64,
    max_minutes: u64,
    kinds: Vec<Kind>,
    ddl: usize,
    rate: u64,
    report: Option<String>,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |name: &str| std::env::var(format!("SLUICE_CHAOS_{name}")).ok();
        let num = |name: &str, default: u64| {
            var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("SLUICE_CHAOS_{name}={v} is not a number"))
            })
        };
        Plan {
            seed: num("SEED", fastrand::u64(..1_000_000)),
            rows: num("ROWS", 10_000),
            faults_per_kind: num("FAULTS", 2) as usize,
            minutes: num("MINUTES", 0),
            max_minutes: num("MAX_MINUTES", 0),
            kinds: var("KINDS").map_or(KINDS.to_vec(), |v| {
                v.split(',').map(|k| Kind::parse(k.trim())).collect()
            }),
            ddl: num("DDL", 2) as usize,
            rate: num("RATE", 50),
            report: var("REPORT"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_invented_under_random_faults() {
    let plan = Plan::from_env();
    println!(
        "chaos: seed {} (SLUICE_CHAOS_SEED={} reproduces the choices), {} rows per table, \
         {} faults of each of {}, {} DDL, writer {}/s, at least {} min",
        plan.seed,
        plan.seed,
        plan.rows,
        plan.faults_per_kind,
        plan.kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        plan.ddl,
        plan.rate,
        plan.minutes,
    );
    let started = Instant::now();
    // The initial snapshot is paced to last about 15 s, so faults land in it.
    let pace = (plan.rows * 3 / 15).max(1000);
    let world = tokio::task::spawn_blocking(move || World::start(plan.rows, pace))
        .await
        .unwrap();
    let pool = mysql_async::Pool::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(world.mysql.port)
            .user(Some("chaos"))
            .pass(Some("chaos"))
            .db_name(Some(DB)),
    );
    let tally = Arc::new(Mutex::new(writer::Tally::default()));
    let kept = tally.clone();
    let (seed, rows, rate) = (plan.seed, plan.rows, plan.rate);
    let writer = common::Writer::spawn(move |writes| async move {
        let t = writer::run(pool, seed ^ 0x5eed, rows, rate, writes).await;
        *kept.lock().unwrap() = t;
    });
    let (world, faults) = tokio::task::spawn_blocking(move || run_faults(world, &plan))
        .await
        .unwrap();
    writer.stop().await;
    let plan = Plan::from_env();
    let tally = *tally.lock().unwrap();

    // The judge: every fault healed, the writer stopped, the pipeline caught up.
    let (world, verdict) = tokio::task::spawn_blocking(move || {
        let mut world = world;
        world.beat(RECOVERY);
        let verdict = world.verify();
        (world, verdict)
    })
    .await
    .unwrap();
    let report = report::render(&plan, &faults, tally, started.elapsed(), &verdict);
    println!("{report}");
    if let Some(path) = &plan.report {
        std::fs::write(path, &report).unwrap();
    }
    assert_eq!(
        verdict.0,
        0,
        "sluice verify found the index different from the tables (seed {}):\n{}{}",
        plan.seed,
        verdict.1,
        world.log_tails()
    );
    let mut world = world;
    world.clean_up();
}

/// Injects the plan's faults, one at a time, each followed by the wait for recovery.
fn run_faults(mut world: World, plan: &Plan) -> (World, Vec<Fault>) {
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let mut left: Vec<(Kind, usize)> = plan
        .kinds
        .iter()
        .map(|&k| (k, plan.faults_per_kind))
        .collect();
    let mut faults = Vec::new();
    let take = |left: &mut Vec<(Kind, usize)>, kind: Kind| {
        if let Some(e) = left.iter_mut().find(|(k, _)| *k == kind) {
            e.1 = e.1.saturating_sub(1);
        }
    };
    let selected = |kind| plan.kinds.contains(&kind);
    let deadline = Instant::now() + Duration::from_secs(plan.minutes * 60);
    let cutoff =
        (plan.max_minutes > 0).then(|| Instant::now() + Duration::from_secs(plan.max_minutes * 60));
    let record = |faults: &mut Vec<Fault>, f: Fault| {
        println!(
            "chaos: fault {:>4} {:<24} {:<9} during {:<20} held {:>6} ms, recovered in {:>6} ms",
            faults.len() + 1,
            f.kind.name(),
            f.link.map_or(String::new(), |l| format!("{l:?}")),
            f.phase,
            f.held.as_millis(),
            f.recovery.as_millis()
        );
        faults.push(f);
    };

    // Kills during the initial snapshot.
    if world.wait_phase("initial snapshot", common::PATIENCE) {
        let mut early = Vec::new();
        for kind in [Kind::KillSource, Kind::KillLoader] {
            if selected(kind) && world.phase() == Some("initial snapshot") {
                std::thread::sleep(Duration::from_millis(rng.u64(500..2_000)));
                early.push(faults::inject(&mut world, kind, &mut rng));
                take(&mut left, kind);
                world.wait_phase("initial snapshot", Duration::from_secs(30));
            }
        }
        world.beat(RECOVERY);
        for mut f in early {
            f.recovery = f.ended.elapsed();
            record(&mut faults, f);
        }
    }
    world.beat(RECOVERY);

    let total: usize = left.iter().map(|(_, n)| n).sum();
    let mut ddl_at: Vec<usize> = (0..plan.ddl).map(|_| rng.usize(..total.max(1))).collect();
    ddl_at.sort_unstable();
    let mut columns = 0;
    let mut n = 0;
    loop {
        // Schema changes, each re-copying its table while a process is killed.
        while ddl_at.first() == Some(&n) {
            ddl_at.remove(0);
            columns += 1;
            let table = format!("t{}", rng.u32(1..=3));
            let out = world.mysql.sql(&format!(
                "ALTER TABLE {DB}.{table} ADD COLUMN c{columns} INT NULL DEFAULT {columns}"
            ));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let kind = if columns % 2 == 1 {
                Kind::KillSource
            } else {
                Kind::KillLoader
            };
            if selected(kind) && world.wait_phase("incremental snapshot", Duration::from_secs(30)) {
                std::thread::sleep(Duration::from_millis(rng.u64(0..1_000)));
                let mut f = faults::inject(&mut world, kind, &mut rng);
                take(&mut left, kind);
                world.beat(RECOVERY);
                f.recovery = f.ended.elapsed();
                record(&mut faults, f);
            }
        }
        let open: Vec<Kind> = left
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| *k)
            .collect();
        if cutoff.is_some_and(|c| Instant::now() >= c) {
            let left_out: usize = left.iter().map(|(_, n)| n).sum();
            println!("chaos: SLUICE_CHAOS_MAX_MINUTES reached; {left_out} faults left out");
            break;
        }
        let kind = match open.as_slice() {
            [] if Instant::now() >= deadline => break,
            [] => plan.kinds[rng.usize(..plan.kinds.len())],
            open => open[rng.usize(..open.len())],
        };
        take(&mut left, kind);
        if kind == Kind::EmptyIndex {
            // A copy requested while one of the same table runs would be ignored.
            world.wait_phase("streaming", RECOVERY);
        }
        let copies = world.source_logged("incremental snapshot done");
        let mut f = faults::inject(&mut world, kind, &mut rng);
        if kind == Kind::EmptyIndex {
            let deadline = Instant::now() + RECOVERY;
            while world.source_logged("incremental snapshot done") < copies + world::TABLES.len() {
                assert!(
                    Instant::now() < deadline,
                    "the copies did not finish{}",
                    world.log_tails()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        world.beat(RECOVERY);
        f.recovery = f.ended.elapsed();
        record(&mut faults, f);
        n += 1;
        std::thread::sleep(Duration::from_millis(rng.u64(0..1_000)));
    }
    (world, faults)
}
