//! The node agent, on every node: a heartbeat to the leader each period, certificate renewal
//! at a random 50-80% of the certificate's lifetime, and role changes. When a heartbeat says the
//! cluster wants this node in another role (and, for a demoted manager, that it has left Raft),
//! the agent gets a certificate for the new role, saves the identity and returns, and the
//! process restarts into the role.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use wharf_api::NodeRole;
use wharf_api::cluster::{HeartbeatReply, JoinResponse, RenewRequest};
use wharf_client::Client;
use wharf_pki::time::OffsetDateTime;
use wharf_pki::{CertifiedKey, RenewableCert};

use crate::{DataDir, Identity, NodeError};

/// Until a manager says otherwise.
const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

pub struct Agent {
    pub data_dir: DataDir,
    pub identity: Identity,
    pub key: CertifiedKey,
    /// The certificate this node presents, as a server and as a client.
    pub cert: Arc<RenewableCert>,
    pub ca_pem: String,
    /// Where tasks run; `None`: this node runs none.
    pub engine: Option<EngineSettings>,
}

/// The node's container engine, as the task agent reaches it.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// `unix:///path`, `tcp://host:port`, or the local socket when `None` (`--docker-host`).
    pub docker_host: Option<String>,
    /// The engine's `certs.d` folder, where the agent puts the cluster CA for each manager's
    /// address before it pulls from the cluster's registry (`/etc/docker/certs.d`).
    pub certs_d: std::path::PathBuf,
}

impl Agent {
    /// Runs until the node must restart in another role.
    pub async fn run(mut self) -> Result<(), NodeError> {
        // The task agent runs beside the heartbeats and ends with them (a role change); it
        // follows the managers' list the heartbeats keep.
        let (managers, list) = tokio::sync::watch::channel(self.identity.managers.clone());
        let _tasks = self.engine.as_ref().map(|engine| {
            AbortOnDrop(tokio::spawn(crate::tasks::run_task_agent(
                engine.clone(),
                self.identity.clone(),
                list,
                Arc::clone(&self.cert),
                self.ca_pem.clone(),
            )))
        });
        let tls = wharf_pki::renewing_client_config(Arc::clone(&self.cert), &self.ca_pem, &self.identity.cluster_id)?;
        // A heartbeat tries every known manager, following the leader, for about one period.
        let mut client =
            Client::for_node(tls, &self.identity.managers, Duration::from_secs(10))?.with_patience(DEFAULT_PERIOD);
        let mut renew_at = self.renewal_time();
        let mut period = DEFAULT_PERIOD;
        let mut failures = 0u32;
        loop {
            match client.call::<(), HeartbeatReply>(Method::POST, "/cluster/heartbeat", None).await {
                Ok(reply) => {
                    failures = 0;
                    period = Duration::from_millis(reply.period_ms.max(50));
                    if self.remember_managers(&reply.managers)? {
                        client = self.client_for(&client)?;
                        managers.send_replace(self.identity.managers.clone());
                    }
                    let demoting = reply.role == NodeRole::Worker && reply.raft_member;
                    if reply.role != self.identity.role && !demoting {
                        tracing::info!(from = %self.identity.role, to = %reply.role, "the cluster changed this node's role");
                        self.renew(&mut client).await?;
                        return Ok(());
                    }
                    if OffsetDateTime::now_utc() >= renew_at {
                        match self.renew(&mut client).await {
                            Ok(()) => renew_at = self.renewal_time(),
                            Err(e) => tracing::warn!(error = %e, "renewing this node's certificate failed"),
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    fn renewal_time(&self) -> OffsetDateTime {
        wharf_pki::node_renewal_time(&self.key.cert_pem).unwrap_or_else(|_| OffsetDateTime::now_utc())
    }

    /// A client for the managers this node knows now, starting with the one `old` used last.
    fn client_for(&self, old: &Client) -> Result<Client, NodeError> {
        let tls = wharf_pki::renewing_client_config(Arc::clone(&self.cert), &self.ca_pem, &self.identity.cluster_id)?;
        let mut managers = vec![old.target().to_owned()];
        managers.extend(self.identity.managers.iter().filter(|m| *m != old.target()).cloned());
        Ok(Client::for_node(tls, &managers, Duration::from_secs(10))?.with_patience(DEFAULT_PERIOD))
    }

    /// Keeps the managers' addresses in the identity, so that a restarted node (also one whose
    /// command line names no manager) finds the cluster. Returns whether they changed.
    fn remember_managers(&mut self, managers: &[String]) -> Result<bool, NodeError> {
        let mut known = managers.to_vec();
        if self.identity.role == NodeRole::Manager && !known.contains(&self.identity.advertise) {
            known.push(self.identity.advertise.clone());
        }
        known.sort();
        if known.is_empty() || known == self.identity.managers {
            return Ok(false);
        }
        self.identity.managers = known;
        self.data_dir.save_identity(&self.identity, &self.key)?;
        Ok(true)
    }

    /// Gets a new certificate from the leader (the manager `client` reached last, following it)
    /// for the role the cluster holds for this node, and installs it: in the data directory
    /// (with the manager keys when the role is manager) and for new connections.
    async fn renew(&mut self, client: &mut Client) -> Result<(), NodeError> {
        let (key_pem, csr_pem) = wharf_pki::new_csr()?;
        // A manager keeps the names its certificate has (`--san`, the listen address).
        let names = wharf_pki::cert_names(&self.key.cert_pem).unwrap_or_default();
        let request = RenewRequest { csr_pem, names };
        let renewed: JoinResponse = client
            .call(Method::POST, "/cluster/renew", Some(&request))
            .await
            .map_err(NodeError::call("renew this node's certificate"))?;
        if let Some(secrets) = &renewed.manager_secrets {
            self.data_dir.save_manager_secrets(secrets)?;
        }
        if let Some(location) = &renewed.blob_storage {
            crate::Storage::adopt(&self.data_dir, location)?;
        }
        let key = CertifiedKey::from_pems(renewed.cert_pem, key_pem)?;
        self.identity.role = renewed.role;
        self.data_dir.save_identity(&self.identity, &key)?;
        self.cert.install(&key, &self.ca_pem)?;
        tracing::info!(role = %self.identity.role, not_after = %key.not_after, "this node's certificate was renewed");
        self.key = key;
        Ok(())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
