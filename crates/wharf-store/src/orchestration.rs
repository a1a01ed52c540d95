//! Services, tasks and what the control plane knows of each node beyond its membership
//! (availability, labels, the description its agent reports): their commands and reads.
//!
//! Swarm's rules hold inside apply, so racing proposers cannot break them: a task's observed
//! state only moves forward and only its own node reports it; its desired state only moves
//! forward (running, shutdown, remove) and only managers write it; a service update names the
//! version it was read at. Specs are kept as the JSON the client sent (the state never
//! interprets them); a task carries the template it was created from.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::Outcome;
use crate::refusal::Refusal;
use crate::store::{Store, StoreError, encode};
use crate::tables::{
    CONTAINER_NAMES, CONTAINERS, COUNTERS, NETWORKS, NODE_DETAILS, NODE_TASKS, SECRETS, SERVICE_REGISTRY_AUTH,
    SERVICE_TASKS, SERVICE_UPDATES, SERVICES, TASKS,
};

/// Swarm's task states, in the order a task moves through them (`api/types.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    /// The name the Docker API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    pub fn parse(name: &str) -> Option<TaskState> {
        ALL_STATES.iter().copied().find(|state| state.as_str() == name)
    }

    /// Whether the task has ended (it will never run again).
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }
}

const ALL_STATES: [TaskState; 14] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Accepted,
    TaskState::Preparing,
    TaskState::Ready,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Remove,
    TaskState::Orphaned,
];

/// A service: its spec as the client sent it (Docker's `ServiceSpec` JSON) and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    /// The user who created it: until grants arrive, a user sees and changes only their own.
    pub owner: String,
    pub spec: String,
    pub previous_spec: Option<String>,
    /// What its tasks are made from (the task template and published ports, as the proposer
    /// wrote them): a change of it, and only of it, makes the tasks out of date (a new replica
    /// count does not).
    pub task_spec: String,
    /// Bumped by every change (the `Version.Index` of the Docker API).
    pub version: u64,
    /// Bumped when `task_spec` changes: tasks of an older spec version are out of date.
    pub spec_version: u64,
    pub created: u64,
    pub updated: u64,
}

/// What a task's node last reported of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub message: String,
    pub err: String,
    pub container_id: String,
    pub exit_code: i64,
    pub at: u64,
    /// The host ports its container publishes (as the engine bound them).
    pub ports: Vec<PublishedPort>,
}

/// A port a task's container publishes on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub protocol: String,
    pub target: u16,
    pub published: u16,
}

/// A task: one container of a service, on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub service_id: String,
    /// The replica slot (1..N); 0 for a global service's task, which names its node instead.
    pub slot: u64,
    pub node: Option<u64>,
    pub spec_version: u64,
    /// The task template it runs (Docker's `TaskSpec` JSON).
    pub template: String,
    pub desired: TaskState,
    pub status: TaskStatus,
    pub version: u64,
    pub created: u64,
    pub updated: u64,
}

/// A container made with `docker run`: a task of no service, with its name and creator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub owner: String,
    pub created: u64,
}

impl TaskRecord {
    /// Whether this task is a container made with `docker run` (it has no service).
    pub fn is_container(&self) -> bool {
        self.service_id.is_empty()
    }
}

/// What the control plane keeps of a node besides its membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDetails {
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub labels: BTreeMap<String, String>,
    pub description: Option<NodeDescription>,
    pub version: u64,
}

/// Where a service's last update stands (Swarm's `UpdateStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    /// The name the Docker API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// Whether slots are being replaced (neither paused nor finished).
    pub fn is_under_way(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    pub fn is_paused(self) -> bool {
        matches!(self, UpdateState::Paused | UpdateState::RollbackPaused)
    }

    /// Whether it is a rollback (run with the service's `RollbackConfig`).
    pub fn is_rollback(self) -> bool {
        matches!(self, UpdateState::RollbackStarted | UpdateState::RollbackPaused | UpdateState::RollbackCompleted)
    }
}

/// A service's last update: begun by a change of its task template (or a rollback), ended
/// by the orchestrator once every slot runs the new spec past the monitor window, or paused
/// or rolled back by it when too many new tasks fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    pub state: UpdateState,
    /// The spec version the update moves the tasks to.
    pub spec_version: u64,
    /// The spec version it moves them from: a rollback returns to it, so that the tasks that
    /// never left it are not replaced again.
    pub from_spec_version: u64,
    /// When it began (or was resumed): only tasks created since count as its failures.
    pub started: u64,
    pub completed: u64,
    pub message: String,
}

/// Secrets and configs share a table and rules; a secret's data is sealed by the manager that
/// took it, a config's is kept as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretKind {
    Secret,
    Config,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Secret => "secret",
            SecretKind::Config => "config",
        }
    }

    /// Where a service spec names the ids of this kind: `TaskTemplate.ContainerSpec.<list>[].<id>`.
    fn spec_field(self) -> (&'static str, &'static str) {
        match self {
            SecretKind::Secret => ("Secrets", "SecretID"),
            SecretKind::Config => ("Configs", "ConfigID"),
        }
    }
}

