//! The procedures that start a cluster's history: the first start of a first manager
//! (`wharf init`, `wharf up`), folding a Raft log into the state so that a new Raft group can
//! start over it (a standalone node's log, an unfinished first start, `wharf recover`), and
//! forcing a new one-manager cluster from a surviving manager's state. Every step can be
//! repeated, so a crash in between is mended by running the same command again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wharf_api::NodeRole;
use wharf_raft::{LogStore, Raft, StateMachine};
use wharf_store::{ClusterCommand, Outcome, ProposerExt, Store};

use crate::ClusterError;

fn internal(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> ClusterError + '_ {
    move |e| ClusterError::Internal(format!("{what}: {e}"))
}

/// The cluster id the state in `store` holds, if any, after checking that the state is one a
/// first start may take: empty, a standalone node's, or this first start's own (node 1 at
/// `advertise`, from a start that stopped half-way). Another node in it means a cluster
/// member's state whose identity is missing, which is refused (as a `Conflict`).
pub fn check_first_start(store: &Store, advertise: &str) -> Result<Option<String>, ClusterError> {
    let nodes = store.nodes()?;
    if nodes.iter().any(|(id, node)| *id != 1 || node.addr != advertise) {
        return Err(ClusterError::Conflict(format!(
            "it holds the state of cluster {} ({} nodes) but no node identity (node/identity.json): \
             restore that directory, or start its surviving manager with `wharf recover --force-new-cluster`",
            store.cluster_id()?.unwrap_or_default(),
            nodes.len()
        )));
    }
    Ok(store.cluster_id()?)
}

/// Applies every entry of the Raft log at `raft_log` to the state store at `state`, then
/// deletes the log and the snapshots in `snapshots` and makes the store forget which entry it
/// applied last: the state is kept, and a new Raft group can start over it. The saved commit
/// index lags (it is written lazily), so the whole log is applied, as etcd's
/// `--force-new-cluster` does.
pub async fn fold_raft_log(raft_log: &Path, state: &Path, snapshots: &Path) -> Result<(), ClusterError> {
    if !raft_log.exists() {
        return Ok(());
    }
    {
        // Applies and makes the store durable before the log goes; the marker is forgotten
        // only after that, so a repeat after a crash never applies an entry twice.
        let store = Arc::new(Store::open(state)?);
        let mut log = LogStore::open(raft_log).map_err(|e| internal("open the raft log")(&e))?;
        let mut sm = StateMachine::open(store, snapshots).map_err(|e| internal("open the snapshots")(&e))?;
        wharf_raft::apply_whole_log(&mut log, &mut sm).await.map_err(|e| internal("apply the raft log")(&e))?;
    }
    std::fs::remove_file(raft_log).map_err(|e| internal(&format!("remove {}", raft_log.display()))(&e))?;
    if snapshots.exists() {
        std::fs::remove_dir_all(snapshots).map_err(|e| internal(&format!("remove {}", snapshots.display()))(&e))?;
    }
    Store::open(state)?.forget_marker()?;
    Ok(())
}

/// Marks every manager but `keep` removed (`wharf recover`): their certificates are refused
/// from now on, and they join again with a token and an empty data directory. Returns the
/// managers removed, with their addresses.
pub fn remove_other_managers(store: &Store, keep: u64) -> Result<Vec<(u64, String)>, ClusterError> {
    let mut removed = Vec::new();
    for (id, node) in store.nodes()? {
        if id != keep && node.role == NodeRole::Manager.as_str() && !node.removed {
            store.apply(&ClusterCommand::RemoveNode { id })?;
            removed.push((id, node.addr));
        }
    }
    Ok(removed)
}

/// Makes node `id` the only member of its Raft group if the group is new, and waits until it
/// leads: a cluster's first manager, `wharf recover`, and a standalone node.
pub async fn lead_alone(raft: &Raft, id: u64, addr: &str) -> Result<(), ClusterError> {
    let initialized = raft.is_initialized().await.map_err(|e| internal("read raft")(&e))?;
    if !initialized {
        let members: BTreeMap<u64, openraft::BasicNode> = [(id, openraft::BasicNode::new(addr))].into_iter().collect();
        raft.initialize(members).await.map_err(|e| internal("initialize raft")(&e))?;
    }
    raft.wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.current_leader == Some(id), "lead its own one-member group")
        .await
        .map_err(|e| internal("this node did not take the lead of its own one-member group")(&e))?;
    Ok(())
}

