//! The chaos suite: a seeded OLTP writer on three tables while faults hit every component and
//! every link at random, then `sluice verify` judges the index against the tables.
//!
//! The default is the short run `.ci/run` does. `scripts/chaos.sh` runs the long one; the
//! environment chooses: `SLUICE_CHAOS_SEED` (else random, printed), `SLUICE_CHAOS_ROWS`
//! (rows per table at the start), `SLUICE_CHAOS_FAULTS` (faults of each kind),
//! `SLUICE_CHAOS_MINUTES` (go on injecting until this long), `SLUICE_CHAOS_MAX_MINUTES` (stop
//! injecting after this long even if faults are left), `SLUICE_CHAOS_KINDS` (comma list,
//! default all; `kind=N` gives one kind its own count), `SLUICE_CHAOS_DDL` (ADD COLUMN statements, each re-copying its table),
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

#[derive(Clone)]
struct Plan {
    seed: u64,
    rows: u64,
    minutes: u64,
    max_minutes: u64,
    /// The kinds to inject and how many faults of each.
    kinds: Vec<(Kind, usize)>,
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
        let faults_per_kind = num("FAULTS", 2) as usize;
        let kinds = var("KINDS").map_or_else(
            || KINDS.iter().map(|&k| (k, faults_per_kind)).collect(),
            |v| {
                v.split(',')
                    .map(|k| match k.trim().split_once('=') {
                        Some((k, n)) => (
                            Kind::parse(k),
                            n.parse().unwrap_or_else(|_| {
                                panic!("SLUICE_CHAOS_KINDS: {n:?} in {k}={n} is not a number")
                            }),
                        ),
                        None => (Kind::parse(k.trim()), faults_per_kind),
                    })
                    .collect()
            },
        );
        Plan {
            seed: num("SEED", fastrand::u64(..1_000_000)),
            rows: num("ROWS", 10_000),
            minutes: num("MINUTES", 0),
            max_minutes: num("MAX_MINUTES", 0),
            kinds,
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
         faults {}, {} DDL, writer {}/s, at least {} min",
        plan.seed,
        plan.seed,
        plan.rows,
        plan.kinds
            .iter()
            .map(|(k, n)| format!("{}={n}", k.name()))
            .collect::<Vec<_>>()
            .join(","),
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
    let run = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || Run::new(world, &plan).inject_all(&plan))
            .await
            .unwrap()
    };
    writer.stop().await;
    let tally = *tally.lock().unwrap();

    // The judge: every fault healed, the writer stopped, the pipeline caught up.
    let (mut run, verdict) = tokio::task::spawn_blocking(move || {
        let mut run = run;
        run.world.beat(RECOVERY);
        let verdict = run.world.verify();
        (run, verdict)
    })
    .await
    .unwrap();
    let report = report::render(
        &plan,
        &run.faults,
        run.ddl_done,
        &run.checks,
        tally,
        started.elapsed(),
        &verdict,
    );
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
        run.world.log_tails()
    );
    run.world.clean_up();
}

/// A run in progress: the world, the choices left, what happened so far.
struct Run {
    world: World,
    rng: fastrand::Rng,
    /// Faults still to inject, per kind.
    left: Vec<(Kind, usize)>,
    faults: Vec<Fault>,
    /// ADD COLUMN statements run.
    ddl_done: usize,
    /// Verifies run before each copy that would heal earlier damage (all must pass).
    checks: Vec<String>,
    /// How long indexing a copy of every row may take (the index server takes about 2,000
    /// new documents a second, updates of a large index fewer).
    drain: Duration,
}

impl Run {
    fn new(world: World, plan: &Plan) -> Run {
        Run {
            world,
            rng: fastrand::Rng::with_seed(plan.seed),
            left: plan.kinds.clone(),
            faults: Vec::new(),
            ddl_done: 0,
            checks: Vec::new(),
            drain: RECOVERY + Duration::from_secs(plan.rows * 3 / 500),
        }
    }

    fn selected(&self, kind: Kind) -> bool {
        self.left.iter().any(|(k, _)| *k == kind)
    }

