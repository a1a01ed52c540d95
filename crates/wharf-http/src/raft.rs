//! The Raft routes managers call on each other (`/raft/append`, `vote`, `transfer`, `propose`,
//! `read-index`, and `snapshot` with the file as the body): every call must come over mutual
//! TLS with a manager certificate of this cluster, which the verified peer certificate's
//! subject says (`wharf_pki::node_identity`); what the calls carry and do is
//! `wharf_raft::transport`.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;
use wharf_manager::Manager;
use wharf_raft::transport::{self, Rpc};

use crate::cluster_api::refuse;

/// The routes, for merging into a node's router.
pub fn raft_router(manager: Arc<Manager>) -> Router {
    let mut router = Router::new().route(transport::SNAPSHOT_PATH, post(snapshot));
    for kind in Rpc::ALL {
        router = router.route(
            &kind.path(),
            post(
                move |State(manager): State<Arc<Manager>>, req: Request| async move { rpc(&manager, kind, req).await },
            ),
        );
    }
    router.with_state(manager)
}

/// Refuses unless the caller presented a verified manager certificate of this cluster, of a
/// node that is still a manager.
fn check_peer(manager: &Manager, req: &Request) -> Result<(), Box<Response>> {
    let identity = crate::cluster_api::peer_identity(req)?;
    manager.check_manager(&identity).map_err(|e| Box::new(crate::cluster_api::cluster_error(e)))
}

/// Answers an RPC of the Raft transport for a manager of this cluster: the peer check here,
/// everything else in `wharf_raft::transport`.
async fn rpc(manager: &Manager, rpc: Rpc, req: Request) -> Response {
    if let Err(refusal) = check_peer(manager, &req) {
        return *refusal;
    }
    let body = match axum::body::to_bytes(req.into_body(), transport::MAX_RPC).await {
        Ok(body) => body,
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "raft message too large or unreadable"),
    };
    match transport::answer(&manager.raft, &manager.proposer, rpc, &body).await {
        Ok(answer) => (StatusCode::OK, answer).into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn snapshot(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    if let Err(refusal) = check_peer(&manager, &req) {
        return *refusal;
    }
    let header = req.headers().get(transport::SNAPSHOT_META_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let header = match transport::SnapshotHeader::parse(header) {
        Ok(header) => header,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match receive(&manager.incoming_dir, req).await {
        Ok(file) => (StatusCode::OK, transport::install_snapshot(&manager.raft, header, file).await).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "receiving a snapshot failed");
            refuse(StatusCode::BAD_REQUEST, "receiving the snapshot failed")
        }
    }
}

/// Streams the request body into a new file in the incoming folder; returns it, rewound.
async fn receive(incoming_dir: &Path, req: Request) -> std::io::Result<std::fs::File> {
    tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(incoming_dir).await?;
    let path = incoming_dir.join(format!("snapshot-{}", wharf_auth::new_secret()));
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).await?;
    let mut body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    while let Some(chunk) = body.try_next().await? {
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    drop(file);
    let file = std::fs::File::open(&path)?;
    // The open handle keeps the data; the name is not needed once the snapshot is installed.
    std::fs::remove_file(&path)?;
    Ok(file)
}
