//! [`Store`]: opening the database, applying commands, and reading state.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use wharf_api::Digest;

use crate::accounts;
use crate::command::{Command, Outcome};
use crate::records::{BlobPlacement, ManifestRecord, StoredManifest, StoredUpload, UploadRecord, UploadSegment};
use crate::refusal::Refusal;
use crate::tables::{
    BLOB_HOLDERS, BLOB_LINKS, BLOBS, MANIFESTS, META, REFERRERS, REPO_SETTINGS, REPOS, SCHEMA_VERSION, SESSIONS, TAGS,
    UPLOADS, USER_SESSIONS, USERS,
};
use crate::tag_cache::{MIN_TAGS, TagCache};

/// Why the store did not apply a command or answer a read: the state refused the command
/// (a result, decided the same way on every manager), or the database failed (a fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("database holds format version {0}, this Wharf reads version {SCHEMA_VERSION}")]
    Version(u64),
    #[error("decode stored value: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot: {0}")]
    Snapshot(String),
}

impl StoreError {
    /// Whether the command was refused by the state (it wrote nothing), rather than the
    /// database failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_))
    }

    /// The refusal this error is, if it is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            StoreError::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// One page of a listing: the items, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

/// The state store.
#[derive(Debug)]
pub struct Store {
    pub(crate) db: Database,
    pub(crate) tag_cache: TagCache,
    /// Bumped after every committed change to accounts, sessions or repository settings, so
    /// that caches of authorisation decisions know when to look again.
    access_generation: AtomicU64,
    /// Commits made without waiting for the disk since the last durable one.
    pub(crate) lazy_commits: AtomicU64,
    /// Which domains changed, for subscribers.
    feed: crate::feed::Feed,
}

