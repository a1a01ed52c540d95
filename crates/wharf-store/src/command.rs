//! The commands that change state, and what applying one returns.

use serde::{Deserialize, Serialize};
use wharf_api::{Algorithm, Digest};

pub use crate::accounts::AccountsCommand;
pub use crate::audit::AuditCommand;
pub use crate::cluster::ClusterCommand;
pub use crate::identity::IdentityCommand;
pub use crate::orchestration::OrchestrationCommand;
pub use crate::registry::RegistryCommand;

/// A command as it is persisted or replicated: the version tag lets a newer Wharf read the
/// commands an older one wrote. `V1` is a bare command (what earlier versions wrote); `V2`
/// wraps it in an [`Entry`] that says who asked for it, from where and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VersionedCommand {
    V1(LegacyCommand),
    V2(Entry),
}

impl VersionedCommand {
    /// The command, whatever the version.
    pub fn to_command(&self) -> Command {
        self.clone().into_command()
    }

    pub fn into_command(self) -> Command {
        match self {
            VersionedCommand::V1(command) => command.into(),
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

/// A state change, by the domain it changes. Each domain module owns its commands and how they
/// apply (`registry`, `accounts`, `cluster`). Timestamps are seconds since the Unix epoch,
/// chosen by the proposer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Registry(RegistryCommand),
    Accounts(AccountsCommand),
    Cluster(ClusterCommand),
    Orchestration(OrchestrationCommand),
    /// Organizations, teams, collections, roles, grants (changes who may do what, like
    /// accounts: the feed reports it as [`crate::Domain::Accounts`]).
    Identity(IdentityCommand),
    /// The audit log ([`crate::Domain::Audit`]).
    Audit(AuditCommand),
}

impl From<AuditCommand> for Command {
    fn from(command: AuditCommand) -> Command {
        Command::Audit(command)
    }
}

impl From<IdentityCommand> for Command {
    fn from(command: IdentityCommand) -> Command {
        Command::Identity(command)
    }
}

impl From<OrchestrationCommand> for Command {
    fn from(command: OrchestrationCommand) -> Command {
        Command::Orchestration(command)
    }
}

impl From<RegistryCommand> for Command {
    fn from(command: RegistryCommand) -> Command {
        Command::Registry(command)
    }
}

impl From<AccountsCommand> for Command {
    fn from(command: AccountsCommand) -> Command {
        Command::Accounts(command)
    }
}

impl From<ClusterCommand> for Command {
    fn from(command: ClusterCommand) -> Command {
        Command::Cluster(command)
    }
}

/// A borrowed command, cloned: what `Store::apply` takes by reference in tests and tools.
macro_rules! from_ref {
    ($($t:ty),*) => {$(
        impl From<&$t> for Command {
            fn from(command: &$t) -> Command {
                command.clone().into()
            }
        }
    )*};
}
from_ref!(RegistryCommand, AccountsCommand, ClusterCommand, OrchestrationCommand, IdentityCommand);

impl From<&Command> for Command {
    fn from(command: &Command) -> Command {
        command.clone()
    }
}

impl From<LegacyCommand> for Command {
    fn from(command: LegacyCommand) -> Command {
        use LegacyCommand as L;
        match command {
            L::StartUpload { id, repo, algorithm, at } => {
                RegistryCommand::StartUpload { id, repo, algorithm, at }.into()
            }
            L::StartOwnedUpload { id, repo, algorithm, at, owner, limit } => {
                RegistryCommand::StartOwnedUpload { id, repo, algorithm, at, owner, limit }.into()
            }
            L::CancelUpload { id } => RegistryCommand::CancelUpload { id }.into(),
            L::CommitUpload { id, digest, size } => RegistryCommand::CommitUpload { id, digest, size }.into(),
            L::LinkBlob { repo, digest, size } => RegistryCommand::LinkBlob { repo, digest, size }.into(),
            L::UnlinkBlob { repo, digest } => RegistryCommand::UnlinkBlob { repo, digest }.into(),
            L::PutManifest(put) => RegistryCommand::PutManifest(put).into(),
            L::DeleteManifest { repo, digest } => RegistryCommand::DeleteManifest { repo, digest }.into(),
            L::DeleteTag { repo, tag } => RegistryCommand::DeleteTag { repo, tag }.into(),
            L::CreateUser { name, password_hash, admin, at } => {
                AccountsCommand::CreateUser { name, password_hash, admin, at }.into()
            }
            L::SetPassword { name, password_hash } => AccountsCommand::SetPassword { name, password_hash }.into(),
            L::SetUserDisabled { name, disabled } => AccountsCommand::SetUserDisabled { name, disabled }.into(),
            L::DeleteUser { name } => AccountsCommand::DeleteUser { name }.into(),
            L::CreateSession(create) => AccountsCommand::CreateSession(create).into(),
            L::DeleteSession { id } => AccountsCommand::DeleteSession { id }.into(),
            L::PurgeSessions { now } => AccountsCommand::PurgeSessions { now }.into(),
            L::SetRepoPublic { repo, public } => AccountsCommand::SetRepoPublic { repo, public }.into(),
            L::InitCluster { cluster_id } => ClusterCommand::InitCluster { cluster_id }.into(),
            L::AddNode { role, hostname, addr, at } => ClusterCommand::AddNode { role, hostname, addr, at }.into(),
            L::RemoveNode { id } => ClusterCommand::RemoveNode { id }.into(),
            L::SetJoinToken { role, token } => ClusterCommand::SetJoinToken { role, token }.into(),
            L::SetNodeRole { id, role } => ClusterCommand::SetNodeRole { id, role }.into(),
            L::SetNodeState { id, state, at } => ClusterCommand::SetNodeState { id, state, at }.into(),
            L::SetNodeCert { id, not_after } => ClusterCommand::SetNodeCert { id, not_after }.into(),
            L::SetSealedJoinToken { role, sealed } => ClusterCommand::SetSealedJoinToken { role, sealed }.into(),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Registry(command) => command.fmt(f),
            Command::Accounts(command) => command.fmt(f),
            Command::Cluster(command) => command.fmt(f),
            Command::Orchestration(command) => command.fmt(f),
            Command::Identity(command) => command.fmt(f),
            Command::Audit(command) => command.fmt(f),
        }
    }
}

/// A state change as earlier versions wrote it in a replicated log (`VersionedCommand::V1`):
/// one flat enum. The variants and their order must never change, so that those logs still
/// decode; each becomes the domain command it is ([`Command`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LegacyCommand {
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
    /// their logs still apply. Wharf now writes `SetSealedJoinToken`.
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
    /// `StartUpload`, which is kept so that older logs still apply.
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

impl std::fmt::Display for VersionedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_command().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_both_versions_decode_and_carry_their_origin() {
        let command: Command = ClusterCommand::RemoveNode { id: 3 }.into();
        let old = postcard::to_allocvec(&VersionedCommand::V1(LegacyCommand::RemoveNode { id: 3 })).expect("encode");
        let old: VersionedCommand = postcard::from_bytes(&old).expect("a V1 entry still decodes");
        assert_eq!((old.to_command(), old.origin()), (command.clone(), None));
        let entry = VersionedCommand::V2(Entry { origin: Origin::user("alice", Some("10.0.0.9")), at: 7, command });
        let raw = postcard::to_allocvec(&entry).expect("encode");
        let back: VersionedCommand = postcard::from_bytes(&raw).expect("decode");
        assert_eq!(back, entry);
        assert_eq!(back.origin().map(|o| &o.actor), Some(&Actor::User("alice".into())));
        assert_eq!(back.to_string(), "remove-node 3");
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// Bytes a release before the domain split wrote to its Raft log: the V1 encoding is frozen,
    /// so a reordered or edited `LegacyCommand` variant fails here instead of misapplying old logs.
    #[test]
    fn v1_bytes_written_by_older_releases_still_mean_the_same_command() {
        let cases: [(&[u8], Command); 3] = [
            (&[0, 18, 3], ClusterCommand::RemoveNode { id: 3 }.into()),
            (
                &[0, 10, 3, b'b', b'o', b'b', 1],
                AccountsCommand::SetUserDisabled { name: "bob".into(), disabled: true }.into(),
            ),
            (&[0, 7, 1, b'r', 2, b'v', b'1'], RegistryCommand::DeleteTag { repo: "r".into(), tag: "v1".into() }.into()),
        ];
        for (bytes, command) in cases {
            let decoded: VersionedCommand = postcard::from_bytes(bytes).expect("an old entry decodes");
            assert_eq!(decoded.origin(), None);
            assert_eq!(decoded.into_command(), command);
        }
    }
}
