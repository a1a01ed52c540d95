//! Passwords as Argon2id PHC strings, and the rules names and passwords follow.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Shortest and longest accepted password, in bytes.
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// Hashes `password` with Argon2id and a random salt.
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc`. A malformed hash matches nothing.
pub fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

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
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(!verify("not a phc string", "correct horse"));
        assert_ne!(hash("correct horse").expect("hash"), h, "salts differ");
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
