//! Wharf's state: a deterministic state machine stored in redb.
//!
//! Every change is a [`Command`] applied by [`Store::apply`]: the same command applied to the
//! same state gives the same state and the same [`Outcome`], with no clock, randomness or I/O
//! other than the database itself (timestamps travel inside commands). A single node applies
//! commands directly; the control plane will replicate the same commands with Raft and apply
//! them here unchanged. Reads go through [`Store`]'s query methods on MVCC snapshots; after
//! every commit the store publishes which domains changed ([`Store::subscribe`]), for control
//! loops and watches.
//!
//! This crate must never know about Raft, HTTP or blob storage.

mod accounts;
mod audit;
pub use accounts::BundleRecord;
pub use audit::{AuditCommand, AuditQuery, AuditRecord};
mod cluster;
mod command;
mod feed;
mod identity;
mod orchestration;
mod proposer;
mod records;
mod refusal;
mod registry;
mod replication;
mod store;
mod tables;
mod tag_cache;

pub use command::{
    AccountsCommand, Actor, ClusterCommand, Command, Entry, LegacyCommand, OrchestrationCommand, Origin, Outcome,
    PutManifest, RegistryCommand, SessionRecordCommand, VersionedCommand,
};
pub use feed::{Changes, Domain};
pub use identity::{
    CollectionRecord, GrantRecord, IdentityCommand, IdentityState, OrgRecord, RepoAccessRecord, RoleRecord, TeamRecord,
};
pub use orchestration::{
    ContainerRecord, NetworkRecord, NewTask, NodeDescription, NodeDetails, PublishedPort, SecretKind, SecretRecord,
    ServiceRecord, TaskRecord, TaskReport, TaskState, TaskStatus, UpdateRecord, UpdateState,
};
pub use proposer::{CatchUp, LocalProposer, Proposal, ProposeError, Proposer, ProposerExt};
pub use records::{
    BlobPlacement, ManifestRecord, NodeRecord, RepoSettings, SessionKind, SessionRecord, UploadRecord, UploadSegment,
    UserRecord,
};
pub use refusal::Refusal;
pub use store::{Page, Store, StoreError};
