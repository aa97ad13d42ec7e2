//! `[registry]`: the Confluent-compatible registry Sluice registers and reads schemas in.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{HttpUrl, Problems, Secret};
use crate::wire::registry::Endpoint;
use crate::wire::subject::SubjectStrategy;

/// `[registry]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistryFile {
    #[serde(default)]
    url: String,
    username: Option<String>,
    #[serde(default)]
    password: Secret,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    subject_strategy: SubjectStrategy,
    serve: Option<SocketAddr>,
    #[serde(default = "default_serve_data")]
    serve_data: PathBuf,
}

fn default_serve_data() -> PathBuf {
    PathBuf::from("sluice-registry")
}

/// `[registry]`.
#[derive(Debug)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081`; the embedded registry's address when `serve`
    /// is set and `url` is not.
    pub url: HttpUrl,
    /// Basic-auth user (Confluent Cloud: the API key).
    pub username: Option<String>,
    /// Basic-auth password (Confluent Cloud: the API secret).
    pub password: Secret,
    /// PEM file of the CA that signed an `https` registry's certificate; the system's roots
    /// are used when unset.
    pub ca_file: Option<PathBuf>,
    /// How subjects are named.
    pub subject_strategy: SubjectStrategy,
    /// Serve `sluice registry` inside `sluice run` on this address (one line instead of a
    /// separate service); its data lives in `serve_data`.
    pub serve: Option<SocketAddr>,
    /// Data directory of the embedded registry.
    pub serve_data: PathBuf,
}

impl RegistryConfig {
    /// How the registry client reaches it.
    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            url: self.url.as_str(),
            username: self.username.as_deref(),
            password: (!self.password.is_empty()).then(|| self.password.expose()),
            ca_file: self.ca_file.as_deref(),
        }
    }
}

impl RegistryFile {
    pub(super) fn build(self, p: &mut Problems) -> Option<RegistryConfig> {
        let url = match (self.url.is_empty(), self.serve) {
            (true, Some(addr)) => format!("http://{addr}"),
            _ => self.url,
        };
        let url = HttpUrl::parse(&url)
            .map_err(|m| p.push(format!("`registry.url`: {m}")))
            .ok();
        if self.username.is_none() && !self.password.is_empty() {
            p.push("`registry.password` is set without `registry.username`");
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            p.push(format!(
                "`registry.ca_file`: {} is not a readable file",
                ca.display()
            ));
        }
        Some(RegistryConfig {
            url: url?,
            username: self.username,
            password: self.password,
            ca_file: self.ca_file,
            subject_strategy: self.subject_strategy,
            serve: self.serve,
            serve_data: self.serve_data,
        })
    }
}
