//! Wharf's HTTP edge: the OCI distribution API under `/v2/`, the CA certificate at `/ca`,
//! and the accept loop that serves them over TLS or, when asked, plain HTTP.
//!
//! Every `/v2/` request is parsed into an [`endpoint::Endpoint`] first, then handled by the
//! file for its family (blobs, uploads, manifests, listings). Errors become the OCI JSON body
//! in one place ([`error_response`]). This crate must never reach into storage internals: it
//! calls [`wharf_registry::Registry`] only.

mod access;
mod access_api;
mod api;
mod audit;
mod blobs;
mod bundle;
mod cluster_api;
mod docker;
mod endpoint;
mod forward;
mod guard;
mod listing;
mod manifests;
mod raft;
mod serve;
mod token;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use wharf_api::{ErrorCode, RegistryError};
use wharf_auth::Auth;
use wharf_registry::Registry;

pub use cluster_api::cluster_router;
pub use raft::raft_router;
pub use serve::{Limits, serve};

use crate::endpoint::Endpoint;

pub(crate) const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// Set on an API answer read from a replica that could not catch up with the leader (no
/// quorum): it may be stale, and says why.
pub const STALE_HEADER: &str = "wharf-stale";

/// What the handlers share.
pub struct App {
    pub registry: Arc<Registry>,
    /// Accounts and tokens; `None` when the node runs without them (`--insecure-no-auth`).
    pub auth: Option<Arc<Auth>>,
    /// The CA certificate served at `/ca`, if this node has one.
    pub ca_pem: Option<String>,
    /// `https`, or `http` with `--insecure-http`: the scheme of the token realm.
    pub scheme: &'static str,
    /// The address clients reach this node at when a request names no host.
    pub default_host: String,
    /// The control plane of this manager's cluster, when it runs as a cluster manager.
    pub cluster: Option<Arc<wharf_manager::Manager>>,
    /// This node's replica of the state, as what applies commands to it: reads that find
    /// nothing ask it to catch up with the leader first ([`catch_up`]).
    pub replica: Arc<dyn wharf_store::Proposer>,
    /// A client with this node's certificate, to send a request for an upload that another
    /// manager holds on to it (none: not a cluster manager).
    pub peer_client: Option<reqwest::Client>,
}

/// Waits until this node's replica has applied everything acknowledged anywhere before the
/// call (ReadIndex in a cluster; nothing to wait for on one node).
pub(crate) async fn catch_up(app: &App) -> Result<(), RegistryError> {
    app.replica.catch_up().await.map_err(|e| match e {
        wharf_store::ProposeError::Unavailable(why) => {
            RegistryError::new(ErrorCode::Unavailable, format!("the cluster cannot answer now: {why}"))
        }
        other => {
            tracing::error!(error = %other, "catching up with the leader failed");
            RegistryError::internal()
        }
    })
}

/// The peer address of a connection, put into each request's extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// What a peer presented in a mutual-TLS handshake, verified against the cluster CA, put into
/// each request's extensions by [`serve`]: the node identity in its subject, read once per
/// connection (`None` if it is not a node certificate).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<Arc<wharf_pki::NodeIdentity>>);

/// A user certificate (a client bundle's) a peer presented, verified against the cluster CA,
/// put into each request's extensions by [`serve`] beside [`PeerCertificate`]: who it names;
/// whether its bundle still holds is checked per request.
#[derive(Debug, Clone)]
pub struct PeerUser(pub Arc<wharf_pki::UserCertificate>);

/// The router for the whole node: `/ca`, the auth and account API, and `/v2/...`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ca", get(ca))
        .route("/cluster/blobs/{digest}", get(blobs::peer_blob))
        .route("/cluster/blobs/{digest}/copy", axum::routing::post(blobs::peer_copy))
        .route("/cluster/registry-token", axum::routing::post(cluster_api::registry_token))
        .merge(api::routes())
        .merge(access_api::routes())
        .fallback(dispatch)
        .with_state(Arc::clone(&app))
        .layer(axum::middleware::from_fn_with_state(app, audit::audit))
        .layer(axum::middleware::from_fn(log_request))
}

/// Reads what the cluster holds now. The leader's replica is current (it applies every write
/// before acknowledging it), so the leader reads it at once. A follower may lag a write that
/// another manager acknowledged a moment ago, a delete as much as a push: it catches up with
/// the leader first (ReadIndex; with no leader known, or when catching up fails, it answers
/// from its replica). A read that
/// finds nothing (404) on any manager catches up and reads again, so that nothing acknowledged
/// is called missing.
pub(crate) async fn read_current<T, F: Future<Output = Result<T, RegistryError>>>(
    app: &App,
    read: impl Fn() -> F,
) -> Result<T, RegistryError> {
    if let Some(cluster) = &app.cluster {
        match cluster.raft.current_leader().await {
            Some(leader) if leader == cluster.node_id => {}
            // No leader known: no quorum to ask; the replica answers at once.
            None => return read().await,
            Some(_) => {
                if let Err(e) = app.replica.catch_up().await {
                    tracing::debug!(error = %e, "reading from this replica without catching up");
                }
                return read().await;
            }
        }
    }
    match read().await {
        Err(e) if e.status == 404 && app.cluster.is_some() => {
            catch_up(app).await?;
            read().await
        }
        found => found,
    }
}

