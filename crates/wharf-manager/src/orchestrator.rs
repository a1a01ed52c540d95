//! The orchestrators (swarmkit's `manager/orchestrator`), as one pure function: from the
//! services, tasks and nodes of the state and the time, the tasks to create, those to shut
//! down and those to forget. The leader's control loop ([`crate::control`]) proposes them.
//!
//! Replicated services keep one running task per slot 1..N; global services one per eligible
//! node. A new task template replaces a replicated service's tasks as its `UpdateConfig`
//! says (a rolling update: parallelism, delay, stop-first or start-first; a global service's
//! at once). A task that ended (or whose node is down, drained or gone) is shut down and replaced,
//! after the restart delay when it failed; tasks of slots beyond N are shut down; ended tasks
//! beyond the history a slot keeps, and tasks of removed services once they ended, are
//! forgotten.

use std::collections::{BTreeMap, BTreeSet};

use wharf_api::cluster::TaskBlueprint;
use wharf_api::docker::{ServiceSpec, TaskSpec};
use wharf_store::{NewTask, NodeDetails, NodeRecord, ServiceRecord, TaskRecord, TaskState, UpdateRecord, UpdateState};

/// Ended tasks a slot keeps for `docker service ps` (Swarm's default).
pub const TASK_HISTORY: usize = 5;
/// Swarm's default restart delay.
pub const RESTART_DELAY_SECS: u64 = 5;

/// A node as the orchestrators see it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: u64,
    pub record: NodeRecord,
    pub details: NodeDetails,
}

impl NodeView {
    /// Whether tasks placed on it keep running there (it is up and not drained).
    fn keeps_tasks(&self) -> bool {
        !self.record.removed && self.record.state != "down" && self.details.availability != "drain"
    }
}

/// What the orchestrators want done.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<NewTask>,
    pub shutdown: Vec<String>,
    /// Tasks of nodes that are down or gone: replaced elsewhere, and their containers removed
    /// when the node comes back (it must not run two tasks of one slot).
    pub remove: Vec<String>,
    pub forget: Vec<String>,
    /// Containers made with `--rm` that ended: their names freed and their records removed.
    pub remove_containers: Vec<String>,
    /// Updates paused, finished or rolled back.
    pub updates: Vec<UpdateChange>,
    /// When a delayed restart is due (seconds since the epoch), so the loop wakes for it.
    pub wake_at: Option<u64>,
}

/// What the orchestrator decides about a service's update.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateChange {
    /// The update to `spec_version` is paused, or finished.
    Set { service: String, spec_version: u64, state: UpdateState, message: String },
    /// Its failure action: the service goes back to its previous spec (from version `version`).
    Rollback { service: String, version: u64, message: String },
}

