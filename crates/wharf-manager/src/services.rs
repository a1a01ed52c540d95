//! The Docker-compatible control calls (swarmkit's `manager/controlapi`): services, tasks and
//! nodes as the Docker Engine API shows them, for a caller the edge authenticated. Each call
//! asks the caller's grants about the object's collection (`crate::access`): a service or
//! task the caller may not view is not found, one they may view but not change is refused.

use std::collections::BTreeMap;

use wharf_api::cluster::TaskBlueprint;
use wharf_api::docker::{self, RegistryAuth, ServiceSpec};
use wharf_store::{
    OrchestrationCommand, Origin, ProposerExt, Refusal, ServiceRecord, TaskRecord, TaskState, UpdateRecord,
};

use wharf_auth::rbac::Permission;

use crate::access::Access;
use crate::control::new_object_id;
use crate::orchestrator::{NodeView, parse_spec};
use crate::{ClusterError, Manager};

/// Who is calling, as the edge authenticated them.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
    pub origin: Origin,
}

/// What a service's registry credentials are sealed for: that service and nothing else.
fn registry_auth_purpose(service_id: &str) -> String {
    format!("registry-auth:{service_id}")
}

/// The collection of a service.
pub(crate) fn service_collection(record: &ServiceRecord) -> String {
    let labels = parse_spec(record).map(|s| s.labels).unwrap_or_default();
    crate::access::collection_of(&labels, &record.owner)
}

impl Manager {
    /// `POST /services/create`.
    /// `registry_auth`: what `X-Registry-Auth` carried, for images of other registries.
    pub async fn create_service(
        &self,
        caller: &Caller,
        spec: ServiceSpec,
        registry_auth: Option<RegistryAuth>,
    ) -> Result<docker::CreatedResponse, ClusterError> {
        let (mut spec, warnings) = check_spec(spec)?;
        let access = self.access(caller)?;
        let collection = access.place(self, &mut spec.labels, Permission::ServiceCreate)?;
        self.check_references(&access, &spec.task_template)?;
        self.check_networks(&access, &spec.task_template)?;
        check_mounts(&access, &collection, &spec.task_template.container_spec.mounts)?;
        check_capabilities(&access, &collection, &spec.task_template.container_spec)?;
        let id = new_object_id();
        let command = OrchestrationCommand::CreateService {
            id: id.clone(),
            name: spec.name.clone(),
            owner: caller.name.clone(),
            spec: encode(&spec)?,
            task_spec: task_spec(&spec)?,
            at: crate::now(),
        };
        let command = self.with_registry_auth(&id, registry_auth, command)?;
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(service_error)?;
        Ok(docker::CreatedResponse { id, warnings })
    }

    /// `POST /services/{id}/update?version=N`.
    /// Without `registry_auth`, the service keeps the credentials it had.
    pub async fn update_service(
        &self,
        caller: &Caller,
        id_or_name: &str,
        version: u64,
        spec: ServiceSpec,
        registry_auth: Option<RegistryAuth>,
    ) -> Result<docker::UpdateResponse, ClusterError> {
        let access = self.access(caller)?;
        let (id, record) = self.find_service(&access, id_or_name, Permission::ServiceUpdate)?;
        let (mut spec, warnings) = check_spec(spec)?;
        access.keep_or_move(self, &service_collection(&record), &mut spec.labels, Permission::ServiceCreate)?;
        let collection = crate::access::collection_of(&spec.labels, &record.owner);
        self.check_references(&access, &spec.task_template)?;
        self.check_networks(&access, &spec.task_template)?;
        check_mounts(&access, &collection, &spec.task_template.container_spec.mounts)?;
        check_capabilities(&access, &collection, &spec.task_template.container_spec)?;
        let command = OrchestrationCommand::UpdateService {
            id: id.clone(),
            version,
            name: spec.name.clone(),
            spec: encode(&spec)?,
            task_spec: task_spec(&spec)?,
            at: crate::now(),
        };
        let command = self.with_registry_auth(&id, registry_auth, command)?;
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(service_error)?;
        Ok(docker::UpdateResponse { warnings })
    }

