//! [`TaskAgent`]: the session with the managers. One task long-polls for the node's complete
//! task set (the first poll also reports the engine); others answer the managers' log
//! requests ([`crate::logs`]); the reconcile loop wakes on a new set, on
//! a container event and every few seconds, and takes the steps of [`crate::reconcile::plan`];
//! starts run in their own tasks (a pull may take long), and reports are batched to the
//! managers by another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use tokio::sync::{mpsc, watch};
use wharf_api::cluster::{
    Assignment, Assignments, AssignmentsRequest, NodeTokenRequest, NodeTokenResponse, TaskReportWire, TaskReports,
};
use wharf_client::Client;

use crate::executor::{Executor, RunRequest};
use crate::reconcile::{Action, plan};

/// How long a poll waits for a change.
const POLL_WAIT: Duration = Duration::from_secs(25);
/// How often the agent looks at its containers without being woken.
const TICK: Duration = Duration::from_secs(5);
/// How often the node's engine is rid of the cluster networks no task of the node uses.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Makes a client of the managers at the given addresses over the node's mutual TLS, with a
/// timeout above [`POLL_WAIT`] (`None` when it cannot be made now).
pub type Connect = Arc<dyn Fn(&[String]) -> Option<Client> + Send + Sync>;

pub struct TaskAgentConfig {
    pub node_id: u64,
    /// The managers' addresses (`host:port`), kept current by the node's heartbeats: the agent
    /// asks them, and images named there come from this cluster's registry and are pulled
    /// with a token the node gets with its certificate.
    pub managers: watch::Receiver<Vec<String>>,
    pub connect: Connect,
    /// The engine's `certs.d` folder: before a pull from the cluster's registry the agent
    /// puts the cluster CA there for the registry's address (the engine reads it at each pull,
    /// so no restart and no `docker login` are needed).
    pub certs_d: std::path::PathBuf,
    pub ca_pem: String,
}

pub struct TaskAgent<E: Executor + 'static> {
    config: TaskAgentConfig,
    managers: Managers,
    executor: Arc<E>,
}

type Reports = mpsc::UnboundedSender<TaskReportWire>;

/// A client of the managers that follows their list: made again when the list changed or
/// after a failure, so that an agent that joined through one manager reaches the others once
/// that one is gone.
#[derive(Clone)]
struct Managers {
    list: watch::Receiver<Vec<String>>,
    connect: Connect,
    client: Option<Client>,
}

impl Managers {
    fn client(&mut self) -> Option<&mut Client> {
        if self.client.is_none() || self.list.has_changed().unwrap_or(false) {
            let list = self.list.borrow_and_update().clone();
            self.client = (self.connect)(&list);
        }
        self.client.as_mut()
    }

    fn registries(&self) -> Vec<String> {
        self.list.borrow().clone()
    }

    async fn call<B: serde::Serialize + ?Sized, R: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<R, String> {
        let Some(client) = self.client() else { return Err("no client of the managers".into()) };
        match client.call::<B, R>(Method::POST, path, Some(body)).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                // Next time, a client of the managers as the list says now, from the top.
                self.client = None;
                Err(e.to_string())
            }
        }
    }
}