/// Takes a snapshot of everything applied and drops the log before it. A new Raft group over a
/// state that existed before it (kept by `wharf recover`, or a standalone node's) must do so:
/// a manager that joins then gets the whole state as a snapshot, not only the entries
/// written since.
pub async fn snapshot_and_purge(raft: &Raft) -> Result<(), ClusterError> {
    let metrics = raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.last_applied.is_some(), "apply the first entries")
        .await
        .map_err(|e| internal("apply the first entries")(&e))?;
    let applied = metrics.last_applied.map_or(0, |id| id.index);
    raft.trigger().snapshot().await.map_err(|e| internal("take a snapshot")(&e))?;
    raft.wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.snapshot.as_ref().is_some_and(|s| s.index >= applied), "snapshot of the kept state")
        .await
        .map_err(|e| internal("take a snapshot")(&e))?;
    raft.trigger().purge_log(applied).await.map_err(|e| internal("purge the log")(&e))?;
    Ok(())
}

/// The first manager of a new cluster, as its first start records it.
#[derive(Debug, Clone)]
pub struct FirstManager {
    pub node_id: u64,
    pub cluster_id: String,
    pub hostname: String,
    pub advertise: String,
    /// When its certificate expires (seconds since the Unix epoch).
    pub cert_not_after: u64,
}

/// What a first start made, to show once: the join tokens (manager, worker) and the
/// administrator's password if it was generated.
#[derive(Debug)]
pub struct Bootstrapped {
    pub manager_token: String,
    pub worker_token: String,
    pub admin_password: Option<String>,
}

/// The first start of the first manager: a one-member Raft group, the cluster's id, this node,
/// the join tokens and the administrator `admin` (with `password`, or a generated one). Each
/// step is skipped when the state already has it (a first start that stopped half-way, or the
/// kept state of a standalone node); the snapshot at the end lets joiners get the whole state.
pub async fn bootstrap(
    raft: &Raft,
    proposer: &Arc<wharf_raft::RaftProposer>,
    store: &Store,
    auth: &wharf_auth::Auth,
    ca: &wharf_pki::Ca,
    first: &FirstManager,
    password: Option<&str>,
) -> Result<Bootstrapped, ClusterError> {
    lead_alone(raft, first.node_id, &first.advertise).await?;
    proposer.propose(ClusterCommand::InitCluster { cluster_id: first.cluster_id.clone() }).await?;
    if !store.nodes()?.iter().any(|(id, _)| *id == first.node_id) {
        let add = ClusterCommand::AddNode {
            role: NodeRole::Manager.as_str().into(),
            hostname: first.hostname.clone(),
            addr: first.advertise.clone(),
            at: crate::now(),
        };
        let added = proposer.propose(add).await?;
        if !matches!(added, Outcome::NodeAdded { id } if id == first.node_id) {
            return Err(ClusterError::Conflict(
                "the state already holds nodes: this data directory belongs to another cluster's node".into(),
            ));
        }
    }
    proposer.propose(ClusterCommand::SetNodeCert { id: first.node_id, not_after: first.cert_not_after }).await?;
    let mut tokens = Vec::new();
    for role in [NodeRole::Manager, NodeRole::Worker] {
        let token = match crate::join_token(store, ca, role)? {
            Some(token) => token,
            None => crate::rotate_join_token(&**proposer, ca, role, wharf_store::Origin::system()).await?,
        };
        tokens.push(token);
    }
    let admin_password = auth
        .bootstrap_admin("admin", password, crate::now())
        .await
        .map_err(|e| ClusterError::Unavailable(format!("create the administrator: {e}")))?;
    snapshot_and_purge(raft).await?;
    let worker_token = tokens.pop().unwrap_or_default();
    let manager_token = tokens.pop().unwrap_or_default();
    Ok(Bootstrapped { manager_token, worker_token, admin_password })
}
