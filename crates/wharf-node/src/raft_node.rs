//! A node's Raft instance: the log store, the state machine over the replica, the transport,
//! the proposer, and the task that makes the log's lazily saved parts durable. Managers and a
//! standalone node (a one-member group) open it the same way.

use std::sync::Arc;

use wharf_raft::{LogStore, Network, Raft, RaftProposer, StateMachine};
use wharf_store::Store;

use crate::{DataDir, NodeError};

pub struct RaftNode {
    pub raft: Raft,
    pub proposer: Arc<RaftProposer>,
    log: LogStore,
    flusher: tokio::task::JoinHandle<()>,
}

fn raft_error(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> NodeError + '_ {
    move |e| NodeError::Raft(format!("{what}: {e}"))
}

impl RaftNode {
    /// A standalone node's id: also the id of the first manager it becomes when it turns into
    /// a cluster (`wharf up` over TLS on its data directory), so the blobs it recorded as its
    /// own stay its own.
    pub const STANDALONE_ID: u64 = 1;

    /// Opens the Raft files in `dir`; calls to other managers use `tls` and leave from
    /// `source`, if given.
    pub async fn open(
        dir: &DataDir,
        id: u64,
        cluster_name: &str,
        store: Arc<Store>,
        tls: rustls::ClientConfig,
        source: Option<std::net::IpAddr>,
    ) -> Result<RaftNode, NodeError> {
        let log = LogStore::open(&dir.raft_log()).map_err(|e| raft_error("open the raft log")(&e))?;
        let sm = StateMachine::open(store, &dir.snapshots()).map_err(|e| raft_error("open the snapshots")(&e))?;
        let network = Network::new(tls.clone(), source).map_err(|e| raft_error("make the transport")(&e))?;
        let config = wharf_raft::config(cluster_name).map_err(|e| raft_error("configure raft")(&e))?;
        let raft = Raft::new(id, config, network, log.clone(), sm).await.map_err(|e| raft_error("start raft")(&e))?;
        let proposer =
            Arc::new(RaftProposer::new(raft.clone(), tls, source).map_err(|e| raft_error("make the proposer")(&e))?);
        let flusher = tokio::spawn(flush_periodically(log.clone()));
        Ok(RaftNode { raft, proposer, log, flusher })
    }

    /// A standalone node's state path: a one-member group over `store` (initialized the first
    /// time), led by this node before it returns. It has no other member to call.
    pub async fn standalone(dir: &DataDir, store: Arc<Store>, ca_pem: &str, addr: &str) -> Result<RaftNode, NodeError> {
        const ID: u64 = RaftNode::STANDALONE_ID;
        let tls = wharf_pki::ca_client_config(ca_pem)?;
        let node = RaftNode::open(dir, ID, "standalone", store, tls, None).await?;
        wharf_manager::bootstrap::lead_alone(&node.raft, ID, addr).await?;
        Ok(node)
    }

    /// Stops Raft and makes the log durable. The flush task is waited for, so that its handle
    /// on the log is gone when this returns.
    pub async fn stop(self) {
        self.flusher.abort();
        let _ = self.flusher.await;
        let _ = self.raft.shutdown().await;
        if let Err(e) = self.log.flush() {
            tracing::error!(error = %e, "making the raft log durable failed");
        }
    }
}

/// Makes the raft log's lazily saved parts durable every [`wharf_raft::COMMITTED_FLUSH`].
async fn flush_periodically(log: LogStore) {
    loop {
        tokio::time::sleep(wharf_raft::COMMITTED_FLUSH).await;
        let log = log.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || log.flush()).await {
            tracing::error!(error = %e, "making the raft log durable failed");
        }
    }
}