    fn take(&mut self, kind: Kind) {
        if let Some(e) = self.left.iter_mut().find(|(k, _)| *k == kind) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    fn record(&mut self, f: Fault) {
        println!(
            "chaos: fault {:>4} {:<24} {:<9} during {:<20} held {:>6} ms, recovered in {:>6} ms",
            self.faults.len() + 1,
            f.kind.name(),
            f.link.map_or(String::new(), |l| format!("{l:?}")),
            f.phase,
            f.held.as_millis(),
            f.recovery.as_millis()
        );
        self.faults.push(f);
    }

    /// Injects one fault and waits for the recovery; first checks that no process died
    /// on its own since the last one.
    fn fault(&mut self, kind: Kind) {
        self.world.assert_alive();
        self.take(kind);
        let mut f = faults::inject(&mut self.world, kind, &mut self.rng);
        if kind == Kind::EmptyIndex {
            // Recovered once every table is copied again.
            let copying = self
                .world
                .wait_phase("incremental snapshot", Duration::from_secs(30));
            assert!(
                copying && self.world.wait_phase("streaming", RECOVERY),
                "the copies after emptying the index did not run{}",
                self.world.log_tails()
            );
        }
        // Indexing a copy of every row takes the index server minutes on large tables.
        let patience = if kind == Kind::EmptyIndex {
            self.drain
        } else {
            RECOVERY
        };
        self.world.beat(patience);
        f.recovery = f.ended.elapsed();
        self.record(f);
    }

    /// `sluice verify` before something that would heal earlier damage (a table copied
    /// again): differences found now are the earlier faults'.
    fn check(&mut self, before: &str) {
        self.world.beat(RECOVERY);
        let (code, out) = self.world.verify();
        let summaries: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{DB}.")) && l.contains(" rows compared"))
            .collect();
        // Under the running writer a row may still be moving (exit 2, "unsettled"); any
        // missing, different or extra row fails.
        let clean = summaries
            .iter()
            .all(|l| l.contains(" 0 missing, 0 different, 0 extra"));
        assert!(
            (code == 0 || code == 2) && clean && summaries.len() == world::TABLES.len(),
            "sluice verify before {before} found differences (exit {code}):\n{out}{}",
            self.world.log_tails()
        );
        println!("chaos: verify before {before}: equal (exit {code})");
        self.checks.push(before.to_string());
    }

    /// An ADD COLUMN (the table is copied again), a kill while it copies.
    fn ddl(&mut self) {
        self.check("an ADD COLUMN");
        self.ddl_done += 1;
        let n = self.ddl_done;
        let table = format!("t{}", self.rng.u32(1..=3));
        let out = self.world.mysql.sql(&format!(
            "ALTER TABLE {DB}.{table} ADD COLUMN c{n} INT NULL DEFAULT {n}"
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kind = if n % 2 == 1 {
            Kind::KillSource
        } else {
            Kind::KillLoader
        };
        if self.selected(kind)
            && self
                .world
                .wait_phase("incremental snapshot", Duration::from_secs(30))
        {
            std::thread::sleep(Duration::from_millis(self.rng.u64(0..1_000)));
            self.fault(kind);
        }
        // The copy indexed before the next fault, whose recovery would include it.
        assert!(
            self.world.wait_phase("streaming", RECOVERY),
            "the copy after ADD COLUMN did not finish{}",
            self.world.log_tails()
        );
        self.world.beat(self.drain);
    }

    /// Injects the plan's faults, one at a time, each followed by the wait for recovery,
    /// with the plan's ADD COLUMN statements spread among them.
    fn inject_all(mut self, plan: &Plan) -> Run {
        let deadline = Instant::now() + Duration::from_secs(plan.minutes * 60);
        let cutoff = (plan.max_minutes > 0)
            .then(|| Instant::now() + Duration::from_secs(plan.max_minutes * 60));

        // Kills during the initial snapshot; their recovery includes the rest of it.
        let initial = self.drain;
        if self.world.wait_phase("initial snapshot", common::PATIENCE) {
            let mut early = Vec::new();
            for kind in [Kind::KillSource, Kind::KillLoader] {
                // A source just restarted answers its metrics a moment later.
                let copying = self
                    .world
                    .wait_phase("initial snapshot", Duration::from_secs(30));
                if self.selected(kind) && copying {
                    std::thread::sleep(Duration::from_millis(self.rng.u64(500..2_000)));
                    self.take(kind);
                    early.push(faults::inject(&mut self.world, kind, &mut self.rng));
                }
            }
            self.world.beat(initial);
            for mut f in early {
                f.recovery = f.ended.elapsed();
                self.record(f);
            }
        }
        self.world.beat(initial);

        let total: usize = self.left.iter().map(|(_, n)| n).sum();
        let mut ddl_at: Vec<usize> = (0..plan.ddl)
            .map(|_| self.rng.usize(..total.max(1)))
            .collect();
        ddl_at.sort_unstable();
        let mut n = 0;
        loop {
            while ddl_at.first().is_some_and(|&at| at <= n) {
                ddl_at.remove(0);
                self.ddl();
            }
            if cutoff.is_some_and(|c| Instant::now() >= c) {
                let left_out: usize = self.left.iter().map(|(_, n)| n).sum();
                println!("chaos: SLUICE_CHAOS_MAX_MINUTES reached; {left_out} faults left out");
                break;
            }
            let open: Vec<Kind> = self
                .left
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, _)| *k)
                .collect();
            let kind = match open.as_slice() {
                [] if Instant::now() >= deadline => break,
                [] => plan.kinds[self.rng.usize(..plan.kinds.len())].0,
                open => open[self.rng.usize(..open.len())],
            };
            if kind == Kind::EmptyIndex {
                // The copies it starts heal what earlier faults did: judge those first.
                self.check("emptying the index");
            }
            self.fault(kind);
            n += 1;
            std::thread::sleep(Duration::from_millis(self.rng.u64(0..1_000)));
        }
        for _ in ddl_at {
            self.ddl();
        }
        self
    }
}
