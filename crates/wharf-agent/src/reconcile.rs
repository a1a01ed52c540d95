//! What the agent must do to make the node's containers match its tasks: a pure function of
//! the task set, the containers, and the tasks being started or stopped now.

use std::collections::{BTreeMap, BTreeSet};

use wharf_api::cluster::{Assignment, TaskReportWire};

use crate::executor::ContainerView;

/// One step for the agent to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pull, create and start a container for the task (it reports itself as it goes).
    Run(Box<Assignment>),
    /// Stop the task's container within the grace period (what it ended as is reported by the
    /// next pass, which finds it stopped). Stops run side by side: one task's grace period
    /// does not hold up the others.
    Stop { task: String, container: String, grace_secs: i64 },
    /// Remove a container (of a task to remove, or of no task this node has).
    Remove { container: String },
    /// Tell the managers what was observed.
    Report(TaskReportWire),
}

/// Task states in the order they move (Swarm's).
const ORDER: [&str; 14] = [
    "new",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
];

/// The position of a state name in the task model (unknown names count as `new`).
pub fn rank(state: &str) -> usize {
    ORDER.iter().position(|s| *s == state).unwrap_or(0)
}

fn ended(state: &str) -> bool {
    rank(state) > rank("running")
}

fn report(task: &str, state: &str, message: &str, container: &str, exit_code: i64) -> Action {
    let err = if state == "failed" { message.to_owned() } else { String::new() };
    Action::Report(TaskReportWire {
        id: task.to_owned(),
        state: state.to_owned(),
        message: message.to_owned(),
        err,
        container_id: container.to_owned(),
        exit_code,
        ports: Vec::new(),
    })
}

/// The grace period of a task's stop, in seconds (Swarm's default is 10).
pub fn grace_secs(assignment: &Assignment) -> i64 {
    let nanos = assignment.blueprint.spec.container_spec.stop_grace_period.unwrap_or(10_000_000_000);
    // A container made with `docker run` may be stopped at once (`docker kill`, `stop -t 0`).
    let least = if assignment.service_id.is_empty() { 0 } else { 1 };
    (nanos.max(0) / 1_000_000_000).max(least)
}

/// The steps that bring `containers` to what `tasks` want; `busy` holds the tasks whose start
/// or stop is under way (left alone until it is done).
pub fn plan(tasks: &[Assignment], containers: &[ContainerView], busy: &BTreeSet<String>) -> Vec<Action> {
    let mut by_task: BTreeMap<&str, Vec<&ContainerView>> = BTreeMap::new();
    for container in containers {
        by_task.entry(container.task_id.as_str()).or_default().push(container);
    }
    let mut actions = Vec::new();
    for task in tasks {
        let found = by_task.remove(task.id.as_str()).unwrap_or_default();
        if busy.contains(&task.id) {
            continue;
        }
        let container = found.iter().find(|c| c.running).or(found.first()).copied();
        // Extra containers of one task (a start raced a restart): keep one.
        for extra in found.iter().filter(|c| Some(c.id.as_str()) != container.map(|c| c.id.as_str())) {
            actions.push(Action::Remove { container: extra.id.clone() });
        }
        match task.desired.as_str() {
            "running" => want_running(task, container, &mut actions),
            "remove" => {
                if let Some(c) = container {
                    actions.push(Action::Remove { container: c.id.clone() });
                }
                if !ended(&task.state) {
                    actions.push(report(&task.id, "shutdown", "removed", "", 0));
                }
            }
            _ => want_stopped(task, container, &mut actions),
        }
    }
    // Containers of tasks this node no longer has.
    for container in by_task.into_values().flatten() {
        actions.push(Action::Remove { container: container.id.clone() });
    }
    actions
}

fn want_running(task: &Assignment, container: Option<&ContainerView>, actions: &mut Vec<Action>) {
    match container {
        _ if ended(&task.state) => {
            if let Some(c) = container.filter(|c| c.running) {
                actions.push(Action::Stop {
                    task: task.id.clone(),
                    container: c.id.clone(),
                    grace_secs: grace_secs(task),
                });
            }
        }
        None if rank(&task.state) < rank("running") => actions.push(Action::Run(Box::new(task.clone()))),
        None => actions.push(report(&task.id, "failed", "the task's container is gone", "", 0)),
        // Running only once healthy: starting while its check has not passed yet, failed
        // (and stopped) once the check says it is unhealthy.
        Some(c) if c.running => match c.health.as_deref() {
            Some("starting") => {
                if rank(&task.state) < rank("starting") {
                    actions.push(report(&task.id, "starting", "starting", &c.id, 0));
                }
            }
            Some("unhealthy") => {
                actions.push(report(&task.id, "failed", "unhealthy container", &c.id, 0));
                actions.push(Action::Stop {
                    task: task.id.clone(),
                    container: c.id.clone(),
                    grace_secs: grace_secs(task),
                });
            }
            _ => {
                if rank(&task.state) < rank("running") {
                    actions.push(report(&task.id, "running", "started", &c.id, 0));
                }
            }
        },
        Some(c) => {
            let code = c.exit_code.unwrap_or(0);
            if code == 0 {
                actions.push(report(&task.id, "complete", "finished", &c.id, 0));
            } else {
                actions.push(report(&task.id, "failed", &format!("task: non-zero exit ({code})"), &c.id, code));
            }
        }
    }
}