impl<E: Executor + 'static> TaskAgent<E> {
    pub fn new(config: TaskAgentConfig, executor: Arc<E>) -> TaskAgent<E> {
        let managers = Managers { list: config.managers.clone(), connect: Arc::clone(&config.connect), client: None };
        TaskAgent { config, managers, executor }
    }

    /// Runs for as long as the node runs.
    pub async fn run(self) {
        let (sets, mut latest) = watch::channel::<Option<Assignments>>(None);
        let (reports, queue) = mpsc::unbounded_channel();
        // Aborted when this future is dropped (the node stops its task agent).
        let mut sessions = tokio::task::JoinSet::new();
        sessions.spawn(poll(self.managers.clone(), Arc::clone(&self.executor), sets));
        sessions.spawn(send_reports(self.managers.clone(), queue));
        sessions.spawn(crate::logs::serve_log_requests(
            self.config.managers.clone(),
            Arc::clone(&self.config.connect),
            Arc::clone(&self.executor),
        ));
        let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
        // Tasks whose start or stop is under way.
        let mut busy = BTreeSet::new();
        let mut sent: BTreeMap<String, String> = BTreeMap::new();
        let mut engine_failures = 0u32;
        let mut last_prune = std::time::Instant::now();
        loop {
            let set = latest.borrow_and_update().clone();
            if let Some(set) = set {
                while let Ok(task) = done.try_recv() {
                    busy.remove(&task);
                }
                match self.executor.containers(&set.cluster_id, self.config.node_id).await {
                    Ok(containers) => {
                        engine_failures = 0;
                        for action in plan(&set.tasks, &containers, &busy) {
                            self.take(action, &set, &mut busy, &mut sent, &reports, &done_tx).await;
                        }
                    }
                    Err(e) => {
                        engine_failures += 1;
                        if engine_failures.is_power_of_two() {
                            tracing::warn!(error = %e, failures = engine_failures, "listing this node's containers failed");
                        }
                    }
                }
                sent.retain(|task, _| set.tasks.iter().any(|t| t.id == *task));
                // The files of a task that no longer runs go (its container has them mounted
                // for as long as it runs).
                let running = set.tasks.iter().filter(|t| {
                    t.desired == "running" && crate::reconcile::rank(&t.state) <= crate::reconcile::rank("running")
                });
                let keep: BTreeSet<String> = running.map(|t| t.id.clone()).chain(busy.iter().cloned()).collect();
                crate::files::keep_only(&set.cluster_id, self.config.node_id, &keep);
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = std::time::Instant::now();
                    let in_use = set.tasks.iter().flat_map(|t| t.networks.iter().map(|n| n.name.clone())).collect();
                    self.executor.prune_networks(&set.cluster_id, &in_use).await;
                }
            }
            tokio::select! {
                _ = latest.changed() => {}
                _ = self.executor.changed() => {}
                Some(task) = done.recv() => { busy.remove(&task); }
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn take(
        &self,
        action: Action,
        set: &Assignments,
        busy: &mut BTreeSet<String>,
        sent: &mut BTreeMap<String, String>,
        reports: &Reports,
        done: &mpsc::UnboundedSender<String>,
    ) {
        match action {
            Action::Run(task) => {
                busy.insert(task.id.clone());
                let request = RunRequest {
                    cluster_id: set.cluster_id.clone(),
                    node_id: self.config.node_id,
                    assignment: *task,
                    registry_token: None,
                };
                let (executor, reports, done) = (Arc::clone(&self.executor), reports.clone(), done.clone());
                let token = self.token_for(&request.assignment);
                tokio::spawn(async move {
                    let id = request.assignment.id.clone();
                    start(&*executor, request, token.await, &reports).await;
                    let _ = done.send(id);
                });
            }
            Action::Stop { task, container, grace_secs } => {
                busy.insert(task.clone());
                let (executor, done) = (Arc::clone(&self.executor), done.clone());
                tokio::spawn(async move {
                    if let Err(e) = executor.stop(&container, grace_secs).await {
                        tracing::warn!(container, error = %e, "stopping a task's container failed");
                    }
                    let _ = done.send(task);
                });
            }
            Action::Remove { container } => {
                if let Err(e) = self.executor.remove(&container).await {
                    tracing::warn!(container, error = %e, "removing a container failed");
                }
            }
            Action::Report(report) => report_once(sent, reports, report),
        }
    }

    /// A registry token for the task's image, when the image is in this cluster's registry.
    fn token_for(&self, task: &Assignment) -> impl Future<Output = Option<String>> + Send + 'static {
        let image = task.blueprint.spec.container_spec.image.clone();
        let repository = cluster_repository(&image, &self.managers.registries());
        let mut managers = self.managers.clone();
        let (certs_d, ca_pem) = (self.config.certs_d.clone(), self.config.ca_pem.clone());
        async move {
            let repository = repository?;
            if let Some((host, _)) = wharf_api::docker::image_repository(&image)
                && let Err(e) = trust_registry(&certs_d, host, &ca_pem)
            {
                tracing::warn!(registry = host, error = %e, "putting the cluster CA in the engine's certs.d failed");
            }
            let request = NodeTokenRequest { repositories: vec![repository] };
            match managers.call::<_, NodeTokenResponse>("/cluster/registry-token", &request).await {
                Ok(answer) => Some(answer.token),
                Err(e) => {
                    tracing::warn!(image, error = %e, "getting a registry token for an image failed");
                    None
                }
            }
        }
    }
}

/// The repository of `image` when it is named at one of `registries` (`host:port/repo[:tag|@digest]`).
pub fn cluster_repository(image: &str, registries: &[String]) -> Option<String> {
    let (host, repository) = wharf_api::docker::image_repository(image)?;
    registries.iter().any(|r| r == host).then(|| repository.to_owned())
}