/// A secret or a config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub kind: SecretKind,
    pub name: String,
    /// The user who created it: until grants arrive, a user sees and uses only their own.
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    /// A secret's data sealed (never in clear in the state); a config's as sent.
    pub data: Vec<u8>,
    pub version: u64,
    pub created: u64,
    pub updated: u64,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A cluster network: on each node, a bridge of the node's engine that the node's tasks on it
/// share (reaching each other by service name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub owner: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub version: u64,
    pub created: u64,
}

/// What a node's agent reports of its engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    pub hostname: String,
    pub os: String,
    pub architecture: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub engine_version: String,
    pub engine_labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
enum Stored<T> {
    V1(T),
}

/// A task the orchestrator creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub id: String,
    pub service_id: String,
    pub slot: u64,
    /// Set for a global service's task; the scheduler places the others.
    pub node: Option<u64>,
    pub spec_version: u64,
    pub template: String,
}

/// What a node reports of one of its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    pub id: String,
    pub state: TaskState,
    pub message: String,
    pub err: String,
    pub container_id: String,
    pub exit_code: i64,
    pub ports: Vec<PublishedPort>,
}

/// A change of services, tasks or node details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrchestrationCommand {
    /// Creates a service; refused when the name is taken.
    CreateService { id: String, name: String, owner: String, spec: String, task_spec: String, at: u64 },
    /// Replaces a service's spec; refused unless `version` is the service's current one.
    UpdateService { id: String, version: u64, name: String, spec: String, task_spec: String, at: u64 },
    /// Removes a service; its tasks are to be removed by their nodes.
    RemoveService { id: String, at: u64 },
    /// Records new tasks (pending, desired running). Tasks of a service that is gone are skipped.
    CreateTasks { tasks: Vec<NewTask>, at: u64 },
    /// The scheduler's decisions: tasks placed on nodes, and why others could not be.
    AssignTasks { placed: Vec<(String, u64)>, unplaceable: Vec<(String, String)>, at: u64 },
    /// Moves tasks' desired state forward (shutdown, remove); a step back is skipped.
    SetDesiredState { ids: Vec<String>, desired: TaskState, at: u64 },
    /// What node `node` observed of its tasks; reports of other nodes' tasks and steps back
    /// are skipped.
    ReportTasks { node: u64, reports: Vec<TaskReport>, at: u64 },
    /// Forgets tasks (ended ones past the history a slot keeps, or of removed services).
    RemoveTasks { ids: Vec<String> },
    /// Sets a node's availability (`active`, `pause`, `drain`) and labels.
    SetNodeSpec { id: u64, version: Option<u64>, availability: String, labels: BTreeMap<String, String> },
    /// Records what a node's agent reports of its engine.
    SetNodeDescription { id: u64, description: NodeDescription },
    /// Applies `command` (a `CreateService` or an `UpdateService`) and, in the same
    /// transaction, records the sealed registry credentials the service's tasks pull with.
    WithRegistryAuth { sealed: Vec<u8>, command: Box<OrchestrationCommand> },
    /// Puts back a service's previous spec (`spec`, `task_spec`: as the proposer read them
    /// from `previous_spec`) and starts a rollback saying `message`; refused unless `version`
    /// is current and the service has a previous spec. The service keeps no previous spec
    /// afterwards (as Swarm: a rollback is not rolled back).
    RollbackService { id: String, version: u64, spec: String, task_spec: String, message: String, at: u64 },
    /// Moves the update of service `id` to spec version `spec_version` to `state` (paused or
    /// finished); skipped when the service has moved on to another update since.
    SetUpdateState { id: String, spec_version: u64, state: UpdateState, message: String, at: u64 },
    /// Records a secret (its data sealed by the proposer) or a config; refused when one of
    /// its kind has the name.
    CreateSecret {
        id: String,
        kind: SecretKind,
        name: String,
        owner: String,
        labels: BTreeMap<String, String>,
        data: Vec<u8>,
        at: u64,
    },
    /// Removes a secret or a config; refused while a service's spec uses it.
    RemoveSecret { id: String, kind: SecretKind },
    /// Replaces the labels of a secret or a config (nothing else of one changes); refused
    /// unless `version` is its current one.
    SetSecretLabels { id: String, kind: SecretKind, version: u64, labels: BTreeMap<String, String>, at: u64 },
    /// Records a container (a task of no service, its node chosen once it is started),
    /// `created`: desired `ready` until a `SetDesiredState` to running; refused when a
    /// container has the name.
    CreateContainer { id: String, name: String, owner: String, template: String, at: u64 },
    /// Wants a container stopped (desired `shutdown`), with `template` (the manager's, with
    /// the grace period the caller asked) from now on. Refused when there is no such container.
    StopContainer { id: String, template: String, at: u64 },
    /// Frees a container's name and wants it removed by its node (desired `remove`); the
    /// record goes with the task. Refused when there is no such container.
    RemoveContainer { id: String, at: u64 },
    /// Records a network; refused when one has the name.
    CreateNetwork { id: String, network: NetworkRecord },
    /// Removes a network; refused while a service's spec uses it.
    RemoveNetwork { id: String },
}

