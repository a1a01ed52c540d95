//! Containers made with `docker run` through a client bundle (the containers door of the
//! Docker-compatible API), and commands run in them (`docker exec`).
//!
//! A container is a task of no service: [`OrchestrationCommand::CreateContainer`] records it
//! (with its name and creator), `start` wants it running, and from there the control loop
//! places it (in its collection's nodes, as any task) and the node's agent runs it, reports
//! it and reads its lines, exactly as a service's task. Nothing restarts or replaces it; once
//! stopped it stays stopped until it is removed.
//!
//! Every host-reaching field of the request is asked of the caller's grants where the
//! container goes (`host.privileged`, `host.namespaces`, `host.bind-mount`,
//! `host.capabilities`), by the pure [`plan`]; what Wharf cannot honour is refused, never
//! dropped. A command runs in a container one made with `container.update`, in anyone else's
//! only with `container.exec` (which Restricted Control withholds). Its output comes as a
//! task's lines do (the node's agent takes the request from this manager's
//! [`crate::LogBroker`]); exec sessions live in this manager's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wharf_api::cluster::{HostSettings, TaskBlueprint};
use wharf_api::containers::{self as wire, ContainerCreate, ExecCreate};
use wharf_api::docker::{self, ContainerSpec, MountSpec, PortConfig, ResourceRequirements, Resources, TaskSpec};
use wharf_api::logs::{ExecSpec, LogContext, LogRequest};
use wharf_auth::rbac::Permission;
use wharf_store::{ContainerRecord, OrchestrationCommand, ProposerExt, Refusal, TaskRecord, TaskState};

use crate::access::Access;
use crate::services::{Caller, check_capabilities, check_mounts, find_one};
use crate::{ClusterError, Manager};

/// How long a finished exec session is kept for its `GET /exec/{id}/json`.
const EXEC_KEPT: Duration = Duration::from_secs(600);
/// How many exec sessions one manager keeps at most.
const MOST_EXECS: usize = 10_000;
/// How many unfinished exec sessions one caller holds at most.
const EXECS_PER_CALLER: usize = 256;
/// How long a session made but never started is kept.
const EXEC_UNSTARTED: Duration = Duration::from_secs(300);

/// The task a container request makes (pure); what of the node it uses is [`host_needs`].
/// `Err`: what Wharf cannot honour, said so.
pub fn plan(create: &ContainerCreate, name: &str, collection: &str) -> Result<TaskBlueprint, String> {
    let host = &create.host_config;
    if create.image.trim().is_empty() {
        return Err("an image is required".into());
    }
    let unsupported = |what: &str| Err(format!("{what} is not supported by Wharf for containers"));
    if !host.volumes_from.is_empty() {
        return unsupported("--volumes-from");
    }
    if !host.links.is_empty() {
        return unsupported("--link");
    }
    if host.publish_all_ports {
        return unsupported("--publish-all (-P)");
    }
    if !host.device_requests.is_empty() || !host.device_cgroup_rules.is_empty() {
        return unsupported("--gpus and --device-cgroup-rule");
    }
    if !host.cgroup_parent.is_empty() {
        return unsupported("--cgroup-parent");
    }
    if !host.sysctls.is_empty() {
        return unsupported("--sysctl");
    }
    if host.masked_paths.is_some() || host.readonly_paths.is_some() {
        return unsupported("--security-opt systempaths=unconfined");
    }
    if !matches!(host.runtime.as_str(), "" | "runc") {
        return unsupported("--runtime");
    }
    if !matches!(host.userns_mode.as_str(), "") {
        return unsupported("--userns");
    }
    if !matches!(host.cgroupns_mode.as_str(), "" | "private") {
        return unsupported("--cgroupns host");
    }
    match host.restart_policy.as_ref().map(|r| r.name.as_str()) {
        None | Some("" | "no") => {}
        Some(_) => {
            return Err(
                "a restart policy is for services: run it with `docker service create` to have it come back".into()
            );
        }
    }
    let network_mode = match host.network_mode.as_str() {
        "" | "default" | "bridge" => String::new(),
        "none" => "none".to_owned(),
        "host" => "host".to_owned(),
        other => {
            return Err(format!(
                "network {other:?}: a container joins the default bridge, host or none (cluster networks are for services)"
            ));
        }
    };
    let namespace = |flag: &str, mode: &str, also: &[&str]| -> Result<String, String> {
        match mode {
            "" | "host" => Ok(mode.to_owned()),
            m if also.contains(&m) => Ok(m.to_owned()),
            m => Err(format!("{flag} {m:?}: only host (or the default) is supported")),
        }
    };
    let pid_mode = namespace("--pid", &host.pid_mode, &[])?;
    let ipc_mode = namespace("--ipc", &host.ipc_mode, &["private", "shareable", "none"])?;
    let uts_mode = namespace("--uts", &host.uts_mode, &[])?;
    let mut mounts = Vec::new();
    for bind in &host.binds {
        mounts.push(bind_mount(bind)?);
    }
    mounts.extend(host.mounts.iter().cloned());
    for (target, options) in &host.tmpfs {
        if !options.is_empty() {
            return unsupported("--tmpfs PATH:OPTIONS (--tmpfs PATH is)");
        }
        mounts.push(MountSpec { kind: "tmpfs".into(), target: target.clone(), ..MountSpec::default() });
    }
    for target in create.volumes.keys() {
        if !mounts.iter().any(|m| m.target == *target) {
            mounts.push(MountSpec { kind: "volume".into(), target: target.clone(), ..MountSpec::default() });
        }
    }
    let mut host_ports = Vec::new();
    for (key, bindings) in &host.port_bindings {
        let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let target_port: u16 = port.parse().map_err(|_| format!("invalid port {key:?}"))?;
        if !matches!(protocol, "tcp" | "udp" | "sctp") {
            return Err(format!("invalid protocol in port {key:?}"));
        }
        for binding in bindings.iter().flatten() {
            if !binding.host_ip.is_empty() {
                return unsupported("publishing on one address of the node");
            }
            let published_port = match binding.host_port.as_str() {
                "" => 0,
                p => p.parse().map_err(|_| format!("invalid host port {p:?}: one port, not a range"))?,
            };
            host_ports.push(PortConfig {
                name: String::new(),
                protocol: protocol.to_owned(),
                target_port,
                published_port,
                publish_mode: "host".into(),
            });
        }
    }
    let limits = Resources { nano_cpus: host.nano_cpus.max(0), memory_bytes: host.memory.max(0) };
    let container_spec = ContainerSpec {
        image: create.image.clone(),
        labels: create.labels.clone(),
        command: create.entrypoint.clone().unwrap_or_default(),
        args: create.cmd.clone(),
        hostname: create.hostname.clone(),
        env: create.env.clone(),
        dir: create.working_dir.clone(),
        user: create.user.clone(),
        tty: create.tty,
        stop_grace_period: create.stop_timeout.map(|s| s.saturating_mul(1_000_000_000)),
        stop_signal: create.stop_signal.clone(),
        init: host.init,
        healthcheck: create.healthcheck.clone(),
        read_only: host.readonly_rootfs,
        open_stdin: create.open_stdin,
        oom_score_adj: (host.oom_score_adj != 0).then_some(host.oom_score_adj),
        mounts,
        capability_add: host.cap_add.clone(),
        capability_drop: host.cap_drop.clone(),
        ..ContainerSpec::default()
    };
    let blueprint = TaskBlueprint {
        service_name: name.to_owned(),
        spec: TaskSpec {
            container_spec,
            resources: (limits != Resources::default())
                .then_some(ResourceRequirements { limits: Some(limits), reservations: None }),
            ..TaskSpec::default()
        },
        host_ports,
        collection: collection.to_owned(),
        host: Some(HostSettings {
            privileged: host.privileged,
            network_mode,
            pid_mode,
            ipc_mode,
            uts_mode,
            security_opt: host.security_opt.clone(),
            devices: host.devices.clone(),
            auto_remove: host.auto_remove,
            stdin_once: create.stdin_once,
        }),
    };
    Ok(blueprint)
}

