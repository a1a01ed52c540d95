//! The audit log: who did what, to what, when, from where, and how it ended, for every
//! state-changing call and every refused one, at every door. Entries are kept in the
//! replicated state in the order they were recorded (a sequence number each), and pruned by
//! age and count. An entry holds no request body and no query: a password or a secret never
//! reaches it.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::Outcome;
use crate::store::{Store, StoreError, encode};
use crate::tables::{AUDIT, COUNTERS};

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The account (or `node:N`) that called; empty when anonymous.
    pub actor: String,
    /// The caller's address.
    pub source: String,
    /// `registry`, `docker`, `api`, `auth` or `cluster`.
    pub door: String,
    pub method: String,
    /// The path, without its query.
    pub path: String,
    pub status: u16,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
}

/// A change of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuditCommand {
    /// Appends entries, in order.
    Record { entries: Vec<AuditRecord> },
    /// Drops entries older than `before_ms`, and the oldest beyond the newest `keep`.
    Prune { before_ms: u64, keep: u64 },
}

impl std::fmt::Display for AuditCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditCommand::Record { entries } => write!(f, "audit-record {} entries", entries.len()),
            AuditCommand::Prune { before_ms, keep } => write!(f, "audit-prune before {before_ms} keep {keep}"),
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Stored {
    V1(AuditRecord),
}

const NEXT: &str = "next_audit_id";

pub(crate) fn apply(txn: &WriteTransaction, command: &AuditCommand) -> Result<Outcome, StoreError> {
    match command {
        AuditCommand::Record { entries } => {
            let mut counters = txn.open_table(COUNTERS)?;
            let mut next = counters.get(NEXT)?.map_or(0, |v| v.value());
            let mut table = txn.open_table(AUDIT)?;
            for entry in entries {
                table.insert(next, encode(&Stored::V1(entry.clone()))?.as_slice())?;
                next += 1;
            }
            counters.insert(NEXT, next)?;
        }
        AuditCommand::Prune { before_ms, keep } => {
            let mut table = txn.open_table(AUDIT)?;
            let count = table.len()?;
            let mut excess = count.saturating_sub(*keep);
            let mut gone = Vec::new();
            for entry in table.iter()? {
                let (id, raw) = entry?;
                let Stored::V1(record) = postcard::from_bytes(raw.value())?;
                if excess == 0 && record.at_ms >= *before_ms {
                    break;
                }
                excess = excess.saturating_sub(1);
                gone.push(id.value());
            }
            for id in gone {
                table.remove(id)?;
            }
        }
    }
    Ok(Outcome::Done)
}

/// Which entries a reader wants.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub door: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// At most this many, the newest.
    pub limit: usize,
}

impl AuditQuery {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == r.actor)
            && self.door.as_ref().is_none_or(|d| *d == r.door)
            && self.outcome.as_ref().is_none_or(|o| *o == r.outcome)
            && self.since_ms.is_none_or(|s| r.at_ms >= s)
            && self.until_ms.is_none_or(|u| r.at_ms <= u)
    }
}

impl Store {
    /// The newest entries `query` picks, oldest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (_, raw) = entry?;
            let Stored::V1(record) = postcard::from_bytes(raw.value())?;
            if query.matches(&record) {
                out.push(record);
                if out.len() >= query.limit.max(1) {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}
