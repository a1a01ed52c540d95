//! Node identity: certificates whose subject says which node, role and cluster they belong to
//! (CN = node id, OU = role, O = cluster id), signed by the cluster CA and good for both ends
//! of a TLS connection; and the rustls configurations for mutual TLS between nodes.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::{Ca, CertifiedKey, PkiError, RenewableCert};

pub use wharf_api::NodeRole;

/// Who a node certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: u64,
    pub role: NodeRole,
    pub cluster_id: String,
}

/// How long a node certificate is valid; nodes renew at a random 50-80% of it.
pub const NODE_VALIDITY: Duration = Duration::days(90);

impl Ca {
    /// Signs a node certificate for `identity`, with a new key, valid for `validity` and for
    /// the given names (so the same certificate serves the node's TLS listener).
    pub fn issue_node(
        &self,
        identity: &NodeIdentity,
        names: &[String],
        validity: Duration,
    ) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate()?;
        let params = node_params(identity, names, validity)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem(), not_after: params.not_after })
    }
}

/// The names a node's certificate covers, so that the same certificate serves its TLS
/// listener: the hosts of `addrs` (host:port; an unspecified address such as 0.0.0.0 is
/// left out), loopback, the node's host name and `extra`, each once.
pub fn node_names(addrs: &[&str], hostname: &str, extra: &[String]) -> Vec<String> {
    let hosts = addrs
        .iter()
        .map(|addr| addr.rsplit_once(':').map_or(*addr, |(h, _)| h).trim_matches(|c| c == '[' || c == ']'))
        .filter(|host| host.parse::<std::net::IpAddr>().map_or(true, |ip| !ip.is_unspecified()));
    let mut names: Vec<String> = hosts.map(str::to_owned).collect();
    names.extend(["localhost", "127.0.0.1", "::1", hostname].map(str::to_owned));
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// The parameters of a node certificate, valid for `validity` from now, with the identity as
/// its subject. A manager's is for server and client use and covers `names` (it serves
/// clients). A worker's is for client use only and names no host, whatever `names` says:
/// whoever holds only a worker token must not get a certificate that any client would accept
/// from a server.
fn node_params(identity: &NodeIdentity, names: &[String], validity: Duration) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.node_id.to_string());
    dn.push(DnType::OrganizationalUnitName, identity.role.as_str());
    dn.push(DnType::OrganizationName, identity.cluster_id.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    match identity.role {
        NodeRole::Manager => {
            crate::add_sans(&mut params, names)?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        }
        NodeRole::Worker => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - NODE_BACKDATE;
    params.not_after = now + validity;
    Ok(params)
}

/// How far a node certificate's start is set back, against clocks that run a little behind.
const NODE_BACKDATE: Duration = Duration::minutes(5);

/// When a node should renew the certificate in `cert_pem`: at a random 50-80% of the time from
/// its issue (its start, without the backdating) to its expiry.
pub fn node_renewal_time(cert_pem: &str) -> Result<OffsetDateTime, PkiError> {
    let (not_before, not_after) = crate::validity(cert_pem)?;
    Ok(crate::random_renewal_time((not_before + NODE_BACKDATE).min(not_after), not_after))
}

/// The identity in a node certificate's subject, if it has one. The caller must have verified
/// the certificate's chain (rustls does, for a peer certificate on a mutual-TLS connection).
pub fn node_identity(der: &[u8]) -> Option<NodeIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let first = |attrs: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        attrs.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let node_id = first(&mut subject.iter_common_name())?.parse().ok()?;
    let role = NodeRole::parse(&first(&mut subject.iter_organizational_unit())?)?;
    let cluster_id = first(&mut subject.iter_organization())?;
    Some(NodeIdentity { node_id, role, cluster_id })
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?;
    roots.add(ca).map_err(PkiError::Tls)?;
    Ok(Arc::new(roots))
}

