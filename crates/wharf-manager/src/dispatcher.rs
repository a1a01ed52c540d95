//! The dispatcher (swarmkit's `manager/dispatcher`): a node's agent long-polls for the complete
//! set of its tasks, answered at once when the set differs from what the agent last saw and
//! otherwise as soon as it changes (the store's change feed wakes the poll, so an assignment
//! reaches its agent within one Raft apply, not at the next heartbeat); the agent reports what
//! it observed, and only of its own tasks. Any manager answers from its replica.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use wharf_api::cluster::{
    Assignment, Assignments, AssignmentsRequest, EngineReport, TaskBlueprint, TaskFile, TaskNetwork, TaskReportWire,
    TaskReports,
};
use wharf_api::docker::RegistryAuth;
use wharf_pki::NodeIdentity;
use wharf_store::{NodeDescription, OrchestrationCommand, Origin, ProposerExt, TaskReport, TaskState};

use crate::{ClusterError, Manager};

/// The longest an assignments poll is held.
pub const LONGEST_POLL: Duration = Duration::from_secs(30);

impl Manager {
    /// The tasks of the calling node, once they differ from `request.known`.
    pub async fn assignments(
        &self,
        identity: &NodeIdentity,
        request: AssignmentsRequest,
    ) -> Result<Assignments, ClusterError> {
        self.known_peer(identity)?;
        if let Some(report) = request.description {
            self.record_description(identity.node_id, report).await?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(request.wait_ms).min(LONGEST_POLL);
        let mut feed = self.store.subscribe();
        let stopped = self.stopping.stopped();
        tokio::pin!(stopped);
        loop {
            feed.borrow_and_update();
            let set = self.node_assignments(identity.node_id)?;
            if set.version != request.known {
                return Ok(set);
            }
            tokio::select! {
                changed = feed.changed() => if changed.is_err() { return Ok(set) },
                _ = tokio::time::sleep_until(deadline) => return Ok(set),
                // This manager stops serving: the agent asks another.
                () = &mut stopped => return Ok(set),
            }
        }
    }

    /// The complete set of node `id`'s tasks.
    pub fn node_assignments(&self, id: u64) -> Result<Assignments, ClusterError> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut tasks = Vec::new();
        let mut credentials: BTreeMap<String, Option<RegistryAuth>> = BTreeMap::new();
        // The files and networks of one service version, resolved (secrets opened) once per
        // answer: its tasks on this node share them.
        let mut resolved: BTreeMap<(String, u64), (Vec<TaskFile>, Vec<TaskNetwork>)> = BTreeMap::new();
        for (task_id, task) in self.store.node_tasks(id)? {
            (task_id.as_str(), task.version).hash(&mut hasher);
            let blueprint: TaskBlueprint = serde_json::from_str(&task.template).unwrap_or_default();
            let registry_auth = match credentials.get(&task.service_id) {
                Some(auth) => auth.clone(),
                None => {
                    let auth = self.registry_auth(&task.service_id)?;
                    credentials.insert(task.service_id.clone(), auth.clone());
                    auth
                }
            };
            // New credentials change the set too (a restart pulls with them).
            registry_auth.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default()).hash(&mut hasher);
            let key = (task.service_id.clone(), task.spec_version);
            if !resolved.contains_key(&key) {
                let files = self.task_files(&blueprint.spec)?;
                let networks = self.task_networks(&blueprint.service_name, &blueprint.spec)?;
                resolved.insert(key.clone(), (files, networks));
            }
            let (files, networks) = resolved.get(&key).cloned().unwrap_or_default();
            // Secrets only for a task that is to run here.
            let files =
                if task.desired == TaskState::Running && !task.status.state.is_terminal() { files } else { Vec::new() };
            tasks.push(Assignment {
                id: task_id,
                service_id: task.service_id,
                slot: task.slot,
                blueprint,
                desired: task.desired.as_str().to_owned(),
                state: task.status.state.as_str().to_owned(),
                registry_auth,
                files,
                networks,
            });
        }
        // Never 0, which an agent sends before its first answer.
        let version = hasher.finish().max(1);
        Ok(Assignments { version, cluster_id: self.cluster_id.clone(), tasks })
    }

    /// Records what the calling node's agent observed of its tasks.
    pub async fn report_tasks(&self, identity: &NodeIdentity, reports: TaskReports) -> Result<(), ClusterError> {
        self.known_peer(identity)?;
        let mut parsed = Vec::with_capacity(reports.reports.len());
        for report in reports.reports {
            parsed.push(parse_report(report)?);
        }
        if parsed.is_empty() {
            return Ok(());
        }
        let command = OrchestrationCommand::ReportTasks { node: identity.node_id, reports: parsed, at: crate::now() };
        self.proposer.propose_by(Origin::node(identity.node_id, None), command).await?;
        Ok(())
    }

    async fn record_description(&self, node: u64, report: EngineReport) -> Result<(), ClusterError> {
        let description = NodeDescription {
            hostname: report.hostname,
            os: report.os,
            architecture: report.architecture,
            nano_cpus: report.nano_cpus,
            memory_bytes: report.memory_bytes,
            engine_version: report.engine_version,
            engine_labels: report.labels,
        };
        if self.store.node_details(node)?.description.as_ref() == Some(&description) {
            return Ok(());
        }
        let command = OrchestrationCommand::SetNodeDescription { id: node, description };
        self.proposer.propose_by(Origin::node(node, None), command).await?;
        Ok(())
    }
}

fn parse_report(report: TaskReportWire) -> Result<TaskReport, ClusterError> {
    let state = TaskState::parse(&report.state)
        .filter(|state| *state > TaskState::Assigned && *state <= TaskState::Rejected)
        .ok_or_else(|| ClusterError::Invalid(format!("a node cannot report the state {:?}", report.state)))?;
    Ok(TaskReport {
        id: report.id,
        state,
        message: report.message,
        err: report.err,
        container_id: report.container_id,
        exit_code: report.exit_code,
        ports: report
            .ports
            .into_iter()
            .map(|p| wharf_store::PublishedPort {
                protocol: p.protocol,
                target: p.target_port,
                published: p.published_port,
            })
            .collect(),
    })
}

impl Manager {
    /// Checks that node `identity` runs (or is to run) a task whose image is in each of
    /// `repositories`, so that the token it gets to pull them grants nothing else.
    pub fn check_node_pulls(&self, identity: &NodeIdentity, repositories: &[String]) -> Result<(), ClusterError> {
        self.known_peer(identity)?;
        let tasks = self.store.node_tasks(identity.node_id)?;
        let named: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| t.desired == TaskState::Running)
            .filter_map(|(_, t)| serde_json::from_str::<TaskBlueprint>(&t.template).ok())
            .filter_map(|b| {
                wharf_api::docker::image_repository(&b.spec.container_spec.image).map(|(_, repo)| repo.to_owned())
            })
            .collect();
        match repositories.iter().find(|repo| !named.contains(repo)) {
            Some(repo) => Err(ClusterError::Forbidden(format!("no task of this node runs an image of {repo}"))),
            None if repositories.is_empty() => Err(ClusterError::Invalid("name the repositories to pull".into())),
            None => Ok(()),
        }
    }
}
