//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_api::range::RangeRequest;
use wharf_api::{Digest, ErrorCode, RegistryError};
use wharf_registry::BlobRead;

use crate::{App, empty, header_str, set_headers, unsupported};

pub(crate) fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse().map_err(|e| RegistryError::new(ErrorCode::DigestInvalid, format!("invalid digest: {e}")))
}

pub(crate) async fn handle(app: &App, req: Request, name: &str, digest: &str) -> Result<Response, RegistryError> {
    let digest = parse_digest(digest)?;
    let registry = &app.registry;
    match *req.method() {
        Method::HEAD => {
            let size = crate::read_current(app, || async { registry.blob_size(name, &digest) }).await?;
            let mut response = empty(StatusCode::OK, &blob_headers(&digest));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            Ok(response)
        }
        Method::GET => {
            let range_header = header_str(req.headers(), header::RANGE);
            let read = crate::read_current(app, || registry.open_blob(name, &digest, range_header)).await?;
            Ok(blob_response(&digest, read))
        }
        Method::DELETE => {
            registry.delete_blob(name, &digest).await?;
            Ok(empty(StatusCode::ACCEPTED, &[("docker-content-digest", digest.to_string())]))
        }
        _ => Err(unsupported()),
    }
}

/// The answer to a GET of blob `digest`: all of it, a part (206), or 416.
fn blob_response(digest: &Digest, read: BlobRead) -> Response {
    let mut response = Response::new(read.body.map_or_else(Body::empty, Body::from_stream));
    let headers = response.headers_mut();
    set_headers(headers, &blob_headers(digest));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    match read.range {
        RangeRequest::Full => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(read.size));
        }
        RangeRequest::Partial(r) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len));
            let value = format!("bytes {}-{}/{}", r.offset, r.offset + r.len - 1, read.size);
            set_headers(headers, &[("content-range", value)]);
        }
        RangeRequest::Unsatisfiable => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            set_headers(headers, &[("content-range", format!("bytes */{}", read.size))]);
        }
    }
    response
}

/// The record of the manager of this cluster that makes `req` (its verified certificate), or
/// the refusal to answer with.
fn calling_manager(app: &App, req: &Request) -> Result<Option<wharf_store::NodeRecord>, Box<Response>> {
    let Some(manager) = &app.cluster else {
        let e = RegistryError::new(ErrorCode::Unsupported, "this node is not in a cluster");
        return Err(Box::new(crate::error_response(&e)));
    };
    let identity = crate::cluster_api::peer_identity(req)?;
    let refused = |e| Box::new(crate::cluster_api::cluster_error(e));
    manager.check_manager(&identity).map_err(refused)?;
    manager.peer(&identity).map_err(refused)
}

/// `GET /cluster/blobs/{digest}`: a blob this manager holds, for another manager of the
/// cluster that has no copy (mutual TLS, a manager's certificate). Only this node's own bytes:
/// it never reads from a third node in turn.
pub(crate) async fn peer_blob(State(app): State<Arc<App>>, Path(digest): Path<String>, req: Request) -> Response {
    if let Err(refusal) = calling_manager(&app, &req) {
        return *refusal;
    }
    let range_header = header_str(req.headers(), header::RANGE);
    let read = match parse_digest(&digest) {
        Ok(digest) => app.registry.open_own_blob(&digest, range_header).await.map(|read| (digest, read)),
        Err(e) => Err(e),
    };
    match read {
        Ok((digest, read)) => blob_response(&digest, read),
        Err(e) => crate::error_response(&e),
    }
}

/// `POST /cluster/blobs/{digest}/copy` (`{"size": N, "from": ID}`): the calling manager has
/// just stored a pushed blob and needs it durable here too before it acknowledges the push
/// (no `from`), or repairs a blob's copy count (`from` names a manager that holds it); this
/// manager reads it from the caller or that manager (at the address the state records for it),
/// verifies and stores it, and answers 204 once it is durable.
pub(crate) async fn peer_copy(State(app): State<Arc<App>>, Path(digest): Path<String>, req: Request) -> Response {
    let caller = match calling_manager(&app, &req) {
        Ok(Some(record)) => record,
        Ok(None) => {
            let e = RegistryError::new(ErrorCode::Unavailable, "this manager does not know the caller yet; try again");
            return crate::error_response(&e);
        }
        Err(refusal) => return *refusal,
    };
    let digest = match parse_digest(&digest) {
        Ok(digest) => digest,
        Err(e) => return crate::error_response(&e),
    };
    let body = match crate::read_body(req.into_body(), 4096).await {
        Ok(body) => body,
        Err((status, why)) => return crate::cluster_api::refuse(status, why),
    };
    let request: wharf_api::cluster::BlobCopyRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return crate::cluster_api::refuse(StatusCode::BAD_REQUEST, &format!("invalid copy request: {e}")),
    };
    let source = match request.from {
        None => caller.addr,
        Some(id) => match app.registry.manager_addr(id) {
            Some(addr) => addr,
            None => {
                let why = format!("node {id} is no manager of this cluster");
                return crate::cluster_api::refuse(StatusCode::BAD_REQUEST, &why);
            }
        },
    };
    match app.registry.copy_from(&source, &digest, request.size).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::error_response(&e),
    }
}

fn blob_headers(digest: &Digest) -> Vec<(&'static str, String)> {
    vec![
        ("docker-content-digest", digest.to_string()),
        ("etag", format!("\"{digest}\"")),
        ("accept-ranges", "bytes".to_owned()),
        ("cache-control", "max-age=31536000".to_owned()),
    ]
}
