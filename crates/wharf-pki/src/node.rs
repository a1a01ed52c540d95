//! Node identity: certificates whose subject says which node, role and cluster they belong to
//! (CN = node id, OU = role, O = cluster id), signed by the cluster CA and good for both ends
//! of a TLS connection; and the rustls configurations for mutual TLS between nodes.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::{Ca, CertifiedKey, PkiError, ServerCert};

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "manager" => Some(Role::Manager),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// Who a node certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: u64,
    pub role: Role,
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
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.node_id.to_string());
        dn.push(DnType::OrganizationalUnitName, identity.role.as_str());
        dn.push(DnType::OrganizationName, identity.cluster_id.as_str());
        params.distinguished_name = dn;
        for name in names {
            let san = match name.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into()?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem(), not_after: params.not_after })
    }
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
    let role = Role::parse(&first(&mut subject.iter_organizational_unit())?)?;
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
pub fn mutual_server_config(cert: Arc<ServerCert>, ca_pem: &str) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots(ca_pem)?)
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder().with_client_cert_verifier(verifier).with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration for node-to-node calls: trusts only the cluster CA and presents
/// the node's own certificate.
pub fn node_client_config(key: &CertifiedKey, ca_pem: &str) -> Result<rustls::ClientConfig, PkiError> {
    let chain =
        vec![CertificateDer::from_pem_slice(key.cert_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?];
    let private = PrivateKeyDer::from_pem_slice(key.key_pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))?;
    let mut config =
        rustls::ClientConfig::builder().with_root_certificates(roots(ca_pem)?).with_client_auth_cert(chain, private)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_carry_their_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let identity = NodeIdentity { node_id: 7, role: Role::Manager, cluster_id: "c-123".into() };
        let key = ca.issue_node(&identity, &["127.0.0.1".into()], NODE_VALIDITY).expect("issue");
        let der = CertificateDer::from_pem_slice(key.cert_pem.as_bytes()).expect("der");
        assert_eq!(node_identity(&der), Some(identity));
        let worker = NodeIdentity { node_id: 8, role: Role::Worker, cluster_id: "c-123".into() };
        let key = ca.issue_node(&worker, &[], NODE_VALIDITY).expect("issue");
        let der = CertificateDer::from_pem_slice(key.cert_pem.as_bytes()).expect("der");
        assert_eq!(node_identity(&der).map(|i| i.role), Some(Role::Worker));
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("der");
        assert_eq!(node_identity(&ca_der), None, "the CA is not a node");
    }
}
