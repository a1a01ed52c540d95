//! The filesystem driver: content-addressed files under `blobs/<algorithm>/<2 hex>/<hex>`,
//! uploads as files under `uploads/<id>`.
//!
//! Crash safety: an upload only becomes a blob by `rename` after `fsync` of its file, followed
//! by an `fsync` of the directory, so a blob path either does not exist or holds the complete,
//! durable bytes. Blobs are deduplicated across repositories because the path is the digest.
//! Data moves through bounded channels between the request task and one blocking thread per
//! transfer, so no blob is ever held whole in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;
use wharf_api::Digest;
use wharf_api::range::ByteRange;

use crate::{BlobError, BlobStore, ByteStream};

/// Size of the chunks read from disk and of the writer's buffer.
const IO_CHUNK: usize = 1024 * 1024;
/// During a long append, ask for writeback after this many bytes, so the final fsync of a
/// large blob only waits for the tail instead of the whole file.
const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;
/// Chunks in flight between a request task and its disk thread.
const CHANNEL_DEPTH: usize = 8;

/// Blob storage in a local directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    /// Bytes left for extra O_DIRECT blocks, shared by all appends.
    direct_budget: Arc<AtomicUsize>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a blob store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsBlobStore, BlobError> {
        let root = root.into();
        for dir in [root.join("blobs"), root.join("uploads")] {
            fs::create_dir_all(&dir).map_err(BlobError::io(format!("create {}", dir.display())))?;
        }
        Ok(FsBlobStore { root, direct_budget: Arc::new(AtomicUsize::new(DIRECT_EXTRA_BUDGET)) })
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

fn upload_missing(id: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |e| match e.kind() {
        ErrorKind::NotFound => BlobError::UploadNotFound(id.to_owned()),
        _ => BlobError::Io { context: format!("upload {id}"), source: e },
    }
}

/// Streams `len` bytes of `file` from `offset` through a channel fed by a blocking thread.
fn stream_file(mut file: File, offset: u64, len: u64, what: String) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(IO_CHUNK).min(IO_CHUNK);
            let mut buf = BytesMut::zeroed(want);
            match file.read(&mut buf) {
                Ok(0) => {
                    let msg = format!("{what} ended {left} bytes early");
                    let _ = tx.blocking_send(Err(std::io::Error::new(ErrorKind::UnexpectedEof, msg)));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(buf.freeze())).is_err() {
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

/// Alignment of O_DIRECT buffers, offsets and lengths.
const DIRECT_ALIGN: usize = 4096;
/// Size of the blocks written with O_DIRECT.
const DIRECT_BLOCK: usize = 2 * 1024 * 1024;
/// Memory for the second and later blocks of all concurrent appends together; every append
/// gets its first block regardless, so none waits on another.
const DIRECT_EXTRA_BUDGET: usize = 16 * DIRECT_BLOCK;

/// Opens `path` for O_DIRECT writes at `offset`, when the offset is aligned and the filesystem
/// supports it. Direct writes skip the page cache: on this class of machine copying a large
/// blob into the page cache costs more CPU than hashing it.
fn open_direct(path: &Path, offset: u64) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !offset.is_multiple_of(DIRECT_ALIGN as u64) {
        return None;
    }
    let mut file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    Some(file)
}

/// Most blocks in rotation between the thread that fills them and the thread that writes them.
const DIRECT_BLOCKS: usize = 4;

/// A heap buffer whose usable part starts at a [`DIRECT_ALIGN`] boundary.
struct AlignedBlock {
    raw: Vec<u8>,
    pad: usize,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let raw = vec![0u8; DIRECT_BLOCK + DIRECT_ALIGN];
        let pad = raw.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBlock { raw, pad }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.raw[self.pad..self.pad + DIRECT_BLOCK]
    }
}

/// Writes chunks from `rx` in aligned blocks: this thread copies chunks into blocks while a
/// second thread writes full blocks with O_DIRECT, so the disk and the copy overlap.
fn write_direct(
    direct: File,
    buffered: File,
    mut rx: mpsc::Receiver<Bytes>,
    budget: &AtomicUsize,
) -> std::io::Result<u64> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(AlignedBlock, usize)>(DIRECT_BLOCKS);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<AlignedBlock>();
    let disk = std::thread::spawn(move || write_blocks(direct, buffered, full_rx, free_tx));
    let mut current = Some(AlignedBlock::new());
    let mut blocks = 1;
    // Another block when one is free, a new one while the budget allows, else wait for one.
    let mut next_block = || {
        if let Ok(block) = free_rx.try_recv() {
            return Some(block);
        }
        if blocks < DIRECT_BLOCKS
            && budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(DIRECT_BLOCK)).is_ok()
        {
            blocks += 1;
            return Some(AlignedBlock::new());
        }
        free_rx.recv().ok()
    };
    let mut fill = 0;
    let mut total = 0u64;
    'chunks: while let Some(chunk) = rx.blocking_recv() {
        let mut data = &chunk[..];
        while !data.is_empty() {
            // No block means the disk thread stopped; its error is returned below.
            let Some(block) = current.as_mut() else { break 'chunks };
            let n = (DIRECT_BLOCK - fill).min(data.len());
            block.bytes()[fill..fill + n].copy_from_slice(&data[..n]);
            fill += n;
            total += n as u64;
            data = &data[n..];
            if fill == DIRECT_BLOCK {
                if let Some(block) = current.take()
                    && full_tx.send((block, fill)).is_ok()
                {
                    current = next_block();
                }
                fill = 0;
            }
        }
    }
    if let Some(block) = current.take()
        && fill > 0
    {
        let _ = full_tx.send((block, fill));
    }
    drop(full_tx);
    let written = disk.join().map_err(|_| std::io::Error::other("direct writer panicked"));
    budget.fetch_add((blocks - 1) * DIRECT_BLOCK, Ordering::AcqRel);
    let written = written??;
    debug_assert!(written <= total);
    Ok(written)
}

