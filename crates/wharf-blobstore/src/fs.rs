//! The filesystem driver: content-addressed files under `blobs/<algorithm>/<2 hex>/<hex>`,
//! uploads as files under `uploads/<id>`.
//!
//! Crash safety: an upload only becomes a blob by `rename` after `fsync` of its file, followed
//! by an `fsync` of the directory, so a blob path either does not exist or holds the complete,
//! durable bytes. Blobs are deduplicated across repositories because the path is the digest.
//! Appends go through the staged pipeline of [`crate::writer`]; reads stream through a bounded
//! channel from one blocking thread. No blob is ever held whole in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use wharf_api::Digest;
use wharf_api::range::ByteRange;

use crate::{BlobError, BlobStore, ByteStream, Observer, writer};

/// Size of the chunks read from disk.
const IO_CHUNK: usize = 1024 * 1024;
/// Chunks read ahead of the response.
const READ_AHEAD: usize = 8;
/// Chunks in flight between a request task and the buffered writer's thread.
const CHANNEL_DEPTH: usize = 8;

/// Blob storage in a local directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    /// The O_DIRECT blocks shared by all appends.
    blocks: Arc<writer::BlockPool>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a blob store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsBlobStore, BlobError> {
        let root = root.into();
        for dir in [root.join("blobs"), root.join("uploads")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR)
                .create(&dir)
                .map_err(BlobError::io(format!("create {}", dir.display())))?;
        }
        Ok(FsBlobStore { root, blocks: Arc::new(writer::BlockPool::new()) })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(BlobError::UploadNotFound(id.to_owned()));
        }
        Ok(self.root.join("uploads").join(id))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Io { context: "blob store thread".into(), source: std::io::Error::other(e) })?
}

/// Runs `f` on a blocking thread for plain I/O results.
async fn blocking_io<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

fn upload_missing(id: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |e| match e.kind() {
        ErrorKind::NotFound => BlobError::UploadNotFound(id.to_owned()),
        _ => BlobError::Io { context: format!("upload {id}"), source: e },
    }
}

