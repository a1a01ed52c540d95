//! Continuing an upload on the manager whose disk holds it. A request for an upload session
//! that another manager started on its own disk is sent there, over mutual TLS with this node's
//! certificate, with the client's method, path, headers (credentials included: that manager
//! authorizes the request again) and body, both bodies streamed; its answer goes back as it is.

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::response::Response;
use futures::TryStreamExt;
use wharf_api::{ErrorCode, RegistryError};

use crate::App;

/// Marks a request one manager sent on to another, which never sends it further.
const FORWARDED: &str = "x-wharf-forwarded";

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "host" | "proxy-connection"
    )
}

/// Sends `req` to the manager at `addr` and returns its answer.
pub(crate) async fn forward(app: &App, addr: &str, req: Request) -> Result<Response, RegistryError> {
    let unavailable = |why: String| RegistryError::new(ErrorCode::Unavailable, why);
    let Some(client) = &app.peer_client else {
        return Err(unavailable("this node cannot reach the manager that holds the upload".into()));
    };
    if req.headers().contains_key(FORWARDED) {
        return Err(unavailable("the managers disagree on where this upload lives; try again".into()));
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let (parts, body) = req.into_parts();
    let mut request = client.request(parts.method, format!("https://{addr}{path}")).header(FORWARDED, "1");
    for (name, value) in parts.headers.iter().filter(|(name, _)| !hop_by_hop(name)) {
        request = request.header(name, value);
    }
    let body = body.into_data_stream().map_err(std::io::Error::other);
    let answer = request.body(reqwest::Body::wrap_stream(body)).send().await.map_err(|e| {
        tracing::warn!(manager = %addr, error = %e, "sending an upload request on to its manager failed");
        unavailable(format!(
            "this upload's bytes are on the manager at {addr}, which cannot be reached now; resume when it is \
             back, or start the blob again"
        ))
    })?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers().iter().filter(|(name, _)| !hop_by_hop(name)) {
        response = response.header(name, value);
    }
    response.body(Body::from_stream(answer.bytes_stream())).map_err(|e| {
        tracing::error!(error = %e, "building the answer of a forwarded upload request");
        RegistryError::internal()
    })
}