impl Plan {
    fn wake_at(&mut self, at: u64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// A service's spec, read once.
pub struct ParsedService<'a> {
    pub id: &'a str,
    pub record: &'a ServiceRecord,
    pub spec: ServiceSpec,
}

/// Reads a stored spec (the state only holds specs the API checked).
pub fn parse_spec(record: &ServiceRecord) -> Option<ServiceSpec> {
    serde_json::from_str(&record.spec).ok()
}

/// The plan for the whole cluster at `now`, given its services, their last `updates`, tasks and
/// nodes; `new_id` names new tasks.
pub fn reconcile(
    services: &[(String, ServiceRecord)],
    updates: &BTreeMap<String, UpdateRecord>,
    tasks: &[(String, TaskRecord)],
    nodes: &[NodeView],
    now: u64,
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan::default();
    let mut by_service: BTreeMap<&str, Vec<(&str, &TaskRecord)>> = BTreeMap::new();
    for (id, task) in tasks {
        by_service.entry(task.service_id.as_str()).or_default().push((id.as_str(), task));
    }
    let nodes_by_id: BTreeMap<u64, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    for (id, record) in services {
        let Some(spec) = parse_spec(record) else { continue };
        let service = ParsedService { id, record, spec };
        let tasks = by_service.remove(id.as_str()).unwrap_or_default();
        let update = updates.get(id).filter(|u| u.spec_version == record.spec_version);
        if service.spec.mode.global.is_some() {
            global(&service, update, &tasks, nodes, now, new_id, &mut plan);
        } else {
            replicated(&service, update, &tasks, &nodes_by_id, now, new_id, &mut plan);
        }
        forget_history(&tasks, &nodes_by_id, &mut plan);
    }
    // Containers made with `docker run`: nothing replaces them; removed ones (and ended ones
    // made with `--rm`) are forgotten once their node stopped them or cannot be told to.
    for (id, task) in by_service.remove("").unwrap_or_default() {
        containers(id, task, &nodes_by_id, &mut plan);
    }
    // Tasks of services that are gone: forgotten once they ended or can no longer be told to.
    for (id, task) in by_service.into_values().flatten() {
        let node_gone = task.node.is_none_or(|n| nodes_by_id.get(&n).is_none_or(|n| !n.keeps_tasks()));
        if task.status.state.is_terminal() || task.status.state < TaskState::Assigned || node_gone {
            plan.forget.push(id.to_owned());
        } else if task.desired < TaskState::Remove {
            plan.shutdown.push(id.to_owned());
        }
    }
    plan
}

/// What becomes of a container (a task of no service).
fn containers(id: &str, task: &TaskRecord, nodes: &BTreeMap<u64, &NodeView>, plan: &mut Plan) {
    let node_gone = task.node.is_none_or(|n| nodes.get(&n).is_none_or(|n| !n.keeps_tasks()));
    let node_removed = task.node.is_some_and(|n| nodes.get(&n).is_none_or(|n| n.record.removed));
    let ended = task.status.state.is_terminal() || task.status.state < TaskState::Assigned || node_gone;
    let auto_remove =
        serde_json::from_str::<TaskBlueprint>(&task.template).is_ok_and(|b| b.host.is_some_and(|h| h.auto_remove));
    if task.desired == TaskState::Remove && ended {
        plan.forget.push(id.to_owned());
    } else if auto_remove && crate::containers::ended(task, node_removed) && task.desired < TaskState::Remove {
        plan.remove_containers.push(id.to_owned());
    }
}

/// Whether a task still counts for its slot: the managers want it running and it has not ended.
fn live(task: &TaskRecord) -> bool {
    task.desired == TaskState::Running && !task.status.state.is_terminal()
}

fn replicated(
    service: &ParsedService<'_>,
    update: Option<&UpdateRecord>,
    tasks: &[(&str, &TaskRecord)],
    nodes: &BTreeMap<u64, &NodeView>,
    now: u64,
    new_id: &mut dyn FnMut() -> String,
    plan: &mut Plan,
) {
    let replicas = service.spec.mode.replicated.as_ref().and_then(|r| r.replicas).unwrap_or(1);
    let mut slots: BTreeMap<u64, Vec<(&str, &TaskRecord)>> = BTreeMap::new();
    for (id, task) in tasks {
        slots.entry(task.slot).or_default().push((id, task));
    }
    // Slots whose old task a stop-first update is stopping: their new task starts once it
    // stopped (on its node's engine; at once if the node is lost).
    let stopping: BTreeSet<u64> = slots
        .iter()
        .filter(|(slot, in_slot)| {
            **slot <= replicas
                && !in_slot.iter().any(|(_, t)| live(t))
                && in_slot.iter().any(|(_, t)| stopped_by_update(service, t, nodes))
        })
        .map(|(slot, _)| *slot)
        .collect();
    let halted = watch_update(service, update, tasks, replicas, now, plan);
    let mut rollout = Rollout::new(service, update, tasks, stopping.len() as u64, now, plan);
    if halted {
        rollout.budget = 0;
    }
    for slot in 1..=replicas.max(slots.keys().copied().max().unwrap_or(0)) {
        let in_slot = slots.remove(&slot).unwrap_or_default();
        if slot > replicas {
            shut_down_live(&in_slot, plan);
            continue;
        }
        let mut waits_for_stop = stopping.contains(&slot);
        let mut running = false;
        let mut outdated_live = None;
        let mut current_running = false;
        for (id, task) in &in_slot {
            if task.desired != TaskState::Running {
                continue;
            }
            let node = task.node.map(|n| nodes.get(&n));
            let lost = node.is_some_and(|n| n.is_none_or(|n| n.record.removed || n.record.state == "down"));
            let drained = node.flatten().is_some_and(|n| n.details.availability == "drain");
            let outdated = task.spec_version != service.record.spec_version;
            if lost {
                plan.remove.push((*id).to_owned());
            } else if task.status.state.is_terminal() || drained {
                plan.shutdown.push((*id).to_owned());
            } else if outdated {
                // Replaced as the rolling update's pace allows (below).
                outdated_live = Some(*id);
            } else {
                running = true;
                current_running |= task.status.state == TaskState::Running;
            }
        }
        if let Some(old) = outdated_live {
            match rollout.step(running, current_running) {
                Step::Keep => running = true,
                Step::StopOld => {
                    plan.shutdown.push(old.to_owned());
                    waits_for_stop |= !running;
                }
                // Start-first: the new task starts beside the old, which stops once it runs.
                Step::StartNew => {}
            }
        }
        if !running
            && !waits_for_stop
            && let Some(due) = restart_due(service, &in_slot, now)
        {
            if due <= now {
                plan.create.push(new_task(service, slot, None, new_id));
            } else {
                plan.wake_at = Some(plan.wake_at.map_or(due, |at| at.min(due)));
            }
        }
    }
}

/// The `UpdateConfig` (or for a rollback the `RollbackConfig`) of `spec`, with Docker's
/// defaults when it names none: one slot at a time, no delay, stop-first, pause on the first
/// failure within 5 s.
fn update_config(spec: &ServiceSpec, rollback: bool) -> wharf_api::docker::UpdateConfig {
    let config = if rollback { &spec.rollback_config } else { &spec.update_config };
    config.clone().unwrap_or(wharf_api::docker::UpdateConfig {
        parallelism: 1,
        monitor: 5_000_000_000,
        ..Default::default()
    })
}

/// Watches the update of a service of `slots` slots (swarmkit's updater): a task of the new
/// spec that failed or ended since the update began counts against it; once more than
/// `MaxFailureRatio` of the slots have one, the update pauses (or rolls back, or goes on, as
/// its `FailureAction` says). It completes once every slot runs a task of the new spec and
/// the last of them has run for the `Monitor` window. Returns whether no more slots may be
/// replaced (the update is paused, or stops now).
fn watch_update(
    service: &ParsedService<'_>,
    update: Option<&UpdateRecord>,
    tasks: &[(&str, &TaskRecord)],
    slots: u64,
    now: u64,
    plan: &mut Plan,
) -> bool {
    let Some(update) = update else { return false };
    if update.state.is_paused() {
        return true;
    }
    if !update.state.is_under_way() {
        return false;
    }
    let rollback = update.state.is_rollback();
    let config = update_config(&service.spec, rollback);
    let current = service.record.spec_version;
    let mut failed: Vec<(&str, &TaskRecord)> = tasks
        .iter()
        .filter(|(_, t)| t.spec_version == current && t.created >= update.started)
        .filter(|(_, t)| matches!(t.status.state, TaskState::Complete | TaskState::Failed | TaskState::Rejected))
        .copied()
        .collect();
    failed.sort_by_key(|(_, t)| t.status.at);
    if let Some((last, _)) = failed.last()
        && failed.len() as f64 / slots.max(1) as f64 > f64::from(config.max_failure_ratio)
    {
        let (id, spec_version) = (service.id.to_owned(), current);
        let set = |state, what: &str| UpdateChange::Set {
            service: id.clone(),
            spec_version,
            state,
            message: format!("{what} paused due to failure or early termination of task {last}"),
        };
        match (config.failure_action.as_str(), rollback) {
            ("continue", _) => {}
            ("rollback", false) => {
                plan.updates.push(UpdateChange::Rollback {
                    service: id.clone(),
                    version: service.record.version,
                    message: format!("update rolled back due to failure or early termination of task {last}"),
                });
                return true;
            }
            (_, false) => {
                plan.updates.push(set(UpdateState::Paused, "update"));
                return true;
            }
            (_, true) => {
                plan.updates.push(set(UpdateState::RollbackPaused, "rollback"));
                return true;
            }
        }
    }
    let outdated_live = tasks.iter().any(|(_, t)| live(t) && t.spec_version != current);
    let running: Vec<&TaskRecord> = tasks
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| live(t) && t.spec_version == current && t.status.state == TaskState::Running)
        .collect();
    if !outdated_live && running.len() as u64 >= slots {
        let monitor = (config.monitor.max(0) as u64).div_ceil(1_000_000_000);
        let last_ran = running.iter().filter(|t| t.created >= update.started).map(|t| t.status.at).max();
        let done_at = last_ran.unwrap_or(update.started) + monitor;
        if now >= done_at {
            let (state, message) = if rollback {
                (UpdateState::RollbackCompleted, "rollback completed")
            } else {
                (UpdateState::Completed, "update completed")
            };
            plan.updates.push(UpdateChange::Set {
                service: service.id.to_owned(),
                spec_version: current,
                state,
                message: message.into(),
            });
        } else {
            plan.wake_at(done_at);
        }
    }
    false
}

