//! Several bulks in flight, never two for one partition: each partition belongs to a lane, a
//! lane collects one batch while its previous one is applied, a lane whose bulk is being
//! retried has its partitions paused while the others go on, and a partition that is taken
//! away (a rebalance) is handed over only after its bulk in flight settled and was committed.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::batch::Batch;
use crate::config::LoaderConfig;
use crate::metrics::metrics;

/// A topic partition.
pub type Partition = (String, i32);

/// How long a revoked partition's bulk in flight is waited for before the partition is let
/// go anyway (its records are then applied again by the new owner, harmlessly).
const REVOKE_WAIT: Duration = Duration::from_secs(30);

/// One lane: the batch being collected, and whether the previous one is still in flight.
#[derive(Default)]
pub struct Lane {
    /// Records read for the next bulk.
    pub batch: Batch,
    /// When the batch is sent even if not full.
    pub deadline: Option<Instant>,
    /// A bulk of this lane is in flight.
    pub busy: bool,
    /// The bulk in flight failed and is being retried: the lane's partitions are paused, so
    /// that the others go on.
    pub retrying: Arc<AtomicBool>,
    /// Partitions paused while the lane retries.
    pub paused: BTreeSet<Partition>,
}

impl Lane {
    /// Whether the reading must wait for this lane: its next batch is full while its bulk
    /// is in flight and not failing. Waiting costs nothing (librdkafka keeps prefetching),
    /// while pausing a partition drops what was prefetched for it and resuming it costs a
    /// fetch round (about a second on tansu).
    fn blocks(&self, cfg: &LoaderConfig) -> bool {
        self.busy && !self.retrying.load(Ordering::Relaxed) && self.batch.is_full(cfg)
    }
}

/// The lanes, and which partition belongs to which.
pub struct Lanes {
    lanes: Vec<Lane>,
    /// Per topic, per partition, its lane (looked up by `&str` for every record read).
    of: HashMap<String, HashMap<i32, usize>>,
    /// Partitions dealt so far.
    dealt: usize,
}

impl Lanes {
    /// `n` empty lanes.
    pub fn new(n: NonZeroUsize) -> Lanes {
        Lanes {
            lanes: (0..n.get()).map(|_| Lane::default()).collect(),
            of: HashMap::new(),
            dealt: 0,
        }
    }

    /// The lane of a partition; partitions are dealt to lanes in turn as they are first seen.
    pub fn lane_of(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(&lane) = self.of.get(topic).and_then(|t| t.get(&partition)) {
            return lane;
        }
        let lane = self.dealt % self.lanes.len();
        self.dealt += 1;
        self.of
            .entry(topic.to_string())
            .or_default()
            .insert(partition, lane);
        lane
    }

    /// Every lane.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Lane)> {
        self.lanes.iter_mut().enumerate()
    }

    /// Lane `i`.
    pub fn get(&mut self, i: usize) -> &mut Lane {
        &mut self.lanes[i]
    }

    /// Whether reading must wait for a lane (see [`Lane::blocks`]).
    pub fn blocked(&self, cfg: &LoaderConfig) -> bool {
        self.lanes.iter().any(|l| l.blocks(cfg))
    }

    /// The partitions seen so far that belong to lane `i`.
    pub fn partitions_of(&self, i: usize) -> Vec<Partition> {
        self.of
            .iter()
            .flat_map(|(topic, lanes)| lanes.iter().map(move |(p, lane)| (topic, *p, *lane)))
            .filter(|&(_, _, lane)| lane == i)
            .map(|(topic, p, _)| (topic.clone(), p))
            .collect()
    }

    /// When the earliest idle lane's batch is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter(|l| !l.busy)
            .filter_map(|l| l.deadline)
            .min()
    }

    /// Drops the unsent records of partitions this loader no longer owns. Their pauses stay
    /// noted: a partition assigned back must not stay paused after its lane settles.
    pub fn forget(&mut self, gone: &[Partition]) {
        let gone: BTreeSet<&Partition> = gone.iter().collect();
        for lane in &mut self.lanes {
            lane.batch.forget(|t, p| gone.contains(&(t.to_string(), p)));
            if lane.batch.records == 0 {
                lane.deadline = None;
            }
        }
    }
}

/// The partitions with a bulk in flight, so a revoke can wait for them.
#[derive(Default)]
pub struct InFlight {
    partitions: Mutex<HashMap<Partition, usize>>,
    settled: Condvar,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<Partition, usize>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a bulk over `partitions` as in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>, partitions: Vec<Partition>) -> Flight {
        let mut map = self.lock();
        for p in &partitions {
            *map.entry(p.clone()).or_default() += 1;
        }
        Flight {
            in_flight: self.clone(),
            partitions,
        }
    }

    /// Waits (blocking) until none of `partitions` has a bulk in flight; false on timeout.
    fn wait_for(&self, partitions: &[Partition], timeout: Duration) -> bool {
        let map = self.lock();
        let (_map, result) = self
            .settled
            .wait_timeout_while(map, timeout, |map| {
                partitions.iter().any(|p| map.contains_key(p))
            })
            .unwrap_or_else(PoisonError::into_inner);
        !result.timed_out()
    }
}

