//! A running manager, assembled in one place for `wharf up`, `init`, `join` and `recover`: the
//! CA and token key, the replica, the blob store, Raft, accounts, the registry, the control
//! plane (`wharf_manager::Manager`) and the HTTPS server with every route, plus the tasks that
//! run beside them (the heartbeat watch, the purge of stale uploads and sessions). What the
//! node does after it started (bootstrap a cluster, ask to be added to Raft, print, run the
//! agent) is the caller's; [`ManagerNode::stop`] stops it all, in order, from one call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wharf_auth::{Auth, AuthConfig};
use wharf_manager::{Manager, bootstrap};
use wharf_pki::{Ca, CertifiedKey, RenewableCert};
use wharf_registry::Registry;
use wharf_store::Store;

use crate::{DataDir, Identity, NodeError, RaftNode};

/// How upload sessions are bounded: open per user, and age before they are purged.
#[derive(Debug, Clone, Copy)]
pub struct Uploads {
    pub per_user: u32,
    pub max_age: Duration,
    pub purge_every: Duration,
}

/// What a manager runs with besides its data directory and identity.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// How often nodes send heartbeats to this manager when it leads.
    pub heartbeat: Duration,
    /// How long the node certificates this manager signs are valid.
    pub node_cert_validity: wharf_pki::time::Duration,
    pub limits: wharf_http::Limits,
    pub uploads: Uploads,
    /// On how many nodes a pushed blob must be durable before the push is acknowledged (at
    /// most the number of managers).
    pub blob_copies: u32,
    /// Where blob bytes are kept.
    pub storage: crate::StorageChoice,
    /// How blobs on the managers' own disks are kept at their copy count.
    pub blob_care: BlobCare,
}

/// The timing of the blob repair and scrub passes (managers' own disks only).
#[derive(Debug, Clone)]
pub struct BlobCare {
    /// How often the leader looks for blobs on too few managers (it also looks whenever the
    /// cluster's membership changes).
    pub repair_every: Duration,
    /// How often each manager re-reads and re-hashes its own copies.
    pub scrub_every: Duration,
    /// Pause of the scrub per MiB read, to keep it in the background.
    pub scrub_pause_per_mib: Duration,
}

impl Default for BlobCare {
    fn default() -> BlobCare {
        BlobCare {
            repair_every: Duration::from_secs(60),
            scrub_every: Duration::from_secs(24 * 3600),
            scrub_pause_per_mib: Duration::from_millis(10),
        }
    }
}

/// How a manager starts.
pub enum Start {
    /// As a member it is already, or asking to be added through the manager `via`.
    Existing { via: Option<String> },
    /// As the first manager of a new cluster, with the administrator's password if given.
    NewCluster { password: Option<String> },
    /// As the only member of a new Raft group over the state it kept (`wharf recover`).
    ForcedNewCluster,
}

/// What a start made that is shown once: the administrator's password when it was generated,
/// and a new cluster's join tokens (manager, worker).
#[derive(Debug, Default)]
pub struct Began {
    pub admin_password: Option<String>,
    pub join_tokens: Option<(String, String)>,
}

