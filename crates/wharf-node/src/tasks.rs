//! The task agent of a node (`wharf-agent`), assembled: the node's Docker Engine (retried until
//! it answers) and a client of the managers over the node's mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use wharf_agent::{Connect, DockerExecutor, TaskAgent, TaskAgentConfig};
use wharf_client::Client;
use wharf_pki::RenewableCert;

use crate::Identity;
use crate::agent::EngineSettings;

/// Runs the task agent for as long as the node runs; `managers` follows the heartbeats' list.
pub async fn run_task_agent(
    engine: EngineSettings,
    identity: Identity,
    managers: tokio::sync::watch::Receiver<Vec<String>>,
    cert: Arc<RenewableCert>,
    ca_pem: String,
) {
    let executor = loop {
        match DockerExecutor::connect(engine.docker_host.as_deref(), identity.node_id).await {
            Ok(executor) => break executor,
            Err(e) => {
                tracing::warn!(error = %e, "the task agent cannot reach the Docker Engine; trying again in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    };
    let (cluster_id, ca) = (identity.cluster_id.clone(), ca_pem.clone());
    let connect: Connect = Arc::new(move |list: &[String]| {
        let tls = wharf_pki::renewing_client_config(Arc::clone(&cert), &ca, &cluster_id);
        let client = tls
            .map_err(|e| e.to_string())
            .and_then(|tls| Client::for_node(tls, list, Duration::from_secs(60)).map_err(|e| e.to_string()));
        match client {
            Ok(client) => Some(client.with_patience(Duration::from_secs(10))),
            Err(e) => {
                tracing::warn!(error = %e, "the task agent cannot make its client of the managers");
                None
            }
        }
    });
    tracing::info!(node_id = identity.node_id, "the task agent is running");
    let config =
        TaskAgentConfig { node_id: identity.node_id, managers, connect, certs_d: engine.certs_d.clone(), ca_pem };
    TaskAgent::new(config, Arc::new(executor)).run().await;
}
