//! [`DockerExecutor`]: the node's Docker Engine through bollard, at the API version the engine
//! speaks (negotiated: Debian's 20.10 speaks 1.41).

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use tokio::sync::Notify;
use wharf_api::cluster::EngineReport;
use wharf_api::logs::LogOptions;

use crate::executor::{ContainerView, ExecError, Executor, LogLines, RunRequest, Started, labels};

pub struct DockerExecutor {
    docker: Docker,
    changed: Arc<Notify>,
    /// Pulls under way or just done, by image: the tasks of one service starting together
    /// share one pull instead of each asking the registry (Swarm pulls once per task).
    pulls: std::sync::Mutex<HashMap<String, RecentPull>>,
}

/// A pull that started at `at`; its outcome is shared by every start within [`PULL_REUSE`].
struct RecentPull {
    at: std::time::Instant,
    outcome: Arc<tokio::sync::OnceCell<Result<(), String>>>,
}

/// How long a pull's outcome serves other starts of the same image.
const PULL_REUSE: std::time::Duration = std::time::Duration::from_secs(30);

fn engine(e: bollard::errors::Error) -> ExecError {
    ExecError::Engine(e.to_string())
}

impl DockerExecutor {
    /// Connects to `host` (`unix:///path`, `tcp://host:port`, or the local socket when
    /// `None`) and negotiates the API version; then watches the engine's container events of
    /// this node so the agent hears of a container that dies.
    pub async fn connect(host: Option<&str>, node_id: u64) -> Result<DockerExecutor, ExecError> {
        let docker = match host {
            Some(host) if host.starts_with("unix://") => {
                Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION).map_err(engine)?
            }
            Some(host) => Docker::connect_with_http(host, 120, bollard::API_DEFAULT_VERSION).map_err(engine)?,
            None => Docker::connect_with_local_defaults().map_err(engine)?,
        };
        let docker = docker.negotiate_version().await.map_err(engine)?;
        let changed = Arc::new(Notify::new());
        tokio::spawn(watch_events(docker.clone(), node_id, Arc::clone(&changed)));
        Ok(DockerExecutor { docker, changed, pulls: std::sync::Mutex::default() })
    }

    /// Pulls `image` once for every start that asks within [`PULL_REUSE`].
    async fn pull_shared(&self, image: &str, credentials: Option<DockerCredentials>) -> Result<(), String> {
        let outcome = {
            let mut pulls = self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            pulls.retain(|_, pull| pull.at.elapsed() < PULL_REUSE);
            let pull = pulls.entry(image.to_owned()).or_insert_with(|| RecentPull {
                at: std::time::Instant::now(),
                outcome: Arc::new(tokio::sync::OnceCell::new()),
            });
            Arc::clone(&pull.outcome)
        };
        outcome.get_or_init(|| self.pull(image, credentials)).await.clone()
    }

    async fn pull(&self, image: &str, credentials: Option<DockerCredentials>) -> Result<(), String> {
        let options = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(step) = stream.next().await {
            step.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl DockerExecutor {
    /// The host ports the engine bound for a container (a published port of 0 gets one of
    /// the engine's choosing).
    async fn bound_ports(&self, id: &str) -> Vec<wharf_api::docker::PortConfig> {
        let Ok(inspect) = self.docker.inspect_container(id, None::<InspectContainerOptions>).await else {
            return Vec::new();
        };
        let ports = inspect.network_settings.and_then(|n| n.ports).unwrap_or_default();
        let mut out = Vec::new();
        for (key, bindings) in ports {
            let (target, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(target) = target.parse::<u16>() else { continue };
            let published =
                bindings.unwrap_or_default().iter().find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok());
            if let Some(published) = published {
                out.push(wharf_api::docker::PortConfig {
                    name: String::new(),
                    protocol: protocol.to_owned(),
                    target_port: target,
                    published_port: published,
                    publish_mode: "host".into(),
                });
            }
        }
        out.sort_by_key(|p| (p.target_port, p.published_port));
        out
    }
}

/// Wakes the agent on every `die` of a container of this node; reconnects when the stream ends.
async fn watch_events(docker: Docker, node_id: u64, changed: Arc<Notify>) {
    loop {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{}={node_id}", labels::NODE)]),
            ("event".to_owned(), vec!["die".to_owned(), "destroy".to_owned()]),
        ]);
        let mut events = docker.events(Some(EventsOptions { filters: Some(filters), ..Default::default() }));
        while let Some(event) = events.next().await {
            if event.is_err() {
                break;
            }
            changed.notify_one();
        }
        changed.notify_one();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    async fn describe(&self) -> Result<EngineReport, ExecError> {
        let info = self.docker.info().await.map_err(engine)?;
        let labels = info
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (l, String::new()),
            })
            .collect();
        Ok(EngineReport {
            hostname: info.name.unwrap_or_default(),
            os: info.os_type.unwrap_or_else(|| "linux".into()),
            architecture: info.architecture.unwrap_or_default(),
            nano_cpus: info.ncpu.unwrap_or(0) * 1_000_000_000,
            memory_bytes: info.mem_total.unwrap_or(0),
            engine_version: info.server_version.unwrap_or_default(),
            labels,
        })
    }

    async fn containers(&self, cluster_id: &str, node_id: u64) -> Result<Vec<ContainerView>, ExecError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={cluster_id}", labels::CLUSTER), format!("{}={node_id}", labels::NODE)],
        )]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let mut out = Vec::new();
        for summary in self.docker.list_containers(Some(options)).await.map_err(engine)? {
            let (Some(id), Some(labels)) = (summary.id, summary.labels) else { continue };
            let Some(task_id) = labels.get(labels::TASK).cloned() else { continue };
            let running = matches!(
                summary.state,
                Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING)
            );
            let exit_code = if running {
                None
            } else {
                let inspect = self.docker.inspect_container(&id, None::<InspectContainerOptions>).await;
                Some(inspect.ok().and_then(|i| i.state).and_then(|s| s.exit_code).unwrap_or(0))
            };
            out.push(ContainerView { id, task_id, running, exit_code });
        }
        Ok(out)
    }

    async fn run(&self, request: &RunRequest) -> Result<Started, ExecError> {
        let spec = &request.assignment.blueprint.spec;
        let image = &spec.container_spec.image;
        if let Err(why) = self.pull_shared(image, credentials(request)).await {
            let local = self.docker.inspect_image(image).await;
            if local.is_err() {
                return Err(ExecError::Image(format!("No such image: {image} (pull failed: {why})")));
            }
            tracing::info!(image, error = %why, "pull failed; the image on this node is used");
        }
        let body = container_body(request);
        let options = CreateContainerOptions { name: Some(request.container_name()), ..Default::default() };
        let created =
            self.docker.create_container(Some(options), body).await.map_err(|e| ExecError::Start(e.to_string()))?;
        if let Err(e) = self.docker.start_container(&created.id, None::<StartContainerOptions>).await {
            let _ = self.remove(&created.id).await;
            return Err(ExecError::Start(e.to_string()));
        }
        let ports = self.bound_ports(&created.id).await;
        Ok(Started { id: created.id, ports })
    }

    async fn stop(&self, container_id: &str, grace_secs: i64) -> Result<(), ExecError> {
        let options = StopContainerOptions { t: Some(grace_secs.clamp(0, i64::from(i32::MAX)) as i32), signal: None };
        match self.docker.stop_container(container_id, Some(options)).await {
            Ok(()) => Ok(()),
            // Stopped already.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove(&self, container_id: &str) -> Result<(), ExecError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(container_id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn logs(&self, task_id: &str, options: &LogOptions) -> Result<LogLines, ExecError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{}={task_id}", labels::TASK)])]);
        let list = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let found = self.docker.list_containers(Some(list)).await.map_err(engine)?;
        let Some(id) = found.into_iter().find_map(|c| c.id) else {
            return Err(ExecError::NoContainer(task_id.to_owned()));
        };
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since: options.since.clamp(0, i64::from(i32::MAX)) as i32,
            until: 0,
            timestamps: true,
            tail: options.tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        // A TTY's output comes in pieces of any size: cut into lines here, as frames are.
        let mut console = Vec::new();
        let lines = self.docker.logs(&id, Some(query)).flat_map(move |output| {
            let lines: Vec<Result<(u8, Vec<u8>), ExecError>> = match output {
                Ok(LogOutput::StdOut { message }) => vec![Ok((wharf_api::logs::STDOUT, message.to_vec()))],
                Ok(LogOutput::StdErr { message }) => vec![Ok((wharf_api::logs::STDERR, message.to_vec()))],
                Ok(LogOutput::Console { message }) => {
                    console.extend_from_slice(&message);
                    let mut out = Vec::new();
                    while let Some(end) = console.iter().position(|b| *b == b'\n') {
                        out.push(Ok((wharf_api::logs::STDOUT, console.drain(..=end).collect())));
                    }
                    out
                }
                Ok(LogOutput::StdIn { .. }) => Vec::new(),
                Err(e) => vec![Err(engine(e))],
            };
            futures::stream::iter(lines)
        });
        Ok(Box::pin(lines))
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// What a task's image is pulled with: the node's token for the cluster's registry, else the
/// credentials the service's creator sent for another registry, else nothing.
fn credentials(request: &RunRequest) -> Option<DockerCredentials> {
    if let Some(token) = &request.registry_token {
        return Some(DockerCredentials { registrytoken: Some(token.clone()), ..Default::default() });
    }
    let auth = request.assignment.registry_auth.as_ref()?;
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    Some(DockerCredentials {
        username: some(&auth.username),
        password: some(&auth.password),
        auth: some(&auth.auth),
        email: some(&auth.email),
        serveraddress: some(&auth.serveraddress),
        identitytoken: some(&auth.identitytoken),
        registrytoken: some(&auth.registrytoken),
    })
}

/// The engine's container configuration for a task.
fn container_body(request: &RunRequest) -> ContainerCreateBody {
    let spec = &request.assignment.blueprint.spec;
    let c = &spec.container_spec;
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.extend(request.labels());
    let limits = spec.resources.as_ref().and_then(|r| r.limits).unwrap_or_default();
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &request.assignment.blueprint.host_ports {
        let key = format!("{}/{}", port.target_port, port.protocol);
        exposed.push(key.clone());
        let host_port = if port.published_port == 0 { String::new() } else { port.published_port.to_string() };
        bindings.insert(key, Some(vec![PortBinding { host_ip: None, host_port: Some(host_port) }]));
    }
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let non_blank = |s: &String| (!s.is_empty()).then(|| s.clone());
    ContainerCreateBody {
        image: Some(c.image.clone()),
        entrypoint: non_empty(&c.command),
        cmd: non_empty(&c.args),
        env: non_empty(&c.env),
        working_dir: non_blank(&c.dir),
        user: non_blank(&c.user),
        hostname: non_blank(&c.hostname),
        tty: Some(c.tty),
        stop_signal: non_blank(&c.stop_signal),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            init: c.init,
            ..Default::default()
        }),
        ..Default::default()
    }
}