/// Every host-reaching operation a container's settings use (pure): asked again of whoever
/// starts it or runs a command in it, not only of its creator when it was made (a creator
/// demoted since keeps no way into the node).
pub fn host_needs(blueprint: &TaskBlueprint) -> Vec<Permission> {
    let c = &blueprint.spec.container_spec;
    let host = blueprint.host.clone().unwrap_or_default();
    let hardening =
        |o: &String| matches!(o.as_str(), "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true");
    let mut needs = Vec::new();
    if host.privileged
        || !host.devices.is_empty()
        || !host.security_opt.iter().all(hardening)
        || c.oom_score_adj.is_some_and(|adj| adj < 0)
    {
        needs.push(Permission::Privileged);
    }
    if [&host.network_mode, &host.pid_mode, &host.ipc_mode, &host.uts_mode].iter().any(|m| m.as_str() == "host") {
        needs.push(Permission::HostNamespaces);
    }
    if c.mounts.iter().any(MountSpec::reaches_the_node) {
        needs.push(Permission::BindMount);
    }
    if !c.capability_add.is_empty() {
        needs.push(Permission::AddCapabilities);
    }
    needs
}

/// `-v SOURCE:TARGET[:OPTIONS]` as a mount: a path of the node (a bind mount) or a named
/// volume; `-v TARGET` alone is an anonymous volume.
fn bind_mount(bind: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(format!("invalid volume specification {bind:?}")),
    };
    let kind = if source.starts_with('/') { "bind" } else { "volume" };
    let mut mount =
        MountSpec { kind: kind.into(), source: source.to_owned(), target: target.to_owned(), ..MountSpec::default() };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => mount.read_only = true,
            "rw" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" if kind == "bind" => {
                mount.bind_options = Some(serde_json::json!({"Propagation": option}));
            }
            "nocopy" if kind == "volume" => mount.volume_options = Some(serde_json::json!({"NoCopy": true})),
            "delegated" | "cached" | "consistent" => mount.consistency = option.to_owned(),
            "z" | "Z" => return Err(format!("SELinux relabelling ({option} in {bind:?}) is not supported by Wharf")),
            other => return Err(format!("invalid volume option {other:?} in {bind:?}")),
        }
    }
    Ok(mount)
}

/// The exec sessions of this manager (in memory, as the engine keeps them).
#[derive(Default)]
pub struct Execs {
    sessions: Mutex<HashMap<String, ExecSession>>,
    /// The standard input of started commands, by their log request's id, until their node
    /// takes it (`GET /cluster/exec-input/{id}`): (the node, what the caller sends).
    inputs: Mutex<HashMap<String, WaitingInput>>,
    /// The attaches each caller holds open.
    attaches: Mutex<HashMap<String, usize>>,
}

/// One attach of a caller, counted until it is dropped.
pub struct AttachHold {
    execs: std::sync::Arc<Execs>,
    caller: String,
}

impl Drop for AttachHold {
    fn drop(&mut self) {
        let mut attaches = self.execs.attaches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = attaches.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                attaches.remove(&self.caller);
            }
        }
    }
}

/// A command's standard input waiting for its node: (the node, what the caller sends).
type WaitingInput = (u64, mpsc::Receiver<Vec<u8>>);

#[derive(Debug, Clone)]
struct ExecSession {
    container: String,
    node: u64,
    /// Who made it: only they start and inspect it.
    caller: String,
    spec: ExecSpec,
    started: bool,
    exit_code: Option<i64>,
    ended: Option<Instant>,
    created: Instant,
    /// The streams the caller attached: (stdout, stderr).
    streams: (bool, bool),
}

impl Execs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecSession>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, id: String, session: ExecSession) -> Result<(), ClusterError> {
        let mut sessions = self.lock();
        // Ended ones are kept a while for their exit code; ones never started go too.
        sessions.retain(|_, s| match s.ended {
            Some(at) => at.elapsed() < EXEC_KEPT,
            None => s.started || s.created.elapsed() < EXEC_UNSTARTED,
        });
        let callers = sessions.values().filter(|s| s.caller == session.caller && s.ended.is_none()).count();
        if sessions.len() >= MOST_EXECS || callers >= EXECS_PER_CALLER {
            return Err(ClusterError::TooManyRequests("too many exec sessions on this manager".into()));
        }
        sessions.insert(id, session);
        Ok(())
    }

    /// Session `id`, to the caller who made it only (to anyone else it does not exist).
    fn session(&self, caller: &str, id: &str) -> Option<ExecSession> {
        self.lock().get(id).filter(|s| s.caller == caller).cloned()
    }

    /// Counts an attach of `caller`, refused past [`EXECS_PER_CALLER`] open at once.
    fn hold_attach(execs: &std::sync::Arc<Execs>, caller: &str) -> Result<AttachHold, ClusterError> {
        let mut attaches = execs.attaches.lock().unwrap_or_else(PoisonError::into_inner);
        let count = attaches.entry(caller.to_owned()).or_default();
        if *count >= EXECS_PER_CALLER {
            return Err(ClusterError::TooManyRequests(format!("{caller} holds {count} attaches open already")));
        }
        *count += 1;
        Ok(AttachHold { execs: std::sync::Arc::clone(execs), caller: caller.to_owned() })
    }

    /// Keeps `input` for `node` to take under request `id`.
    fn await_input(&self, id: &str, node: u64, input: mpsc::Receiver<Vec<u8>>) {
        self.inputs.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), (node, input));
    }

    /// The input of request `id`, once, and only to the node it waits for.
    fn take_input(&self, id: &str, node: u64) -> Option<mpsc::Receiver<Vec<u8>>> {
        let mut inputs = self.inputs.lock().unwrap_or_else(PoisonError::into_inner);
        match inputs.remove(id)? {
            (owner, input) if owner == node => Some(input),
            other => {
                inputs.insert(id.to_owned(), other);
                None
            }
        }
    }

    /// Forgets the input of request `id` if its node never took it.
    fn forget_input(&self, id: &str) {
        self.inputs.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    fn end(&self, id: &str, code: i64) {
        if let Some(session) = self.lock().get_mut(id) {
            session.exit_code = Some(code);
            session.ended = Some(Instant::now());
        }
    }
}

