//! Where a driver over shared storage records what each upload holds.
//!
//! A filesystem upload is one local file, and the file is its own record. In shared object
//! storage an upload is a list of immutable segment objects, one per append, and any manager
//! may append the next one: the list must be agreed by every manager, so it lives in the
//! replicated state (the registry's [`UploadLedger`] proposes each segment; the state refuses a
//! segment that does not start where the upload ends, so two managers cannot both extend it).
//! A segment object that was written but not recorded is garbage, never part of a blob.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::BlobError;

/// One append of an upload in shared storage: `len` bytes from `start`, in object `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub len: u64,
    pub key: String,
}

/// The bytes the segments of an upload hold together.
pub fn segments_len(segments: &[Segment]) -> u64 {
    segments.last().map_or(0, |s| s.start + s.len)
}

/// The record of every upload's segments.
#[async_trait::async_trait]
pub trait UploadLedger: Send + Sync + 'static {
    /// Starts recording upload `id` (nothing to do where the upload session is the record).
    /// Opening an open upload keeps its segments.
    async fn open(&self, id: &str) -> Result<(), BlobError>;

    /// The segments of upload `id` in order, as agreed by every node (a read after every
    /// segment recorded anywhere before the call); `UploadNotFound` for an unknown upload.
    async fn segments(&self, id: &str) -> Result<Vec<Segment>, BlobError>;

    /// Records `segment` as the next of upload `id`: `OffsetMismatch` unless it starts where
    /// the upload ends, `UploadNotFound` for an unknown upload.
    async fn add_segment(&self, id: &str, segment: Segment) -> Result<(), BlobError>;

    /// Forgets upload `id` (nothing to do where committing or cancelling the session does it).
    async fn close(&self, id: &str) -> Result<(), BlobError>;
}

/// A ledger in this process's memory, for a blob store that no state store records (the
/// conformance suite, tools).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    uploads: Mutex<HashMap<String, Vec<Segment>>>,
}

#[async_trait::async_trait]
impl UploadLedger for MemoryLedger {
    async fn open(&self, id: &str) -> Result<(), BlobError> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner).entry(id.to_owned()).or_default();
        Ok(())
    }

    async fn segments(&self, id: &str) -> Result<Vec<Segment>, BlobError> {
        let uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        uploads.get(id).cloned().ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))
    }

    async fn add_segment(&self, id: &str, segment: Segment) -> Result<(), BlobError> {
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        let segments = uploads.get_mut(id).ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))?;
        let actual = segments_len(segments);
        if segment.start != actual {
            return Err(BlobError::OffsetMismatch { id: id.to_owned(), actual, requested: segment.start });
        }
        segments.push(segment);
        Ok(())
    }

    async fn close(&self, id: &str) -> Result<(), BlobError> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        Ok(())
    }
}
