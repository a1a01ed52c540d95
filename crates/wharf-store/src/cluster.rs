//! Cluster membership state: the cluster id, nodes (ids handed out in order and never
//! reused) and the join tokens, sealed (the store never sees them in clear: it keeps the bytes
//! the proposer sealed with the cluster's secrets key).

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::command::Outcome;
use crate::records::{NodeRecord, StoredNode};
use crate::refusal::Refusal;
use crate::store::{Store, StoreError, encode};
use crate::tables::{CLUSTER, NODES};

/// A change of the cluster's membership state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// Names the cluster, once.
    InitCluster { cluster_id: String },
    /// Adds a node under the next unused id.
    AddNode { role: String, hostname: String, addr: String, at: u64 },
    /// Marks a node removed: its id is never given again and its certificate is refused.
    RemoveNode { id: u64 },
    /// Sets the join token of a role in clear: what earlier versions wrote, kept so that
    /// their logs still apply. Wharf now writes [`ClusterCommand::SetSealedJoinToken`].
    SetJoinToken { role: String, token: String },
    /// Sets the join token of a role, sealed with the cluster's secrets key by the proposer,
    /// so neither the log nor the state ever holds it in clear; replaces a token in clear.
    SetSealedJoinToken { role: String, sealed: Vec<u8> },
    /// Changes a node's role (`manager` or `worker`); the leader then changes Raft's
    /// membership and the node renews its certificate for the new role.
    SetNodeRole { id: u64, role: String },
    /// Records that a node is `ready` (it sends heartbeats) or `down` (it stopped).
    SetNodeState { id: u64, state: String, at: u64 },
    /// Records when a node's current certificate expires.
    SetNodeCert { id: u64, not_after: u64 },
}

/// One line per command for logs: what it does and to what, never a password hash or a
/// session id.
impl std::fmt::Display for ClusterCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterCommand::InitCluster { cluster_id } => write!(f, "init-cluster {cluster_id}"),
            ClusterCommand::AddNode { role, hostname, .. } => write!(f, "add-node {role} {hostname}"),
            ClusterCommand::RemoveNode { id } => write!(f, "remove-node {id}"),
            ClusterCommand::SetJoinToken { role, .. } => write!(f, "set-join-token {role}"),
            ClusterCommand::SetNodeRole { id, role } => write!(f, "set-node-role {id} {role}"),
            ClusterCommand::SetNodeState { id, state, .. } => write!(f, "set-node-state {id} {state}"),
            ClusterCommand::SetNodeCert { id, not_after } => write!(f, "set-node-cert {id} until {not_after}"),
            ClusterCommand::SetSealedJoinToken { role, .. } => write!(f, "set-sealed-join-token {role}"),
        }
    }
}

fn get<T: DeserializeOwned>(txn: &WriteTransaction, key: &str) -> Result<Option<T>, StoreError> {
    let table = txn.open_table(CLUSTER)?;
    let raw = table.get(key)?.map(|v| v.value().to_vec());
    Ok(match raw {
        Some(raw) => Some(postcard::from_bytes(&raw)?),
        None => None,
    })
}

fn put<T: Serialize>(txn: &WriteTransaction, key: &str, value: &T) -> Result<(), StoreError> {
    txn.open_table(CLUSTER)?.insert(key, encode(value)?.as_slice())?;
    Ok(())
}

