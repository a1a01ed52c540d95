//! Client bundles (UCP's `/api/clientbundle`): a user certificate signed by the cluster CA,
//! recorded under its serial with the account's id and credentials epoch. A request with one
//! is its user's as long as the record is there and the account is as it was: a new password,
//! a disable or a delete ends every bundle of the user at once, and a user can end one.

use wharf_pki::{CertifiedKey, UserCertificate};
use wharf_store::{AccountsCommand, Origin, ProposerExt};

use crate::services::Caller;
use crate::{ClusterError, Manager};

/// How long a bundle's certificate is valid.
pub const BUNDLE_VALIDITY: wharf_pki::time::Duration = wharf_pki::time::Duration::days(365);

/// One bundle, as `wharf user sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub id: String,
    pub user: String,
    pub label: String,
    pub created: u64,
    pub expires: u64,
}

impl Manager {
    /// Issues a bundle's certificate for `user` and records it.
    pub async fn issue_bundle(
        &self,
        user: &str,
        label: &str,
        by: Origin,
    ) -> Result<(CertifiedKey, String), ClusterError> {
        let (key, id) = self
            .ca
            .issue_user(user, &self.cluster_id, BUNDLE_VALIDITY)
            .map_err(|e| ClusterError::Internal(format!("signing a user certificate: {e}")))?;
        let expires = key.not_after.unix_timestamp().max(0) as u64;
        let command = AccountsCommand::CreateBundle {
            id: id.clone(),
            user: user.to_owned(),
            label: label.to_owned(),
            created: crate::now(),
            expires,
        };
        self.proposer.propose_by(by, command).await.map_err(|e| match e {
            wharf_store::ProposeError::Refused(refusal) => ClusterError::Forbidden(refusal.to_string()),
            other => other.into(),
        })?;
        Ok((key, id))
    }

    /// The caller a verified user certificate names, if its bundle still holds.
    pub fn bundle_caller(&self, cert: &UserCertificate, source: Option<&str>) -> Result<Caller, ClusterError> {
        let refused = || {
            ClusterError::Unauthorized("this client bundle is not valid (revoked, expired, or its user changed)".into())
        };
        if cert.cluster_id != self.cluster_id {
            return Err(refused());
        }
        let bundle = self.store.bundle(&cert.bundle)?.ok_or_else(refused)?;
        let user = self.store.user(&bundle.user)?.ok_or_else(refused)?;
        let current = bundle.user == cert.user && user.id == bundle.user_id && user.epoch == bundle.epoch;
        if !current || user.disabled || bundle.expires <= crate::now() {
            return Err(refused());
        }
        Ok(Caller { name: bundle.user.clone(), admin: user.admin, origin: Origin::user(&bundle.user, source) })
    }

    /// The bundles of `user` (every user's for `None`).
    pub fn bundles(&self, user: Option<&str>) -> Result<Vec<BundleInfo>, ClusterError> {
        Ok(self
            .store
            .bundles()?
            .into_iter()
            .filter(|(_, b)| user.is_none_or(|u| b.user == u))
            .map(|(id, b)| BundleInfo { id, user: b.user, label: b.label, created: b.created, expires: b.expires })
            .collect())
    }

    /// Ends bundle `id`; a user may end only their own.
    pub async fn revoke_bundle(&self, id: &str, caller: &Caller) -> Result<(), ClusterError> {
        let bundle = self.store.bundle(id)?.ok_or_else(|| ClusterError::NotFound("no such bundle".into()))?;
        if !caller.admin && bundle.user != caller.name {
            return Err(ClusterError::NotFound("no such bundle".into()));
        }
        self.proposer.propose_by(caller.origin.clone(), AccountsCommand::DeleteBundle { id: id.to_owned() }).await?;
        Ok(())
    }
}
