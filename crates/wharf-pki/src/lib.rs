//! Wharf's PKI: the certificate authority that a node creates on first start, the node
//! certificates it signs (they serve TLS to clients and to other nodes), join tokens,
//! fingerprints for pinning, and the rustls configurations.
//!
//! Key material lives in files in the node's data directory (every file mode 0600, every
//! folder 0700). This crate must never open sockets; the binary and the HTTP crate use its
//! configs.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use time;

mod node;
mod secrets;
mod user;
mod verify;

pub use node::{
    JoinToken, NODE_VALIDITY, NodeIdentity, NodeRole, ca_client_config, check_csr, joining_client_config,
    mutual_server_config, new_csr, node_client_config, node_identity, node_names, node_renewal_time,
    renewing_client_config,
};
pub use secrets::SecretsKey;
pub use user::{USER_OU, UserCertificate, public_key_pem, user_certificate};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("pem: {0}")]
    Pem(String),
    #[error("cryptography: {0} failed")]
    Crypto(&'static str),
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> PkiError {
    move |source| PkiError::Io { context, source }
}

/// The certificate authority of a Wharf node (later: of the cluster).
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    secrets: SecretsKey,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

impl CertifiedKey {
    /// A certificate and key read back (from files, or from a manager's answer).
    pub fn from_pems(cert_pem: String, key_pem: String) -> Result<CertifiedKey, PkiError> {
        let (_, not_after) = validity(&cert_pem)?;
        Ok(CertifiedKey { cert_pem, key_pem, not_after })
    }
}

impl Ca {
    /// Loads the CA from `dir` (`ca.crt`, `ca.key`), creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if cert_path.exists() && key_path.exists() {
            let cert_pem = fs::read_to_string(&cert_path).map_err(io(format!("read {}", cert_path.display())))?;
            let key_pem = fs::read_to_string(&key_path).map_err(io(format!("read {}", key_path.display())))?;
            return Ca::from_pem(&cert_pem, &key_pem);
        }
        create_private_dir(dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Wharf Root CA");
        dn.push(DnType::OrganizationName, "Wharf");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem())?;
        write_atomic(&cert_path, cert.pem().as_bytes())?;
        Ca::from_pem(&cert.pem(), &key.serialize_pem())
    }

    fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let secrets = SecretsKey::derive(&key.serialize_der())?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?.to_vec();
        Ok(Ca { cert_pem: cert_pem.to_owned(), cert_der, issuer, secrets })
    }

    /// The cluster's secrets key (derived from the CA key, so every manager has the same).
    pub fn secrets(&self) -> &SecretsKey {
        &self.secrets
    }

    /// The CA certificate, PEM-encoded (what `GET /ca` serves).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate's DER, as uppercase colon-separated hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// The CA certificate, DER-encoded.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Loads the key that signs registry tokens from `dir` (`token.key`, `token.crt`), creating
    /// it on first use with a certificate from this CA, so that a verifier holding only the CA
    /// can check a token's `x5c` chain.
    pub fn load_or_create_token_key(&self, dir: &Path) -> Result<TokenKey, PkiError> {
        let (cert_path, key_path) = (dir.join("token.crt"), dir.join("token.key"));
        if !(cert_path.exists() && key_path.exists()) {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Wharf token signer");
            dn.push(DnType::OrganizationName, "Wharf");
            params.distinguished_name = dn;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + CA_VALIDITY;
            let cert = params.signed_by(&key, &self.issuer)?;
            write_private(&key_path, &key.serialize_pem())?;
            write_atomic(&cert_path, cert.pem().as_bytes())?;
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io(format!("read {}", key_path.display())))?;
        let cert_pem = fs::read_to_string(&cert_path).map_err(io(format!("read {}", cert_path.display())))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?.to_vec();
        Ok(TokenKey {
            private_pem: key_pem,
            public_pem: key.public_key_pem(),
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
            cert_der,
            ca_der: self.cert_der.clone(),
        })
    }
}

/// The key that signs registry tokens, with its certificate chain.
#[derive(Clone)]
pub struct TokenKey {
    /// PKCS#8 PEM of the ECDSA P-256 private key.
    pub private_pem: String,
    /// SubjectPublicKeyInfo PEM of the public key.
    pub public_pem: String,
    /// SubjectPublicKeyInfo DER of the public key (what the libtrust key id hashes).
    pub spki_der: Vec<u8>,
    /// The key's certificate, signed by the CA.
    pub cert_der: Vec<u8>,
    pub ca_der: Vec<u8>,
}

/// The certificate a TLS listener presents (and a node presents as a client), replaceable
/// while in use: renewal installs a new certificate and new handshakes use it at once.
#[derive(Debug)]
pub struct RenewableCert {
    current: RwLock<(Arc<rustls::sign::CertifiedKey>, OffsetDateTime)>,
}

impl RenewableCert {
    pub fn new(key: &CertifiedKey, ca_pem: &str) -> Result<RenewableCert, PkiError> {
        Ok(RenewableCert { current: RwLock::new((signing_key(key, ca_pem)?, key.not_after)) })
    }

    /// Replaces the certificate for new handshakes.
    pub fn install(&self, key: &CertifiedKey, ca_pem: &str) -> Result<(), PkiError> {
        let signed = signing_key(key, ca_pem)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (signed, key.not_after);
        Ok(())
    }

