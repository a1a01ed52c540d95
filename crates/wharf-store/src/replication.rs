//! What a replication layer needs from the store, without the store knowing Raft: applying a
//! batch of log entries together with an opaque marker of what was applied (one transaction,
//! so a crash never separates the state from its marker), and whole-state snapshots that can
//! be streamed to another node and installed there.
//!
//! Snapshot format: the magic line, then one length-prefixed postcard record per table row,
//! in table order. Tables are listed once, here: [`for_each_table!`] keeps export and import
//! in step.

use std::io::{Read, Write};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};
use crate::store::{Store, StoreError};
use crate::tables::*;

const MAGIC: &[u8; 18] = b"wharf-snapshot-v1\n";
/// Largest single record a snapshot may hold (a manifest is at most a few MiB).
const MAX_RECORD: usize = 64 << 20;

/// One table row of a snapshot: the table's name and the row's key and value, each encoded
/// with postcard in the table's own types.
#[derive(Serialize, Deserialize)]
struct Row {
    table: String,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Why a snapshot could not be read or written.
fn snapshot_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Snapshot(e.to_string())
}

/// Calls `$m!(definition, KeyType, ValueType, OwnedKey, OwnedValue)` for every table a snapshot
/// holds; [`insert_row`] must name the same tables.
macro_rules! for_each_table {
    ($m:ident) => {
        $m!(REPOS, &str, u64, String, u64);
        $m!(BLOBS, &str, u64, String, u64);
        $m!(BLOB_LINKS, (&str, &str), u64, (String, String), u64);
        $m!(MANIFESTS, (&str, &str), &[u8], (String, String), Vec<u8>);
        $m!(TAGS, (&str, &str), &str, (String, String), String);
        $m!(REFERRERS, (&str, &str, &str), &[u8], (String, String, String), Vec<u8>);
        $m!(UPLOADS, &str, &[u8], String, Vec<u8>);
        $m!(USERS, &str, &[u8], String, Vec<u8>);
        $m!(SESSIONS, &str, &[u8], String, Vec<u8>);
        $m!(USER_SESSIONS, (&str, &str), (), (String, String), ());
        $m!(REPO_SETTINGS, &str, &[u8], String, Vec<u8>);
        $m!(NODES, u64, &[u8], u64, Vec<u8>);
        $m!(CLUSTER, &str, &[u8], String, Vec<u8>);
        $m!(COUNTERS, &str, u64, String, u64);
        $m!(OWNER_UPLOADS, (&str, &str), (), (String, String), ());
        $m!(BLOB_HOLDERS, (&str, u64), (), (String, u64), ());
        $m!(UPLOAD_SEGMENTS, (&str, u64), (&str, u64), (String, u64), (String, u64));
        $m!(BUNDLES, &str, &[u8], String, Vec<u8>);
        $m!(SERVICES, &str, &[u8], String, Vec<u8>);
        $m!(SERVICE_REGISTRY_AUTH, &str, &[u8], String, Vec<u8>);
        $m!(SERVICE_UPDATES, &str, &[u8], String, Vec<u8>);
        $m!(SECRETS, &str, &[u8], String, Vec<u8>);
        $m!(NETWORKS, &str, &[u8], String, Vec<u8>);
        $m!(TASKS, &str, &[u8], String, Vec<u8>);
        $m!(SERVICE_TASKS, (&str, &str), (), (String, String), ());
        $m!(NODE_TASKS, (u64, &str), (), (u64, String), ());
        $m!(NODE_DETAILS, u64, &[u8], u64, Vec<u8>);
        $m!(ORGS, &str, &[u8], String, Vec<u8>);
        $m!(TEAMS, &str, &[u8], String, Vec<u8>);
        $m!(COLLECTIONS, &str, &[u8], String, Vec<u8>);
        $m!(ROLES, &str, &[u8], String, Vec<u8>);
        $m!(GRANTS, &str, &[u8], String, Vec<u8>);
        $m!(IDENTITY_SETTINGS, &str, &[u8], String, Vec<u8>);
        $m!(REPO_ACCESS, &str, &[u8], String, Vec<u8>);
        $m!(AUDIT, u64, &[u8], u64, Vec<u8>);
        $m!(TOKEN_SCOPES, &str, &[u8], String, Vec<u8>);
        $m!(CONTAINERS, &str, &[u8], String, Vec<u8>);
        $m!(CONTAINER_NAMES, &str, &[u8], String, Vec<u8>);
    };
}

fn write_row(w: &mut impl Write, row: &Row) -> Result<(), StoreError> {
    let bytes = postcard::to_allocvec(row)?;
    w.write_all(&(bytes.len() as u64).to_le_bytes()).map_err(snapshot_error)?;
    w.write_all(&bytes).map_err(snapshot_error)
}