    /// `POST /services/{id}/update?version=N&rollback=previous`: the spec before the last
    /// update becomes the spec again, and the service keeps no previous spec (Swarm's
    /// `docker service rollback`).
    pub async fn rollback_service(
        &self,
        caller: &Caller,
        id_or_name: &str,
        version: u64,
    ) -> Result<docker::UpdateResponse, ClusterError> {
        let (id, _) = self.find_service(&self.access(caller)?, id_or_name, Permission::ServiceUpdate)?;
        let command = self.rollback_command(&id, version, "manually requested rollback")?;
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(service_error)?;
        Ok(docker::UpdateResponse { warnings: Vec::new() })
    }

    /// The command that rolls service `id` (at `version`) back to its previous spec.
    pub(crate) fn rollback_command(
        &self,
        id: &str,
        version: u64,
        message: &str,
    ) -> Result<OrchestrationCommand, ClusterError> {
        let record = self.store.service(id)?.ok_or_else(|| ClusterError::NotFound(format!("service {id}")))?;
        let previous = record
            .previous_spec
            .as_deref()
            .and_then(|spec| serde_json::from_str::<ServiceSpec>(spec).ok())
            .ok_or_else(|| ClusterError::Invalid(format!("service {id} has no previous spec to roll back to")))?;
        Ok(OrchestrationCommand::RollbackService {
            id: id.to_owned(),
            version,
            spec: encode(&previous)?,
            task_spec: task_spec(&previous)?,
            message: message.to_owned(),
            at: crate::now(),
        })
    }

    /// `command`, with the registry credentials sealed for service `id` if there are some.
    fn with_registry_auth(
        &self,
        id: &str,
        auth: Option<RegistryAuth>,
        command: OrchestrationCommand,
    ) -> Result<OrchestrationCommand, ClusterError> {
        let Some(auth) = auth.filter(|a| !a.is_empty()) else { return Ok(command) };
        let clear = serde_json::to_vec(&auth).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let sealed = self
            .ca
            .secrets()
            .seal(&registry_auth_purpose(id), &clear)
            .map_err(|e| ClusterError::Internal(format!("sealing registry credentials: {e}")))?;
        Ok(OrchestrationCommand::WithRegistryAuth { sealed, command: Box::new(command) })
    }

    /// The registry credentials of service `id`, opened (`None` when it has none, or when
    /// they cannot be opened: that is logged, and the node pulls without them).
    pub(crate) fn registry_auth(&self, id: &str) -> Result<Option<RegistryAuth>, ClusterError> {
        let Some(sealed) = self.store.service_registry_auth(id)? else { return Ok(None) };
        let opened = self.ca.secrets().open(&registry_auth_purpose(id), &sealed).ok();
        let auth = opened.and_then(|clear| serde_json::from_slice(&clear).ok());
        if auth.is_none() {
            tracing::error!(service = id, "the registry credentials of a service could not be opened");
        }
        Ok(auth)
    }

    /// `DELETE /services/{id}`: its tasks are stopped by their nodes within their grace period.
    pub async fn remove_service(&self, caller: &Caller, id_or_name: &str) -> Result<(), ClusterError> {
        let (id, _) = self.find_service(&self.access(caller)?, id_or_name, Permission::ServiceRemove)?;
        let command = OrchestrationCommand::RemoveService { id, at: crate::now() };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(service_error)?;
        Ok(())
    }

    /// `GET /services/{id}`.
    pub fn inspect_service(&self, caller: &Caller, id_or_name: &str) -> Result<docker::Service, ClusterError> {
        let (id, record) = self.find_service(&self.access(caller)?, id_or_name, Permission::ServiceView)?;
        let mut view = service_view(&id, &record, None);
        view.update_status = self.store.service_update(&id)?.as_ref().map(update_status);
        Ok(view)
    }

    /// `GET /services?filters=&status=`.
    pub fn list_services(
        &self,
        caller: &Caller,
        filters: &BTreeMap<String, Vec<String>>,
        status: bool,
    ) -> Result<Vec<docker::Service>, ClusterError> {
        let tasks = if status { self.store.tasks()? } else { Vec::new() };
        let nodes = crate::control::node_views(self)?;
        let access = self.access(caller)?;
        let mut out = Vec::new();
        for (id, record) in self.store.services()? {
            if !access.allows(Permission::ServiceView, &service_collection(&record))
                || !service_matches(&id, &record, filters)
            {
                continue;
            }
            let counts = status.then(|| service_status(&id, &record, &tasks, &nodes));
            out.push(service_view(&id, &record, counts));
        }
        Ok(out)
    }

