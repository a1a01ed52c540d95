//! Wharf's control plane as services, in the manner of swarmkit's `manager/` and
//! `ca/server.go`: admitting nodes ([`Manager::join`]), issuing and renewing their
//! certificates, hearing their heartbeats and marking silent ones down
//! ([`watch_heartbeats`]), Raft membership and role changes, node removal, the node list and
//! the join tokens; services and tasks (the Docker-compatible control calls of [`Caller`]s,
//! the orchestrators and the scheduler in [`run_control_loop`], the dispatcher that hands a
//! node its tasks, the log broker that asks nodes for their tasks' lines); and the procedures that start a cluster's history ([`bootstrap`]: a first
//! manager's first start, folding a Raft log into the state, `wharf recover`). Each call takes the caller's identity (a verified node certificate, or an
//! administrator the edge has authenticated) and returns a wire type of `wharf-api` or a
//! [`ClusterError`], which the edge maps to its protocol once.
//!
//! This crate must never know HTTP types: `wharf-http` turns requests into these calls.

mod access;
mod admission;
pub mod bootstrap;
mod bundles;
mod certificates;
pub mod containers;
pub mod control;
mod dispatcher;
mod error;
mod heartbeats;
pub mod join_tokens;
mod logs;
mod membership;
mod networks;
pub mod orchestrator;
mod secrets;
mod services;

use std::path::PathBuf;
use std::sync::Arc;

use wharf_api::NodeRole;
use wharf_api::cluster::ManagerSecrets;
use wharf_pki::NodeIdentity;
use wharf_store::NodeRecord;

pub use bundles::{BUNDLE_VALIDITY, BundleInfo};
pub use containers::{ExecOutput, Execs};
pub use control::run_control_loop;
pub use dispatcher::LONGEST_POLL;
pub use error::ClusterError;
pub use heartbeats::{Heartbeats, MISSED_HEARTBEATS, overdue, watch_heartbeats};
pub use join_tokens::{JoinTokenError, join_token, rotate_join_token, seal_legacy_join_tokens};
pub use logs::{ATTACH_WITHIN, LogBroker, LogLine, LogSink, LogSubscription, LogTarget};
pub use services::Caller;

/// How many joins one source address may attempt in a burst, and how fast it earns another.
pub const JOIN_LIMITS: wharf_auth::Limits = wharf_auth::Limits { burst: 10.0, refill_ms: 6_000.0 };

/// One manager of the cluster: what its control-plane services need.
pub struct Manager {
    /// This manager's node id.
    pub node_id: u64,
    pub raft: wharf_raft::Raft,
    /// Applies commands (forwarding them to the leader from a follower).
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
    pub manager_secrets: ManagerSecrets,
    /// The heartbeats this manager heard while leading.
    pub heartbeats: Heartbeats,
    /// How long the node certificates this manager signs are valid.
    pub node_cert_validity: wharf_pki::time::Duration,
    /// Join attempts per source address ([`JOIN_LIMITS`]).
    pub join_limiter: wharf_auth::RateLimiter,
    /// Where the cluster keeps blob bytes (as `--storage` takes it, without credentials):
    /// what a joining manager is told to use.
    pub blob_storage: String,
    /// The log requests this manager sent to nodes and the callers waiting for their lines.
    pub logs: LogBroker,
    /// The access model (grants, roles, teams, collections) every Docker-compatible call asks.
    pub access: wharf_auth::AccessControl,
    /// The exec sessions (`docker exec`) this manager holds.
    pub execs: Arc<containers::Execs>,
    /// Set when the manager stops serving: long polls and log streams end at once, so that
    /// the server's drain does not wait for them.
    pub stopping: Stopping,
}

/// A flag that is set once, for the calls that would otherwise hold a connection open.
#[derive(Debug)]
pub struct Stopping(tokio::sync::watch::Sender<bool>);

impl Default for Stopping {
    fn default() -> Stopping {
        Stopping(tokio::sync::watch::Sender::new(false))
    }
}

impl Stopping {
    /// Sets the flag: every [`Stopping::stopped`] resolves.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once the flag is set.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut flag = self.0.subscribe();
        async move {
            let _ = flag.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Seconds since the Unix epoch, for the timestamps commands carry.
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Manager {
    /// The record of the node whose verified certificate names `identity`, if this replica
    /// knows it yet (it may lag). A certificate of another cluster, or of a removed node, is
    /// refused: its signature is still valid, but the state says it is out.
    pub fn peer(&self, identity: &NodeIdentity) -> Result<Option<NodeRecord>, ClusterError> {
        if identity.cluster_id != self.cluster_id {
            return Err(ClusterError::Forbidden("the certificate is for another cluster".into()));
        }
        match self.store.node(identity.node_id) {
            Ok(Some(node)) if node.removed => {
                Err(ClusterError::Forbidden("this node was removed from the cluster".into()))
            }
            Ok(record) => Ok(record),
            Err(e) => Err(ClusterError::Unavailable(format!("reading the node failed: {e}"))),
        }
    }

    /// Refuses unless `identity` names a node of this cluster that is still a manager.
    pub fn check_manager(&self, identity: &NodeIdentity) -> Result<(), ClusterError> {
        let record = self.peer(identity)?;
        let demoted = record.is_some_and(|r| r.role != NodeRole::Manager.as_str());
        if identity.role != NodeRole::Manager || demoted {
            return Err(ClusterError::Forbidden("only managers of this cluster may make this call".into()));
        }
        Ok(())
    }

    /// The record of a node that must be known: a heartbeat or renewal from a node this
    /// replica has not heard of is refused.
    fn known_peer(&self, identity: &NodeIdentity) -> Result<NodeRecord, ClusterError> {
        self.peer(identity)?.ok_or_else(|| ClusterError::Forbidden("this node is not in the cluster's state".into()))
    }
}

impl From<JoinTokenError> for ClusterError {
    fn from(e: JoinTokenError) -> ClusterError {
        match e {
            JoinTokenError::Store(e) => e.into(),
            JoinTokenError::Propose(e) => e.into(),
            other => ClusterError::Internal(other.to_string()),
        }
    }
}

impl Manager {
    /// The join token of `role` (sealed in the state; this manager opens it with the CA key).
    pub fn show_join_token(&self, role: NodeRole) -> Result<wharf_api::cluster::JoinTokenInfo, ClusterError> {
        let token = join_token(&self.store, &self.ca, role)?
            .ok_or_else(|| ClusterError::NotFound("no join token yet".into()))?;
        Ok(wharf_api::cluster::JoinTokenInfo { role, token })
    }

    /// Replaces the join token of `role` on behalf of `by`: the old one stops working at once.
    pub async fn rotate_join_token(
        &self,
        role: NodeRole,
        by: wharf_store::Origin,
    ) -> Result<wharf_api::cluster::JoinTokenInfo, ClusterError> {
        let token = rotate_join_token(&*self.proposer, &self.ca, role, by).await?;
        Ok(wharf_api::cluster::JoinTokenInfo { role, token })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Stopping;

    #[tokio::test]
    async fn every_wait_for_the_stop_ends_when_it_comes_also_one_that_began_after() {
        let stopping = Stopping::default();
        let early = tokio::spawn(stopping.stopped());
        let waited = tokio::time::timeout(Duration::from_millis(50), stopping.stopped()).await;
        assert!(waited.is_err(), "nothing ends before the stop");
        stopping.stop();
        tokio::time::timeout(Duration::from_secs(5), early).await.expect("the early wait ends").expect("joined");
        tokio::time::timeout(Duration::from_secs(5), stopping.stopped()).await.expect("a late wait ends at once");
    }
}