impl std::fmt::Display for OrchestrationCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrchestrationCommand::CreateService { id, name, owner, .. } => {
                write!(f, "create-service {name} ({id}) for {owner}")
            }
            OrchestrationCommand::UpdateService { id, version, .. } => write!(f, "update-service {id} at {version}"),
            OrchestrationCommand::RemoveService { id, .. } => write!(f, "remove-service {id}"),
            OrchestrationCommand::CreateTasks { tasks, .. } => write!(f, "create-tasks {}", tasks.len()),
            OrchestrationCommand::AssignTasks { placed, unplaceable, .. } => {
                write!(f, "assign-tasks {} placed {} unplaceable", placed.len(), unplaceable.len())
            }
            OrchestrationCommand::SetDesiredState { ids, desired, .. } => {
                write!(f, "set-desired-state {} tasks {}", ids.len(), desired.as_str())
            }
            OrchestrationCommand::ReportTasks { node, reports, .. } => {
                write!(f, "report-tasks node {node} {}", reports.len())
            }
            OrchestrationCommand::RemoveTasks { ids } => write!(f, "remove-tasks {}", ids.len()),
            OrchestrationCommand::SetNodeSpec { id, availability, .. } => {
                write!(f, "set-node-spec {id} {availability}")
            }
            OrchestrationCommand::SetNodeDescription { id, .. } => write!(f, "set-node-description {id}"),
            OrchestrationCommand::WithRegistryAuth { command, .. } => write!(f, "{command} with registry auth"),
            OrchestrationCommand::RollbackService { id, version, .. } => {
                write!(f, "rollback-service {id} at {version}")
            }
            OrchestrationCommand::SetUpdateState { id, state, .. } => {
                write!(f, "set-update-state {id} {}", state.as_str())
            }
            OrchestrationCommand::CreateSecret { id, kind, name, .. } => {
                write!(f, "create-{} {name} ({id})", kind.as_str())
            }
            OrchestrationCommand::RemoveSecret { id, kind } => write!(f, "remove-{} {id}", kind.as_str()),
            OrchestrationCommand::SetSecretLabels { id, kind, .. } => write!(f, "set-{}-labels {id}", kind.as_str()),
            OrchestrationCommand::CreateNetwork { id, network } => write!(f, "create-network {} ({id})", network.name),
            OrchestrationCommand::RemoveNetwork { id } => write!(f, "remove-network {id}"),
            OrchestrationCommand::CreateContainer { id, name, owner, .. } => {
                write!(f, "create-container {name} ({id}) for {owner}")
            }
            OrchestrationCommand::RemoveContainer { id, .. } => write!(f, "remove-container {id}"),
            OrchestrationCommand::StopContainer { id, .. } => write!(f, "stop-container {id}"),
        }
    }
}