/// The session `secret` of `kind`. A session this replica does not know may have been opened
/// on another manager a moment ago: a cluster manager catches up with the leader before it
/// refuses one.
pub(crate) async fn current_session(
    app: &App,
    auth: &wharf_auth::Auth,
    secret: &str,
    kind: wharf_store::SessionKind,
) -> Result<(wharf_auth::Identity, String), wharf_auth::AuthError> {
    match auth.session(secret, kind, now()) {
        Err(wharf_auth::AuthError::NoSession) if app.cluster.is_some() => {
            catch_up(app).await.map_err(|e| wharf_auth::AuthError::Unavailable(e.message.clone()))?;
            auth.session(secret, kind, now())
        }
        found => found,
    }
}

/// Reads a whole request body of at most `limit` bytes. A failure is the status to answer
/// with and why: 413 over the limit, 408 when the body stopped arriving (the connection's
/// body deadline), 400 when it could not be read.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, (StatusCode, &'static str)> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(error) = cause {
            if error.is::<http_body_util::LengthLimitError>() {
                return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            if error.is::<guard::BodyStalled>() {
                return (StatusCode::REQUEST_TIMEOUT, "the request body stopped arriving");
            }
            cause = error.source();
        }
        (StatusCode::BAD_REQUEST, "the request body could not be read")
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The IP address the request came from (the key of per-source login limits).
pub(crate) fn peer_ip(req: &Request) -> String {
    peer_ip_of(req.extensions())
}

/// The client's IP address from a request's extensions (see [`PeerAddr`]).
pub(crate) fn peer_ip_of(extensions: &axum::http::Extensions) -> String {
    extensions.get::<PeerAddr>().map_or_else(|| "unknown".to_owned(), |p| p.0.ip().to_string())
}

/// The URL of the token endpoint as the client reached this node: the request's host (HTTP/1.1
/// `Host` or HTTP/2 `:authority`) when it is a plain host[:port], else the default address.
pub(crate) fn token_realm(app: &App, req: &Request) -> String {
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| header_str(req.headers(), header::HOST));
    let plain = |h: &&str| {
        !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    let host = host.filter(plain).unwrap_or(&app.default_host);
    format!("{}://{}/auth/token", app.scheme, host)
}

/// One log line per request: at debug level normally, at warn level for server errors. Only
/// the method, path, status and duration are logged; never headers, which carry credentials.
async fn log_request(req: Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros, "request failed");
    } else {
        tracing::debug!(%method, %path, status, micros, "request");
    }
    response
}

async fn ca(State(app): State<Arc<App>>) -> Response {
    match &app.ca_pem {
        Some(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn dispatch(State(app): State<Arc<App>>, mut req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if let Some(call) = docker::DockerCall::parse(&path) {
        return docker::handle(&app, call, req).await;
    }
    let Some(endpoint) = Endpoint::parse(&path) else {
        return error_response(&RegistryError::new(ErrorCode::Unsupported, "unknown endpoint").with_status(404));
    };
    if let Err(refusal) = access::authorize(&app, &endpoint, &mut req).await {
        return refusal;
    }
    let method = req.method().clone();
    let result = match endpoint {
        Endpoint::Base => match method {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, b"{}".to_vec())),
            _ => Err(unsupported()),
        },
        Endpoint::Catalog => {
            let grant = req.extensions().get::<access::Grant>().cloned();
            match (grant, app.auth.as_deref()) {
                (Some(grant), Some(auth)) if !grant.is_admin() => {
                    let readable = |repo: &str| grant.may_read(auth, repo);
                    listing::catalog(&app, &method, req.uri().query(), Some(&readable))
                }
                _ => listing::catalog(&app, &method, req.uri().query(), None),
            }
        }
        Endpoint::Tags { name } => listing::tags(&app, &method, &name, req.uri().query()).await,
        Endpoint::Referrers { name, digest } => listing::referrers(&app, &method, &name, &digest, req.uri().query()),
        Endpoint::Manifest { name, reference } => manifests::handle(&app, req, &name, &reference).await,
        Endpoint::Blob { name, digest } => blobs::handle(&app, req, &name, &digest).await,
        Endpoint::Uploads { name } => uploads::start(&app, req, &name).await,
        Endpoint::Upload { name, id } => uploads::handle(&app, req, &name, &id).await,
    };
    let mut response = result.unwrap_or_else(|e| error_response(&e));
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

pub(crate) fn unsupported() -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, "the operation is unsupported")
}

/// The one place a [`RegistryError`] becomes a response.
pub fn error_response(e: &RegistryError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, e.to_json());
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// A wire type of `wharf-api` as a JSON answer.
pub(crate) fn typed_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(status, body),
        Err(e) => {
            tracing::error!(error = %e, "encoding an answer failed");
            json_response(StatusCode::INTERNAL_SERVER_ERROR, br#"{"message":"encoding the answer failed"}"#.to_vec())
        }
    }
}

/// An error of the account, node and cluster APIs: `{"message": ...}` (`wharf_api::ApiMessage`).
pub(crate) fn message_response(status: StatusCode, message: &str) -> Response {
    typed_response(status, &wharf_api::ApiMessage::new(message))
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An empty response with the given status and headers.
pub(crate) fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    set_headers(response.headers_mut(), headers);
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

pub(crate) fn set_headers(map: &mut HeaderMap, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.append(*name, v);
        }
    }
}

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The query string's pairs, percent-decoded.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
