//! An in-memory driver for unit tests of the layers above. It keeps everything in two maps
//! and runs the same conformance suite as the real drivers.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use wharf_api::Digest;
use wharf_api::range::ByteRange;

use crate::{BlobError, BlobStore, ByteStream, Observer};

#[derive(Debug, Default)]
pub struct MemoryBlobStore {
    uploads: Mutex<HashMap<String, BytesMut>>,
    blobs: Mutex<HashMap<Digest, Bytes>>,
}

impl MemoryBlobStore {
    pub fn new() -> MemoryBlobStore {
        MemoryBlobStore::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn once(bytes: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

#[async_trait::async_trait]
impl BlobStore for MemoryBlobStore {
    async fn create_upload(&self, id: &str) -> Result<(), BlobError> {
        lock(&self.uploads).entry(id.to_owned()).or_default();
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        let uploads = lock(&self.uploads);
        let buf = uploads.get(id).ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))?;
        Ok(buf.len() as u64)
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        mut data: ByteStream,
        mut observe: Observer,
    ) -> Result<u64, BlobError> {
        let actual = self.upload_size(id).await?;
        if actual != offset {
            return Err(BlobError::OffsetMismatch { id: id.to_owned(), actual, requested: offset });
        }
        while let Some(item) = data.next().await {
            let chunk = item.map_err(BlobError::Body)?;
            observe(&chunk);
            let mut uploads = lock(&self.uploads);
            let buf = uploads.get_mut(id).ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))?;
            buf.extend_from_slice(&chunk);
        }
        self.upload_size(id).await
    }

    async fn read_upload(&self, id: &str) -> Result<ByteStream, BlobError> {
        let uploads = lock(&self.uploads);
        let buf = uploads.get(id).ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))?;
        Ok(once(Bytes::copy_from_slice(buf)))
    }

    async fn commit(&self, id: &str, digest: &Digest) -> Result<u64, BlobError> {
        let buf = lock(&self.uploads).remove(id).ok_or_else(|| BlobError::UploadNotFound(id.to_owned()))?;
        let size = buf.len() as u64;
        lock(&self.blobs).entry(digest.clone()).or_insert_with(|| buf.freeze());
        Ok(size)
    }

    async fn abort(&self, id: &str) -> Result<(), BlobError> {
        lock(&self.uploads).remove(id);
        Ok(())
    }

    async fn list_uploads(&self) -> Result<Vec<String>, BlobError> {
        Ok(lock(&self.uploads).keys().cloned().collect())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        Ok(lock(&self.blobs).get(digest).map(|b| b.len() as u64))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, BlobError> {
        let blob = lock(&self.blobs).get(digest).cloned().ok_or_else(|| BlobError::NotFound(digest.clone()))?;
        let bytes = match range {
            Some(r) => {
                let start = usize::try_from(r.offset).unwrap_or(usize::MAX).min(blob.len());
                let end = usize::try_from(r.offset + r.len).unwrap_or(usize::MAX).min(blob.len());
                blob.slice(start..end)
            }
            None => blob,
        };
        Ok(once(bytes))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(lock(&self.blobs).remove(digest).is_some())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_driver_passes_conformance() {
        crate::conformance::run_all(&super::MemoryBlobStore::new()).await;
    }
}
