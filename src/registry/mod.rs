//! `sluice registry`: the Confluent Schema Registry REST API that Confluent serializers and
//! schema_registry_converter use, durable in sled, so no JVM service is needed.

pub mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use store::{RegistryError, Store, SubjectVersion};
use tokio_util::sync::CancellationToken;

/// Confluent's content type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why the registry could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data dir is unusable.
    #[error("{0}")]
    Store(String),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}; pick a free address with --listen")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("registry server: {0}")]
    Serve(std::io::Error),
}

/// Serves the registry on `listen` with data in `data` until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    data: &Path,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let store = Arc::new(Store::open(data).map_err(ServeError::Store)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    tracing::info!(%listen, data = %data.display(), "schema registry listening");
    axum::serve(listener, router(store))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Serve)
}

/// The REST routes.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", axum::routing::post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .with_state(store)
}

type Reply = Result<Response, Failure>;

/// A Confluent-style error response.
struct Failure(RegistryError);

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16((self.0.code / 100) as u16)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error_code": self.0.code, "message": self.0.message});
        (
            status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}

fn reply(body: Json) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

/// Body of register and lookup requests.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Json>,
}

fn parse_request(body: &[u8]) -> Result<SchemaRequest, RegistryError> {
    let req: SchemaRequest = serde_json::from_slice(body).map_err(RegistryError::invalid_schema)?;
    match req.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(RegistryError::invalid_schema(format!(
                "schemaType {other} is not supported; this registry stores AVRO schemas"
            )));
        }
    }
    if !req.references.is_empty() {
        return Err(RegistryError::invalid_schema(
            "schema references are not supported by this registry yet",
        ));
    }
    Ok(req)
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse().map_err(|_| RegistryError::schema_not_found())
}

fn parse_version(store: &Store, subject: &str, version: &str) -> Result<u32, RegistryError> {
    if version == "latest" {
        return store
            .versions(subject)?
            .last()
            .copied()
            .ok_or_else(|| RegistryError::subject_not_found(subject));
    }
    match version.parse::<u32>() {
        Ok(v) if (1..=i32::MAX as u32).contains(&v) => Ok(v),
        _ => Err(RegistryError::invalid_version(version)),
    }
}

async fn schema_by_id(State(store): State<Arc<Store>>, UrlPath(id): UrlPath<String>) -> Reply {
    let s = store.schema(parse_id(&id)?)?;
    Ok(reply(json!({"schema": s.schema})))
}

async fn raw_schema_by_id(State(store): State<Arc<Store>>, UrlPath(id): UrlPath<String>) -> Reply {
    let s = store.schema(parse_id(&id)?)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], s.schema).into_response())
}

async fn subjects(State(store): State<Arc<Store>>) -> Reply {
    Ok(reply(json!(store.subjects()?)))
}

async fn versions(State(store): State<Arc<Store>>, UrlPath(subject): UrlPath<String>) -> Reply {
    let v = store.versions(&subject)?;
    if v.is_empty() {
        return Err(RegistryError::subject_not_found(&subject).into());
    }
    Ok(reply(json!(v)))
}

async fn register(
    State(store): State<Arc<Store>>,
    UrlPath(subject): UrlPath<String>,
    body: Bytes,
) -> Reply {
    let req = parse_request(&body)?;
    let id = store.register(&subject, &req.schema).await?;
    Ok(reply(json!({"id": id})))
}

async fn lookup(
    State(store): State<Arc<Store>>,
    UrlPath(subject): UrlPath<String>,
    body: Bytes,
) -> Reply {
    let req = parse_request(&body)?;
    let v = store.lookup(&subject, &req.schema)?;
    Ok(reply(version_json(v)))
}

/// A subject version as Confluent's API shows it.
fn version_json(v: SubjectVersion) -> Json {
    json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema})
}

async fn version(
    State(store): State<Arc<Store>>,
    UrlPath((subject, version)): UrlPath<(String, String)>,
) -> Reply {
    let n = parse_version(&store, &subject, &version)?;
    let v = store.version(&subject, n)?;
    Ok(reply(version_json(v)))
}

async fn raw_version(
    State(store): State<Arc<Store>>,
    UrlPath((subject, version)): UrlPath<(String, String)>,
) -> Reply {
    let n = parse_version(&store, &subject, &version)?;
    let v = store.version(&subject, n)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], v.schema).into_response())
}
