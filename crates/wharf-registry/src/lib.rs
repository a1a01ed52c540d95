//! The OCI distribution logic of Wharf's registry: upload sessions (monolithic, chunked,
//! streamed, resumable), cross-repository mounts, manifests with their references and
//! subjects, tags, the catalog and the referrers API.
//!
//! [`Registry`] turns requests into state-store commands and blob-store calls, computing and
//! verifying digests on the way. It must never know about HTTP types (the `wharf-http` crate
//! parses requests into calls on it) or about Raft (it applies commands through the store).

mod blobs;
mod committer;
mod hashing;
mod ledger;
mod manifests;
mod peers;
mod repair;
mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use wharf_api::{ErrorCode, RegistryError, validate_name};
use wharf_blobstore::{BlobError, BlobStore};
use wharf_store::{Command, Outcome, ProposeError, Proposer, ProposerExt, Refusal, Store};

pub use blobs::BlobRead;
pub use committer::Committer;
pub use hashing::Hasher;
pub use ledger::StoreLedger;
pub use manifests::{ManifestPut, Reference, StoredManifest};
pub use peers::{PeerBlobs, PeerCopy, PeerRead};
pub use repair::{RepairPass, ScrubPass};
pub use uploads::UploadHome;

/// Default and largest page sizes of the tags list and the catalog.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 10_000;

/// How many upload sessions one user may have open at once, unless configured otherwise.
pub const DEFAULT_UPLOAD_LIMIT: u32 = 100;

/// The registry: state store plus blob store.
pub struct Registry {
    store: Arc<Store>,
    blobs: Arc<dyn BlobStore>,
    uploads: Mutex<HashMap<String, uploads::SessionLock>>,
    proposer: Arc<dyn Proposer>,
    /// Open upload sessions allowed per user (0: no limit).
    upload_limit: u32,
    /// The cluster node this registry runs on, recorded as the holder of the blobs it commits
    /// (none for a registry that is no node).
    node: Option<u64>,
    /// How blobs held by other nodes are read (none: they are not).
    peers: Option<Arc<dyn PeerBlobs>>,
    /// On how many nodes a pushed blob must be durable before the push is acknowledged (at
    /// most the number of managers; 1: this node alone).
    copies: u32,
    /// The local uploads that are copies of blobs being made from their holders (which have no
    /// upload session, and which the purge leaves alone).
    copying: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Registry {
    /// A registry over `store` and `blobs` on one node; starts the thread that commits state
    /// changes with group commit.
    pub fn new(store: Arc<Store>, blobs: Arc<dyn BlobStore>) -> std::io::Result<Registry> {
        let committer = Arc::new(Committer::start(Arc::clone(&store))?);
        Ok(Registry::with_proposer(store, blobs, committer))
    }

    /// A registry that reads `store` and has its commands applied by `proposer` (Raft, in a
    /// cluster: the store is the local replica that the proposer's commands reach).
    pub fn with_proposer(store: Arc<Store>, blobs: Arc<dyn BlobStore>, proposer: Arc<dyn Proposer>) -> Registry {
        Registry {
            store,
            blobs,
            uploads: Mutex::new(HashMap::new()),
            proposer,
            upload_limit: DEFAULT_UPLOAD_LIMIT,
            node: None,
            peers: None,
            copies: 1,
            copying: Arc::default(),
        }
    }

    /// The same registry reading the blobs it has no copy of from the nodes that hold them,
    /// through `peers` (copying a whole blob as it serves it).
    pub fn with_peers(mut self, peers: Arc<dyn PeerBlobs>) -> Registry {
        self.peers = Some(peers);
        self
    }

    /// The same registry acknowledging a push only once the blob is durable on
    /// `min(copies, managers)` nodes (it needs [`Registry::with_peers`] and
    /// [`Registry::on_node`]).
    pub fn with_copies(mut self, copies: u32) -> Registry {
        self.copies = copies.max(1);
        self
    }

    /// The same registry running on cluster node `node`: the blobs it commits are recorded as
    /// held by that node.
    pub fn on_node(mut self, node: u64) -> Registry {
        self.node = Some(node);
        self
    }

    /// The same registry with at most `limit` open upload sessions per user (0: no limit).
    pub fn with_upload_limit(mut self, limit: u32) -> Registry {
        self.upload_limit = limit;
        self
    }

    async fn apply(&self, command: impl Into<Command>) -> Result<Outcome, ProposeError> {
        self.proposer.propose(command).await
    }

    /// Up to `n` tags of `repo` after `last`.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<wharf_store::Page, RegistryError> {
        check_name(repo)?;
        if !self.store.repo_exists(repo).map_err(internal)? {
            return Err(name_unknown(repo));
        }
        self.store.tags(repo, last, n).map_err(internal)
    }

    /// Up to `n` repositories after `last`.
    pub fn catalog(&self, last: Option<&str>, n: usize) -> Result<wharf_store::Page, RegistryError> {
        self.store.catalog(last, n).map_err(internal)
    }
}

/// Seconds since the Unix epoch, for the timestamps commands carry.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn check_name(repo: &str) -> Result<(), RegistryError> {
    if validate_name(repo) {
        Ok(())
    } else {
        Err(RegistryError::new(ErrorCode::NameInvalid, "invalid repository name")
            .with_detail(serde_json::json!({ "name": repo.chars().take(300).collect::<String>() })))
    }
}

pub(crate) fn name_unknown(repo: &str) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown, "repository name not known to registry")
        .with_detail(serde_json::json!({ "name": repo }))
}

/// A state change that failed for another reason than a refusal: 503 when the cluster cannot
/// take writes (no leader, no quorum), 429 over the open-upload cap, else an internal error.
pub(crate) fn store_failure(e: ProposeError) -> RegistryError {
    match e {
        ProposeError::Refused(Refusal::TooManyUploads { limit, .. }) => RegistryError::new(
            ErrorCode::TooManyRequests,
            format!("you have {limit} uploads open already; finish or cancel one first"),
        ),
        ProposeError::Unavailable(why) => {
            tracing::warn!(reason = %why, "write refused: the cluster cannot take writes");
            RegistryError::new(ErrorCode::Unavailable, "the cluster cannot take writes now; try again")
        }
        other => internal(other),
    }
}

/// Logs a server-side failure where it is turned into a response, and hides its details.
pub(crate) fn internal(e: impl std::fmt::Display) -> RegistryError {
    tracing::error!(error = %e, "registry operation failed");
    RegistryError::internal()
}

pub(crate) fn blob_error(e: BlobError) -> RegistryError {
    match e {
        BlobError::NotFound(d) => RegistryError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
            .with_detail(serde_json::json!({ "digest": d.to_string() })),
        BlobError::UploadNotFound(_) => RegistryError::new(ErrorCode::BlobUploadUnknown, "blob upload unknown"),
        BlobError::OffsetMismatch { actual, requested, .. } => {
            RegistryError::new(ErrorCode::RangeInvalid, format!("upload is at offset {actual}, not {requested}"))
        }
        BlobError::Body(e) => {
            RegistryError::new(ErrorCode::BlobUploadInvalid, format!("reading the request body failed: {e}"))
        }
        BlobError::Unavailable(why) => {
            tracing::warn!(reason = %why, "blob storage unavailable");
            RegistryError::new(ErrorCode::Unavailable, "the blob storage did not answer; try again later")
        }
        other => internal(other),
    }
}