fn read_row(r: &mut impl Read) -> Result<Option<Row>, StoreError> {
    let mut len = [0u8; 8];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(snapshot_error(e)),
    }
    let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_RECORD {
        return Err(snapshot_error(format!("snapshot record of {len} bytes")));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes).map_err(snapshot_error)?;
    Ok(Some(postcard::from_bytes(&bytes)?))
}

/// One commit in this many of [`Store::apply_marked_lazily`] is durable, which bounds what a
/// crash makes the caller apply again (and the space redb keeps for non-durable commits).
pub const LAZY_COMMITS: u64 = 64;

impl Store {
    /// Applies `commands` in order and records `marker`, in one transaction with one fsync.
    /// Each result is what [`Store::apply`] would have returned; a refused command writes
    /// nothing and the others still apply. If the database fails, nothing is applied.
    pub fn apply_marked(
        &self,
        commands: &[Command],
        marker: &[u8],
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        self.commit_batch(commands, Some(marker), true)
    }

    /// Like [`Store::apply_marked`], without waiting for the disk: the commit is visible at
    /// once and becomes durable with the next durable commit (every [`LAZY_COMMITS`]th one is,
    /// and [`Store::export`] and [`Store::flush`] make one). After a crash the store comes
    /// back at an earlier marker, consistent with it: the caller must be able to apply again
    /// what came after that marker. A Raft log can, as long as it is not purged beyond a
    /// snapshot, and a snapshot (an export) is always durable.
    pub fn apply_marked_lazily(
        &self,
        commands: &[Command],
        marker: &[u8],
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let lazy = self.lazy_commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let durable = lazy.is_multiple_of(LAZY_COMMITS);
        self.commit_batch(commands, Some(marker), durable)
    }

    /// Makes every commit so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    /// The marker last written by [`Store::apply_marked`] or [`Store::import`].
    pub fn applied_marker(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(APPLIED)?.get("marker")?.map(|v| v.value().to_vec()))
    }

    /// Drops the applied marker and keeps the state: the state becomes the start of a new
    /// replicated history (forcing a new cluster from a surviving replica).
    pub fn forget_marker(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(APPLIED)?.remove("marker")?;
        txn.commit()?;
        Ok(())
    }

    /// Writes the whole state, as of one snapshot of the database, to `w`; returns the applied
    /// marker of that same snapshot.
    pub fn export(&self, w: &mut impl Write) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        // What this snapshot holds must be on disk before anyone relies on the snapshot (a
        // Raft log is purged up to it): a durable commit after the read began covers it.
        self.flush()?;
        let marker = txn.open_table(APPLIED)?.get("marker")?.map(|v| v.value().to_vec());
        w.write_all(MAGIC).map_err(snapshot_error)?;
        macro_rules! export_table {
            ($def:ident, $k:ty, $v:ty, $ko:ty, $vo:ty) => {{
                let table = txn.open_table($def)?;
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let (key, value) = (key.value(), value.value());
                    let row = Row {
                        table: stringify!($def).to_owned(),
                        key: postcard::to_allocvec(&key)?,
                        value: postcard::to_allocvec(&value)?,
                    };
                    write_row(w, &row)?;
                }
            }};
        }
        for_each_table!(export_table);
        Ok(marker)
    }

    /// Replaces the whole state with the snapshot read from `r` and records `marker`, in one
    /// transaction: a failure (a truncated or corrupt snapshot) leaves the old state.
    pub fn import(&self, r: &mut impl Read, marker: &[u8]) -> Result<(), StoreError> {
        let mut magic = [0u8; MAGIC.len()];
        r.read_exact(&mut magic).map_err(snapshot_error)?;
        if &magic != MAGIC {
            return Err(snapshot_error("not a Wharf snapshot (or a newer format)"));
        }
        let txn = self.db.begin_write()?;
        macro_rules! clear_table {
            ($def:ident, $k:ty, $v:ty, $ko:ty, $vo:ty) => {{
                txn.delete_table($def)?;
                txn.open_table($def)?;
            }};
        }
        for_each_table!(clear_table);
        while let Some(row) = read_row(r)? {
            insert_row(&txn, &row)?;
        }
        txn.open_table(APPLIED)?.insert("marker", marker)?;
        txn.commit()?;
        self.after_replace();
        Ok(())
    }
}

fn decode<K: for<'de> Deserialize<'de>, V: for<'de> Deserialize<'de>>(row: &Row) -> Result<(K, V), StoreError> {
    Ok((postcard::from_bytes(&row.key)?, postcard::from_bytes(&row.value)?))
}

