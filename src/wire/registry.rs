//! How Sluice's encoder and loader reach a registry (`sluice registry` or any
//! Confluent-compatible one): URL, basic auth, a private CA.

use std::path::Path;

use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;

/// Where a registry is and how to log in to it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// Base URL.
    pub url: &'a str,
    /// Basic-auth user.
    pub username: Option<&'a str>,
    /// Basic-auth password, if one is set.
    pub password: Option<&'a str>,
    /// PEM file of a private CA.
    pub ca_file: Option<&'a Path>,
}

/// The registry client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file cannot be used.
    #[error("`registry.ca_file` {path}: {message}; give a PEM file of the CA certificate")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the schema registry client for {url}: {message}")]
    Build {
        /// Registry URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// Client settings for the registry at `at`. Credentials go to the HTTP client only.
pub fn settings(at: Endpoint<'_>) -> Result<SrSettings, ClientError> {
    let url = at.url.trim_end_matches('/').to_string();
    let mut builder = SrSettings::new_builder(url.clone());
    if let Some(user) = at.username {
        builder.set_basic_authorization(user, at.password);
    }
    let mut http = reqwest::Client::builder();
    if let Some(path) = at.ca_file {
        let ca_error = |message: String| ClientError::Ca {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
        http = http.add_root_certificate(cert);
    }
    builder.build_with(http).map_err(|e| ClientError::Build {
        url,
        message: e.to_string(),
    })
}

/// The HTTP status a registry call failed with, when the registry answered.
pub fn status(e: &SRCError) -> Option<u16> {
    e.error
        .split("with status ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
}

/// Whether nothing usable answered a registry call: no connection (not started yet,
/// restarting), a broken one, a timeout. A TLS failure is not: it needs a change of config.
pub fn is_unreachable(e: &SRCError) -> bool {
    if status(e).is_some() {
        return false;
    }
    // The reason sits several causes deep (an HTTP client error around a TCP error).
    let text = crate::with_causes(e).to_lowercase();
    let tls = ["certificate", "tls", "ssl"]
        .iter()
        .any(|w| text.contains(w));
    let unreachable = [
        "connection refused",
        "connection reset",
        "connection closed",
        "timed out",
        "tcp connect error",
        "dns error",
    ]
    .iter()
    .any(|w| text.contains(w));
    unreachable && !tls
}
