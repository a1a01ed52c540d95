//! [`StateMachine`]: applies committed entries to [`wharf_store::Store`], recording the last
//! applied log id and membership in the same transaction as the commands (a crash never
//! separates them), and keeps the current snapshot as two files: `current.snap` (the store's
//! export) and `current.meta`, each written through a synced temporary file and a rename.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use serde::{Deserialize, Serialize};
use wharf_store::{Command, Store};

use crate::{Applied, TypeConfig, io_error};

/// What the store's applied marker holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Marker {
    last_applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

/// The state machine: the state store plus the folder of its current snapshot.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    dir: PathBuf,
    /// Makes temporary file names unique among concurrent snapshot writes.
    seq: Arc<AtomicU64>,
}

impl StateMachine {
    /// A state machine over `store`, keeping snapshots in `dir`.
    pub fn open(store: Arc<Store>, dir: &Path) -> io::Result<StateMachine> {
        use std::os::unix::fs::DirBuilderExt;
        // Snapshots hold the whole state: private to the node's user, like every file it keeps.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(StateMachine { store, dir: dir.to_path_buf(), seq: Arc::new(AtomicU64::new(0)) })
    }

    fn marker(&self) -> io::Result<Marker> {
        match self.store.applied_marker().map_err(io_error)? {
            Some(raw) => postcard::from_bytes(&raw).map_err(io_error),
            None => Ok(Marker::default()),
        }
    }

    fn tmp(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.{}.tmp", self.seq.fetch_add(1, Ordering::Relaxed)))
    }

    /// Replaces `dir/name` with what `write` produces, durably.
    fn replace(&self, name: &str, write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> io::Result<()> {
        let tmp = self.tmp(name);
        let mut out = BufWriter::new(crate::create_private(&tmp, true)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(name))?;
        File::open(&self.dir)?.sync_all()
    }

    fn current(&self) -> io::Result<Option<SnapshotOf<TypeConfig, File>>> {
        let meta = match std::fs::read(self.dir.join("current.meta")) {
            Ok(raw) => postcard::from_bytes::<SnapshotMetaOf<TypeConfig>>(&raw).map_err(io_error)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Snapshot { meta, snapshot: File::open(self.dir.join("current.snap"))? }))
    }

    fn write_meta(&self, meta: &SnapshotMetaOf<TypeConfig>) -> io::Result<()> {
        let bytes = postcard::to_allocvec(meta).map_err(io_error)?;
        self.replace("current.meta", |out| out.write_all(&bytes))
    }
}

/// Applies every entry `log` holds beyond what the state machine applied, and makes the store
/// durable: for turning a manager's files into a new one-member group while it is stopped
/// (`wharf recover`, or a standalone node becoming a cluster), before the log goes.
///
/// Not only the entries known to be committed: the saved commit index lags behind (it is
/// written lazily), and in a one-member group every entry on disk was committed when it was
/// written. As with etcd's `--force-new-cluster`, the new group commits all of the log.
pub async fn apply_whole_log(log: &mut crate::LogStore, sm: &mut StateMachine) -> io::Result<()> {
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    let last = log.get_log_state().await?.last_log_id;
    let (applied, _) = sm.applied_state().await?;
    if let Some(last) = last
        && applied.as_ref().is_none_or(|a| a.index < last.index)
    {
        let from = applied.map_or(0, |a| a.index + 1);
        let entries = log.try_get_log_entries(from..=last.index).await?;
        sm.apply(futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))))).await?;
    }
    sm.store.flush().map_err(io_error)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = File;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, File>, io::Error> {
        let mut marker = None;
        self.replace("current.snap", |out| {
            marker = self.store.export(out).map_err(io_error)?;
            Ok(())
        })?;
        let marker: Marker = match marker {
            Some(raw) => postcard::from_bytes(&raw).map_err(io_error)?,
            None => Marker::default(),
        };
        let meta =
            SnapshotMetaOf::<TypeConfig> { last_log_id: marker.last_applied, last_membership: marker.membership };
        self.write_meta(&meta)?;
        tracing::info!(last_log_id = ?meta.last_log_id, "built a snapshot of the state");
        Ok(Snapshot { meta, snapshot: File::open(self.dir.join("current.snap"))? })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = File;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let marker = self.marker()?;
        Ok((marker.last_applied, marker.membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let items: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if items.is_empty() {
            return Ok(());
        }
        let mut marker = self.marker()?;
        let mut commands: Vec<Command> = Vec::new();
        // For each entry: its responder and, for a command, its place in `commands`.
        let mut replies = Vec::with_capacity(items.len());
        for (entry, responder) in items {
            let index = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(versioned) => {
                    commands.push(versioned.into_command());
                    Some(commands.len() - 1)
                }
                EntryPayload::Membership(membership) => {
                    marker.membership = StoredMembership::new(Some(entry.log_id), membership);
                    None
                }
            };
            marker.last_applied = Some(entry.log_id);
            replies.push((responder, index));
        }
        let encoded = postcard::to_allocvec(&marker).map_err(io_error)?;
        // Not waiting for the disk here is safe: the entries are durable in the Raft log, which
        // is purged only up to a snapshot, and a snapshot flushes the store first; after a
        // crash the store is at an earlier marker and Raft applies the rest again.
        let results = self.store.apply_marked_lazily(&commands, &encoded).map_err(io_error)?;
        for (responder, index) in replies {
            let applied = match index.and_then(|i| results.get(i)) {
                None => Applied::Nothing,
                Some(Ok(outcome)) => Applied::Done(outcome.clone()),
                Some(Err(e)) => e.refusal().cloned().map_or_else(|| Applied::Failed(e.to_string()), Applied::Refused),
            };
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        mut snapshot: File,
    ) -> Result<(), io::Error> {
        let marker = Marker { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        let encoded = postcard::to_allocvec(&marker).map_err(io_error)?;
        snapshot.seek(SeekFrom::Start(0))?;
        self.store.import(&mut BufReader::new(&mut snapshot), &encoded).map_err(io_error)?;
        snapshot.seek(SeekFrom::Start(0))?;
        self.replace("current.snap", |out| io::copy(&mut snapshot, out).map(|_| ()))?;
        self.write_meta(meta)?;
        tracing::info!(last_log_id = ?meta.last_log_id, "installed a snapshot of the state");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, File>>, io::Error> {
        self.current()
    }
}
