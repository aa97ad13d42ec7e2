//! The chaos run's report: what was injected, what the writer did, how long recovery took,
//! and the judge's verdict, as Markdown (docs/reliability.md quotes the long run's).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::Plan;
use crate::faults::Fault;
use crate::writer::Tally;

pub fn render(
    plan: &Plan,
    faults: &[Fault],
    ddl: usize,
    checks: &[String],
    tally: Tally,
    took: Duration,
    verdict: &(i32, String),
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Seed {}, {} rows in each of t1, t2, t3 at the start, {} min {} s.\n",
        plan.seed,
        plan.rows,
        took.as_secs() / 60,
        took.as_secs() % 60
    );
    let _ = writeln!(
        out,
        "Writer: {} transactions committed ({} statements run, {} transactions rolled back, \
         {} writes failed by faults), {} row changes; {ddl} ADD COLUMN, each copying its table \
         again. `sluice verify` also ran before each copy that heals earlier damage ({} times: \
         equal each time).\n",
        tally.transactions,
        tally.statements,
        tally.rolled_back,
        tally.errors,
        tally.changes,
        checks.len()
    );
    let mut groups: BTreeMap<(&str, &str), Vec<&Fault>> = BTreeMap::new();
    for f in faults {
        groups.entry((f.kind.name(), f.phase)).or_default().push(f);
    }
    let _ = writeln!(
        out,
        "| fault | during | injected | links hit | held median | recovery median | recovery max |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---:|---:|");
    for ((kind, phase), group) in &groups {
        let mut links: BTreeMap<String, usize> = BTreeMap::new();
        for f in group {
            if let Some(l) = f.link {
                *links.entry(format!("{l:?}")).or_default() += 1;
            }
        }
        let links: Vec<String> = links.iter().map(|(l, n)| format!("{l} {n}")).collect();
        let held = median(group.iter().map(|f| f.held));
        let recovery: Vec<Duration> = group.iter().map(|f| f.recovery).collect();
        let _ = writeln!(
            out,
            "| {kind} | {phase} | {} | {} | {} | {} | {} |",
            group.len(),
            links.join(", "),
            secs(held),
            secs(median(recovery.iter().copied())),
            secs(recovery.iter().copied().max().unwrap_or_default()),
        );
    }
    let _ = writeln!(out, "| **all** | | **{}** | | | | |\n", faults.len());
    let summary: Vec<&str> = verdict
        .1
        .lines()
        .filter(|l| !l.contains(" INFO ") && !l.trim().is_empty())
        .collect();
    let _ = writeln!(
        out,
        "`sluice verify` exit {} ({}):\n\n```\n{}\n```",
        verdict.0,
        if verdict.0 == 0 { "equal" } else { "NOT equal" },
        summary.join("\n")
    );
    out
}

fn median(durations: impl Iterator<Item = Duration>) -> Duration {
    let mut all: Vec<Duration> = durations.collect();
    all.sort_unstable();
    match all.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => all[n / 2],
        n => (all[n / 2 - 1] + all[n / 2]) / 2,
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