pub(crate) fn apply(txn: &WriteTransaction, command: &OrchestrationCommand) -> Result<Outcome, StoreError> {
    use OrchestrationCommand as C;
    match command {
        C::CreateService { id, name, owner, spec, task_spec, at } => {
            refuse_taken_name(txn, name, None)?;
            refuse_unknown_references(txn, spec)?;
            let version = next_version(txn)?;
            let record = ServiceRecord {
                name: name.clone(),
                owner: owner.clone(),
                spec: spec.clone(),
                previous_spec: None,
                task_spec: task_spec.clone(),
                version,
                spec_version: version,
                created: *at,
                updated: *at,
            };
            put_service(txn, id, &record)?;
            Ok(Outcome::Done)
        }
        C::UpdateService { id, version, name, spec, task_spec, at } => {
            update_service(txn, id, *version, name, (spec, task_spec), *at)
        }
        C::RemoveService { id, at } => {
            if txn.open_table(SERVICES)?.remove(id.as_str())?.is_none() {
                return Err(Refusal::ServiceUnknown(id.clone()).into());
            }
            txn.open_table(SERVICE_REGISTRY_AUTH)?.remove(id.as_str())?;
            txn.open_table(SERVICE_UPDATES)?.remove(id.as_str())?;
            let tasks = service_task_ids(txn, id)?;
            set_desired(txn, &tasks, TaskState::Remove, *at)?;
            Ok(Outcome::Done)
        }
        C::CreateTasks { tasks, at } => {
            for task in tasks {
                if service_in(txn, &task.service_id)?.is_some() {
                    create_task(txn, task, *at)?;
                }
            }
            Ok(Outcome::Done)
        }
        C::AssignTasks { placed, unplaceable, at } => assign(txn, placed, unplaceable, *at),
        C::SetDesiredState { ids, desired, at } => {
            set_desired(txn, ids, *desired, *at)?;
            Ok(Outcome::Done)
        }
        C::ReportTasks { node, reports, at } => report(txn, *node, reports, *at),
        C::RemoveTasks { ids } => {
            for id in ids {
                remove_task(txn, id)?;
            }
            Ok(Outcome::Done)
        }
        C::SetNodeSpec { id, version, availability, labels } => {
            if !matches!(availability.as_str(), "active" | "pause" | "drain") {
                return Err(Refusal::Invalid(format!("availability {availability:?}")).into());
            }
            let mut details = node_details_in(txn, *id)?;
            if let Some(version) = version
                && *version != details.version
            {
                return Err(Refusal::VersionOutOfDate { current: details.version }.into());
            }
            details.availability = availability.clone();
            details.labels = labels.clone();
            put_node_details(txn, *id, &mut details)
        }
        C::SetNodeDescription { id, description } => {
            let mut details = node_details_in(txn, *id)?;
            details.description = Some(description.clone());
            put_node_details(txn, *id, &mut details)
        }
        C::WithRegistryAuth { sealed, command } => {
            let (C::CreateService { id, .. } | C::UpdateService { id, .. }) = command.as_ref() else {
                return Err(
                    Refusal::Invalid("registry credentials go with a service's creation or update".into()).into()
                );
            };
            let outcome = apply(txn, command)?;
            txn.open_table(SERVICE_REGISTRY_AUTH)?.insert(id.as_str(), sealed.as_slice())?;
            Ok(outcome)
        }
        C::CreateSecret { id, kind, name, owner, labels, data, at } => {
            let version = next_version(txn)?;
            let record = SecretRecord {
                kind: *kind,
                name: name.clone(),
                owner: owner.clone(),
                labels: labels.clone(),
                data: data.clone(),
                version,
                created: *at,
                updated: *at,
            };
            create_secret(txn, id, record)
        }
        C::RemoveSecret { id, kind } => remove_secret(txn, id, *kind),
        C::SetSecretLabels { id, kind, version, labels, at } => {
            let unknown = || Refusal::ObjectUnknown { kind: kind.as_str().into(), id: id.clone() };
            let raw = txn.open_table(SECRETS)?.get(id.as_str())?.map(|v| v.value().to_vec()).ok_or_else(unknown)?;
            let mut record: SecretRecord = decode(&raw)?;
            if record.kind != *kind {
                return Err(unknown().into());
            }
            if record.version != *version {
                return Err(Refusal::VersionOutOfDate { current: record.version }.into());
            }
            record.labels = labels.clone();
            record.version = next_version(txn)?;
            record.updated = *at;
            txn.open_table(SECRETS)?.insert(id.as_str(), encode(&Stored::V1(record))?.as_slice())?;
            Ok(Outcome::Done)
        }
        C::CreateContainer { id, name, owner, template, at } => {
            if txn.open_table(CONTAINER_NAMES)?.get(name.as_str())?.is_some() {
                return Err(Refusal::NameTaken { kind: "container".into(), name: name.clone() }.into());
            }
            if task_in(txn, id)?.is_some() {
                return Err(Refusal::Invalid(format!("task id {id} is taken")).into());
            }
            let record = TaskRecord {
                service_id: String::new(),
                slot: 0,
                node: None,
                spec_version: 0,
                template: template.clone(),
                desired: TaskState::Ready,
                status: TaskStatus {
                    state: TaskState::New,
                    message: "created".into(),
                    err: String::new(),
                    container_id: String::new(),
                    exit_code: 0,
                    at: *at,
                    ports: Vec::new(),
                },
                version: next_version(txn)?,
                created: *at,
                updated: *at,
            };
            txn.open_table(SERVICE_TASKS)?.insert(("", id.as_str()), ())?;
            put_task(txn, id, &record)?;
            let container = ContainerRecord { name: name.clone(), owner: owner.clone(), created: *at };
            txn.open_table(CONTAINERS)?.insert(id.as_str(), encode(&Stored::V1(container))?.as_slice())?;
            txn.open_table(CONTAINER_NAMES)?.insert(name.as_str(), id.as_bytes())?;
            Ok(Outcome::Done)
        }
        C::StopContainer { id, template, at } => {
            let unknown = || Refusal::ObjectUnknown { kind: "container".into(), id: id.clone() };
            let mut task = task_in(txn, id)?.filter(TaskRecord::is_container).ok_or_else(unknown)?;
            if task.desired >= TaskState::Shutdown {
                return Ok(Outcome::Done);
            }
            task.template = template.clone();
            task.desired = TaskState::Shutdown;
            task.version = next_version(txn)?;
            task.updated = *at;
            put_task(txn, id, &task)?;
            Ok(Outcome::Done)
        }
        C::RemoveContainer { id, at } => {
            let unknown = || Refusal::ObjectUnknown { kind: "container".into(), id: id.clone() };
            let raw = txn.open_table(CONTAINERS)?.get(id.as_str())?.map(|v| v.value().to_vec()).ok_or_else(unknown)?;
            let container: ContainerRecord = decode(&raw)?;
            let mut names = txn.open_table(CONTAINER_NAMES)?;
            if names.get(container.name.as_str())?.is_some_and(|v| v.value() == id.as_bytes()) {
                names.remove(container.name.as_str())?;
            }
            drop(names);
            set_desired(txn, std::slice::from_ref(id), TaskState::Remove, *at)?;
            Ok(Outcome::Done)
        }
        C::CreateNetwork { id, network } => {
            let mut networks = txn.open_table(NETWORKS)?;
            for entry in networks.iter()? {
                let (_, raw) = entry?;
                if decode::<NetworkRecord>(raw.value())?.name == network.name {
                    return Err(Refusal::NameTaken { kind: "network".into(), name: network.name.clone() }.into());
                }
            }
            let mut network = network.clone();
            network.version = next_version(txn)?;
            networks.insert(id.as_str(), encode(&Stored::V1(network))?.as_slice())?;
            Ok(Outcome::Done)
        }
        C::RemoveNetwork { id } => {
            let unknown = || Refusal::ObjectUnknown { kind: "network".into(), id: id.clone() };
            let raw = txn.open_table(NETWORKS)?.get(id.as_str())?.map(|v| v.value().to_vec()).ok_or_else(unknown)?;
            let network: NetworkRecord = decode(&raw)?;
            let users =
                services_naming(txn, |spec| network_references(spec).iter().any(|r| *r == *id || *r == network.name))?;
            if !users.is_empty() {
                return Err(Refusal::InUse { kind: "network".into(), name: network.name, services: users }.into());
            }
            txn.open_table(NETWORKS)?.remove(id.as_str())?;
            Ok(Outcome::Done)
        }
        C::RollbackService { id, version, spec, task_spec, message, at } => {
            rollback_service(txn, id, *version, (spec, task_spec), message, *at)
        }
        C::SetUpdateState { id, spec_version, state, message, at } => {
            let Some(mut update) = update_in(txn, id)? else { return Ok(Outcome::Done) };
            let allowed = match state {
                UpdateState::Paused | UpdateState::Completed => update.state == UpdateState::Updating,
                UpdateState::RollbackPaused | UpdateState::RollbackCompleted => {
                    update.state == UpdateState::RollbackStarted
                }
                UpdateState::Updating | UpdateState::RollbackStarted => false,
            };
            if update.spec_version != *spec_version || !allowed {
                return Ok(Outcome::Done);
            }
            update.state = *state;
            update.message = message.clone();
            if matches!(state, UpdateState::Completed | UpdateState::RollbackCompleted) {
                update.completed = *at;
            }
            put_update(txn, id, &update)?;
            Ok(Outcome::Done)
        }
    }
}

