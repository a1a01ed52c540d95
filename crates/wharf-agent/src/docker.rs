//! [`DockerExecutor`]: the node's Docker Engine through bollard, at the API version the engine
//! speaks (negotiated: Debian's 20.10 speaks 1.41).

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, DeviceMapping, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountType, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use tokio::sync::Notify;
use wharf_api::cluster::{EngineReport, TaskNetwork};
use wharf_api::logs::LogOptions;

use crate::executor::{ContainerView, ExecError, Executor, LogLines, RunRequest, Started, labels};

pub struct DockerExecutor {
    docker: Docker,
    changed: Arc<Notify>,
    /// Pulls under way or just done, by image and credentials: the tasks of one service
    /// starting together share one pull instead of each asking the registry (Swarm pulls once
    /// per task).
    pulls: std::sync::Mutex<HashMap<String, RecentPull>>,
    /// Held while a cluster network is looked up and made on the engine (an engine of API
    /// 1.41 would make two of one name for two tasks starting at once).
    networks: tokio::sync::Mutex<()>,
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
        Ok(DockerExecutor {
            docker,
            changed,
            pulls: std::sync::Mutex::default(),
            networks: tokio::sync::Mutex::new(()),
        })
    }

    /// Pulls `image` once for every start that asks within [`PULL_REUSE`].
    async fn pull_shared(&self, image: &str, credentials: Option<DockerCredentials>) -> Result<(), String> {
        let outcome = {
            let mut pulls = self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            pulls.retain(|_, pull| pull.at.elapsed() < PULL_REUSE);
            // Per image and credentials: a pull refused without them is no answer for a start
            // that has them, and one made with a user's is not shared with a start without.
            let key = format!("{image} {:x}", fingerprint(credentials.as_ref()));
            let pull = pulls.entry(key).or_insert_with(|| RecentPull {
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
    /// The container of task `task_id` on this engine.
    async fn task_container(&self, task_id: &str) -> Result<String, ExecError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{}={task_id}", labels::TASK)])]);
        let list = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let found = self.docker.list_containers(Some(list)).await.map_err(engine)?;
        found.into_iter().find_map(|c| c.id).ok_or_else(|| ExecError::NoContainer(task_id.to_owned()))
    }

    /// Makes sure each cluster network of a task is on this engine: a bridge of its name,
    /// labelled with the cluster and the network's id.
    async fn ensure_networks(&self, cluster_id: &str, networks: &[TaskNetwork]) -> Result<(), ExecError> {
        if networks.is_empty() {
            return Ok(());
        }
        let _one_at_a_time = self.networks.lock().await;
        for network in networks {
            if let Ok(found) = self.docker.inspect_network(&network.name, None).await {
                if found.labels.unwrap_or_default().get(labels::NETWORK) != Some(&network.id) {
                    return Err(ExecError::Start(format!(
                        "a network named {} that is not this cluster's exists on this node's engine",
                        network.name
                    )));
                }
                continue;
            }
            let labels = HashMap::from([
                (labels::CLUSTER.to_owned(), cluster_id.to_owned()),
                (labels::NETWORK.to_owned(), network.id.clone()),
            ]);
            let request = NetworkCreateRequest {
                name: network.name.clone(),
                driver: Some("bridge".into()),
                internal: Some(network.internal),
                labels: Some(labels),
                ..Default::default()
            };
            self.docker
                .create_network(request)
                .await
                .map_err(|e| ExecError::Start(format!("making network {} on this node: {e}", network.name)))?;
        }
        Ok(())
    }

    /// The host ports a started container bound, and whether it has a health check.
    async fn started(&self, id: &str) -> (Vec<wharf_api::docker::PortConfig>, bool) {
        let Ok(inspect) = self.docker.inspect_container(id, None::<InspectContainerOptions>).await else {
            return (Vec::new(), false);
        };
        let checked = inspect.state.as_ref().is_some_and(|s| s.health.is_some());
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
        (out, checked)
    }
}

/// Wakes the agent on every `die` (and health verdict) of a container of this node; reconnects when the stream ends.
async fn watch_events(docker: Docker, node_id: u64, changed: Arc<Notify>) {
    loop {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{}={node_id}", labels::NODE)]),
            // A health check's verdict moves a task to running or failed.
            ("event".to_owned(), vec!["die".to_owned(), "destroy".to_owned(), "health_status".to_owned()]),
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
            let health = summary.status.as_deref().and_then(health_of).map(str::to_owned);
            out.push(ContainerView { id, task_id, running, exit_code, health });
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
        let files = &request.assignment.files;
        let mounts = if files.is_empty() {
            Vec::new()
        } else {
            let dir = crate::files::task_dir(&request.cluster_id, request.node_id, &request.assignment.id);
            crate::files::write(&dir, files).map_err(ExecError::Start)?
        };
        let networks = &request.assignment.networks;
        self.ensure_networks(&request.cluster_id, networks).await?;
        let body = container_body(request, &mounts)?;
        let options = CreateContainerOptions { name: Some(request.container_name()), ..Default::default() };
        let created =
            self.docker.create_container(Some(options), body).await.map_err(|e| ExecError::Start(e.to_string()))?;
        // The first network is the container's own; it joins the others before it starts.
        for network in networks.iter().skip(1) {
            let endpoint = EndpointSettings { aliases: Some(network.aliases.clone()), ..Default::default() };
            let connect = NetworkConnectRequest { container: created.id.clone(), endpoint_config: Some(endpoint) };
            if let Err(e) = self.docker.connect_network(&network.name, connect).await {
                let _ = self.remove(&created.id).await;
                return Err(ExecError::Start(format!("joining network {}: {e}", network.name)));
            }
        }
        if let Err(e) = self.docker.start_container(&created.id, None::<StartContainerOptions>).await {
            let _ = self.remove(&created.id).await;
            return Err(ExecError::Start(e.to_string()));
        }
        let (ports, checked) = self.started(&created.id).await;
        Ok(Started { id: created.id, ports, checked })
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
        let id = self.task_container(task_id).await?;
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since: options.since.clamp(0, i64::from(i32::MAX)) as i32,
            until: options.until.clamp(0, i64::from(i32::MAX)) as i32,
            timestamps: true,
            tail: options.tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        Ok(Box::pin(lines_of(self.docker.logs(&id, Some(query)))))
    }

    async fn exec(
        &self,
        task_id: &str,
        spec: &wharf_api::logs::ExecSpec,
        input: Option<crate::executor::Input>,
    ) -> Result<LogLines, ExecError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        use tokio::io::AsyncWriteExt;
        let id = self.task_container(task_id).await?;
        let non_blank = |s: &String| (!s.is_empty()).then(|| s.clone());
        let options = CreateExecOptions {
            attach_stdin: Some(input.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.cmd.clone()),
            privileged: Some(spec.privileged),
            user: non_blank(&spec.user),
            working_dir: non_blank(&spec.working_dir),
            ..Default::default()
        };
        let created = self.docker.create_exec(&id, options).await.map_err(|e| ExecError::Start(e.to_string()))?;
        let start = StartExecOptions { detach: false, tty: spec.tty, output_capacity: None };
        let StartExecResults::Attached { output, input: mut stdin } =
            self.docker.start_exec(&created.id, Some(start)).await.map_err(|e| ExecError::Start(e.to_string()))?
        else {
            return Err(ExecError::Start("the engine detached the command".into()));
        };
        if let Some(mut input) = input {
            // What the caller types, until they close it; then the command's input closes.
            tokio::spawn(async move {
                while let Some(chunk) = input.next().await {
                    if stdin.write_all(&chunk).await.is_err() || stdin.flush().await.is_err() {
                        return;
                    }
                }
                let _ = stdin.shutdown().await;
            });
        }
        let chunks = output.filter_map(|item| async move { raw_chunk(item) });
        let docker = self.docker.clone();
        let exec_id = created.id;
        let exit = futures::stream::once(async move {
            let code = docker.inspect_exec(&exec_id).await.ok().and_then(|i| i.exit_code).unwrap_or(-1);
            Ok((wharf_api::logs::EXIT, wharf_api::logs::exit_payload(code).to_vec()))
        });
        Ok(Box::pin(chunks.chain(exit)))
    }

    async fn attach_output(&self, task_id: &str, replay: bool) -> Result<LogLines, ExecError> {
        let id = self.task_container(task_id).await?;
        let options = bollard::query_parameters::AttachContainerOptions {
            stdout: true,
            stderr: true,
            stream: true,
            logs: replay,
            ..Default::default()
        };
        let attached = self.docker.attach_container(&id, Some(options)).await.map_err(engine)?;
        // Attached to a container that ended, the engine would wait for a start that never
        // comes: its log instead (an end after this look ends the attached stream).
        let running = self.docker.inspect_container(&id, None::<InspectContainerOptions>).await.ok();
        if !running.and_then(|c| c.state).and_then(|s| s.running).unwrap_or(false) {
            drop(attached);
            if !replay {
                return Ok(futures::stream::empty().boxed());
            }
            let lines = self.logs(task_id, &LogOptions::default()).await?;
            return Ok(lines
                .map(|line| {
                    line.map(|(stream, payload)| (stream, wharf_api::logs::split_timestamp(&payload).1.to_vec()))
                })
                .boxed());
        }
        Ok(attached.output.filter_map(|item| async move { raw_chunk(item) }).boxed())
    }

    async fn attach_stdin(&self, task_id: &str, mut input: crate::executor::Input) -> Result<(), ExecError> {
        use tokio::io::AsyncWriteExt;
        let id = self.task_container(task_id).await?;
        let options =
            bollard::query_parameters::AttachContainerOptions { stdin: true, stream: true, ..Default::default() };
        let attached = self.docker.attach_container(&id, Some(options)).await.map_err(engine)?;
        let mut stdin = attached.input;
        while let Some(chunk) = input.next().await {
            if stdin.write_all(&chunk).await.is_err() || stdin.flush().await.is_err() {
                return Ok(());
            }
        }
        let _ = stdin.shutdown().await;
        Ok(())
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn prune_networks(&self, cluster_id: &str, in_use: &std::collections::BTreeSet<String>) {
        let _one_at_a_time = self.networks.lock().await;
        let filters = HashMap::from([("label".to_owned(), vec![format!("{}={cluster_id}", labels::CLUSTER)])]);
        let options = bollard::query_parameters::ListNetworksOptions { filters: Some(filters) };
        let Ok(found) = self.docker.list_networks(Some(options)).await else { return };
        for name in found.into_iter().filter_map(|n| n.name).filter(|n| !in_use.contains(n)) {
            // One a container still uses (a task stopping) stays until the next pass.
            if let Err(e) = self.docker.remove_network(&name).await {
                tracing::debug!(network = name, error = %e, "a network no task uses stays for now");
            }
        }
    }
}

/// The health a container's status line shows (`Up 3 seconds (healthy)`), if it has a check.
fn health_of(status: &str) -> Option<&'static str> {
    if status.contains("(health: starting)") {
        Some("starting")
    } else if status.contains("(unhealthy)") {
        Some("unhealthy")
    } else if status.contains("(healthy)") {
        Some("healthy")
    } else {
        None
    }
}

/// A digest of the credentials a pull uses (none: 0), to tell pulls apart.
fn fingerprint(credentials: Option<&DockerCredentials>) -> u64 {
    use std::hash::{Hash, Hasher};
    let Some(c) = credentials else { return 0 };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&c.username, &c.password, &c.auth, &c.identitytoken, &c.registrytoken).hash(&mut hasher);
    hasher.finish()
}

