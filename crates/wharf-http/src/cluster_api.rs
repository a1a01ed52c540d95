//! Joining the cluster. `POST /cluster/join` takes a join token and a certificate signing
//! request and returns the node's certificate (and, to managers, the keys every manager
//! holds); it needs no client certificate, since the joiner has none yet. `POST
//! /cluster/members` is then called by a new manager, with its certificate, to be added to Raft
//! as a learner and promoted to voter; a follower answers 421 with the leader's address.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use openraft::ChangeMembers;
use wharf_pki::{JoinToken, NodeIdentity, NodeRole};
use wharf_store::{Command, Outcome, Proposer};

use wharf_api::NodeState;
use wharf_api::cluster::{JoinRequest, MemberAdded, NodeInfo, RaftMembership, Reachability};

use crate::PeerCertificate;
use crate::raft::{Cluster, check_peer, refuse};

pub fn cluster_router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/cluster/join", post(join))
        .route("/cluster/members", post(add_member))
        .route("/cluster/nodes", axum::routing::get(nodes_for_a_node))
        .route("/cluster/heartbeat", post(crate::nodes::heartbeat))
        .route("/cluster/renew", post(crate::nodes::renew))
        .with_state(cluster)
}

/// The nodes of the cluster: every node the store knows, with what this manager's Raft knows
/// of the managers (voter or learner, leader, and from the leader whether it replicates).
pub(crate) fn node_list(cluster: &Cluster) -> Result<Vec<NodeInfo>, wharf_store::StoreError> {
    use openraft::type_config::async_runtime::WatchReceiver;
    let metrics = cluster.raft.metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let nodes = cluster.store.nodes()?;
    // An isolated leader has stepped down: it names no leader.
    let isolated = wharf_raft::leadership(&cluster.raft) == wharf_raft::Leadership::Isolated;
    let leader = metrics.current_leader.filter(|_| !isolated);
    let reachability = |id: u64| match &metrics.replication {
        Some(_) if isolated && id == cluster.node_id => Reachability::Reachable,
        Some(_) if isolated => Reachability::Unreachable,
        Some(replication) => match replication.get(&id) {
            Some(Some(_)) => Reachability::Reachable,
            Some(None) => Reachability::CatchingUp,
            None if id == cluster.node_id => Reachability::Reachable,
            None => Reachability::Unknown,
        },
        None => Reachability::AskTheLeader,
    };
    Ok(nodes
        .into_iter()
        .map(|(id, node)| {
            let raft = if voters.contains(&id) {
                RaftMembership::Voter
            } else if learners.contains(&id) {
                RaftMembership::Learner
            } else {
                RaftMembership::None
            };
            NodeInfo {
                id,
                role: NodeRole::parse(&node.role).unwrap_or(NodeRole::Worker),
                hostname: node.hostname,
                addr: node.addr,
                state: if node.removed { NodeState::Removed } else { NodeState::parse(&node.state) },
                state_since: node.state_since,
                cert_not_after: node.cert_not_after,
                raft,
                leader: leader == Some(id),
                reachability: reachability(id),
                is_self: id == cluster.node_id,
            }
        })
        .collect())
}

