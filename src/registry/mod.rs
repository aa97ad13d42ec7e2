//! `sluice registry`: the Confluent Schema Registry REST API (AVRO schemas), durable in sled,
//! so no JVM service is needed: subjects and versions with soft and permanent deletes, global
//! ids, references, compatibility levels checked by the Avro resolution rules ([`compat`]),
//! modes, and optional HTTP basic auth.

pub mod compat;
pub mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use compat::Level;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use store::{Mode, Reference, RegistryError, SchemaInput, Store, SubjectVersion, VersionSel};
use tokio_util::sync::CancellationToken;

use crate::config::Secret;

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

/// Who may call the registry: nobody needs credentials when empty.
#[derive(Clone, Default)]
pub struct Users(Vec<(String, Secret)>);

impl Users {
    /// One user.
    pub fn one(user: &str, password: &Secret) -> Users {
        Users(vec![(user.to_string(), password.clone())])
    }

    /// Parses `user:password[,user:password...]`; `None` if an entry has no `:`.
    pub fn parse(s: &str) -> Option<Users> {
        s.split(',')
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (u, p) = e.split_once(':')?;
                Some((u.to_string(), Secret::new(p.to_string())))
            })
            .collect::<Option<Vec<_>>>()
            .map(Users)
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(encoded) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Some((user, password)) = std::str::from_utf8(&decoded)
            .ok()
            .and_then(|t| t.split_once(':'))
        else {
            return false;
        };
        self.0
            .iter()
            .any(|(u, p)| u == user && p.expose() == password)
    }
}

/// A registry whose data dir is open and whose address is bound, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
}

/// Opens the data dir and binds `listen`: the failures worth reporting before anything
/// else starts.
pub async fn bind(listen: SocketAddr, data: &Path) -> Result<Bound, ServeError> {
    let store = Arc::new(Store::open(data).map_err(ServeError::Store)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    tracing::info!(%listen, data = %data.display(), "schema registry listening");
    Ok(Bound { listener, store })
}

impl Bound {
    /// Serves until `shutdown`; with `users`, every request needs their basic credentials.
    pub async fn serve(self, users: Users, shutdown: CancellationToken) -> Result<(), ServeError> {
        axum::serve(self.listener, router(self.store, users))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(ServeError::Serve)
    }
}

/// Serves the registry on `listen` with data in `data` until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    data: &Path,
    users: Users,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    bind(listen, data).await?.serve(users, shutdown).await
}

type Db = State<Arc<Store>>;
type Params = Query<HashMap<String, String>>;

/// The REST routes.
pub fn router(store: Arc<Store>, users: Users) -> Router {
    let users = Arc::new(users);
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_uses))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/config", get(global_level).put(set_global_level))
        .route(
            "/config/{subject}",
            get(subject_level)
                .put(set_subject_level)
                .delete(delete_subject_level),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_subject),
        )
        .route("/mode", get(global_mode).put(set_global_mode))
        .route("/mode/{subject}", get(subject_mode).put(set_subject_mode))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let users = users.clone();
            async move {
                if users.allows(req.headers()) {
                    next.run(req).await
                } else {
                    let mut r = Failure(RegistryError {
                        code: 40101,
                        message: "Unauthorized: give a registry user's basic credentials".into(),
                    })
                    .into_response();
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Basic realm=\"sluice registry\""),
                    );
                    r
                }
            }
        }))
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
        let code = if self.0.code < 1000 {
            self.0.code
        } else {
            self.0.code / 100
        };
        let status = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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

fn raw(text: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Body of register, lookup and compatibility requests.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    id: Option<u32>,
    version: Option<u32>,
}