fn create_secret(txn: &WriteTransaction, id: &str, record: SecretRecord) -> Result<Outcome, StoreError> {
    let mut secrets = txn.open_table(SECRETS)?;
    for entry in secrets.iter()? {
        let (_, raw) = entry?;
        let other: SecretRecord = decode(raw.value())?;
        if other.kind == record.kind && other.name == record.name {
            return Err(Refusal::NameTaken { kind: record.kind.as_str().into(), name: record.name }.into());
        }
    }
    secrets.insert(id, encode(&Stored::V1(record))?.as_slice())?;
    Ok(Outcome::Done)
}

fn remove_secret(txn: &WriteTransaction, id: &str, kind: SecretKind) -> Result<Outcome, StoreError> {
    let unknown = || Refusal::ObjectUnknown { kind: kind.as_str().into(), id: id.to_owned() };
    let raw = txn.open_table(SECRETS)?.get(id)?.map(|v| v.value().to_vec()).ok_or_else(unknown)?;
    let record: SecretRecord = decode(&raw)?;
    if record.kind != kind {
        return Err(unknown().into());
    }
    let users = services_naming(txn, |spec| references(spec, kind).iter().any(|r| r == id))?;
    if !users.is_empty() {
        return Err(Refusal::InUse { kind: kind.as_str().into(), name: record.name, services: users }.into());
    }
    txn.open_table(SECRETS)?.remove(id)?;
    Ok(Outcome::Done)
}

/// The ids of the secrets or configs a service spec (Docker's JSON) names. The state reads
/// only this of a spec, so that no service can come to use one that is removed meanwhile.
fn references(spec: &str, kind: SecretKind) -> Vec<String> {
    let (list, field) = kind.spec_field();
    named_at(spec, &["TaskTemplate", "ContainerSpec", list], field)
}

/// The `field` of each element of the list at `path` in a service spec (Docker's JSON).
fn named_at(spec: &str, path: &[&str], field: &str) -> Vec<String> {
    let Ok(spec) = serde_json::from_str::<serde_json::Value>(spec) else { return Vec::new() };
    let list = path.iter().try_fold(&spec, |value, key| value.get(key)).and_then(serde_json::Value::as_array);
    let list = list.map(Vec::as_slice).unwrap_or_default();
    list.iter().filter_map(|element| element.get(field)?.as_str().map(str::to_owned)).collect()
}

/// The names of the services whose spec `uses`.
fn services_naming(txn: &WriteTransaction, uses: impl Fn(&str) -> bool) -> Result<Vec<String>, StoreError> {
    let mut users = Vec::new();
    for entry in txn.open_table(SERVICES)?.iter()? {
        let (_, raw) = entry?;
        let service: ServiceRecord = decode(raw.value())?;
        if uses(&service.spec) {
            users.push(service.name);
        }
    }
    Ok(users)
}

/// The networks (ids or names) a service spec attaches its tasks to: `TaskTemplate.Networks[].Target`.
fn network_references(spec: &str) -> Vec<String> {
    named_at(spec, &["TaskTemplate", "Networks"], "Target")
}

/// Refuses a service spec that names a secret, a config or a network the state does not hold.
fn refuse_unknown_references(txn: &WriteTransaction, spec: &str) -> Result<(), StoreError> {
    let networks = txn.open_table(NETWORKS)?;
    for target in network_references(spec) {
        let mut known = networks.get(target.as_str())?.is_some();
        for entry in networks.iter()? {
            let (_, raw) = entry?;
            known |= decode::<NetworkRecord>(raw.value())?.name == target;
        }
        if !known {
            return Err(Refusal::ObjectUnknown { kind: "network".into(), id: target }.into());
        }
    }
    let secrets = txn.open_table(SECRETS)?;
    for kind in [SecretKind::Secret, SecretKind::Config] {
        for id in references(spec, kind) {
            let known = match secrets.get(id.as_str())? {
                Some(raw) => decode::<SecretRecord>(raw.value())?.kind == kind,
                None => false,
            };
            if !known {
                return Err(Refusal::ObjectUnknown { kind: kind.as_str().into(), id }.into());
            }
        }
    }
    Ok(())
}