/// A manager that serves: its parts, for the caller's next steps, and what stops it.
pub struct ManagerNode {
    pub manager: Arc<Manager>,
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    pub registry: Arc<Registry>,
    pub ca: Arc<Ca>,
    /// The certificate the node presents as server and client (renewal replaces it).
    pub cert: Arc<RenewableCert>,
    /// The client configuration of calls to other managers.
    pub client_tls: rustls::ClientConfig,
    /// Where it listens.
    pub local: SocketAddr,
    raft: RaftNode,
    server: JoinHandle<()>,
    stop_server: oneshot::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl ManagerNode {
    /// Assembles the manager `identity` (certified by `key`) over `dir` and serves on
    /// `listener`; calls to other managers leave from `source`, if given.
    pub async fn start(
        dir: &DataDir,
        identity: &Identity,
        key: &CertifiedKey,
        listener: TcpListener,
        source: Option<std::net::IpAddr>,
        settings: &ManagerSettings,
    ) -> Result<ManagerNode, NodeError> {
        let ca = Arc::new(Ca::load_or_create(&dir.pki())?);
        let token_key = ca.load_or_create_token_key(&dir.pki())?;
        let store = Arc::new(Store::open(&dir.state())?);
        let storage = crate::Storage::resolve(dir, &settings.storage)?;
        let cert = Arc::new(RenewableCert::new(key, ca.cert_pem())?);
        let client_tls = wharf_pki::renewing_client_config(Arc::clone(&cert), ca.cert_pem(), &identity.cluster_id)?;
        let raft =
            RaftNode::open(dir, identity.node_id, &identity.cluster_id, Arc::clone(&store), client_tls.clone(), source)
                .await?;
        let proposer = Arc::clone(&raft.proposer);
        let blobs = storage.open(dir, &store, proposer.clone()).await?;
        let peers = crate::NodePeerBlobs::new(client_tls.clone(), source)
            .map_err(|e| NodeError::start("make the node-to-node blob client")(&e))?;
        let auth = Auth::with_proposer(Arc::clone(&store), proposer.clone(), &token_key, AuthConfig::default())
            .map_err(|e| NodeError::start("start accounts")(&e))?;
        let auth = Arc::new(auth);
        auth.set_ca(Arc::clone(&ca));
        let registry = Arc::new(
            Registry::with_proposer(Arc::clone(&store), blobs, proposer.clone())
                .with_upload_limit(settings.uploads.per_user)
                .on_node(identity.node_id)
                .with_peers(Arc::new(peers))
                .with_copies(settings.blob_copies),
        );
        let manager = Arc::new(Manager {
            node_id: identity.node_id,
            raft: raft.raft.clone(),
            proposer: proposer.clone(),
            cluster_id: identity.cluster_id.clone(),
            incoming_dir: dir.incoming_snapshots(),
            ca: Arc::clone(&ca),
            store: Arc::clone(&store),
            manager_secrets: dir.manager_secrets()?,
            heartbeats: wharf_manager::Heartbeats::new(settings.heartbeat),
            node_cert_validity: settings.node_cert_validity,
            join_limiter: wharf_auth::RateLimiter::new(wharf_manager::JOIN_LIMITS),
            blob_storage: storage.location(),
            logs: wharf_manager::LogBroker::default(),
            execs: Default::default(),
            stopping: wharf_manager::Stopping::default(),
            access: wharf_auth::AccessControl::new(Arc::clone(&store)),
        });
        let local = listener.local_addr().map_err(|e| NodeError::io("read the listen address".into(), e))?;
        let tls = wharf_pki::mutual_server_config(Arc::clone(&cert), ca.cert_pem())?;
        let app = Arc::new(wharf_http::App {
            registry: Arc::clone(&registry),
            auth: Some(Arc::clone(&auth)),
            ca_pem: Some(ca.cert_pem().to_owned()),
            scheme: "https",
            default_host: identity.advertise.clone(),
            cluster: Some(Arc::clone(&manager)),
            replica: proposer,
            peer_client: Some(
                crate::peer_blobs::node_client(client_tls.clone(), source)
                    .map_err(|e| NodeError::start("make the node-to-node client")(&e))?,
            ),
        });
        let router = wharf_http::router(app)
            .merge(wharf_http::raft_router(Arc::clone(&manager)))
            .merge(wharf_http::cluster_router(Arc::clone(&manager)));
        let (stop_server, stopped) = oneshot::channel::<()>();
        let limits = settings.limits.clone();
        let server = tokio::spawn(wharf_http::serve(listener, Some(tls), router, limits, async move {
            let _ = stopped.await;
        }));
        let mut node = ManagerNode {
            manager: Arc::clone(&manager),
            store,
            auth: Arc::clone(&auth),
            registry: Arc::clone(&registry),
            ca,
            cert,
            client_tls,
            local,
            raft,
            server,
            stop_server,
            tasks: Vec::new(),
        };
        node.spawn(keep_blob_copies(Arc::clone(&registry), Arc::clone(&manager), settings.blob_care.clone()));
        node.spawn(scrub_blob_copies(Arc::clone(&registry), settings.blob_care.clone()));
        node.spawn(purge_stale(registry, Some(Arc::clone(&auth)), settings.uploads));
        node.spawn(keep_audit(Arc::clone(&auth)));
        node.spawn(keep_directory(auth, Some(Arc::clone(&manager))));
        node.spawn(wharf_manager::run_control_loop(Arc::clone(&manager)));
        node.spawn(wharf_manager::watch_heartbeats(manager));
        Ok(node)
    }

    /// Does what starting in the way `start` says takes, once the node serves: bootstraps a
    /// new cluster (then saves the identity: from here on the data directory holds a complete
    /// node, which a restart runs), makes a new Raft group of this manager alone, or, for a
    /// manager that joined through `via`, asks in the background to be added to Raft (a
    /// restarted manager is a member already, and the manager it joined through may itself be
    /// down: the request is retried until a leader takes it).
    pub async fn begin(
        &mut self,
        dir: &DataDir,
        identity: &Identity,
        key: &CertifiedKey,
        start: Start,
    ) -> Result<Began, NodeError> {
        let mut began = Began::default();
        match start {
            Start::NewCluster { password } => {
                let first = bootstrap::FirstManager {
                    node_id: identity.node_id,
                    cluster_id: identity.cluster_id.clone(),
                    hostname: crate::hostname(),
                    advertise: identity.advertise.clone(),
                    cert_not_after: key.not_after.unix_timestamp().max(0) as u64,
                };
                let proposer = Arc::clone(&self.manager.proposer);
                let made = bootstrap::bootstrap(
                    self.raft(),
                    &proposer,
                    &self.store,
                    &self.auth,
                    &self.ca,
                    &first,
                    password.as_deref(),
                )
                .await?;
                began.admin_password = made.admin_password;
                began.join_tokens = Some((made.manager_token, made.worker_token));
                dir.save_identity(identity, key)?;
            }
            Start::ForcedNewCluster => {
                bootstrap::lead_alone(self.raft(), identity.node_id, &identity.advertise).await?;
                bootstrap::snapshot_and_purge(self.raft()).await?;
            }
            Start::Existing { via: Some(via) } => {
                let tls = self.client_tls.clone();
                self.spawn(async move {
                    if let Err(e) = crate::ask_to_be_added(&via, tls).await {
                        tracing::error!(error = %e, "this manager could not be added to raft");
                    }
                });
            }
            Start::Existing { via: None } => {}
        }
        Ok(began)
    }

    /// The node's Raft instance.
    pub fn raft(&self) -> &wharf_raft::Raft {
        &self.raft.raft
    }

    /// Runs `task` beside the node until the node stops.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Stops everything, in order: the tasks (waiting until each has dropped what it held),
    /// the server (which drains open connections), Raft (which makes its log durable). When it
    /// returns, nothing of the node is left running and its files can be opened again.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        // Long polls and followed logs end now, or the drain would wait for them.
        self.manager.stopping.stop();
        let _ = self.stop_server.send(());
        self.raft.stop().await;
        let _ = self.server.await;
    }
}

