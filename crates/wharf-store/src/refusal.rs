//! [`Refusal`]: why the state refused a command. A refusal is decided by the command and the
//! state alone, so every manager decides the same one; it writes nothing, and it crosses the
//! network unchanged (a follower's proposal answered by the leader).

use serde::{Deserialize, Serialize};
use wharf_api::Digest;

/// A command the state refused; nothing was written. Grouped by the domain whose `apply`
/// decides it. The variants' order is part of the wire format between managers (postcard
/// numbers them): add new ones at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    // Registry (`registry.rs`).
    #[error("upload {0} is unknown")]
    UploadUnknown(String),
    #[error("manifest references unknown blobs or manifests: {0:?}")]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("manifest {0} is unknown")]
    ManifestUnknown(Digest),
    #[error("tag {0} is unknown")]
    TagUnknown(String),
    #[error("blob {0} is unknown")]
    BlobUnknown(Digest),
    // Accounts (`accounts.rs`).
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} is unknown")]
    UserUnknown(String),
    #[error("user {0} is disabled")]
    UserDisabled(String),
    #[error("this would leave no enabled administrator")]
    LastAdmin,
    #[error("session is unknown")]
    SessionUnknown,
    // Cluster (`cluster.rs`).
    #[error("node {0} is unknown")]
    NodeUnknown(u64),
    // Registry, added after the others.
    #[error("{owner} has {limit} uploads open already; finish or cancel some first")]
    TooManyUploads { owner: String, limit: u32 },
    // Cluster, added after the others.
    #[error("the cluster needs at least one manager")]
    LastManager,
    // Registry, added after the others.
    #[error("upload {id} holds {actual} bytes; a segment must start there")]
    UploadOffset { id: String, actual: u64 },
    // Orchestration (`orchestration.rs`).
    #[error("service {0} is unknown")]
    ServiceUnknown(String),
    #[error("a service named {0} exists already")]
    ServiceNameTaken(String),
    #[error("update out of sequence: the object is at version {current}")]
    VersionOutOfDate { current: u64 },
    #[error("invalid {0}")]
    Invalid(String),
    // Secrets, configs and networks (`orchestration.rs`).
    #[error("{kind} {name} exists already")]
    NameTaken { kind: String, name: String },
    #[error("{kind} {id} is unknown")]
    ObjectUnknown { kind: String, id: String },
    #[error("{kind} '{name}' is in use by the following services: {}", services.join(", "))]
    InUse { kind: String, name: String, services: Vec<String> },
    // Identity (`identity.rs`).
    #[error("{kind} {name} is {why}")]
    Held { kind: String, name: String, why: String },
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    /// Managers of different releases exchange refusals: a variant keeps its number.
    #[test]
    fn refusals_keep_their_wire_numbers() {
        let numbered = [
            (Refusal::UploadUnknown("u".into()), 0u8),
            (Refusal::SessionUnknown, 9),
            (Refusal::NodeUnknown(7), 10),
            (Refusal::TooManyUploads { owner: "a".into(), limit: 3 }, 11),
            (Refusal::LastManager, 12),
            (Refusal::UploadOffset { id: "u".into(), actual: 5 }, 13),
        ];
        for (refusal, number) in numbered {
            let bytes = postcard::to_allocvec(&refusal).expect("encode");
            assert_eq!(bytes[0], number, "{refusal:?}");
            assert_eq!(postcard::from_bytes::<Refusal>(&bytes).expect("decode"), refusal);
        }
    }
}
