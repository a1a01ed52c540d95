//! Wharf's access control: accounts with Argon2id passwords, API sessions, registry refresh and
//! access tokens, rate limiting of failed logins, and the rules of who may do what.
//!
//! [`Auth`] reads accounts from the state store and changes them only through
//! [`wharf_store::Command`]s, so the same code works when the store is replicated. Writes are
//! async: they only propose a command and wait for it. Reads are synchronous. Two calls are slow
//! on purpose, [`Auth::authenticate`] and [`Auth::hash_password`] (Argon2id): callers on an async
//! runtime run them on blocking threads. This crate must never know about HTTP types: the HTTP
//! edge turns headers and forms into the calls here.

pub mod access;
pub mod audit;
pub mod authorize;
pub mod directory;
mod grants;
mod limiter;
pub mod password;
pub mod policy;
pub mod rbac;
pub mod scope;
mod service;
pub mod token;
pub mod tokens;

pub use access::{AccessControl, AccessView};
pub use authorize::{Decision, Denial, Operation, authorize};
pub use limiter::{Limits, LoginLimiter, RateLimiter};
pub use policy::Principal;
pub use scope::{Access, ScopeError, permits};
pub use service::{Auth, AuthConfig, AuthError, Identity, PasswordHash, SessionInfo};
pub use token::{Claims, TokenError};

/// `n` random bytes from the operating system, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system random source failing is not recoverable; a zeroed secret must never be used.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        panic!("the operating system's random number generator failed");
    }
    buf
}

/// A random secret for a client to hold (a session or refresh token): 32 bytes, base64url.
pub fn new_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// A generated password for the first administrator: 24 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        for b in random_bytes(32) {
            if usize::from(b) < limit && out.len() < 24 {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    out
}

/// The id a secret is stored under: its SHA-256, hex. The store never holds the secret itself.
pub fn secret_id(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}
