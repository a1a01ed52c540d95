//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};
use wharf_api::manifest::MAX_MANIFEST_BYTES;
use wharf_api::{ErrorCode, RegistryError};

use crate::{App, empty, header_str, query_pairs, set_headers, unsupported};

/// Largest oversized manifest body that is read and discarded before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

fn too_large() -> RegistryError {
    RegistryError::new(ErrorCode::SizeInvalid, format!("manifest exceeds {MAX_MANIFEST_BYTES} bytes")).with_status(413)
}

pub(crate) async fn handle(app: &App, req: Request, name: &str, reference: &str) -> Result<Response, RegistryError> {
    let registry = &app.registry;
    match req.method().clone() {
        method @ (Method::GET | Method::HEAD) => {
            let manifest = crate::read_current(app, || async { registry.get_manifest(name, reference) }).await?;
            let len = manifest.bytes.len();
            let body = if method == Method::GET { Body::from(manifest.bytes) } else { Body::empty() };
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            set_headers(
                headers,
                &[
                    ("content-type", manifest.media_type),
                    ("docker-content-digest", manifest.digest.to_string()),
                    ("etag", format!("\"{}\"", manifest.digest)),
                ],
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            Ok(response)
        }
        Method::PUT => {
            let declared = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
            if let Some(n) = declared.filter(|n| *n > MAX_MANIFEST_BYTES) {
                // Read a moderately oversized body to its end so the client sees the 413 rather
                // than a reset connection; a huge one is refused at once.
                if n <= DRAIN_LIMIT {
                    let _ = Limited::new(req.into_body(), DRAIN_LIMIT).collect().await;
                }
                return Err(too_large());
            }
            let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
            let tags: Vec<String> =
                query_pairs(req.uri().query()).into_iter().filter(|(k, _)| k == "tag").map(|(_, v)| v).collect();
            let bytes = match Limited::new(req.into_body(), MAX_MANIFEST_BYTES).collect().await {
                Ok(collected) => collected.to_bytes().to_vec(),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    return Err(too_large());
                }
                Err(e) => {
                    return Err(RegistryError::new(ErrorCode::ManifestInvalid, format!("reading manifest body: {e}")));
                }
            };
            let put = registry.put_manifest(name, reference, content_type.as_deref(), bytes, &tags).await?;
            let mut headers = vec![
                ("location", format!("/v2/{name}/manifests/{}", put.digest)),
                ("docker-content-digest", put.digest.to_string()),
            ];
            if let Some(subject) = &put.subject {
                headers.push(("oci-subject", subject.to_string()));
            }
            if !tags.is_empty() {
                headers.extend(put.tags.iter().map(|t| ("oci-tag", t.clone())));
            }
            Ok(empty(StatusCode::CREATED, &headers))
        }
        Method::DELETE => {
            registry.delete_manifest(name, reference).await?;
            Ok(empty(StatusCode::ACCEPTED, &[]))
        }
        _ => Err(unsupported()),
    }
}
