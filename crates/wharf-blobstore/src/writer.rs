//! How the filesystem driver writes an append: the stages that move bytes from the request
//! to the disk, each on its own thread so they overlap.
//!
//! From an aligned offset, chunks are copied into aligned blocks; full blocks go to an
//! observer stage (the registry hashes there) and then to a disk stage that writes them with
//! O_DIRECT. Passing 2 MiB blocks between stages, rather than the request's ~100 KiB chunks,
//! keeps thread hand-offs rare. An append shorter than one block needs no extra threads.
//! From an unaligned offset, or where direct I/O is refused, chunks are written buffered.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::Observer;

/// Alignment of O_DIRECT buffers, offsets and lengths.
const ALIGN: usize = 4096;
/// Size of the blocks passed between stages and written with O_DIRECT.
const BLOCK: usize = 2 * 1024 * 1024;
/// Most blocks one append has in flight.
const MAX_BLOCKS: usize = 4;
/// Memory for the second and later blocks of all concurrent appends together; every append
/// gets its first block regardless, so none waits on another.
const EXTRA_BUDGET: usize = 16 * BLOCK;
/// Idle blocks kept for the next appends, so their memory is not faulted in again.
const MAX_IDLE: usize = 8;
/// Buffer of the buffered writer.
const BUFFER: usize = 1024 * 1024;
/// During a long buffered append, ask for writeback after this many bytes, so the final fsync
/// of a large blob only waits for the tail instead of the whole file.
const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;

/// Opens `path` for O_DIRECT writes at `offset`, when the offset is aligned and the filesystem
/// supports it. Direct writes skip the page cache: copying a large blob into the page cache
/// costs as much CPU as hashing it, and the disk would have to be written anyway.
pub(crate) fn open_direct(path: &Path, offset: u64) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !offset.is_multiple_of(ALIGN as u64) {
        return None;
    }
    let mut file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    Some(file)
}

/// A heap buffer whose usable part starts at an [`ALIGN`] boundary.
#[derive(Debug)]
struct AlignedBlock {
    raw: Vec<u8>,
    pad: usize,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let raw = vec![0u8; BLOCK + ALIGN];
        let pad = raw.as_ptr().align_offset(ALIGN);
        AlignedBlock { raw, pad }
    }

    fn bytes(&self) -> &[u8] {
        &self.raw[self.pad..self.pad + BLOCK]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.pad..self.pad + BLOCK]
    }
}

/// The blocks of all appends of one blob store: idle blocks for reuse, and the budget for
/// blocks beyond each append's first.
#[derive(Debug)]
pub(crate) struct BlockPool {
    idle: Mutex<Vec<AlignedBlock>>,
    extra_budget: AtomicUsize,
}

impl BlockPool {
    pub(crate) fn new() -> BlockPool {
        BlockPool { idle: Mutex::new(Vec::new()), extra_budget: AtomicUsize::new(EXTRA_BUDGET) }
    }

    fn take(&self) -> AlignedBlock {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_else(AlignedBlock::new)
    }

    /// An append's block beyond its first, if the shared budget allows.
    fn take_extra(&self) -> Option<AlignedBlock> {
        self.extra_budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(BLOCK)).ok()?;
        Some(self.take())
    }

    fn give_back(&self, block: AlignedBlock) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(block);
        }
    }

    fn release_extras(&self, extras: usize) {
        self.extra_budget.fetch_add(extras * BLOCK, Ordering::AcqRel);
    }
}

/// Writes `data`: the aligned part through `direct`, the rest through `buffered`. Once the
/// filesystem refuses a direct write before anything was written, `use_direct` turns off.
fn write_block(
    direct: &mut File,
    buffered: &mut File,
    data: &[u8],
    use_direct: &mut bool,
    written: u64,
) -> std::io::Result<()> {
    let aligned = if *use_direct { data.len() / ALIGN * ALIGN } else { 0 };
    if aligned > 0 {
        match direct.write_all(&data[..aligned]) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::InvalidInput && written == 0 => {
                *use_direct = false;
                buffered.write_all(&data[..aligned])?;
            }
            Err(e) => return Err(e),
        }
    }
    buffered.write_all(&data[aligned..])
}

/// The observer and disk stages, started when an append fills its first block.
struct Pipeline {
    to_observer: SyncSender<(AlignedBlock, usize)>,
    free: mpsc::UnboundedReceiver<AlignedBlock>,
    observer: JoinHandle<()>,
    disk: JoinHandle<std::io::Result<u64>>,
    blocks: usize,
}

impl Pipeline {
    fn start(mut direct: File, mut buffered: File, mut observe: Observer) -> Pipeline {
        // Both queues hold every block there can be, so sending to them never blocks.
        let (to_observer, observer_rx) = sync_channel::<(AlignedBlock, usize)>(MAX_BLOCKS);
        let (to_disk, disk_rx) = sync_channel::<(AlignedBlock, usize)>(MAX_BLOCKS);
        let (free_tx, free) = mpsc::unbounded_channel::<AlignedBlock>();
        let observer = std::thread::spawn(move || {
            for (block, len) in observer_rx {
                observe(&block.bytes()[..len]);
                if to_disk.send((block, len)).is_err() {
                    return; // the disk stage failed; it reports why
                }
            }
        });
        let disk = std::thread::spawn(move || {
            let mut use_direct = true;
            let mut written = 0u64;
            for (block, len) in disk_rx {
                write_block(&mut direct, &mut buffered, &block.bytes()[..len], &mut use_direct, written)?;
                written += len as u64;
                let _: Result<(), _> = free_tx.send(block);
            }
            Ok(written)
        });
        Pipeline { to_observer, free, observer, disk, blocks: 1 }
    }

