//! Joining the cluster: a join token and a certificate signing request buy a node its
//! identity (an id from the state's counter, never reused) and its certificate (and, to a
//! manager, the keys every manager holds). Everything in the request is checked before the
//! node is recorded, so a refused join leaves nothing behind; one source address may try
//! [`crate::JOIN_LIMITS`] joins in a burst.

use wharf_api::NodeRole;
use wharf_api::cluster::{JoinRequest, JoinResponse};
use wharf_pki::{JoinToken, NodeIdentity};
use wharf_store::{Actor, ClusterCommand, Origin, Outcome, ProposerExt};

use crate::{ClusterError, Manager};

impl Manager {
    /// Admits the node that sent `request` from the address `source`.
    pub async fn join(&self, source: &str, request: &JoinRequest) -> Result<JoinResponse, ClusterError> {
        if !self.join_limiter.try_take(source, crate::now_ms()) {
            return Err(ClusterError::TooManyRequests(
                "too many join attempts from this address; try again later".into(),
            ));
        }
        let role = self.admit(request)?;
        let add = ClusterCommand::AddNode {
            role: role.as_str().into(),
            hostname: request.hostname.clone(),
            addr: request.advertise.clone(),
            at: crate::now(),
        };
        let node_id =
            match self.proposer.propose_by(Origin { actor: Actor::System, source: Some(source.into()) }, add).await {
                Ok(Outcome::NodeAdded { id }) => id,
                Ok(other) => return Err(ClusterError::Internal(format!("unexpected outcome {other:?}"))),
                Err(e) => return Err(ClusterError::Unavailable(format!("the cluster cannot add a node now: {e}"))),
            };
        let identity = NodeIdentity { node_id, role, cluster_id: self.cluster_id.clone() };
        let issued = self.issue(&request.csr_pem, &identity, &request.advertise, &request.hostname, &[]).await;
        if issued.is_err() {
            // The request was checked before the node was recorded, so this is rare (no
            // quorum for the certificate's record): the node it would have been goes again.
            if let Err(e) = self.proposer.propose(ClusterCommand::RemoveNode { id: node_id }).await {
                tracing::warn!(node_id, error = %e, "removing the node of a failed join failed");
            }
        } else {
            tracing::info!(node_id, role = role.as_str(), addr = %request.advertise, "node joined");
        }
        issued
    }

    /// The role a join request's token gives, once everything in the request has been checked.
    fn admit(&self, request: &JoinRequest) -> Result<NodeRole, ClusterError> {
        let token = JoinToken::parse(&request.token)
            .ok_or_else(|| ClusterError::Invalid("malformed join token (WHARF-1-<CA digest>-<secret>)".into()))?;
        if !token.pins(self.ca.cert_der()) {
            return Err(ClusterError::Unauthorized("the join token is for another cluster's CA".into()));
        }
        let role = crate::join_tokens::role_of(&self.store, &self.ca, &request.token).ok_or_else(|| {
            ClusterError::Unauthorized("the join token is not valid (it may have been rotated)".into())
        })?;
        if !wharf_api::valid_hostname(&request.hostname) {
            let shown: String = request.hostname.chars().take(100).collect();
            return Err(ClusterError::Invalid(format!(
                "host name {shown:?} is not an RFC 1123 name (letters, digits, hyphens, dots)"
            )));
        }
        wharf_api::parse_advertise(&request.advertise)
            .map_err(|e| ClusterError::Invalid(format!("invalid advertise address: {e}")))?;
        wharf_pki::check_csr(&request.csr_pem)
            .map_err(|e| ClusterError::Invalid(format!("invalid certificate signing request: {e}")))?;
        Ok(role)
    }
}