    /// The service `id_or_name` names (an id, a name or a unique id prefix), if the caller may
    /// see it (else it is not found) and take `permission` on it (else refused).
    pub(crate) fn find_service(
        &self,
        access: &Access,
        id_or_name: &str,
        permission: Permission,
    ) -> Result<(String, ServiceRecord), ClusterError> {
        let services = self.store.services()?;
        let not_found = || ClusterError::NotFound(format!("service {id_or_name} not found"));
        let (id, record) = find_one(&services, id_or_name, |s| &s.name).ok_or_else(not_found)?;
        access.reach(Permission::ServiceView, permission, &service_collection(record), not_found)?;
        Ok((id.clone(), record.clone()))
    }

    /// `GET /tasks?filters=`.
    pub fn list_tasks(
        &self,
        caller: &Caller,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<docker::Task>, ClusterError> {
        let services: BTreeMap<String, ServiceRecord> = self.store.services()?.into_iter().collect();
        let service_filter: Vec<String> = filters
            .get("service")
            .map(|names| names.iter().map(|n| self.resolve_service_id(&services, n)).collect())
            .unwrap_or_default();
        let access = self.access(caller)?;
        let visible: BTreeMap<&str, bool> = services
            .iter()
            .map(|(id, s)| (id.as_str(), access.allows(Permission::ServiceView, &service_collection(s))))
            .collect();
        let mut out = Vec::new();
        for (id, task) in self.store.tasks()? {
            let Some(service) = services.get(&task.service_id) else { continue };
            if !visible.get(task.service_id.as_str()).copied().unwrap_or(false)
                || !task_matches(&id, &task, service, &service_filter, filters)
            {
                continue;
            }
            out.push(task_view(&id, &task));
        }
        Ok(out)
    }

    fn resolve_service_id(&self, services: &BTreeMap<String, ServiceRecord>, name: &str) -> String {
        if services.contains_key(name) {
            return name.to_owned();
        }
        services.iter().find(|(_, s)| s.name == name).map_or_else(|| name.to_owned(), |(id, _)| id.clone())
    }

    /// `GET /tasks/{id}`.
    pub fn inspect_task(&self, caller: &Caller, id: &str) -> Result<docker::Task, ClusterError> {
        let task = self
            .store
            .task(id)?
            .filter(|t| !t.is_container())
            .ok_or_else(|| ClusterError::NotFound(format!("task {id} not found")))?;
        let access = self.access(caller)?;
        let service = self.store.service(&task.service_id)?;
        let visible = service.is_some_and(|s| access.allows(Permission::ServiceView, &service_collection(&s)));
        if !visible && !caller.admin {
            return Err(ClusterError::Hidden(format!("task {id} not found")));
        }
        Ok(task_view(id, &task))
    }

    /// `GET /nodes` and `GET /nodes/{id}`: the nodes the caller may view.
    pub fn docker_nodes(&self, caller: &Caller) -> Result<Vec<docker::Node>, ClusterError> {
        let infos = self.node_list()?;
        let views = crate::control::node_views(self)?;
        let access = self.access(caller)?;
        let mut out = Vec::new();
        for view in views.iter().filter(|v| !v.record.removed) {
            if !access.allows(Permission::NodeView, &crate::control::collection_of_node(view)) {
                continue;
            }
            let info = infos.iter().find(|i| i.id == view.id);
            out.push(node_view(view, info));
        }
        Ok(out)
    }

    pub fn docker_node(&self, caller: &Caller, id_or_name: &str) -> Result<docker::Node, ClusterError> {
        let nodes = self.docker_nodes(caller)?;
        nodes
            .into_iter()
            .find(|n| n.id == id_or_name || n.description.hostname == id_or_name)
            .ok_or_else(|| ClusterError::NotFound(format!("node {id_or_name} not found")))
    }

    /// `POST /nodes/{id}/update?version=N`: availability, labels (its collection among them)
    /// and role. A new role needs an administrator; the rest `node.update` on the node's
    /// collection (and on the one it moves to).
    pub async fn update_node(
        &self,
        caller: &Caller,
        id_or_name: &str,
        version: Option<u64>,
        spec: docker::NodeSpec,
    ) -> Result<(), ClusterError> {
        let node = self.docker_node(caller, id_or_name)?;
        let access = self.access(caller)?;
        let collection = crate::access::node_collection(&node.spec.labels, &node.spec.role);
        access.require(Permission::NodeUpdate, &collection)?;
        let moved = crate::access::node_collection(&spec.labels, &node.spec.role);
        if moved != collection {
            access.check_exists(self, &moved)?;
            access.require(Permission::NodeUpdate, &moved)?;
        }
        if !spec.role.is_empty() && spec.role != node.spec.role && !caller.admin {
            return Err(ClusterError::Forbidden("only an administrator may change a node's role".into()));
        }
        let id: u64 = node.id.parse().map_err(|_| ClusterError::NotFound(format!("node {id_or_name} not found")))?;
        if !spec.role.is_empty() && spec.role != node.spec.role {
            let role = wharf_api::NodeRole::parse(&spec.role)
                .ok_or_else(|| ClusterError::Invalid(format!("invalid role {:?}", spec.role)))?;
            self.set_role(id, role, caller.origin.clone()).await?;
        }
        let availability = if spec.availability.is_empty() { node.spec.availability } else { spec.availability };
        let command = OrchestrationCommand::SetNodeSpec { id, version, availability, labels: spec.labels };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(service_error)?;
        Ok(())
    }
}

impl Manager {
    /// `DELETE /nodes/{id}`: `node.update` on the node's collection.
    pub async fn remove_docker_node(&self, caller: &Caller, id_or_name: &str) -> Result<(), ClusterError> {
        let node = self.docker_node(caller, id_or_name)?;
        let collection = crate::access::node_collection(&node.spec.labels, &node.spec.role);
        self.access(caller)?.require(Permission::NodeUpdate, &collection)?;
        let id: u64 = node.id.parse().map_err(|_| ClusterError::NotFound(format!("node {id_or_name} not found")))?;
        self.remove_node(id, caller.origin.clone()).await
    }
}

/// Checks a spec the way the engine does before it is recorded, and says what Wharf does not
/// do yet.
fn check_spec(mut spec: ServiceSpec) -> Result<(ServiceSpec, Vec<String>), ClusterError> {
    if spec.name.is_empty() {
        return Err(ClusterError::Invalid("a service needs a name".into()));
    }
    if !valid_service_name(&spec.name) {
        return Err(ClusterError::Invalid(format!(
            "invalid service name {:?}: letters, digits and '-' only, at most 63",
            spec.name
        )));
    }
    if spec.task_template.container_spec.image.is_empty() {
        return Err(ClusterError::Invalid("ContainerSpec: image reference must be provided".into()));
    }
    let mode = &spec.mode;
    if mode.replicated_job.is_some() || mode.global_job.is_some() {
        return Err(ClusterError::Invalid("jobs are not supported by Wharf yet".into()));
    }
    if mode.replicated.is_none() && mode.global.is_none() {
        spec.mode.replicated = Some(docker::Replicated { replicas: Some(1) });
    }
    // `service create` without `--replicas` sends `{"Replicated":{}}`: one replica, and the
    // spec says so (the CLI's progress reads the count back).
    if let Some(replicated) = &mut spec.mode.replicated
        && replicated.replicas.is_none()
    {
        replicated.replicas = Some(1);
    }
    if let Some(placement) = &spec.task_template.placement {
        wharf_scheduler::Constraint::parse_all(&placement.constraints)
            .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        for preference in placement.preferences.iter().filter_map(|p| p.spread.as_ref()) {
            wharf_scheduler::Spread::parse(&preference.spread_descriptor)
                .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        }
    }
    if let Some(endpoint) = &spec.endpoint_spec {
        if endpoint.ports.iter().any(|p| p.publish_mode != "host") {
            return Err(ClusterError::Invalid(
                "ingress publishing (the routing mesh) is not supported by Wharf yet: publish with mode=host".into(),
            ));
        }
        if endpoint.mode.as_deref().is_some_and(|m| m != "vip" && m != "dnsrr") {
            return Err(ClusterError::Invalid(format!("invalid endpoint mode {:?}", endpoint.mode)));
        }
    }
    Ok((spec, Vec::new()))
}

fn valid_service_name(name: &str) -> bool {
    name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
}

/// What a service's tasks are made from: its task template and published ports. Swarm calls
/// a task whose spec differs from it out of date (`_up-to-date`); a new replica count is not.
fn task_spec(spec: &ServiceSpec) -> Result<String, ClusterError> {
    let ports = spec.endpoint_spec.as_ref().map(|e| e.ports.clone()).unwrap_or_default();
    serde_json::to_string(&(&spec.task_template, ports))
        .map_err(|e| ClusterError::Internal(format!("encoding a task spec: {e}")))
}

fn encode(spec: &ServiceSpec) -> Result<String, ClusterError> {
    serde_json::to_string(spec).map_err(|e| ClusterError::Internal(format!("encoding a service spec: {e}")))
}

/// The refusals of the orchestration state, as a caller should see them.
/// Checks a task's mounts: volumes (named or anonymous), bind mounts of an absolute path of
/// the node (only with `host.bind-mount` in the service's collection, which Restricted Control
/// withholds: a bind mount reaches the node's root), tmpfs; each at its own absolute target.
pub(crate) fn check_mounts(
    access: &Access,
    collection: &str,
    mounts: &[docker::MountSpec],
) -> Result<(), ClusterError> {
    let mut targets = std::collections::BTreeSet::new();
    for mount in mounts {
        let invalid =
            |why: &str| ClusterError::Invalid(format!("invalid mount config for type {:?}: {why}", mount.kind));
        if !mount.target.starts_with('/') {
            return Err(invalid("its target must be an absolute path"));
        }
        if !targets.insert(mount.target.as_str()) {
            return Err(invalid(&format!("duplicate mount point: {}", mount.target)));
        }
        match mount.kind.as_str() {
            "volume" => {
                if mount.source.contains('/') {
                    return Err(invalid("a volume is named, not a path (use type=bind for a path)"));
                }
                // Driver options mount what the node holds (its files, devices, shares).
                if mount.reaches_the_node() {
                    access.require(Permission::BindMount, collection)?;
                }
            }
            "bind" => {
                if !mount.source.starts_with('/') {
                    return Err(invalid("its source must be an absolute path of the node"));
                }
                access.require(Permission::BindMount, collection)?;
            }
            "tmpfs" => {
                if !mount.source.is_empty() {
                    return Err(invalid("a tmpfs has no source"));
                }
            }
            other => {
                return Err(ClusterError::Invalid(format!("mounts of type {other:?} are not supported by Wharf yet")));
            }
        }
    }
    Ok(())
}

/// Checks the capabilities a task adds or drops: names as the engine takes them (`NET_ADMIN`,
/// `CAP_NET_ADMIN`, `ALL`); adding any needs `host.capabilities` in the service's collection.
pub(crate) fn check_capabilities(
    access: &Access,
    collection: &str,
    spec: &docker::ContainerSpec,
) -> Result<(), ClusterError> {
    for name in spec.capability_add.iter().chain(&spec.capability_drop) {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        {
            return Err(ClusterError::Invalid(format!("invalid capability {name:?}: e.g. NET_ADMIN or CAP_NET_ADMIN")));
        }
    }
    if !spec.capability_add.is_empty() {
        access.require(Permission::AddCapabilities, collection)?;
    }
    // Shielding a container from the node's OOM killer starves the node instead.
    if spec.oom_score_adj.is_some_and(|adj| adj < 0) {
        access.require(Permission::Privileged, collection)?;
    }
    Ok(())
}

/// Whether `labels` has every `key` or `key=value` of a `label` filter.
pub(crate) fn labels_match(labels: &BTreeMap<String, String>, wanted: &[String]) -> bool {
    wanted.iter().all(|v| match v.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|l| l == val),
        None => labels.contains_key(v.as_str()),
    })
}

