//! Wharf's wire contracts. The registry's: digests, repository names and tags, manifests as
//! the distribution spec sees them, HTTP ranges, and the OCI error codes with their statuses.
//! The cluster's (`cluster`: join, heartbeat, renewal, the node list; `NodeRole`, `NodeState`)
//! and the account API's (`account`, with `ApiMessage`, the one error body of those APIs),
//! which servers and clients share; the Docker Engine API's objects (`docker`: services, tasks,
//! nodes, version, info) that the `docker` CLI sends and reads, and its multiplexed log stream
//! (`logs`, which agents also use to send task logs to managers); and the host names and addresses nodes declare.
//!
//! This crate is pure parsing and formatting. It must never do I/O and never know about
//! HTTP frameworks, storage or the state machine: every other crate may depend on it.

pub mod account;
pub mod cluster;
pub mod containers;
pub mod digest;
pub mod docker;
pub mod error;
pub mod host;
pub mod identity;
pub mod logs;
pub mod manifest;
pub mod name;
pub mod range;

pub use account::ApiMessage;
pub use cluster::{NodeRole, NodeState};
pub use digest::{Algorithm, Digest};
pub use error::{ErrorCode, RegistryError};
pub use host::{AddressError, parse_advertise, valid_hostname};
pub use manifest::{Descriptor, ManifestInfo};
pub use name::{validate_name, validate_tag};
