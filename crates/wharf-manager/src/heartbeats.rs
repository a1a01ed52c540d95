//! A node's life after it joined. Every node (managers too) sends a heartbeat to the leader
//! each period; the answer says which role the cluster wants it in, whether it is a Raft
//! member, and where the managers are. The leader keeps the times it heard from each node in
//! memory and records only changes (`ready`, `down`) in the replicated state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_api::NodeRole;
use wharf_api::cluster::HeartbeatReply;
use wharf_pki::NodeIdentity;
use wharf_store::{ClusterCommand, NodeRecord, Origin, ProposerExt};

use crate::{ClusterError, Manager};

/// A node is marked down after this many heartbeat periods without one.
pub const MISSED_HEARTBEATS: u32 = 3;

/// What the leader knows of heartbeats: kept in memory, never replicated.
#[derive(Debug)]
pub struct Heartbeats {
    period: Duration,
    last_seen: Mutex<HashMap<u64, Instant>>,
    /// When this manager last became the leader: nodes get a full grace time from then,
    /// since their heartbeats went to the old leader.
    leader_since: Mutex<Option<Instant>>,
}

impl Heartbeats {
    pub fn new(period: Duration) -> Heartbeats {
        Heartbeats { period, last_seen: Mutex::default(), leader_since: Mutex::default() }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    fn seen(&self, id: u64, at: Instant) {
        self.last_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, at);
    }
}

/// The nodes that should be marked down at `now`: not removed, not down already, and silent
/// for longer than `limit` since their last heartbeat or since `leader_since`, whichever is
/// later.
pub fn overdue(
    nodes: &[(u64, NodeRecord)],
    last_seen: &HashMap<u64, Instant>,
    leader_since: Instant,
    now: Instant,
    limit: Duration,
) -> Vec<u64> {
    nodes
        .iter()
        .filter(|(_, node)| !node.removed && node.state != "down")
        .filter(|(id, _)| {
            let heard = last_seen.get(id).copied().map_or(leader_since, |seen| seen.max(leader_since));
            now.saturating_duration_since(heard) > limit
        })
        .map(|(id, _)| *id)
        .collect()
}

impl Manager {
    /// A heartbeat from the node `identity` names: only the leader takes it.
    pub async fn heartbeat(&self, identity: &NodeIdentity) -> Result<HeartbeatReply, ClusterError> {
        let record = self.known_peer(identity)?;
        self.leading().await?;
        self.heartbeats.seen(identity.node_id, Instant::now());
        if record.state != "ready" {
            let ready = ClusterCommand::SetNodeState { id: identity.node_id, state: "ready".into(), at: crate::now() };
            match self.proposer.propose_by(Origin::node(identity.node_id, None), ready).await {
                Ok(_) => tracing::info!(node_id = identity.node_id, "node is ready"),
                Err(e) => tracing::warn!(node_id = identity.node_id, error = %e, "recording a ready node failed"),
            }
        }
        let nodes =
            self.store.nodes().map_err(|e| ClusterError::Unavailable(format!("reading the nodes failed: {e}")))?;
        let role_manager = NodeRole::Manager.as_str();
        let managers = nodes.into_iter().filter(|(_, n)| !n.removed && n.role == role_manager).map(|(_, n)| n.addr);
        let role = NodeRole::parse(&record.role)
            .ok_or_else(|| ClusterError::Conflict("the node's recorded role is unknown".into()))?;
        Ok(HeartbeatReply {
            period_ms: self.heartbeats.period.as_millis() as u64,
            role,
            raft_member: self.raft_members().contains(&identity.node_id),
            managers: managers.collect(),
        })
    }
}

/// Runs on every manager for as long as it serves; while it leads, marks nodes down whose
/// heartbeats stopped (and replaces join tokens an earlier version kept in clear). Silence is
/// a matter of time, so it looks every half period; the node list it looks at is read again
/// only when the store's change feed says the cluster's state changed.
pub async fn watch_heartbeats(manager: Arc<Manager>) {
    let limit = manager.heartbeats.period * MISSED_HEARTBEATS;
    let mut tick = tokio::time::interval(manager.heartbeats.period / 2);
    let mut feed = manager.store.subscribe();
    let mut nodes: Option<Vec<(u64, NodeRecord)>> = None;
    let mut read_at = 0;
    loop {
        tick.tick().await;
        let leading = manager.raft.current_leader().await == Some(manager.node_id);
        let since = {
            let mut since = manager.heartbeats.leader_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match (leading, *since) {
                (false, _) => {
                    *since = None;
                    continue;
                }
                (true, None) => *since.insert(Instant::now()),
                (true, Some(at)) => at,
            }
        };
        if let Err(e) = crate::seal_legacy_join_tokens(&*manager.proposer, &manager.store, &manager.ca).await {
            tracing::warn!(error = %e, "sealing the join tokens an earlier version kept in clear failed");
        }
        let cluster = feed.borrow_and_update().cluster;
        if nodes.is_none() || cluster != read_at {
            nodes = manager.store.nodes().ok();
            read_at = cluster;
        }
        let Some(nodes) = &nodes else { continue };
        let last_seen = manager.heartbeats.last_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for id in overdue(nodes, &last_seen, since, Instant::now(), limit) {
            let down = ClusterCommand::SetNodeState { id, state: "down".into(), at: crate::now() };
            match manager.proposer.propose(down).await {
                Ok(_) => tracing::warn!(node_id = id, "node is down: no heartbeat for {limit:?}"),
                Err(e) => tracing::warn!(node_id = id, error = %e, "recording a down node failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(state: &str, removed: bool) -> NodeRecord {
        NodeRecord {
            role: "worker".into(),
            hostname: "h".into(),
            addr: "a:1".into(),
            created: 0,
            removed,
            state: state.into(),
            state_since: 0,
            cert_not_after: 0,
        }
    }

    #[test]
    fn silent_nodes_are_overdue_after_the_limit_counted_from_the_later_of_heartbeat_and_leadership() {
        let start = Instant::now();
        let limit = Duration::from_secs(15);
        let nodes = vec![
            (1, node("ready", false)),
            (2, node("ready", false)),
            (3, node("down", false)),
            (4, node("ready", true)),
            (5, node("unknown", false)),
        ];
        let seen: HashMap<u64, Instant> = [(1, start + Duration::from_secs(10))].into_iter().collect();
        // Within the grace time of a new leader nobody is overdue.
        assert!(overdue(&nodes, &seen, start, start + Duration::from_secs(14), limit).is_empty());
        // After it, the silent ones are; 1 was heard at 10 s, so it has until 25 s.
        assert_eq!(overdue(&nodes, &seen, start, start + Duration::from_secs(16), limit), vec![2, 5]);
        assert_eq!(overdue(&nodes, &seen, start, start + Duration::from_secs(26), limit), vec![1, 2, 5]);
        // A heartbeat heard by an earlier leadership does not count before the new one began.
        let later = start + Duration::from_secs(20);
        assert!(overdue(&nodes, &seen, later, start + Duration::from_secs(30), limit).is_empty());
    }
}
