//! The Docker Engine API's objects, as the `docker` CLI sends and reads them (moby's
//! `api/swagger.yaml`, API 1.41 and later): services, tasks, nodes, the version and info
//! answers, and the error body. Only the fields Wharf acts on are typed; unknown fields of a
//! request are dropped, as the engine drops them. Field names are the API's (PascalCase).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API version Wharf's Docker-compatible API speaks (the highest it advertises).
pub const API_VERSION: &str = "1.41";
/// The lowest API version it accepts in a `/v1.NN/` path.
pub const MIN_API_VERSION: &str = "1.24";

/// The one error body of the Docker API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectVersion {
    pub index: u64,
}

/// What `POST /services/create` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedResponse {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Warnings", default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What `POST /services/{id}/update` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateResponse {
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub task_template: TaskSpec,
    #[serde(default)]
    pub mode: ServiceMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
    /// How a new task template replaces the running tasks (`--update-parallelism`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    /// How a rollback replaces them (`--rollback-parallelism`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
}

/// A rolling update's (or a rollback's) pace: `parallelism` slots at a time (0: all at once),
/// `delay` nanoseconds after a batch runs before the next starts, and whether the new task
/// starts before the old one stops (`start-first`) or after (`stop-first`, the default); and
/// its watch: what it does (`pause`, the default, `continue`, or `rollback`) once more than
/// `max_failure_ratio` of the slots had a new task fail while it ran or within `monitor`
/// nanoseconds after the last one started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfig {
    #[serde(default)]
    pub parallelism: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub monitor: i64,
    #[serde(default, skip_serializing_if = "is_zero_ratio")]
    pub max_failure_ratio: f32,
}

// The ratio is a float only on the wire; specs compare as text.
impl Eq for UpdateConfig {}

fn is_zero_ratio(r: &f32) -> bool {
    *r == 0.0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceMode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated: Option<Replicated>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_job: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_job: Option<Empty>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Replicated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
}

/// An object the API sends as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskSpec {
    #[serde(default)]
    pub container_spec: ContainerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default)]
    pub force_update: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The cluster networks its containers join (`--network`), by id or name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
}

/// A task's network (`--network name=backend,alias=db`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    #[serde(default)]
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

/// `POST /networks/create`, as the CLI sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub ingress: bool,
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM", default)]
    pub ipam: Option<serde_json::Value>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub config_only: bool,
    #[serde(default)]
    pub config_from: Option<serde_json::Value>,
}

/// What `POST /networks/create` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCreated {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Warning")]
    pub warning: String,
}

/// A network as `GET /networks` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: serde_json::Value,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_only: bool,
    pub containers: BTreeMap<String, serde_json::Value>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "TTY", default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// The service's health check (the image's when unset): a task runs only once healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// The container's root filesystem read-only (`--read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Standard input kept open (compose's `stdin_open`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_stdin: bool,
    /// `--oom-score-adj`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// Volumes, bind mounts and tmpfs mounts (`--mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Secrets given to the container as files (`--secret`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretReference>,
    /// Configs given to the container as files (`--config`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigReference>,
    /// Kernel capabilities added to the engine's default set (`--cap-add`: needs
    /// `host.capabilities`, which Restricted Control withholds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_add: Vec<String>,
    /// Capabilities taken away (`--cap-drop`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_drop: Vec<String>,
}

/// A mount of a task's container (`--mount type=volume|bind|tmpfs,...`), as the engine takes
/// it: a named volume is created on the task's node by its engine when it does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountSpec {
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default)]
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consistency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<serde_json::Value>,
}

impl MountSpec {
    /// Whether this mount reaches the node's own files or devices: a bind mount, or a volume
    /// with driver options (`volume-opt=type=none,o=bind,device=/` binds the node's root; a
    /// device or a network share mounts as well).
    pub fn reaches_the_node(&self) -> bool {
        let driver = self.volume_options.as_ref().and_then(|o| o.get("DriverConfig")).is_some_and(|d| !empty(d));
        self.kind == "bind" || (self.kind == "volume" && driver)
    }
}

