//! Wire types of Wharf's registry: digests, repository names and tags, manifests as the
//! distribution spec sees them, HTTP ranges, and the OCI error codes with their statuses; and
//! the host names and addresses nodes declare when they join.
//!
//! This crate is pure parsing and formatting. It must never do I/O and never know about
//! HTTP frameworks, storage or the state machine: every other crate may depend on it.

pub mod digest;
pub mod error;
pub mod host;
pub mod manifest;
pub mod name;
pub mod range;

pub use digest::{Algorithm, Digest};
pub use error::{ErrorCode, RegistryError};
pub use host::{AddressError, parse_advertise, valid_hostname};
pub use manifest::{Descriptor, ManifestInfo};
pub use name::{validate_name, validate_tag};
