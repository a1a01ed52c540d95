//! The cluster's join tokens. A token is made here, sealed with the cluster's secrets key
//! (`wharf_pki::SecretsKey`, which every manager derives from the CA key) and only then
//! proposed, so neither the Raft log, the state, its snapshots nor a copy of the data
//! directory without the CA key hold it in clear. Tokens an earlier version kept in clear are
//! accepted until the leader replaces them ([`seal_legacy_join_tokens`]).

use wharf_api::NodeRole;
use wharf_pki::{Ca, JoinToken, PkiError};
use wharf_store::{ClusterCommand, Origin, ProposeError, Proposer, ProposerExt, Store, StoreError};

/// Why a join token could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error("join token: {0}")]
    Sealing(#[from] PkiError),
    #[error("join token: the sealed token is not text")]
    NotText,
}

fn purpose(role: NodeRole) -> String {
    format!("join-token:{}", role.as_str())
}

/// Makes a new join token for `role`, records it sealed (on behalf of `by`) and returns it:
/// the old token stops working once the command is applied.
pub async fn rotate_join_token(
    proposer: &dyn Proposer,
    ca: &Ca,
    role: NodeRole,
    by: Origin,
) -> Result<String, JoinTokenError> {
    let token = JoinToken::generate(ca.cert_der())?.to_string();
    let sealed = ca.secrets().seal(&purpose(role), token.as_bytes())?;
    proposer.propose_by(by, ClusterCommand::SetSealedJoinToken { role: role.as_str().into(), sealed }).await?;
    Ok(token)
}

/// The join token of `role` as this replica holds it, if there is one.
pub fn join_token(store: &Store, ca: &Ca, role: NodeRole) -> Result<Option<String>, JoinTokenError> {
    if let Some(sealed) = store.sealed_join_token(role.as_str())? {
        let token = ca.secrets().open(&purpose(role), &sealed)?;
        return String::from_utf8(token).map(Some).map_err(|_| JoinTokenError::NotText);
    }
    Ok(store.legacy_join_token(role.as_str())?)
}

/// The role whose current join token is `presented`, compared in constant time.
pub fn role_of(store: &Store, ca: &Ca, presented: &str) -> Option<NodeRole> {
    let mut found = None;
    for role in [NodeRole::Manager, NodeRole::Worker] {
        if let Ok(Some(current)) = join_token(store, ca, role)
            && aws_lc_rs::constant_time::verify_slices_are_equal(current.as_bytes(), presented.as_bytes()).is_ok()
        {
            found = Some(role);
        }
    }
    found
}

/// Replaces the join tokens an earlier version kept in clear in the state by new sealed ones
/// (the old ones stop working). Returns how many were replaced. Only the leader should call
/// it; on a follower the proposal is forwarded, which is harmless.
pub async fn seal_legacy_join_tokens(proposer: &dyn Proposer, store: &Store, ca: &Ca) -> Result<usize, JoinTokenError> {
    let mut replaced = 0;
    for role in [NodeRole::Manager, NodeRole::Worker] {
        if store.legacy_join_token(role.as_str())?.is_some() && store.sealed_join_token(role.as_str())?.is_none() {
            rotate_join_token(proposer, ca, role, Origin::system()).await?;
            tracing::warn!(
                role = role.as_str(),
                "the {} join token was kept in clear by an earlier version: it was replaced; \
                 `wharf token show {}` prints the new one",
                role.as_str(),
                role.as_str()
            );
            replaced += 1;
        }
    }
    Ok(replaced)
}
