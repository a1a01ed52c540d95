//! The cluster's wire contracts: what nodes send each other (join, heartbeat, renewal) and what
//! the node API answers (the node list, join tokens, role changes). The server (`wharf-http`)
//! and every client (the CLI, the agent, `wharf join`, the tests) share these types, so a field
//! renamed on one side is a compile error on the other, not a `?` printed silently.

use serde::{Deserialize, Serialize};

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<NodeRole> {
        match s {
            "manager" => Some(NodeRole::Manager),
            "worker" => Some(NodeRole::Worker),
            _ => None,
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a node's heartbeats arrive, as the node list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Before its first heartbeat.
    Unknown,
    /// Its heartbeats arrive.
    Ready,
    /// It missed three heartbeats.
    Down,
    /// Removed from the cluster: its id is never given again and its certificate is refused.
    Removed,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Ready => "ready",
            NodeState::Down => "down",
            NodeState::Removed => "removed",
        }
    }

    /// The state a record holds (`ready`, `down`; anything else is `unknown`).
    pub fn parse(s: &str) -> NodeState {
        match s {
            "ready" => NodeState::Ready,
            "down" => NodeState::Down,
            "removed" => NodeState::Removed,
            _ => NodeState::Unknown,
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a joining node sends (`POST /cluster/join`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub csr_pem: String,
    pub hostname: String,
    /// Where the node serves (host:port).
    pub advertise: String,
}

/// The keys every manager holds, sent to a node that joins or renews as a manager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagerSecrets {
    pub ca_key_pem: String,
    pub token_key_pem: String,
    pub token_cert_pem: String,
}

/// What a joining or renewing node gets back: its certificate for the role the cluster holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: u64,
    pub cluster_id: String,
    pub role: NodeRole,
    pub cert_pem: String,
    pub ca_pem: String,
    /// For managers only.
    pub manager_secrets: Option<ManagerSecrets>,
    /// For managers only: where the cluster keeps blob bytes (`filesystem` or an `s3://`
    /// location, without credentials), which a manager must use too.
    #[serde(default)]
    pub blob_storage: Option<String>,
}

/// A certificate request from a node that has one already (`POST /cluster/renew`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
    /// The names the node's certificate covers now, so a manager keeps those it was given
    /// (`--san`, its listen address); a worker's certificate names nothing, whatever it asks.
    #[serde(default)]
    pub names: Vec<String>,
}

/// What a heartbeat returns (`POST /cluster/heartbeat`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// When to send the next one.
    pub period_ms: u64,
    /// The role the cluster wants this node in.
    pub role: NodeRole,
    /// Whether the node is a voter or learner of Raft now.
    pub raft_member: bool,
    /// The managers' addresses, for finding the leader when this one goes away.
    pub managers: Vec<String>,
}

/// What a manager answers `POST /cluster/members` (it added the caller to Raft).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberAdded {
    pub node_id: u64,
    pub voter: bool,
}

/// A node's place in Raft, as one manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftMembership {
    Voter,
    Learner,
    None,
}

impl RaftMembership {
    pub fn as_str(self) -> &'static str {
        match self {
            RaftMembership::Voter => "voter",
            RaftMembership::Learner => "learner",
            RaftMembership::None => "none",
        }
    }
}

/// Whether the leader replicates to a node, as one manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reachability {
    #[serde(rename = "reachable")]
    Reachable,
    #[serde(rename = "unreachable")]
    Unreachable,
    #[serde(rename = "catching up")]
    CatchingUp,
    #[serde(rename = "unknown")]
    Unknown,
    /// This manager is not the leader: only the leader knows.
    #[serde(rename = "unknown (ask the leader)")]
    AskTheLeader,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Reachable => "reachable",
            Reachability::Unreachable => "unreachable",
            Reachability::CatchingUp => "catching up",
            Reachability::Unknown => "unknown",
            Reachability::AskTheLeader => "unknown (ask the leader)",
        }
    }
}

/// One node of the list (`GET /api/nodes`, `GET /cluster/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    pub role: NodeRole,
    pub hostname: String,
    pub addr: String,
    pub state: NodeState,
    /// When `state` last changed (seconds since the Unix epoch).
    pub state_since: u64,
    /// When the node's certificate expires (seconds since the Unix epoch; 0 if unknown).
    pub cert_not_after: u64,
    pub raft: RaftMembership,
    pub leader: bool,
    pub reachability: Reachability,
    /// Whether this is the manager that answered.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// A role change (`PUT /api/nodes/{id}/role`) and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleChange {
    pub role: NodeRole,
}

/// The answer to a role change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRoleInfo {
    pub id: u64,
    pub role: NodeRole,
}