/// The object `key` names among `all` (id, record): by id, by name, or by a prefix of one id
/// alone, as Swarm looks objects up.
pub(crate) fn find_one<'a, T>(all: &'a [(String, T)], key: &str, name: impl Fn(&T) -> &str) -> Option<&'a (String, T)> {
    all.iter().find(|(id, _)| id == key).or_else(|| all.iter().find(|(_, t)| name(t) == key)).or_else(|| {
        let mut prefixed = all.iter().filter(|(id, _)| id.starts_with(key));
        prefixed.next().filter(|_| prefixed.next().is_none())
    })
}

fn service_error(e: wharf_store::ProposeError) -> ClusterError {
    match e {
        wharf_store::ProposeError::Refused(refusal) => match refusal {
            Refusal::ServiceNameTaken(name) => ClusterError::Conflict(format!(
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {name} already exists"
            )),
            Refusal::ServiceUnknown(id) => ClusterError::NotFound(format!("service {id} not found")),
            Refusal::VersionOutOfDate { current } => ClusterError::Invalid(format!(
                "rpc error: code = Unknown desc = update out of sequence (the object is at version {current})"
            )),
            Refusal::Invalid(what) => ClusterError::Invalid(format!("invalid {what}")),
            Refusal::ObjectUnknown { kind, id } => ClusterError::Invalid(format!("{kind} {id} not found")),
            other => other.into(),
        },
        other => other.into(),
    }
}

