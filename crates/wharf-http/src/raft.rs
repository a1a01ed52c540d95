//! The Raft routes managers call on each other (`/raft/append`, `vote`, `transfer`, `propose`,
//! `read-index`, and `snapshot` with the file as the body): every call must come over mutual
//! TLS with a manager certificate of this cluster, which the verified peer certificate's
//! subject says (`wharf_pki::node_identity`); what the calls carry and do is
//! `wharf_raft::transport`. Also the peer checks every node-to-node route shares.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;
use wharf_pki::{NodeIdentity, NodeRole};
use wharf_raft::transport::{self, Rpc};

use crate::PeerCertificate;

/// What the Raft routes need.
pub struct Cluster {
    /// This manager's node id.
    pub node_id: u64,
    pub raft: wharf_raft::Raft,
    /// Applies the commands followers forward (`/raft/propose`).
    pub proposer: Arc<wharf_raft::RaftProposer>,
    pub cluster_id: String,
    /// Where incoming snapshots are written before they are installed.
    pub incoming_dir: PathBuf,
    /// The cluster CA (with its key: managers sign the certificates of joining nodes).
    pub ca: Arc<wharf_pki::Ca>,
    /// This manager's replica of the state.
    pub store: Arc<wharf_store::Store>,
    /// What a joining manager receives besides its certificate, so that it can sign
    /// certificates and registry tokens itself when it leads.
    pub manager_secrets: wharf_api::cluster::ManagerSecrets,
    /// The heartbeats this manager heard while leading.
    pub heartbeats: crate::nodes::Heartbeats,
    /// How long the node certificates this manager signs are valid.
    pub node_cert_validity: wharf_pki::time::Duration,
    /// Join attempts per source address ([`JOIN_LIMITS`]).
    pub join_limiter: wharf_auth::RateLimiter,
}

/// How many joins one source address may attempt in a burst, and how fast it earns another.
pub const JOIN_LIMITS: wharf_auth::Limits = wharf_auth::Limits { burst: 10.0, refill_ms: 6_000.0 };

/// The routes, for merging into a node's router.
pub fn raft_router(cluster: Arc<Cluster>) -> Router {
    let mut router = Router::new().route(transport::SNAPSHOT_PATH, post(snapshot));
    for kind in Rpc::ALL {
        router = router.route(
            &kind.path(),
            post(
                move |State(cluster): State<Arc<Cluster>>, req: Request| async move { rpc(&cluster, kind, req).await },
            ),
        );
    }
    router.with_state(cluster)
}

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    crate::message_response(status, message)
}

/// The caller's node identity, from a verified node certificate of this cluster, and its record
/// in this manager's replica (`None` if the replica does not know it yet: it may lag). A
/// removed node is refused: its certificate is still validly signed, but the state says it is out.
pub(crate) fn peer_node(
    cluster: &Cluster,
    req: &Request,
) -> Result<(NodeIdentity, Option<wharf_store::NodeRecord>), Box<Response>> {
    let Some(PeerCertificate(node)) = req.extensions().get::<PeerCertificate>() else {
        let message = "node-to-node calls need a node certificate (mutual TLS)";
        return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, message)));
    };
    let Some(identity) = node.as_deref().cloned() else {
        return Err(Box::new(refuse(StatusCode::FORBIDDEN, "the certificate is not a node certificate")));
    };
    if identity.cluster_id != cluster.cluster_id {
        return Err(Box::new(refuse(StatusCode::FORBIDDEN, "the certificate is for another cluster")));
    }
    match cluster.store.node(identity.node_id) {
        Ok(Some(node)) if node.removed => {
            Err(Box::new(refuse(StatusCode::FORBIDDEN, "this node was removed from the cluster")))
        }
        Ok(record) => Ok((identity, record)),
        Err(e) => Err(Box::new(refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("reading the node failed: {e}")))),
    }
}

/// Refuses unless the caller presented a verified manager certificate of this cluster, of a
/// node that is still a manager.
pub(crate) fn check_peer(cluster: &Cluster, req: &Request) -> Result<(), Box<Response>> {
    let (identity, record) = peer_node(cluster, req)?;
    let demoted = record.is_some_and(|r| r.role != NodeRole::Manager.as_str());
    if identity.role != NodeRole::Manager || demoted {
        return Err(Box::new(refuse(StatusCode::FORBIDDEN, "only managers of this cluster may make this call")));
    }
    Ok(())
}

/// Answers an RPC of the Raft transport for a manager of this cluster: the peer check here,
/// everything else in `wharf_raft::transport`.
async fn rpc(cluster: &Cluster, rpc: Rpc, req: Request) -> Response {
    if let Err(refusal) = check_peer(cluster, &req) {
        return *refusal;
    }
    let body = match axum::body::to_bytes(req.into_body(), transport::MAX_RPC).await {
        Ok(body) => body,
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "raft message too large or unreadable"),
    };
    match transport::answer(&cluster.raft, &cluster.proposer, rpc, &body).await {
        Ok(answer) => (StatusCode::OK, answer).into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn snapshot(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    if let Err(refusal) = check_peer(&cluster, &req) {
        return *refusal;
    }
    let header = req.headers().get(transport::SNAPSHOT_META_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let header = match transport::SnapshotHeader::parse(header) {
        Ok(header) => header,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match receive(&cluster, req).await {
        Ok(file) => (StatusCode::OK, transport::install_snapshot(&cluster.raft, header, file).await).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "receiving a snapshot failed");
            refuse(StatusCode::BAD_REQUEST, "receiving the snapshot failed")
        }
    }
}

/// Streams the request body into a new file in the incoming folder; returns it, rewound.
async fn receive(cluster: &Cluster, req: Request) -> std::io::Result<std::fs::File> {
    tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(&cluster.incoming_dir).await?;
    let path = cluster.incoming_dir.join(format!("snapshot-{}", wharf_auth::new_secret()));
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