/// The longest piece of a TTY's output sent as one line.
const CONSOLE_LINE: usize = 16 << 10;

/// A piece of a command's or an attached container's output as it came (a terminal's on
/// stdout).
fn raw_chunk(item: Result<LogOutput, bollard::errors::Error>) -> Option<Result<(u8, Vec<u8>), ExecError>> {
    match item {
        Ok(LogOutput::StdErr { message }) => Some(Ok((wharf_api::logs::STDERR, message.to_vec()))),
        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
            Some(Ok((wharf_api::logs::STDOUT, message.to_vec())))
        }
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(engine(e))),
    }
}

/// The engine's log output as lines: a frame is one already; a TTY's output comes in pieces of
/// any size and is cut at newlines (and every [`CONSOLE_LINE`] bytes), its last piece sent
/// when the output ends.
fn lines_of(
    output: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
) -> impl futures::Stream<Item = Result<(u8, Vec<u8>), ExecError>> + Send + 'static {
    type Line = Result<(u8, Vec<u8>), ExecError>;
    let state = (Box::pin(output), Vec::<u8>::new(), std::collections::VecDeque::<Line>::new(), false);
    futures::stream::unfold(state, |(mut output, mut console, mut ready, mut ended)| async move {
        loop {
            if let Some(line) = ready.pop_front() {
                return Some((line, (output, console, ready, ended)));
            }
            if ended {
                return None;
            }
            match output.next().await {
                Some(Ok(LogOutput::StdOut { message })) => {
                    ready.push_back(Ok((wharf_api::logs::STDOUT, message.to_vec())))
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    ready.push_back(Ok((wharf_api::logs::STDERR, message.to_vec())))
                }
                Some(Ok(LogOutput::Console { message })) => {
                    console.extend_from_slice(&message);
                    while let Some(end) = console.iter().position(|b| *b == b'\n') {
                        ready.push_back(Ok((wharf_api::logs::STDOUT, console.drain(..=end).collect())));
                    }
                    while console.len() >= CONSOLE_LINE {
                        ready.push_back(Ok((wharf_api::logs::STDOUT, console.drain(..CONSOLE_LINE).collect())));
                    }
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    ready.push_back(Err(engine(e)));
                    ended = true;
                }
                None => {
                    if !console.is_empty() {
                        ready.push_back(Ok((wharf_api::logs::STDOUT, std::mem::take(&mut console))));
                    }
                    ended = true;
                }
            }
        }
    })
}