/// Writes the cluster CA as `<certs_d>/<registry>/ca.crt`, unless it is there already.
pub fn trust_registry(certs_d: &std::path::Path, registry: &str, ca_pem: &str) -> std::io::Result<()> {
    let dir = certs_d.join(registry);
    let path = dir.join("ca.crt");
    if std::fs::read_to_string(&path).is_ok_and(|existing| existing == ca_pem) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    let temporary = dir.join("ca.crt.wharf-new");
    std::fs::write(&temporary, ca_pem)?;
    std::fs::rename(&temporary, &path)
}

fn status(task: &str, state: &str, message: &str, container: &str) -> TaskReportWire {
    TaskReportWire {
        id: task.to_owned(),
        state: state.to_owned(),
        message: message.to_owned(),
        err: String::new(),
        container_id: container.to_owned(),
        exit_code: 0,
        ports: Vec::new(),
    }
}

fn report_once(sent: &mut BTreeMap<String, String>, reports: &Reports, report: TaskReportWire) {
    if sent.get(&report.id) == Some(&report.state) {
        return;
    }
    sent.insert(report.id.clone(), report.state.clone());
    let _ = reports.send(report);
}

/// Starts one task, reporting each step.
async fn start<E: Executor + ?Sized>(executor: &E, mut request: RunRequest, token: Option<String>, reports: &Reports) {
    let id = request.assignment.id.clone();
    request.registry_token = token;
    let _ = reports.send(status(&id, "preparing", "preparing", ""));
    match executor.run(&request).await {
        Ok(started) => {
            // With a health check, it runs once the check passes (the next pass sees that).
            let state = if started.checked { "starting" } else { "running" };
            let mut report = status(&id, state, "started", &started.id);
            report.ports = started.ports;
            let _ = reports.send(report);
        }
        Err(e) => {
            let state = if matches!(e, crate::ExecError::Image(_)) { "rejected" } else { "failed" };
            tracing::warn!(task = id, error = %e, "starting a task failed");
            let mut report = status(&id, state, "starting the container failed", "");
            report.err = e.to_string();
            let _ = reports.send(report);
        }
    }
}

/// Long-polls for the node's task set; the first poll (and the first after a failure) reports
/// the engine.
async fn poll<E: Executor + ?Sized>(
    mut managers: Managers,
    executor: Arc<E>,
    sets: watch::Sender<Option<Assignments>>,
) {
    let mut known = 0;
    let mut describe = true;
    let mut failures = 0u32;
    loop {
        let description = if describe { executor.describe().await.ok() } else { None };
        let request = AssignmentsRequest { known, wait_ms: POLL_WAIT.as_millis() as u64, description };
        match managers.call::<_, Assignments>("/cluster/assignments", &request).await {
            Ok(set) => {
                describe = false;
                failures = 0;
                known = set.version;
                sets.send_replace(Some(set));
            }
            Err(e) => {
                describe = true;
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "polling for this node's tasks failed");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Sends reports in batches; a batch that fails is sent again.
async fn send_reports(mut managers: Managers, mut queue: mpsc::UnboundedReceiver<TaskReportWire>) {
    let mut batch = Vec::new();
    let mut failures = 0u32;
    loop {
        if batch.is_empty() {
            match queue.recv().await {
                Some(report) => batch.push(report),
                None => return,
            }
        }
        while let Ok(report) = queue.try_recv() {
            batch.push(report);
        }
        let body = TaskReports { reports: batch.clone() };
        match managers.call::<_, ()>("/cluster/tasks", &body).await {
            Ok(()) => {
                batch.clear();
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "reporting task states failed");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_repository;

    #[test]
    fn images_of_this_cluster_are_told_by_their_registry_address() {
        let registries = ["127.0.0.1:5000".to_owned()];
        assert_eq!(cluster_repository("127.0.0.1:5000/team/app:1", &registries).as_deref(), Some("team/app"));
        assert_eq!(cluster_repository("127.0.0.1:5000/app@sha256:ab", &registries).as_deref(), Some("app"));
        assert_eq!(cluster_repository("127.0.0.1:5000/app", &registries).as_deref(), Some("app"));
        assert_eq!(cluster_repository("docker.io/library/app:1", &registries), None);
        assert_eq!(cluster_repository("busybox", &registries), None);
    }
}
