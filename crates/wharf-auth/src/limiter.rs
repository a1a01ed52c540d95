//! Rate limits: token buckets keyed by strings. [`RateLimiter`] takes a token per request
//! (joins per source address). [`LoginLimiter`] counts failed logins three ways, so that
//! nobody can lock another user out and a guess spread over many addresses is still slow:
//! - per source address (any user): one address cannot guess many users' passwords quickly;
//! - per (user, source) pair: one address cannot guess one user's password quickly, and its
//!   failures do not touch the same user logging in from elsewhere;
//! - per user (any source): once a user has had [`USER`]`.burst` failures in a burst, only
//!   addresses that have not failed for that user in the last [`QUIET_MS`] may try, so each
//!   address of a distributed guess gets one attempt per ten minutes, while the user, from an
//!   address with no recent failures, still logs in.
//!
//! Attempts refused by a limit are not failures: they do not drain the buckets further.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;

/// The size of a bucket and how many milliseconds it takes to earn one token back.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub burst: f64,
    pub refill_ms: f64,
}

/// Failed logins from one address, whatever the user.
pub const SOURCE: Limits = Limits { burst: 30.0, refill_ms: 2_000.0 };
/// Failed logins of one user from one address.
pub const PAIR: Limits = Limits { burst: 10.0, refill_ms: 6_000.0 };
/// Failed logins of one user from anywhere, before only quiet addresses may try it.
pub const USER: Limits = Limits { burst: 50.0, refill_ms: 6_000.0 };
/// How long an address must not have failed for a user to try it while that user's own
/// bucket is empty.
pub const QUIET_MS: u64 = 10 * 60 * 1000;
/// Buckets kept before full, quiet ones are forgotten.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    since: u64,
    last_taken: u64,
}

impl Bucket {
    fn level(&self, limits: Limits, now_ms: u64) -> f64 {
        (self.tokens + now_ms.saturating_sub(self.since) as f64 / limits.refill_ms).min(limits.burst)
    }
}

/// Token buckets under one set of limits.
#[derive(Debug)]
struct Buckets<K> {
    limits: Limits,
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new(limits: Limits) -> Buckets<K> {
        Buckets { limits, map: HashMap::new() }
    }

    fn level<Q: Hash + Eq + ?Sized>(&self, key: &Q, now_ms: u64) -> f64
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map_or(self.limits.burst, |b| b.level(self.limits, now_ms))
    }

    /// When a token was last taken under `key`, if ever (and not forgotten).
    fn last_taken<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<u64>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|b| b.last_taken)
    }

    fn take(&mut self, key: K, now_ms: u64) {
        let limits = self.limits;
        if self.map.len() >= MAX_KEYS {
            self.map.retain(|_, b| {
                b.level(limits, now_ms) < limits.burst || now_ms.saturating_sub(b.last_taken) < QUIET_MS
            });
            if self.map.len() >= MAX_KEYS {
                self.map.clear();
            }
        }
        let level = self.level(&key, now_ms);
        self.map.insert(key, Bucket { tokens: (level - 1.0).max(0.0), since: now_ms, last_taken: now_ms });
    }
}

/// A token per request under a key, refused when the key's bucket is empty.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<Buckets<String>>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter { buckets: Mutex::new(Buckets::new(limits)) }
    }

    /// Takes a token under `key` at `now_ms`; false (and nothing taken) if there is none.
    pub fn try_take(&self, key: &str, now_ms: u64) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.level(key, now_ms) < 1.0 {
            return false;
        }
        buckets.take(key.to_owned(), now_ms);
        true
    }
}

/// Failed logins per source, per (user, source) and per user: see the module documentation.
/// It is asked on every password check, remembered ones included, so it takes one lock and
/// allocates nothing to answer.
#[derive(Debug)]
pub struct LoginLimiter {
    buckets: Mutex<LoginBuckets>,
    /// Keys a (user, source) pair by a keyed hash (random per process).
    pair_hasher: RandomState,
}

#[derive(Debug)]
struct LoginBuckets {
    sources: Buckets<String>,
    pairs: Buckets<u64>,
    users: Buckets<String>,
}

impl Default for LoginLimiter {
    fn default() -> LoginLimiter {
        let buckets =
            LoginBuckets { sources: Buckets::new(SOURCE), pairs: Buckets::new(PAIR), users: Buckets::new(USER) };
        LoginLimiter { buckets: Mutex::new(buckets), pair_hasher: RandomState::new() }
    }
}