/// Whether `task` is an old task that an update told to stop and that has not stopped yet, on
/// a node that will say when it has.
fn stopped_by_update(service: &ParsedService<'_>, task: &TaskRecord, nodes: &BTreeMap<u64, &NodeView>) -> bool {
    task.desired == TaskState::Shutdown
        && task.status.state >= TaskState::Assigned
        && !task.status.state.is_terminal()
        && task.spec_version != service.record.spec_version
        && task.node.and_then(|n| nodes.get(&n)).is_some_and(|n| n.keeps_tasks())
}

/// What a slot whose task is of an older spec does now.
enum Step {
    /// Its old task keeps running: the update has not reached it.
    Keep,
    /// Its old task stops (and a new one starts: stop-first, or start-first once the new
    /// one runs).
    StopOld,
    /// A new task starts beside the old one (start-first).
    StartNew,
}

/// A replicated service's rolling update (swarmkit's `updater`): how many slots may be
/// replaced at once (`Parallelism`, 0: all), the pause after a batch runs (`Delay`), and
/// whether a slot's new task starts before its old one stops (`Order`). Stateless: what is
/// under way is read from the tasks.
struct Rollout {
    /// Slots that may start being replaced in this pass.
    budget: u64,
    start_first: bool,
}

impl Rollout {
    /// `stopping`: slots whose old task is stopping before their new one starts (each keeps
    /// a worker busy).
    fn new(
        service: &ParsedService<'_>,
        update: Option<&UpdateRecord>,
        tasks: &[(&str, &TaskRecord)],
        stopping: u64,
        now: u64,
        plan: &mut Plan,
    ) -> Rollout {
        let config = update_config(&service.spec, update.is_some_and(|u| u.state.is_rollback()));
        let current = |t: &&(&str, &TaskRecord)| t.1.spec_version == service.record.spec_version;
        let live_current: Vec<&TaskRecord> =
            tasks.iter().filter(current).map(|(_, t)| *t).filter(|t| live(t)).collect();
        let outdated_left = tasks.iter().any(|(_, t)| live(t) && t.spec_version != service.record.spec_version);
        // As swarmkit's updater: `parallelism` workers, each busy while the new task of its
        // slot does not run yet, then for `delay` after it began running.
        let delay = (config.delay.max(0) as u64).div_ceil(1_000_000_000);
        let under_way = stopping + live_current.iter().filter(|t| t.status.state < TaskState::Running).count() as u64;
        let pausing: Vec<u64> = live_current
            .iter()
            .filter(|t| t.status.state == TaskState::Running && t.created >= service.record.updated)
            .map(|t| t.status.at + delay)
            .filter(|free_at| *free_at > now)
            .collect();
        let budget = match config.parallelism {
            0 => u64::MAX,
            n => n.saturating_sub(under_way + pausing.len() as u64),
        };
        if outdated_left && let Some(free_at) = pausing.iter().min() {
            plan.wake_at = Some(plan.wake_at.map_or(*free_at, |at| at.min(*free_at)));
        }
        Rollout { budget, start_first: config.order == "start-first" }
    }

