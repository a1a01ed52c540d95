//! Node-to-node server authentication by node identity, as Swarm does it: a node calling a
//! manager checks that the certificate chains to the cluster CA, is for server use, and names
//! a manager (OU) of its cluster (O) in its subject. Host names play no part: a node's
//! addresses are what it claims, and its identity is what the CA signed. The manager checks
//! the caller's certificate against the replicated state in turn (`wharf-http`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::node::{NodeRole, node_identity};

/// Accepts a server certificate of a manager of `cluster_id` (of any cluster under the CA when
/// `None`: a joining node knows only the CA, pinned by its token).
#[derive(Debug)]
pub(crate) struct ManagerVerifier {
    roots: Arc<RootCertStore>,
    cluster_id: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ManagerVerifier {
    pub(crate) fn new(roots: Arc<RootCertStore>, cluster_id: Option<&str>) -> ManagerVerifier {
        let algorithms = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        ManagerVerifier { roots, cluster_id: cluster_id.map(str::to_owned), algorithms }
    }
}

impl ServerCertVerifier for ManagerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let refused = |why: &str| {
            Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(std::io::Error::other(
                why.to_owned(),
            )))))
        };
        let identity = node_identity(end_entity).ok_or_else(|| refused("the server's certificate names no node"))?;
        if identity.role != NodeRole::Manager {
            return Err(refused("the server's certificate is not a manager's"));
        }
        if self.cluster_id.as_ref().is_some_and(|c| *c != identity.cluster_id) {
            return Err(refused("the server's certificate is for another cluster"));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