impl LoginLimiter {
    fn pair(&self, user: &str, source: &str) -> u64 {
        self.pair_hasher.hash_one((user, source))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoginBuckets> {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a password for `user` from `source` may be checked at `now_ms`.
    pub fn allows(&self, user: &str, source: &str, now_ms: u64) -> bool {
        let pair = self.pair(user, source);
        let buckets = self.lock();
        if buckets.sources.level(source, now_ms) < 1.0 || buckets.pairs.level(&pair, now_ms) < 1.0 {
            return false;
        }
        if buckets.users.level(user, now_ms) >= 1.0 {
            return true;
        }
        // The user is under a guess from many addresses: only a quiet address may try.
        buckets.pairs.last_taken(&pair).is_none_or(|at| now_ms.saturating_sub(at) >= QUIET_MS)
    }

    /// Records a failed login for `user` from `source`.
    pub fn failed(&self, user: &str, source: &str, now_ms: u64) {
        let pair = self.pair(user, source);
        let mut buckets = self.lock();
        buckets.sources.take(source.to_owned(), now_ms);
        buckets.pairs.take(pair, now_ms);
        buckets.users.take(user.to_owned(), now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails `n` logins of `user` from `source` at `at`, each allowed first.
    fn fail(limiter: &LoginLimiter, user: &str, source: &str, n: usize, at: u64) {
        for i in 0..n {
            assert!(limiter.allows(user, source, at), "attempt {i} of {user} from {source} is allowed");
            limiter.failed(user, source, at);
        }
    }

    #[test]
    fn failures_from_one_address_do_not_lock_the_user_out_elsewhere() {
        let limiter = LoginLimiter::default();
        fail(&limiter, "carol", "10.0.0.1", PAIR.burst as usize, 1000);
        assert!(!limiter.allows("carol", "10.0.0.1", 1000), "the guessing address is stopped");
        for _ in 0..100 {
            assert!(!limiter.allows("carol", "10.0.0.1", 1000));
        }
        assert!(limiter.allows("carol", "10.0.0.2", 1000), "carol from elsewhere is not locked out");
        assert!(limiter.allows("dave", "10.0.0.1", 1000), "the address may still log other users in");
        assert!(limiter.allows("carol", "10.0.0.1", 1000 + PAIR.refill_ms as u64), "a token flows back");
    }

    #[test]
    fn one_address_guessing_many_users_is_stopped() {
        let limiter = LoginLimiter::default();
        for i in 0..SOURCE.burst as usize {
            fail(&limiter, &format!("user{i}"), "10.0.0.9", 1, 1000);
        }
        assert!(!limiter.allows("someone-new", "10.0.0.9", 1000));
        assert!(limiter.allows("someone-new", "10.0.0.8", 1000));
    }

    #[test]
    fn a_guess_spread_over_many_addresses_gets_one_try_per_address_per_quiet_time() {
        let limiter = LoginLimiter::default();
        let start = 1_000_000;
        for i in 0..USER.burst as usize {
            fail(&limiter, "carol", &format!("192.0.2.{i}"), 1, start);
        }
        // Each address has nine tries left of its own, but carol's budget is spent: an address
        // that failed for her recently waits for the quiet time, a new one may try once.
        assert!(!limiter.allows("carol", "192.0.2.0", start + 1));
        assert!(limiter.allows("carol", "198.51.100.7", start + 1), "a quiet address (carol herself) may try");
        limiter.failed("carol", "198.51.100.7", start + 1);
        assert!(!limiter.allows("carol", "198.51.100.7", start + 2), "but only once");
        assert!(limiter.allows("dave", "192.0.2.0", start + 2), "other users are untouched");
        // The guess goes on from new addresses, which keeps carol's budget spent.
        let later = start + QUIET_MS - 1;
        for i in 0..USER.burst as usize {
            fail(&limiter, "carol", &format!("203.0.113.{i}"), 1, later);
        }
        assert!(!limiter.allows("carol", "192.0.2.0", later), "not quiet for ten minutes yet");
        assert!(limiter.allows("carol", "192.0.2.0", start + QUIET_MS), "after the quiet time");
    }

    #[test]
    fn a_rate_limiter_refuses_an_empty_bucket_until_it_refills() {
        let limiter = RateLimiter::new(Limits { burst: 3.0, refill_ms: 1000.0 });
        for _ in 0..3 {
            assert!(limiter.try_take("a", 0));
        }
        assert!(!limiter.try_take("a", 0));
        assert!(!limiter.try_take("a", 999), "refusals take nothing, and the token is not back yet");
        assert!(limiter.try_take("b", 0), "keys are separate");
        assert!(limiter.try_take("a", 1000));
        assert!(!limiter.try_take("a", 1000));
    }
}