    /// The step of a slot with an old task, given whether it has a new task already and
    /// whether that one runs.
    fn step(&mut self, has_new: bool, new_runs: bool) -> Step {
        if has_new {
            // Start-first under way: the old one stops once the new one runs.
            return if new_runs { Step::StopOld } else { Step::Keep };
        }
        if self.budget == 0 {
            return Step::Keep;
        }
        self.budget -= 1;
        if self.start_first { Step::StartNew } else { Step::StopOld }
    }
}

/// When the slot's next task may start: at once for a new slot, a task lost with its node or
/// one of an older spec; after the restart delay for one that failed; never when the restart
/// policy says so.
fn restart_due(service: &ParsedService<'_>, in_slot: &[(&str, &TaskRecord)], now: u64) -> Option<u64> {
    let Some((_, last)) = in_slot.iter().max_by_key(|(_, t)| (t.created, t.version)) else { return Some(0) };
    if !last.status.state.is_terminal() || last.spec_version != service.record.spec_version {
        // Lost with its node (or shut down by a manager): replace it at once.
        return Some(0);
    }
    let policy = service.spec.task_template.restart_policy.clone().unwrap_or_default();
    let condition = policy.condition.as_deref().unwrap_or("any");
    let failed = last.status.state == TaskState::Failed || last.status.state == TaskState::Rejected;
    if condition == "none" || (condition == "on-failure" && !failed) {
        return None;
    }
    if let Some(max) = policy.max_attempts.filter(|max| *max > 0) {
        // The attempts that ended within the window (all of them without one).
        let window = policy.window.map_or(0, |ns| (ns.max(0) as u64).div_ceil(1_000_000_000));
        let mut ended: Vec<u64> = in_slot
            .iter()
            .filter(|(_, t)| t.status.state.is_terminal())
            .map(|(_, t)| t.status.at)
            .filter(|at| window == 0 || at + window > now)
            .collect();
        if ended.len() as u64 > max {
            if window == 0 {
                return None;
            }
            // Another attempt once enough of them have left the window.
            ended.sort_unstable();
            return Some(ended[ended.len() - 1 - max as usize] + window);
        }
    }
    let delay = policy.delay.map_or(RESTART_DELAY_SECS, |ns| (ns.max(0) as u64).div_ceil(1_000_000_000));
    Some(last.status.at + delay)
}

fn shut_down_live(tasks: &[(&str, &TaskRecord)], plan: &mut Plan) {
    for (id, task) in tasks {
        if task.desired == TaskState::Running {
            plan.shutdown.push((*id).to_owned());
        }
    }
}

fn global(
    service: &ParsedService<'_>,
    update: Option<&UpdateRecord>,
    tasks: &[(&str, &TaskRecord)],
    nodes: &[NodeView],
    now: u64,
    new_id: &mut dyn FnMut() -> String,
    plan: &mut Plan,
) {
    let constraints = constraints_of(&service.spec.task_template);
    let eligible: BTreeSet<u64> = nodes
        .iter()
        .filter(|n| !n.record.removed && n.details.availability != "drain")
        .filter(|n| constraints.iter().all(|c| c.matches(&crate::control::scheduler_node(n))))
        .map(|n| n.id)
        .collect();
    let mut per_node: BTreeMap<u64, Vec<(&str, &TaskRecord)>> = BTreeMap::new();
    for (id, task) in tasks {
        if let Some(node) = task.node {
            per_node.entry(node).or_default().push((id, task));
        }
    }
    for (node, on_node) in &per_node {
        if !eligible.contains(node) {
            shut_down_live(on_node, plan);
        }
    }
    // A global service's tasks are replaced all at once; a paused update replaces none.
    let halted = watch_update(service, update, tasks, eligible.len() as u64, now, plan);
    for node in &eligible {
        let on_node = per_node.get(node).map(Vec::as_slice).unwrap_or_default();
        let mut running = false;
        for (id, task) in on_node {
            let outdated = task.spec_version != service.record.spec_version;
            if outdated && halted && live(task) {
                running = true;
            } else if task.desired == TaskState::Running && (task.status.state.is_terminal() || outdated) {
                plan.shutdown.push((*id).to_owned());
            } else if live(task) {
                running = true;
            }
        }
        if !running && let Some(due) = restart_due(service, on_node, now) {
            if due <= now {
                plan.create.push(new_task(service, 0, Some(*node), new_id));
            } else {
                plan.wake_at = Some(plan.wake_at.map_or(due, |at| at.min(due)));
            }
        }
    }
}

fn constraints_of(spec: &TaskSpec) -> Vec<wharf_scheduler::Constraint> {
    let exprs = spec.placement.as_ref().map(|p| p.constraints.clone()).unwrap_or_default();
    wharf_scheduler::Constraint::parse_all(&exprs).unwrap_or_default()
}

