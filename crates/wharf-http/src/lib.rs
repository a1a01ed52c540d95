//! Wharf's HTTP edge: the OCI distribution API under `/v2/`, the CA certificate at `/ca`,
//! and the accept loop that serves them over TLS or, when asked, plain HTTP.
//!
//! Every `/v2/` request is parsed into an [`endpoint::Endpoint`] first, then handled by the
//! file for its family (blobs, uploads, manifests, listings). Errors become the OCI JSON body
//! in one place ([`error_response`]). This crate must never reach into storage internals: it
//! calls [`wharf_registry::Registry`] only.

mod blobs;
mod endpoint;
mod listing;
mod manifests;
mod serve;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use wharf_api::{ErrorCode, RegistryError};
use wharf_registry::Registry;

pub use serve::serve;

use crate::endpoint::Endpoint;

pub(crate) const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// What the handlers share.
pub struct App {
    pub registry: Arc<Registry>,
    /// The CA certificate served at `/ca`, if this node has one.
    pub ca_pem: Option<String>,
}

/// The router for the whole node: `/ca` and `/v2/...`.
pub fn router(app: Arc<App>) -> Router {
    Router::new().route("/ca", get(ca)).fallback(dispatch).with_state(app).layer(axum::middleware::from_fn(log_request))
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

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(endpoint) = Endpoint::parse(&path) else {
        return error_response(&RegistryError::new(ErrorCode::Unsupported, "unknown endpoint").with_status(404));
    };
    let method = req.method().clone();
    let result = match endpoint {
        Endpoint::Base => match method {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, b"{}".to_vec())),
            _ => Err(unsupported()),
        },
        Endpoint::Catalog => listing::catalog(&app, &method, req.uri().query()),
        Endpoint::Tags { name } => listing::tags(&app, &method, &name, req.uri().query()),
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