fn want_stopped(task: &Assignment, container: Option<&ContainerView>, actions: &mut Vec<Action>) {
    match container {
        Some(c) if c.running => {
            actions.push(Action::Stop { task: task.id.clone(), container: c.id.clone(), grace_secs: grace_secs(task) });
        }
        Some(c) if !ended(&task.state) => {
            actions.push(report(&task.id, "shutdown", "shutdown", &c.id, c.exit_code.unwrap_or(0)));
        }
        None if !ended(&task.state) => actions.push(report(&task.id, "shutdown", "shutdown", "", 0)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::cluster::TaskBlueprint;

    fn task(id: &str, desired: &str, state: &str) -> Assignment {
        Assignment {
            id: id.into(),
            service_id: "s".into(),
            slot: 1,
            blueprint: TaskBlueprint::default(),
            desired: desired.into(),
            state: state.into(),
            registry_auth: None,
            files: Vec::new(),
            networks: Vec::new(),
        }
    }

    fn container(id: &str, task: &str, running: bool, exit: Option<i64>) -> ContainerView {
        ContainerView { id: id.into(), task_id: task.into(), running, exit_code: exit, health: None }
    }

    fn states(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Run(t) => format!("run {}", t.id),
                Action::Stop { container, .. } => format!("stop {container}"),
                Action::Remove { container } => format!("remove {container}"),
                Action::Report(r) => format!("report {} {}", r.id, r.state),
            })
            .collect()
    }

    #[test]
    fn new_tasks_start_running_ones_are_adopted_and_exits_are_reported() {
        let tasks = [
            task("a", "running", "assigned"),
            task("b", "running", "assigned"),
            task("c", "running", "running"),
            task("d", "running", "running"),
        ];
        let containers = [
            container("cb", "b", true, None),
            container("cc", "c", false, Some(0)),
            container("cd", "d", false, Some(3)),
        ];
        let actions = plan(&tasks, &containers, &BTreeSet::new());
        assert_eq!(states(&actions), ["run a", "report b running", "report c complete", "report d failed"]);
        let starting = BTreeSet::from(["a".to_owned()]);
        assert!(!states(&plan(&tasks, &containers, &starting)).contains(&"run a".to_owned()));
        // A container being stopped is left alone; stopped, it is reported as it ended.
        let stopping = [task("s", "shutdown", "running")];
        let busy = BTreeSet::from(["s".to_owned()]);
        assert!(plan(&stopping, &[container("cs", "s", true, None)], &busy).is_empty());
        let stopped = plan(&stopping, &[container("cs", "s", false, Some(137))], &BTreeSet::new());
        assert_eq!(states(&stopped), ["report s shutdown"]);
    }

    #[test]
    fn a_task_runs_only_once_healthy_and_fails_and_stops_when_unhealthy() {
        let health = |id: &str, task: &str, health: &str| ContainerView {
            health: Some(health.into()),
            ..container(id, task, true, None)
        };
        let tasks = [
            task("a", "running", "preparing"),
            task("b", "running", "starting"),
            task("c", "running", "running"),
            task("d", "running", "starting"),
        ];
        let containers = [
            health("ca", "a", "starting"),
            health("cb", "b", "healthy"),
            health("cc", "c", "unhealthy"),
            health("cd", "d", "starting"),
        ];
        let actions = plan(&tasks, &containers, &BTreeSet::new());
        assert_eq!(states(&actions), ["report a starting", "report b running", "report c failed", "stop cc"]);
        let Some(Action::Report(failed)) = actions.get(2) else { panic!("a report") };
        assert_eq!(failed.err, "unhealthy container");
    }

    #[test]
    fn unwanted_containers_stop_or_go_and_foreign_tasks_are_removed() {
        let tasks =
            [task("a", "shutdown", "running"), task("b", "remove", "shutdown"), task("c", "shutdown", "assigned")];
        let containers =
            [container("ca", "a", true, None), container("cb", "b", false, Some(0)), container("cx", "x", true, None)];
        let actions = plan(&tasks, &containers, &BTreeSet::new());
        assert_eq!(states(&actions), ["stop ca", "remove cb", "report c shutdown", "remove cx"]);
    }
}
