//! The metrics endpoint: `/metrics` (Prometheus text), `/health` (the process answers) and
//! `/ready` (every role it runs is working), on `metrics.listen`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::metrics;
use crate::model::time;

/// The endpoint cannot run.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be bound.
    #[error(
        "cannot serve metrics on {addr}: {source}; set `metrics.listen` to a free address, or \
         to \"\" to turn the endpoint off"
    )]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("metrics server: {0}")]
    Serve(std::io::Error),
}

/// Binds `listen` (a taken port is reported before anything else starts), then serves until
/// `shutdown` in a task of its own. `ready_retry` is how long an outage may be waited out
/// before `/ready` says no.
pub async fn serve(
    listen: SocketAddr,
    ready_retry: Duration,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), MetricsError>>, MetricsError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| MetricsError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %addr, "metrics at /metrics, probes at /health and /ready");
    let retry_ms = i64::try_from(ready_retry.as_millis()).unwrap_or(i64::MAX);
    let router = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    metrics().text(),
                )
            }),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/ready",
            get(move || async move {
                match metrics().readiness.not_ready(time::now_ms(), retry_ms) {
                    None => (StatusCode::OK, "ready\n".to_string()).into_response(),
                    Some(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    )
                        .into_response(),
                }
            }),
        );
    Ok(tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(MetricsError::Serve)
    }))
}