fn rollback_service(
    txn: &WriteTransaction,
    id: &str,
    version: u64,
    (spec, task_spec): (&str, &str),
    message: &str,
    at: u64,
) -> Result<Outcome, StoreError> {
    let mut record = service_in(txn, id)?.ok_or_else(|| Refusal::ServiceUnknown(id.to_owned()))?;
    if record.version != version {
        return Err(Refusal::VersionOutOfDate { current: record.version }.into());
    }
    if record.previous_spec.is_none() {
        return Err(Refusal::Invalid(format!("service {id} has no previous spec to roll back to")).into());
    }
    let from = record.spec_version;
    record.version = next_version(txn)?;
    record.spec = spec.to_owned();
    record.previous_spec = None;
    if record.task_spec != task_spec {
        record.task_spec = task_spec.to_owned();
        // Back to the version the last update left, when that is the template restored.
        let update = update_in(txn, id)?.filter(|u| u.spec_version == from);
        record.spec_version = update.map_or(record.version, |u| u.from_spec_version);
    }
    record.updated = at;
    put_service(txn, id, &record)?;
    let update = UpdateRecord {
        state: UpdateState::RollbackStarted,
        spec_version: record.spec_version,
        from_spec_version: from,
        started: at,
        completed: 0,
        message: message.to_owned(),
    };
    put_update(txn, id, &update)?;
    Ok(Outcome::Done)
}

fn update_in(txn: &WriteTransaction, id: &str) -> Result<Option<UpdateRecord>, StoreError> {
    let raw = txn.open_table(SERVICE_UPDATES)?.get(id)?.map(|v| v.value().to_vec());
    raw.map(|raw| decode(&raw)).transpose()
}

fn put_update(txn: &WriteTransaction, id: &str, update: &UpdateRecord) -> Result<(), StoreError> {
    txn.open_table(SERVICE_UPDATES)?.insert(id, encode(&Stored::V1(update.clone()))?.as_slice())?;
    Ok(())
}

fn next_version(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut counters = txn.open_table(COUNTERS)?;
    let version = counters.get("orchestration_version")?.map(|v| v.value()).unwrap_or(0) + 1;
    counters.insert("orchestration_version", version)?;
    Ok(version)
}

fn refuse_taken_name(txn: &WriteTransaction, name: &str, except: Option<&str>) -> Result<(), StoreError> {
    let services = txn.open_table(SERVICES)?;
    for entry in services.iter()? {
        let (id, raw) = entry?;
        let record: Stored<ServiceRecord> = postcard::from_bytes(raw.value())?;
        let Stored::V1(record) = record;
        if record.name == name && Some(id.value()) != except {
            return Err(Refusal::ServiceNameTaken(name.to_owned()).into());
        }
    }
    Ok(())
}

fn update_service(
    txn: &WriteTransaction,
    id: &str,
    version: u64,
    name: &str,
    (spec, task_spec): (&str, &str),
    at: u64,
) -> Result<Outcome, StoreError> {
    let mut record = service_in(txn, id)?.ok_or_else(|| Refusal::ServiceUnknown(id.to_owned()))?;
    if record.version != version {
        return Err(Refusal::VersionOutOfDate { current: record.version }.into());
    }
    refuse_unknown_references(txn, spec)?;
    if record.name != name {
        refuse_taken_name(txn, name, Some(id))?;
        record.name = name.to_owned();
    }
    record.version = next_version(txn)?;
    if record.spec != spec {
        record.previous_spec = Some(std::mem::replace(&mut record.spec, spec.to_owned()));
    }
    let update = update_in(txn, id)?;
    if record.task_spec != task_spec {
        let from = record.spec_version;
        record.task_spec = task_spec.to_owned();
        record.spec_version = record.version;
        let started = UpdateRecord {
            state: UpdateState::Updating,
            spec_version: record.spec_version,
            from_spec_version: from,
            started: at,
            completed: 0,
            message: "update in progress".into(),
        };
        put_update(txn, id, &started)?;
    } else if let Some(mut paused) = update.filter(|u| u.state.is_paused() && u.spec_version == record.spec_version) {
        // Any update resumes a paused one (its earlier failures no longer count).
        paused.state = if paused.state.is_rollback() { UpdateState::RollbackStarted } else { UpdateState::Updating };
        paused.started = at;
        paused.message = "update in progress".into();
        put_update(txn, id, &paused)?;
    }
    record.updated = at;
    put_service(txn, id, &record)?;
    Ok(Outcome::Done)
}

fn put_service(txn: &WriteTransaction, id: &str, record: &ServiceRecord) -> Result<(), StoreError> {
    txn.open_table(SERVICES)?.insert(id, encode(&Stored::V1(record.clone()))?.as_slice())?;
    Ok(())
}