/// Streams `len` bytes of `file` from `offset` through a channel fed by a blocking thread.
fn stream_file(mut file: File, offset: u64, len: u64, what: String) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(IO_CHUNK).min(IO_CHUNK);
            // Read into spare capacity: no zeroing of a buffer the read overwrites anyway.
            let mut buf = Vec::with_capacity(want);
            match (&mut file).take(want as u64).read_to_end(&mut buf) {
                Ok(0) => {
                    let msg = format!("{what} ended {left} bytes early");
                    let _ = tx.blocking_send(Err(std::io::Error::new(ErrorKind::UnexpectedEof, msg)));
                    return;
                }
                Ok(n) => {
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the reader went away
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

/// Step of the page-cache warming: the kernel reads at most its readahead window (typically
/// 8 MiB) per request.
const WARM_STEP: u64 = 8 * 1024 * 1024;
/// How much of a blob is warmed.
const WARM_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
/// Most warming threads at once; beyond it, blobs are not warmed.
const MAX_WARMERS: usize = 2;
static WARMERS: AtomicUsize = AtomicUsize::new(0);

/// Asks the kernel to read a just-committed blob into the page cache, in the background.
/// Blobs are written with O_DIRECT (no copy through the page cache while the push runs), so a
/// pull right after a push, common in build pipelines, would otherwise read from the disk.
/// The reads are the disk's DMA and cost almost no CPU. Best effort: errors are ignored.
fn warm(file: File, size: u64) {
    let len = size.min(WARM_LIMIT);
    let advise = |file: &File, offset: u64, len: u64| {
        let _ = rustix::fs::fadvise(file, offset, std::num::NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
    };
    if len <= WARM_STEP {
        advise(&file, 0, len);
        return;
    }
    if WARMERS.fetch_add(1, Ordering::AcqRel) >= MAX_WARMERS {
        WARMERS.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let spawned = std::thread::Builder::new().name("blob-warm".into()).spawn(move || {
        let mut offset = 0;
        while offset < len {
            advise(&file, offset, WARM_STEP.min(len - offset));
            offset += WARM_STEP;
        }
        WARMERS.fetch_sub(1, Ordering::AcqRel);
    });
    if spawned.is_err() {
        WARMERS.fetch_sub(1, Ordering::AcqRel);
    }
}

fn sync_dir(path: &Path) -> Result<(), BlobError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(BlobError::io(format!("fsync {}", path.display())))
}

/// Modes of what the store creates: blob bytes are private to the node's user (a committed blob
/// keeps its upload file's mode when it is renamed into place).
const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` and any missing parents under `stop`, syncing each parent whose entries changed.
fn create_dir_durable(dir: &Path, stop: &Path) -> Result<(), BlobError> {
    if dir.exists() || dir == stop {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(stop);
    create_dir_durable(parent, stop)?;
    match fs::DirBuilder::new().mode(PRIVATE_DIR).create(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(BlobError::Io { context: format!("create {}", dir.display()), source: e }),
    }
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn create_upload(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        blocking(move || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(PRIVATE_FILE)
                .open(&path)
                .map_err(BlobError::io("create upload"))?;
            Ok(())
        })
        .await
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let id = id.to_owned();
        blocking(move || Ok(fs::metadata(&path).map_err(upload_missing(&id))?.len())).await
    }

    async fn append(&self, id: &str, offset: u64, mut data: ByteStream, observe: Observer) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let owned_id = id.to_owned();
        let (file, direct) = blocking(move || {
            let file = OpenOptions::new().append(true).open(&path).map_err(upload_missing(&owned_id))?;
            let actual = file.metadata().map_err(BlobError::io("stat upload"))?.len();
            if actual != offset {
                return Err(BlobError::OffsetMismatch { id: owned_id, actual, requested: offset });
            }
            Ok((file, writer::open_direct(&path, offset)))
        })
        .await?;
        let (written, body_error) = match direct {
            Some(direct) => {
                let mut out = writer::DirectWriter::new(direct, file, observe, Arc::clone(&self.blocks));
                let mut body_error = None;
                while let Some(item) = data.next().await {
                    match item {
                        // A refused chunk means the writer stopped; finish() says why.
                        Ok(chunk) if out.push(&chunk).await => {}
                        Ok(_) => break,
                        Err(e) => {
                            body_error = Some(e);
                            break;
                        }
                    }
                }
                (blocking_io(move || out.finish()).await, body_error)
            }
            None => {
                let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
                let out = tokio::task::spawn_blocking(move || writer::write_buffered(file, rx, observe));
                let mut body_error = None;
                while let Some(item) = data.next().await {
                    match item {
                        // A closed channel means the writer stopped; its result says why.
                        Ok(chunk) => {
                            if tx.send(chunk).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            body_error = Some(e);
                            break;
                        }
                    }
                }
                drop(tx);
                let written = out.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
                (written, body_error)
            }
        };
        let written = written.map_err(BlobError::io(format!("write upload {id}")))?;
        match body_error {
            Some(e) => Err(BlobError::Body(e)),
            None => Ok(offset + written),
        }
    }

    async fn read_upload(&self, id: &str) -> Result<ByteStream, BlobError> {
        let path = self.upload_path(id)?;
        let id = id.to_owned();
        blocking(move || {
            let file = File::open(&path).map_err(upload_missing(&id))?;
            let len = file.metadata().map_err(BlobError::io("stat upload"))?.len();
            Ok(stream_file(file, 0, len, format!("upload {id}")))
        })
        .await
    }

    async fn commit(&self, id: &str, digest: &Digest) -> Result<u64, BlobError> {
        let src = self.upload_path(id)?;
        let dst = self.blob_path(digest);
        let blobs = self.root.join("blobs");
        let id = id.to_owned();
        blocking(move || {
            let file = File::open(&src).map_err(upload_missing(&id))?;
            let size = file.metadata().map_err(BlobError::io("stat upload"))?.len();
            if dst.exists() {
                fs::remove_file(&src).map_err(BlobError::io("remove duplicate upload"))?;
                return Ok(size);
            }
            file.sync_all().map_err(BlobError::io(format!("fsync upload {id}")))?;
            let parent = dst.parent().unwrap_or(&blobs).to_path_buf();
            create_dir_durable(&parent, &blobs)?;
            fs::rename(&src, &dst).map_err(BlobError::io(format!("rename upload {id} into place")))?;
            sync_dir(&parent)?;
            warm(file, size);
            Ok(size)
        })
        .await
    }

    async fn abort(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Io { context: "remove upload".into(), source: e }),
        })
        .await
    }

    async fn list_uploads(&self) -> Result<Vec<String>, BlobError> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut ids = Vec::new();
            for entry in fs::read_dir(&dir).map_err(BlobError::io(format!("list {}", dir.display())))? {
                let entry = entry.map_err(BlobError::io("list uploads"))?;
                if let Some(name) = entry.file_name().to_str() {
                    ids.push(name.to_owned());
                }
            }
            Ok(ids)
        })
        .await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        let path = self.blob_path(digest);
        blocking(move || match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::Io { context: format!("stat {}", path.display()), source: e }),
        })
        .await
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, BlobError> {
        let path = self.blob_path(digest);
        let digest = digest.clone();
        blocking(move || {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(BlobError::NotFound(digest));
                }
                Err(e) => {
                    return Err(BlobError::Io { context: format!("open blob {digest}"), source: e });
                }
            };
            let size = file.metadata().map_err(BlobError::io("stat blob"))?.len();
            let r = range.unwrap_or(ByteRange { offset: 0, len: size });
            Ok(stream_file(file, r.offset, r.len, format!("blob {digest}")))
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.blob_path(digest);
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::Io { context: format!("delete {}", path.display()), source: e }),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_driver_passes_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("open");
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn upload_ids_cannot_escape_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path().join("s")).expect("open");
        for id in ["../x", "a/b", "", ".", "..", &"a".repeat(65)] {
            assert!(matches!(store.create_upload(id).await, Err(BlobError::UploadNotFound(_))), "{id}");
        }
        assert!(!dir.path().join("x").exists());
    }

    #[tokio::test]
    async fn committed_blob_lands_at_its_digest_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("open");
        let d = crate::conformance::put_blob(&store, "u1", b"hello").await;
        let path = dir.path().join("blobs/sha256").join(&d.hex()[..2]).join(d.hex());
        assert_eq!(fs::read(path).expect("blob file"), b"hello");
        assert_eq!(fs::read_dir(dir.path().join("uploads")).expect("uploads").count(), 0);
    }

    #[tokio::test]
    async fn blob_bytes_are_private_to_the_node_user_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let store = FsBlobStore::open(&root).expect("open");
        let d = crate::conformance::put_blob(&store, "u1", b"a private layer").await;
        store.create_upload("u2").await.expect("upload");
        let blob = root.join("blobs/sha256").join(&d.hex()[..2]).join(d.hex());
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        for folder in [root.join("blobs"), root.join("uploads"), root.join("blobs/sha256"), blob.with_file_name("")] {
            assert_eq!(mode(&folder), 0o700, "{}", folder.display());
        }
        assert_eq!(mode(&blob), 0o600);
        assert_eq!(mode(&root.join("uploads/u2")), 0o600);
    }
}
