//! A node's life after it joined. Every node (managers too) calls `POST /cluster/heartbeat`
//! on the leader each period; the answer says which role the cluster wants it in, whether it
//! is a Raft member, and where the managers are. The leader keeps the times it heard from
//! each node in memory and records only changes (`ready`, `down`) in the replicated state.
//! `POST /cluster/renew` gives a node a new certificate for the role the state holds: to renew
//! before expiry (at a random 50-80% of the lifetime) and to change role. A demoted manager
//! gets its worker certificate only once it has left Raft.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use wharf_pki::{NodeIdentity, NodeRole};
use wharf_store::{Command, NodeRecord, Proposer};

use crate::json_response;
use crate::raft::{Cluster, peer_node, refuse};
use wharf_api::cluster::{HeartbeatReply, JoinResponse, RenewRequest};

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

fn raft_members(cluster: &Cluster) -> Vec<u64> {
    use openraft::type_config::async_runtime::WatchReceiver;
    let watch = cluster.raft.metrics();
    let metrics = watch.borrow_watched();
    metrics.membership_config.membership().nodes().map(|(id, _)| *id).collect()
}

/// 421 with the leader's address, for a node-to-node call that only the leader answers.
pub(crate) async fn to_the_leader(cluster: &Cluster) -> Option<Response> {
    let leader = cluster.raft.current_leader().await;
    if leader == Some(cluster.node_id) {
        return None;
    }
    let addr = leader.and_then(|l| cluster.store.node(l).ok().flatten()).map(|r| r.addr);
    let message = wharf_api::ApiMessage { message: "ask the leader".into(), leader: addr };
    Some(crate::typed_response(StatusCode::MISDIRECTED_REQUEST, &message))
}

pub(crate) async fn heartbeat(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let (identity, record) = match peer_node(&cluster, &req) {
        Ok((identity, Some(record))) => (identity, record),
        Ok(_) => return refuse(StatusCode::FORBIDDEN, "this node is not in the cluster's state"),
        Err(refusal) => return *refusal,
    };
    if let Some(redirect) = to_the_leader(&cluster).await {
        return redirect;
    }
    cluster.heartbeats.seen(identity.node_id, Instant::now());
    if record.state != "ready" {
        let ready = Command::SetNodeState { id: identity.node_id, state: "ready".into(), at: crate::now() };
        match cluster.proposer.propose(ready).await {
            Ok(_) => tracing::info!(node_id = identity.node_id, "node is ready"),
            Err(e) => tracing::warn!(node_id = identity.node_id, error = %e, "recording a ready node failed"),
        }
    }
    let managers = match cluster.store.nodes() {
        Ok(nodes) => {
            nodes.into_iter().filter(|(_, n)| !n.removed && n.role == "manager").map(|(_, n)| n.addr).collect()
        }
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("reading the nodes failed: {e}")),
    };
    let Some(role) = NodeRole::parse(&record.role) else {
        return refuse(StatusCode::CONFLICT, "the node's recorded role is unknown");
    };
    let reply = HeartbeatReply {
        period_ms: cluster.heartbeats.period.as_millis() as u64,
        role,
        raft_member: raft_members(&cluster).contains(&identity.node_id),
        managers,
    };
    crate::typed_response(StatusCode::OK, &reply)
}