fn service_matches(id: &str, record: &ServiceRecord, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| match key.as_str() {
        "id" => values.iter().any(|v| id.starts_with(v.as_str())),
        "name" => values.iter().any(|v| record.name.starts_with(v.as_str())),
        "label" => labels_match(&parse_spec(record).map(|s| s.labels).unwrap_or_default(), values),
        "mode" => {
            let global = parse_spec(record).is_some_and(|s| s.mode.global.is_some());
            values.iter().any(|v| (v == "global") == global)
        }
        _ => true,
    })
}

fn task_matches(
    id: &str,
    task: &TaskRecord,
    service: &ServiceRecord,
    service_ids: &[String],
    filters: &BTreeMap<String, Vec<String>>,
) -> bool {
    filters.iter().all(|(key, values)| match key.as_str() {
        "service" => service_ids.contains(&task.service_id),
        "id" => values.iter().any(|v| id.starts_with(v.as_str())),
        "node" => values.iter().any(|v| task.node.is_some_and(|n| n.to_string() == *v)),
        "desired-state" => values.iter().any(|v| v == task.desired.as_str()),
        "name" => values.iter().any(|v| task_name(service, task).starts_with(v.as_str())),
        "_up-to-date" => task.spec_version == service.spec_version,
        // A task has its service's labels (`docker stack ps` asks by the stack's).
        "label" => labels_match(&parse_spec(service).map(|s| s.labels).unwrap_or_default(), values),
        _ => true,
    })
}