    /// Hands a filled block on; returns the block to fill next (free, new within the budget,
    /// or the next one the disk stage gives back), or `None` if a stage stopped.
    async fn submit(&mut self, block: AlignedBlock, len: usize, pool: &BlockPool) -> Option<AlignedBlock> {
        self.to_observer.try_send((block, len)).ok()?;
        if let Ok(block) = self.free.try_recv() {
            return Some(block);
        }
        if self.blocks < MAX_BLOCKS
            && let Some(block) = pool.take_extra()
        {
            self.blocks += 1;
            return Some(block);
        }
        self.free.recv().await
    }

    /// Waits for both stages; returns the bytes the disk stage wrote.
    fn finish(mut self, pool: &BlockPool) -> std::io::Result<u64> {
        drop(self.to_observer);
        let observed = self.observer.join();
        let written = self.disk.join();
        while let Ok(block) = self.free.try_recv() {
            pool.give_back(block);
        }
        pool.release_extras(self.blocks - 1);
        if observed.is_err() {
            return Err(std::io::Error::other("observer stage panicked"));
        }
        written.map_err(|_| std::io::Error::other("disk stage panicked"))?
    }
}

/// Writes an append with O_DIRECT. The request task copies chunks into aligned blocks
/// ([`DirectWriter::push`]); full blocks go through the observer and disk stages. `observe`
/// sees every written byte once, in order.
pub(crate) struct DirectWriter {
    idle: Option<(File, File, Observer)>,
    pipeline: Option<Pipeline>,
    current: Option<AlignedBlock>,
    fill: usize,
    pool: Arc<BlockPool>,
}

impl DirectWriter {
    pub(crate) fn new(direct: File, buffered: File, observe: Observer, pool: Arc<BlockPool>) -> DirectWriter {
        DirectWriter {
            idle: Some((direct, buffered, observe)),
            pipeline: None,
            current: Some(pool.take()),
            fill: 0,
            pool,
        }
    }

    /// Takes a chunk; returns false once a stage has stopped (`finish` says why).
    pub(crate) async fn push(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let Some(block) = self.current.as_mut() else { return false };
            let n = (BLOCK - self.fill).min(data.len());
            block.bytes_mut()[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == BLOCK {
                if let Some((direct, buffered, observe)) = self.idle.take() {
                    self.pipeline = Some(Pipeline::start(direct, buffered, observe));
                }
                let (Some(p), Some(full)) = (self.pipeline.as_mut(), self.current.take()) else { return false };
                self.current = p.submit(full, BLOCK, &self.pool).await;
                self.fill = 0;
            }
        }
        true
    }

    /// Writes what is left and waits for the stages; returns the bytes written. Blocks: call
    /// it on a blocking thread.
    pub(crate) fn finish(mut self) -> std::io::Result<u64> {
        let fill = self.fill;
        match (self.pipeline.take(), self.idle.take()) {
            (Some(p), _) => {
                match self.current.take() {
                    // The queue has room for every block, so this does not wait.
                    Some(last) if fill > 0 => {
                        let _ = p.to_observer.try_send((last, fill));
                    }
                    Some(unused) => self.pool.give_back(unused),
                    None => {}
                }
                p.finish(&self.pool)
            }
            // Shorter than one block: observe and write here.
            (None, Some((mut direct, mut buffered, mut observe))) => {
                let Some(block) = self.current.take() else { return Ok(0) };
                let data = &block.bytes()[..fill];
                observe(data);
                let written = write_block(&mut direct, &mut buffered, data, &mut true, 0);
                self.pool.give_back(block);
                written.map(|()| fill as u64)
            }
            (None, None) => Err(std::io::Error::other("append pipeline lost its files")),
        }
    }
}

/// Writes the chunks from `rx` to `file` through the page cache; returns the bytes written.
/// Every [`WRITEBACK_EVERY`] bytes a helper thread runs `fdatasync`, which starts the disk
/// writing while more data arrives (the durable point is still the commit's `fsync`).
pub(crate) fn write_buffered(file: File, mut rx: mpsc::Receiver<Bytes>, mut observe: Observer) -> std::io::Result<u64> {
    let mut flusher: Option<(SyncSender<()>, JoinHandle<()>)> = None;
    let mut out = BufWriter::with_capacity(BUFFER, file);
    let mut written = 0u64;
    let mut since_flush = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        observe(&chunk);
        out.write_all(&chunk)?;
        written += chunk.len() as u64;
        since_flush += chunk.len() as u64;
        if since_flush >= WRITEBACK_EVERY {
            since_flush = 0;
            out.flush()?;
            if flusher.is_none() {
                let handle = out.get_ref().try_clone()?;
                let (tx, rx) = sync_channel::<()>(1);
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
