//! The node agent, on every node: a heartbeat to the leader each period, certificate renewal
//! at a random 50-80% of the certificate's lifetime, and role changes. When a heartbeat says the
//! cluster wants this node in another role (and, for a demoted manager, that it has left Raft),
//! the agent gets a certificate for the new role, saves the identity and returns, and the
//! process restarts into the role.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use wharf_http::{HeartbeatReply, JoinResponse, RenewRequest};
use wharf_pki::time::OffsetDateTime;
use wharf_pki::{CertifiedKey, RenewableCert};

use crate::cluster::{Identity, save_identity, save_manager_secrets};

/// Until a manager says otherwise.
const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

pub struct Agent {
    pub data_dir: PathBuf,
    pub identity: Identity,
    pub key: CertifiedKey,
    /// The certificate this node presents, as a server and as a client.
    pub cert: Arc<RenewableCert>,
    pub ca_pem: String,
}

impl Agent {
    /// Runs until the node must restart in another role.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let tls = wharf_pki::renewing_client_config(Arc::clone(&self.cert), &self.ca_pem, &self.identity.cluster_id)?;
        let client = reqwest::Client::builder().use_preconfigured_tls(tls).timeout(Duration::from_secs(10)).build()?;
        let mut renew_at = self.renewal_time();
        let mut period = DEFAULT_PERIOD;
        let mut failures = 0u32;
        loop {
            match self.heartbeat(&client).await {
                Ok((leader, reply)) => {
                    failures = 0;
                    period = Duration::from_millis(reply.period_ms.max(50));
                    self.remember_managers(&reply.managers)?;
                    let demoting = reply.role == "worker" && reply.raft_member;
                    if reply.role != self.identity.role && !demoting {
                        tracing::info!(from = %self.identity.role, to = %reply.role, "the cluster changed this node's role");
                        self.renew(&client, &leader).await?;
                        return Ok(());
                    }
                    if OffsetDateTime::now_utc() >= renew_at {
                        match self.renew(&client, &leader).await {
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

    /// Sends a heartbeat to the managers this node knows, following a redirect to the leader;
    /// returns the leader's address and its answer.
    async fn heartbeat(&self, client: &reqwest::Client) -> anyhow::Result<(String, HeartbeatReply)> {
        let mut last_error = anyhow::anyhow!("no manager is known");
        for first in &self.identity.managers {
            let mut target = first.clone();
            for _ in 0..3 {
                let response = match client.post(format!("https://{target}/cluster/heartbeat")).send().await {
                    Ok(r) => r,
                    Err(e) => {
                        last_error = anyhow::Error::from(e).context(format!("heartbeat to {target}"));
                        break;
                    }
                };
                let status = response.status();
                if status == reqwest::StatusCode::MISDIRECTED_REQUEST {
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    match body["leader"].as_str() {
                        Some(leader) => target = leader.to_owned(),
                        None => {
                            last_error = anyhow::anyhow!("{target} knows no leader");
                            break;
                        }
                    }
                    continue;
                }
                if !status.is_success() {
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    last_error = anyhow::anyhow!("{target}: {status}: {}", body["message"].as_str().unwrap_or(""));
                    break;
                }
                return Ok((target, response.json().await?));
            }
        }
        Err(last_error)
    }

    /// Keeps the managers' addresses in the identity, so that a restarted node (also one whose
    /// command line names no manager) finds the cluster.
    fn remember_managers(&mut self, managers: &[String]) -> anyhow::Result<()> {
        let mut known = managers.to_vec();
        if self.identity.role == "manager" && !known.contains(&self.identity.advertise) {
            known.push(self.identity.advertise.clone());
        }
        known.sort();
        if !known.is_empty() && known != self.identity.managers {
            self.identity.managers = known;
            save_identity(&self.data_dir, &self.identity, &self.key)?;
        }
        Ok(())
    }

    /// Gets a new certificate from `manager` for the role the cluster holds for this node, and
    /// installs it: in the data directory (with the manager keys when the role is manager) and
    /// for new connections.
    async fn renew(&mut self, client: &reqwest::Client, manager: &str) -> anyhow::Result<()> {
        let (key_pem, csr_pem) = wharf_pki::new_csr()?;
        // A manager keeps the names its certificate has (`--san`, the listen address).
        let names = wharf_pki::cert_names(&self.key.cert_pem).unwrap_or_default();
        let request = RenewRequest { csr_pem, names };
        let response = client.post(format!("https://{manager}/cluster/renew")).json(&request).send().await?;
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            bail!("{manager} refused the renewal ({status}): {}", body["message"].as_str().unwrap_or(""));
        }
        let renewed: JoinResponse = response.json().await.context("read the renewal")?;
        if let Some(secrets) = &renewed.manager_secrets {
            save_manager_secrets(&self.data_dir, secrets)?;
        }
        let key = CertifiedKey::from_pems(renewed.cert_pem, key_pem)?;
        self.identity.role = renewed.role;
        save_identity(&self.data_dir, &self.identity, &key)?;
        self.cert.install(&key, &self.ca_pem)?;
        tracing::info!(role = %self.identity.role, not_after = %key.not_after, "this node's certificate was renewed");
        self.key = key;
        Ok(())
    }
}