/// The disk side of [`write_direct`]: writes each block's aligned part with O_DIRECT and any
/// unaligned tail through the buffered handle. If the filesystem refuses direct I/O on the
/// first write, everything goes through the buffered handle instead.
fn write_blocks(
    mut direct: File,
    mut buffered: File,
    full: std::sync::mpsc::Receiver<(AlignedBlock, usize)>,
    free: std::sync::mpsc::Sender<AlignedBlock>,
) -> std::io::Result<u64> {
    let mut use_direct = true;
    let mut written = 0u64;
    for (mut block, len) in full {
        let data = &block.bytes()[..len];
        let aligned = if use_direct { len / DIRECT_ALIGN * DIRECT_ALIGN } else { 0 };
        if aligned > 0 {
            match direct.write_all(&data[..aligned]) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::InvalidInput && written == 0 => {
                    use_direct = false;
                    buffered.write_all(&data[..aligned])?;
                }
                Err(e) => return Err(e),
            }
        }
        buffered.write_all(&data[aligned..])?;
        written += len as u64;
        let _ = free.send(block);
    }
    Ok(written)
}

/// Writes chunks from `rx` to `file` until the sender goes away; returns the bytes written.
/// Every [`WRITEBACK_EVERY`] bytes a helper thread runs `fdatasync`, which starts the disk
/// writing while more data arrives (the durable point is still the commit's `fsync`).
fn write_chunks(file: File, mut rx: mpsc::Receiver<Bytes>) -> std::io::Result<u64> {
    let mut flusher: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> = None;
    let mut out = BufWriter::with_capacity(IO_CHUNK, file);
    let mut written = 0u64;
    let mut since_flush = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        out.write_all(&chunk)?;
        written += chunk.len() as u64;
        since_flush += chunk.len() as u64;
        if since_flush >= WRITEBACK_EVERY {
            since_flush = 0;
            out.flush()?;
            if flusher.is_none() {
                let handle = out.get_ref().try_clone()?;
                let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
                let thread = std::thread::spawn(move || {
                    while rx.recv().is_ok() {
                        let _ = handle.sync_data();
                    }
                });
                flusher = Some((tx, thread));
            }
            if let Some((tx, _)) = &flusher {
                let _ = tx.try_send(()); // one request pending is enough
            }
        }
    }
    out.flush()?;
    if let Some((tx, thread)) = flusher {
        drop(tx);
        let _ = thread.join();
    }
    Ok(written)
}

fn sync_dir(path: &Path) -> Result<(), BlobError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(BlobError::io(format!("fsync {}", path.display())))
}

/// Creates `dir` and any missing parents under `stop`, syncing each parent whose entries changed.
fn create_dir_durable(dir: &Path, stop: &Path) -> Result<(), BlobError> {
    if dir.exists() || dir == stop {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(stop);
    create_dir_durable(parent, stop)?;
    match fs::create_dir(dir) {
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
            OpenOptions::new().create(true).append(true).open(&path).map_err(BlobError::io("create upload"))?;
            Ok(())
        })
        .await
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let id = id.to_owned();
        blocking(move || Ok(fs::metadata(&path).map_err(upload_missing(&id))?.len())).await
    }

    async fn append(&self, id: &str, offset: u64, mut data: ByteStream) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let owned_id = id.to_owned();
        let file = blocking(move || {
            let file = OpenOptions::new().append(true).open(&path).map_err(upload_missing(&owned_id))?;
            let actual = file.metadata().map_err(BlobError::io("stat upload"))?.len();
            if actual != offset {
                return Err(BlobError::OffsetMismatch { id: owned_id, actual, requested: offset });
            }
            Ok(file)
        })
        .await?;
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let direct_path = self.upload_path(id)?;
        let budget = Arc::clone(&self.direct_budget);
        let writer = tokio::task::spawn_blocking(move || match open_direct(&direct_path, offset) {
            Some(direct) => write_direct(direct, file, rx, &budget),
            None => write_chunks(file, rx),
        });
        let mut body_error = None;
        while let Some(item) = data.next().await {
            match item {
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| BlobError::Io { context: "upload writer".into(), source: std::io::Error::other(e) })?
            .map_err(BlobError::io(format!("write upload {id}")))?;
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
}
