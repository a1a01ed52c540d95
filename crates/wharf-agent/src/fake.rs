//! [`FakeExecutor`]: containers in memory, for tests of the agent and of the control plane
//! with many nodes in one process.

use std::sync::Mutex;

use wharf_api::cluster::EngineReport;

use wharf_api::logs::LogOptions;

use crate::executor::{ContainerView, ExecError, Executor, LogLines, RunRequest, Started};

/// The time every fake log line carries.
const STARTED_AT: &str = "2026-01-01T00:00:00.000000000Z";

type FakeContainer = (String, String, String, u64, ContainerView);

#[derive(Debug, Default)]
pub struct FakeExecutor {
    pub report: EngineReport,
    /// (cluster, container name, container id, node, what the engine shows).
    containers: Mutex<Vec<FakeContainer>>,
    next: Mutex<u64>,
}

impl FakeExecutor {
    pub fn new(report: EngineReport) -> FakeExecutor {
        FakeExecutor { report, ..FakeExecutor::default() }
    }

    /// Makes a running container exit with `code`.
    pub fn exit(&self, task_id: &str, code: i64) {
        let mut containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (.., view) in containers.iter_mut().filter(|(.., v)| v.task_id == task_id) {
            view.running = false;
            view.exit_code = Some(code);
        }
    }

    /// How many containers run now.
    pub fn running(&self) -> usize {
        let containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        containers.iter().filter(|(.., v)| v.running).count()
    }
}

#[async_trait::async_trait]
impl Executor for FakeExecutor {
    async fn describe(&self) -> Result<EngineReport, ExecError> {
        Ok(self.report.clone())
    }

    async fn containers(&self, cluster_id: &str, node_id: u64) -> Result<Vec<ContainerView>, ExecError> {
        let containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(containers
            .iter()
            .filter(|(c, _, _, n, _)| c == cluster_id && *n == node_id)
            .map(|(.., v)| v.clone())
            .collect())
    }

    async fn run(&self, request: &RunRequest) -> Result<Started, ExecError> {
        if request.assignment.blueprint.spec.container_spec.image.is_empty() {
            return Err(ExecError::Image("no image".into()));
        }
        let id = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *next += 1;
            format!("fake{next}")
        };
        let view = ContainerView {
            id: id.clone(),
            task_id: request.assignment.id.clone(),
            running: true,
            exit_code: None,
            health: None,
        };
        let mut containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        containers.push((request.cluster_id.clone(), request.container_name(), id.clone(), request.node_id, view));
        Ok(Started { id, ports: Vec::new(), checked: false })
    }

    async fn stop(&self, container_id: &str, _grace_secs: i64) -> Result<(), ExecError> {
        let mut containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (.., view) in containers.iter_mut().filter(|(.., v)| v.id == container_id) {
            view.running = false;
            view.exit_code = Some(137);
        }
        Ok(())
    }

    async fn remove(&self, container_id: &str) -> Result<(), ExecError> {
        let mut containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        containers.retain(|(.., v)| v.id != container_id);
        Ok(())
    }

    /// One line per container, written when it started (`task <id> started`); `follow`
    /// ends with the lines there are.
    async fn logs(&self, task_id: &str, options: &LogOptions) -> Result<LogLines, ExecError> {
        let containers = self.containers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lines: Vec<Result<(u8, Vec<u8>), ExecError>> = containers
            .iter()
            .filter(|(.., v)| v.task_id == task_id)
            .map(|_| Ok((wharf_api::logs::STDOUT, format!("{STARTED_AT} task {task_id} started\n").into_bytes())))
            .collect();
        if lines.is_empty() {
            return Err(ExecError::NoContainer(task_id.to_owned()));
        }
        if let Some(tail) = options.tail {
            lines.drain(..lines.len().saturating_sub(tail as usize));
        }
        Ok(Box::pin(futures::stream::iter(lines)))
    }

    async fn changed(&self) {
        std::future::pending::<()>().await;
    }
}
