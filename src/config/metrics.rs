//! `[metrics]`: where the Prometheus endpoint and the health probes listen.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_ready_retry_secs")]
    ready_retry_secs: u64,
}

impl Default for MetricsFile {
    fn default() -> Self {
        MetricsFile {
            listen: default_listen(),
            ready_retry_secs: default_ready_retry_secs(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9187".into()
}

fn default_ready_retry_secs() -> u64 {
    60
}

/// `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/health` and `/ready`; `None` (`""` in the file) turns them
    /// off. Port 0 takes a free port (logged).
    pub listen: Option<SocketAddr>,
    /// How long a component may be waited for (an outage) before `/ready` says no.
    pub ready_retry: Duration,
}

impl MetricsFile {
    pub(super) fn build(self, p: &mut Problems) -> Option<MetricsConfig> {
        let listen = match self.listen.trim() {
            "" => None,
            text => match text.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    p.push(format!(
                        "`metrics.listen` {text:?} is not an address like \"127.0.0.1:9187\" (\"\" \
                         turns the endpoint off)"
                    ));
                    return None;
                }
            },
        };
        Some(MetricsConfig {
            listen,
            ready_retry: Duration::from_secs(self.ready_retry_secs),
        })
    }
}
