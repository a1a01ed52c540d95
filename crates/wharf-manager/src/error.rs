//! What a control-plane call can come to besides its answer, mapped to a protocol once, at the
//! edge (`wharf-http`).

use wharf_store::{ProposeError, Refusal, StoreError};

/// Why a control-plane call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Only the leader answers this; `leader` is its address, when one is known.
    #[error("ask the leader")]
    NotLeader { leader: Option<String> },
    /// No leader is known now (an election or a handover is running): try again.
    #[error("no leader is known now; try again")]
    NoLeader,
    /// The caller has no credential this call needs (a join token that is not valid).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not make this call (not a node of this cluster, removed, not a manager).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Not found, to the caller: it exists, but they may not see it (answered as not found, so
    /// that they learn nothing; recorded as a refusal).
    #[error("{0}")]
    Hidden(String),
    /// The call contradicts the cluster's state (the last manager, a role it cannot take now).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed (a bad address, host name or certificate request).
    #[error("{0}")]
    Invalid(String),
    /// The caller asked too often.
    #[error("{0}")]
    TooManyRequests(String),
    /// The cluster cannot do it now (no quorum, no leader): try again.
    #[error("{0}")]
    Unavailable(String),
    /// A fault on this manager, logged where it is mapped.
    #[error("{0}")]
    Internal(String),
}

impl From<Refusal> for ClusterError {
    fn from(refusal: Refusal) -> ClusterError {
        match refusal {
            Refusal::NodeUnknown(_) => ClusterError::NotFound(refusal.to_string()),
            Refusal::LastManager => ClusterError::Conflict(refusal.to_string()),
            // Swarm's words, which the CLI shows as they are.
            Refusal::NameTaken { kind, name } => {
                ClusterError::Conflict(format!("rpc error: code = AlreadyExists desc = {kind} {name} already exists"))
            }
            Refusal::ObjectUnknown { kind, id } => ClusterError::NotFound(format!("{kind} {id} not found")),
            Refusal::VersionOutOfDate { current } => ClusterError::Invalid(format!(
                "rpc error: code = Unknown desc = update out of sequence (the object is at version {current})"
            )),
            Refusal::InUse { kind, name, services } => ClusterError::Invalid(format!(
                "rpc error: code = InvalidArgument desc = {kind} '{name}' is in use by the following service: {}",
                services.join(", ")
            )),
            other => ClusterError::Internal(format!("unexpected refusal: {other}")),
        }
    }
}

impl From<ProposeError> for ClusterError {
    fn from(e: ProposeError) -> ClusterError {
        match e {
            ProposeError::Refused(refusal) => refusal.into(),
            ProposeError::Unavailable(why) => ClusterError::Unavailable(why),
            ProposeError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ClusterError {
    fn from(e: StoreError) -> ClusterError {
        match e {
            StoreError::Refused(refusal) => refusal.into(),
            other => ClusterError::Internal(other.to_string()),
        }
    }
}