/// A server configuration that presents `cert` and asks clients for a certificate from the
/// cluster CA, without requiring one: the public API serves anyone, and node-to-node routes
/// check the verified peer certificate themselves.
pub fn mutual_server_config(cert: Arc<RenewableCert>, ca_pem: &str) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots(ca_pem)?)
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder().with_client_cert_verifier(verifier).with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration for node-to-node calls: accepts only a manager of `cluster_id`
/// (by the identity its certificate names, not by host name: see [`crate::verify`]) and
/// presents the node's own certificate.
pub fn node_client_config(
    key: &CertifiedKey,
    ca_pem: &str,
    cluster_id: &str,
) -> Result<rustls::ClientConfig, PkiError> {
    renewing_client_config(Arc::new(RenewableCert::new(key, ca_pem)?), ca_pem, cluster_id)
}

/// A client configuration for a node that is joining: it knows only the CA (pinned by its
/// join token) and accepts any manager certificate under it; it presents none.
pub fn joining_client_config(ca_pem: &str) -> Result<rustls::ClientConfig, PkiError> {
    let verifier = Arc::new(crate::verify::ManagerVerifier::new(roots(ca_pem)?, None));
    let mut config =
        rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration that trusts only the cluster CA and presents no certificate.
pub fn ca_client_config(ca_pem: &str) -> Result<rustls::ClientConfig, PkiError> {
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots(ca_pem)?).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration like [`node_client_config`] whose certificate is whatever `cert`
/// holds when a connection starts, so renewal reaches connections made after it.
pub fn renewing_client_config(
    cert: Arc<RenewableCert>,
    ca_pem: &str,
    cluster_id: &str,
) -> Result<rustls::ClientConfig, PkiError> {
    let verifier = Arc::new(crate::verify::ManagerVerifier::new(roots(ca_pem)?, Some(cluster_id)));
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;

    use super::*;

    #[test]
    fn node_names_cover_the_addresses_loopback_and_host_name_once() {
        let names = node_names(&["10.0.0.5:5000", "0.0.0.0:5000", "[fd00::1]:5000"], "box", &["reg.test".into()]);
        assert_eq!(names, ["10.0.0.5", "fd00::1", "localhost", "127.0.0.1", "::1", "box", "reg.test"]);
        assert_eq!(node_names(&["127.0.0.1:1"], "", &[]), ["127.0.0.1", "localhost", "::1"]);
    }

    #[test]
    fn node_certificates_carry_their_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let identity = NodeIdentity { node_id: 7, role: NodeRole::Manager, cluster_id: "c-123".into() };
        let key = ca.issue_node(&identity, &["127.0.0.1".into()], NODE_VALIDITY).expect("issue");
        let der = CertificateDer::from_pem_slice(key.cert_pem.as_bytes()).expect("der");
        assert_eq!(node_identity(&der), Some(identity));
        let worker = NodeIdentity { node_id: 8, role: NodeRole::Worker, cluster_id: "c-123".into() };
        let key = ca.issue_node(&worker, &[], NODE_VALIDITY).expect("issue");
        let der = CertificateDer::from_pem_slice(key.cert_pem.as_bytes()).expect("der");
        assert_eq!(node_identity(&der).map(|i| i.role), Some(NodeRole::Worker));
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("der");
        assert_eq!(node_identity(&ca_der), None, "the CA is not a node");
    }

    /// Whether a client holding only the CA (as curl --cacert does) accepts `cert_pem` from a
    /// server reached as `name`.
    fn verifies_as_server(ca: &Ca, cert_pem: &str, name: &str) -> bool {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let verifier = rustls::client::WebPkiServerVerifier::builder(roots(ca.cert_pem()).expect("roots"))
            .build()
            .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("leaf");
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).expect("name");
        verifier.verify_server_cert(&leaf, &[], &name, &[], rustls_pki_types::UnixTime::now()).is_ok()
    }

    #[test]
    fn a_worker_certificate_serves_no_name_whatever_was_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let asked: Vec<String> = ["registry.example.com", "10.0.0.1", "localhost", "127.0.0.1"].map(Into::into).into();
        let worker = NodeIdentity { node_id: 9, role: NodeRole::Worker, cluster_id: "c".into() };
        let (_key, csr) = new_csr().expect("csr");
        let signed = ca.sign_node_csr(&csr, &worker, &asked, NODE_VALIDITY).expect("sign");
        let issued = ca.issue_node(&worker, &asked, NODE_VALIDITY).expect("issue").cert_pem;
        let manager = NodeIdentity { node_id: 1, role: NodeRole::Manager, cluster_id: "c".into() };
        let served = ca.issue_node(&manager, &asked, NODE_VALIDITY).expect("issue").cert_pem;
        for name in &asked {
            assert!(!verifies_as_server(&ca, &signed, name), "worker certificate from a CSR served {name}");
            assert!(!verifies_as_server(&ca, &issued, name), "worker certificate served {name}");
            assert!(verifies_as_server(&ca, &served, name), "the manager's certificate serves {name}");
        }
        let der = CertificateDer::from_pem_slice(signed.as_bytes()).expect("der");
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse");
        assert!(parsed.subject_alternative_name().expect("extension").is_none(), "no SANs at all");
    }

    #[test]
    fn nodes_accept_a_manager_of_their_cluster_by_identity_not_by_name() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let cert = |node_id, role, cluster: &str| {
            let identity = NodeIdentity { node_id, role, cluster_id: cluster.into() };
            let pem = ca.issue_node(&identity, &["10.9.9.9".into()], NODE_VALIDITY).expect("issue").cert_pem;
            CertificateDer::from_pem_slice(pem.as_bytes()).expect("der").into_owned()
        };
        let verifier = crate::verify::ManagerVerifier::new(roots(ca.cert_pem()).expect("roots"), Some("c1"));
        let joining = crate::verify::ManagerVerifier::new(roots(ca.cert_pem()).expect("roots"), None);
        let name = rustls_pki_types::ServerName::try_from("not-in-the-certificate.test").expect("name");
        let now = rustls_pki_types::UnixTime::now();
        let check = |v: &crate::verify::ManagerVerifier, der: &CertificateDer<'_>| {
            v.verify_server_cert(der, &[], &name, &[], now).is_ok()
        };
        assert!(check(&verifier, &cert(1, NodeRole::Manager, "c1")), "a manager of the cluster, under any name");
        assert!(!check(&verifier, &cert(2, NodeRole::Worker, "c1")), "a worker is no manager");
        assert!(!check(&verifier, &cert(3, NodeRole::Manager, "c2")), "a manager of another cluster");
        assert!(check(&joining, &cert(3, NodeRole::Manager, "c2")), "a joiner knows only the CA");
        assert!(!check(&joining, &cert(2, NodeRole::Worker, "c1")));
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = Ca::load_or_create(other_dir.path()).expect("other ca");
        let identity = NodeIdentity { node_id: 1, role: NodeRole::Manager, cluster_id: "c1".into() };
        let foreign = other.issue_node(&identity, &[], NODE_VALIDITY).expect("issue").cert_pem;
        let foreign = CertificateDer::from_pem_slice(foreign.as_bytes()).expect("der");
        assert!(!check(&verifier, &foreign), "signed by another CA");
    }

    #[test]
    fn renewal_falls_inside_the_lifetime_at_the_fraction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let identity = NodeIdentity { node_id: 3, role: NodeRole::Worker, cluster_id: "c".into() };
        let key = ca.issue_node(&identity, &[], Duration::hours(10)).expect("issue");
        let (not_before, not_after) = crate::validity(&key.cert_pem).expect("validity");
        assert!((not_after - key.not_after).abs() < Duration::seconds(1), "{not_after} vs {}", key.not_after);
        let at_half = crate::renewal_time(not_before, not_after, 0.5);
        let at_most = crate::renewal_time(not_before, not_after, 0.8);
        assert!(not_before < at_half && at_half < at_most && at_most < not_after);
        let lifetime = not_after - not_before;
        assert!(((at_half - not_before) - lifetime / 2i32).abs() < Duration::seconds(1));
        assert_eq!(crate::renewal_time(not_before, not_after, 7.0), not_after, "fractions are clamped");
    }
}

