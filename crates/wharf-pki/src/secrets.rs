//! The cluster's secrets key: what seals values that must rest in the replicated state but
//! must never be readable from it (the join tokens today; service secrets later). It is
//! derived from the CA's private key with HKDF-SHA256, so every manager, which holds that key,
//! has it without another file to hand around, and a copy of the state alone reveals nothing.
//! A sealed value is AES-256-GCM: `[version 1][12-byte random nonce][ciphertext][16-byte tag]`,
//! with what the value is for as associated data, so a value sealed for one purpose cannot be
//! opened as another. Rotating the CA must seal such values again under the new key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::PkiError;

const VERSION: u8 = 1;
const SALT: &[u8] = b"wharf cluster secrets";
const INFO: &[u8] = b"wharf/secrets/v1 aes-256-gcm";

/// Seals and opens values with the cluster's secrets key.
pub struct SecretsKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// The key derived from `ikm` (the CA private key's PKCS#8 DER).
    pub(crate) fn derive(ikm: &[u8]) -> Result<SecretsKey, PkiError> {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(ikm);
        let okm = prk.expand(&[INFO], &AES_256_GCM).map_err(|_| PkiError::Crypto("derive the secrets key"))?;
        Ok(SecretsKey { key: LessSafeKey::new(UnboundKey::from(okm)) })
    }

    /// `plaintext` sealed for `purpose` (e.g. `join-token:worker`).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, PkiError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| PkiError::Crypto("draw a nonce"))?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut in_out)
            .map_err(|_| PkiError::Crypto("seal"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// The plaintext of a value sealed for `purpose`; an error if it was sealed under another
    /// key or for another purpose, or was changed.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, PkiError> {
        let (&version, rest) = sealed.split_first().ok_or(PkiError::Crypto("open an empty sealed value"))?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(PkiError::Crypto("open a sealed value of an unknown format"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PkiError::Crypto("read the nonce"))?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut in_out)
            .map_err(|_| PkiError::Crypto("open a sealed value (another key or purpose, or changed)"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let key = SecretsKey::derive(b"ikm one").expect("key");
        let sealed = key.seal("join-token:worker", b"the secret").expect("seal");
        assert_eq!(key.open("join-token:worker", &sealed).expect("open"), b"the secret");
        assert!(!sealed.windows(10).any(|w| w == b"the secret"), "no plaintext in the sealed value");
        assert_ne!(sealed, key.seal("join-token:worker", b"the secret").expect("seal"), "a fresh nonce each time");
        assert!(key.open("join-token:manager", &sealed).is_err(), "another purpose");
        let other = SecretsKey::derive(b"ikm two").expect("key");
        assert!(other.open("join-token:worker", &sealed).is_err(), "another key");
        let mut changed = sealed.clone();
        *changed.last_mut().expect("byte") ^= 1;
        assert!(key.open("join-token:worker", &changed).is_err(), "a changed value");
        for bad in [&[][..], &[1u8][..], &[2u8; 40][..]] {
            assert!(key.open("join-token:worker", bad).is_err());
        }
        let again = SecretsKey::derive(b"ikm one").expect("key");
        assert_eq!(again.open("join-token:worker", &sealed).expect("open"), b"the secret", "derivation is stable");
    }
}