/// Signs a node certificate for `identity` from `csr_pem`, records its expiry, and returns what
/// the node receives (with the manager keys when the role is manager). A manager's certificate
/// names its address and host name, so it serves clients under them (whoever
/// has the manager token, or was promoted by an administrator, is trusted with the CA key
/// anyway); a worker's names nothing and is no server certificate (`wharf_pki`), since a
/// worker's address and host name are only what it claimed.
pub(crate) async fn issue(
    cluster: &Cluster,
    csr_pem: &str,
    identity: &NodeIdentity,
    addr: &str,
    hostname: &str,
    extra_names: &[String],
) -> Result<JoinResponse, Response> {
    let names = match identity.role {
        NodeRole::Manager => wharf_pki::node_names(&[addr], hostname, extra_names),
        NodeRole::Worker => Vec::new(),
    };
    let validity = cluster.node_cert_validity;
    let cert_pem = cluster
        .ca
        .sign_node_csr(csr_pem, identity, &names, validity)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("invalid certificate signing request: {e}")))?;
    let not_after = wharf_pki::validity(&cert_pem).map(|(_, after)| after.unix_timestamp().max(0) as u64).unwrap_or(0);
    let record = Command::SetNodeCert { id: identity.node_id, not_after };
    if let Err(e) = cluster.proposer.propose(record).await {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the cluster cannot record the certificate: {e}"),
        ));
    }
    Ok(JoinResponse {
        node_id: identity.node_id,
        cluster_id: cluster.cluster_id.clone(),
        role: identity.role,
        cert_pem,
        ca_pem: cluster.ca.cert_pem().to_owned(),
        manager_secrets: (identity.role == NodeRole::Manager).then(|| cluster.manager_secrets.clone()),
    })
}

/// The JSON body of a node-to-node request (at most 64 KiB); `what` names it in refusals.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(req: Request, what: &str) -> Result<T, Response> {
    let body = crate::read_body(req.into_body(), 64 * 1024)
        .await
        .map_err(|(status, why)| refuse(status, &format!("{what}: {why}")))?;
    serde_json::from_slice(&body).map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("invalid {what}: {e}")))
}

pub(crate) async fn renew(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let (identity, record) = match peer_node(&cluster, &req) {
        Ok((identity, Some(record))) => (identity, record),
        Ok(_) => return refuse(StatusCode::FORBIDDEN, "this node is not in the cluster's state"),
        Err(refusal) => return *refusal,
    };
    let request: RenewRequest = match json_body(req, "renewal request").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let Some(role) = NodeRole::parse(&record.role) else {
        return refuse(StatusCode::CONFLICT, "the node's recorded role is unknown");
    };
    if role == NodeRole::Worker && raft_members(&cluster).contains(&identity.node_id) {
        return refuse(
            StatusCode::CONFLICT,
            "the node is still a Raft member; it gets a worker certificate once it left",
        );
    }
    let new_identity = NodeIdentity { node_id: identity.node_id, role, cluster_id: cluster.cluster_id.clone() };
    // A manager keeps the names it has (a worker being promoted has none).
    let names = if record.role == NodeRole::Manager.as_str() { request.names.as_slice() } else { &[] };
    let response = match issue(&cluster, &request.csr_pem, &new_identity, &record.addr, &record.hostname, names).await {
        Ok(response) => response,
        Err(refusal) => return refusal,
    };
    tracing::info!(node_id = identity.node_id, role = role.as_str(), "node certificate issued");
    json_response(StatusCode::OK, serde_json::to_vec(&response).unwrap_or_default())
}

/// Runs on every manager for as long as it serves; while it leads, marks nodes down whose
/// heartbeats stopped.
pub async fn watch_heartbeats(cluster: Arc<Cluster>) {
    let limit = cluster.heartbeats.period * MISSED_HEARTBEATS;
    let mut tick = tokio::time::interval(cluster.heartbeats.period / 2);
    loop {
        tick.tick().await;
        let leading = cluster.raft.current_leader().await == Some(cluster.node_id);
        let since = {
            let mut since = cluster.heartbeats.leader_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match (leading, *since) {
                (false, _) => {
                    *since = None;
                    continue;
                }
                (true, None) => *since.insert(Instant::now()),
                (true, Some(at)) => at,
            }
        };
        if let Err(e) =
            crate::join_tokens::seal_legacy_join_tokens(&*cluster.proposer, &cluster.store, &cluster.ca).await
        {
            tracing::warn!(error = %e, "sealing the join tokens an earlier version kept in clear failed");
        }
        let Ok(nodes) = cluster.store.nodes() else { continue };
        let last_seen = cluster.heartbeats.last_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for id in overdue(&nodes, &last_seen, since, Instant::now(), limit) {
            let down = Command::SetNodeState { id, state: "down".into(), at: crate::now() };
            match cluster.proposer.propose(down).await {
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
