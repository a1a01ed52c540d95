//! The Docker-compatible API on the managers' HTTPS port: what the stock `docker` CLI needs
//! for `version`, `info`, `node` and `service` against the cluster. A request is parsed into a
//! [`DockerCall`] first; every call but `/_ping` needs a client bundle's certificate, whose
//! bundle must still hold ([`wharf_manager::Manager::bundle_caller`]); each handler makes one
//! call on the manager and the answer or error takes the engine's shape (`{"message"}`) here,
//! in [`docker_error`]. Every answer carries the engine's headers (`Api-Version`, `Ostype`,
//! `Docker-Experimental`, `Server`).

// A refusal is the response itself, built once where it is decided; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod containers;
mod endpoint;
mod logs;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use wharf_api::docker::{self, API_VERSION, MIN_API_VERSION, ServiceSpec};
use wharf_manager::{Caller, ClusterError, LogTarget, Manager};

pub(crate) use endpoint::DockerCall;

use crate::{App, PeerUser};

/// Largest request body the Docker API reads (a service spec).
const MAX_BODY: usize = 1 << 20;

/// Answers one Docker API call.
pub(crate) async fn handle(app: &App, call: DockerCall, req: Request) -> Response {
    let mut response = match answer(app, call, req).await {
        Ok(response) => response,
        Err(e) => e,
    };
    let headers = response.headers_mut();
    headers.insert("api-version", HeaderValue::from_static(API_VERSION));
    headers.insert("docker-experimental", HeaderValue::from_static("false"));
    headers.insert("ostype", HeaderValue::from_static("linux"));
    headers.insert(header::SERVER, HeaderValue::from_static(concat!("Wharf/", env!("CARGO_PKG_VERSION"))));
    response
}

type Answer = Result<Response, Response>;