/// A join token: `WHARF-1-<SHA-256 of the root CA certificate, hex>-<secret>`. The digest lets
/// a joining node pin the CA it fetches; the secret authorises the join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_digest: String,
    pub secret: String,
}

impl JoinToken {
    /// A new token for the CA whose DER is `ca_der`, with `secret`.
    pub fn new(ca_der: &[u8], secret: String) -> JoinToken {
        use sha2::Digest;
        JoinToken { ca_digest: hex_lower(&sha2::Sha256::digest(ca_der)), secret }
    }

    /// A new token for the CA whose DER is `ca_der`, with a fresh random secret.
    pub fn generate(ca_der: &[u8]) -> Result<JoinToken, PkiError> {
        use aws_lc_rs::rand::SecureRandom;
        let mut secret = [0u8; 24];
        aws_lc_rs::rand::SystemRandom::new().fill(&mut secret).map_err(|_| PkiError::Crypto("draw a token secret"))?;
        Ok(JoinToken::new(ca_der, hex_lower(&secret)))
    }

    pub fn parse(s: &str) -> Option<JoinToken> {
        let mut parts = s.trim().splitn(4, '-');
        let (magic, version, digest, secret) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let digest_ok = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if magic != "WHARF" || version != "1" || !digest_ok || secret.len() < 16 {
            return None;
        }
        Some(JoinToken { ca_digest: digest.to_owned(), secret: secret.to_owned() })
    }

