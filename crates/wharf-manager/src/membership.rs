//! Who is in the cluster and in Raft: the node list, adding a new manager to Raft (as a
//! learner, then a voter), taking one out, changing a node's role and removing a node. Raft's
//! membership changes only on the leader; elsewhere the answer names it.

use std::collections::BTreeSet;

use openraft::ChangeMembers;
use openraft::type_config::async_runtime::WatchReceiver;
use wharf_api::cluster::{MemberAdded, NodeInfo, NodeRoleInfo, RaftMembership, Reachability};
use wharf_api::{NodeRole, NodeState};
use wharf_pki::NodeIdentity;
use wharf_store::{ClusterCommand, Origin, ProposerExt};

use crate::{ClusterError, Manager};

impl Manager {
    /// The nodes Raft's membership holds now, voters and learners.
    pub fn raft_members(&self) -> Vec<u64> {
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        metrics.membership_config.membership().nodes().map(|(id, _)| *id).collect()
    }

    /// Refuses with the leader's address unless this manager leads.
    pub(crate) async fn leading(&self) -> Result<(), ClusterError> {
        let leader = self.raft.current_leader().await;
        if leader == Some(self.node_id) {
            return Ok(());
        }
        let addr = leader.and_then(|l| self.store.node(l).ok().flatten()).map(|r| r.addr);
        Err(ClusterError::NotLeader { leader: addr })
    }

    /// Adds the calling manager to Raft: as a learner (it catches up), then as a voter.
    pub async fn add_member(&self, identity: &NodeIdentity) -> Result<MemberAdded, ClusterError> {
        self.check_manager(identity)?;
        let id = identity.node_id;
        self.leading().await?;
        let record = self.store.node(id).ok().flatten().filter(|r| !r.removed && r.role == NodeRole::Manager.as_str());
        let Some(record) = record else {
            return Err(ClusterError::Forbidden(
                "this node is not a manager of the cluster (removed, demoted or unknown)".into(),
            ));
        };
        if let Err(e) = self.raft.add_learner(id, openraft::BasicNode::new(&record.addr), true).await {
            return Err(ClusterError::Unavailable(format!("adding {id} as a learner failed: {e}")));
        }
        let voters: BTreeSet<u64> = [id].into_iter().collect();
        if let Err(e) = self.raft.change_membership(ChangeMembers::AddVoterIds(voters), false).await {
            return Err(ClusterError::Unavailable(format!("promoting {id} to voter failed: {e}")));
        }
        tracing::info!(node_id = id, addr = %record.addr, "manager added to raft as a voter");
        Ok(MemberAdded { node_id: id, voter: true })
    }

    /// The nodes of the cluster: every node the store knows, with what this manager's Raft
    /// knows of the managers (voter or learner, leader, and from the leader whether it
    /// replicates to them).
    pub fn node_list(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let nodes = self.store.nodes().map_err(|e| ClusterError::Internal(e.to_string()))?;
        // An isolated leader has stepped down: it names no leader.
        let isolated = wharf_raft::leadership(&self.raft) == wharf_raft::Leadership::Isolated;
        let leader = metrics.current_leader.filter(|_| !isolated);
        let reachability = |id: u64| match &metrics.replication {
            Some(_) if isolated && id == self.node_id => Reachability::Reachable,
            Some(_) if isolated => Reachability::Unreachable,
            Some(replication) => match replication.get(&id) {
                Some(Some(_)) => Reachability::Reachable,
                Some(None) => Reachability::CatchingUp,
                None if id == self.node_id => Reachability::Reachable,
                None => Reachability::Unknown,
            },
            None => Reachability::AskTheLeader,
        };
        let raft = |id: u64| {
            if voters.contains(&id) {
                RaftMembership::Voter
            } else if learners.contains(&id) {
                RaftMembership::Learner
            } else {
                RaftMembership::None
            }
        };
        Ok(nodes
            .into_iter()
            .map(|(id, node)| NodeInfo {
                id,
                role: NodeRole::parse(&node.role).unwrap_or(NodeRole::Worker),
                hostname: node.hostname,
                addr: node.addr,
                state: if node.removed { NodeState::Removed } else { NodeState::parse(&node.state) },
                state_since: node.state_since,
                cert_not_after: node.cert_not_after,
                raft: raft(id),
                leader: leader == Some(id),
                reachability: reachability(id),
                is_self: id == self.node_id,
            })
            .collect())
    }