/// Inserts one snapshot row into its table.
fn insert_row(txn: &redb::WriteTransaction, row: &Row) -> Result<(), StoreError> {
    type Pair = (String, String);
    match row.table.as_str() {
        "REPOS" | "BLOBS" | "COUNTERS" => {
            let (k, v): (String, u64) = decode(row)?;
            let def = match row.table.as_str() {
                "REPOS" => REPOS,
                "BLOBS" => BLOBS,
                _ => COUNTERS,
            };
            txn.open_table(def)?.insert(k.as_str(), v)?;
        }
        "BLOB_LINKS" => {
            let ((a, b), v): (Pair, u64) = decode(row)?;
            txn.open_table(BLOB_LINKS)?.insert((a.as_str(), b.as_str()), v)?;
        }
        "MANIFESTS" => {
            let ((a, b), v): (Pair, Vec<u8>) = decode(row)?;
            txn.open_table(MANIFESTS)?.insert((a.as_str(), b.as_str()), v.as_slice())?;
        }
        "TAGS" => {
            let ((a, b), v): (Pair, String) = decode(row)?;
            txn.open_table(TAGS)?.insert((a.as_str(), b.as_str()), v.as_str())?;
        }
        "REFERRERS" => {
            let ((a, b, c), v): ((String, String, String), Vec<u8>) = decode(row)?;
            txn.open_table(REFERRERS)?.insert((a.as_str(), b.as_str(), c.as_str()), v.as_slice())?;
        }
        "BLOB_HOLDERS" => {
            let ((digest, node), ()): ((String, u64), ()) = decode(row)?;
            txn.open_table(BLOB_HOLDERS)?.insert((digest.as_str(), node), ())?;
        }
        "UPLOAD_SEGMENTS" => {
            let ((id, start), (key, len)): ((String, u64), (String, u64)) = decode(row)?;
            txn.open_table(UPLOAD_SEGMENTS)?.insert((id.as_str(), start), (key.as_str(), len))?;
        }
        "NODES" | "NODE_DETAILS" | "AUDIT" => {
            let (k, v): (u64, Vec<u8>) = decode(row)?;
            let def = match row.table.as_str() {
                "NODES" => NODES,
                "AUDIT" => AUDIT,
                _ => NODE_DETAILS,
            };
            txn.open_table(def)?.insert(k, v.as_slice())?;
        }
        "NODE_TASKS" => {
            let ((node, task), ()): ((u64, String), ()) = decode(row)?;
            txn.open_table(NODE_TASKS)?.insert((node, task.as_str()), ())?;
        }
        "UPLOADS"
        | "USERS"
        | "SESSIONS"
        | "REPO_SETTINGS"
        | "CLUSTER"
        | "SERVICES"
        | "SERVICE_REGISTRY_AUTH"
        | "SERVICE_UPDATES"
        | "SECRETS"
        | "NETWORKS"
        | "TASKS"
        | "BUNDLES"
        | "ORGS"
        | "TEAMS"
        | "COLLECTIONS"
        | "ROLES"
        | "GRANTS"
        | "IDENTITY_SETTINGS"
        | "REPO_ACCESS"
        | "TOKEN_SCOPES"
        | "CONTAINERS"
        | "CONTAINER_NAMES" => {
            let (k, v): (String, Vec<u8>) = decode(row)?;
            let def: TableDefinition<&str, &[u8]> = match row.table.as_str() {
                "UPLOADS" => UPLOADS,
                "USERS" => USERS,
                "SESSIONS" => SESSIONS,
                "CLUSTER" => CLUSTER,
                "SERVICES" => SERVICES,
                "SERVICE_REGISTRY_AUTH" => SERVICE_REGISTRY_AUTH,
                "SERVICE_UPDATES" => SERVICE_UPDATES,
                "SECRETS" => SECRETS,
                "NETWORKS" => NETWORKS,
                "TASKS" => TASKS,
                "BUNDLES" => BUNDLES,
                "ORGS" => ORGS,
                "TEAMS" => TEAMS,
                "COLLECTIONS" => COLLECTIONS,
                "ROLES" => ROLES,
                "GRANTS" => GRANTS,
                "IDENTITY_SETTINGS" => IDENTITY_SETTINGS,
                "REPO_ACCESS" => REPO_ACCESS,
                "TOKEN_SCOPES" => TOKEN_SCOPES,
                "CONTAINERS" => CONTAINERS,
                "CONTAINER_NAMES" => CONTAINER_NAMES,
                _ => REPO_SETTINGS,
            };
            txn.open_table(def)?.insert(k.as_str(), v.as_slice())?;
        }
        "USER_SESSIONS" | "OWNER_UPLOADS" | "SERVICE_TASKS" => {
            let ((a, b), ()): (Pair, ()) = decode(row)?;
            let def = match row.table.as_str() {
                "USER_SESSIONS" => USER_SESSIONS,
                "OWNER_UPLOADS" => OWNER_UPLOADS,
                _ => SERVICE_TASKS,
            };
            txn.open_table(def)?.insert((a.as_str(), b.as_str()), ())?;
        }
        other => return Err(snapshot_error(format!("unknown table {other:?} in snapshot"))),
    }
    Ok(())
}
