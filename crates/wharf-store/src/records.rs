//! Values stored in the tables. Each is wrapped in a versioned enum on disk.

use serde::{Deserialize, Serialize};
use wharf_api::{Algorithm, Digest};

/// A manifest as stored: the exact bytes and what the registry needs to serve them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub subject: Option<Digest>,
    pub created: u64,
}

/// A committed blob, its size and the nodes that hold a verified copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPlacement {
    pub digest: String,
    pub size: u64,
    pub holders: Vec<u64>,
}

/// One segment of an upload in shared storage: `len` bytes from `start`, in object `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSegment {
    pub start: u64,
    pub len: u64,
    pub key: String,
}

/// An open upload session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repo: String,
    pub algorithm: Algorithm,
    pub started: u64,
    /// Who opened it (a user name; empty for an upload opened by an earlier version or on a
    /// node without accounts): the per-user cap counts these.
    pub owner: String,
}

/// An upload as the first version stored it.
#[derive(Serialize, Deserialize)]
pub(crate) struct UploadRecordV1 {
    repo: String,
    algorithm: Algorithm,
    started: u64,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Never given to another account, so a token naming it cannot pass for a later account
    /// of the same name (0 for accounts created by an earlier version, whose names are known).
    pub id: u64,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub admin: bool,
    pub disabled: bool,
    pub created: u64,
    /// Bumped whenever the account's credentials change (a new password, disabled, enabled):
    /// a registry token names the epoch it was issued in and is refused in any other.
    pub epoch: u64,
}

/// An account as the first version stored it.
#[derive(Serialize, Deserialize)]
pub(crate) struct UserRecordV1 {
    password_hash: String,
    admin: bool,
    disabled: bool,
    created: u64,
}

/// What a session secret is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKind {
    /// An API session from `POST /auth/login` (`Authorization: Bearer` on `/api/`).
    Api,
    /// A registry refresh token (`offline_token=true`), which docker stores as its identity token.
    Refresh,
    /// An access token (a service account's, or a user's for CI): used as a password by
    /// registry clients, limited to its scopes; its `client` is the token's name.
    Token,
}

/// A session or refresh token, stored under the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    pub kind: SessionKind,
    pub created: u64,
    pub expires: u64,
    /// Who asked for it (`docker`, `containerd`, a user agent), for the session list.
    pub client: String,
}

/// Per-repository settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSettings {
    pub public: bool,
    /// Manifests and indexes whose layers, config or child manifests are not in the repository
    /// are accepted ("sparse": one platform of a multi-arch image copied with its index).
    /// Off by default: such a manifest is refused with `MANIFEST_BLOB_UNKNOWN`.
    pub sparse_manifests: bool,
}

/// [`RepoSettings`] as the first releases stored them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RepoSettingsV1 {
    pub public: bool,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredUser {
    V1(UserRecordV1),
    V2(UserRecord),
}

impl StoredUser {
    pub(crate) fn into_current(self) -> UserRecord {
        match self {
            StoredUser::V1(old) => UserRecord {
                id: 0,
                password_hash: old.password_hash,
                admin: old.admin,
                disabled: old.disabled,
                created: old.created,
                epoch: 0,
            },
            StoredUser::V2(user) => user,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredSession {
    V1(SessionRecord),
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredRepoSettings {
    V1(RepoSettingsV1),
    V2(RepoSettings),
}

impl StoredRepoSettings {
    pub(crate) fn into_current(self) -> RepoSettings {
        match self {
            StoredRepoSettings::V1(old) => RepoSettings { public: old.public, sparse_manifests: false },
            StoredRepoSettings::V2(settings) => settings,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredManifest {
    V1(ManifestRecord),
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredUpload {
    V1(UploadRecordV1),
    V2(UploadRecord),
}

impl StoredUpload {
    pub(crate) fn into_current(self) -> UploadRecord {
        match self {
            StoredUpload::V1(old) => {
                UploadRecord { repo: old.repo, algorithm: old.algorithm, started: old.started, owner: String::new() }
            }
            StoredUpload::V2(upload) => upload,
        }
    }
}

/// A node of the cluster. Removed nodes stay, marked, so their ids are never reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `manager` or `worker`.
    pub role: String,
    pub hostname: String,
    /// Where the node serves (host:port).
    pub addr: String,
    pub created: u64,
    pub removed: bool,
    /// `ready` while its heartbeats arrive, `down` when they stopped, `unknown` before the
    /// first one.
    pub state: String,
    /// When `state` last changed (seconds since the Unix epoch).
    pub state_since: u64,
    /// When the node's current certificate expires (seconds since the Unix epoch).
    pub cert_not_after: u64,
}

/// A node as the first cluster version stored it.
#[derive(Serialize, Deserialize)]
pub(crate) struct NodeRecordV1 {
    role: String,
    hostname: String,
    addr: String,
    created: u64,
    removed: bool,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredNode {
    V1(NodeRecordV1),
    V2(NodeRecord),
}

impl StoredNode {
    pub(crate) fn into_current(self) -> NodeRecord {
        match self {
            StoredNode::V1(old) => NodeRecord {
                role: old.role,
                hostname: old.hostname,
                addr: old.addr,
                created: old.created,
                removed: old.removed,
                state: "unknown".into(),
                state_since: old.created,
                cert_not_after: 0,
            },
            StoredNode::V2(record) => record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_the_first_version_still_read() {
        let old = StoredUser::V1(UserRecordV1 { password_hash: "h".into(), admin: true, disabled: false, created: 7 });
        let raw = postcard::to_allocvec(&old).expect("encode");
        let user = postcard::from_bytes::<StoredUser>(&raw).expect("decode").into_current();
        assert_eq!((user.id, user.epoch, user.admin, user.created), (0, 0, true, 7));
        let old = StoredUpload::V1(UploadRecordV1 { repo: "r".into(), algorithm: Algorithm::Sha512, started: 3 });
        let raw = postcard::to_allocvec(&old).expect("encode");
        let upload = postcard::from_bytes::<StoredUpload>(&raw).expect("decode").into_current();
        assert_eq!((upload.repo.as_str(), upload.started, upload.owner.as_str()), ("r", 3, ""));
    }
}
