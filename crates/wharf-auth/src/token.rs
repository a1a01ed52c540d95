//! Registry tokens: JWTs signed with ES256 by a key that the cluster CA certified. The header
//! carries the libtrust `kid` (what distribution 2.x looks keys up by) and the `x5c` chain
//! (what every verifier accepts); the claims carry the granted access.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wharf_pki::TokenKey;

use crate::scope::Access;

/// The claims of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user name; empty for an anonymous token.
    pub sub: String,
    /// The user's account id and credentials epoch when the token was issued (0 for an
    /// anonymous token): a token is good only while both are still the account's.
    #[serde(default)]
    pub uid: u64,
    #[serde(default)]
    pub epoch: u64,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token was not signed by this cluster's token key")]
    UnknownKey,
    #[error("token is expired or not yet valid")]
    Expired,
    #[error("token is for another service or issuer")]
    WrongAudience,
    #[error("token signature or claims are invalid: {0}")]
    Invalid(String),
}

/// How long after its expiry (or before its start) a token is still taken, for clock skew
/// between nodes.
const LEEWAY_SECS: u64 = 5;

/// The libtrust key id of a public key: SHA-256 of its DER SubjectPublicKeyInfo, truncated to
/// 240 bits, base32 without padding, in groups of four joined by colons.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = Sha256::digest(spki_der);
    let encoded = base32(&hash[..30]);
    let groups: Vec<&str> = encoded.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Signs registry tokens.
pub struct TokenSigner {
    key: EncodingKey,
    header: Header,
    issuer: String,
    service: String,
    /// Lifetime of an access token, in seconds.
    pub lifetime: u64,
}

impl TokenSigner {
    pub fn new(key: &TokenKey, issuer: &str, service: &str, lifetime: u64) -> Result<TokenSigner, TokenError> {
        let encoding =
            EncodingKey::from_ec_pem(key.private_pem.as_bytes()).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(libtrust_key_id(&key.spki_der));
        let b64 = base64::engine::general_purpose::STANDARD;
        header.x5c = Some(vec![b64.encode(&key.cert_der), b64.encode(&key.ca_der)]);
        Ok(TokenSigner { key: encoding, header, issuer: issuer.to_owned(), service: service.to_owned(), lifetime })
    }

    /// A token for `subject` (user name, account id, credentials epoch; `None`: anonymous)
    /// granting `access`, issued at `now`.
    pub fn sign(&self, subject: Option<(&str, u64, u64)>, access: Vec<Access>, now: u64) -> Result<String, TokenError> {
        let (sub, uid, epoch) = subject.unwrap_or(("", 0, 0));
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            uid,
            epoch,
            aud: self.service.clone(),
            exp: now + self.lifetime,
            nbf: now,
            iat: now,
            jti: crate::random_hex(16),
            access,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

/// Most tokens kept verified in memory; a full cache is emptied of expired tokens, or cleared.
const CACHE_LIMIT: usize = 8192;

/// Verifies registry tokens. A verified token is remembered until it expires, so that the
/// signature of a token a client reuses for many requests is checked once.
pub struct TokenVerifier {
    key: DecodingKey,
    kid: String,
    validation: Validation,
    verified: RwLock<HashMap<String, Arc<Claims>>>,
}

impl TokenVerifier {
    pub fn new(key: &TokenKey, issuer: &str, service: &str) -> Result<TokenVerifier, TokenError> {
        let decoding =
            DecodingKey::from_ec_pem(key.public_pem.as_bytes()).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[service]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(TokenVerifier {
            key: decoding,
            kid: libtrust_key_id(&key.spki_der),
            validation,
            verified: RwLock::new(HashMap::new()),
        })
    }

    /// The claims of `token` if this cluster signed it for this service and it is valid at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Claims>, TokenError> {
        let cached = self.verified.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned();
        if let Some(claims) = cached {
            return if in_time(&claims, now) { Ok(claims) } else { Err(TokenError::Expired) };
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::Expired,
                ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => TokenError::WrongAudience,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    TokenError::Malformed
                }
                other => TokenError::Invalid(format!("{other:?}")),
            }
        })?;
        let claims = Arc::new(data.claims);
        if !in_time(&claims, now) {
            return Err(TokenError::Expired);
        }
        let mut cache = self.verified.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), Arc::clone(&claims));
        Ok(claims)
    }
}

fn in_time(claims: &Claims, now: u64) -> bool {
    now < claims.exp + LEEWAY_SECS && claims.nbf <= now + LEEWAY_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        for (input, expected) in [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foobar", "MZXW6YTBOI")] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
    }

    #[test]
    fn key_id_is_libtrusts() {
        // Computed with Python: base64.b32encode(sha256(b"wharf").digest()[:30]), grouped by four.
        assert_eq!(libtrust_key_id(b"wharf"), "HGBO:UKKZ:C6VS:AOVA:7KGW:HTUT:S7SK:IZ77:VO25:YD6S:2REL:BOFC");
    }
}
