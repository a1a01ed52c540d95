//! Wharf's Raft glue for openraft: the type configuration, a durable log store on redb
//! ([`LogStore`]) and the state machine over [`wharf_store::Store`] ([`StateMachine`]), with
//! snapshots and log compaction. Both pass openraft's storage test suite.
//!
//! The replicated data are [`wharf_store::VersionedCommand`]s, applied by the same
//! deterministic `Store` that a single node uses, so nothing above the store changes when a
//! node joins a cluster. This crate must never know about HTTP routes or business rules: it
//! moves commands and bytes.

mod log_store;
pub mod network;
mod proposer;
mod state_machine;
pub mod transport;

use serde::{Deserialize, Serialize};
use wharf_store::Outcome;

pub use log_store::{COMMITTED_FLUSH, LogStore};
pub use network::Network;
pub use proposer::{PROPOSE_TIMEOUT, RaftProposer};
pub use state_machine::{StateMachine, apply_whole_log};

/// A manager's Raft instance.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// A node's id: assigned once, never reused.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Wharf's Raft types: commands of the state store, applied results, u64 node ids, and
    /// standard Raft terms (one leader per term; openraft's default lets several candidates
    /// lead in one term).
    pub TypeConfig:
        D = wharf_store::VersionedCommand,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<Self::Term, Self::NodeId>,
);

/// What applying one log entry gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A command applied with this outcome.
    Done(Outcome),
    /// A command the state refused (it changed nothing).
    Refused(wharf_store::Refusal),
    /// A command that could not be applied for another reason.
    Failed(String),
    /// A blank or membership entry: nothing for the application.
    Nothing,
}

/// Raft timing: heartbeats every 50 ms, elections after 200-400 ms of silence. A follower
/// grants no vote while the old leader's lease (the longest election timeout) may still run,
/// so a lost leader is replaced after about lease + timeout: well under a second.
pub fn config(cluster_name: &str) -> Result<std::sync::Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        ..Default::default()
    };
    Ok(std::sync::Arc::new(config.validate()?))
}

const ELECTION_TIMEOUT_MAX_MS: u64 = 400;

/// How long a leader may go without a quorum's acknowledgement before it counts itself
/// isolated: twice the longest election timeout (after one, the other managers may have
/// elected another leader; the second keeps a slow disk on a follower from deposing a healthy
/// leader).
pub const LEADER_LEASE: std::time::Duration = std::time::Duration::from_millis(2 * ELECTION_TIMEOUT_MAX_MS);

/// What this manager is to the cluster, as far as it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// It does not lead.
    Follower,
    /// It leads, and a quorum acknowledged it within [`LEADER_LEASE`] (or it is the only voter).
    Leader,
    /// It was elected but no quorum acknowledged it within [`LEADER_LEASE`]: it is cut off from
    /// the other managers. It steps down: it accepts no writes and does not call itself leader
    /// (Raft makes it a follower as soon as it hears of a newer term).
    Isolated,
}

/// This manager's [`Leadership`] now. Every write asks, so the metrics are read in place,
/// not copied.
pub fn leadership(raft: &Raft) -> Leadership {
    use openraft::type_config::async_runtime::WatchReceiver;
    let watch = raft.metrics();
    let metrics = watch.borrow_watched();
    if metrics.current_leader != Some(metrics.id) {
        return Leadership::Follower;
    }
    let alone = metrics.membership_config.membership().voter_ids().all(|id| id == metrics.id);
    match &metrics.last_quorum_acked {
        _ if alone => Leadership::Leader,
        // Just elected: the voters that elected it have not answered a heartbeat yet.
        None => Leadership::Leader,
        Some(acked) if openraft::Instant::elapsed(&**acked) <= LEADER_LEASE => Leadership::Leader,
        Some(_) => Leadership::Isolated,
    }
}

pub(crate) fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Opens `path` for writing, creating it with mode 0600 if it is missing, and emptying it if
/// `truncate` (the Raft log and snapshots hold the whole state: private to the node's user).
pub(crate) fn create_private(path: &std::path::Path, truncate: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).write(true).truncate(truncate).mode(0o600).open(path)
}
