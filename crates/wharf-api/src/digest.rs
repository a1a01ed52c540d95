//! Content digests (`algorithm:hex`) as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The digest algorithms Wharf computes and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest has no algorithm separator")]
    MissingSeparator,
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("digest hex has length {got}, expected {expected}")]
    BadLength { got: usize, expected: usize },
    #[error("digest hex must be lowercase hexadecimal")]
    BadHex,
}

/// A validated digest: a known algorithm and its lowercase hex encoding. It serializes as
/// the string `algorithm:hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from raw hash output.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Digest { algorithm, hex }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (algo, hex) = s.split_once(':').ok_or(DigestError::MissingSeparator)?;
        let algorithm =
            Algorithm::parse(algo).ok_or_else(|| DigestError::UnsupportedAlgorithm(algo.chars().take(32).collect()))?;
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::BadLength { got: hex.len(), expected: algorithm.hex_len() });
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::BadHex);
        }
        Ok(Digest { algorithm, hex: hex.to_owned() })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Digest, DigestError> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256_and_sha512() {
        let s = format!("sha256:{}", "a".repeat(64));
        let d: Digest = s.parse().expect("valid");
        assert_eq!(d.to_string(), s);
        let s = format!("sha512:{}", "0".repeat(128));
        assert_eq!(s.parse::<Digest>().expect("valid").algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn refuses_malformed_digests() {
        assert_eq!("sha256".parse::<Digest>(), Err(DigestError::MissingSeparator));
        assert!(matches!("md5:abc".parse::<Digest>(), Err(DigestError::UnsupportedAlgorithm(_))));
        assert!(matches!("sha256:abc".parse::<Digest>(), Err(DigestError::BadLength { .. })));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(upper.parse::<Digest>(), Err(DigestError::BadHex));
        let traversal = format!("sha256:../../{}", "a".repeat(58));
        assert_eq!(traversal.parse::<Digest>(), Err(DigestError::BadHex));
    }

    #[test]
    fn from_bytes_is_lowercase_hex() {
        let d = Digest::from_bytes(Algorithm::Sha256, &[0xab; 32]);
        assert_eq!(d.hex(), "ab".repeat(32));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = s.parse::<Digest>();
        }

        #[test]
        fn display_roundtrips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 32)) {
            let d = Digest::from_bytes(Algorithm::Sha256, &bytes);
            proptest::prop_assert_eq!(d.to_string().parse::<Digest>().expect("roundtrip"), d);
        }
    }
}