/// A join token (`GET|POST /api/cluster/tokens/{role}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinTokenInfo {
    pub role: NodeRole,
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_travel_as_the_words_the_cli_and_tests_know() {
        assert_eq!(serde_json::to_string(&NodeRole::Manager).expect("json"), "\"manager\"");
        assert_eq!(serde_json::to_string(&NodeState::Removed).expect("json"), "\"removed\"");
        assert_eq!(serde_json::to_string(&Reachability::AskTheLeader).expect("json"), "\"unknown (ask the leader)\"");
        assert_eq!(serde_json::to_string(&RaftMembership::None).expect("json"), "\"none\"");
        for role in [NodeRole::Manager, NodeRole::Worker] {
            assert_eq!(NodeRole::parse(role.as_str()), Some(role));
        }
        for state in [NodeState::Unknown, NodeState::Ready, NodeState::Down, NodeState::Removed] {
            assert_eq!(NodeState::parse(state.as_str()), state);
        }
        let info = NodeInfo {
            id: 2,
            role: NodeRole::Worker,
            hostname: "h".into(),
            addr: "a:1".into(),
            state: NodeState::Ready,
            state_since: 1,
            cert_not_after: 2,
            raft: RaftMembership::None,
            leader: false,
            reachability: Reachability::CatchingUp,
            is_self: true,
        };
        let json: serde_json::Value = serde_json::to_value(&info).expect("json");
        assert_eq!(json["self"], true);
        assert_eq!(json["reachability"], "catching up");
        assert_eq!(serde_json::from_value::<NodeInfo>(json).expect("back"), info);
    }
}

/// `POST /cluster/blobs/{digest}/copy`: a manager that has just stored a pushed blob asks
/// another manager to copy it from it (and make it durable) before it acknowledges the push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobCopyRequest {
    /// The blob's size in bytes.
    pub size: u64,
    /// The node to copy it from (a manager of the cluster that holds it); none: the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}

/// What a task runs, as the orchestrator made it from its service: the task spec, the service
/// name and the host-mode ports it publishes. Kept with the task in the state and sent to its
/// node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskBlueprint {
    pub service_name: String,
    pub spec: crate::docker::TaskSpec,
    #[serde(default)]
    pub host_ports: Vec<crate::docker::PortConfig>,
    /// The access collection of the service: only nodes on its path may run the task (empty
    /// for services made before collections: any node).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collection: String,
    /// Set for a container made with `docker run` (a task of no service): what of its node it
    /// may use, as its creator's grants allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSettings>,
}

/// The host settings of a container made with `docker run`: each was allowed by its
/// creator's grants (`host.privileged`, `host.namespaces`, ...) before it was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSettings {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `host`, `none` or empty (the engine's default bridge).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_mode: String,
    /// `host` or empty, for each.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipc_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uts_mode: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::containers::DeviceMapping>,
    /// The container goes once it ends (`--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_remove: bool,
    /// Its standard input closes when the first attached client leaves (`docker run -i`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_once: bool,
}

/// An agent's long poll for its tasks (`POST /cluster/assignments`): the answer comes at
/// once when the node's tasks differ from `known` (the `version` of the last answer; 0 at
/// first), else as soon as they change, or after `wait_ms` with the same set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AssignmentsRequest {
    pub known: u64,
    pub wait_ms: u64,
    /// What the node's engine is, reported when it changed (at the first poll).
    #[serde(default)]
    pub description: Option<EngineReport>,
}

/// A node's engine as its agent reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineReport {
    pub hostname: String,
    pub os: String,
    pub architecture: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub engine_version: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The complete set of a node's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    /// Changes whenever a task of the set changes (a digest of ids, versions and desired
    /// states).
    pub version: u64,
    /// The cluster's id, which the agent labels its containers with.
    pub cluster_id: String,
    pub tasks: Vec<Assignment>,
}

/// One task of a node, with what the managers want of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: String,
    pub service_id: String,
    pub slot: u64,
    pub blueprint: TaskBlueprint,
    /// `running`, `shutdown` or `remove`.
    pub desired: String,
    /// What the node last reported (`assigned` before it did).
    pub state: String,
    /// The credentials the service's creator sent for the image's registry, when it is not
    /// the cluster's (`--with-registry-auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<crate::docker::RegistryAuth>,
    /// The secrets and configs its container gets as files (only a node that runs a task
    /// using one ever receives it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<TaskFile>,
    /// The cluster networks its container joins, resolved by the manager.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<TaskNetwork>,
}

/// A cluster network as a node's engine makes it: a bridge of that name, labelled with the
/// network's id, that the container joins under its aliases (the service's name first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub id: String,
    pub name: String,
    pub internal: bool,
    pub aliases: Vec<String>,
}

/// A secret's or a config's data as a file in a task's container: at `target` (absolute),
/// owned by `uid`:`gid`, with permissions `mode`. Its `Debug` leaves the data out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub secret: bool,
    #[serde(with = "data")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for TaskFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFile")
            .field("target", &self.target)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// Bytes as a base64 string.
mod data {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// What an agent observed of its tasks (`POST /cluster/tasks`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskReports {
    pub reports: Vec<TaskReportWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReportWire {
    pub id: String,
    pub state: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub err: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub exit_code: i64,
    /// The host ports the container publishes, once it runs.
    #[serde(default)]
    pub ports: Vec<crate::docker::PortConfig>,
}

/// A node asks for a registry token to pull its tasks' images (`POST /cluster/registry-token`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeTokenRequest {
    pub repositories: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeTokenResponse {
    pub token: String,
}
