//! Wires the stages into a running process: source -> publisher -> acker for the source role,
//! the loader for the loader role, both for `all`. Any stage's failure stops the others; a
//! shutdown request drains them (the source stops reading, the publisher flushes, the acker
//! stores the last acknowledged checkpoint, the loader finishes and commits its batch).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::encode::Encoder;
use crate::load::{self, LoadError};
use crate::metrics::{self, MetricsError, metrics};
use crate::model::handoff;
use crate::positions::{PositionStore, PositionStoreError};
use crate::publish::{self, PublishError, acker};
use crate::registry::{self, ServeError, Users};
use crate::source::{self, SourceError};

/// Why `sluice run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The loader failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The embedded schema registry failed.
    #[error(transparent)]
    Registry(#[from] ServeError),
    /// The metrics endpoint failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The position store could not be opened.
    #[error(transparent)]
    Positions(#[from] PositionStoreError),
    /// A stage panicked.
    #[error("internal error: the {0} task panicked; this is a bug in Sluice")]
    Panicked(&'static str),
}

/// Batches of changes buffered between source and publisher, at most...
const SOURCE_QUEUE: usize = 64;
/// ...and bytes of them, at most (see [`handoff`]); batches of narrow rows never reach it.
const SOURCE_QUEUE_BYTES: u32 = 16 << 20;
/// Checkpoints awaiting the acknowledgement of the records before them.
const ACK_QUEUE: usize = 10_000;

/// Runs `role` until `shutdown` or a failure.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    // The role is in the config: it holds `[source]` only for a source, `[elasticsearch]`
    // only for a loader.
    let source_cfg = config.source.take();
    let es_cfg = config.elasticsearch.take();
    let config = Arc::new(config);
    let stop = shutdown.child_token();
    let readiness = &metrics().readiness;
    readiness
        .source_runs
        .store(source_cfg.is_some(), Ordering::Relaxed);
    readiness
        .loader_runs
        .store(es_cfg.is_some(), Ordering::Relaxed);
    // Bound before the stages start, so a taken port stops the process at once.
    let endpoint = match config.metrics.listen {
        Some(addr) => Some(metrics::serve(addr, config.metrics.ready_retry, stop.clone()).await?),
        None => None,
    };
    // The embedded registry is bound before the stages start, so their first registration
    // finds it; it stops last, after the stages drained.
    let registry = match config.registry.serve {
        Some(addr) => {
            let bound = registry::bind(addr, &config.registry.serve_data).await?;
            let users = match &config.registry.username {
                Some(user) => Users::one(user, &config.registry.password),
                None => Users::default(),
            };
            let (done, s) = (CancellationToken::new(), stop.clone());
            let serving = bound.serve(users, done.clone());
            let task =
                tokio::spawn(
                    async move { stop_on_error(&s, serving.await.map_err(RunError::from)) },
                );
            Some((task, done))
        }
        None => None,
    };
    let source = source_cfg.map(|src| {
        let (c, s) = (config.clone(), stop.clone());
        tokio::spawn(async move { stop_on_error(&s.clone(), run_source(c, src, s).await) })
    });
    let loader = es_cfg.map(|es| {
        let (c, s) = (config.clone(), stop.clone());
        tokio::spawn(async move {
            stop_on_error(
                &s.clone(),
                load::run(&c, &es, s).await.map_err(RunError::from),
            )
        })
    });
    let mut result = Ok(());
    for (name, task) in [("source", source), ("loader", loader)] {
        keep_first_error(&mut result, name, task).await;
    }
    if let Some((task, done)) = registry {
        done.cancel();
        keep_first_error(&mut result, "registry", Some(task)).await;
    }
    if let Some(task) = endpoint {
        stop.cancel();
        let r = match task.await {
            Ok(r) => r.map_err(RunError::from),
            Err(_) => Err(RunError::Panicked("metrics")),
        };
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// Awaits `task`, keeping its error in `result` unless an earlier one is there.
async fn keep_first_error(
    result: &mut Result<(), RunError>,
    name: &'static str,
    task: Option<tokio::task::JoinHandle<Result<(), RunError>>>,
) {
    let Some(task) = task else {
        return;
    };
    let r = task.await.unwrap_or(Err(RunError::Panicked(name)));
    if result.is_ok() {
        *result = r;
    }
}

fn stop_on_error<T>(stop: &CancellationToken, r: Result<T, RunError>) -> Result<T, RunError> {
    if r.is_err() {
        stop.cancel();
    }
    r
}

/// Source, publisher and acker as three tasks, so decoding and encoding use separate cores.
async fn run_source(
    config: Arc<Config>,
    src: SourceConfig,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let state = Arc::new(PositionStore::open(&src.state_dir)?);
    let deliveries = Arc::new(acker::Deliveries::default());
    let producer = publish::producer(&config.kafka, deliveries.clone())?;
    let encoder =
        Encoder::new(&config.registry, &config.kafka.topic_prefix).map_err(PublishError::from)?;
    let (tx, rx) = handoff(SOURCE_QUEUE, SOURCE_QUEUE_BYTES);
    let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);

    let source = {
        let (c, state, s) = (config.clone(), state.clone(), stop.clone());
        tokio::spawn(async move {
            let capture = source::Capture {
                include: c.tables.clone(),
                exclude: c.exclude_tables.clone(),
                columns: source::filter::ColumnFilter::new(&c.columns),
                keys: c.keys.clone(),
            };
            let r = source::run(&src, capture, &state, tx, s.clone()).await;
            stop_on_error(&s, r.map_err(RunError::from))
        })
    };
    let publisher = {
        let (c, s) = (config.clone(), stop.clone());
        tokio::spawn(async move {
            let r = publish::run(&c.kafka, encoder, producer, rx, ack_tx, s.clone()).await;
            stop_on_error(&s, r.map_err(RunError::from))
        })
    };
    let acker = {
        let s = stop.clone();
        tokio::spawn(async move {
            let r = acker::run(ack_rx, &deliveries, &state).await;
            stop_on_error(&s, r.map_err(RunError::from))
        })
    };
    let source = source.await.unwrap_or(Err(RunError::Panicked("source")));
    let publisher = publisher
        .await
        .unwrap_or(Err(RunError::Panicked("publisher")));
    let acker = acker.await.unwrap_or(Err(RunError::Panicked("acker")));
    // When one stage fails the others report only that their neighbour went away; the
    // original failure is the one to show.
    let secondary = |r: &Result<(), RunError>| {
        matches!(
            r,
            Err(RunError::Source(SourceError::Downstream))
                | Err(RunError::Publish(PublishError::ProducerGone))
        )
    };
    [source, publisher, acker]
        .into_iter()
        .filter(|r| r.is_err())
        .min_by_key(secondary)
        .unwrap_or(Ok(()))
}