    /// Takes manager `id` out of Raft's membership. Only the leader can; elsewhere the answer
    /// names the leader (or says none is known). The leader takes itself out by handing
    /// leadership to another voter first and naming it.
    async fn leave_raft(&self, id: u64) -> Result<(), ClusterError> {
        let leader_addr = |leader: Option<u64>| leader.and_then(|l| self.store.node(l).ok().flatten()).map(|n| n.addr);
        let redirect = |addr: Option<String>| match addr {
            Some(addr) => ClusterError::NotLeader { leader: Some(addr) },
            None => ClusterError::NoLeader,
        };
        if id == self.node_id && self.raft.current_leader().await == Some(id) {
            let metrics = self.raft.metrics().borrow_watched().clone();
            let Some(successor) = metrics.membership_config.membership().voter_ids().find(|v| *v != id) else {
                return Err(ClusterError::Conflict("this is the only manager".into()));
            };
            let _ = self.raft.trigger().transfer_leader(successor).await;
            let moved = self
                .raft
                .wait(Some(std::time::Duration::from_secs(5)))
                .metrics(|m| m.current_leader.is_some_and(|l| l != id), "leadership handed over")
                .await;
            return Err(redirect(leader_addr(moved.ok().and_then(|m| m.current_leader))));
        }
        let members: BTreeSet<u64> = [id].into_iter().collect();
        if let Err(e) = self.raft.change_membership(ChangeMembers::RemoveVoters(members.clone()), false).await {
            if let Some(forward) = e.forward_to_leader() {
                return Err(redirect(forward.leader_node.as_ref().map(|n| n.addr.clone())));
            }
            return Err(ClusterError::Conflict(format!("removing {id} from raft failed: {e}")));
        }
        let _ = self.raft.change_membership(ChangeMembers::RemoveNodes(members), false).await;
        Ok(())
    }

    /// The managers that are neither removed nor demoted.
    fn managers(&self) -> Result<Vec<u64>, ClusterError> {
        let nodes = self.store.nodes()?;
        let manager = NodeRole::Manager.as_str();
        Ok(nodes.into_iter().filter(|(_, n)| !n.removed && n.role == manager).map(|(id, _)| id).collect())
    }

    /// Removes a node, for `by`: a manager leaves Raft first (on the leader), then the node is
    /// marked removed, so its id is never reused and its certificate is refused by the node
    /// routes.
    pub async fn remove_node(&self, id: u64, by: Origin) -> Result<(), ClusterError> {
        if id == self.node_id {
            return Err(ClusterError::Conflict("a manager cannot remove itself; ask another manager".into()));
        }
        let node = self.store.node(id)?.ok_or_else(|| ClusterError::NotFound("no such node".into()))?;
        if node.removed {
            return Err(ClusterError::NotFound("the node was removed already".into()));
        }
        if node.role == NodeRole::Manager.as_str() {
            self.leave_raft(id).await?;
        }
        self.proposer.propose_by(by, ClusterCommand::RemoveNode { id }).await?;
        Ok(())
    }

    /// Promotes a worker or demotes a manager. The state records the new role at once; a
    /// demoted manager leaves Raft first. The node learns of it from its next heartbeat, renews
    /// its certificate for the role and restarts into it (a promoted node then joins Raft).
    pub async fn set_role(&self, id: u64, role: NodeRole, by: Origin) -> Result<NodeRoleInfo, ClusterError> {
        let node =
            self.store.node(id)?.filter(|n| !n.removed).ok_or_else(|| ClusterError::NotFound("no such node".into()))?;
        if node.role != role.as_str() {
            if role == NodeRole::Worker {
                if self.managers()? == [id] {
                    return Err(ClusterError::Conflict("the cluster needs at least one manager".into()));
                }
                self.leave_raft(id).await?;
            }
            self.proposer.propose_by(by, ClusterCommand::SetNodeRole { id, role: role.as_str().into() }).await?;
        }
        Ok(NodeRoleInfo { id, role })
    }
}
