//! A running Wharf node as a library: its data directory, drawn once ([`DataDir`], with its
//! privacy rules), its identity files ([`Identity`]), its Raft node ([`RaftNode`]), and a
//! manager ([`ManagerNode`]) or a standalone node ([`StandaloneNode`]), each assembled in one
//! place and stopped by one call; the steps that start a manager in a new cluster
//! ([`first_manager`], [`recover_alone`], [`Start`]); the calls a node makes as itself
//! ([`join_cluster`], [`ask_to_be_added`], [`nodes_as_this_node`]); and the [`Agent`]
//! (heartbeats, certificate renewal, role changes) that runs on every node. The
//! binary keeps the command line and what it prints; what a node is and where it keeps things
//! lives here.
//!
//! This crate must never know the command line.

mod agent;
mod calls;
mod data_dir;
mod identity;
mod manager;
mod peer_blobs;
mod raft_node;
mod standalone;
mod startup;
mod storage;
mod tasks;

pub use agent::{Agent, EngineSettings};
pub use calls::{JoinAsk, ask_to_be_added, join_cluster, nodes_as_this_node};
pub use data_dir::{DataDir, private_umask, secure};
pub use identity::Identity;
pub use manager::{Began, BlobCare, ManagerNode, ManagerSettings, Start, Uploads, purge_stale};
pub use peer_blobs::NodePeerBlobs;
pub use raft_node::RaftNode;
pub use standalone::{ADMIN, Accounts, StandaloneNode};
pub use startup::{FirstStart, Recovered, first_manager, recover_alone};
pub use storage::{Storage, StorageChoice};

/// Why a node could not start or keep its files.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("node identity: {0}")]
    Identity(String),
    #[error(transparent)]
    Pki(#[from] wharf_pki::PkiError),
    #[error(transparent)]
    Store(#[from] wharf_store::StoreError),
    #[error(transparent)]
    Cluster(#[from] wharf_manager::ClusterError),
    #[error("raft: {0}")]
    Raft(String),
    /// A part of the node could not start: what, and why.
    #[error("{0}")]
    Start(String),
    /// Joining a cluster failed.
    #[error("{0}")]
    Join(String),
    #[error(transparent)]
    Client(#[from] wharf_client::ClientError),
    /// A call to the managers failed: what it was for, and why.
    #[error("{what}: {source}")]
    Call { what: String, source: wharf_client::ClientError },
}

/// Seconds since the Unix epoch, for the timestamps commands carry.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This machine's host name (empty when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

impl NodeError {
    pub(crate) fn io(context: String, source: std::io::Error) -> NodeError {
        NodeError::Io { context, source }
    }

    /// A failed call to the managers made for `what`.
    pub(crate) fn call(what: &str) -> impl FnOnce(wharf_client::ClientError) -> NodeError + '_ {
        move |source| NodeError::Call { what: what.to_owned(), source }
    }

    /// A part that could not start: `what` failed because of `why`.
    pub(crate) fn start(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> NodeError + '_ {
        move |why| NodeError::Start(format!("{what}: {why}"))
    }
}