fn service_in(txn: &WriteTransaction, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
    let raw = txn.open_table(SERVICES)?.get(id)?.map(|v| v.value().to_vec());
    Ok(match raw {
        Some(raw) => {
            let Stored::V1(record) = postcard::from_bytes(&raw)?;
            Some(record)
        }
        None => None,
    })
}

fn service_task_ids(txn: &WriteTransaction, service: &str) -> Result<Vec<String>, StoreError> {
    let table = txn.open_table(SERVICE_TASKS)?;
    let mut ids = Vec::new();
    for entry in table.range((service, "")..)? {
        let (key, _) = entry?;
        let (owner, task) = key.value();
        if owner != service {
            break;
        }
        ids.push(task.to_owned());
    }
    Ok(ids)
}

fn create_task(txn: &WriteTransaction, task: &NewTask, at: u64) -> Result<(), StoreError> {
    if task_in(txn, &task.id)?.is_some() {
        return Ok(());
    }
    let record = TaskRecord {
        service_id: task.service_id.clone(),
        slot: task.slot,
        node: task.node,
        spec_version: task.spec_version,
        template: task.template.clone(),
        desired: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            message: "pending task scheduling".into(),
            err: String::new(),
            container_id: String::new(),
            exit_code: 0,
            at,
            ports: Vec::new(),
        },
        version: next_version(txn)?,
        created: at,
        updated: at,
    };
    txn.open_table(SERVICE_TASKS)?.insert((task.service_id.as_str(), task.id.as_str()), ())?;
    put_task(txn, &task.id, &record)
}

fn assign(
    txn: &WriteTransaction,
    placed: &[(String, u64)],
    unplaceable: &[(String, String)],
    at: u64,
) -> Result<Outcome, StoreError> {
    for (id, node) in placed {
        let Some(mut task) = task_in(txn, id)? else { continue };
        if task.status.state >= TaskState::Assigned || task.desired != TaskState::Running {
            continue;
        }
        if task.node.is_some_and(|preset| preset != *node) {
            continue;
        }
        task.node = Some(*node);
        task.status = TaskStatus {
            state: TaskState::Assigned,
            message: "scheduler assigned task to node".into(),
            at,
            ..task.status
        };
        task.version = next_version(txn)?;
        task.updated = at;
        txn.open_table(NODE_TASKS)?.insert((*node, id.as_str()), ())?;
        put_task(txn, id, &task)?;
    }
    for (id, reason) in unplaceable {
        let Some(mut task) = task_in(txn, id)? else { continue };
        if task.status.state >= TaskState::Assigned || task.status.err == *reason {
            continue;
        }
        task.status.err = reason.clone();
        task.status.at = at;
        task.version = next_version(txn)?;
        put_task(txn, id, &task)?;
    }
    Ok(Outcome::Done)
}

fn set_desired(txn: &WriteTransaction, ids: &[String], desired: TaskState, at: u64) -> Result<(), StoreError> {
    for id in ids {
        let Some(mut task) = task_in(txn, id)? else { continue };
        if desired <= task.desired {
            continue;
        }
        task.desired = desired;
        task.version = next_version(txn)?;
        task.updated = at;
        put_task(txn, id, &task)?;
    }
    Ok(())
}

fn report(txn: &WriteTransaction, node: u64, reports: &[TaskReport], at: u64) -> Result<Outcome, StoreError> {
    for report in reports {
        let Some(mut task) = task_in(txn, &report.id)? else { continue };
        if task.node != Some(node) || report.state <= task.status.state {
            continue;
        }
        task.status = TaskStatus {
            state: report.state,
            message: report.message.clone(),
            err: report.err.clone(),
            container_id: if report.container_id.is_empty() {
                task.status.container_id
            } else {
                report.container_id.clone()
            },
            exit_code: report.exit_code,
            at,
            ports: if report.ports.is_empty() { task.status.ports } else { report.ports.clone() },
        };
        task.version = next_version(txn)?;
        task.updated = at;
        put_task(txn, &report.id, &task)?;
    }
    Ok(Outcome::Done)
}

fn remove_task(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    let Some(task) = task_in(txn, id)? else { return Ok(()) };
    txn.open_table(TASKS)?.remove(id)?;
    txn.open_table(SERVICE_TASKS)?.remove((task.service_id.as_str(), id))?;
    if task.is_container() {
        let raw = txn.open_table(CONTAINERS)?.remove(id)?.map(|v| v.value().to_vec());
        if let Some(raw) = raw {
            let container: ContainerRecord = decode(&raw)?;
            let mut names = txn.open_table(CONTAINER_NAMES)?;
            if names.get(container.name.as_str())?.is_some_and(|v| v.value() == id.as_bytes()) {
                names.remove(container.name.as_str())?;
            }
        }
    }
    if let Some(node) = task.node {
        txn.open_table(NODE_TASKS)?.remove((node, id))?;
    }
    Ok(())
}

fn put_task(txn: &WriteTransaction, id: &str, record: &TaskRecord) -> Result<(), StoreError> {
    txn.open_table(TASKS)?.insert(id, encode(&Stored::V1(record.clone()))?.as_slice())?;
    Ok(())
}