    /// When the current certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).1
    }
}

impl RenewableCert {
    fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0)
    }
}

impl rustls::server::ResolvesServerCert for RenewableCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for RenewableCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The DNS names and IP addresses a certificate covers (its subject alternative names).
pub fn cert_names(cert_pem: &str) -> Result<Vec<String>, PkiError> {
    use x509_parser::extensions::GeneralName;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Pem(e.to_string()))?;
    let Ok(Some(sans)) = cert.subject_alternative_name() else { return Ok(Vec::new()) };
    let names = sans.value.general_names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        GeneralName::IPAddress([a, b, c, d]) => Some(IpAddr::from([*a, *b, *c, *d]).to_string()),
        GeneralName::IPAddress(bytes) => <[u8; 16]>::try_from(*bytes).ok().map(|v6| IpAddr::from(v6).to_string()),
        _ => None,
    });
    Ok(names.collect())
}

/// When the certificate in `cert_pem` becomes valid and when it expires.
pub fn validity(cert_pem: &str) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Pem(e.to_string()))?;
    Ok((cert.validity().not_before.to_datetime(), cert.validity().not_after.to_datetime()))
}

/// A renewal time for a certificate valid from `not_before` to `not_after`, drawn at random
/// from 50-80% of its lifetime (what Swarm does): the nodes of a cluster do not all renew at once.
pub fn random_renewal_time(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let mut bytes = [0u8; 4];
    // A failing random source only makes every node renew at 65%.
    let _ = rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(&mut bytes);
    let unit = if bytes == [0; 4] { 0.5 } else { f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) };
    renewal_time(not_before, not_after, 0.5 + 0.3 * unit)
}

/// When a certificate valid from `not_before` to `not_after` should be renewed: at
/// `fraction` of its lifetime, which callers draw from 0.5-0.8 so that the nodes of a cluster
/// do not all renew at once.
pub fn renewal_time(not_before: OffsetDateTime, not_after: OffsetDateTime, fraction: f64) -> OffsetDateTime {
    let lifetime = (not_after - not_before).as_seconds_f64().max(0.0);
    not_before + Duration::seconds_f64(lifetime * fraction.clamp(0.0, 1.0))
}

fn signing_key(key: &CertifiedKey, ca_pem: &str) -> Result<Arc<rustls::sign::CertifiedKey>, PkiError> {
    let mut chain: Vec<CertificateDer<'static>> = Vec::new();
    for pem in [key.cert_pem.as_bytes(), ca_pem.as_bytes()] {
        chain.push(CertificateDer::from_pem_slice(pem).map_err(|e| PkiError::Pem(e.to_string()))?);
    }
    let private = PrivateKeyDer::from_pem_slice(key.key_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider.key_provider.load_private_key(private)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)))
}

/// Adds each name as an IP address or DNS subject alternative name, once.
pub(crate) fn add_sans(params: &mut CertificateParams, names: &[String]) -> Result<(), PkiError> {
    for name in names {
        let san = match name.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.as_str().try_into()?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    Ok(())
}

/// SHA-256 of DER bytes as uppercase colon-separated hex (the form `openssl x509 -fingerprint` prints).
pub fn fingerprint(der: &[u8]) -> String {
    let hash = Sha256::digest(der);
    hash.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Writes a certificate: public, but a data directory holds nothing others may read.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, data, 0o600)
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(format!("create {}", dir.display())))
}

/// Writes a secret (mode 0600) through a synced temporary file and a rename.
pub fn write_private(path: &Path, data: &str) -> Result<(), PkiError> {
    write_with_mode(path, data.as_bytes(), 0o600)
}

/// Writes `path` through a synced temporary file and a rename, so a crash leaves the old file or the new one.
fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(format!("create {}", tmp.display())))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("rename {}", path.display())))
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;

    use super::*;

    #[test]
    fn ca_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("create");
        let again = Ca::load_or_create(dir.path()).expect("load");
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert_eq!(ca.fingerprint().len(), 32 * 3 - 1);
        let mode = fs::metadata(dir.path().join("ca.key")).expect("key").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }

    #[test]
    fn server_cert_chains_to_ca_with_sans() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("create");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned(), "reg.test".to_owned()];
        let identity = NodeIdentity { node_id: 1, role: NodeRole::Manager, cluster_id: "wharf-test".into() };
        let key = ca.issue_node(&identity, &names, NODE_VALIDITY).expect("issue");
        mutual_server_config(Arc::new(RenewableCert::new(&key, ca.cert_pem()).expect("cert")), ca.cert_pem())
            .expect("config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("ca der")).expect("add");
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots)).build().expect("verifier");
        let leaf = CertificateDer::from_pem_slice(key.cert_pem.as_bytes()).expect("leaf");
        let mut named = cert_names(&key.cert_pem).expect("names");
        named.sort();
        assert_eq!(named, ["127.0.0.1", "::1", "localhost", "reg.test"]);
        for name in ["reg.test", "127.0.0.1", "::1"] {
            let server_name = rustls_pki_types::ServerName::try_from(name).expect("name");
            verifier
                .verify_server_cert(&leaf, &[], &server_name, &[], rustls_pki_types::UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls_pki_types::ServerName::try_from("evil.test").expect("name");
        assert!(verifier.verify_server_cert(&leaf, &[], &other, &[], rustls_pki_types::UnixTime::now()).is_err());
    }
}
