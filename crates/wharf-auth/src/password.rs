//! Passwords as Argon2id PHC strings, and the rules names and passwords follow.
//!
//! Hashing uses one block of working memory that [`Passwords`] keeps and reuses. Argon2's
//! default allocates a fresh 19 MiB per hash, which the C allocator then keeps in every thread's
//! arena; this keeps the server's memory flat. Parameters are OWASP's second Argon2id choice
//! (m = 7 MiB, t = 5, p = 1), as strong as the default with less memory.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// Shortest and longest accepted password, in bytes.
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

const M_COST: u32 = 7 * 1024;
const T_COST: u32 = 5;
const P_COST: u32 = 1;
const OUTPUT: usize = 32;
const SALT: usize = 16;

/// A stored hash never matches a password if it asks for more memory than this (KiB).
const MAX_M_COST: u32 = 256 * 1024;

/// Hashes and checks passwords with reusable working memory.
pub struct Passwords {
    memory: Mutex<Vec<Block>>,
}

impl Default for Passwords {
    fn default() -> Passwords {
        Passwords { memory: Mutex::new(Vec::new()) }
    }
}

/// The parts of a PHC string that Argon2id needs.
struct Phc {
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse(phc: &str) -> Option<Phc> {
    let mut parts = phc.split('$');
    let (empty, id, version, params, salt, hash) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !empty.is_empty() || id != "argon2id" || version != "v=19" || parts.next().is_some() {
        return None;
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in params.split(',') {
        let (k, v) = pair.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    let hash = STANDARD_NO_PAD.decode(hash).ok()?;
    let m = m.filter(|m| *m <= MAX_M_COST)?;
    let params = Params::new(m, t?, p?, Some(hash.len())).ok()?;
    Some(Phc { params, salt: STANDARD_NO_PAD.decode(salt).ok()?, hash })
}

impl Passwords {
    fn compute(&self, params: Params, password: &str, salt: &[u8], out: &mut [u8]) -> Result<(), String> {
        let blocks = params.block_count();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut memory = self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..]).map_err(|e| e.to_string())
    }

    /// Hashes `password` with Argon2id and a random salt, as a PHC string.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT)).map_err(|e| e.to_string())?;
        let salt = crate::random_bytes(SALT);
        let mut out = [0u8; OUTPUT];
        self.compute(params, password, &salt, &mut out)?;
        Ok(format!(
            "$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${}${}",
            STANDARD_NO_PAD.encode(&salt),
            STANDARD_NO_PAD.encode(out)
        ))
    }

    /// Whether `password` matches the PHC string `phc`. A malformed hash matches nothing.
    pub fn verify(&self, phc: &str, password: &str) -> bool {
        let Some(phc) = parse(phc) else { return false };
        let mut out = vec![0u8; phc.hash.len()];
        if self.compute(phc.params, password, &phc.salt, &mut out).is_err() {
            return false;
        }
        aws_lc_rs::constant_time::verify_slices_are_equal(&out, &phc.hash).is_ok()
    }
}

/// A valid hash whose password nobody knows, checked when a user does not exist so that both
/// cases cost the same.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=7168,t=5,p=1$ZHVtbXlkdW1teWR1bW15$y1HxS4NjTqMnS0rIkqIJDqGkLfXWd3Yq0mTjZs9oB3s";

/// Why a password is not acceptable, if it is not.
pub fn check_password_rules(password: &str) -> Result<(), String> {
    if password.len() < MIN_PASSWORD {
        return Err(format!("password must be at least {MIN_PASSWORD} characters"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!("password must be at most {MAX_PASSWORD} bytes"));
    }
    Ok(())
}

/// Whether `name` is a valid user name: it names the user's registry namespace, so it follows
/// the rules of a repository path component (lowercase letters and digits, separated by single
/// `.`, `_` or `-`), at most 64 characters.
pub fn valid_user_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut previous_separator = true;
    for &c in b {
        if alnum(c) {
            previous_separator = false;
        } else if matches!(c, b'.' | b'_' | b'-') && !previous_separator {
            previous_separator = true;
        } else {
            return false;
        }
    }
    !previous_separator
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let p = Passwords::default();
        let h = p.hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"));
        assert!(p.verify(&h, "correct horse"));
        assert!(!p.verify(&h, "correct horsE"));
        assert!(!p.verify("not a phc string", "correct horse"));
        assert!(!p.verify(&h.replace("m=7168", "m=999999999"), "correct horse"), "absurd memory is refused");
        assert_ne!(p.hash("correct horse").expect("hash"), h, "salts differ");
        assert!(!p.verify(DUMMY_HASH, ""), "the dummy hash parses and matches nothing guessable");
        assert!(parse(DUMMY_HASH).is_some());
    }

    #[test]
    fn interoperates_with_the_argon2_crate_both_ways() {
        let p = Passwords::default();
        let ours = p.hash("hunter2-hunter2").expect("hash");
        let parsed = argon2::PasswordHash::new(&ours).expect("the crate parses our PHC string");
        assert!(Argon2::default().verify_password(b"hunter2-hunter2", &parsed).is_ok());
        let theirs = Argon2::default().hash_password(b"hunter2-hunter2").expect("hash").to_string();
        assert!(p.verify(&theirs, "hunter2-hunter2"), "hashes with the crate's default parameters verify");
        assert!(!p.verify(&theirs, "hunter3-hunter3"));
    }

    #[test]
    fn names_follow_path_component_rules() {
        for good in ["admin", "a", "bob-2", "j.doe", "x_y"] {
            assert!(valid_user_name(good), "{good}");
        }
        for bad in ["", "Bob", "-a", "a-", "a--b", "a/b", "a b", "ü", &"a".repeat(65)] {
            assert!(!valid_user_name(bad), "{bad}");
        }
    }
}
