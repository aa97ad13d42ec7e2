//! The faults a chaos run injects, each a whole episode: break, hold, heal.

use std::time::{Duration, Instant};

use crate::world::{LINKS, Link, World};

/// A kind of fault, selectable by name (`SLUICE_CHAOS_KINDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    KillSource,
    KillLoader,
    KillLoaderRebalancing,
    KillBroker,
    KillMysql,
    KillRegistry,
    StopIndex,
    EmptyIndex,
    Cut,
    Stall,
    Latency,
}

pub const KINDS: [Kind; 11] = [
    Kind::KillSource,
    Kind::KillLoader,
    Kind::KillLoaderRebalancing,
    Kind::KillBroker,
    Kind::KillMysql,
    Kind::KillRegistry,
    Kind::StopIndex,
    Kind::EmptyIndex,
    Kind::Cut,
    Kind::Stall,
    Kind::Latency,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillSource => "kill-source",
            Kind::KillLoader => "kill-loader",
            Kind::KillLoaderRebalancing => "kill-loader-rebalancing",
            Kind::KillBroker => "kill-broker",
            Kind::KillMysql => "kill-mysql",
            Kind::KillRegistry => "kill-registry",
            Kind::StopIndex => "stop-index",
            Kind::EmptyIndex => "empty-index",
            Kind::Cut => "cut",
            Kind::Stall => "stall",
            Kind::Latency => "latency",
        }
    }

    pub fn parse(name: &str) -> Kind {
        *KINDS.iter().find(|k| k.name() == name).unwrap_or_else(|| {
            panic!(
                "unknown fault kind {name:?}; kinds: {}",
                KINDS.map(Kind::name).join(", ")
            )
        })
    }
}

/// One injected fault, as the report lists it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// The link a network fault hit.
    pub link: Option<Link>,
    /// What the source was doing when the fault began.
    pub phase: &'static str,
    /// How long the fault lasted (the process down, the link broken).
    pub held: Duration,
    /// From the fault's end until a change committed then was in the index.
    pub recovery: Duration,
    /// When the fault ended.
    pub ended: Instant,
}

/// Injects one fault of `kind` and heals it; the caller measures the recovery.
pub fn inject(world: &mut World, kind: Kind, rng: &mut fastrand::Rng) -> Fault {
    let phase = world.phase().unwrap_or("starting");
    let hold = Duration::from_millis(rng.u64(100..2_000));
    let mut link = None;
    let began = Instant::now();
    match kind {
        Kind::KillSource => {
            world.source.kill9();
            std::thread::sleep(hold);
            world.restart_source();
        }
        Kind::KillLoader => {
            world.loader.kill9();
            std::thread::sleep(hold);
            world.restart_loader();
        }
        Kind::KillLoaderRebalancing => {
            // A restarted loader rejoins its group: killed again while it does, before it
            // has its partitions back (the join takes seconds on tansu).
            world.loader.kill9();
            world.restart_loader();
            std::thread::sleep(Duration::from_millis(rng.u64(0..1_500)));
            world.loader.kill9_now();
            std::thread::sleep(hold);
            world.restart_loader();
        }
        Kind::KillBroker => {
            world.broker.kill();
            std::thread::sleep(hold);
            world.broker.restart();
        }
        Kind::KillMysql => {
            world.mysql.kill();
            std::thread::sleep(hold);
            world.mysql.restart();
        }
        Kind::KillRegistry => {
            world.registry.kill();
            std::thread::sleep(hold);
            world.registry.restart();
        }
        Kind::StopIndex => {
            world.index.signal(libc::SIGSTOP);
            std::thread::sleep(hold);
            world.index.signal(libc::SIGCONT);
        }
        Kind::EmptyIndex => {
            // What a user does when the index server lost its data: stop the loader (its
            // writes would create the indexes with dynamic mappings), bring the server back,
            // start the loader (it creates the indexes with their mappings), and copy every
            // table again.
            assert!(world.loader.terminate(crate::common::PATIENCE).success());
            world.index.restart_empty();
            world.restart_loader();
            world.resnapshot_all();
        }
        Kind::Cut | Kind::Stall | Kind::Latency => {
            let target = LINKS[rng.usize(..LINKS.len())];
            link = Some(target);
            let proxy = world.proxy(target);
            match kind {
                Kind::Cut => proxy.cut(),
                Kind::Stall => {
                    proxy.stall(true);
                    std::thread::sleep(hold);
                }
                _ => {
                    proxy.delay(rng.u64(5..200));
                    std::thread::sleep(hold * 2);
                }
            }
            proxy.heal();
        }
    }
    Fault {
        kind,
        link,
        phase,
        held: began.elapsed(),
        recovery: Duration::ZERO,
        ended: Instant::now(),
    }
}