fn task_in(txn: &WriteTransaction, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let raw = txn.open_table(TASKS)?.get(id)?.map(|v| v.value().to_vec());
    Ok(match raw {
        Some(raw) => {
            let Stored::V1(record) = postcard::from_bytes(&raw)?;
            Some(record)
        }
        None => None,
    })
}

fn node_details_in(txn: &WriteTransaction, id: u64) -> Result<NodeDetails, StoreError> {
    let member = crate::cluster::node_in(txn, id)?;
    if member.removed {
        return Err(Refusal::NodeUnknown(id).into());
    }
    let raw = txn.open_table(NODE_DETAILS)?.get(id)?.map(|v| v.value().to_vec());
    Ok(match raw {
        Some(raw) => {
            let Stored::V1(details) = postcard::from_bytes(&raw)?;
            details
        }
        None => NodeDetails { availability: "active".into(), ..NodeDetails::default() },
    })
}

fn put_node_details(txn: &WriteTransaction, id: u64, details: &mut NodeDetails) -> Result<Outcome, StoreError> {
    details.version = next_version(txn)?;
    txn.open_table(NODE_DETAILS)?.insert(id, encode(&Stored::V1(details.clone()))?.as_slice())?;
    Ok(Outcome::Done)
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StoreError> {
    let Stored::V1(value) = postcard::from_bytes::<Stored<T>>(raw)?;
    Ok(value)
}

impl Store {
    /// Every service, by id.
    pub fn services(&self) -> Result<Vec<(String, ServiceRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SERVICES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.push((id.value().to_owned(), decode(raw.value())?));
        }
        Ok(out)
    }

    /// Every secret or config of `kind`, by id.
    pub fn secrets(&self, kind: SecretKind) -> Result<Vec<(String, SecretRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECRETS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            let record: SecretRecord = decode(raw.value())?;
            if record.kind == kind {
                out.push((id.value().to_owned(), record));
            }
        }
        Ok(out)
    }

    /// Every network, by id.
    pub fn networks(&self) -> Result<Vec<(String, NetworkRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NETWORKS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.push((id.value().to_owned(), decode(raw.value())?));
        }
        Ok(out)
    }

    /// The secret or config `id`.
    pub fn secret(&self, id: &str) -> Result<Option<SecretRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECRETS)?;
        table.get(id)?.map(|raw| decode(raw.value())).transpose()
    }

    /// Where the last update of service `id` stands (none before its first update).
    pub fn service_update(&self, id: &str) -> Result<Option<UpdateRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SERVICE_UPDATES)?;
        table.get(id)?.map(|raw| decode(raw.value())).transpose()
    }

    /// Every service's last update, by service id.
    pub fn service_updates(&self) -> Result<BTreeMap<String, UpdateRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SERVICE_UPDATES)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.insert(id.value().to_owned(), decode(raw.value())?);
        }
        Ok(out)
    }

    /// The sealed registry credentials of service `id`, if its creator sent some.
    pub fn service_registry_auth(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SERVICE_REGISTRY_AUTH)?;
        Ok(table.get(id)?.map(|v| v.value().to_vec()))
    }

    pub fn service(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SERVICES)?;
        table.get(id)?.map(|raw| decode(raw.value())).transpose()
    }

    /// Every task, by id.
    pub fn tasks(&self) -> Result<Vec<(String, TaskRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.push((id.value().to_owned(), decode(raw.value())?));
        }
        Ok(out)
    }

    /// Every container made with `docker run`, with its task, by id.
    pub fn containers(&self) -> Result<Vec<(String, ContainerRecord, TaskRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let containers = txn.open_table(CONTAINERS)?;
        let tasks = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for entry in containers.iter()? {
            let (id, raw) = entry?;
            let Some(task) = tasks.get(id.value())? else { continue };
            out.push((id.value().to_owned(), decode(raw.value())?, decode(task.value())?));
        }
        Ok(out)
    }

    pub fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TASKS)?;
        table.get(id)?.map(|raw| decode(raw.value())).transpose()
    }

    /// The tasks ever assigned to `node` and not yet forgotten, by id.
    /// The tasks of service `service` (through the service's index, not a scan of all tasks).
    pub fn service_tasks(&self, service: &str) -> Result<Vec<(String, TaskRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(SERVICE_TASKS)?;
        let tasks = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for entry in index.range((service, "")..)? {
            let (key, _) = entry?;
            let (owner, id) = key.value();
            if owner != service {
                break;
            }
            if let Some(raw) = tasks.get(id)? {
                out.push((id.to_owned(), decode(raw.value())?));
            }
        }
        Ok(out)
    }

    pub fn node_tasks(&self, node: u64) -> Result<Vec<(String, TaskRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(NODE_TASKS)?;
        let tasks = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for entry in index.range((node, "")..(node + 1, ""))? {
            let (key, _) = entry?;
            let (_, id) = key.value();
            if let Some(raw) = tasks.get(id)? {
                out.push((id.to_owned(), decode(raw.value())?));
            }
        }
        Ok(out)
    }

    /// What the control plane keeps of node `id` (defaults for a node it has nothing on).
    pub fn node_details(&self, id: u64) -> Result<NodeDetails, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODE_DETAILS)?;
        match table.get(id)? {
            Some(raw) => decode(raw.value()),
            None => Ok(NodeDetails { availability: "active".into(), ..NodeDetails::default() }),
        }
    }
}
