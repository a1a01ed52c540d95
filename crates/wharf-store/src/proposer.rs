//! [`Proposer`]: how a command gets applied. A single node applies to its own store (group
//! commit in the registry's committer, or [`LocalProposer`]); a cluster proposes through Raft
//! and every manager applies the same command to its store. A proposal is applied, refused
//! (a [`Refusal`], the same on every manager), or not taken now ([`ProposeError::Unavailable`]:
//! no leader, no quorum, a stopped committer), which only a proposer can say.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::command::{Command, Origin, Outcome};
use crate::refusal::Refusal;
use crate::store::{Store, StoreError};

/// Why a proposal was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The state refused the command; nothing was written anywhere.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The command cannot be taken now (no leader or quorum, a stopped committer); it was not
    /// acknowledged, and may be sent again.
    #[error("the cluster cannot take writes now: {0}")]
    Unavailable(String),
    /// The local database failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ProposeError {
    fn from(e: StoreError) -> ProposeError {
        match e {
            StoreError::Refused(refusal) => ProposeError::Refused(refusal),
            other => ProposeError::Store(other),
        }
    }
}

impl ProposeError {
    /// The refusal this error is, if it is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ProposeError::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

/// The future a proposal returns.
pub type Proposal<'a> = Pin<Box<dyn Future<Output = Result<Outcome, ProposeError>> + Send + 'a>>;

/// The future [`Proposer::catch_up`] returns.
pub type CatchUp<'a> = Pin<Box<dyn Future<Output = Result<(), ProposeError>> + Send + 'a>>;

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
        let result = self.0.apply(&command).map_err(ProposeError::from);
        Box::pin(std::future::ready(result))
    }
}
