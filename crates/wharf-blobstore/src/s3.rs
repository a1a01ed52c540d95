//! The S3 driver: blobs in a bucket every manager shares (AWS S3 or any S3-compatible server).
//!
//! Layout under the configured prefix:
//! - `blobs/<algorithm>/<first two hex digits>/<hex>`: a committed blob, one object;
//! - `uploads/<id>/<start, 20 digits>-<random>`: one immutable segment per append of an upload.
//!
//! An append writes its bytes as a new segment object (a single PUT, or a multipart upload
//! whose parts go out while the body arrives), then records the segment in the
//! [`UploadLedger`]; the record is what makes the bytes part of the upload, so an append that
//! fails half-way leaves nothing visible and a retry through any manager starts where the
//! record ends. Committing copies a single segment inside the store (no bytes through Wharf)
//! or streams several into one multipart upload, then removes the segments. Requests are
//! retried with exponential backoff; what still fails is [`BlobError::Unavailable`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use wharf_api::Digest;
use wharf_api::range::ByteRange;

use crate::ledger::{Segment, UploadLedger, segments_len};
use crate::{BlobError, BlobStore, ByteStream, Observer};

/// Size of the parts of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART: usize = 8 * 1024 * 1024;
/// Parts of one segment in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Largest object S3 copies in one request.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Where and how to reach the bucket. Credentials are kept apart from everything that may be
/// printed or recorded.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix under which Wharf keeps its objects (empty: the bucket's root).
    pub prefix: String,
    /// The server's URL for S3-compatible servers (none: AWS, from the region).
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`) rather than virtual-host style
    /// (`bucket.endpoint/key`).
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    /// Requests that fail (5xx, timeouts, connection errors) are retried with exponential
    /// backoff for at most this long.
    pub retry_for: Duration,
    /// One request's timeout.
    pub request_timeout: Duration,
}

/// Never shows the credentials.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// Blobs in an S3 bucket; uploads recorded in `ledger`.
pub struct S3BlobStore {
    store: AmazonS3,
    prefix: String,
    ledger: Arc<dyn UploadLedger>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3BlobStore({}, prefix {:?})", self.store, self.prefix)
    }
}

fn unavailable(what: &str) -> impl FnOnce(object_store::Error) -> BlobError + '_ {
    move |e| BlobError::Unavailable(format!("object storage: {what}: {e}"))
}

impl S3BlobStore {
    /// A store over the bucket `config` names. Makes no request (see [`S3BlobStore::check`]).
    pub fn new(config: &S3Config, ledger: Arc<dyn UploadLedger>) -> Result<S3BlobStore, BlobError> {
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: config.retry_for,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key)
            .with_secret_access_key(&config.secret_key)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.request_timeout)
                    .with_connect_timeout(config.request_timeout.min(Duration::from_secs(5))),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| BlobError::Unavailable(format!("S3 configuration: {e}")))?;
        let prefix = config.prefix.trim_matches('/').to_owned();
        Ok(S3BlobStore { store, prefix, ledger })
    }

    /// Reaches the bucket once (a listing of Wharf's prefix), so that a wrong endpoint, bucket
    /// or credentials are reported at start rather than at the first push.
    pub async fn check(&self) -> Result<(), BlobError> {
        self.store.list_with_delimiter(Some(&self.path("uploads"))).await.map_err(unavailable("listing the bucket"))?;
        Ok(())
    }

    fn path(&self, rest: &str) -> Path {
        if self.prefix.is_empty() { Path::from(rest) } else { Path::from(format!("{}/{rest}", self.prefix)) }
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.path(&format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2.min(hex.len())]))
    }

    fn upload_dir(&self, id: &str) -> Path {
        self.path(&format!("uploads/{id}"))
    }

    /// Streams the segments' objects one after another.
    fn read_segments(&self, segments: Vec<Segment>) -> ByteStream {
        let store = self.store.clone();
        futures::stream::iter(segments)
            .then(move |segment| {
                let store = store.clone();
                async move {
                    let result = store.get(&Path::from(segment.key)).await.map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(result.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten()
            .boxed()
    }

    /// Removes the objects of upload `id` (best effort: what is left is found again by
    /// [`BlobStore::list_uploads`] once the upload has no session).
    async fn remove_upload_objects(&self, id: &str) -> Result<(), BlobError> {
        let objects: Vec<Path> = self
            .store
            .list(Some(&self.upload_dir(id)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(unavailable("listing an upload"))?;
        for object in objects {
            match self.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(unavailable("removing an upload")(e)),
            }
        }
        Ok(())
    }
}

/// Writes one segment from `data`, calling `observe` on each chunk; returns how many bytes it
/// holds and the body's error, if the body failed (the bytes before it are written).
async fn write_segment(
    store: &AmazonS3,
    key: &Path,
    mut data: ByteStream,
    observe: &mut Observer,
) -> Result<(u64, Option<std::io::Error>), BlobError> {
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_len = 0usize;
    let mut writer: Option<WriteMultipart> = None;
    let mut written = 0u64;
    let mut body_error = None;
    let result: Result<(), BlobError> = async {
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            };
            observe(&chunk);
            written += chunk.len() as u64;
            match &mut writer {
                Some(w) => {
                    w.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(unavailable("writing a part"))?;
                    w.put(chunk);
                }
                None => {
                    pending_len += chunk.len();
                    pending.push(chunk);
                    if pending_len >= PART {
                        let upload =
                            store.put_multipart(key).await.map_err(unavailable("starting a multipart upload"))?;
                        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
                        for chunk in pending.drain(..) {
                            w.put(chunk);
                        }
                        writer = Some(w);
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    match (result, writer) {
        (Err(e), Some(w)) => {
            let _ = w.abort().await;
            Err(e)
        }
        (Err(e), None) => Err(e),
        (Ok(()), Some(w)) => {
            w.finish().await.map_err(unavailable("completing a multipart upload"))?;
            Ok((written, body_error))
        }
        (Ok(()), None) if written == 0 => Ok((0, body_error)),
        (Ok(()), None) => {
            let payload: PutPayload = pending.into_iter().collect();
            store.put(key, payload).await.map_err(unavailable("writing a segment"))?;
            Ok((written, body_error))
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    fn shared(&self) -> bool {
        true
    }

    async fn create_upload(&self, id: &str) -> Result<(), BlobError> {
        self.ledger.open(id).await
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        Ok(segments_len(&self.ledger.segments(id).await?))
    }

    async fn append(&self, id: &str, offset: u64, data: ByteStream, mut observe: Observer) -> Result<u64, BlobError> {
        let actual = self.upload_size(id).await?;
        if actual != offset {
            return Err(BlobError::OffsetMismatch { id: id.to_owned(), actual, requested: offset });
        }
        let key = self.path(&format!("uploads/{id}/{offset:020}-{}", uuid::Uuid::new_v4().simple()));
        let (len, body_error) = write_segment(&self.store, &key, data, &mut observe).await?;
        if len > 0 {
            let segment = Segment { start: offset, len, key: key.to_string() };
            if let Err(e) = self.ledger.add_segment(id, segment).await {
                // Another append won the offset: this segment is no part of the upload.
                let _ = self.store.delete(&key).await;
                return Err(e);
            }
        }
        match body_error {
            Some(e) => Err(BlobError::Body(e)),
            None => Ok(offset + len),
        }
    }

    async fn read_upload(&self, id: &str) -> Result<ByteStream, BlobError> {
        Ok(self.read_segments(self.ledger.segments(id).await?))
    }

    async fn commit(&self, id: &str, digest: &Digest) -> Result<u64, BlobError> {
        let segments = self.ledger.segments(id).await?;
        let size = segments_len(&segments);
        let target = self.blob_path(digest);
        match self.store.head(&target).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => match segments.as_slice() {
                [] => {
                    self.store.put(&target, PutPayload::new()).await.map_err(unavailable("writing a blob"))?;
                }
                [one] if one.len <= MAX_COPY => {
                    self.store
                        .copy(&Path::from(one.key.as_str()), &target)
                        .await
                        .map_err(unavailable("copying a blob"))?;
                }
                _ => {
                    let upload =
                        self.store.put_multipart(&target).await.map_err(unavailable("starting a multipart upload"))?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
                    let mut bytes = self.read_segments(segments);
                    let copied: Result<(), BlobError> = async {
                        while let Some(chunk) = bytes.next().await {
                            let chunk = chunk.map_err(|e| BlobError::Unavailable(format!("object storage: {e}")))?;
                            writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(unavailable("writing a part"))?;
                            writer.put(chunk);
                        }
                        Ok(())
                    }
                    .await;
                    match copied {
                        Ok(()) => {
                            writer.finish().await.map_err(unavailable("completing a multipart upload"))?;
                        }
                        Err(e) => {
                            let _ = writer.abort().await;
                            return Err(e);
                        }
                    }
                }
            },
            Err(e) => return Err(unavailable("reading a blob's size")(e)),
        }
        if let Err(e) = self.remove_upload_objects(id).await {
            tracing::warn!(error = %e, "the segments of a committed upload stay until the next sweep");
        }
        self.ledger.close(id).await?;
        Ok(size)
    }

    async fn abort(&self, id: &str) -> Result<(), BlobError> {
        self.remove_upload_objects(id).await?;
        self.ledger.close(id).await
    }

    async fn list_uploads(&self) -> Result<Vec<String>, BlobError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path("uploads")))
            .await
            .map_err(unavailable("listing uploads"))?;
        Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("reading a blob's size")(e)),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, BlobError> {
        let options =
            GetOptions { range: range.map(|r| GetRange::Bounded(r.offset..r.offset + r.len)), ..GetOptions::default() };
        match self.store.get_opts(&self.blob_path(digest), options).await {
            Ok(result) => Ok(result.into_stream().map_err(std::io::Error::other).boxed()),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(digest.clone())),
            Err(e) => Err(unavailable("reading a blob")(e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&self.blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(unavailable("deleting a blob")(e)),
        }
    }
}