pub(crate) fn apply(txn: &WriteTransaction, command: &ClusterCommand) -> Result<Outcome, StoreError> {
    match command {
        ClusterCommand::InitCluster { cluster_id } => {
            if get::<String>(txn, "cluster_id")?.is_none() {
                put(txn, "cluster_id", cluster_id)?;
            }
            Ok(Outcome::Done)
        }
        ClusterCommand::AddNode { role, hostname, addr, at } => {
            let id = get::<u64>(txn, "next_node_id")?.unwrap_or(1);
            put(txn, "next_node_id", &(id + 1))?;
            let record = NodeRecord {
                role: role.clone(),
                hostname: hostname.clone(),
                addr: addr.clone(),
                created: *at,
                removed: false,
                state: "unknown".into(),
                state_since: *at,
                cert_not_after: 0,
            };
            txn.open_table(NODES)?.insert(id, encode(&StoredNode::V2(record))?.as_slice())?;
            Ok(Outcome::NodeAdded { id })
        }
        ClusterCommand::RemoveNode { id } => {
            // Removing twice is harmless: the second time changes nothing.
            let removed = node_in(txn, *id)?.removed;
            if removed {
                return Ok(Outcome::Done);
            }
            refuse_losing_the_last_manager(txn, *id)?;
            update_node(txn, *id, |record| record.removed = true)
        }
        ClusterCommand::SetNodeRole { id, role } => {
            if role != MANAGER {
                refuse_losing_the_last_manager(txn, *id)?;
            }
            update_node(txn, *id, |record| record.role = role.clone())
        }
        ClusterCommand::SetNodeState { id, state, at } => update_node(txn, *id, |record| {
            if record.state != *state {
                record.state = state.clone();
                record.state_since = *at;
            }
        }),
        ClusterCommand::SetNodeCert { id, not_after } => {
            update_node(txn, *id, |record| record.cert_not_after = *not_after)
        }
        ClusterCommand::SetJoinToken { role, token } => {
            put(txn, &format!("join_token:{role}"), token)?;
            Ok(Outcome::Done)
        }
        ClusterCommand::SetSealedJoinToken { role, sealed } => {
            put(txn, &format!("join_token_sealed:{role}"), sealed)?;
            txn.open_table(CLUSTER)?.remove(format!("join_token:{role}").as_str())?;
            Ok(Outcome::Done)
        }
    }
}

const MANAGER: &str = "manager";

/// Refuses a change that takes node `id` out of the managers when it is the last one: decided
/// here, inside apply, so two demotions or removals racing through different managers cannot
/// both pass a check made before proposing.
fn refuse_losing_the_last_manager(txn: &WriteTransaction, id: u64) -> Result<(), StoreError> {
    let nodes = txn.open_table(NODES)?;
    let mut managers = Vec::new();
    for entry in nodes.iter()? {
        let (key, raw) = entry?;
        let record = postcard::from_bytes::<StoredNode>(raw.value())?.into_current();
        if !record.removed && record.role == MANAGER {
            managers.push(key.value());
        }
    }
    if managers == [id] { Err(Refusal::LastManager.into()) } else { Ok(()) }
}

/// Changes a node that is still a member; a removed node stays as it was removed.
fn update_node(txn: &WriteTransaction, id: u64, change: impl FnOnce(&mut NodeRecord)) -> Result<Outcome, StoreError> {
    let mut record = node_in(txn, id)?;
    if record.removed {
        return Err(Refusal::NodeUnknown(id).into());
    }
    change(&mut record);
    txn.open_table(NODES)?.insert(id, encode(&StoredNode::V2(record))?.as_slice())?;
    Ok(Outcome::Done)
}

pub(crate) fn node_in(txn: &WriteTransaction, id: u64) -> Result<NodeRecord, StoreError> {
    let nodes = txn.open_table(NODES)?;
    let raw = nodes.get(id)?.map(|v| v.value().to_vec()).ok_or(Refusal::NodeUnknown(id))?;
    Ok(postcard::from_bytes::<StoredNode>(&raw)?.into_current())
}

impl Store {
    /// The cluster's id, once set.
    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        self.cluster_value("cluster_id")
    }

    /// The join token of `role`, as the proposer sealed it.
    pub fn sealed_join_token(&self, role: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.cluster_value(&format!("join_token_sealed:{role}"))
    }

    /// The join token of `role` in clear, as an earlier version stored it, until a sealed one
    /// replaces it.
    pub fn legacy_join_token(&self, role: &str) -> Result<Option<String>, StoreError> {
        self.cluster_value(&format!("join_token:{role}"))
    }

    fn cluster_value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CLUSTER)?;
        match table.get(key)? {
            Some(raw) => Ok(Some(postcard::from_bytes(raw.value())?)),
            None => Ok(None),
        }
    }

    /// The node `id`, removed or not.
    pub fn node(&self, id: u64) -> Result<Option<NodeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODES)?;
        let Some(raw) = table.get(id)? else { return Ok(None) };
        Ok(Some(postcard::from_bytes::<StoredNode>(raw.value())?.into_current()))
    }

    /// Every node ever added, removed ones included, by id.
    pub fn nodes(&self) -> Result<Vec<(u64, NodeRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.push((id.value(), postcard::from_bytes::<StoredNode>(raw.value())?.into_current()));
        }
        Ok(out)
    }
}
