//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (with `digest`, `mount`/`from`,
//! `digest-algorithm`) and `GET`/`PATCH`/`PUT`/`DELETE` on an upload's location.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use futures::TryStreamExt;
use wharf_api::range::parse_content_range;
use wharf_api::{Algorithm, ErrorCode, RegistryError};
use wharf_blobstore::ByteStream;
use wharf_registry::UploadHome;

use crate::access::Grant;
use crate::blobs::parse_digest;
use crate::{App, empty, header_str, query_get, query_pairs, unsupported};

fn location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>`, as distribution sends it (`0-0` for an empty upload).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn progress_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![("location", location(name, id)), ("range", range_value(offset)), ("docker-upload-uuid", id.to_owned())]
}

fn body_stream(req: Request) -> ByteStream {
    Box::pin(req.into_body().into_data_stream().map_err(std::io::Error::other))
}

/// Whether the request carries a body (a chunked body, or a non-zero Content-Length).
fn has_body(req: &Request) -> bool {
    match header_str(req.headers(), header::CONTENT_LENGTH) {
        Some(len) => len.trim() != "0",
        None => req.headers().contains_key(header::TRANSFER_ENCODING),
    }
}

/// Where a chunk says it starts (`Content-Range`), if it says.
fn chunk_start(req: &Request) -> Result<Option<u64>, RegistryError> {
    match header_str(req.headers(), header::CONTENT_RANGE) {
        None => Ok(None),
        Some(v) => parse_content_range(v)
            .map(|r| Some(r.start))
            .ok_or_else(|| RegistryError::new(ErrorCode::RangeInvalid, "invalid Content-Range")),
    }
}

fn created(name: &str, digest: &wharf_api::Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[("location", format!("/v2/{name}/blobs/{digest}")), ("docker-content-digest", digest.to_string())],
    )
}

pub(crate) async fn start(app: &App, req: Request, name: &str) -> Result<Response, RegistryError> {
    if req.method() != Method::POST {
        return Err(unsupported());
    }
    let query = query_pairs(req.uri().query());
    let registry = &app.registry;
    // Open sessions are capped per user: the owner is whoever the request authenticated as.
    let owner = req.extensions().get::<Grant>().map(Grant::owner).unwrap_or_default();
    if let Some(mount) = query_get(&query, "mount") {
        let digest = parse_digest(mount)?;
        let from = query_get(&query, "from");
        // A mount reads from another repository: without read access there, or (for a mount
        // without `from`, which may read any repository) without being the administrator,
        // the client gets an ordinary upload session instead, as the protocol allows.
        let grant = req.extensions().get::<Grant>();
        let auth = app.auth.as_deref();
        let may_read = match (grant, from) {
            (None, _) => false,
            (Some(g), Some(from)) => g.permits(auth, "repository", from, "pull"),
            (Some(g), None) => g.is_admin(),
        };
        if may_read && registry.mount(name, &digest, from).await? {
            return Ok(created(name, &digest));
        }
    } else if let Some(digest) = query_get(&query, "digest") {
        let digest = parse_digest(digest)?;
        registry.monolithic_upload(name, &digest, body_stream(req), &owner).await?;
        return Ok(created(name, &digest));
    }
    let algorithm = match query_get(&query, "digest-algorithm") {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::parse(a)
            .ok_or_else(|| RegistryError::new(ErrorCode::DigestInvalid, "unsupported digest algorithm"))?,
    };
    let id = registry.start_upload(name, algorithm, &owner).await?;
    Ok(empty(StatusCode::ACCEPTED, &progress_headers(name, &id, 0)))
}

pub(crate) async fn handle(app: &App, req: Request, name: &str, id: &str) -> Result<Response, RegistryError> {
    let registry = &app.registry;
    match registry.upload_home(id) {
        UploadHome::Here => {}
        UploadHome::At(addr) => return crate::forward::forward(app, &addr, req).await,
        UploadHome::Gone => {
            let why = "the manager that held this upload was removed; start the blob again";
            return Err(RegistryError::new(ErrorCode::BlobUploadUnknown, why));
        }
    }
    match req.method().clone() {
        Method::GET => {
            let offset = registry.upload_status(name, id).await?;
            Ok(empty(StatusCode::NO_CONTENT, &progress_headers(name, id, offset)))
        }
        Method::PATCH => {
            let start = chunk_start(&req)?;
            let offset = registry.patch_upload(name, id, start, body_stream(req)).await?;
            Ok(empty(StatusCode::ACCEPTED, &progress_headers(name, id, offset)))
        }
        Method::PUT => {
            let query = query_pairs(req.uri().query());
            let digest = query_get(&query, "digest")
                .ok_or_else(|| RegistryError::new(ErrorCode::DigestInvalid, "digest parameter missing"))?;
            let digest = parse_digest(digest)?;
            let last_chunk = match has_body(&req) {
                true => Some((chunk_start(&req)?, body_stream(req))),
                false => None,
            };
            registry.finish_upload(name, id, &digest, last_chunk).await?;
            Ok(created(name, &digest))
        }
        Method::DELETE => {
            registry.cancel_upload(name, id).await?;
            Ok(empty(StatusCode::NO_CONTENT, &[]))
        }
        _ => Err(unsupported()),
    }
}