/// A command's output as it comes: `(stream, bytes)` (1 stdout, 2 stderr), and where its
/// standard input goes when it reads one (closed when dropped).
pub struct ExecOutput {
    pub output: mpsc::Receiver<(u8, Vec<u8>)>,
    pub tty: bool,
    pub input: Option<mpsc::Sender<Vec<u8>>>,
}

/// The exit code of a command whose node never said how it ended.
const EXIT_UNKNOWN: i64 = 255;

/// The generations of the domains a container's state lives in (its task, its node).
fn generations(changes: &wharf_store::Changes) -> (u64, u64) {
    (changes.orchestration, changes.cluster)
}

/// Resolves once tasks or nodes changed since `seen` (`false`: the state closed); commits of
/// other domains (a registry push, an audit flush) wake no waiter.
async fn moved_since(feed: &mut tokio::sync::watch::Receiver<wharf_store::Changes>, seen: (u64, u64)) -> bool {
    loop {
        if generations(&feed.borrow_and_update()) != seen {
            return true;
        }
        if feed.changed().await.is_err() {
            return false;
        }
    }
}

fn blueprint_of(task: &TaskRecord) -> TaskBlueprint {
    serde_json::from_str(&task.template).unwrap_or_default()
}

/// Whether a container ended (pure): its node reported its end, it was stopped before a node
/// ran it, or its node is gone (`node_gone`) and can say nothing more.
pub fn ended(task: &TaskRecord, node_gone: bool) -> bool {
    task.status.state.is_terminal()
        || (task.desired >= TaskState::Shutdown && (task.node.is_none() || task.status.state < TaskState::Assigned))
        || (task.node.is_some() && node_gone)
}

/// The exit code of an ended container: its own, 125 for one its node refused to run, 255
/// for one whose node went away, 0 for one stopped before it ran.
fn exit_code_of(task: &TaskRecord) -> i64 {
    match task.status.state {
        TaskState::Rejected => 125,
        s if s.is_terminal() => task.status.exit_code,
        _ if task.node.is_some() && task.status.state >= TaskState::Assigned => 255,
        _ => 0,
    }
}

/// Docker's short state of a container, and the words of `docker ps`'s STATUS.
fn state_of(task: &TaskRecord, ended: bool, now: u64) -> (&'static str, String) {
    let ago = |at: u64| human_duration(now.saturating_sub(at));
    if task.desired == TaskState::Ready {
        return ("created", "Created".into());
    }
    if ended {
        return ("exited", format!("Exited ({}) {} ago", exit_code_of(task), ago(task.status.at)));
    }
    match task.status.state {
        TaskState::Running => ("running", format!("Up {}", ago(task.status.at))),
        s => ("created", format!("Starting ({})", s.as_str())),
    }
}

