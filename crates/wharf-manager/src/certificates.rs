//! Node certificates: signed from a node's CSR for the role the state holds, at its join and
//! whenever it renews (at a random 50-80% of the lifetime, and to change role). A manager's
//! certificate names its address and host name, so it serves clients under them (whoever has
//! the manager token, or was promoted by an administrator, is trusted with the CA key anyway);
//! a worker's names nothing and is no server certificate (`wharf-pki`), since a worker's
//! address and host name are only what it claimed. A demoted manager gets its worker
//! certificate only once it has left Raft.

use wharf_api::NodeRole;
use wharf_api::cluster::{JoinResponse, RenewRequest};
use wharf_pki::NodeIdentity;
use wharf_store::{ClusterCommand, Origin, ProposerExt};

use crate::{ClusterError, Manager};

impl Manager {
    /// Signs a certificate for `identity` from `csr_pem`, records its expiry, and returns what
    /// the node receives (with the manager keys when the role is manager). `extra_names` are
    /// the names a renewing manager asks to keep.
    pub(crate) async fn issue(
        &self,
        csr_pem: &str,
        identity: &NodeIdentity,
        addr: &str,
        hostname: &str,
        extra_names: &[String],
    ) -> Result<JoinResponse, ClusterError> {
        let names = match identity.role {
            NodeRole::Manager => wharf_pki::node_names(&[addr], hostname, extra_names),
            NodeRole::Worker => Vec::new(),
        };
        let cert_pem = self
            .ca
            .sign_node_csr(csr_pem, identity, &names, self.node_cert_validity)
            .map_err(|e| ClusterError::Invalid(format!("invalid certificate signing request: {e}")))?;
        let not_after =
            wharf_pki::validity(&cert_pem).map(|(_, after)| after.unix_timestamp().max(0) as u64).unwrap_or(0);
        let record = ClusterCommand::SetNodeCert { id: identity.node_id, not_after };
        if let Err(e) = self.proposer.propose_by(Origin::node(identity.node_id, None), record).await {
            return Err(ClusterError::Unavailable(format!("the cluster cannot record the certificate: {e}")));
        }
        Ok(JoinResponse {
            node_id: identity.node_id,
            cluster_id: self.cluster_id.clone(),
            role: identity.role,
            cert_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            manager_secrets: (identity.role == NodeRole::Manager).then(|| self.manager_secrets.clone()),
            blob_storage: (identity.role == NodeRole::Manager).then(|| self.blob_storage.clone()),
        })
    }

    /// A new certificate for the node `identity` names, for the role the state holds.
    pub async fn renew(&self, identity: &NodeIdentity, request: &RenewRequest) -> Result<JoinResponse, ClusterError> {
        let record = self.known_peer(identity)?;
        let role = NodeRole::parse(&record.role)
            .ok_or_else(|| ClusterError::Conflict("the node's recorded role is unknown".into()))?;
        if role == NodeRole::Worker && self.raft_members().contains(&identity.node_id) {
            return Err(ClusterError::Conflict(
                "the node is still a Raft member; it gets a worker certificate once it left".into(),
            ));
        }
        let renewed = NodeIdentity { node_id: identity.node_id, role, cluster_id: self.cluster_id.clone() };
        // A manager keeps the names it has (a worker being promoted has none).
        let names = if record.role == NodeRole::Manager.as_str() { request.names.as_slice() } else { &[] };
        let response = self.issue(&request.csr_pem, &renewed, &record.addr, &record.hostname, names).await?;
        tracing::info!(node_id = identity.node_id, role = role.as_str(), "node certificate issued");
        Ok(response)
    }
}