impl Store {
    /// Opens or creates the database at `path` and checks its format version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // The state holds accounts and sealed secrets: the file is private to the node's user
        // (created empty first, which redb takes as a new database).
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Db(redb::StorageError::Io(e).into()))?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get("schema")?.map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => return Err(StoreError::Version(other)),
            }
            txn.open_table(REPOS)?;
            txn.open_table(BLOBS)?;
            txn.open_table(BLOB_LINKS)?;
            txn.open_table(BLOB_HOLDERS)?;
            txn.open_table(crate::tables::UPLOAD_SEGMENTS)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(TAGS)?;
            txn.open_table(REFERRERS)?;
            txn.open_table(UPLOADS)?;
            txn.open_table(USERS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(USER_SESSIONS)?;
            txn.open_table(REPO_SETTINGS)?;
            txn.open_table(crate::tables::APPLIED)?;
            txn.open_table(crate::tables::NODES)?;
            txn.open_table(crate::tables::CLUSTER)?;
            txn.open_table(crate::tables::COUNTERS)?;
            txn.open_table(crate::tables::OWNER_UPLOADS)?;
            txn.open_table(crate::tables::BUNDLES)?;
            txn.open_table(crate::tables::SERVICES)?;
            txn.open_table(crate::tables::SERVICE_REGISTRY_AUTH)?;
            txn.open_table(crate::tables::SERVICE_UPDATES)?;
            txn.open_table(crate::tables::SECRETS)?;
            txn.open_table(crate::tables::NETWORKS)?;
            txn.open_table(crate::tables::TASKS)?;
            txn.open_table(crate::tables::SERVICE_TASKS)?;
            txn.open_table(crate::tables::CONTAINERS)?;
            txn.open_table(crate::tables::CONTAINER_NAMES)?;
            txn.open_table(crate::tables::NODE_TASKS)?;
            txn.open_table(crate::tables::NODE_DETAILS)?;
            txn.open_table(crate::tables::ORGS)?;
            txn.open_table(crate::tables::TEAMS)?;
            txn.open_table(crate::tables::COLLECTIONS)?;
            txn.open_table(crate::tables::ROLES)?;
            txn.open_table(crate::tables::GRANTS)?;
            txn.open_table(crate::tables::IDENTITY_SETTINGS)?;
            txn.open_table(crate::tables::REPO_ACCESS)?;
            txn.open_table(crate::tables::AUDIT)?;
            txn.open_table(crate::tables::TOKEN_SCOPES)?;
        }
        txn.commit()?;
        Ok(Store {
            db,
            tag_cache: TagCache::default(),
            access_generation: AtomicU64::new(0),
            lazy_commits: AtomicU64::new(0),
            feed: crate::feed::Feed::default(),
        })
    }

    /// Applies one command atomically and durably. A refused command changes nothing.
    pub fn apply(&self, command: impl Into<Command>) -> Result<Outcome, StoreError> {
        let command = command.into();
        let txn = self.db.begin_write()?;
        let outcome = apply_in(&txn, &command)?;
        txn.commit()?;
        self.after_commit(&command);
        Ok(outcome)
    }

    /// Applies commands in order in one transaction with one fsync (group commit). Each result
    /// is what [`Store::apply`] would have returned for that command in that order: a refused
    /// command writes nothing and the others still apply. If the database itself fails, the
    /// transaction is dropped and the commands are applied one by one instead.
    pub fn apply_batch(&self, commands: &[Command]) -> Vec<Result<Outcome, StoreError>> {
        if let [command] = commands {
            return vec![self.apply(command)];
        }
        match self.try_batch(commands) {
            Ok(results) => results,
            Err(_) => commands.iter().map(|c| self.apply(c)).collect(),
        }
    }

    fn try_batch(&self, commands: &[Command]) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        self.commit_batch(commands, None, true)
    }

    /// Applies `commands` in one transaction (and writes `marker`, if given), commits with one
    /// fsync, then invalidates caches. Refusals are results; a database failure drops it all.
    pub(crate) fn commit_batch(
        &self,
        commands: &[Command],
        marker: Option<&[u8]>,
        durable: bool,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None).map_err(redb::Error::from)?;
        }
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            match apply_in(&txn, command) {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(e) if e.is_refusal() => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        if let Some(marker) = marker {
            txn.open_table(crate::tables::APPLIED)?.insert("marker", marker)?;
        }
        txn.commit()?;
        for (command, result) in commands.iter().zip(&results) {
            if result.is_ok() {
                self.after_commit(command);
            }
        }
        Ok(results)
    }

    /// Invalidates what caches `command` made stale.
    pub(crate) fn after_commit(&self, command: &Command) {
        match command {
            Command::Registry(command) => {
                if let Some(repo) = crate::registry::tags_changed(command) {
                    self.tag_cache.invalidate(repo);
                }
            }
            Command::Accounts(command) if accounts::changes_access(command) => {
                self.access_generation.fetch_add(1, Ordering::Release);
            }
            Command::Identity(_) => {
                self.access_generation.fetch_add(1, Ordering::Release);
            }
            _ => {}
        }
        self.feed.committed(command);
    }

    /// The change feed: the latest [`crate::Changes`], and a wake-up after each commit.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<crate::Changes> {
        self.feed.subscribe()
    }

    /// Drops every cache: the whole state was replaced.
    pub(crate) fn after_replace(&self) {
        self.tag_cache.invalidate_all();
        self.access_generation.fetch_add(1, Ordering::Release);
        self.feed.replaced();
    }

    /// A number that changes after every committed change to accounts, sessions or repository
    /// settings.
    pub fn access_generation(&self) -> u64 {
        self.access_generation.load(Ordering::Acquire)
    }

    /// The manifest `digest` of `repo`.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        read_manifest(&txn, repo, &digest.to_string())
    }

    /// The manifest tag `tag` of `repo` points at, with its digest, read from one snapshot (the
    /// hot path of a pull by tag).
    pub fn manifest_by_tag(&self, repo: &str, tag: &str) -> Result<Option<(Digest, ManifestRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(digest) = txn.open_table(TAGS)?.get((repo, tag))?.map(|v| v.value().to_owned()) else {
            return Ok(None);
        };
        let Ok(parsed) = digest.parse::<Digest>() else { return Ok(None) };
        Ok(read_manifest(&txn, repo, &digest)?.map(|record| (parsed, record)))
    }

    /// The digest tag `tag` of `repo` points at.
    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TAGS)?;
        let value = table.get((repo, tag))?;
        Ok(value.and_then(|v| v.value().parse().ok()))
    }

    /// Whether `repo` exists (has ever held a blob or a manifest).
    pub fn repo_exists(&self, repo: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(REPOS)?.get(repo)?.is_some())
    }

    /// Up to `n` tags of `repo` after `last`, in lexical order.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        let (cached, generation) = self.tag_cache.get(repo);
        let all = match cached {
            Some(all) => all,
            None => {
                let page = self.scan_tags(repo, None, usize::MAX)?;
                if page.items.len() < MIN_TAGS {
                    return Ok(page_of(&page.items, last, n));
                }
                let all = Arc::new(page.items);
                self.tag_cache.fill(repo, generation, Arc::clone(&all));
                all
            }
        };
        Ok(page_of(&all, last, n))
    }

    fn scan_tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TAGS)?;
        let start = last.unwrap_or("");
        let mut items = Vec::new();
        let mut more = false;
        for entry in table.range((repo, start)..)? {
            let (key, _) = entry?;
            let (r, tag) = key.value();
            if r != repo {
                break;
            }
            if last == Some(tag) {
                continue;
            }
            if items.len() == n {
                more = true;
                break;
            }
            items.push(tag.to_owned());
        }
        Ok(Page { items, more })
    }

    /// Up to `n` repository names after `last`, in lexical order.
    pub fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REPOS)?;
        let mut items = Vec::new();
        let mut more = false;
        for entry in table.range(last.unwrap_or("")..)? {
            let (key, _) = entry?;
            let name = key.value();
            if last == Some(name) {
                continue;
            }
            if items.len() == n {
                more = true;
                break;
            }
            items.push(name.to_owned());
        }
        Ok(Page { items, more })
    }

    /// The size of blob `digest` if `repo` links it.
    pub fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOB_LINKS)?;
        Ok(table.get((repo, digest.to_string().as_str()))?.map(|v| v.value()))
    }

    /// The nodes recorded as holding a verified copy of blob `digest`, in id order (none for a
    /// blob committed before holders were recorded, or by a registry that is no node).
    pub fn blob_holders(&self, digest: &Digest) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOB_HOLDERS)?;
        let key = digest.to_string();
        let mut holders = Vec::new();
        for row in table.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
            holders.push(row?.0.value().1);
        }
        Ok(holders)
    }

    /// Up to `n` committed blobs after `after` (in digest order), each with its size and the
    /// nodes recorded as holding it: what a pass over every blob reads, a page at a time.
    pub fn blobs_with_holders(&self, after: Option<&str>, n: usize) -> Result<Vec<BlobPlacement>, StoreError> {
        let txn = self.db.begin_read()?;
        let blobs = txn.open_table(BLOBS)?;
        let holders = txn.open_table(BLOB_HOLDERS)?;
        let rows = match after {
            Some(after) => blobs.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))?,
            None => blobs.range::<&str>(..)?,
        };
        let mut page = Vec::new();
        for row in rows.take(n) {
            let (digest, size) = row?;
            let digest = digest.value().to_owned();
            let mut nodes = Vec::new();
            for held in holders.range((digest.as_str(), 0)..=(digest.as_str(), u64::MAX))? {
                nodes.push(held?.0.value().1);
            }
            page.push(BlobPlacement { digest, size: size.value(), holders: nodes });
        }
        Ok(page)
    }

    /// The size of blob `digest` if any repository committed it.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(BLOBS)?.get(digest.to_string().as_str())?.map(|v| v.value()))
    }

    /// The descriptors (JSON) of the manifests in `repo` whose subject is `subject`.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REFERRERS)?;
        let subject = subject.to_string();
        let mut out = Vec::new();
        for entry in table.range((repo, subject.as_str(), "")..)? {
            let (key, value) = entry?;
            let (r, s, _) = key.value();
            if r != repo || s != subject {
                break;
            }
            out.push(value.value().to_vec());
        }
        Ok(out)
    }

    /// The ids of upload sessions started at or before `cutoff` (seconds since the epoch).
    pub fn uploads_started_by(&self, cutoff: u64) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UPLOADS)?;
        let mut ids = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let record = postcard::from_bytes::<StoredUpload>(value.value())?.into_current();
            if record.started <= cutoff {
                ids.push(key.value().to_owned());
            }
        }
        Ok(ids)
    }

    /// The open upload session `id`.
    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UPLOADS)?;
        let Some(raw) = table.get(id)? else {
            return Ok(None);
        };
        Ok(Some(postcard::from_bytes::<StoredUpload>(raw.value())?.into_current()))
    }

    /// The segments of upload `id` in shared storage, in order; `None` when there is no such
    /// upload.
    pub fn upload_segments(&self, id: &str) -> Result<Option<Vec<UploadSegment>>, StoreError> {
        let txn = self.db.begin_read()?;
        if txn.open_table(UPLOADS)?.get(id)?.is_none() {
            return Ok(None);
        }
        let table = txn.open_table(crate::tables::UPLOAD_SEGMENTS)?;
        let mut segments = Vec::new();
        for row in table.range((id, 0)..=(id, u64::MAX))? {
            let (key, value) = row?;
            let (key, value) = (key.value(), value.value());
            segments.push(UploadSegment { start: key.1, len: value.1, key: value.0.to_owned() });
        }
        Ok(Some(segments))
    }
}

