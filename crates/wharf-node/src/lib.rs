//! A running Wharf node as a library: its data directory, drawn once ([`DataDir`], with its
//! privacy rules), its identity files ([`Identity`]), its Raft node ([`RaftNode`]), and a
//! manager assembled in one place and stopped by one call ([`ManagerNode`]). The
//! binary keeps the command line and what it prints; what a node is and where it keeps things
//! lives here.
//!
//! This crate must never know the command line.

mod data_dir;
mod identity;
mod manager;
mod raft_node;

pub use data_dir::{DataDir, private_umask, secure};
pub use identity::Identity;
pub use manager::{ManagerNode, ManagerSettings, Uploads, purge_stale};
pub use raft_node::RaftNode;

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
}

impl NodeError {
    pub(crate) fn io(context: String, source: std::io::Error) -> NodeError {
        NodeError::Io { context, source }
    }
}
