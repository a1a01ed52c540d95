//! [`LogStore`]: the Raft log, the vote and the committed id in a redb file of their own.
//! Every write is one redb transaction committed with fsync before it is acknowledged (an
//! append signals openraft only once its entries are durable).

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{TypeConfig, io_error};

/// index -> postcard-encoded entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// "vote" | "committed" | "last_purged" -> postcard-encoded value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// The Raft log on redb. Clones share the database (the log reader is a clone).
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Arc<Database>,
    /// Whether a commit since the last durable one waits for the disk.
    dirty: Arc<std::sync::atomic::AtomicBool>,
}

/// How often a manager makes the saved committed log id durable ([`LogStore::flush`]).
pub const COMMITTED_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

impl LogStore {
    /// Opens or creates the log at `path`.
    pub fn open(path: &Path) -> io::Result<LogStore> {
        // Created private first: redb takes an empty file as a new database.
        crate::create_private(path, false)?;
        let db = Database::create(path).map_err(io_error)?;
        let txn = db.begin_write().map_err(io_error)?;
        txn.open_table(LOG).map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?;
        txn.commit().map_err(io_error)?;
        Ok(LogStore { db: Arc::new(db), dirty: Arc::default() })
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(META).map_err(io_error)?;
        match table.get(key).map_err(io_error)? {
            Some(raw) => Ok(Some(postcard::from_bytes(raw.value()).map_err(io_error)?)),
            None => Ok(None),
        }
    }

    /// Like [`LogStore::set_meta`] without waiting for the disk: the value is durable with the
    /// next durable commit (an append, a vote, or [`LogStore::flush`]).
    fn set_meta_lazily<T: Serialize>(&self, key: &str, value: &T) -> io::Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(io_error)?;
        let mut txn = self.db.begin_write().map_err(io_error)?;
        txn.set_durability(redb::Durability::None).map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?.insert(key, bytes.as_slice()).map_err(io_error)?;
        txn.commit().map_err(io_error)?;
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Makes every commit so far durable, if one is not: the committed log id is saved without
    /// waiting for the disk, and a manager calls this every [`COMMITTED_FLUSH`] and when it
    /// stops, so that what a crash can lose of it is bounded.
    pub fn flush(&self) -> io::Result<()> {
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.db.begin_write().map_err(io_error)?.commit().map_err(io_error)?;
        }
        Ok(())
    }

    fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> io::Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(io_error)?;
        let txn = self.db.begin_write().map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?.insert(key, bytes.as_slice()).map_err(io_error)?;
        txn.commit().map_err(io_error)
    }

    /// Removes the entries whose index is in `range`, and optionally sets a meta value, in one
    /// transaction.
    fn remove(&self, range: impl RangeBounds<u64>, meta: Option<(&str, Vec<u8>)>) -> io::Result<()> {
        let txn = self.db.begin_write().map_err(io_error)?;
        {
            let mut log = txn.open_table(LOG).map_err(io_error)?;
            log.retain_in(range, |_, _| false).map_err(io_error)?;
            if let Some((key, value)) = meta {
                txn.open_table(META).map_err(io_error)?.insert(key, value.as_slice()).map_err(io_error)?;
            }
        }
        txn.commit().map_err(io_error)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let log = txn.open_table(LOG).map_err(io_error)?;
        let mut entries = Vec::new();
        for item in log.range(range).map_err(io_error)? {
            let (_, raw) = item.map_err(io_error)?;
            entries.push(postcard::from_bytes(raw.value()).map_err(io_error)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.meta("vote")
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogIdOf<TypeConfig>> = self.meta("last_purged")?;
        let txn = self.db.begin_read().map_err(io_error)?;
        let log = txn.open_table(LOG).map_err(io_error)?;
        let last = match log.last().map_err(io_error)? {
            Some((_, raw)) => {
                let entry: EntryOf<TypeConfig> = postcard::from_bytes(raw.value()).map_err(io_error)?;
                Some(entry.log_id)
            }
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.set_meta("vote", vote)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        self.set_meta_lazily("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self.meta::<Option<LogIdOf<TypeConfig>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = (|| {
            let txn = self.db.begin_write().map_err(io_error)?;
            {
                let mut log = txn.open_table(LOG).map_err(io_error)?;
                for entry in entries {
                    let bytes = postcard::to_allocvec(&entry).map_err(io_error)?;
                    log.insert(entry.log_id.index(), bytes.as_slice()).map_err(io_error)?;
                }
            }
            txn.commit().map_err(io_error)
        })();
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io_error(&e)));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        match last_log_id {
            Some(id) => self.remove(id.index() + 1.., None),
            None => self.remove(.., None),
        }
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        let bytes = postcard::to_allocvec(&log_id).map_err(io_error)?;
        self.remove(..=log_id.index(), Some(("last_purged", bytes)))
    }
}
