//! User certificates, what a client bundle carries: CN = the user's name, OU = `user`, O = the
//! cluster id, and a random serial number that names the bundle, so that the state can end one
//! bundle (or every bundle of a user) without a revocation list. Client use only.

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::{Ca, CertifiedKey, PkiError};

/// The organisational unit of a user certificate.
pub const USER_OU: &str = "user";

/// Who a user certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCertificate {
    pub user: String,
    pub cluster_id: String,
    /// The certificate's serial number in lowercase hex: the bundle's id.
    pub bundle: String,
}

impl Ca {
    /// Signs a user certificate for `user` of `cluster_id`, valid for `validity`, with a new
    /// key and the serial `bundle` (16 random bytes in hex); returns it with the bundle id.
    pub fn issue_user(
        &self,
        user: &str,
        cluster_id: &str,
        validity: Duration,
    ) -> Result<(CertifiedKey, String), PkiError> {
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| PkiError::Pem("the system's random source failed".into()))?;
        // A positive serial number: the top bit clear.
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let bundle = hex::encode(serial);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        dn.push(DnType::OrganizationalUnitName, USER_OU);
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem(), not_after: params.not_after };
        Ok((key, bundle))
    }
}

/// The user a certificate names, if it is a user certificate. The caller must have verified
/// its chain (rustls does, for a peer certificate on a mutual-TLS connection).
pub fn user_certificate(der: &[u8]) -> Option<UserCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let ou = subject.iter_organizational_unit().next()?.as_str().ok()?;
    if ou != USER_OU {
        return None;
    }
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let cluster_id = subject.iter_organization().next()?.as_str().ok()?.to_owned();
    let bundle = hex::encode(cert.raw_serial());
    Some(UserCertificate { user, cluster_id, bundle })
}

/// The public key of a certificate in PEM (`cert.pub` of a bundle).
pub fn public_key_pem(cert_pem: &str) -> Result<String, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Pem(e.to_string()))?;
    let spki = cert.public_key().raw;
    let b64 = base64_lines(spki);
    Ok(format!("-----BEGIN PUBLIC KEY-----\n{b64}-----END PUBLIC KEY-----\n"))
}

fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_certificate_names_its_user_cluster_and_bundle_and_is_no_node_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let (key, bundle) = ca.issue_user("alice", "c1", Duration::days(1)).expect("issue");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(key.cert_pem.as_bytes())
            .map(|d: rustls_pki_types::CertificateDer<'_>| d.to_vec())
            .expect("der");
        let named = user_certificate(&der).expect("a user certificate");
        assert_eq!(named, UserCertificate { user: "alice".into(), cluster_id: "c1".into(), bundle });
        assert!(crate::node_identity(&der).is_none());
        assert!(public_key_pem(&key.cert_pem).expect("public key").starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }
}