/// Removes upload sessions older than `uploads.max_age` and expired login sessions, at start
/// and then every `uploads.purge_every` (hourly by default).
/// Runs on every manager; while it leads, a repair pass every `repair_every` and soon after the
/// cluster's membership or roles change (a removed manager's copies are replaced).
pub async fn keep_blob_copies(registry: Arc<Registry>, manager: Arc<Manager>, care: BlobCare) {
    let mut tick = tokio::time::interval(care.repair_every);
    let mut feed = manager.store.subscribe();
    let mut seen = feed.borrow_and_update().cluster;
    let mut nudge = tokio::time::interval(Duration::from_secs(1));
    // The state as a pass that left nothing short found it: while nothing changes, the next
    // periodic pass would find the same, and is skipped.
    let mut settled = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = nudge.tick() => {
                // A membership change: look now rather than at the next tick.
                let cluster = feed.borrow_and_update().cluster;
                if cluster == seen {
                    continue;
                }
                seen = cluster;
            }
        }
        if manager.raft.current_leader().await != Some(manager.node_id) {
            settled = None;
            continue;
        }
        if settled == Some(*feed.borrow()) {
            continue;
        }
        match registry.repair_copies().await {
            Ok(pass) => settled = (pass.short == 0).then(|| *feed.borrow()),
            Err(e) => {
                settled = None;
                tracing::warn!(error = %e, "a blob repair pass failed");
            }
        }
    }
}

/// Runs on every manager: a scrub pass over its own copies every `scrub_every` (the first
/// after one period, not at start).
pub async fn scrub_blob_copies(registry: Arc<Registry>, care: BlobCare) {
    let mut tick = tokio::time::interval(care.scrub_every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match registry.scrub_own_copies(care.scrub_pause_per_mib).await {
            Ok(pass) if pass.bad > 0 => tracing::warn!(?pass, "the scrub found bad copies"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "a blob scrub pass failed"),
        }
    }
}

/// Syncs the directory on its schedule: on the leader of a cluster (`manager`), always on a
/// standalone node. A failed sync is logged and tried again at the next period.
pub async fn keep_directory(auth: Arc<Auth>, manager: Option<Arc<wharf_manager::Manager>>) {
    let mut last = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(every) = auth.directory_sync_interval() else { continue };
        if last.elapsed() < every {
            continue;
        }
        if let Some(manager) = &manager
            && manager.raft.current_leader().await != Some(manager.node_id)
        {
            continue;
        }
        last = std::time::Instant::now();
        match auth.sync_directory(&wharf_store::Origin::system()).await {
            Ok(summary) => tracing::info!(
                found = summary.found,
                created = summary.created.len(),
                disabled = summary.disabled.len(),
                teams = summary.teams.len(),
                millis = summary.millis,
                "directory synced"
            ),
            Err(e) => tracing::warn!(error = %e, "the directory sync failed; it runs again at the next period"),
        }
    }
}

/// Proposes the audit entries the edge recorded, about once a second, and prunes the log past
/// its retention every hour.
pub async fn keep_audit(auth: Arc<Auth>) {
    const PRUNE_EVERY: u64 = 3600;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        if let Err(e) = auth.flush_audit().await {
            tracing::warn!(error = %e, "recording audit entries failed; they wait for the next flush");
        }
        if ticks.is_multiple_of(PRUNE_EVERY)
            && let Err(e) = auth.prune_audit(crate::now() * 1000).await
        {
            tracing::warn!(error = %e, "pruning the audit log failed");
        }
        ticks += 1;
    }
}

pub async fn purge_stale(registry: Arc<Registry>, auth: Option<Arc<Auth>>, uploads: Uploads) {
    let mut tick = tokio::time::interval(uploads.purge_every);
    loop {
        tick.tick().await;
        match registry.purge_stale_uploads(uploads.max_age.as_secs()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "removed stale upload sessions"),
            Err(e) => tracing::warn!(error = %e, "purging stale uploads failed"),
        }
        if let Some(auth) = &auth {
            match auth.purge_sessions(crate::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "removed expired sessions"),
                Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
            }
        }
    }
}
