//! The audit log's collector: the edge records one entry per audited call (who, what, to
//! what, when, from where, how it ended), each also written as a structured log line
//! (`wharf::audit`); a node's flush task proposes what gathered, about once a second, as one
//! command, so that auditing adds one Raft entry per second rather than one per call. What
//! waits is bounded: past [`MAX_PENDING`] the oldest entries are dropped and counted (the
//! log line of each was written).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wharf_store::{AuditCommand, AuditQuery, AuditRecord, Origin};

use crate::service::{Auth, AuthError};

/// Entries that may wait for a flush.
pub const MAX_PENDING: usize = 10_000;
/// How long the state keeps an entry, and how many it keeps at most.
pub const RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;
pub const RETENTION_ENTRIES: u64 = 200_000;

/// Entries recorded and not yet proposed.
#[derive(Debug, Default)]
pub struct AuditLog {
    pending: Mutex<VecDeque<AuditRecord>>,
    dropped: AtomicU64,
}

impl AuditLog {
    /// Records one call.
    pub fn record(&self, entry: AuditRecord) {
        tracing::info!(
            target: "wharf::audit",
            actor = %entry.actor,
            source = %entry.source,
            door = %entry.door,
            method = %entry.method,
            path = %entry.path,
            status = entry.status,
            outcome = %entry.outcome,
            "audit"
        );
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        pending.push_back(entry);
    }

    fn take(&self) -> Vec<AuditRecord> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    /// Puts entries a failed flush took back in front of newer ones (within the bound).
    fn restore(&self, entries: Vec<AuditRecord>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.into_iter().rev() {
            if pending.len() >= MAX_PENDING {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            pending.push_front(entry);
        }
    }

    /// How many entries were dropped because flushes could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Auth {
    /// Proposes the entries recorded since the last flush; how many.
    pub async fn flush_audit(&self) -> Result<usize, AuthError> {
        let entries = self.audit().take();
        if entries.is_empty() {
            return Ok(0);
        }
        let count = entries.len();
        match self.propose(&Origin::system(), AuditCommand::Record { entries: entries.clone() }).await {
            Ok(_) => Ok(count),
            Err(e) => {
                self.audit().restore(entries);
                Err(e.into())
            }
        }
    }

    /// Drops entries past the retention (age and count).
    pub async fn prune_audit(&self, now_ms: u64) -> Result<(), AuthError> {
        let command = AuditCommand::Prune { before_ms: now_ms.saturating_sub(RETENTION_MS), keep: RETENTION_ENTRIES };
        self.propose(&Origin::system(), command).await?;
        Ok(())
    }

    /// The newest entries `query` picks, oldest first.
    pub fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuthError> {
        Ok(self.store().audit(query)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> AuditRecord {
        AuditRecord {
            at_ms: n,
            actor: "a".into(),
            source: "127.0.0.1".into(),
            door: "api".into(),
            method: "POST".into(),
            path: "/api/users".into(),
            status: 201,
            outcome: "ok".into(),
        }
    }

    #[test]
    fn what_waits_is_bounded_and_a_failed_flush_keeps_the_order() {
        let log = AuditLog::default();
        for n in 0..(MAX_PENDING as u64 + 5) {
            log.record(entry(n));
        }
        assert_eq!(log.dropped(), 5);
        let taken = log.take();
        assert_eq!(taken.first().map(|e| e.at_ms), Some(5), "the oldest went");
        log.record(entry(1_000_000));
        log.restore(taken);
        let again = log.take();
        assert_eq!(again.len(), MAX_PENDING, "one more than fits was dropped: the oldest");
        assert_eq!(again.first().map(|e| e.at_ms), Some(6));
        assert_eq!(again.last().map(|e| e.at_ms), Some(1_000_000), "the newer entry after the restored ones");
        assert_eq!(log.dropped(), 6);
    }
}