/// Where a secret or a config appears in a container: a file of that name (a relative one
/// under `/run/secrets` for a secret, under `/` for a config), owned by `UID`:`GID`, with
/// permissions `Mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileTarget {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "UID", default)]
    pub uid: String,
    #[serde(rename = "GID", default)]
    pub gid: String,
    #[serde(default)]
    pub mode: u32,
}

/// A service's use of a secret (`--secret source=NAME,target=...`): the CLI resolves the
/// name to the id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTarget>,
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    #[serde(default)]
    pub secret_name: String,
}

/// A service's use of a config (`--config source=NAME,target=...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTarget>,
    /// Swarm's credential-spec configs (`Runtime`): not carried out by Wharf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<serde_json::Value>,
    #[serde(rename = "ConfigID", default)]
    pub config_id: String,
    #[serde(default)]
    pub config_name: String,
}

/// A secret's or a config's spec (`POST /secrets/create`, `POST /configs/create`): its data
/// travels base64-encoded. A secret's is never shown again; a config's is.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<u8>>,
    /// A secret store plugin (`--driver`): not supported by Wharf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<serde_json::Value>,
    /// Templated data (`--template-driver`): not supported by Wharf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templating: Option<serde_json::Value>,
}

// The data stays out of logs.
impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec").field("name", &self.name).field("labels", &self.labels).finish_non_exhaustive()
    }
}

/// A secret or a config as `GET /secrets/{id}` and `GET /configs/{id}` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretObject {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: SecretSpec,
}

/// `Option<Vec<u8>>` as a base64 string, as Go's `encoding/json` writes `[]byte`.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match data {
            Some(data) => serializer.serialize_str(&STANDARD.encode(data)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|t| STANDARD.decode(t.as_bytes()).map_err(serde::de::Error::custom)).transpose()
    }
}

/// A container's health check (`--health-cmd`, `--health-interval`...). Durations in
/// nanoseconds; 0 takes the engine's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]` (no check, not even the image's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resources>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(rename = "NanoCPUs", default, skip_serializing_if = "is_zero")]
    pub nano_cpus: i64,
    #[serde(rename = "MemoryBytes", default, skip_serializing_if = "is_zero")]
    pub memory_bytes: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Nanoseconds: `max_attempts` counts the attempts that ended within this window (0: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlacementPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<SpreadOver>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpreadOver {
    pub spread_descriptor: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(rename = "Architecture", default)]
    pub architecture: String,
    #[serde(rename = "OS", default)]
    pub os: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default = "tcp")]
    pub protocol: String,
    pub target_port: u16,
    #[serde(default)]
    pub published_port: u16,
    #[serde(default = "ingress")]
    pub publish_mode: String,
}

fn tcp() -> String {
    "tcp".into()
}

fn ingress() -> String {
    "ingress".into()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    pub endpoint: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_status: Option<ServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
}

