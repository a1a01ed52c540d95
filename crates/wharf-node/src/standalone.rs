//! A standalone node (`wharf up --insecure-http`), assembled here as a manager is in
//! `manager.rs`: the CA (its certificate is served for `wharf trust`), the replica behind a
//! one-member Raft group of its own, the blob store, accounts (unless the node runs without
//! them) and the registry, served over plain HTTP, with the purge of stale uploads and
//! sessions beside it. It has no node identity: nothing can join it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wharf_auth::{Auth, AuthConfig};
use wharf_pki::Ca;
use wharf_registry::Registry;
use wharf_store::Store;

use crate::{DataDir, NodeError, RaftNode, Uploads, purge_stale};

/// The administrator a first start creates.
pub const ADMIN: &str = "admin";

/// Whether a standalone node keeps accounts.
#[derive(Debug, Clone)]
pub enum Accounts {
    /// Accounts and token auth; the first start creates [`ADMIN`] with this password, or
    /// with a generated one when it is `None`.
    On { admin_password: Option<String> },
    /// No accounts: anyone who reaches the node may push and pull (benchmarks, throwaway
    /// setups).
    Off,
}

/// A standalone node that serves, and what stops it.
pub struct StandaloneNode {
    pub registry: Arc<Registry>,
    pub auth: Option<Arc<Auth>>,
    /// Where it listens.
    pub local: SocketAddr,
    /// The administrator's password when this start generated it (to be shown once).
    pub generated_password: Option<String>,
    raft: RaftNode,
    server: JoinHandle<()>,
    stop_server: oneshot::Sender<()>,
    purge: JoinHandle<()>,
    /// The audit log's flush (with accounts only).
    audit: Option<JoinHandle<()>>,
}

impl StandaloneNode {
    /// Refuses a data directory that holds a cluster node's identity: that node serves over
    /// TLS. [`StandaloneNode::start`] checks it too; a caller checks it before it binds the
    /// node's address, which the cluster node may be using.
    pub fn check_dir(dir: &DataDir) -> Result<(), NodeError> {
        match dir.load_identity()? {
            None => Ok(()),
            Some((identity, _)) => Err(NodeError::Start(format!(
                "{} holds node {} of cluster {}: it serves over TLS; start it without --insecure-http",
                dir.root().display(),
                identity.node_id,
                identity.cluster_id
            ))),
        }
    }

    /// Assembles a standalone node over `dir` and serves on `listener`.
    pub async fn start(
        dir: &DataDir,
        listener: TcpListener,
        accounts: Accounts,
        limits: wharf_http::Limits,
        uploads: Uploads,
        storage: &crate::StorageChoice,
    ) -> Result<StandaloneNode, NodeError> {
        StandaloneNode::check_dir(dir)?;
        let local = listener.local_addr().map_err(|e| NodeError::io("read the listen address".into(), e))?;
        let store = Arc::new(Store::open(&dir.state())?);
        let storage = crate::Storage::resolve(dir, storage)?;
        let ca = Arc::new(Ca::load_or_create(&dir.pki())?);
        let raft = RaftNode::standalone(dir, Arc::clone(&store), ca.cert_pem(), &local.to_string()).await?;
        let proposer: Arc<dyn wharf_store::Proposer> = raft.proposer.clone();
        let blobs = storage.open(dir, &store, Arc::clone(&proposer)).await?;
        let (auth, generated_password) = match accounts {
            Accounts::Off => (None, None),
            Accounts::On { admin_password } => {
                let key = ca.load_or_create_token_key(&dir.pki())?;
                let auth = Auth::with_proposer(Arc::clone(&store), Arc::clone(&proposer), &key, AuthConfig::default())
                    .map_err(|e| NodeError::start("start accounts")(&e))?;
                let auth = Arc::new(auth);
                auth.set_ca(Arc::clone(&ca));
                let generated = auth
                    .bootstrap_admin(ADMIN, admin_password.as_deref(), crate::now())
                    .await
                    .map_err(|e| NodeError::start("create the administrator")(&e))?;
                (Some(auth), generated)
            }
        };
        let registry = Arc::new(
            Registry::with_proposer(store, blobs, Arc::clone(&proposer))
                .with_upload_limit(uploads.per_user)
                .on_node(RaftNode::STANDALONE_ID),
        );
        let purge = tokio::spawn(purge_stale(Arc::clone(&registry), auth.clone(), uploads));
        let audit = auth.clone().map(|auth| tokio::spawn(crate::manager::keep_audit(auth)));
        let app = Arc::new(wharf_http::App {
            registry: Arc::clone(&registry),
            auth: auth.clone(),
            ca_pem: Some(ca.cert_pem().to_owned()),
            scheme: "http",
            default_host: local.to_string(),
            cluster: None,
            replica: proposer,
            peer_client: None,
        });
        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(wharf_http::serve(listener, None, wharf_http::router(app), limits, async move {
            let _ = stopped.await;
        }));
        Ok(StandaloneNode { registry, auth, local, generated_password, raft, server, stop_server, purge, audit })
    }

    /// Stops everything, in order: the purge, the server (which drains open connections),
    /// Raft (which makes its log durable).
    pub async fn stop(self) {
        self.purge.abort();
        let _ = self.purge.await;
        if let Some(audit) = self.audit {
            audit.abort();
            let _ = audit.await;
        }
        let _ = self.stop_server.send(());
        let _ = self.server.await;
        self.raft.stop().await;
    }
}
