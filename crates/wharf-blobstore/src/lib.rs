//! Blob storage for Wharf's registry: the [`BlobStore`] trait, the filesystem driver, an
//! in-memory driver for unit tests, and one conformance suite ([`conformance`]) that every
//! driver runs.
//!
//! A blob store holds opaque bytes under their digest, plus upload sessions that are filled by
//! appends at known offsets and then committed under a digest. The trait is shaped so that S3
//! multipart uploads and Swift segments fit: an upload may span many requests, and its state is
//! named by an id that the state store records. This crate must never know OCI semantics
//! (manifests, tags, repositories); the registry computes and checks digests.

pub mod conformance;
mod fs;
mod ledger;
mod memory;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "swift")]
mod swift;
mod writer;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use wharf_api::Digest;
use wharf_api::range::ByteRange;

pub use fs::FsBlobStore;
pub use ledger::{MemoryLedger, Segment, UploadLedger, segments_len};
pub use memory::MemoryBlobStore;
#[cfg(feature = "s3")]
pub use s3::{S3BlobStore, S3Config};
#[cfg(feature = "swift")]
pub use swift::{SwiftAuth, SwiftBlobStore, SwiftConfig};

/// A stream of body chunks, as read from a request or a driver.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Called by [`BlobStore::append`] with the appended bytes, once each and in order, on a thread
/// of the driver's choosing, before `append` returns. The registry hashes in it, so hashing
/// runs as a stage of the driver's own write pipeline.
pub type Observer = Box<dyn FnMut(&[u8]) + Send>;

/// Failures of a blob store operation.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("upload {0} not found")]
    UploadNotFound(String),
    #[error("upload {id} is at offset {actual}, not {requested}")]
    OffsetMismatch { id: String, actual: u64, requested: u64 },
    #[error("reading the request body: {0}")]
    Body(std::io::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// Shared storage did not answer, or refused, after retries: try again later.
    #[error("{0}")]
    Unavailable(String),
}

impl BlobError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
        let context = context.into();
        move |source| BlobError::Io { context, source }
    }
}

/// Storage of content-addressed blobs and of the uploads that create them.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Whether every node of a cluster reads and writes the same bytes through this store
    /// (shared object storage), so that no node copies a blob to another.
    fn shared(&self) -> bool {
        false
    }

    /// Creates empty storage for upload `id`. Creating an existing upload is an error-free no-op.
    async fn create_upload(&self, id: &str) -> Result<(), BlobError>;

    /// The number of bytes stored for upload `id`, or `UploadNotFound`.
    async fn upload_size(&self, id: &str) -> Result<u64, BlobError>;

    /// Appends `data` to upload `id`, which must hold exactly `offset` bytes, passing the bytes
    /// to `observe` as they are stored. Returns the new size. On a body error the bytes that
    /// arrived before it stay in the upload; after any error `observe` may have seen bytes
    /// that were not stored, so callers must not trust what it computed.
    async fn append(&self, id: &str, offset: u64, data: ByteStream, observe: Observer) -> Result<u64, BlobError>;

    /// Streams the bytes stored so far for upload `id` (to rebuild a hash after a restart).
    async fn read_upload(&self, id: &str) -> Result<ByteStream, BlobError>;

    /// Makes upload `id` durable and visible as blob `digest`, then removes the upload. The
    /// caller has verified the digest. If the blob exists already the upload is dropped.
    async fn commit(&self, id: &str, digest: &Digest) -> Result<u64, BlobError>;

    /// Removes upload `id` and its bytes. Removing an unknown upload is not an error.
    async fn abort(&self, id: &str) -> Result<(), BlobError>;

    /// The ids of every upload stored, so that uploads without a session can be swept.
    async fn list_uploads(&self) -> Result<Vec<String>, BlobError>;

    /// The size of blob `digest`, or `None` if it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;

    /// Streams blob `digest`, whole or the given range (which the caller has bounded by the size).
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, BlobError>;

    /// Deletes blob `digest`; returns whether it existed.
    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError>;
}