fn parse_request(body: &[u8]) -> Result<SchemaInput, RegistryError> {
    let req: SchemaRequest = serde_json::from_slice(body).map_err(RegistryError::invalid_schema)?;
    match req.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(RegistryError::invalid_schema(format!(
                "schemaType {other} is not supported; this registry stores AVRO schemas"
            )));
        }
    }
    Ok(SchemaInput {
        schema: req.schema,
        references: req.references,
        id: req.id,
        version: req.version,
    })
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse().map_err(|_| RegistryError::schema_not_found())
}

/// A schema's JSON: `references` only when it has some, as Confluent's registry writes it.
fn schema_json(text: &str, references: &[Reference]) -> Json {
    let mut j = json!({"schema": text});
    if !references.is_empty() {
        j["references"] = json!(references);
    }
    j
}

/// A subject version as Confluent's API shows it.
fn version_json(v: SubjectVersion) -> Json {
    let mut j = schema_json(&v.schema.schema, &v.schema.references);
    j["subject"] = json!(v.subject);
    j["version"] = json!(v.version);
    j["id"] = json!(v.id);
    j
}

async fn schema_by_id(State(store): Db, UrlPath(id): UrlPath<String>) -> Reply {
    let s = store.schema(parse_id(&id)?)?;
    Ok(reply(schema_json(&s.schema, &s.references)))
}

async fn raw_schema_by_id(State(store): Db, UrlPath(id): UrlPath<String>) -> Reply {
    Ok(raw(store.schema(parse_id(&id)?)?.schema))
}

async fn schema_uses(State(store): Db, UrlPath(id): UrlPath<String>, Query(q): Params) -> Reply {
    let uses = store.uses_of(parse_id(&id)?, flag(&q, "deleted"))?;
    let list: Vec<Json> = uses
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(reply(json!(list)))
}

async fn subjects(State(store): Db, Query(q): Params) -> Reply {
    let prefix = q.get("subjectPrefix").map_or("", String::as_str);
    let all = store.subjects(flag(&q, "deleted"))?;
    Ok(reply(json!(
        all.into_iter()
            .filter(|s| s.starts_with(prefix))
            .collect::<Vec<_>>()
    )))
}

async fn versions(State(store): Db, UrlPath(subject): UrlPath<String>, Query(q): Params) -> Reply {
    let v = store.versions(&subject, flag(&q, "deleted"))?;
    if v.is_empty() {
        return Err(RegistryError::subject_not_found(&subject).into());
    }
    Ok(reply(json!(v)))
}

async fn register(State(store): Db, UrlPath(subject): UrlPath<String>, body: Bytes) -> Reply {
    let id = store.register(&subject, &parse_request(&body)?).await?;
    Ok(reply(json!({"id": id})))
}

async fn lookup(
    State(store): Db,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let v = store.lookup(&subject, &parse_request(&body)?, flag(&q, "deleted"))?;
    Ok(reply(version_json(v)))
}

async fn delete_subject(
    State(store): Db,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    let deleted = store
        .delete_subject(&subject, flag(&q, "permanent"))
        .await?;
    Ok(reply(json!(deleted)))
}

