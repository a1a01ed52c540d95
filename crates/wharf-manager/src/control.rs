//! The leader's control loop: the orchestrators' plan ([`crate::orchestrator::reconcile`])
//! and the scheduler's placements (`wharf-scheduler`), proposed through Raft. It wakes on every
//! change of the orchestration or cluster state (a new service, a task report, a node down), on
//! a delayed restart falling due, and once a second; only the leader acts, so after a failover
//! the new leader takes over from the state alone (swarmkit's `CheckTasks` at leadership).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wharf_api::cluster::TaskBlueprint;
use wharf_scheduler::{Availability, Decision, Protocol, Role};
use wharf_store::{OrchestrationCommand, ProposerExt, TaskRecord, TaskState};

use crate::orchestrator::{NodeView, UpdateChange, reconcile};
use crate::{ClusterError, Manager};

/// How many tasks one proposal carries, so that one Raft entry stays small.
const BATCH: usize = 2_000;

/// Runs on every manager for as long as it serves; acts while it leads.
pub async fn run_control_loop(manager: Arc<Manager>) {
    let mut feed = manager.store.subscribe();
    let mut seen = (u64::MAX, u64::MAX);
    let mut wake_at: Option<u64> = None;
    loop {
        let changes = *feed.borrow_and_update();
        let now = crate::now();
        let due = wake_at.is_some_and(|at| at <= now);
        let changed = (changes.orchestration, changes.cluster) != seen;
        if (changed || due) && manager.raft.current_leader().await == Some(manager.node_id) {
            seen = (changes.orchestration, changes.cluster);
            match control_pass(&manager).await {
                Ok(next) => wake_at = next,
                Err(e) => {
                    tracing::warn!(error = %e, "a pass of the control loop failed");
                    seen = (u64::MAX, u64::MAX);
                }
            }
        }
        tokio::select! {
            _ = feed.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                // A new leader has no change to wake it: look again.
                if manager.raft.current_leader().await != Some(manager.node_id) {
                    seen = (u64::MAX, u64::MAX);
                }
            }
        }
    }
}