/// Ended tasks beyond the newest [`TASK_HISTORY`] of a slot (or of a node, for a global
/// service) are forgotten; so are tasks to remove once their node reported them ended, or
/// when no node can report them any more (never placed, or their node was removed).
fn forget_history(tasks: &[(&str, &TaskRecord)], nodes: &BTreeMap<u64, &NodeView>, plan: &mut Plan) {
    // Keyed by slot, or by node for a global service's tasks (slot 0).
    type Group<'a> = Vec<(&'a str, &'a TaskRecord)>;
    let mut groups: BTreeMap<(u64, Option<u64>), Group<'_>> = BTreeMap::new();
    for (id, task) in tasks {
        let key = if task.slot == 0 { (0, task.node) } else { (task.slot, None) };
        groups.entry(key).or_default().push((id, task));
    }
    for mut group in groups.into_values() {
        for (id, task) in &group {
            let unreported = task.node.is_none_or(|n| nodes.get(&n).is_none_or(|n| n.record.removed));
            if task.desired == TaskState::Remove && (task.status.state.is_terminal() || unreported) {
                plan.forget.push((*id).to_owned());
            }
        }
        group.retain(|(_, t)| {
            t.status.state.is_terminal() && t.desired > TaskState::Running && t.desired < TaskState::Remove
        });
        if group.len() > TASK_HISTORY {
            group.sort_by_key(|(_, t)| std::cmp::Reverse((t.created, t.version)));
            plan.forget.extend(group[TASK_HISTORY..].iter().map(|(id, _)| (*id).to_owned()));
        }
    }
}

