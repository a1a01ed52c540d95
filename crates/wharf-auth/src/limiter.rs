//! Rate limiting of failed logins: a token bucket per key (a user name, a source address).
//! Each failure takes a token; when the bucket is empty, attempts are refused before the
//! password is even checked, until tokens flow back.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures allowed in a burst, and how many milliseconds it takes to earn one back.
pub const BURST: f64 = 10.0;
pub const REFILL_MS: f64 = 6_000.0;
/// Buckets kept before full ones are forgotten.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<String, (f64, u64)>>,
}

impl FailureLimiter {
    fn level(tokens: f64, since: u64, now_ms: u64) -> f64 {
        (tokens + now_ms.saturating_sub(since) as f64 / REFILL_MS).min(BURST)
    }

    /// Whether another attempt under `key` may be checked at `now_ms`.
    pub fn allows(&self, key: &str, now_ms: u64) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.get(key).is_none_or(|&(tokens, since)| Self::level(tokens, since, now_ms) >= 1.0)
    }

    /// Records a failed attempt under `key`.
    pub fn failed(&self, key: &str, now_ms: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_KEYS {
            buckets.retain(|_, &mut (tokens, since)| Self::level(tokens, since, now_ms) < BURST);
        }
        let (tokens, since) = buckets.get(key).copied().unwrap_or((BURST, now_ms));
        let level = Self::level(tokens, since, now_ms);
        buckets.insert(key.to_owned(), ((level - 1.0).max(0.0), now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_locks_then_time_unlocks() {
        let limiter = FailureLimiter::default();
        for _ in 0..BURST as usize {
            assert!(limiter.allows("user:bob", 1000));
            limiter.failed("user:bob", 1000);
        }
        assert!(!limiter.allows("user:bob", 1000), "the burst is spent");
        assert!(limiter.allows("user:alice", 1000), "other keys are untouched");
        assert!(!limiter.allows("user:bob", 1000 + REFILL_MS as u64 - 1));
        assert!(limiter.allows("user:bob", 1000 + REFILL_MS as u64));
    }
}
