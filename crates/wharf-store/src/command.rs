//! The commands that change state, and what applying one returns.

use serde::{Deserialize, Serialize};
use wharf_api::{Algorithm, Digest};

/// A command as it is persisted or replicated: the version tag lets a newer Wharf read the
/// commands an older one wrote. `V1` is a bare command (what earlier versions wrote); `V2`
/// wraps it in an [`Entry`] that says who asked for it, from where and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VersionedCommand {
    V1(Command),
    V2(Entry),
}

impl VersionedCommand {
    /// The command, whatever the version.
    pub fn command(&self) -> &Command {
        match self {
            VersionedCommand::V1(command) => command,
            VersionedCommand::V2(entry) => &entry.command,
        }
    }

    pub fn into_command(self) -> Command {
        match self {
            VersionedCommand::V1(command) => command,
            VersionedCommand::V2(entry) => entry.command,
        }
    }

    /// Who asked for it, if the entry says (`V1` entries do not).
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            VersionedCommand::V1(_) => None,
            VersionedCommand::V2(entry) => Some(&entry.origin),
        }
    }
}

/// Who asked for a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// Wharf itself (a control loop, a purge, a first start).
    #[default]
    System,
    /// A user, by name, through the API or the registry.
    User(String),
    /// A node, by id (its heartbeat, its renewal, its join).
    Node(u64),
}

/// Who asked for a change and from where: what an audit log records of each entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub actor: Actor,
    /// The source address of the request, when one came over the network.
    pub source: Option<String>,
}

impl Origin {
    pub fn system() -> Origin {
        Origin::default()
    }

    pub fn user(name: &str, source: Option<&str>) -> Origin {
        Origin { actor: Actor::User(name.to_owned()), source: source.map(str::to_owned) }
    }

    pub fn node(id: u64, source: Option<&str>) -> Origin {
        Origin { actor: Actor::Node(id), source: source.map(str::to_owned) }
    }
}

/// A replicated entry: a command with its origin and the time it was proposed (seconds since
/// the Unix epoch; applying never reads it, so the state stays deterministic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub origin: Origin,
    pub at: u64,
    pub command: Command,
}

/// A state change. Timestamps are seconds since the Unix epoch, chosen by the proposer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Opens upload session `id` for `repo`.
    StartUpload { id: String, repo: String, algorithm: Algorithm, at: u64 },
    /// Closes upload session `id` without a blob.
    CancelUpload { id: String },
    /// Closes upload session `id`: its bytes are now blob `digest`, linked into the session's repository.
    CommitUpload { id: String, digest: Digest, size: u64 },
    /// Links an existing blob into `repo` (cross-repository mount).
    LinkBlob { repo: String, digest: Digest, size: u64 },
    /// Removes `repo`'s link to a blob.
    UnlinkBlob { repo: String, digest: Digest },
    /// Stores a manifest, tags it, and indexes it as a referrer of its subject.
    PutManifest(Box<PutManifest>),
    /// Deletes a manifest and every tag that points at it.
    DeleteManifest { repo: String, digest: Digest },
    /// Removes one tag.
    DeleteTag { repo: String, tag: String },
    /// Creates an account. `password_hash` is a PHC string; the state never sees a password.
    CreateUser { name: String, password_hash: String, admin: bool, at: u64 },
    /// Replaces an account's password hash and ends every session and refresh token it holds.
    SetPassword { name: String, password_hash: String },
    /// Disables (ending every session and refresh token) or re-enables an account.
    SetUserDisabled { name: String, disabled: bool },
    /// Deletes an account and its sessions.
    DeleteUser { name: String },
    /// Records a session or refresh token. `id` is the SHA-256 of the secret the client holds,
    /// so the state never holds a usable credential.
    CreateSession(Box<SessionRecordCommand>),
    /// Ends one session or refresh token.
    DeleteSession { id: String },
    /// Ends every session and refresh token that expired at or before `now`.
    PurgeSessions { now: u64 },
    /// Makes a repository readable by anyone (anonymous pull), or private again.
    SetRepoPublic { repo: String, public: bool },
    /// Names the cluster, once.
    InitCluster { cluster_id: String },
    /// Adds a node under the next unused id.
    AddNode { role: String, hostname: String, addr: String, at: u64 },
    /// Marks a node removed: its id is never given again and its certificate is refused.
    RemoveNode { id: u64 },
    /// Sets the join token of a role in clear: what earlier versions wrote, kept so that
    /// their logs still apply. Wharf now writes [`Command::SetSealedJoinToken`].
    SetJoinToken { role: String, token: String },
    /// Changes a node's role (`manager` or `worker`); the leader then changes Raft's
    /// membership and the node renews its certificate for the new role.
    SetNodeRole { id: u64, role: String },
    /// Records that a node is `ready` (it sends heartbeats) or `down` (it stopped).
    SetNodeState { id: u64, state: String, at: u64 },
    /// Records when a node's current certificate expires.
    SetNodeCert { id: u64, not_after: u64 },
    /// Sets the join token of a role, sealed with the cluster's secrets key by the proposer,
    /// so neither the log nor the state ever holds it in clear; replaces a token in clear.
    SetSealedJoinToken { role: String, sealed: Vec<u8> },
    /// Opens upload session `id` for `repo` on behalf of `owner` (a user name), refused when
    /// `owner` has `limit` sessions open already (0: no limit). Supersedes
    /// [`Command::StartUpload`], which is kept so that older logs still apply.
    StartOwnedUpload { id: String, repo: String, algorithm: Algorithm, at: u64, owner: String, limit: u32 },
}