fn new_task(service: &ParsedService<'_>, slot: u64, node: Option<u64>, new_id: &mut dyn FnMut() -> String) -> NewTask {
    let host_ports = service
        .spec
        .endpoint_spec
        .as_ref()
        .map(|e| e.ports.iter().filter(|p| p.publish_mode == "host").cloned().collect())
        .unwrap_or_default();
    let blueprint = TaskBlueprint {
        service_name: service.spec.name.clone(),
        spec: service.spec.task_template.clone(),
        host_ports,
        collection: service.spec.labels.get(wharf_api::identity::COLLECTION_LABEL).cloned().unwrap_or_default(),
        host: None,
    };
    NewTask {
        id: new_id(),
        service_id: service.id.to_owned(),
        slot,
        node,
        spec_version: service.record.spec_version,
        template: serde_json::to_string(&blueprint).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::TaskStatus;

    fn service(spec: &str) -> (String, ServiceRecord) {
        let record = ServiceRecord {
            name: "web".into(),
            owner: "admin".into(),
            spec: spec.into(),
            previous_spec: None,
            task_spec: String::new(),
            version: 1,
            spec_version: 1,
            created: 0,
            updated: 0,
        };
        ("s1".into(), record)
    }

    fn node(id: u64, state: &str, availability: &str) -> NodeView {
        NodeView {
            id,
            record: NodeRecord {
                role: "worker".into(),
                hostname: format!("n{id}"),
                addr: "a:1".into(),
                created: 0,
                removed: false,
                state: state.into(),
                state_since: 0,
                cert_not_after: 0,
            },
            details: NodeDetails { availability: availability.into(), ..NodeDetails::default() },
        }
    }

    fn task(slot: u64, node: Option<u64>, state: TaskState, at: u64) -> TaskRecord {
        TaskRecord {
            service_id: "s1".into(),
            slot,
            node,
            spec_version: 1,
            template: String::new(),
            desired: TaskState::Running,
            status: TaskStatus {
                state,
                message: String::new(),
                err: String::new(),
                container_id: String::new(),
                exit_code: 0,
                at,
                ports: vec![],
            },
            version: at,
            created: at,
            updated: at,
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("new{n}")
        }
    }

    const THREE: &str = r#"{"Name":"web","Mode":{"Replicated":{"Replicas":3}}}"#;

    #[test]
    fn replicated_slots_are_filled_and_slots_beyond_the_count_shut_down() {
        let services = [service(THREE)];
        let tasks = vec![
            ("t1".to_owned(), task(1, Some(1), TaskState::Running, 1)),
            ("t4".to_owned(), task(4, Some(1), TaskState::Running, 1)),
        ];
        let plan = reconcile(&services, &BTreeMap::new(), &tasks, &[node(1, "ready", "active")], 10, &mut ids());
        let slots: Vec<u64> = plan.create.iter().map(|t| t.slot).collect();
        assert_eq!(slots, [2, 3]);
        assert_eq!(plan.shutdown, ["t4"]);
    }

    #[test]
    fn a_failed_task_is_replaced_after_the_restart_delay_and_one_on_a_down_node_at_once() {
        let services = [service(THREE)];
        let tasks = vec![
            ("t1".to_owned(), task(1, Some(1), TaskState::Failed, 100)),
            ("t2".to_owned(), task(2, Some(2), TaskState::Running, 100)),
            ("t3".to_owned(), task(3, Some(1), TaskState::Running, 100)),
        ];
        let nodes = [node(1, "ready", "active"), node(2, "down", "active")];
        let early = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 102, &mut ids());
        assert_eq!(early.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [2]);
        assert_eq!(
            (early.shutdown.as_slice(), early.remove.as_slice()),
            (&["t1".to_owned()][..], &["t2".to_owned()][..])
        );
        assert_eq!(early.wake_at, Some(100 + RESTART_DELAY_SECS));
        let late = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 106, &mut ids());
        assert_eq!(late.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_task_of_a_removed_node_is_replaced_then_forgotten_and_one_of_a_down_node_kept_until_it_reports() {
        let services = [service(r#"{"Name":"web","Mode":{"Replicated":{"Replicas":2}}}"#)];
        let tasks = vec![
            ("on-removed".to_owned(), task(1, Some(2), TaskState::Running, 1)),
            ("on-down".to_owned(), task(2, Some(3), TaskState::Running, 1)),
        ];
        let mut removed = node(2, "down", "active");
        removed.record.removed = true;
        let nodes = [node(1, "ready", "active"), removed, node(3, "down", "active")];
        let plan = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 10, &mut ids());
        assert_eq!(plan.remove, ["on-removed", "on-down"]);
        assert_eq!(plan.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2]);
        // Once told to go: the removed node's task is forgotten (its node will never report);
        // the down node's waits for its node to come back and report it ended.
        let told: Vec<(String, TaskRecord)> = tasks
            .into_iter()
            .map(|(id, mut t)| {
                t.desired = TaskState::Remove;
                (id, t)
            })
            .collect();
        let plan = reconcile(&services, &BTreeMap::new(), &told, &nodes, 11, &mut ids());
        assert_eq!(plan.forget, ["on-removed"]);
    }

    #[test]
    fn tasks_of_an_older_spec_are_replaced() {
        let (id, mut record) = service(THREE);
        record.spec_version = 2;
        let tasks = vec![("old".to_owned(), task(1, Some(1), TaskState::Running, 1))];
        let services = [(id, record)];
        let nodes = [node(1, "ready", "active")];
        let plan = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 10, &mut ids());
        assert_eq!(plan.shutdown, ["old"]);
        // Stop-first: slot 1's new task waits for the old one to stop.
        assert_eq!(plan.create.iter().map(|t| (t.slot, t.spec_version)).collect::<Vec<_>>(), [(2, 2), (3, 2)]);
        let mut stopped = tasks.clone();
        stopped[0].1.desired = TaskState::Shutdown;
        let plan = reconcile(&services, &BTreeMap::new(), &stopped, &nodes, 11, &mut ids());
        assert_eq!(plan.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [2, 3], "still stopping");
        stopped[0].1.status.state = TaskState::Shutdown;
        let plan = reconcile(&services, &BTreeMap::new(), &stopped, &nodes, 12, &mut ids());
        assert_eq!(plan.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2, 3]);
        // Its node went down while it stopped: it will not say, so the slot does not wait.
        stopped[0].1.status.state = TaskState::Running;
        let plan = reconcile(&services, &BTreeMap::new(), &stopped, &[node(1, "down", "active")], 13, &mut ids());
        assert_eq!(plan.create.iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2, 3]);
    }

    /// Four running tasks of spec 1, the service now at spec 2 (changed at time 100), with
    /// `update` as its UpdateConfig; plus `new`: tasks of spec 2 (slot, state, time).
    fn rolling(update: &str, new: &[(u64, TaskState, u64)], now: u64) -> Plan {
        rolling_with(update, new, &[], now)
    }

    /// As [`rolling`], with the old tasks of the slots `stopping` told to stop but still
    /// running.
    fn rolling_with(update: &str, new: &[(u64, TaskState, u64)], stopping: &[u64], now: u64) -> Plan {
        let spec = format!(r#"{{"Name":"web","Mode":{{"Replicated":{{"Replicas":4}}}},"UpdateConfig":{update}}}"#);
        let (id, mut record) = service(&spec);
        (record.spec_version, record.updated) = (2, 100);
        let replaced: Vec<u64> = new.iter().map(|(slot, ..)| *slot).collect();
        let mut tasks: Vec<(String, TaskRecord)> = (1..=4)
            .map(|slot| {
                let mut old = task(slot, Some(1), TaskState::Running, 1);
                if replaced.contains(&slot) {
                    old.desired = TaskState::Shutdown;
                    old.status.state = TaskState::Shutdown;
                }
                if stopping.contains(&slot) {
                    old.desired = TaskState::Shutdown;
                }
                (format!("old{slot}"), old)
            })
            .collect();
        for (slot, state, at) in new {
            let mut t = task(*slot, Some(1), *state, *at);
            (t.spec_version, t.created) = (2, *at);
            tasks.push((format!("new{slot}"), t));
        }
        reconcile(&[(id, record)], &BTreeMap::new(), &tasks, &[node(1, "ready", "active")], now, &mut ids())
    }

    fn created_slots(plan: &Plan) -> Vec<u64> {
        plan.create.iter().map(|t| t.slot).collect()
    }

    #[test]
    fn a_rolling_update_replaces_parallelism_slots_at_a_time_each_pausing_after_its_task_runs() {
        let two = r#"{"Parallelism":2,"Delay":3000000000}"#;
        let first = rolling(two, &[], 101);
        assert_eq!(
            (first.shutdown.as_slice(), created_slots(&first)),
            (&["old1".to_owned(), "old2".to_owned()][..], vec![])
        );
        // Stop-first: each slot's new task starts once its old one stopped, and a slot whose
        // old task is stopping keeps its worker busy.
        let stopping = rolling_with(two, &[], &[1, 2], 102);
        assert!(stopping.shutdown.is_empty() && stopping.create.is_empty(), "{stopping:?}");
        let one = rolling_with(two, &[], &[1], 102);
        assert_eq!((one.shutdown.as_slice(), created_slots(&one)), (&["old2".to_owned()][..], vec![]));
        // The batch is starting: nothing more.
        let starting = rolling(two, &[(1, TaskState::Starting, 101), (2, TaskState::Running, 101)], 102);
        assert!(starting.shutdown.is_empty() && starting.create.is_empty(), "{starting:?}");
        // Each slot's worker pauses 3 s after its new task runs: slot 2's is free at 106, slot
        // 1's at 107.
        let ran = [(1, TaskState::Running, 104), (2, TaskState::Running, 103)];
        let paused = rolling(two, &ran, 105);
        assert!(paused.shutdown.is_empty() && paused.create.is_empty());
        assert_eq!(paused.wake_at, Some(106));
        assert_eq!(rolling(two, &ran, 106).shutdown, ["old3"]);
        let next = rolling(two, &ran, 107);
        assert_eq!(
            (next.shutdown.as_slice(), created_slots(&next)),
            (&["old3".to_owned(), "old4".to_owned()][..], vec![])
        );
        // No UpdateConfig: Docker's default, one at a time; parallelism 0: all at once.
        assert_eq!(rolling("null", &[], 101).shutdown, ["old1"]);
        assert_eq!(rolling(r#"{"Parallelism":0}"#, &[], 101).shutdown.len(), 4);
    }

    #[test]
    fn start_first_starts_the_new_task_beside_the_old_and_stops_the_old_once_it_runs() {
        let start_first = r#"{"Parallelism":1,"Order":"start-first"}"#;
        let first = rolling(start_first, &[], 101);
        assert!(first.shutdown.is_empty(), "the old task keeps serving");
        assert_eq!(created_slots(&first), [1]);
        // The slot's new task as created (old1 still running beside it).
        let spec = r#"{"Name":"web","Mode":{"Replicated":{"Replicas":1}},"UpdateConfig":{"Order":"start-first"}}"#;
        let (id, mut record) = service(spec);
        (record.spec_version, record.updated) = (2, 100);
        let old = task(1, Some(1), TaskState::Running, 1);
        let mut new = task(1, Some(1), TaskState::Starting, 101);
        (new.spec_version, new.created) = (2, 101);
        let services = [(id, record)];
        let mut tasks = vec![("old1".to_owned(), old), ("new1".to_owned(), new)];
        let nodes = [node(1, "ready", "active")];
        let waiting = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 102, &mut ids());
        assert!(waiting.shutdown.is_empty() && waiting.create.is_empty(), "{waiting:?}");
        tasks[1].1.status.state = TaskState::Running;
        let done = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 103, &mut ids());
        assert_eq!((done.shutdown.as_slice(), done.create.len()), (&["old1".to_owned()][..], 0));
    }

    #[test]
    fn a_failed_new_task_pauses_or_rolls_back_the_update_which_completes_after_the_monitor_window() {
        let spec = |action: &str| {
            let config = format!(r#"{{"Parallelism":1,"FailureAction":"{action}","Monitor":5000000000}}"#);
            format!(r#"{{"Name":"web","Mode":{{"Replicated":{{"Replicas":2}}}},"UpdateConfig":{config}}}"#)
        };
        let (id, mut record) = service(&spec("pause"));
        (record.spec_version, record.updated, record.version) = (2, 100, 2);
        let updating = UpdateRecord {
            state: UpdateState::Updating,
            spec_version: 2,
            from_spec_version: 1,
            started: 100,
            completed: 0,
            message: "update in progress".into(),
        };
        let mut updates = BTreeMap::from([(id.clone(), updating)]);
        // Slot 1 was replaced and its new task failed; slot 2 still runs the old spec.
        let mut old1 = task(1, Some(1), TaskState::Shutdown, 100);
        old1.desired = TaskState::Shutdown;
        let mut new1 = task(1, Some(1), TaskState::Failed, 103);
        (new1.spec_version, new1.created) = (2, 101);
        let tasks = vec![
            ("old1".into(), old1),
            ("new1".into(), new1),
            ("old2".into(), task(2, Some(1), TaskState::Running, 1)),
        ];
        let nodes = [node(1, "ready", "active")];
        let plan_for = |record: &ServiceRecord, updates: &BTreeMap<String, UpdateRecord>, tasks, now| {
            reconcile(&[(id.clone(), record.clone())], updates, tasks, &nodes, now, &mut ids())
        };
        let paused = plan_for(&record, &updates, &tasks, 104);
        let pause = UpdateChange::Set {
            service: "s1".into(),
            spec_version: 2,
            state: UpdateState::Paused,
            message: "update paused due to failure or early termination of task new1".into(),
        };
        assert_eq!(paused.updates, [pause]);
        assert!(!paused.shutdown.contains(&"old2".to_owned()), "the old task keeps running");
        // While paused, nothing more is replaced (the failed slot restarts as its policy says).
        updates.get_mut("s1").expect("update").state = UpdateState::Paused;
        let still = plan_for(&record, &updates, &tasks, 200);
        assert!(still.updates.is_empty() && !still.shutdown.contains(&"old2".to_owned()), "{still:?}");
        assert_eq!(created_slots(&still), [1]);
        updates.get_mut("s1").expect("update").state = UpdateState::Updating;
        // FailureAction rollback: the service goes back; continue: the update goes on.
        record.spec = spec("rollback");
        let rollback = UpdateChange::Rollback {
            service: "s1".into(),
            version: 2,
            message: "update rolled back due to failure or early termination of task new1".into(),
        };
        assert_eq!(plan_for(&record, &updates, &tasks, 104).updates, [rollback]);
        record.spec = spec("continue");
        let going_on = plan_for(&record, &updates, &tasks, 104);
        assert!(going_on.updates.is_empty() && going_on.shutdown.contains(&"old2".to_owned()), "{going_on:?}");

        // Both slots run the new spec, the last since 110: completed once the 5 s monitor
        // window has passed.
        let mut a = task(1, Some(1), TaskState::Running, 108);
        (a.spec_version, a.created) = (2, 104);
        let mut b = task(2, Some(1), TaskState::Running, 110);
        (b.spec_version, b.created) = (2, 105);
        let done = vec![("a".to_owned(), a), ("b".to_owned(), b)];
        let watching = plan_for(&record, &updates, &done, 112);
        assert_eq!((watching.updates.as_slice(), watching.wake_at), (&[][..], Some(115)));
        let completed = UpdateChange::Set {
            service: "s1".into(),
            spec_version: 2,
            state: UpdateState::Completed,
            message: "update completed".into(),
        };
        assert_eq!(plan_for(&record, &updates, &done, 115).updates, [completed]);
    }

    #[test]
    fn max_attempts_count_within_the_restart_window() {
        let spec = |window: &str| {
            format!(
                r#"{{"Name":"web","Mode":{{"Replicated":{{"Replicas":1}}}},"TaskTemplate":{{"RestartPolicy":{{"Condition":"on-failure","Delay":0,"MaxAttempts":2{window}}}}}}}"#
            )
        };
        // Three attempts failed, at 10, 20 and 30: one more than the two allowed.
        let tasks: Vec<(String, TaskRecord)> = [10, 20, 30]
            .into_iter()
            .map(|at| {
                let mut t = task(1, Some(1), TaskState::Failed, at);
                t.desired = TaskState::Shutdown;
                (format!("t{at}"), t)
            })
            .collect();
        let nodes = [node(1, "ready", "active")];
        let plan =
            |window: &str, now| reconcile(&[service(&spec(window))], &BTreeMap::new(), &tasks, &nodes, now, &mut ids());
        // Without a window: never again.
        assert_eq!((created_slots(&plan("", 100)).len(), plan("", 100).wake_at), (0, None));
        // A 60 s window: once the attempt of 10 has left it (at 70), one more.
        let early = plan(r#","Window":60000000000"#, 40);
        assert_eq!((created_slots(&early).len(), early.wake_at), (0, Some(70)));
        assert_eq!(created_slots(&plan(r#","Window":60000000000"#, 70)), [1]);
    }

    #[test]
    fn a_global_service_runs_on_every_node_that_is_not_drained_and_matches() {
        let services = [service(
            r#"{"Name":"g","Mode":{"Global":{}},"TaskTemplate":{"Placement":{"Constraints":["node.role==worker"]}}}"#,
        )];
        let tasks = vec![
            ("t1".to_owned(), task(0, Some(1), TaskState::Running, 1)),
            ("t3".to_owned(), task(0, Some(3), TaskState::Running, 1)),
        ];
        let nodes = [node(1, "ready", "active"), node(2, "ready", "active"), node(3, "ready", "drain")];
        let plan = reconcile(&services, &BTreeMap::new(), &tasks, &nodes, 10, &mut ids());
        assert_eq!(plan.create.iter().map(|t| t.node).collect::<Vec<_>>(), [Some(2)]);
        assert_eq!(plan.shutdown, ["t3"]);
    }

    #[test]
    fn containers_are_never_replaced_and_go_once_removed_or_ended_with_rm() {
        let container = |state: TaskState, desired: TaskState, auto_remove: bool| {
            let mut t = task(0, Some(1), state, 1);
            t.service_id = String::new();
            t.desired = desired;
            t.template = format!(r#"{{"service_name":"c","spec":{{}},"host":{{"auto_remove":{auto_remove}}}}}"#);
            t
        };
        let tasks = vec![
            ("run".to_owned(), container(TaskState::Running, TaskState::Running, false)),
            ("done".to_owned(), container(TaskState::Complete, TaskState::Running, false)),
            ("rm-running".to_owned(), container(TaskState::Running, TaskState::Remove, false)),
            ("rm-ended".to_owned(), container(TaskState::Shutdown, TaskState::Remove, false)),
            ("auto-done".to_owned(), container(TaskState::Failed, TaskState::Running, true)),
            ("auto-running".to_owned(), container(TaskState::Running, TaskState::Running, true)),
        ];
        let mut unplaced = container(TaskState::Pending, TaskState::Shutdown, true);
        unplaced.node = None;
        let mut tasks = tasks;
        tasks.push(("auto-unplaced".to_owned(), unplaced));
        let plan = reconcile(&[], &BTreeMap::new(), &tasks, &[node(1, "ready", "active")], 10, &mut ids());
        assert!(plan.create.is_empty() && plan.shutdown.is_empty() && plan.remove.is_empty(), "{plan:?}");
        assert_eq!(plan.forget, ["rm-ended"]);
        assert_eq!(plan.remove_containers, ["auto-done", "auto-unplaced"]);
    }

    #[test]
    fn tasks_of_a_removed_service_are_forgotten_once_ended_and_history_is_bounded() {
        let mut orphan = task(1, Some(1), TaskState::Running, 1);
        orphan.service_id = "gone".into();
        orphan.desired = TaskState::Remove;
        let mut ended = orphan.clone();
        ended.status.state = TaskState::Shutdown;
        let tasks = vec![("o1".to_owned(), orphan), ("o2".to_owned(), ended)];
        let plan = reconcile(&[], &BTreeMap::new(), &tasks, &[node(1, "ready", "active")], 10, &mut ids());
        assert_eq!(plan.forget, ["o2"]);
        let services = [service(THREE)];
        let mut history: Vec<(String, TaskRecord)> = (0..8)
            .map(|n| {
                let mut t = task(1, Some(1), TaskState::Failed, n);
                t.desired = TaskState::Shutdown;
                (format!("h{n}"), t)
            })
            .collect();
        history.push(("live".into(), task(1, Some(1), TaskState::Running, 9)));
        let plan = reconcile(&services, &BTreeMap::new(), &history, &[node(1, "ready", "active")], 10, &mut ids());
        assert_eq!(plan.forget, ["h2", "h1", "h0"]);
    }
}
