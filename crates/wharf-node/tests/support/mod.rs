//! Managers assembled as `wharf` assembles one (`ManagerNode`), in this process: what the
//! cluster tests and the scheduler benchmark share.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use wharf_node::{DataDir, Identity, ManagerNode, ManagerSettings, StorageChoice, Uploads};
use wharf_pki::{Ca, NODE_VALIDITY, NodeIdentity, NodeRole};
use wharf_raft::{Raft, RaftProposer};
use wharf_store::Store;

pub const CLUSTER: &str = "cluster-test";

/// A manager assembled as `wharf` assembles one (`ManagerNode`), in this process.
pub struct Manager {
    pub id: u64,
    pub addr: String,
    pub node: Option<ManagerNode>,
}

impl Manager {
    pub fn node(&self) -> &ManagerNode {
        self.node.as_ref().expect("running")
    }

    pub fn raft(&self) -> &Raft {
        self.node().raft()
    }

    pub fn proposer(&self) -> &Arc<RaftProposer> {
        &self.node().manager.proposer
    }

    pub fn store(&self) -> &Store {
        &self.node().store
    }

    /// Stops it as a lost manager would stop: its listener closes and its Raft stops.
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
    }
}

/// The heartbeat period of these managers: short, so that a silent node is down quickly.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// Starts manager `id` in `tmp/node<id>`, holding the CA at `tmp/pki` as every manager does.
pub async fn start_manager(ca: &Arc<Ca>, tmp: &Path, id: u64) -> Manager {
    start_manager_with(ca, tmp, id, 1).await
}

/// [`start_manager`] acknowledging pushes on `blob_copies` nodes.
pub async fn start_manager_with(ca: &Arc<Ca>, tmp: &Path, id: u64, blob_copies: u32) -> Manager {
    start_manager_on(ca, tmp, id, blob_copies, StorageChoice::default()).await
}

pub async fn start_manager_on(ca: &Arc<Ca>, tmp: &Path, id: u64, blob_copies: u32, storage: StorageChoice) -> Manager {
    start_manager_beating(ca, tmp, id, blob_copies, storage, HEARTBEAT).await
}

/// [`start_manager_on`] with the heartbeat period `heartbeat`.
pub async fn start_manager_beating(
    ca: &Arc<Ca>,
    tmp: &Path,
    id: u64,
    blob_copies: u32,
    storage: StorageChoice,
    heartbeat: Duration,
) -> Manager {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let dir = DataDir::new(tmp.join(format!("node{id}")));
    wharf_pki::create_private_dir(&dir.pki()).expect("pki");
    for name in ["ca.crt", "ca.key"] {
        std::fs::copy(tmp.join("pki").join(name), dir.pki().join(name)).expect("copy the CA");
    }
    Ca::load_or_create(&dir.pki()).expect("ca").load_or_create_token_key(&dir.pki()).expect("token key");
    let node = NodeIdentity { node_id: id, role: NodeRole::Manager, cluster_id: CLUSTER.into() };
    let key = ca.issue_node(&node, &["127.0.0.1".into()], NODE_VALIDITY).expect("node cert");
    let identity = Identity {
        node_id: id,
        cluster_id: CLUSTER.into(),
        role: NodeRole::Manager,
        advertise: addr.clone(),
        managers: vec![],
    };
    let settings = ManagerSettings {
        heartbeat,
        node_cert_validity: NODE_VALIDITY,
        limits: wharf_http::Limits::default(),
        uploads: Uploads { per_user: 100, max_age: Duration::from_secs(3600), purge_every: Duration::from_secs(3600) },
        blob_copies,
        storage,
        blob_care: wharf_node::BlobCare::default(),
    };
    let node = ManagerNode::start(&dir, &identity, &key, listener, None, &settings).await.expect("start a manager");
    Manager { id, addr, node: Some(node) }
}

pub async fn leader_among(managers: &[&Manager], timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        for m in managers {
            if let Some(leader) = m.raft().current_leader().await
                && managers.iter().any(|x| x.id == leader)
                && leader == m.id
            {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three managers started in `tmp` with the CA there, one Raft group: returns them and the
/// leader's id once one is elected.
pub async fn three_managers(tmp: &Path) -> (Vec<Manager>, u64) {
    three_managers_beating(tmp, HEARTBEAT).await
}

/// [`three_managers`] with the heartbeat period `heartbeat`.
pub async fn three_managers_beating(tmp: &Path, heartbeat: Duration) -> (Vec<Manager>, u64) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = Arc::new(Ca::load_or_create(&tmp.join("pki")).expect("ca"));
    let mut managers = Vec::new();
    for id in 1..=3 {
        managers.push(start_manager_beating(&ca, tmp, id, 1, StorageChoice::default(), heartbeat).await);
    }
    let members: std::collections::BTreeMap<u64, openraft::BasicNode> =
        managers.iter().map(|m| (m.id, openraft::BasicNode::new(&m.addr))).collect();
    managers[0].raft().initialize(members).await.expect("initialize");
    let all: Vec<&Manager> = managers.iter().collect();
    let leader = leader_among(&all, Duration::from_secs(10)).await;
    (managers, leader)
}