fn task_name(service: &ServiceRecord, task: &TaskRecord) -> String {
    if task.slot == 0 {
        format!("{}.{}", service.name, task.node.unwrap_or(0))
    } else {
        format!("{}.{}", service.name, task.slot)
    }
}

fn service_status(
    id: &str,
    record: &ServiceRecord,
    tasks: &[(String, TaskRecord)],
    nodes: &[NodeView],
) -> docker::ServiceStatus {
    let mut status = docker::ServiceStatus::default();
    let of_service = tasks.iter().filter(|(_, t)| t.service_id == id);
    for (_, task) in of_service {
        if task.desired == TaskState::Running && task.status.state == TaskState::Running {
            status.running_tasks += 1;
        }
        if task.status.state == TaskState::Complete {
            status.completed_tasks += 1;
        }
    }
    let spec = parse_spec(record).unwrap_or_default();
    status.desired_tasks = match (&spec.mode.replicated, &spec.mode.global) {
        (_, Some(_)) => nodes
            .iter()
            .filter(|n| !n.record.removed && n.record.state != "down" && n.details.availability != "drain")
            .count() as u64,
        (Some(replicated), None) => replicated.replicas.unwrap_or(1),
        (None, None) => 1,
    };
    status
}

/// Where the last update of a service stands, as the Docker API shows it.
fn update_status(update: &UpdateRecord) -> docker::UpdateStatus {
    docker::UpdateStatus {
        state: update.state.as_str().into(),
        started_at: docker::rfc3339(update.started),
        completed_at: if update.completed > 0 { docker::rfc3339(update.completed) } else { String::new() },
        message: update.message.clone(),
    }
}

fn service_view(id: &str, record: &ServiceRecord, status: Option<docker::ServiceStatus>) -> docker::Service {
    let spec = parse_spec(record).unwrap_or_default();
    let previous_spec = record.previous_spec.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let endpoint_spec = spec.endpoint_spec.clone().unwrap_or_default();
    docker::Service {
        id: id.to_owned(),
        version: docker::ObjectVersion { index: record.version },
        created_at: docker::rfc3339(record.created),
        updated_at: docker::rfc3339(record.updated),
        endpoint: docker::Endpoint { ports: endpoint_spec.ports.clone(), spec: endpoint_spec },
        spec,
        previous_spec,
        service_status: status,
        update_status: None,
    }
}

