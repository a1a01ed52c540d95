//! [`Proposer`]: how a command gets applied. A single node applies to its own store (group
//! commit in the registry's committer, or [`LocalProposer`]); a cluster proposes through Raft
//! and every manager applies the same command to its store. Refusals cross the network as
//! [`Refusal`]s and become the same [`StoreError`]s on the other side.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wharf_api::Digest;

use crate::command::{Command, Origin, Outcome};
use crate::store::{Store, StoreError};

/// The future a proposal returns.
pub type Proposal<'a> = Pin<Box<dyn Future<Output = Result<Outcome, StoreError>> + Send + 'a>>;

/// The future [`Proposer::catch_up`] returns.
pub type CatchUp<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Gets commands applied, wherever the state lives. Callers use [`ProposerExt::propose`] and
/// [`ProposerExt::propose_by`], which take any domain's command.
pub trait Proposer: Send + Sync {
    /// Gets `command` applied on behalf of `origin`, which a replicated log keeps with the
    /// command (a local store has no log: it applies the command alone).
    fn propose_command(&self, origin: Origin, command: Command) -> Proposal<'_>;

    /// Waits until the local store has applied every command acknowledged anywhere before the
    /// call, so that a read after it is current (in a cluster: a ReadIndex round with the
    /// leader). A single store is always current.
    fn catch_up(&self) -> CatchUp<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Applies each command to a local store at once (one transaction and fsync per command).
#[derive(Debug, Clone)]
pub struct LocalProposer(pub Arc<Store>);

/// How callers propose: a command of any domain, on behalf of Wharf or of someone.
pub trait ProposerExt: Proposer {
    /// Gets `command` applied on behalf of Wharf itself.
    fn propose(&self, command: impl Into<Command>) -> Proposal<'_> {
        self.propose_command(Origin::system(), command.into())
    }

    /// Gets `command` applied on behalf of `origin`.
    fn propose_by(&self, origin: Origin, command: impl Into<Command>) -> Proposal<'_> {
        self.propose_command(origin, command.into())
    }
}

impl<P: Proposer + ?Sized> ProposerExt for P {}

impl Proposer for LocalProposer {
    fn propose_command(&self, _origin: Origin, command: Command) -> Proposal<'_> {
        let result = self.0.apply(&command);
        Box::pin(std::future::ready(result))
    }
}

/// A refused command, in a form that can be sent between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    UploadUnknown(String),
    ManifestBlobUnknown(Vec<Digest>),
    ManifestUnknown(Digest),
    TagUnknown(String),
    BlobUnknown(Digest),
    UserExists(String),
    UserUnknown(String),
    UserDisabled(String),
    LastAdmin,
    SessionUnknown,
    NodeUnknown(u64),
    TooManyUploads { owner: String, limit: u32 },
    LastManager,
}

impl StoreError {
    /// The refusal this error is, if it is one (see [`StoreError::is_refusal`]).
    pub fn refusal(&self) -> Option<Refusal> {
        Some(match self {
            StoreError::UploadUnknown(id) => Refusal::UploadUnknown(id.clone()),
            StoreError::ManifestBlobUnknown(missing) => Refusal::ManifestBlobUnknown(missing.clone()),
            StoreError::ManifestUnknown(d) => Refusal::ManifestUnknown(d.clone()),
            StoreError::TagUnknown(t) => Refusal::TagUnknown(t.clone()),
            StoreError::BlobUnknown(d) => Refusal::BlobUnknown(d.clone()),
            StoreError::UserExists(u) => Refusal::UserExists(u.clone()),
            StoreError::UserUnknown(u) => Refusal::UserUnknown(u.clone()),
            StoreError::UserDisabled(u) => Refusal::UserDisabled(u.clone()),
            StoreError::LastAdmin => Refusal::LastAdmin,
            StoreError::SessionUnknown => Refusal::SessionUnknown,
            StoreError::NodeUnknown(id) => Refusal::NodeUnknown(*id),
            StoreError::TooManyUploads { owner, limit } => {
                Refusal::TooManyUploads { owner: owner.clone(), limit: *limit }
            }
            StoreError::LastManager => Refusal::LastManager,
            _ => return None,
        })
    }
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> StoreError {
        match refusal {
            Refusal::UploadUnknown(id) => StoreError::UploadUnknown(id),
            Refusal::ManifestBlobUnknown(missing) => StoreError::ManifestBlobUnknown(missing),
            Refusal::ManifestUnknown(d) => StoreError::ManifestUnknown(d),
            Refusal::TagUnknown(t) => StoreError::TagUnknown(t),
            Refusal::BlobUnknown(d) => StoreError::BlobUnknown(d),
            Refusal::UserExists(u) => StoreError::UserExists(u),
            Refusal::UserUnknown(u) => StoreError::UserUnknown(u),
            Refusal::UserDisabled(u) => StoreError::UserDisabled(u),
            Refusal::LastAdmin => StoreError::LastAdmin,
            Refusal::SessionUnknown => StoreError::SessionUnknown,
            Refusal::NodeUnknown(id) => StoreError::NodeUnknown(id),
            Refusal::TooManyUploads { owner, limit } => StoreError::TooManyUploads { owner, limit },
            Refusal::LastManager => StoreError::LastManager,
        }
    }
}