/// The page of a sorted list after `last`, at most `n` long.
fn page_of(all: &[String], last: Option<&str>, n: usize) -> Page {
    let start = match last {
        Some(last) => all.partition_point(|t| t.as_str() <= last),
        None => 0,
    };
    let end = start.saturating_add(n).min(all.len());
    Page { items: all[start..end].to_vec(), more: end < all.len() }
}

fn read_manifest(txn: &ReadTransaction, repo: &str, digest: &str) -> Result<Option<ManifestRecord>, StoreError> {
    let table = txn.open_table(MANIFESTS)?;
    let Some(raw) = table.get((repo, digest))? else { return Ok(None) };
    let StoredManifest::V1(record) = postcard::from_bytes(raw.value())?;
    Ok(Some(record))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(postcard::to_allocvec(value)?)
}

fn apply_in(txn: &WriteTransaction, command: &Command) -> Result<Outcome, StoreError> {
    match command {
        Command::Registry(command) => crate::registry::apply(txn, command),
        Command::Accounts(command) => accounts::apply(txn, command),
        Command::Cluster(command) => crate::cluster::apply(txn, command),
        Command::Orchestration(command) => crate::orchestration::apply(txn, command),
        Command::Identity(command) => crate::identity::apply(txn, command),
        Command::Audit(command) => crate::audit::apply(txn, command),
    }
}