async fn answer(app: &App, call: DockerCall, req: Request) -> Answer {
    if let DockerCall::BadVersion(version) = &call {
        let message = format!(
            "client version {version} is not supported: Wharf speaks API versions {MIN_API_VERSION} to {API_VERSION}"
        );
        return Err(message_response(StatusCode::BAD_REQUEST, &message));
    }
    let Some(manager) = app.cluster.clone() else {
        return Err(message_response(StatusCode::NOT_FOUND, "the Docker API is served by cluster managers"));
    };
    if call == DockerCall::Ping {
        return ping(req.method());
    }
    let cert = req.extensions().get::<PeerUser>().cloned();
    let caller = caller(app, &manager, cert, crate::peer_ip(&req)).await?;
    let method = req.method().clone();
    let query = crate::query_pairs(req.uri().query());
    match (call, method) {
        (DockerCall::Version, Method::GET) => ok(&version()),
        (DockerCall::Info, Method::GET) => ok(&info(&manager, &caller)?),
        (DockerCall::Swarm, Method::GET) => ok(&cluster_info(&manager)),
        (DockerCall::Nodes, Method::GET) => ok(&manager.docker_nodes(&caller).map_err(docker_error)?),
        (DockerCall::Node(id), Method::GET) => ok(&manager.docker_node(&caller, &id).map_err(docker_error)?),
        (DockerCall::Node(id), Method::DELETE) => {
            manager.remove_docker_node(&caller, &id).await.map_err(docker_error)?;
            Ok(empty(StatusCode::OK))
        }
        (DockerCall::NodeUpdate(id), Method::POST) => {
            let version = query_u64(&query, "version")?;
            let spec: docker::NodeSpec = json_body(req).await?;
            manager.update_node(&caller, &id, version, spec).await.map_err(docker_error)?;
            Ok(empty(StatusCode::OK))
        }
        (DockerCall::Services, Method::GET) => {
            let filters = filters(&query)?;
            let status = crate::query_get(&query, "status").is_some_and(|v| v == "true" || v == "1");
            ok(&manager.list_services(&caller, &filters, status).map_err(docker_error)?)
        }
        (DockerCall::ServiceCreate, Method::POST) => {
            let auth = registry_auth(&req)?;
            let spec = service_spec(req).await?;
            let created = manager.create_service(&caller, spec, auth).await.map_err(docker_error)?;
            typed(StatusCode::CREATED, &created)
        }
        (DockerCall::Service(id), Method::GET) => ok(&manager.inspect_service(&caller, &id).map_err(docker_error)?),
        (DockerCall::Service(id), Method::DELETE) => {
            manager.remove_service(&caller, &id).await.map_err(docker_error)?;
            Ok(empty(StatusCode::OK))
        }
        (DockerCall::ServiceUpdate(id), Method::POST) => {
            let version = query_u64(&query, "version")?.ok_or_else(|| {
                message_response(
                    StatusCode::BAD_REQUEST,
                    "invalid service version: the version query parameter is required",
                )
            })?;
            let auth = registry_auth(&req)?;
            // `docker service rollback`: the previous spec again, whatever the body says.
            if crate::query_get(&query, "rollback") == Some("previous") {
                return ok(&manager.rollback_service(&caller, &id, version).await.map_err(docker_error)?);
            }
            let spec = service_spec(req).await?;
            ok(&manager.update_service(&caller, &id, version, spec, auth).await.map_err(docker_error)?)
        }
        (DockerCall::Tasks, Method::GET) => {
            let filters = filters(&query)?;
            ok(&manager.list_tasks(&caller, &filters).map_err(docker_error)?)
        }
        (DockerCall::Task(id), Method::GET) => ok(&manager.inspect_task(&caller, &id).map_err(docker_error)?),
        (DockerCall::Networks, Method::GET) => {
            let filters = filters(&query)?;
            ok(&manager.list_networks(&caller, &filters).map_err(docker_error)?)
        }
        (DockerCall::NetworkCreate, Method::POST) => {
            let request: docker::NetworkCreate = json_body(req).await?;
            let created = manager.create_network(&caller, request).await.map_err(docker_error)?;
            typed(StatusCode::CREATED, &created)
        }
        (DockerCall::Network(id), Method::GET) => ok(&manager.inspect_network(&caller, &id).map_err(docker_error)?),
        (DockerCall::Network(id), Method::DELETE) => {
            manager.remove_network(&caller, &id).await.map_err(docker_error)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (DockerCall::Secrets(kind), Method::GET) => {
            let filters = filters(&query)?;
            ok(&manager.list_secrets(&caller, kind, &filters).map_err(docker_error)?)
        }
        (DockerCall::SecretCreate(kind), Method::POST) => {
            let spec: docker::SecretSpec = json_body(req).await?;
            let created = manager.create_secret(&caller, kind, spec).await.map_err(docker_error)?;
            typed(StatusCode::CREATED, &created)
        }
        (DockerCall::Secret(kind, id), Method::GET) => {
            ok(&manager.inspect_secret(&caller, kind, &id).map_err(docker_error)?)
        }
        (DockerCall::Secret(kind, id), Method::DELETE) => {
            manager.remove_secret(&caller, kind, &id).await.map_err(docker_error)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (DockerCall::SecretUpdate(kind, id), Method::POST) => {
            let version = query_u64(&query, "version")?
                .ok_or_else(|| message_response(StatusCode::BAD_REQUEST, "the version query parameter is required"))?;
            let spec: docker::SecretSpec = json_body(req).await?;
            manager.update_secret(&caller, kind, &id, version, spec).await.map_err(docker_error)?;
            Ok(empty(StatusCode::OK))
        }
        (DockerCall::Distribution(image), Method::GET) => distribution(app, &manager, &caller, &image).await,
        (DockerCall::ServiceLogs(id), Method::GET) => logs::answer(&manager, &caller, &LogTarget::Service(id), &query),
        (DockerCall::TaskLogs(id), Method::GET) => logs::answer(&manager, &caller, &LogTarget::Task(id), &query),
        (DockerCall::Containers, _) => containers::containers(&manager, &caller, false, req).await,
        (DockerCall::ContainerCreate, _) => containers::containers(&manager, &caller, true, req).await,
        (DockerCall::Container(id), _) => containers::container(&manager, &caller, &id, req).await,
        (DockerCall::ContainerOp(id, op), _) => containers::operation(&manager, &caller, &id, &op, req).await,
        (DockerCall::Exec(id, op), _) => containers::exec(&manager, &caller, &id, &op, req).await,
        (DockerCall::Unsupported(path), _) => Err(message_response(
            StatusCode::NOT_IMPLEMENTED,
            &format!(
                "/{path} is not supported by Wharf: it serves the swarm-mode calls (node, service, task, secret, config, network) and containers (run, ps, inspect, logs, stop, rm, exec)"
            ),
        )),
        (_, method) => Err(message_response(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed here"))),
    }
}

/// `HEAD` and `GET /_ping`: the CLI's first call, open to anyone (it says nothing of the
/// cluster but that this is a manager of an active swarm).
fn ping(method: &Method) -> Answer {
    let mut response = if method == Method::HEAD { empty(StatusCode::OK) } else { Response::new(Body::from("OK")) };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("swarm", HeaderValue::from_static("active/manager"));
    Ok(response)
}

/// The caller a client bundle's certificate names. A bundle made through another manager a
/// moment ago may not be on this replica yet: it catches up before it refuses one.
async fn caller(app: &App, manager: &Manager, cert: Option<PeerUser>, source: String) -> Result<Caller, Response> {
    let Some(PeerUser(cert)) = cert else {
        let message = "the Docker API needs a client bundle: get one with `wharf bundle` and run `eval \"$(<env.sh)\"`";
        return Err(message_response(StatusCode::UNAUTHORIZED, message));
    };
    match manager.bundle_caller(&cert, Some(&source)) {
        Err(ClusterError::Unauthorized(_)) if crate::catch_up(app).await.is_ok() => {
            manager.bundle_caller(&cert, Some(&source)).map_err(docker_error)
        }
        found => found.map_err(docker_error),
    }
}

/// `GET /distribution/{image}/json` for an image of this cluster's registry: its digest, so
/// the CLI pins the service to it. Other registries: not found (the CLI warns and goes on).
async fn distribution(app: &App, manager: &Manager, caller: &Caller, image: &str) -> Answer {
    let not_found =
        || message_response(StatusCode::NOT_FOUND, &format!("{image}: not found in this cluster's registry"));
    let (host, repository) = docker::image_repository(image).ok_or_else(not_found)?;
    let ours = manager.store.nodes().map_err(|e| docker_error(e.into()))?.iter().any(|(_, n)| n.addr == host)
        || app.default_host == host;
    if !ours {
        return Err(not_found());
    }
    let reference = image
        .split_once('@')
        .map(|(_, digest)| digest.to_owned())
        .or_else(|| image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map(|(_, tag)| tag.to_owned()))
        .unwrap_or_else(|| "latest".to_owned());
    if let Some(auth) = &app.auth {
        let principal = wharf_auth::Principal::User { name: caller.name.clone(), admin: caller.admin };
        if !auth.may(&principal, "repository", repository, "pull") {
            return Err(not_found());
        }
    }
    let manifest = app.registry.get_manifest(repository, &reference).map_err(|_| not_found())?;
    let answer = DistributionInspect {
        descriptor: Descriptor {
            media_type: manifest.media_type,
            digest: manifest.digest.to_string(),
            size: manifest.bytes.len() as u64,
        },
        platforms: Vec::new(),
    };
    ok(&answer)
}

#[derive(Serialize)]
struct DistributionInspect {
    #[serde(rename = "Descriptor")]
    descriptor: Descriptor,
    #[serde(rename = "Platforms")]
    platforms: Vec<docker::Platform>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

fn version() -> docker::Version {
    let version = concat!("wharf/", env!("CARGO_PKG_VERSION")).to_owned();
    docker::Version {
        platform: docker::Named { name: "Wharf".into() },
        components: vec![docker::Component { name: "Wharf".into(), version: version.clone() }],
        version,
        api_version: API_VERSION.into(),
        min_api_version: MIN_API_VERSION.into(),
        git_commit: String::new(),
        go_version: String::new(),
        os: "linux".into(),
        arch: std::env::consts::ARCH.into(),
        kernel_version: String::new(),
    }
}

fn cluster_info(manager: &Manager) -> docker::ClusterInfo {
    docker::ClusterInfo {
        id: manager.cluster_id.clone(),
        version: docker::ObjectVersion { index: 1 },
        created_at: docker::rfc3339(0),
        updated_at: docker::rfc3339(0),
        spec: docker::SwarmSpec {
            name: "default".into(),
            labels: Default::default(),
            orchestration: docker::Orchestration {
                task_history_retention_limit: wharf_manager::orchestrator::TASK_HISTORY as u64,
            },
            dispatcher: docker::Dispatcher { heartbeat_period: manager.heartbeats.period().as_nanos() as u64 },
        },
        tls_info: docker::TlsInfo { trust_root: manager.ca.cert_pem().to_owned() },
        root_rotation_in_progress: false,
    }
}

/// `GET /info`: the cluster as one engine (resources summed over the ready nodes the caller
/// may view).
fn info(manager: &Manager, caller: &Caller) -> Result<docker::Info, Response> {
    let nodes = manager.docker_nodes(caller).map_err(docker_error)?;
    let me = nodes.iter().find(|n| n.id == manager.node_id.to_string());
    let managers: Vec<&docker::Node> = nodes.iter().filter(|n| n.manager_status.is_some()).collect();
    let ready = nodes.iter().filter(|n| n.status.state == "ready");
    let (ncpu, memory) = ready.fold((0, 0), |(c, m), n| {
        (c + n.description.resources.nano_cpus / 1_000_000_000, m + n.description.resources.memory_bytes)
    });
    let running = manager.store.tasks().map_err(|e| docker_error(e.into()))?;
    let running = running.iter().filter(|(_, t)| t.status.state == wharf_store::TaskState::Running).count() as u64;
    Ok(docker::Info {
        id: manager.cluster_id.clone(),
        name: me.map(|n| n.description.hostname.clone()).unwrap_or_default(),
        server_version: concat!("wharf/", env!("CARGO_PKG_VERSION")).into(),
        os_type: "linux".into(),
        operating_system: "Wharf".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu,
        mem_total: memory,
        containers: running,
        containers_running: running,
        images: 0,
        labels: Vec::new(),
        swarm: docker::SwarmInfo {
            node_id: manager.node_id.to_string(),
            node_addr: me.map(|n| n.status.addr.clone()).unwrap_or_default(),
            local_node_state: "active".into(),
            control_available: true,
            error: String::new(),
            remote_managers: managers
                .iter()
                .map(|n| docker::RemoteManager {
                    node_id: n.id.clone(),
                    addr: n.manager_status.as_ref().map(|m| m.addr.clone()).unwrap_or_default(),
                })
                .collect(),
            nodes: nodes.len() as u64,
            managers: managers.len() as u64,
            cluster: cluster_info(manager),
        },
        warnings: Vec::new(),
    })
}

fn filters(query: &[(String, String)]) -> Result<std::collections::BTreeMap<String, Vec<String>>, Response> {
    docker::parse_filters(crate::query_get(query, "filters").unwrap_or(""))
        .map_err(|e| message_response(StatusCode::BAD_REQUEST, &e))
}

/// The credentials `X-Registry-Auth` carries (base64url JSON, padded or not; the standard
/// alphabet is taken too), for images of registries other than the cluster's.
fn registry_auth(req: &Request) -> Result<Option<docker::RegistryAuth>, Response> {
    use base64::Engine;
    let Some(value) = req.headers().get("x-registry-auth") else { return Ok(None) };
    let invalid =
        || message_response(StatusCode::BAD_REQUEST, "invalid X-Registry-Auth header: base64url JSON expected");
    let text = value.to_str().map_err(|_| invalid())?.trim().trim_end_matches('=');
    if text.is_empty() {
        return Ok(None);
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| invalid())?;
    let auth: docker::RegistryAuth = serde_json::from_slice(&json).map_err(|_| invalid())?;
    Ok(Some(auth).filter(|a| !a.is_empty()))
}

fn query_u64(query: &[(String, String)], key: &str) -> Result<Option<u64>, Response> {
    match crate::query_get(query, key) {
        None => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| message_response(StatusCode::BAD_REQUEST, &format!("invalid {key} {raw:?}"))),
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, Response> {
    let body =
        crate::read_body(req.into_body(), MAX_BODY).await.map_err(|(status, why)| message_response(status, why))?;
    serde_json::from_slice(&body)
        .map_err(|e| message_response(StatusCode::BAD_REQUEST, &format!("invalid JSON in the request body: {e}")))
}

/// A service spec from the body, refused (400) when it asks for what Wharf cannot do yet.
async fn service_spec(req: Request) -> Result<ServiceSpec, Response> {
    let raw: serde_json::Value = json_body(req).await?;
    if let Some(why) = docker::unsupported_in_spec(&raw) {
        return Err(message_response(StatusCode::BAD_REQUEST, &why));
    }
    serde_json::from_value(raw)
        .map_err(|e| message_response(StatusCode::BAD_REQUEST, &format!("invalid service spec: {e}")))
}

fn ok<T: Serialize>(value: &T) -> Answer {
    typed(StatusCode::OK, value)
}

fn typed<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    Ok(crate::typed_response(status, value))
}

fn empty(status: StatusCode) -> Response {
    crate::empty(status, &[])
}

fn message_response(status: StatusCode, message: &str) -> Response {
    crate::typed_response(status, &docker::ErrorResponse { message: message.to_owned() })
}

/// A control-plane error in the engine's error shape (statuses as `cluster_api::status_of`).
fn docker_error(e: ClusterError) -> Response {
    let mut response = match crate::cluster_api::status_of(&e) {
        Some(status) => message_response(status, &e.to_string()),
        None => message_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error, see the server log"),
    };
    if matches!(e, ClusterError::Hidden(_)) {
        // A 404 to the caller, a refusal to the audit.
        response.extensions_mut().insert(crate::audit::AuditDenied);
    }
    response
}