/// The fields of [`Command::CreateSession`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecordCommand {
    pub id: String,
    pub session: crate::SessionRecord,
}

/// The fields of [`Command::PutManifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutManifest {
    pub repo: String,
    pub digest: Digest,
    pub media_type: String,
    /// The exact bytes the client sent.
    pub bytes: Vec<u8>,
    /// Blobs that must be linked in `repo`.
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in `repo` (children of an index).
    pub manifests: Vec<Digest>,
    pub tags: Vec<String>,
    pub subject: Option<Digest>,
    /// The descriptor the referrers API lists for this manifest, as JSON.
    pub referrer_descriptor: Option<Vec<u8>>,
    pub at: u64,
}

/// What a successfully applied command reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// The repository an upload belonged to.
    UploadCommitted {
        repo: String,
    },
    /// The tags removed along with a deleted manifest.
    ManifestDeleted {
        tags: Vec<String>,
    },
    /// How many sessions a command ended.
    SessionsEnded {
        count: usize,
    },
    /// The id a new node got.
    NodeAdded {
        id: u64,
    },
}

/// One line per command for logs: what it does and to what, never a password hash or a
/// session id.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::StartUpload { repo, .. } => write!(f, "start-upload {repo}"),
            Command::CancelUpload { .. } => write!(f, "cancel-upload"),
            Command::CommitUpload { digest, .. } => write!(f, "commit-upload {digest}"),
            Command::LinkBlob { repo, digest, .. } => write!(f, "link-blob {repo}@{digest}"),
            Command::UnlinkBlob { repo, digest } => write!(f, "unlink-blob {repo}@{digest}"),
            Command::PutManifest(put) => write!(f, "put-manifest {}@{}", put.repo, put.digest),
            Command::DeleteManifest { repo, digest } => write!(f, "delete-manifest {repo}@{digest}"),
            Command::DeleteTag { repo, tag } => write!(f, "delete-tag {repo}:{tag}"),
            Command::CreateUser { name, admin, .. } => write!(f, "create-user {name} admin={admin}"),
            Command::SetPassword { name, .. } => write!(f, "set-password {name}"),
            Command::SetUserDisabled { name, disabled } => write!(f, "set-user-disabled {name} {disabled}"),
            Command::DeleteUser { name } => write!(f, "delete-user {name}"),
            Command::CreateSession(create) => write!(f, "create-session for {}", create.session.user),
            Command::DeleteSession { .. } => write!(f, "delete-session"),
            Command::PurgeSessions { now } => write!(f, "purge-sessions before {now}"),
            Command::SetRepoPublic { repo, public } => write!(f, "set-repo-public {repo} {public}"),
            Command::InitCluster { cluster_id } => write!(f, "init-cluster {cluster_id}"),
            Command::AddNode { role, hostname, .. } => write!(f, "add-node {role} {hostname}"),
            Command::RemoveNode { id } => write!(f, "remove-node {id}"),
            Command::SetJoinToken { role, .. } => write!(f, "set-join-token {role}"),
            Command::SetNodeRole { id, role } => write!(f, "set-node-role {id} {role}"),
            Command::SetNodeState { id, state, .. } => write!(f, "set-node-state {id} {state}"),
            Command::SetNodeCert { id, not_after } => write!(f, "set-node-cert {id} until {not_after}"),
            Command::SetSealedJoinToken { role, .. } => write!(f, "set-sealed-join-token {role}"),
            Command::StartOwnedUpload { repo, owner, .. } => write!(f, "start-upload {repo} by {owner}"),
        }
    }
}

impl std::fmt::Display for VersionedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_both_versions_decode_and_carry_their_origin() {
        let command = Command::RemoveNode { id: 3 };
        let old = postcard::to_allocvec(&VersionedCommand::V1(command.clone())).expect("encode");
        let old: VersionedCommand = postcard::from_bytes(&old).expect("a V1 entry still decodes");
        assert_eq!((old.command(), old.origin()), (&command, None));
        let entry = VersionedCommand::V2(Entry { origin: Origin::user("alice", Some("10.0.0.9")), at: 7, command });
        let raw = postcard::to_allocvec(&entry).expect("encode");
        let back: VersionedCommand = postcard::from_bytes(&raw).expect("decode");
        assert_eq!(back, entry);
        assert_eq!(back.origin().map(|o| &o.actor), Some(&Actor::User("alice".into())));
        assert_eq!(back.to_string(), "remove-node 3");
    }
}