/// A bulk in flight; dropped once it settled and its offsets were committed (or it failed).
pub struct Flight {
    in_flight: Arc<InFlight>,
    partitions: Vec<Partition>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock();
        for p in &self.partitions {
            if let Some(n) = map.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    map.remove(p);
                }
            }
        }
        self.in_flight.settled.notify_all();
    }
}

/// The consumer's view of rebalances: before partitions are taken away, their bulks in
/// flight settle and commit (so the next owner does not apply them again); their records
/// not yet sent are dropped, uncommitted, for the next owner to read.
pub struct Rebalances {
    in_flight: Arc<InFlight>,
    revoked: Mutex<Vec<Partition>>,
    /// An asynchronous commit failed since the last [`Rebalances::take_commit_failed`].
    commit_failed: AtomicBool,
}

impl Rebalances {
    /// A context waiting for `in_flight` on revokes.
    pub fn new(in_flight: Arc<InFlight>) -> Rebalances {
        Rebalances {
            in_flight,
            revoked: Mutex::default(),
            commit_failed: AtomicBool::new(false),
        }
    }

    /// Whether a commit failed since the last call: the offsets are committed again, as
    /// nothing else would move them while the topics are quiet.
    pub fn take_commit_failed(&self) -> bool {
        self.commit_failed.swap(false, Ordering::Relaxed)
    }

    /// Whether a commit failed and was not yet taken.
    pub fn commit_failed(&self) -> bool {
        self.commit_failed.load(Ordering::Relaxed)
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<Partition> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

fn names(partitions: &[Partition]) -> Vec<String> {
    partitions.iter().map(|(t, p)| format!("{t}/{p}")).collect()
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked = partitions(tpl);
        // Called while the consumer is polled; the bulks run on other tasks.
        let wait = || self.in_flight.wait_for(&revoked, REVOKE_WAIT);
        let settled = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        if !settled {
            tracing::warn!(
                partitions = ?names(&revoked),
                "partitions revoked while their bulk was still retrying; the next owner applies \
                 those records again"
            );
        }
        self.revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(revoked);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, partitions = ?names(&partitions(offsets)), "committing offsets failed; trying again");
            self.commit_failed.store(true, Ordering::Relaxed);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let m = metrics();
                m.load
                    .partitions_assigned
                    .set(i64::try_from(tpl.count()).unwrap_or(i64::MAX));
                m.readiness
                    .assigned
                    .store(tpl.count() > 0, Ordering::Relaxed);
                tracing::info!(partitions = ?names(&partitions(tpl)), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                // Eager rebalancing: everything is revoked before the next assignment.
                let m = metrics();
                m.load.partitions_assigned.set(0);
                m.readiness.assigned.store(false, Ordering::Relaxed);
                tracing::info!(partitions = ?names(&partitions(tpl)), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// A partition list of `offsets`.
pub fn offset_list<'a>(
    offsets: impl IntoIterator<Item = (&'a Partition, &'a i64)>,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        // Only fails for Offset::OffsetTail values.
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_to_lanes_in_turn_and_keep_theirs() {
        let mut lanes = Lanes::new(NonZeroUsize::new(2).unwrap());
        assert_eq!(lanes.lane_of("a", 0), 0);
        assert_eq!(lanes.lane_of("a", 1), 1);
        assert_eq!(lanes.lane_of("b", 0), 0);
        assert_eq!(lanes.lane_of("a", 1), 1);
        assert_eq!(lanes.lane_of("a", 0), 0);
    }

    #[test]
    fn a_revoke_waits_for_the_bulks_of_its_partitions_only() {
        let in_flight = Arc::new(InFlight::default());
        let a = ("t".to_string(), 0);
        let b = ("t".to_string(), 1);
        let first = in_flight.start(vec![a.clone(), b.clone()]);
        let second = in_flight.start(vec![b.clone()]);
        assert!(!in_flight.wait_for(std::slice::from_ref(&a), Duration::from_millis(10)));
        let waiter = std::thread::spawn({
            let in_flight = in_flight.clone();
            move || in_flight.wait_for(&[a], Duration::from_secs(10))
        });
        drop(first);
        assert!(waiter.join().unwrap());
        assert!(!in_flight.wait_for(std::slice::from_ref(&b), Duration::from_millis(10)));
        drop(second);
        assert!(in_flight.wait_for(&[b], Duration::ZERO));
    }
}
