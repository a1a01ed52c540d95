//! The [`Executor`] trait: what the agent needs of a container engine.

use std::collections::BTreeMap;

use wharf_api::cluster::{Assignment, EngineReport};
use wharf_api::logs::LogOptions;

/// What a command reads on its standard input, as the caller sends it.
pub type Input = futures::stream::BoxStream<'static, Vec<u8>>;

/// A container's log lines, as [`Executor::logs`] reads them.
pub type LogLines = futures::stream::BoxStream<'static, Result<(u8, Vec<u8>), ExecError>>;

/// The labels the agent puts on every container it creates (and looks for).
pub mod labels {
    pub const CLUSTER: &str = "wharf.cluster";
    pub const NODE: &str = "wharf.node";
    pub const SERVICE_ID: &str = "wharf.service.id";
    pub const SERVICE_NAME: &str = "wharf.service.name";
    pub const TASK: &str = "wharf.task.id";
    pub const SLOT: &str = "wharf.task.slot";
    /// On a node's bridge made for a cluster network: the network's id.
    pub const NETWORK: &str = "wharf.network.id";
}

/// A container the agent created, as the engine shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    pub id: String,
    pub task_id: String,
    pub running: bool,
    /// Set once the container has stopped.
    pub exit_code: Option<i64>,
    /// What its health check says (`starting`, `healthy`, `unhealthy`), if it has one.
    pub health: Option<String>,
}

/// What to run for one task.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub cluster_id: String,
    pub node_id: u64,
    pub assignment: Assignment,
    /// A registry token for the image, when it comes from this cluster's registry.
    pub registry_token: Option<String>,
}

impl RunRequest {
    /// The labels of its container.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let a = &self.assignment;
        BTreeMap::from([
            (labels::CLUSTER.to_owned(), self.cluster_id.clone()),
            (labels::NODE.to_owned(), self.node_id.to_string()),
            (labels::SERVICE_ID.to_owned(), a.service_id.clone()),
            (labels::SERVICE_NAME.to_owned(), a.blueprint.service_name.clone()),
            (labels::TASK.to_owned(), a.id.clone()),
            (labels::SLOT.to_owned(), a.slot.to_string()),
        ])
    }

    /// The container's name, as Swarm names a task's: `service.slot.task`.
    pub fn container_name(&self) -> String {
        let a = &self.assignment;
        // A container made with `docker run` (no service): its name and its task.
        if a.service_id.is_empty() {
            return format!("{}.{}", a.blueprint.service_name, a.id);
        }
        let slot = if a.slot == 0 { self.node_id } else { a.slot };
        format!("{}.{}.{}", a.blueprint.service_name, slot, a.id)
    }
}

/// A container that started: its id and the host ports the engine bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub id: String,
    pub ports: Vec<wharf_api::docker::PortConfig>,
    /// The container has a health check (its image's or the task's): the task is `starting`
    /// until the check passes, not running yet.
    pub checked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The image could not be pulled and is not on the node.
    #[error("{0}")]
    Image(String),
    /// The engine refused to create or start the container.
    #[error("{0}")]
    Start(String),
    /// No container of this node runs or ran the task.
    #[error("no container of task {0} on this node")]
    NoContainer(String),
    /// The engine could not be reached or answered badly.
    #[error("docker engine: {0}")]
    Engine(String),
}

/// A container engine, as the agent drives it.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// What the engine is (for the node's description).
    async fn describe(&self) -> Result<EngineReport, ExecError>;
    /// The containers of this cluster and node, running or not.
    async fn containers(&self, cluster_id: &str, node_id: u64) -> Result<Vec<ContainerView>, ExecError>;
    /// Pulls the image if it can (the local one is used when a pull fails), creates and
    /// starts the container.
    async fn run(&self, request: &RunRequest) -> Result<Started, ExecError>;
    /// Stops a container within `grace_secs`.
    async fn stop(&self, container_id: &str, grace_secs: i64) -> Result<(), ExecError>;
    /// Removes a container (stopping it if needed).
    async fn remove(&self, container_id: &str) -> Result<(), ExecError>;
    /// The lines of task `task_id`'s container, oldest first, as `(stream, "timestamp message")`
    /// (stream 1 stdout, 2 stderr; one line each): those `options` ask (a tail, a start), and
    /// with `follow` the new ones as they come until the container stops.
    async fn logs(&self, task_id: &str, options: &LogOptions) -> Result<LogLines, ExecError>;
    /// Runs `spec` in task `task_id`'s container, `input` on its standard input (closed at its
    /// end): its output as it comes (as [`LogLines`], in pieces of any size), then one
    /// `(EXIT, code)` item with its exit code ([`wharf_api::logs::exit_payload`]).
    async fn exec(
        &self,
        task_id: &str,
        _spec: &wharf_api::logs::ExecSpec,
        _input: Option<Input>,
    ) -> Result<LogLines, ExecError> {
        Err(ExecError::NoContainer(task_id.to_owned()))
    }
    /// The output of task `task_id`'s container as the engine attaches to it, raw, until it
    /// ends (with `replay`, what it wrote before first); a container that ended: its log
    /// when replaying, else nothing.
    async fn attach_output(&self, task_id: &str, _replay: bool) -> Result<LogLines, ExecError> {
        Err(ExecError::NoContainer(task_id.to_owned()))
    }
    /// Attaches `input` to task `task_id`'s container's standard input (`docker run -i`),
    /// closing it at the input's end; returns once it is closed.
    async fn attach_stdin(&self, task_id: &str, _input: Input) -> Result<(), ExecError> {
        Err(ExecError::NoContainer(task_id.to_owned()))
    }
    /// Resolves when something may have changed on the engine (a container died), so the
    /// agent looks again before its next tick.
    async fn changed(&self);
    /// Removes this cluster's networks on the engine that no task of the node uses now (by
    /// name); one a container still uses stays.
    async fn prune_networks(&self, _cluster_id: &str, _in_use: &std::collections::BTreeSet<String>) {}
}