/// Where the last update of a service's tasks stands (`updating`, `paused`, `completed`,
/// `rollback_started`, `rollback_paused`, `rollback_completed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStatus {
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_at: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub spec: EndpointSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceStatus {
    pub running_tasks: u64,
    pub desired_tasks: u64,
    pub completed_tasks: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub labels: BTreeMap<String, String>,
    pub spec: TaskSpec,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    #[serde(rename = "NodeID", default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub status: TaskStatus,
    pub desired_state: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    pub timestamp: String,
    pub state: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    pub port_status: PortStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStatus {
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    #[serde(rename = "PID")]
    pub pid: i64,
    pub exit_code: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpec {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub availability: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub resources: Resources,
    pub engine: EngineDescription,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineDescription {
    pub engine_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub addr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    pub leader: bool,
    pub reachability: String,
    pub addr: String,
}

/// `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    #[serde(rename = "Platform")]
    pub platform: Named,
    #[serde(rename = "Components")]
    pub components: Vec<Component>,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    #[serde(rename = "GitCommit")]
    pub git_commit: String,
    #[serde(rename = "GoVersion")]
    pub go_version: String,
    #[serde(rename = "Os")]
    pub os: String,
    #[serde(rename = "Arch")]
    pub arch: String,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Component {
    pub name: String,
    pub version: String,
}

/// `GET /info`: the cluster as one engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub server_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub operating_system: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: i64,
    pub mem_total: i64,
    pub containers: u64,
    pub containers_running: u64,
    pub images: u64,
    pub labels: Vec<String>,
    pub swarm: SwarmInfo,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Vec<RemoteManager>,
    pub nodes: u64,
    pub managers: u64,
    pub cluster: ClusterInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoteManager {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub addr: String,
}

/// The cluster object of `/info` and `GET /swarm`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    pub created_at: String,
    pub updated_at: String,
    pub spec: SwarmSpec,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
    pub root_rotation_in_progress: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub orchestration: Orchestration,
    pub dispatcher: Dispatcher,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Orchestration {
    pub task_history_retention_limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dispatcher {
    /// Nanoseconds.
    pub heartbeat_period: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TlsInfo {
    pub trust_root: String,
}

/// Docker's filters query parameter (`filters={"service":{"id":true}}`, or the older
/// `{"service":["id"]}`): the values of each key.
pub fn parse_filters(raw: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Values {
        Set(BTreeMap<String, bool>),
        List(Vec<String>),
    }
    if raw.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let parsed: BTreeMap<String, Values> =
        serde_json::from_str(raw).map_err(|e| format!("invalid filter {raw:?}: {e}"))?;
    Ok(parsed
        .into_iter()
        .map(|(key, values)| {
            let values = match values {
                Values::Set(set) => set.into_iter().filter(|(_, on)| *on).map(|(value, _)| value).collect(),
                Values::List(list) => list,
            };
            (key, values)
        })
        .collect())
}

/// The parts of a service spec Wharf does not carry out yet, by where they are in the spec
/// and the flag that sets them: a spec that uses one is refused rather than run without it.
const NOT_YET: [(&[&str], &str); 8] = [
    (&["TaskTemplate", "ContainerSpec", "Privileges"], "--credential-spec"),
    (&["TaskTemplate", "ContainerSpec", "Sysctls"], "--sysctl"),
    (&["TaskTemplate", "ContainerSpec", "DNSConfig"], "--dns"),
    (&["TaskTemplate", "ContainerSpec", "Hosts"], "--host"),
    (&["TaskTemplate", "ContainerSpec", "Groups"], "--group"),
    (&["TaskTemplate", "ContainerSpec", "Ulimits"], "--ulimit"),
    (&["TaskTemplate", "LogDriver"], "--log-driver"),
    (&["Networks"], "--network"),
];

/// What of a service spec as sent (JSON) Wharf cannot carry out yet, with the flag that set
/// it; empty values (`null`, `[]`, `{}`, `""`, `false`, 0) count as absent.
/// Whether a request's value says nothing (Go's zero values: null, false, 0, "", and lists
/// and objects of those).
pub(crate) fn empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.iter().all(empty),
        serde_json::Value::Object(o) => o.values().all(empty),
    }
}

pub fn unsupported_in_spec(raw: &serde_json::Value) -> Option<String> {
    let named = NOT_YET.iter().find_map(|(path, flag)| {
        let value = path.iter().try_fold(raw, |value, key| value.get(key))?;
        (!empty(value)).then(|| format!("{} ({flag}) is not supported by Wharf yet", path.join(".")))
    });
    if named.is_some() {
        return named;
    }
    // Anything else the typed spec does not carry is refused too, rather than dropped: what
    // it keeps, serialized again, must hold every part of the request that says something.
    let typed = serde_json::from_value::<ServiceSpec>(raw.clone()).ok()?;
    let kept = serde_json::to_value(&typed).ok()?;
    fn dropped(raw: &serde_json::Value, kept: &serde_json::Value, path: &mut Vec<String>) -> Option<String> {
        match (raw, kept) {
            (serde_json::Value::Object(raw), serde_json::Value::Object(kept)) => raw.iter().find_map(|(key, value)| {
                // The engine's word for "no isolation choice", as compose sends it.
                let default_isolation = key == "Isolation" && value.as_str() == Some("default");
                if empty(value) || default_isolation {
                    return None;
                }
                path.push(key.clone());
                let found = match kept.get(key) {
                    Some(kept) => dropped(value, kept, path),
                    None => Some(path.join(".")),
                };
                path.pop();
                found
            }),
            (serde_json::Value::Array(raw), serde_json::Value::Array(kept)) => {
                raw.iter().zip(kept).find_map(|(raw, kept)| dropped(raw, kept, path))
            }
            _ => None,
        }
    }
    dropped(raw, &kept, &mut Vec::new()).map(|path| format!("{path} is not supported by Wharf yet"))
}

/// Credentials for a registry other than the cluster's, as the CLI sends them with
/// `--with-registry-auth` (`X-Registry-Auth`: Docker's `AuthConfig`, base64url JSON). Kept
/// sealed with the service and sent only to the nodes of its tasks; its `Debug` shows no field,
/// so that it is never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

impl RegistryAuth {
    /// Whether it holds no credential (the CLI sends `{}` when it knows none for the image).
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identitytoken.is_empty()
            && self.registrytoken.is_empty()
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryAuth { .. }")
    }
}

/// The registry host and repository an image reference names (`host[:port]/repo[:tag][@digest]`),
/// when it names a registry (a first part with a dot or a port, or `localhost`).
pub fn image_repository(image: &str) -> Option<(&str, &str)> {
    let (host, rest) = image.split_once('/')?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return None;
    }
    let rest = rest.split_once('@').map_or(rest, |(name, _)| name);
    let name = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => rest,
    };
    Some((host, name))
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_with_driver_options_reaches_the_node_as_a_bind_mount_does() {
        let mount = |json: serde_json::Value| serde_json::from_value::<MountSpec>(json).expect("a mount");
        assert!(mount(serde_json::json!({"Type": "bind", "Source": "/", "Target": "/h"})).reaches_the_node());
        let opts = serde_json::json!({"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}});
        assert!(
            mount(serde_json::json!({"Type": "volume", "Source": "x", "Target": "/h", "VolumeOptions": opts}))
                .reaches_the_node()
        );
        let plain = serde_json::json!({"NoCopy": true, "Labels": {"a": "b"}, "DriverConfig": {}});
        assert!(
            !mount(serde_json::json!({"Type": "volume", "Source": "x", "Target": "/h", "VolumeOptions": plain}))
                .reaches_the_node()
        );
        assert!(!mount(serde_json::json!({"Type": "tmpfs", "Target": "/t"})).reaches_the_node());
    }

    #[test]
    fn a_spec_asking_for_what_is_not_carried_out_yet_is_named_and_empty_parts_are_not() {
        let spec = |template: serde_json::Value| serde_json::json!({"Name": "web", "TaskTemplate": template});
        let plain = spec(serde_json::json!({
            "ContainerSpec": {"Image": "a", "DNSConfig": {}, "Mounts": [], "Hosts": null, "Healthcheck": {"Test": ["CMD", "true"]}},
            "Networks": [],
        }));
        assert_eq!(unsupported_in_spec(&plain), None);
        let mounted =
            spec(serde_json::json!({"ContainerSpec": {"Image": "a", "Sysctls": {"net.core.somaxconn": "1024"}}}));
        assert_eq!(
            unsupported_in_spec(&mounted).as_deref(),
            Some("TaskTemplate.ContainerSpec.Sysctls (--sysctl) is not supported by Wharf yet")
        );
        let networked = serde_json::json!({"Name": "web", "Networks": [{"Target": "backend"}]});
        assert!(unsupported_in_spec(&networked).is_some_and(|why| why.contains("--network")));
        let dns =
            spec(serde_json::json!({"ContainerSpec": {"Image": "a", "DNSConfig": {"Nameservers": ["10.0.0.2"]}}}));
        assert!(unsupported_in_spec(&dns).is_some_and(|why| why.contains("--dns")));
        // What the typed spec does not carry is named too, wherever it is; what it carries,
        // and an engine's default isolation, pass.
        let pids = spec(serde_json::json!({"ContainerSpec": {"Image": "a"}, "Resources": {"Limits": {"Pids": 10}}}));
        assert_eq!(
            unsupported_in_spec(&pids).as_deref(),
            Some("TaskTemplate.Resources.Limits.Pids is not supported by Wharf yet")
        );
        let secret = spec(serde_json::json!({"ContainerSpec": {"Image": "a", "Secrets": [{"SecretID": "x",
            "SecretName": "pw", "File": {"Name": "pw", "UID": "0", "GID": "0", "Mode": 292}, "Driver": "vault"}]}}));
        assert_eq!(
            unsupported_in_spec(&secret).as_deref(),
            Some("TaskTemplate.ContainerSpec.Secrets.Driver is not supported by Wharf yet")
        );
        let carried = spec(serde_json::json!({
            "ContainerSpec": {"Image": "a", "Isolation": "default", "ReadOnly": true, "Init": false,
                "Mounts": [{"Type": "volume", "Source": "d", "Target": "/d", "VolumeOptions": {"NoCopy": true}}]},
            "Resources": {"Limits": {"NanoCPUs": 1000000000}}, "RestartPolicy": {"Condition": "any", "Window": 5},
            "Placement": {"Constraints": ["node.role==worker"], "MaxReplicas": 0}, "ForceUpdate": 1,
        }));
        assert_eq!(unsupported_in_spec(&carried), None);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_939_199), "2026-11-29T07:59:59Z");
    }

    #[test]
    fn image_references_name_their_registry_and_repository() {
        assert_eq!(image_repository("127.0.0.1:5000/team/app:1"), Some(("127.0.0.1:5000", "team/app")));
        assert_eq!(image_repository("reg.example/app@sha256:ab"), Some(("reg.example", "app")));
        assert_eq!(image_repository("localhost/app:1@sha256:ab"), Some(("localhost", "app")));
        assert_eq!(image_repository("library/busybox:1"), None);
        assert_eq!(image_repository("busybox"), None);
    }

    #[test]
    fn filters_come_as_sets_or_lists() {
        let set = parse_filters(r#"{"_up-to-date":{"true":true},"service":{"abc":true}}"#).expect("set form");
        assert_eq!(set["service"], vec!["abc".to_owned()]);
        assert_eq!(set["_up-to-date"], vec!["true".to_owned()]);
        let list = parse_filters(r#"{"name":["web"]}"#).expect("list form");
        assert_eq!(list["name"], vec!["web".to_owned()]);
        assert!(parse_filters("{nope").is_err());
    }

    #[test]
    fn the_cli_service_create_body_reads_and_keeps_what_wharf_acts_on() {
        let body = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"rec/busybox:1",
            "Args":["sleep","3600"],"Init":false,"DNSConfig":{}},"Resources":{"Limits":{},"Reservations":{}},
            "Placement":{"Constraints":["node.role==worker"]},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":2}},
            "EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"host"}]}}"#;
        let spec: ServiceSpec = serde_json::from_str(body).expect("the CLI's body");
        assert_eq!(spec.mode.replicated.as_ref().and_then(|r| r.replicas), Some(2));
        assert_eq!(spec.task_template.container_spec.args, ["sleep", "3600"]);
        let ports = &spec.endpoint_spec.as_ref().expect("endpoint").ports;
        assert_eq!((ports[0].published_port, ports[0].publish_mode.as_str()), (8080, "host"));
        let again: ServiceSpec = serde_json::from_str(&serde_json::to_string(&spec).expect("encode")).expect("decode");
        assert_eq!(again, spec);
    }
}