async fn version(
    State(store): Db,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Reply {
    let v = store.version(&subject, VersionSel::parse(&version)?, flag(&q, "deleted"))?;
    Ok(reply(version_json(v)))
}

async fn delete_version(
    State(store): Db,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Reply {
    let sel = VersionSel::parse(&version)?;
    let v = store
        .delete_version(&subject, sel, flag(&q, "permanent"))
        .await?;
    Ok(reply(json!(v)))
}

async fn raw_version(
    State(store): Db,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Reply {
    let v = store.version(&subject, VersionSel::parse(&version)?, flag(&q, "deleted"))?;
    Ok(raw(v.schema.schema))
}

async fn referenced_by(
    State(store): Db,
    UrlPath((subject, version)): UrlPath<(String, String)>,
) -> Reply {
    let v = store.version(&subject, VersionSel::parse(&version)?, false)?;
    Ok(reply(json!(store.referenced_by(&subject, v.version)?)))
}

/// Body of `PUT /config`.
#[derive(Deserialize)]
struct LevelRequest {
    compatibility: String,
}

fn parse_level(body: &[u8]) -> Result<Level, RegistryError> {
    let req: LevelRequest = serde_json::from_slice(body)
        .map_err(|e| RegistryError::invalid_level(&format!("(unreadable request: {e})")))?;
    Level::parse(&req.compatibility).ok_or_else(|| RegistryError::invalid_level(&req.compatibility))
}

/// The level of `subject` (`""`: the global one).
fn get_level(store: &Store, subject: &str, default_to_global: bool) -> Reply {
    let level = store.level(subject, default_to_global)?;
    Ok(reply(json!({"compatibilityLevel": level.as_str()})))
}

/// Sets the level of `subject` (`""`: the global one).
async fn put_level(store: &Store, subject: &str, body: &[u8]) -> Reply {
    let level = parse_level(body)?;
    store.set_level(subject, level).await?;
    Ok(reply(json!({"compatibility": level.as_str()})))
}

async fn global_level(State(store): Db) -> Reply {
    get_level(&store, "", true)
}

async fn set_global_level(State(store): Db, body: Bytes) -> Reply {
    put_level(&store, "", &body).await
}

async fn subject_level(
    State(store): Db,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
) -> Reply {
    get_level(&store, &subject, flag(&q, "defaultToGlobal"))
}

async fn set_subject_level(
    State(store): Db,
    UrlPath(subject): UrlPath<String>,
    body: Bytes,
) -> Reply {
    put_level(&store, &subject, &body).await
}

async fn delete_subject_level(State(store): Db, UrlPath(subject): UrlPath<String>) -> Reply {
    let old = store.delete_level(&subject).await?;
    Ok(reply(json!({"compatibilityLevel": old.as_str()})))
}

async fn check_version(
    State(store): Db,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let sel = VersionSel::parse(&version)?;
    let messages = store.check(&subject, Some(sel), &parse_request(&body)?)?;
    Ok(compatibility_reply(messages, flag(&q, "verbose")))
}

async fn check_subject(
    State(store): Db,
    UrlPath(subject): UrlPath<String>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let messages = store.check(&subject, None, &parse_request(&body)?)?;
    Ok(compatibility_reply(messages, flag(&q, "verbose")))
}

fn compatibility_reply(messages: Vec<String>, verbose: bool) -> Response {
    let mut j = json!({"is_compatible": messages.is_empty()});
    if verbose {
        j["messages"] = json!(messages);
    }
    reply(j)
}

/// Body of `PUT /mode`.
#[derive(Deserialize)]
struct ModeRequest {
    mode: String,
}

fn parse_mode(body: &[u8]) -> Result<Mode, RegistryError> {
    let req: ModeRequest = serde_json::from_slice(body)
        .map_err(|e| RegistryError::invalid_mode(&format!("(unreadable request: {e})")))?;
    Mode::parse(&req.mode)
}

/// Sets the mode of `subject` (`""`: the global one).
async fn put_mode(store: &Store, subject: &str, body: &[u8]) -> Reply {
    let mode = parse_mode(body)?;
    store.set_mode(subject, mode).await?;
    Ok(reply(json!({"mode": mode.as_str()})))
}

async fn global_mode(State(store): Db) -> Reply {
    Ok(reply(json!({"mode": store.mode("")?.as_str()})))
}

async fn set_global_mode(State(store): Db, body: Bytes) -> Reply {
    put_mode(&store, "", &body).await
}

async fn subject_mode(State(store): Db, UrlPath(subject): UrlPath<String>) -> Reply {
    Ok(reply(json!({"mode": store.mode(&subject)?.as_str()})))
}

async fn set_subject_mode(
    State(store): Db,
    UrlPath(subject): UrlPath<String>,
    body: Bytes,
) -> Reply {
    put_mode(&store, &subject, &body).await
}