fn task_view(id: &str, task: &TaskRecord) -> docker::Task {
    let blueprint: TaskBlueprint = serde_json::from_str(&task.template).unwrap_or_default();
    let container_status = (!task.status.container_id.is_empty()).then(|| docker::ContainerStatus {
        container_id: task.status.container_id.clone(),
        pid: 0,
        exit_code: task.status.exit_code,
    });
    let ports = if task.status.state == TaskState::Running {
        task.status
            .ports
            .iter()
            .map(|p| docker::PortConfig {
                name: String::new(),
                protocol: p.protocol.clone(),
                target_port: p.target,
                published_port: p.published,
                publish_mode: "host".into(),
            })
            .collect()
    } else {
        Vec::new()
    };
    docker::Task {
        id: id.to_owned(),
        version: docker::ObjectVersion { index: task.version },
        created_at: docker::rfc3339(task.created),
        updated_at: docker::rfc3339(task.updated),
        labels: BTreeMap::new(),
        spec: blueprint.spec,
        service_id: task.service_id.clone(),
        slot: (task.slot != 0).then_some(task.slot),
        node_id: task.node.map(|n| n.to_string()).unwrap_or_default(),
        status: docker::TaskStatus {
            timestamp: docker::rfc3339(task.status.at),
            state: task.status.state.as_str().to_owned(),
            message: task.status.message.clone(),
            err: task.status.err.clone(),
            container_status,
            port_status: docker::PortStatus { ports },
        },
        desired_state: task.desired.as_str().to_owned(),
    }
}

fn node_view(view: &NodeView, info: Option<&wharf_api::cluster::NodeInfo>) -> docker::Node {
    let description = view.details.description.clone().unwrap_or_default();
    let manager = view.record.role == "manager";
    let state = match view.record.state.as_str() {
        "ready" => "ready",
        "down" => "down",
        _ => "unknown",
    };
    let host = view.record.addr.rsplit_once(':').map_or(view.record.addr.as_str(), |(host, _)| host);
    docker::Node {
        id: view.id.to_string(),
        version: docker::ObjectVersion { index: view.details.version.max(1) },
        created_at: docker::rfc3339(view.record.created),
        updated_at: docker::rfc3339(view.record.state_since.max(view.record.created)),
        spec: docker::NodeSpec {
            labels: view.details.labels.clone(),
            role: view.record.role.clone(),
            availability: view.details.availability.clone(),
        },
        description: docker::NodeDescription {
            hostname: if description.hostname.is_empty() { view.record.hostname.clone() } else { description.hostname },
            platform: docker::Platform { architecture: description.architecture, os: description.os },
            resources: docker::Resources { nano_cpus: description.nano_cpus, memory_bytes: description.memory_bytes },
            engine: docker::EngineDescription {
                engine_version: description.engine_version,
                labels: description.engine_labels,
            },
        },
        status: docker::NodeStatus { state: state.into(), message: String::new(), addr: host.to_owned() },
        manager_status: manager.then(|| docker::ManagerStatus {
            leader: info.is_some_and(|i| i.leader),
            reachability: match info.map(|i| i.reachability) {
                Some(wharf_api::cluster::Reachability::Unreachable) => "unreachable".into(),
                _ => "reachable".into(),
            },
            addr: view.record.addr.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_volumes_binds_of_absolute_paths_by_full_control_or_tmpfs_each_at_its_own_target() {
        let caller = |admin| Access::for_test("u", admin);
        let mount = |kind: &str, source: &str, target: &str| docker::MountSpec {
            kind: kind.into(),
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        let good = [mount("volume", "data", "/data"), mount("volume", "", "/anon"), mount("tmpfs", "", "/scratch")];
        let mine = "/Shared/Private/u";
        assert!(check_mounts(&caller(false), mine, &good).is_ok());
        let bind = [mount("bind", "/srv/site", "/site")];
        assert!(check_mounts(&caller(true), mine, &bind).is_ok());
        let refused = check_mounts(&caller(false), mine, &bind);
        assert!(matches!(refused, Err(ClusterError::Forbidden(_))), "Restricted Control, the default role");
        for bad in [
            mount("bind", "relative", "/x"),
            mount("volume", "/a/path", "/x"),
            mount("tmpfs", "src", "/x"),
            mount("volume", "data", "relative"),
            mount("npipe", "", "/x"),
        ] {
            let refused = check_mounts(&caller(true), mine, std::slice::from_ref(&bad));
            assert!(matches!(refused, Err(ClusterError::Invalid(_))), "{bad:?}");
        }
        let twice = [mount("volume", "a", "/d"), mount("tmpfs", "", "/d")];
        assert!(matches!(check_mounts(&caller(true), mine, &twice), Err(ClusterError::Invalid(_))));
    }
}
