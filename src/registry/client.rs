//! How Sluice's encoder and loader reach a registry (`sluice registry` or any
//! Confluent-compatible one): URL, basic auth, a private CA.

use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::config::RegistryConfig;

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

/// Client settings for the configured registry. Credentials go to the HTTP client only.
pub fn settings(cfg: &RegistryConfig) -> Result<SrSettings, ClientError> {
    let url = cfg.url.trim_end_matches('/').to_string();
    let mut builder = SrSettings::new_builder(url.clone());
    if let Some(user) = &cfg.username {
        let password = (!cfg.password.is_empty()).then(|| cfg.password.expose());
        builder.set_basic_authorization(user, password);
    }
    let mut http = reqwest::Client::builder();
    if let Some(path) = &cfg.ca_file {
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
