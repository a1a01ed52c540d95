//! Who a node is, kept in its data directory: `node/identity.json` (id, cluster, role,
//! advertised address, the managers last heard of) with the node's certificate and key, and on
//! a manager the keys every manager holds (`pki/`). The identity file is written last, so its
//! presence means the node is complete.

use serde::{Deserialize, Serialize};
use wharf_api::NodeRole;
use wharf_api::cluster::ManagerSecrets;
use wharf_pki::{CertifiedKey, write_private};

use crate::{DataDir, NodeError};

/// Who this node is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: u64,
    pub cluster_id: String,
    pub role: NodeRole,
    pub advertise: String,
    /// The managers' addresses as last heard, where heartbeats go.
    #[serde(default)]
    pub managers: Vec<String>,
}

impl DataDir {
    /// The identity and certificate a node left here, if it left one.
    pub fn load_identity(&self) -> Result<Option<(Identity, CertifiedKey)>, NodeError> {
        let Ok(raw) = std::fs::read(self.identity_file()) else { return Ok(None) };
        let identity: Identity = serde_json::from_slice(&raw)
            .map_err(|e| NodeError::Identity(format!("read {}: {e}", self.identity_file().display())))?;
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(&path).map_err(|e| NodeError::io(format!("read {}", path.display()), e))
        };
        let key = CertifiedKey::from_pems(read(self.node_cert())?, read(self.node_key())?)?;
        Ok(Some((identity, key)))
    }

    /// Saves the node's key, certificate and identity, the identity last.
    pub fn save_identity(&self, identity: &Identity, key: &CertifiedKey) -> Result<(), NodeError> {
        wharf_pki::create_private_dir(&self.node())?;
        write_private(&self.node_key(), &key.key_pem)?;
        write_private(&self.node_cert(), &key.cert_pem)?;
        let json = serde_json::to_string_pretty(identity).map_err(|e| NodeError::Identity(e.to_string()))?;
        Ok(write_private(&self.identity_file(), &json)?)
    }

    /// Keeps the keys a manager receives (when it joins or becomes a manager).
    pub fn save_manager_secrets(&self, secrets: &ManagerSecrets) -> Result<(), NodeError> {
        wharf_pki::create_private_dir(&self.pki())?;
        write_private(&self.ca_key(), &secrets.ca_key_pem)?;
        write_private(&self.token_key(), &secrets.token_key_pem)?;
        Ok(write_private(&self.token_cert(), &secrets.token_cert_pem)?)
    }

    /// The keys this manager holds, to hand to a node that joins or renews as a manager.
    pub fn manager_secrets(&self) -> Result<ManagerSecrets, NodeError> {
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(&path).map_err(|e| NodeError::io(format!("read {}", path.display()), e))
        };
        Ok(ManagerSecrets {
            ca_key_pem: read(self.ca_key())?,
            token_key_pem: read(self.token_key())?,
            token_cert_pem: read(self.token_cert())?,
        })
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_pem(&self) -> Result<String, NodeError> {
        std::fs::read_to_string(self.ca_cert())
            .map_err(|e| NodeError::io(format!("read {}", self.ca_cert().display()), e))
    }

    /// Drops what a manager kept (the Raft log, snapshots, the state): a worker keeps no replica,
    /// and a later promotion starts it from the cluster's current state.
    pub fn forget_manager_state(&self) -> Result<(), NodeError> {
        for path in [self.raft_log(), self.state()] {
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| NodeError::io(format!("remove {}", path.display()), e))?;
                tracing::info!(path = %path.display(), "removed the replica this node kept as a manager");
            }
        }
        let snapshots = self.snapshots();
        if snapshots.exists() {
            std::fs::remove_dir_all(&snapshots)
                .map_err(|e| NodeError::io(format!("remove {}", snapshots.display()), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wharf_pki::{Ca, NODE_VALIDITY, NodeIdentity};

    use super::*;

    #[test]
    fn a_saved_identity_reads_back_and_a_worker_forgets_the_replica() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path().join("data"));
        assert!(dir.load_identity().expect("read").is_none(), "nothing yet");
        let ca = Ca::load_or_create(&dir.pki()).expect("ca");
        let node = NodeIdentity { node_id: 3, role: NodeRole::Worker, cluster_id: "c".into() };
        let key = ca.issue_node(&node, &[], NODE_VALIDITY).expect("cert");
        let identity = Identity {
            node_id: 3,
            cluster_id: "c".into(),
            role: NodeRole::Worker,
            advertise: "10.0.0.3:5000".into(),
            managers: vec!["10.0.0.1:5000".into()],
        };
        dir.save_identity(&identity, &key).expect("save");
        let (read, read_key) = dir.load_identity().expect("read").expect("an identity");
        assert_eq!((read.node_id, read.role, read.managers), (3, NodeRole::Worker, identity.managers.clone()));
        assert_eq!(read_key.cert_pem, key.cert_pem);
        assert!(dir.ca_pem().expect("ca").contains("BEGIN CERTIFICATE"));
        std::fs::write(dir.state(), b"x").expect("state");
        std::fs::create_dir_all(dir.incoming_snapshots()).expect("snapshots");
        dir.forget_manager_state().expect("forget");
        assert!(!dir.state().exists() && !dir.snapshots().exists());
        assert!(dir.identity_file().exists(), "the identity stays");
    }
}