/// `docker ps`'s way of saying how long: `5 seconds`, `3 minutes`, `2 hours`, `4 days`.
fn human_duration(secs: u64) -> String {
    let (n, unit) = match secs {
        0 => return "Less than a second".into(),
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 * 2 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

impl Manager {
    /// Whether container `task` ended ([`ended`], with its node looked up).
    fn container_ended(&self, task: &TaskRecord) -> Result<bool, ClusterError> {
        let node_gone = match task.node {
            Some(node) => self.store.node(node)?.is_none_or(|n| n.removed),
            None => false,
        };
        Ok(ended(task, node_gone))
    }

    /// The container `key` names (id, name, or a prefix of one id), visible to the caller, and
    /// `permission` allowed on it.
    fn find_container(
        &self,
        access: &Access,
        key: &str,
        permission: Permission,
    ) -> Result<(String, ContainerRecord, TaskRecord), ClusterError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let all: Vec<(String, (ContainerRecord, TaskRecord))> = self
            .store
            .containers()?
            .into_iter()
            .filter(|(_, _, t)| t.desired < TaskState::Remove)
            .map(|(id, c, t)| (id, (c, t)))
            .collect();
        let not_found = || ClusterError::NotFound(format!("No such container: {key}"));
        let (id, (container, task)) = find_one(&all, key, |(c, _)| &c.name).ok_or_else(not_found)?;
        let collection = blueprint_of(task).collection;
        access.reach(Permission::ContainerView, permission, &collection, not_found)?;
        Ok((id.clone(), container.clone(), task.clone()))
    }

    /// `POST /containers/create?name=`.
    pub async fn create_container(
        &self,
        caller: &Caller,
        name: Option<&str>,
        mut create: ContainerCreate,
    ) -> Result<wire::ContainerCreated, ClusterError> {
        let id = crate::control::new_object_id();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(given) => wire::container_name(given)
                .ok_or_else(|| {
                    ClusterError::Invalid(format!(
                        "Invalid container name ({given}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    ))
                })?
                .to_owned(),
            None => id[..12].to_owned(),
        };
        let access = self.access(caller)?;
        let collection = access.place(self, &mut create.labels, Permission::ContainerCreate)?;
        let blueprint = plan(&create, &name, &collection).map_err(ClusterError::Invalid)?;
        let spec = &blueprint.spec.container_spec;
        check_mounts(&access, &collection, &spec.mounts)?;
        check_capabilities(&access, &collection, spec)?;
        require_host(&access, &blueprint)?;
        let template = serde_json::to_string(&blueprint)
            .map_err(|e| ClusterError::Internal(format!("encoding a container: {e}")))?;
        let command = OrchestrationCommand::CreateContainer {
            id: id.clone(),
            name,
            owner: caller.name.clone(),
            template,
            at: crate::now(),
        };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(container_error)?;
        Ok(wire::ContainerCreated { id, warnings: Vec::new() })
    }

    /// `POST /containers/{id}/start`: `false` when it was started already.
    pub async fn start_container(&self, caller: &Caller, key: &str) -> Result<bool, ClusterError> {
        let access = self.access(caller)?;
        let (id, container, task) = self.find_container(&access, key, Permission::ContainerCreate)?;
        require_host(&access, &blueprint_of(&task))?;
        match task.desired {
            TaskState::Ready => {}
            TaskState::Running => return Ok(false),
            _ => {
                return Err(ClusterError::Conflict(format!(
                    "container {} was stopped: Wharf does not start a container again; run a new one",
                    container.name
                )));
            }
        }
        let command =
            OrchestrationCommand::SetDesiredState { ids: vec![id], desired: TaskState::Running, at: crate::now() };
        self.proposer.propose_by(caller.origin.clone(), command).await?;
        Ok(true)
    }

    /// `POST /containers/{id}/stop?t=` (and `kill`): waits, within the grace period and a
    /// margin, until its node stopped it. `false` when it was not running.
    pub async fn stop_container(&self, caller: &Caller, key: &str, grace: Option<i64>) -> Result<bool, ClusterError> {
        let (id, _, task) = self.find_container(&self.access(caller)?, key, Permission::ContainerUpdate)?;
        if task.desired != TaskState::Running || self.container_ended(&task)? {
            return Ok(false);
        }
        let mut feed = self.store.subscribe();
        // The grace the caller asked (`-t`; `kill`: none) reaches the node with the template.
        let mut blueprint = blueprint_of(&task);
        let spec_grace = blueprint.spec.container_spec.stop_grace_period.unwrap_or(10_000_000_000);
        let grace = grace.map_or(spec_grace / 1_000_000_000, |g| g.clamp(0, 3600));
        blueprint.spec.container_spec.stop_grace_period = Some(grace * 1_000_000_000);
        let template = serde_json::to_string(&blueprint)
            .map_err(|e| ClusterError::Internal(format!("encoding a container: {e}")))?;
        let command = OrchestrationCommand::StopContainer { id: id.clone(), template, at: crate::now() };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(container_error)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(grace.max(0) as u64 + 15);
        loop {
            let seen = generations(&feed.borrow_and_update());
            let ended = match self.store.task(&id)? {
                Some(t) => self.container_ended(&t)?,
                None => true,
            };
            if ended {
                return Ok(true);
            }
            tokio::select! {
                moved = moved_since(&mut feed, seen) => if !moved { return Ok(true) },
                () = tokio::time::sleep_until(deadline) => return Ok(true),
                () = self.stopping.stopped() => return Ok(true),
            }
        }
    }

    /// `DELETE /containers/{id}?force=`: a running container only with `force`.
    pub async fn remove_container(&self, caller: &Caller, key: &str, force: bool) -> Result<(), ClusterError> {
        let (id, container, task) = self.find_container(&self.access(caller)?, key, Permission::ContainerRemove)?;
        let running = task.desired == TaskState::Running && !self.container_ended(&task)?;
        if running && !force {
            return Err(ClusterError::Conflict(format!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                container.name
            )));
        }
        let command = OrchestrationCommand::RemoveContainer { id, at: crate::now() };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(container_error)?;
        Ok(())
    }

    /// The id of the container `key` names, which the caller may view (`POST
    /// /containers/{id}/wait` answers its head at once, and waits in its body).
    pub fn container_to_wait_for(&self, caller: &Caller, key: &str) -> Result<String, ClusterError> {
        Ok(self.find_container(&self.access(caller)?, key, Permission::ContainerView)?.0)
    }

    /// `POST /containers/{id}/wait`: once container `id` ended, its exit code
    /// ([`exit_code_of`]).
    pub async fn wait_container(&self, id: &str) -> Result<wire::WaitResponse, ClusterError> {
        let mut feed = self.store.subscribe();
        let mut last: Option<TaskRecord> = None;
        loop {
            let seen = generations(&feed.borrow_and_update());
            match self.store.task(id)? {
                // Removed (`--rm`) between two looks: it ended as it was last seen.
                None => {
                    return match last {
                        Some(t) => Ok(wire::WaitResponse { status_code: exit_code_of(&t) }),
                        None => Err(ClusterError::NotFound(format!("No such container: {id}"))),
                    };
                }
                Some(t) if self.container_ended(&t)? => {
                    return Ok(wire::WaitResponse { status_code: exit_code_of(&t) });
                }
                Some(t) => last = Some(t),
            }
            tokio::select! {
                moved = moved_since(&mut feed, seen) => if !moved { return Err(ClusterError::Unavailable("the state closed".into())) },
                () = self.stopping.stopped() => return Err(ClusterError::Unavailable("this manager is stopping".into())),
            }
        }
    }

    /// `GET /containers/json?all=&filters=`: the containers the caller may view (running ones
    /// unless `all`).
    pub fn list_containers(
        &self,
        caller: &Caller,
        all: bool,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<wire::ContainerSummary>, ClusterError> {
        for key in filters.keys() {
            if !matches!(key.as_str(), "id" | "name" | "label" | "status") {
                return Err(ClusterError::Invalid(format!("invalid filter '{key}'")));
            }
        }
        let access = self.access(caller)?;
        let now = crate::now();
        let mut out = Vec::new();
        // The nodes that are no more, read once for the whole list.
        let live: std::collections::BTreeSet<u64> =
            self.store.nodes()?.into_iter().filter(|(_, n)| !n.removed).map(|(id, _)| id).collect();
        for (id, container, task) in self.store.containers()? {
            if task.desired >= TaskState::Remove {
                continue;
            }
            let blueprint = blueprint_of(&task);
            if !access.allows(Permission::ContainerView, &blueprint.collection) {
                continue;
            }
            let (state, status) = state_of(&task, ended(&task, task.node.is_some_and(|n| !live.contains(&n))), now);
            let wanted = |key: &str, matches: &dyn Fn(&str) -> bool| {
                filters.get(key).is_none_or(|values| values.iter().any(|v| matches(v)))
            };
            let c = &blueprint.spec.container_spec;
            let labels_ok = crate::services::labels_match(&c.labels, filters.get("label").map_or(&[][..], |v| v));
            if (!all && state != "running" && !filters.contains_key("status"))
                || !wanted("id", &|v| id.starts_with(v))
                || !wanted("name", &|v| container.name.contains(v.trim_start_matches('/')))
                || !wanted("status", &|v| v == state)
                || !labels_ok
            {
                continue;
            }
            let command = c.command.iter().chain(&c.args).cloned().collect::<Vec<_>>().join(" ");
            out.push(wire::ContainerSummary {
                id: id.clone(),
                names: vec![format!("/{}", container.name)],
                image: c.image.clone(),
                image_id: String::new(),
                command,
                created: container.created as i64,
                ports: task
                    .status
                    .ports
                    .iter()
                    .map(|p| wire::SummaryPort {
                        ip: "0.0.0.0".into(),
                        private_port: p.target,
                        public_port: Some(p.published),
                        kind: p.protocol.clone(),
                    })
                    .collect(),
                labels: c.labels.clone(),
                state: state.to_owned(),
                status,
                host_config: wire::SummaryHostConfig {
                    network_mode: blueprint
                        .host
                        .as_ref()
                        .map(|h| h.network_mode.clone())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "default".into()),
                },
                mounts: Vec::new(),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect_container(&self, caller: &Caller, key: &str) -> Result<wire::ContainerInspect, ClusterError> {
        let (id, container, task) = self.find_container(&self.access(caller)?, key, Permission::ContainerView)?;
        let blueprint = blueprint_of(&task);
        let c = &blueprint.spec.container_spec;
        let host = blueprint.host.clone().unwrap_or_default();
        let ended = self.container_ended(&task)?;
        let (state, _) = state_of(&task, ended, crate::now());
        let node = match task.node {
            Some(node) => self.store.node(node)?.map(|n| wire::InspectNode {
                id: node.to_string(),
                name: n.hostname.clone(),
                addr: n.addr.clone(),
            }),
            None => None,
        };
        let mut ports: BTreeMap<String, Option<Vec<wire::PortBinding>>> = BTreeMap::new();
        for p in &task.status.ports {
            ports
                .entry(format!("{}/{}", p.target, p.protocol))
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(wire::PortBinding { host_ip: "0.0.0.0".into(), host_port: p.published.to_string() });
        }
        Ok(wire::ContainerInspect {
            id,
            created: docker::rfc3339(container.created),
            path: c.command.first().or(c.args.first()).cloned().unwrap_or_default(),
            args: c.command.iter().chain(&c.args).skip(1).cloned().collect(),
            state: wire::ContainerState {
                status: state.to_owned(),
                running: state == "running",
                exit_code: if ended { exit_code_of(&task) } else { 0 },
                error: task.status.err.clone(),
                started_at: docker::rfc3339(if state == "created" { 0 } else { task.created }),
                finished_at: docker::rfc3339(if ended { task.status.at } else { 0 }),
                ..wire::ContainerState::default()
            },
            image: c.image.clone(),
            name: format!("/{}", container.name),
            restart_count: 0,
            driver: String::new(),
            platform: "linux".into(),
            config: wire::InspectConfig {
                hostname: c.hostname.clone(),
                user: c.user.clone(),
                tty: c.tty,
                open_stdin: c.open_stdin,
                env: c.env.clone(),
                cmd: c.args.clone(),
                image: c.image.clone(),
                working_dir: c.dir.clone(),
                entrypoint: (!c.command.is_empty()).then(|| c.command.clone()),
                labels: c.labels.clone(),
            },
            host_config: wire::InspectHostConfig {
                network_mode: if host.network_mode.is_empty() { "default".into() } else { host.network_mode.clone() },
                privileged: host.privileged,
                pid_mode: host.pid_mode.clone(),
                ipc_mode: host.ipc_mode.clone(),
                uts_mode: host.uts_mode.clone(),
                auto_remove: host.auto_remove,
                cap_add: c.capability_add.clone(),
                cap_drop: c.capability_drop.clone(),
                binds: c
                    .mounts
                    .iter()
                    .filter(|m| m.kind == "bind")
                    .map(|m| format!("{}:{}{}", m.source, m.target, if m.read_only { ":ro" } else { "" }))
                    .collect(),
                readonly_rootfs: c.read_only,
            },
            mounts: Vec::new(),
            network_settings: wire::NetworkSettings { ports },
            node,
        })
    }

    /// The container of a log request (`docker logs`): its task, its node, whether it has a
    /// TTY.
    pub(crate) fn container_for_logs(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<(String, TaskRecord, bool), ClusterError> {
        let (id, _, task) = self.find_container(&self.access(caller)?, key, Permission::ContainerView)?;
        let tty = blueprint_of(&task).spec.container_spec.tty;
        Ok((id, task, tty))
    }

    /// `POST /containers/{id}/attach?stream=1`: the container's output from its start, as
    /// its node sends it, once it runs (the CLI attaches before it starts the container);
    /// ends when the container does. One that never ran says why on its standard error.
    /// With `stdin`, what the caller sends goes to the container's standard input (`docker run
    /// -i`: its own container needs `container.update`, anyone else's `container.exec`).
    /// A container running already sends its output from now on, unless `logs` asks for what
    /// it wrote before too (`docker attach`; `docker run` attaches before the start). The node
    /// attaches to the engine's container: a terminal's prompt comes as it is written.
    pub fn attach_container(
        &self,
        caller: &Caller,
        key: &str,
        stdin: bool,
        logs: bool,
    ) -> Result<ExecOutput, ClusterError> {
        let access = self.access(caller)?;
        let (id, container, task) = self.find_container(&access, key, Permission::ContainerView)?;
        if self.container_ended(&task)? {
            return Err(ClusterError::Conflict("You cannot attach to a stopped container, start it first".into()));
        }
        // What it wrote before: when asked, or when the caller attached before the start.
        let replay = logs || task.status.state < TaskState::Running;
        let blueprint = blueprint_of(&task);
        if stdin {
            let needed =
                if container.owner == caller.name { Permission::ContainerUpdate } else { Permission::ExecOthers };
            access.require(needed, &blueprint.collection)?;
            require_host(&access, &blueprint)?;
        }
        let tty = blueprint.spec.container_spec.tty;
        let (input, mut from_caller) = match stdin {
            true => {
                let (sender, receiver) = mpsc::channel(16);
                (Some(sender), Some(receiver))
            }
            false => (None, None),
        };
        // An attach holds a connection and a node's stream for as long as the container runs:
        // a caller holds a bounded number of them.
        let held = Execs::hold_attach(&self.execs, &caller.name)?;
        let (to_caller, output) = mpsc::channel(64);
        let (store, broker, execs) =
            (std::sync::Arc::clone(&self.store), self.logs.clone(), std::sync::Arc::clone(&self.execs));
        tokio::spawn(async move {
            let _held = held;
            let mut feed = store.subscribe();
            let (node, task) = loop {
                let seen = generations(&feed.borrow_and_update());
                match store.task(&id) {
                    Ok(Some(t)) => match t.node {
                        Some(node) if t.status.state >= TaskState::Running && !t.status.container_id.is_empty() => {
                            break (node, t);
                        }
                        _ if t.status.state.is_terminal() => {
                            let why = if t.status.err.is_empty() { &t.status.message } else { &t.status.err };
                            let _ = to_caller.send((wharf_api::logs::STDERR, format!("{why}\n").into_bytes())).await;
                            return;
                        }
                        _ => {}
                    },
                    _ => return,
                }
                tokio::select! {
                    moved = moved_since(&mut feed, seen) => if !moved { return },
                    () = to_caller.closed() => return,
                }
            };
            let context = std::sync::Arc::new(LogContext {
                node_id: node.to_string(),
                service_id: String::new(),
                task_id: id.clone(),
            });
            // Standard input: the node attaches it to the running container.
            if let Some(input) = from_caller.take().filter(|_| !task.status.state.is_terminal()) {
                let request = LogRequest {
                    id: crate::control::new_object_id(),
                    task_id: id.clone(),
                    attach_stdin: true,
                    ..LogRequest::default()
                };
                let request_id = request.id.clone();
                execs.await_input(&request_id, node, input);
                let (done, mut attached) = mpsc::channel(1);
                broker.ask(node, (request, std::sync::Arc::clone(&context)), done);
                tokio::spawn(async move {
                    while attached.recv().await.is_some() {}
                    execs.forget_input(&request_id);
                });
            }
            let request = LogRequest {
                id: crate::control::new_object_id(),
                task_id: id.clone(),
                attach_output: true,
                replay,
                ..LogRequest::default()
            };
            let (lines, mut from_node) = mpsc::channel(64);
            broker.ask(node, (request, context), lines);
            while let Some(line) = from_node.recv().await {
                if line.stream != wharf_api::logs::STDOUT && line.stream != wharf_api::logs::STDERR {
                    continue;
                }
                if to_caller.send((line.stream, line.payload)).await.is_err() {
                    return;
                }
            }
        });
        Ok(ExecOutput { output, tty, input })
    }

    /// `POST /containers/{id}/exec`: a command to run in a running container, once started.
    pub fn create_exec(
        &self,
        caller: &Caller,
        key: &str,
        exec: ExecCreate,
    ) -> Result<wire::ContainerCreated, ClusterError> {
        let access = self.access(caller)?;
        let (id, container, task) = self.find_container(&access, key, Permission::ContainerView)?;
        let collection = blueprint_of(&task).collection;
        // In one's own container a command is an update of it; in anyone else's it needs
        // `container.exec`.
        let needed = if container.owner == caller.name { Permission::ContainerUpdate } else { Permission::ExecOthers };
        access.require(needed, &collection)?;
        require_host(&access, &blueprint_of(&task))?;
        if exec.privileged {
            access.require(Permission::Privileged, &collection)?;
        }
        if exec.cmd.is_empty() {
            return Err(ClusterError::Invalid("No exec command specified".into()));
        }
        let node = match task.node {
            Some(node) if task.status.state == TaskState::Running && task.desired == TaskState::Running => node,
            _ => return Err(ClusterError::Conflict(format!("Container {} is not running", container.name))),
        };
        let exec_id = crate::control::new_object_id();
        let spec = ExecSpec {
            cmd: exec.cmd,
            env: exec.env,
            user: exec.user,
            working_dir: exec.working_dir,
            tty: exec.tty,
            privileged: exec.privileged,
            stdin: exec.attach_stdin,
        };
        let session = ExecSession {
            container: id,
            node,
            caller: caller.name.clone(),
            spec,
            started: false,
            exit_code: None,
            ended: None,
            created: Instant::now(),
            streams: (exec.attach_stdout, exec.attach_stderr),
        };
        self.execs.insert(exec_id.clone(), session)?;
        Ok(wire::ContainerCreated { id: exec_id, warnings: Vec::new() })
    }

    fn exec_session(&self, caller: &Caller, exec_id: &str) -> Result<ExecSession, ClusterError> {
        self.execs
            .session(&caller.name, exec_id)
            .ok_or_else(|| ClusterError::NotFound(format!("No such exec instance: {exec_id}")))
    }

    /// `POST /exec/{id}/start`: asks the container's node to run the command; its output
    /// comes on the answer as the node sends it (drained here when the caller detached).
    pub fn start_exec(&self, caller: &Caller, exec_id: &str) -> Result<ExecOutput, ClusterError> {
        let session = self.exec_session(caller, exec_id)?;
        {
            let mut sessions = self.execs.lock();
            let Some(s) = sessions.get_mut(exec_id) else {
                return Err(ClusterError::NotFound(format!("No such exec instance: {exec_id}")));
            };
            if s.started {
                return Err(ClusterError::Conflict(format!("exec {exec_id} has already been started")));
            }
            s.started = true;
        }
        let tty = session.spec.tty;
        let context = std::sync::Arc::new(LogContext {
            node_id: session.node.to_string(),
            service_id: String::new(),
            task_id: session.container.clone(),
        });
        let request = LogRequest {
            id: crate::control::new_object_id(),
            task_id: session.container.clone(),
            exec: Some(session.spec.clone()),
            ..LogRequest::default()
        };
        let request_id = request.id.clone();
        let input = if session.spec.stdin {
            let (sender, receiver) = mpsc::channel(16);
            self.execs.await_input(&request_id, session.node, receiver);
            Some(sender)
        } else {
            None
        };
        let (lines, mut from_node) = mpsc::channel(64);
        self.logs.ask(session.node, (request, context), lines);
        let (to_caller, output) = mpsc::channel(64);
        let execs = std::sync::Arc::clone(&self.execs);
        let exec_id = exec_id.to_owned();
        tokio::spawn(async move {
            let mut code = None;
            while let Some(line) = from_node.recv().await {
                if line.stream == wharf_api::logs::EXIT {
                    code = wharf_api::logs::exit_code(&line.payload);
                    break;
                }
                // A caller that left does not stop the command: its output is drained.
                let (stdout, stderr) = session.streams;
                let wanted = if line.stream == wharf_api::logs::STDERR { stderr } else { stdout };
                if wanted {
                    let _ = to_caller.send((line.stream, line.payload)).await;
                }
            }
            if code.is_none() {
                tracing::warn!(exec = exec_id, "a command's node did not say how it ended");
            }
            execs.end(&exec_id, code.unwrap_or(EXIT_UNKNOWN));
            execs.forget_input(&request_id);
        });
        Ok(ExecOutput { output, tty, input })
    }

    /// `GET /cluster/exec-input/{id}`: the standard input of the command that log request
    /// `id` asked the calling node to run, as the caller sends it.
    pub fn exec_input(
        &self,
        identity: &wharf_pki::NodeIdentity,
        id: &str,
    ) -> Result<mpsc::Receiver<Vec<u8>>, ClusterError> {
        self.known_peer(identity)?;
        self.execs
            .take_input(id, identity.node_id)
            .ok_or_else(|| ClusterError::NotFound(format!("no command's input {id} waits for this node")))
    }

    /// `POST /exec/{id}/resize`: the caller's session must exist (the size is the engine's
    /// default).
    pub fn resize_exec(&self, caller: &Caller, exec_id: &str) -> Result<(), ClusterError> {
        self.exec_session(caller, exec_id).map(|_| ())
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect_exec(&self, caller: &Caller, exec_id: &str) -> Result<wire::ExecInspect, ClusterError> {
        let session = self.exec_session(caller, exec_id)?;
        Ok(wire::ExecInspect {
            id: exec_id.to_owned(),
            running: session.started && session.exit_code.is_none(),
            exit_code: session.exit_code,
            container_id: session.container,
            open_stdin: session.spec.stdin,
            open_stdout: true,
            open_stderr: true,
            can_remove: session.exit_code.is_some(),
            pid: 0,
        })
    }
}

/// Every host-reaching operation of a container, allowed to the caller where it is.
fn require_host(access: &Access, blueprint: &TaskBlueprint) -> Result<(), ClusterError> {
    host_needs(blueprint).into_iter().try_for_each(|p| access.require(p, &blueprint.collection))
}

fn container_error(e: wharf_store::ProposeError) -> ClusterError {
    match e {
        wharf_store::ProposeError::Refused(Refusal::NameTaken { name, .. }) => ClusterError::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use. You have to remove (or rename) that container to be able to reuse that name."
        )),
        wharf_store::ProposeError::Refused(Refusal::ObjectUnknown { id, .. }) => {
            ClusterError::NotFound(format!("No such container: {id}"))
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> ContainerCreate {
        serde_json::from_str(json).expect("a create body")
    }

    fn needs(json: &str) -> Vec<Permission> {
        host_needs(&plan(&create(json), "c", "/Shared").expect("a plan"))
    }

    #[test]
    fn each_host_reaching_setting_needs_its_permission_and_nothing_else_does() {
        assert!(
            needs(r#"{"Image":"i","Cmd":["true"],"HostConfig":{"NetworkMode":"default","Binds":["data:/d"]}}"#)
                .is_empty()
        );
        assert_eq!(needs(r#"{"Image":"i","HostConfig":{"Privileged":true}}"#), [Permission::Privileged]);
        assert_eq!(needs(r#"{"Image":"i","HostConfig":{"NetworkMode":"host"}}"#), [Permission::HostNamespaces]);
        assert_eq!(needs(r#"{"Image":"i","HostConfig":{"PidMode":"host"}}"#), [Permission::HostNamespaces]);
        assert_eq!(needs(r#"{"Image":"i","HostConfig":{"IpcMode":"host"}}"#), [Permission::HostNamespaces]);
        assert_eq!(needs(r#"{"Image":"i","HostConfig":{"UTSMode":"host"}}"#), [Permission::HostNamespaces]);
        let device = r#"{"Image":"i","HostConfig":{"Devices":[{"PathOnHost":"/dev/kmsg","PathInContainer":"/dev/kmsg","CgroupPermissions":"rwm"}]}}"#;
        assert_eq!(needs(device), [Permission::Privileged]);
        assert_eq!(
            needs(r#"{"Image":"i","HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}"#),
            [Permission::Privileged]
        );
        assert!(needs(r#"{"Image":"i","HostConfig":{"SecurityOpt":["no-new-privileges"]}}"#).is_empty());
        // A bind mount and capabilities: in the plan's container spec, and asked of it.
        let blueprint =
            plan(&create(r#"{"Image":"i","HostConfig":{"Binds":["/etc:/host:ro"],"CapAdd":["NET_ADMIN"]}}"#), "c", "/")
                .expect("plan");
        let spec = &blueprint.spec.container_spec;
        assert_eq!((spec.mounts[0].kind.as_str(), spec.mounts[0].read_only), ("bind", true));
        assert_eq!(spec.capability_add, ["NET_ADMIN"]);
        assert_eq!(host_needs(&blueprint), [Permission::BindMount, Permission::AddCapabilities]);
        for body in [
            r#"{"Image":"i","HostConfig":{"Privileged":true,"PidMode":"host"}}"#,
            r#"{"Image":"i","HostConfig":{"SecurityOpt":["apparmor=unconfined"],"NetworkMode":"host"}}"#,
            r#"{"Image":"i","HostConfig":{"OomScoreAdj":-500,"UTSMode":"host"}}"#,
        ] {
            let again = needs(body);
            assert_eq!(again, [Permission::Privileged, Permission::HostNamespaces], "{body}");
        }
    }

    #[test]
    fn what_wharf_cannot_honour_is_refused_not_dropped() {
        for body in [
            r#"{"Image":""}"#,
            r#"{"Image":"i","HostConfig":{"VolumesFrom":["x"]}}"#,
            r#"{"Image":"i","HostConfig":{"Links":["x:y"]}}"#,
            r#"{"Image":"i","HostConfig":{"PublishAllPorts":true}}"#,
            r#"{"Image":"i","HostConfig":{"RestartPolicy":{"Name":"always"}}}"#,
            r#"{"Image":"i","HostConfig":{"NetworkMode":"container:x"}}"#,
            r#"{"Image":"i","HostConfig":{"NetworkMode":"mynet"}}"#,
            r#"{"Image":"i","HostConfig":{"PidMode":"container:x"}}"#,
            r#"{"Image":"i","HostConfig":{"Sysctls":{"net.ipv4.ip_forward":"1"}}}"#,
            r#"{"Image":"i","HostConfig":{"MaskedPaths":[]}}"#,
            r#"{"Image":"i","HostConfig":{"CgroupParent":"/x"}}"#,
            r#"{"Image":"i","HostConfig":{"UsernsMode":"host"}}"#,
            r#"{"Image":"i","HostConfig":{"Binds":["/a:/b:ro:x"]}}"#,
            r#"{"Image":"i","HostConfig":{"Binds":["/a:/b:bogus"]}}"#,
            r#"{"Image":"i","HostConfig":{"Binds":["/a:/b:Z"]}}"#,
            r#"{"Image":"i","HostConfig":{"Binds":["v:/b:rshared"]}}"#,
            r#"{"Image":"i","HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"10.0.0.1","HostPort":"80"}]}}}"#,
            r#"{"Image":"i","HostConfig":{"PortBindings":{"x/tcp":[{"HostPort":"80"}]}}}"#,
            r#"{"Image":"i","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"80-90"}]}}}"#,
        ] {
            assert!(plan(&create(body), "c", "/").is_err(), "{body}");
        }
    }

    #[test]
    fn a_plan_keeps_the_command_ports_limits_and_settings() {
        let body = r#"{"Image":"busybox","Entrypoint":["sh","-c"],"Cmd":["echo hi"],"Env":["A=1"],"Tty":true,
            "StopTimeout":3,"Labels":{"k":"v"},
            "HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}],"53/udp":[{"HostPort":""}]},
            "Memory":1048576,"AutoRemove":true,"CapDrop":["CHOWN"]}}"#;
        let b = &plan(&create(body), "web", "/Shared/ops").expect("plan");
        assert_eq!((b.service_name.as_str(), b.collection.as_str()), ("web", "/Shared/ops"));
        let c = &b.spec.container_spec;
        assert_eq!((c.command.clone(), c.args.clone()), (vec!["sh".into(), "-c".into()], vec!["echo hi".into()]));
        assert_eq!(c.stop_grace_period, Some(3_000_000_000));
        assert!(c.tty);
        assert_eq!(c.capability_drop, ["CHOWN"]);
        let ports: Vec<(u16, u16, &str)> =
            b.host_ports.iter().map(|p| (p.target_port, p.published_port, p.protocol.as_str())).collect();
        assert_eq!(ports, [(53, 0, "udp"), (80, 8080, "tcp")]);
        assert_eq!(b.spec.resources.as_ref().and_then(|r| r.limits).map(|l| l.memory_bytes), Some(1_048_576));
        assert!(b.host.as_ref().is_some_and(|h| h.auto_remove && !h.privileged));
    }

    #[test]
    fn a_container_ended_once_reported_so_stopped_before_it_ran_or_its_node_gone() {
        let task = |state: TaskState, desired: TaskState, node: Option<u64>| TaskRecord {
            service_id: String::new(),
            slot: 0,
            node,
            spec_version: 0,
            template: String::new(),
            desired,
            status: wharf_store::TaskStatus {
                state,
                message: String::new(),
                err: String::new(),
                container_id: String::new(),
                exit_code: 3,
                at: 0,
                ports: Vec::new(),
            },
            version: 0,
            created: 0,
            updated: 0,
        };
        let running = task(TaskState::Running, TaskState::Running, Some(1));
        assert!(!ended(&running, false));
        assert!(ended(&running, true), "its node is gone");
        assert_eq!(exit_code_of(&running), 255);
        let failed = task(TaskState::Failed, TaskState::Running, Some(1));
        assert!(ended(&failed, false));
        assert_eq!(exit_code_of(&failed), 3);
        assert_eq!(exit_code_of(&task(TaskState::Rejected, TaskState::Running, Some(1))), 125);
        let unplaced = task(TaskState::Pending, TaskState::Shutdown, None);
        assert!(ended(&unplaced, false));
        assert_eq!(exit_code_of(&unplaced), 0);
        assert!(!ended(&task(TaskState::Pending, TaskState::Running, None), false), "still to be placed");
        assert!(!ended(&task(TaskState::Running, TaskState::Shutdown, Some(1)), false), "its node stops it");
    }

    #[test]
    fn a_commands_input_goes_once_and_only_to_its_node() {
        let execs = Execs::default();
        let (_typing, input) = mpsc::channel(1);
        execs.await_input("r1", 7, input);
        assert!(execs.take_input("r1", 8).is_none(), "another node took the input");
        assert!(execs.take_input("r2", 7).is_none(), "another request's input");
        assert!(execs.take_input("r1", 7).is_some(), "its own node");
        assert!(execs.take_input("r1", 7).is_none(), "taken twice");
        let (_typing, input) = mpsc::channel(1);
        execs.await_input("r3", 7, input);
        execs.forget_input("r3");
        assert!(execs.take_input("r3", 7).is_none(), "forgotten");
    }

    #[test]
    fn a_caller_holds_a_bounded_number_of_attaches_and_a_closed_one_frees_its_place() {
        let execs = std::sync::Arc::new(Execs::default());
        let held: Vec<AttachHold> =
            (0..EXECS_PER_CALLER).map(|_| Execs::hold_attach(&execs, "alice").expect("within the cap")).collect();
        assert!(Execs::hold_attach(&execs, "alice").is_err(), "past the cap");
        assert!(Execs::hold_attach(&execs, "bob").is_ok(), "another caller's own cap");
        drop(held);
        assert!(Execs::hold_attach(&execs, "alice").is_ok(), "closed attaches free their places");
        assert!(execs.attaches.lock().expect("lock").get("bob").is_none(), "a caller with none is forgotten");
    }

    #[test]
    fn unfinished_sessions_are_capped_per_caller() {
        let execs = Execs::default();
        let session = |caller: &str| ExecSession {
            container: "c".into(),
            node: 1,
            caller: caller.into(),
            spec: ExecSpec::default(),
            started: false,
            exit_code: None,
            ended: None,
            created: Instant::now(),
            streams: (true, true),
        };
        for n in 0..EXECS_PER_CALLER {
            execs.insert(format!("a{n}"), session("alice")).expect("within the cap");
        }
        assert!(execs.insert("one-more".into(), session("alice")).is_err(), "past the cap");
        execs.insert("b".into(), session("bob")).expect("another caller's own cap");
        assert!(execs.session("bob", "b").is_some(), "its caller's");
        assert!(execs.session("alice", "b").is_none(), "another caller cannot start or read it");
    }

    #[test]
    fn durations_read_as_docker_ps_says_them() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(120), "2 minutes");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(86_400 * 3), "3 days");
    }
}
