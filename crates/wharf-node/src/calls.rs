//! The calls a node makes to the managers as itself: joining with a token (before it has an
//! identity), asking to be added to Raft (a manager that joined), and reading the node list
//! with its own certificate (`wharf node ls --as-node`). The agent's heartbeat and renewal are
//! in `agent.rs`.

use std::time::{Duration, Instant};

use reqwest::Method;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wharf_api::NodeRole;
use wharf_api::cluster::{JoinRequest, JoinResponse, MemberAdded, NodeInfo};
use wharf_client::Client;
use wharf_pki::{CertifiedKey, JoinToken, write_private};

use crate::{DataDir, Identity, NodeError};

/// What a node that is not a member yet needs to join.
pub struct JoinAsk<'a> {
    /// A manager's address (host:port).
    pub manager: &'a str,
    /// The join token, as the administrator gave it.
    pub token: &'a str,
    /// The address the cluster will reach this node at.
    pub advertise: &'a str,
    pub hostname: String,
}

/// Joins the cluster of `ask.manager`: fetches its CA without verification and pins it by the
/// digest in the token (a mismatch is refused: wrong cluster, or someone in between), sends a
/// fresh key's CSR with the token, and keeps what comes back in `dir` (the CA, the certificate
/// and key, the identity, and for a manager the manager keys). From the CSR on, the manager is
/// authenticated by the identity its certificate names, not by the host name it was reached at.
pub async fn join_cluster(dir: &DataDir, ask: &JoinAsk<'_>) -> Result<(Identity, CertifiedKey), NodeError> {
    let manager = ask.manager;
    let token = JoinToken::parse(ask.token)
        .ok_or_else(|| NodeError::Join("that is not a Wharf join token (WHARF-1-<CA digest>-<secret>)".into()))?;
    let unverified = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| NodeError::Join(format!("make an HTTPS client: {e}")))?;
    let fetched =
        async { unverified.get(format!("https://{manager}/ca")).send().await?.error_for_status()?.text().await };
    let ca_pem = fetched.await.map_err(|e| NodeError::Join(format!("fetch the CA of {manager}: {e}")))?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|_| NodeError::Join(format!("the /ca of {manager} is not a certificate")))?;
    if !token.pins(&ca_der) {
        return Err(NodeError::Join(format!(
            "the CA of {manager} does not match the join token: refusing to join (wrong cluster, or someone in between)"
        )));
    }
    let (key_pem, csr_pem) = wharf_pki::new_csr()?;
    let tls = wharf_pki::joining_client_config(&ca_pem)?;
    let mut client = Client::for_node(tls, &[manager.to_owned()], Duration::from_secs(30))?;
    let request = JoinRequest {
        token: ask.token.to_owned(),
        csr_pem,
        hostname: ask.hostname.clone(),
        advertise: ask.advertise.to_owned(),
    };
    let joined: JoinResponse = client
        .call(Method::POST, "/cluster/join", Some(&request))
        .await
        .map_err(|e| NodeError::Join(format!("{manager} refused the join: {e}")))?;
    wharf_pki::create_private_dir(&dir.pki())?;
    if let Some(secrets) = &joined.manager_secrets {
        dir.save_manager_secrets(secrets)?;
    }
    if let Some(location) = &joined.blob_storage {
        crate::Storage::adopt(dir, location)?;
    }
    write_private(&dir.ca_cert(), &joined.ca_pem)?;
    let identity = Identity {
        node_id: joined.node_id,
        cluster_id: joined.cluster_id,
        role: joined.role,
        advertise: ask.advertise.to_owned(),
        managers: vec![manager.to_owned()],
    };
    let key = CertifiedKey::from_pems(joined.cert_pem, key_pem)?;
    dir.save_identity(&identity, &key)?;
    Ok((identity, key))
}

/// Asks the cluster to add this manager to Raft (learner, then voter), following redirects to
/// the leader and retrying for up to a minute: a refusal can be passing too (the leader's
/// replica may not have this node's new role yet).
pub async fn ask_to_be_added(via: &str, tls: rustls::ClientConfig) -> Result<(), NodeError> {
    const PATIENCE: Duration = Duration::from_secs(60);
    let deadline = Instant::now() + PATIENCE;
    let mut client = Client::for_node(tls, &[via.to_owned()], Duration::from_secs(30))?.with_patience(PATIENCE);
    loop {
        match client.call::<(), MemberAdded>(Method::POST, "/cluster/members", None).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => tracing::warn!(error = %e, "joining raft: not yet"),
            Err(e) => return Err(NodeError::Join(format!("could not join raft through {via} within a minute: {e}"))),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node list, asked with the certificate of the node whose data directory is `dir`: no
/// account or login needed on the machine that runs it. A manager asks itself first; a worker
/// asks the managers it last heard of, in turn (any manager answers, and a refusal, for a
/// removed node or another cluster, is the same from every manager).
pub async fn nodes_as_this_node(dir: &DataDir) -> Result<Vec<NodeInfo>, NodeError> {
    let (identity, key) = dir.load_identity()?.ok_or_else(|| {
        NodeError::Start(format!("{} holds no node identity (node/identity.json)", dir.root().display()))
    })?;
    let ca_pem = dir.ca_pem()?;
    let tls = wharf_pki::node_client_config(&key, &ca_pem, &identity.cluster_id)?;
    let mut targets = Vec::new();
    if identity.role == NodeRole::Manager {
        targets.push(identity.advertise.clone());
    }
    targets.extend(identity.managers.iter().filter(|m| **m != identity.advertise).cloned());
    let mut client = Client::for_node(tls, &targets, Duration::from_secs(10))?;
    client
        .call::<(), Vec<NodeInfo>>(Method::GET, "/cluster/nodes", None)
        .await
        .map_err(NodeError::call("list the nodes"))
}