    /// Whether `ca_der` is the CA this token names.
    pub fn pins(&self, ca_der: &[u8]) -> bool {
        use sha2::Digest;
        hex_lower(&sha2::Sha256::digest(ca_der)) == self.ca_digest
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WHARF-1-{}-{}", self.ca_digest, self.secret)
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Ca {
    /// Signs the public key of a certificate signing request as a node certificate for
    /// `identity`: the subject is ours to set, not the requester's.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        identity: &NodeIdentity,
        names: &[String],
        validity: Duration,
    ) -> Result<String, PkiError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let params = node_params(identity, names, validity)?;
        csr.params = params;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }
}

/// Checks that `csr_pem` is a certificate signing request the CA can sign (well formed, and
/// signed by the key it carries), before anything is recorded for the node that sent it.
pub fn check_csr(csr_pem: &str) -> Result<(), PkiError> {
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    Ok(())
}

/// A new key and a certificate signing request for it, both PEM.
pub fn new_csr() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod join_tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_pin_their_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let token = JoinToken::new(ca.cert_der(), "s3cr3t-with-dashes-in-it".into());
        let text = token.to_string();
        assert!(text.starts_with("WHARF-1-"));
        assert_eq!(JoinToken::parse(&text), Some(token.clone()));
        assert!(token.pins(ca.cert_der()));
        let other = Ca::load_or_create(&dir.path().join("other")).expect("other ca");
        assert!(!token.pins(other.cert_der()));
        for bad in ["", "WHARF-2-abc-def", &text.replace("WHARF", "SWARM"), &text[..70]] {
            assert_eq!(JoinToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn csr_subject_is_replaced_by_the_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let (_key, csr) = new_csr().expect("csr");
        let identity = NodeIdentity { node_id: 4, role: NodeRole::Worker, cluster_id: "c".into() };
        let pem = ca.sign_node_csr(&csr, &identity, &["127.0.0.4".into()], NODE_VALIDITY).expect("sign");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
        assert_eq!(node_identity(&der), Some(identity));
    }
}
