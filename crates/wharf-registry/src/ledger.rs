//! The record of uploads in shared storage, kept in the replicated state: every manager reads
//! the same segments, and the state decides which of two racing appends extends an upload.

use std::sync::Arc;

use wharf_blobstore::{BlobError, Segment, UploadLedger};
use wharf_store::{ProposeError, Proposer, ProposerExt, Refusal, RegistryCommand, Store};

/// An [`UploadLedger`] over the state store: segments are read from the local replica after
/// catching up with the leader, and recorded by proposing `AddUploadSegment`. The upload
/// session is the record, so opening and closing have nothing to do (committing or
/// cancelling the session removes its segments).
pub struct StoreLedger {
    store: Arc<Store>,
    proposer: Arc<dyn Proposer>,
}

impl StoreLedger {
    pub fn new(store: Arc<Store>, proposer: Arc<dyn Proposer>) -> StoreLedger {
        StoreLedger { store, proposer }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BlobError {
    BlobError::Unavailable(format!("the cluster state: {e}"))
}

#[async_trait::async_trait]
impl UploadLedger for StoreLedger {
    async fn open(&self, _id: &str) -> Result<(), BlobError> {
        Ok(())
    }

    async fn segments(&self, id: &str) -> Result<Vec<Segment>, BlobError> {
        self.proposer.catch_up().await.map_err(unavailable)?;
        let segments = self.store.upload_segments(id).map_err(unavailable)?;
        let segments = segments.ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))?;
        Ok(segments.into_iter().map(|s| Segment { start: s.start, len: s.len, key: s.key }).collect())
    }

    async fn add_segment(&self, id: &str, segment: Segment) -> Result<(), BlobError> {
        let command = RegistryCommand::AddUploadSegment {
            id: id.to_owned(),
            start: segment.start,
            len: segment.len,
            key: segment.key,
        };
        match self.proposer.propose(command).await {
            Ok(_) => Ok(()),
            Err(ProposeError::Refused(Refusal::UploadUnknown(_))) => Err(BlobError::UploadNotFound(id.to_owned())),
            Err(ProposeError::Refused(Refusal::UploadOffset { actual, .. })) => {
                Err(BlobError::OffsetMismatch { id: id.to_owned(), actual, requested: segment.start })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn close(&self, _id: &str) -> Result<(), BlobError> {
        Ok(())
    }
}
