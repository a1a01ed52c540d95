//! The Raft routes managers call on each other: `POST /raft/append`, `/raft/vote`,
//! `/raft/transfer` (postcard bodies) and `/raft/snapshot` (the snapshot file as the body, its metadata in a header).
//! Every call must come over mutual TLS with a manager certificate of this cluster: the
//! verified peer certificate's subject says so (`wharf_pki::node_identity`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use futures::TryStreamExt;
use openraft::storage::Snapshot;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use wharf_pki::{NodeIdentity, NodeRole};
use wharf_raft::network::SNAPSHOT_META_HEADER;

use crate::PeerCertificate;

/// Largest append-entries or vote body.
const MAX_RPC: usize = 256 << 20;

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
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/propose", post(propose))
        .route("/raft/transfer", post(transfer))
        .route("/raft/read-index", post(read_index))
        .with_state(cluster)
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

pub(crate) fn postcard_response<T: Serialize>(value: &T) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding a raft reply failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "encoding the reply failed")
        }
    }
}

/// The postcard message of a request from a manager of this cluster.
async fn message<T: serde::de::DeserializeOwned>(cluster: &Cluster, req: Request, what: &str) -> Result<T, Response> {
    check_peer(cluster, &req).map_err(|refusal| *refusal)?;
    let body = axum::body::to_bytes(req.into_body(), MAX_RPC)
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "raft message too large or unreadable"))?;
    postcard::from_bytes(&body).map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("invalid {what}: {e}")))
}

async fn append(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    match message(&cluster, req, "append-entries message").await {
        Ok(rpc) => postcard_response(&cluster.raft.append_entries(rpc).await),
        Err(refusal) => refusal,
    }
}

async fn vote(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    match message(&cluster, req, "vote message").await {
        Ok(rpc) => postcard_response(&cluster.raft.vote(rpc).await),
        Err(refusal) => refusal,
    }
}

/// ReadIndex for a follower: this leader confirms its leadership and names the index the
/// follower must apply before it reads.
async fn read_index(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    if let Err(refusal) = check_peer(&cluster, &req) {
        return *refusal;
    }
    let answer = match cluster.proposer.read_index_here().await {
        Ok(index) => Ok(index),
        Err(Ok(leader)) => Err(format!("this manager is not the leader any more; the leader is {leader}")),
        Err(Err(why)) => Err(why),
    };
    postcard_response(&answer)
}

async fn transfer(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    match message(&cluster, req, "transfer-leader message").await {
        Ok(rpc) => postcard_response(&cluster.raft.handle_transfer_leader(rpc).await.map_err(|e| e.to_string())),
        Err(refusal) => refusal,
    }
}

/// A command a follower forwards to this node as the leader. It is not forwarded again: if
/// this node is not the leader any more, the follower gets an error and the client retries.
async fn propose(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let command = match message(&cluster, req, "command").await {
        Ok(command) => command,
        Err(refusal) => return refusal,
    };
    let answer = match cluster.proposer.write_here(command).await {
        Ok(applied) => Ok(applied),
        Err(Ok(leader)) => Err(format!("this manager is not the leader any more; the leader is {leader}")),
        Err(Err(why)) => Err(why),
    };
    postcard_response(&answer)
}

async fn snapshot(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    if let Err(refusal) = check_peer(&cluster, &req) {
        return *refusal;
    }
    let meta = req.headers().get(SNAPSHOT_META_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).ok()?;
        postcard::from_bytes::<(
            openraft::type_config::alias::VoteOf<wharf_raft::TypeConfig>,
            openraft::type_config::alias::SnapshotMetaOf<wharf_raft::TypeConfig>,
        )>(&raw)
        .ok()
    });
    let Some((vote, meta)) = meta else {
        return refuse(StatusCode::BAD_REQUEST, "missing or invalid snapshot metadata header");
    };
    match receive(&cluster, req).await {
        Ok(file) => {
            let result = cluster.raft.install_full_snapshot(vote, Snapshot { meta, snapshot: file }).await;
            postcard_response(&result.map_err(|e| e.to_string()))
        }
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