/// One pass: reconcile, then schedule what is pending. Returns when a delayed restart is due.
pub async fn control_pass(manager: &Manager) -> Result<Option<u64>, ClusterError> {
    let nodes = node_views(manager)?;
    let services = manager.store.services()?;
    let updates = manager.store.service_updates()?;
    let tasks = manager.store.tasks()?;
    let plan = reconcile(&services, &updates, &tasks, &nodes, crate::now(), &mut new_object_id);
    let at = crate::now();
    for chunk in plan.create.chunks(BATCH) {
        propose(manager, OrchestrationCommand::CreateTasks { tasks: chunk.to_vec(), at }).await?;
    }
    for chunk in plan.shutdown.chunks(BATCH) {
        let ids = chunk.to_vec();
        propose(manager, OrchestrationCommand::SetDesiredState { ids, desired: TaskState::Shutdown, at }).await?;
    }
    for chunk in plan.remove.chunks(BATCH) {
        let ids = chunk.to_vec();
        propose(manager, OrchestrationCommand::SetDesiredState { ids, desired: TaskState::Remove, at }).await?;
    }
    for chunk in plan.forget.chunks(BATCH) {
        propose(manager, OrchestrationCommand::RemoveTasks { ids: chunk.to_vec() }).await?;
    }
    for id in &plan.remove_containers {
        match manager.proposer.propose(OrchestrationCommand::RemoveContainer { id: id.clone(), at }).await {
            // Removed by its owner in between.
            Ok(_) | Err(wharf_store::ProposeError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for change in &plan.updates {
        let command = match change {
            UpdateChange::Set { service, spec_version, state, message } => OrchestrationCommand::SetUpdateState {
                id: service.clone(),
                spec_version: *spec_version,
                state: *state,
                message: message.clone(),
                at,
            },
            UpdateChange::Rollback { service, version, message } => {
                match manager.rollback_command(service, *version, message) {
                    Ok(command) => command,
                    Err(e) => {
                        // No previous spec to go back to: the update pauses instead.
                        tracing::warn!(service, error = %e, "an update's rollback is not possible");
                        let Some(update) = manager.store.service_update(service)? else { continue };
                        OrchestrationCommand::SetUpdateState {
                            id: service.clone(),
                            spec_version: update.spec_version,
                            state: wharf_store::UpdateState::Paused,
                            message: format!("update paused: it could not be rolled back ({e})"),
                            at,
                        }
                    }
                }
            }
        };
        if let Err(e) = manager.proposer.propose(command).await {
            // Another change of the service came first: the next pass looks again.
            tracing::debug!(error = %e, "recording an update's progress was refused");
        }
    }
    let tasks = if plan == Default::default() { tasks } else { manager.store.tasks()? };
    schedule(manager, &nodes, &tasks).await?;
    Ok(plan.wake_at)
}

async fn propose(manager: &Manager, command: OrchestrationCommand) -> Result<(), ClusterError> {
    manager.proposer.propose(command).await?;
    Ok(())
}

/// Places the pending tasks and records the decisions.
async fn schedule(manager: &Manager, nodes: &[NodeView], tasks: &[(String, TaskRecord)]) -> Result<(), ClusterError> {
    let mut scheduler_nodes: BTreeMap<u64, wharf_scheduler::Node> =
        nodes.iter().filter(|n| !n.record.removed).map(|n| (n.id, scheduler_node(n))).collect();
    let mut pending = Vec::new();
    // The reason each pending task carries now: an unchanged one is not proposed again.
    let mut reasons: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, task) in tasks {
        let Ok(blueprint) = serde_json::from_str::<TaskBlueprint>(&task.template) else { continue };
        let occupies = task.desired == TaskState::Running && !task.status.state.is_terminal();
        match task.node {
            Some(node) if task.status.state >= TaskState::Assigned => {
                if let (true, Some(n)) = (occupies, scheduler_nodes.get_mut(&node)) {
                    add_load(n, &task.service_id, &blueprint);
                }
            }
            _ if occupies && task.status.state <= TaskState::Pending => {
                reasons.insert(id, &task.status.err);
                pending.push(scheduler_task(id, task, &blueprint));
            }
            _ => {}
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let nodes: Vec<wharf_scheduler::Node> = scheduler_nodes.into_values().collect();
    let decisions = wharf_scheduler::schedule(&nodes, &pending);
    let (mut placed, mut unplaceable) = (Vec::new(), Vec::new());
    for decision in decisions {
        match decision {
            Decision::Placed { task, node } => placed.push((task, node)),
            Decision::Unplaceable { task, reason } => {
                if reasons.get(task.as_str()) != Some(&reason.as_str()) {
                    unplaceable.push((task, reason));
                }
            }
        }
    }
    let at = crate::now();
    for chunk in placed.chunks(BATCH) {
        let command = OrchestrationCommand::AssignTasks { placed: chunk.to_vec(), unplaceable: vec![], at };
        propose(manager, command).await?;
    }
    for chunk in unplaceable.chunks(BATCH) {
        let command = OrchestrationCommand::AssignTasks { placed: vec![], unplaceable: chunk.to_vec(), at };
        propose(manager, command).await?;
    }
    Ok(())
}

/// Every node the state knows, with the control plane's details of it.
pub fn node_views(manager: &Manager) -> Result<Vec<NodeView>, ClusterError> {
    let mut views = Vec::new();
    for (id, record) in manager.store.nodes()? {
        let details = manager.store.node_details(id)?;
        views.push(NodeView { id, record, details });
    }
    Ok(views)
}

/// A node as the scheduler sees it, with no load yet.
pub fn scheduler_node(view: &NodeView) -> wharf_scheduler::Node {
    let description = view.details.description.clone().unwrap_or_default();
    wharf_scheduler::Node {
        id: view.id,
        hostname: if description.hostname.is_empty() { view.record.hostname.clone() } else { description.hostname },
        role: if view.record.role == "manager" { Role::Manager } else { Role::Worker },
        // A node counts once its agent has described its engine: before that nothing can run there.
        ready: view.record.state == "ready" && view.details.description.is_some(),
        availability: match view.details.availability.as_str() {
            "pause" => Availability::Pause,
            "drain" => Availability::Drain,
            _ => Availability::Active,
        },
        labels: view.details.labels.clone(),
        engine_labels: description.engine_labels,
        platform: wharf_scheduler::Platform { os: description.os, architecture: description.architecture },
        resources: wharf_scheduler::Resources {
            nano_cpus: description.nano_cpus,
            memory_bytes: description.memory_bytes,
        },
        reserved: wharf_scheduler::Resources::default(),
        host_ports: Default::default(),
        tasks_by_service: BTreeMap::new(),
        total_tasks: 0,
        collection: collection_of_node(view),
    }
}

/// The access collection of a node (its label's, or its role's default).
pub fn collection_of_node(view: &NodeView) -> String {
    crate::access::node_collection(&view.details.labels, &view.record.role)
}

fn reservations(blueprint: &TaskBlueprint) -> wharf_scheduler::Resources {
    let reserved = blueprint.spec.resources.as_ref().and_then(|r| r.reservations).unwrap_or_default();
    wharf_scheduler::Resources { nano_cpus: reserved.nano_cpus, memory_bytes: reserved.memory_bytes }
}

fn host_ports(blueprint: &TaskBlueprint) -> Vec<(Protocol, u16)> {
    blueprint
        .host_ports
        .iter()
        .filter(|p| p.published_port != 0)
        .map(|p| {
            let protocol = match p.protocol.as_str() {
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            (protocol, p.published_port)
        })
        .collect()
}

fn add_load(node: &mut wharf_scheduler::Node, service: &str, blueprint: &TaskBlueprint) {
    let reserved = reservations(blueprint);
    node.reserved.nano_cpus += reserved.nano_cpus;
    node.reserved.memory_bytes += reserved.memory_bytes;
    node.host_ports.extend(host_ports(blueprint));
    *node.tasks_by_service.entry(service.to_owned()).or_default() += 1;
    node.total_tasks += 1;
}

fn scheduler_task(id: &str, task: &TaskRecord, blueprint: &TaskBlueprint) -> wharf_scheduler::Task {
    let placement = blueprint.spec.placement.clone().unwrap_or_default();
    let preferences = placement
        .preferences
        .iter()
        .filter_map(|p| p.spread.as_ref())
        .filter_map(|s| wharf_scheduler::Spread::parse(&s.spread_descriptor).ok())
        .collect();
    wharf_scheduler::Task {
        id: id.to_owned(),
        service_id: task.service_id.clone(),
        spec_version: task.spec_version,
        constraints: wharf_scheduler::Constraint::parse_all(&placement.constraints).unwrap_or_default(),
        preferences,
        platforms: placement
            .platforms
            .iter()
            .map(|p| wharf_scheduler::Platform { os: p.os.clone(), architecture: p.architecture.clone() })
            .collect(),
        reservations: reservations(blueprint),
        host_ports: host_ports(blueprint),
        node: task.node,
        collection: (!blueprint.collection.is_empty()).then(|| blueprint.collection.clone()),
    }
}

/// A new id for a service or task: 25 lowercase letters and digits, as Swarm's look.
pub fn new_object_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 25];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system's random source failed: fall back on the clock, still unique enough
        // for ids that are checked against the state when used.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b = (nanos >> (i % 16 * 8)) as u8);
    }
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}