/// `wharf node ls --data-dir`: the node list for a caller holding a manager certificate of
/// this cluster (the local node's own), with no account needed.
/// `GET /cluster/nodes`: the node list for any current node of this cluster, worker or
/// manager (`wharf node ls --data-dir` on that node's machine).
async fn nodes_for_a_node(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    if let Err(refusal) = crate::raft::peer_node(&cluster, &req) {
        return *refusal;
    }
    match node_list(&cluster) {
        Ok(list) => crate::typed_response(StatusCode::OK, &list),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The role a join request's token gives, once everything in the request has been checked:
/// nothing is recorded for a request refused here.
fn admit(cluster: &Cluster, request: &JoinRequest) -> Result<NodeRole, Box<Response>> {
    let token = JoinToken::parse(&request.token)
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "malformed join token (WHARF-1-<CA digest>-<secret>)"))
        .map_err(Box::new)?;
    if !token.pins(cluster.ca.cert_der()) {
        return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "the join token is for another cluster's CA")));
    }
    let role = crate::join_tokens::role_of(&cluster.store, &cluster.ca, &request.token).ok_or_else(|| {
        Box::new(refuse(StatusCode::UNAUTHORIZED, "the join token is not valid (it may have been rotated)"))
    })?;
    if !wharf_api::valid_hostname(&request.hostname) {
        let shown: String = request.hostname.chars().take(100).collect();
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            &format!("host name {shown:?} is not an RFC 1123 name (letters, digits, hyphens, dots)"),
        )));
    }
    wharf_api::parse_advertise(&request.advertise)
        .map_err(|e| Box::new(refuse(StatusCode::BAD_REQUEST, &format!("invalid advertise address: {e}"))))?;
    wharf_pki::check_csr(&request.csr_pem)
        .map_err(|e| Box::new(refuse(StatusCode::BAD_REQUEST, &format!("invalid certificate signing request: {e}"))))?;
    Ok(role)
}

async fn join(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let source = crate::peer_ip(&req);
    if !cluster.join_limiter.try_take(&source, crate::now_ms()) {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "too many join attempts from this address; try again later");
    }
    let request: JoinRequest = match crate::nodes::json_body(req, "join request").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let role = match admit(&cluster, &request) {
        Ok(role) => role,
        Err(refusal) => return *refusal,
    };
    let add = Command::AddNode {
        role: role.as_str().into(),
        hostname: request.hostname.clone(),
        addr: request.advertise.clone(),
        at: crate::now(),
    };
    let node_id = match cluster.proposer.propose(add).await {
        Ok(Outcome::NodeAdded { id }) => id,
        Ok(other) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("unexpected outcome {other:?}")),
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("the cluster cannot add a node now: {e}")),
    };
    let identity = NodeIdentity { node_id, role, cluster_id: cluster.cluster_id.clone() };
    let (addr, hostname) = (&request.advertise, &request.hostname);
    let response = match crate::nodes::issue(&cluster, &request.csr_pem, &identity, addr, hostname, &[]).await {
        Ok(response) => response,
        Err(refusal) => {
            // The request was checked before the node was recorded, so this is rare (no
            // quorum for the certificate's record): the node it would have been goes again.
            if let Err(e) = cluster.proposer.propose(Command::RemoveNode { id: node_id }).await {
                tracing::warn!(node_id, error = %e, "removing the node of a failed join failed");
            }
            return refusal;
        }
    };
    tracing::info!(node_id, role = role.as_str(), addr = %request.advertise, "node joined");
    crate::typed_response(StatusCode::OK, &response)
}

/// Adds the calling manager to Raft: as a learner (it catches up), then as a voter.
async fn add_member(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    if let Err(refusal) = check_peer(&cluster, &req) {
        return *refusal;
    }
    let Some(identity) = req.extensions().get::<PeerCertificate>().and_then(|c| c.0.as_deref().cloned()) else {
        return refuse(StatusCode::UNAUTHORIZED, "no node certificate");
    };
    let id = identity.node_id;
    if let Some(redirect) = crate::nodes::to_the_leader(&cluster).await {
        return redirect;
    }
    let Some(record) = cluster.store.node(id).ok().flatten().filter(|r| !r.removed && r.role == "manager") else {
        return refuse(
            StatusCode::FORBIDDEN,
            "this node is not a manager of the cluster (removed, demoted or unknown)",
        );
    };
    if let Err(e) = cluster.raft.add_learner(id, openraft::BasicNode::new(&record.addr), true).await {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("adding {id} as a learner failed: {e}"));
    }
    let voters: BTreeSet<u64> = [id].into_iter().collect();
    if let Err(e) = cluster.raft.change_membership(ChangeMembers::AddVoterIds(voters), false).await {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("promoting {id} to voter failed: {e}"));
    }
    tracing::info!(node_id = id, addr = %record.addr, "manager added to raft as a voter");
    crate::typed_response(StatusCode::OK, &MemberAdded { node_id: id, voter: true })
}