/// The registry an image is pulled from, as credentials name it: `docker.io` for Docker
/// Hub under any of its names, a bare host otherwise.
fn registry_of(address: &str) -> String {
    let host = address.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

/// What a task's image is pulled with: the node's token for the cluster's registry, else the
/// credentials the service's creator sent for another registry, else nothing.
fn credentials(request: &RunRequest) -> Option<DockerCredentials> {
    if let Some(token) = &request.registry_token {
        return Some(DockerCredentials { registrytoken: Some(token.clone()), ..Default::default() });
    }
    let auth = request.assignment.registry_auth.as_ref()?;
    // Only to the registry they were given for.
    let image = &request.assignment.blueprint.spec.container_spec.image;
    let image_registry = wharf_api::docker::image_repository(image).map_or("docker.io", |(host, _)| host);
    if !auth.serveraddress.is_empty() && registry_of(&auth.serveraddress) != registry_of(image_registry) {
        return None;
    }
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
/// `mounts`: (file on this machine, target) of the task's secrets and configs, bound read-only.
fn container_body(request: &RunRequest, mounts: &[(String, String)]) -> Result<ContainerCreateBody, ExecError> {
    let spec = &request.assignment.blueprint.spec;
    let c = &spec.container_spec;
    // A mount the engine's API could not take fails the start, rather than running without it.
    let given = c
        .mounts
        .iter()
        .map(|m| serde_json::to_value(m).and_then(serde_json::from_value::<Mount>))
        .collect::<Result<Vec<Mount>, _>>()
        .map_err(|e| ExecError::Start(format!("a mount of the task: {e}")))?;
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
    // What a container made with `docker run` may use of this node (its creator's grants
    // allowed each setting).
    let host = request.assignment.blueprint.host.as_ref();
    Ok(ContainerCreateBody {
        image: Some(c.image.clone()),
        entrypoint: non_empty(&c.command),
        cmd: non_empty(&c.args),
        env: non_empty(&c.env),
        working_dir: non_blank(&c.dir),
        user: non_blank(&c.user),
        hostname: non_blank(&c.hostname),
        tty: Some(c.tty),
        open_stdin: c.open_stdin.then_some(true),
        stdin_once: host.and_then(|h| h.stdin_once.then_some(true)),
        networking_config: request.assignment.networks.first().map(|network| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.name.clone(),
                EndpointSettings { aliases: Some(network.aliases.clone()), ..Default::default() },
            )])),
        }),
        stop_signal: non_blank(&c.stop_signal),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            init: c.init,
            readonly_rootfs: c.read_only.then_some(true),
            oom_score_adj: c.oom_score_adj,
            cap_add: (!c.capability_add.is_empty()).then(|| c.capability_add.clone()),
            cap_drop: (!c.capability_drop.is_empty()).then(|| c.capability_drop.clone()),
            network_mode: host
                .map(|h| h.network_mode.clone())
                .filter(|m| !m.is_empty())
                .or_else(|| request.assignment.networks.first().map(|n| n.name.clone())),
            privileged: host.map(|h| h.privileged).filter(|p| *p),
            pid_mode: host.and_then(|h| non_blank(&h.pid_mode)),
            ipc_mode: host.and_then(|h| non_blank(&h.ipc_mode)),
            uts_mode: host.and_then(|h| non_blank(&h.uts_mode)),
            security_opt: host.and_then(|h| non_empty(&h.security_opt)),
            devices: host.filter(|h| !h.devices.is_empty()).map(|h| {
                h.devices
                    .iter()
                    .map(|d| DeviceMapping {
                        path_on_host: Some(d.path_on_host.clone()),
                        path_in_container: non_blank(&d.path_in_container),
                        cgroup_permissions: non_blank(&d.cgroup_permissions),
                    })
                    .collect()
            }),
            mounts: {
                // The service's mounts as the engine takes them (the same JSON shape), then
                // the secrets' and configs' files.
                let mut all = given;
                all.extend(mounts.iter().map(|(source, target)| Mount {
                    target: Some(target.clone()),
                    source: Some(source.clone()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                }));
                (!all.is_empty()).then_some(all)
            },
            ..Default::default()
        }),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: (!h.test.is_empty()).then(|| h.test.clone()),
            interval: (h.interval > 0).then_some(h.interval),
            timeout: (h.timeout > 0).then_some(h.timeout),
            retries: (h.retries > 0).then_some(h.retries),
            start_period: (h.start_period > 0).then_some(h.start_period),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_ttys_pieces_become_lines_and_its_last_piece_is_kept() {
        let pieces: Vec<Result<LogOutput, bollard::errors::Error>> = vec![
            Ok(LogOutput::Console { message: "ts one\nts tw".into() }),
            Ok(LogOutput::Console { message: "o\nts three".into() }),
            Ok(LogOutput::StdErr { message: "ts err\n".into() }),
        ];
        let lines: Vec<(u8, Vec<u8>)> =
            lines_of(futures::stream::iter(pieces)).map(|l| l.expect("a line")).collect().await;
        let text: Vec<(u8, String)> =
            lines.into_iter().map(|(s, l)| (s, String::from_utf8(l).expect("text"))).collect();
        assert_eq!(
            text,
            [(1, "ts one\n".into()), (1, "ts two\n".into()), (2, "ts err\n".into()), (1, "ts three".into())]
        );
        let long: Vec<Result<LogOutput, bollard::errors::Error>> =
            vec![Ok(LogOutput::Console { message: vec![b'x'; CONSOLE_LINE * 2 + 1].into() })];
        let sizes: Vec<usize> =
            lines_of(futures::stream::iter(long)).map(|l| l.expect("a line").1.len()).collect().await;
        assert_eq!(sizes, [CONSOLE_LINE, CONSOLE_LINE, 1], "output without newlines is cut");
    }

    #[test]
    fn mounts_reach_the_engine_as_the_service_gives_them_then_the_tasks_files() {
        let assignment: wharf_api::cluster::Assignment = serde_json::from_value(serde_json::json!({
            "id": "t", "service_id": "s", "slot": 1, "desired": "running", "state": "assigned",
            "blueprint": {"service_name": "s", "spec": {"ContainerSpec": {"Image": "i", "Mounts": [
                {"Type": "volume", "Source": "data", "Target": "/data", "VolumeOptions": {"NoCopy": true}},
                {"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1048576}},
                {"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": true}
            ]}}}
        }))
        .expect("assignment");
        let request = RunRequest { cluster_id: "c".into(), node_id: 1, assignment, registry_token: None };
        let files = [("/dev/shm/x/0".to_owned(), "/run/secrets/pw".to_owned())];
        let mounts =
            container_body(&request, &files).expect("a body").host_config.and_then(|h| h.mounts).expect("mounts");
        type Shown<'a> = (Option<MountType>, Option<&'a str>, Option<&'a str>, Option<bool>);
        let shown: Vec<Shown<'_>> =
            mounts.iter().map(|m| (m.typ, m.source.as_deref(), m.target.as_deref(), m.read_only)).collect();
        assert_eq!(
            shown,
            [
                (Some(MountType::VOLUME), Some("data"), Some("/data"), None),
                (Some(MountType::TMPFS), None, Some("/scratch"), None),
                (Some(MountType::BIND), Some("/srv"), Some("/srv"), Some(true)),
                (Some(MountType::BIND), Some("/dev/shm/x/0"), Some("/run/secrets/pw"), Some(true)),
            ]
        );
        assert_eq!(mounts[0].volume_options.as_ref().and_then(|v| v.no_copy), Some(true));
        assert_eq!(mounts[1].tmpfs_options.as_ref().and_then(|t| t.size_bytes), Some(1_048_576));
    }

    #[test]
    fn credentials_go_only_to_the_registry_they_name() {
        assert_eq!(registry_of("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_of("docker.io"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000"), "127.0.0.1:5000");
        let request = |image: &str, server: &str| {
            let mut assignment: wharf_api::cluster::Assignment = serde_json::from_value(serde_json::json!({
                "id": "t", "service_id": "s", "slot": 1, "desired": "running", "state": "assigned",
                "blueprint": {"service_name": "s", "spec": {"ContainerSpec": {"Image": image}}}
            }))
            .expect("assignment");
            assignment.registry_auth = Some(wharf_api::docker::RegistryAuth {
                username: "u".into(),
                password: "p".into(),
                serveraddress: server.into(),
                ..Default::default()
            });
            RunRequest { cluster_id: "c".into(), node_id: 1, assignment, registry_token: None }
        };
        assert!(credentials(&request("127.0.0.1:5000/team/app:1", "127.0.0.1:5000")).is_some());
        assert!(credentials(&request("127.0.0.1:6000/team/app:1", "127.0.0.1:5000")).is_none());
        assert!(credentials(&request("busybox", "https://index.docker.io/v1/")).is_some());
        assert!(credentials(&request("busybox", "127.0.0.1:5000")).is_none());
        let mut token = request("127.0.0.1:6000/app", "elsewhere:1");
        token.registry_token = Some("tok".into());
        assert_eq!(credentials(&token).and_then(|c| c.registrytoken).as_deref(), Some("tok"));
    }
}
