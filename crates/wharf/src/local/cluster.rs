//! `wharf init` and `wharf join`: a cluster of managers replicating the state store with Raft
//! over mutual TLS. A node keeps its identity in its data directory (`node/`); started again
//! with the same command line it finds it there and rejoins, and the token is not used again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use wharf_api::NodeRole;
use wharf_api::cluster::{JoinRequest, JoinResponse, MemberAdded, NodeInfo};
use wharf_auth::Auth;
use wharf_client::Client;
use wharf_manager::bootstrap;
use wharf_node::{DataDir, Identity, ManagerNode, ManagerSettings, Uploads};
use wharf_pki::{Ca, CertifiedKey, JoinToken, NODE_VALIDITY, NodeIdentity, write_private};
use wharf_raft::{Raft, RaftProposer};
use wharf_store::Store;

use crate::agent::Agent;
use crate::local::up::shutdown_signal;

/// Where a node serves and keeps its data: what `init` and `join` share.
#[derive(Args)]
pub struct NodeArgs {
    /// The address other nodes reach this node at (host:port). It also listens there unless
    /// --listen says otherwise.
    #[arg(long)]
    advertise: String,
    #[arg(long)]
    listen: Option<String>,
    #[arg(long, default_value = "./wharf-data", env = "WHARF_DATA_DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    tuning: Tuning,
}

/// Limits and timing a node runs with. The timing flags are hidden: their defaults are what a
/// cluster should use, and tests shorten them.
#[derive(Args)]
pub struct Tuning {
    /// Connections served at once, in all; more are closed as they arrive.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Connections served at once from one source address.
    #[arg(long, default_value_t = 256)]
    max_connections_per_source: usize,
    /// Upload sessions one user may have open at once (0: no limit); over it, 429.
    #[arg(long, default_value_t = wharf_registry::DEFAULT_UPLOAD_LIMIT)]
    max_open_uploads: u32,
    /// Upload sessions older than this are cancelled and their bytes freed (a number and a
    /// unit: s, m, h or d).
    #[arg(long, default_value = "24h", value_parser = parse_age)]
    upload_max_age: Duration,
    /// How often nodes send heartbeats to this manager when it leads (milliseconds); a node
    /// is down after three missed ones.
    #[arg(long, default_value_t = 5000, hide = true)]
    heartbeat_ms: u64,
    /// How long the node certificates this manager signs are valid (seconds).
    #[arg(long, default_value_t = NODE_VALIDITY.whole_seconds() as u64, hide = true)]
    node_cert_validity: u64,
    /// Connection deadlines (milliseconds): TLS handshake, HTTP/1.1 request head, request body
    /// silence, connection with no request in progress.
    #[arg(long, default_value_t = 10_000, hide = true)]
    handshake_timeout_ms: u64,
    #[arg(long, default_value_t = 30_000, hide = true)]
    header_timeout_ms: u64,
    #[arg(long, default_value_t = 60_000, hide = true)]
    body_idle_timeout_ms: u64,
    #[arg(long, default_value_t = 90_000, hide = true)]
    idle_timeout_ms: u64,
    /// How often stale uploads are looked for (milliseconds).
    #[arg(long, default_value_t = 3_600_000, hide = true)]
    upload_purge_interval_ms: u64,
}

impl Tuning {
    pub(crate) fn settings(&self, listen: String) -> Settings {
        let ms = |v: u64| Duration::from_millis(v.max(10));
        let manager = ManagerSettings {
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(50)),
            node_cert_validity: wharf_pki::time::Duration::seconds(self.node_cert_validity.max(10) as i64),
            limits: wharf_http::Limits {
                max_connections: self.max_connections.max(1),
                max_connections_per_source: self.max_connections_per_source.max(1),
                handshake_timeout: ms(self.handshake_timeout_ms),
                header_timeout: ms(self.header_timeout_ms),
                body_idle_timeout: ms(self.body_idle_timeout_ms),
                idle_timeout: ms(self.idle_timeout_ms),
                ..wharf_http::Limits::default()
            },
            uploads: Uploads {
                per_user: self.max_open_uploads,
                max_age: self.upload_max_age,
                purge_every: ms(self.upload_purge_interval_ms),
            },
        };
        Settings { listen, manager }
    }
}

/// A duration written as a number and a unit: `30s`, `90m`, `24h`, `7d`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a number and a unit (s, m, h, d)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

#[derive(Args)]
pub struct RecoverArgs {
    /// Starts a new cluster with this manager as its only member, keeping the state
    /// (required: it makes the other managers' state history void).
    #[arg(long, required = true)]
    force_new_cluster: bool,
    #[arg(long, default_value = "./wharf-data", env = "WHARF_DATA_DIR")]
    data_dir: PathBuf,
    /// Where to listen (default: the address the node advertises).
    #[arg(long)]
    listen: Option<String>,
    #[command(flatten)]
    tuning: Tuning,
}

/// How a manager starts.
enum Start {
    /// From its data directory, asking the cluster (through `via` if given) to add it to Raft.
    Existing { via: Option<String> },
    /// As the first manager of a new cluster, with the administrator's password if given.
    NewCluster { password: Option<String> },
    /// As the only member of a new Raft group over the state it kept (`wharf recover`).
    ForcedNewCluster,
}

/// How a node's run ended.
pub enum Ending {
    /// SIGINT or SIGTERM.
    Stopped,
    /// The node's role changed: the process starts again in the new role.
    Restart,
}

/// What a running node needs from its command line.
pub(crate) struct Settings {
    listen: String,
    pub manager: ManagerSettings,
}

impl NodeArgs {
    fn settings(&self) -> Settings {
        self.tuning.settings(self.listen())
    }

    fn listen(&self) -> String {
        self.listen.clone().unwrap_or_else(|| self.advertise.clone())
    }
}

#[derive(Args)]
pub struct InitArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Extra names or addresses for this node's certificate (repeatable).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// File holding the first administrator's password; without it one is generated and printed.
    #[arg(long, env = "WHARF_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct JoinArgs {
    /// A file holding the join token that `wharf init` printed (or `wharf token show
    /// manager|worker`). Only the first start needs a token; WHARF_JOIN_TOKEN also works.
    #[arg(long, conflicts_with_all = ["token", "token_stdin"])]
    token_file: Option<PathBuf>,
    /// Read the join token from standard input.
    #[arg(long, conflicts_with = "token")]
    token_stdin: bool,
    /// The join token itself. Every user of this machine can read a command line: prefer
    /// --token-file, --token-stdin or WHARF_JOIN_TOKEN.
    #[arg(long)]
    token: Option<String>,
    /// A manager's address (host:port).
    manager: String,
    #[command(flatten)]
    node: NodeArgs,
}

/// The identity a node left in `data_dir`, saying so: started again, it rejoins with it.
pub(crate) fn existing_identity(data_dir: &Path) -> anyhow::Result<Option<(Identity, CertifiedKey)>> {
    let found = DataDir::new(data_dir).load_identity()?;
    if let Some((identity, _)) = &found {
        let (id, cluster) = (identity.node_id, &identity.cluster_id);
        println!("Wharf: node {id} of cluster {cluster} found in {}; starting it.", data_dir.display());
    }
    Ok(found)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// The join token for a first start, from wherever it was given: `--token-file`,
/// `--token-stdin`, `--token` (with a warning: the process list shows it) or `WHARF_JOIN_TOKEN`.
fn join_token_given(args: &JoinArgs) -> anyhow::Result<String> {
    let token = if let Some(path) = &args.token_file {
        std::fs::read_to_string(path).with_context(|| format!("read the join token from {}", path.display()))?
    } else if args.token_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("read the join token from standard input")?;
        line
    } else if let Some(token) = &args.token {
        eprintln!(
            "warning: a join token on the command line can be read by every user of this machine (ps); \
             use --token-file, --token-stdin or WHARF_JOIN_TOKEN instead"
        );
        token.clone()
    } else if let Ok(token) = std::env::var("WHARF_JOIN_TOKEN") {
        token
    } else {
        bail!("the first start of a node needs a join token: --token-file FILE, --token-stdin, or WHARF_JOIN_TOKEN");
    };
    Ok(token.trim().to_owned())
}

/// Refuses an advertise address that no node could reach or that the cluster would refuse.
fn check_advertise(addr: &str) -> anyhow::Result<()> {
    wharf_api::parse_advertise(addr).map(|_| ()).map_err(|e| anyhow::anyhow!("--advertise: {e}"))
}

pub async fn init(args: InitArgs) -> anyhow::Result<Ending> {
    wharf_node::secure(&args.node.data_dir)?;
    let settings = args.node.settings();
    if let Some((identity, key)) = existing_identity(&args.node.data_dir)? {
        return run_node(&args.node.data_dir, identity, key, &settings, None, None).await;
    }
    check_advertise(&args.node.advertise)?;
    let first = FirstManager {
        data_dir: args.node.data_dir.clone(),
        advertise: args.node.advertise.clone(),
        sans: args.sans,
        password_file: args.admin_password_file,
    };
    start_first_manager(first, &settings, None).await
}

/// What makes the first manager of a new cluster: `wharf init`, and `wharf up` on a data
/// directory that holds no node yet.
pub(crate) struct FirstManager {
    pub data_dir: PathBuf,
    pub advertise: String,
    pub sans: Vec<String>,
    pub password_file: Option<PathBuf>,
}

/// Starts the first manager of a new cluster over whatever state `data_dir` holds (nothing,
/// or the state of a standalone `wharf up --insecure-http`, which it keeps). The identity is
/// saved only once the cluster is bootstrapped, and every bootstrap step can be repeated: a
/// crash before that point is mended by running the same command again.
pub(crate) async fn start_first_manager(
    first: FirstManager,
    settings: &Settings,
    listener: Option<TcpListener>,
) -> anyhow::Result<Ending> {
    let dir = &first.data_dir;
    wharf_node::secure(dir)?;
    // A Raft log without a node identity is a standalone node's or an unfinished first start:
    // what it holds goes into the state, and the new cluster starts a log of its own. The
    // state is checked before (nothing is changed in a member's directory) and after.
    state_of_a_first_start(dir, &first.advertise)?;
    fold_raft_log_into_state(dir).await?;
    let ca = Ca::load_or_create(&DataDir::new(dir).pki()).context("create the CA")?;
    let cluster_id = state_of_a_first_start(dir, &first.advertise)?;
    let cluster_id =
        cluster_id.unwrap_or_else(|| format!("wharf-{}", &wharf_auth::secret_id(&wharf_auth::new_secret())[..16]));
    let identity = Identity {
        node_id: 1,
        cluster_id: cluster_id.clone(),
        role: NodeRole::Manager,
        advertise: first.advertise.clone(),
        managers: vec![first.advertise.clone()],
    };
    let names = wharf_pki::node_names(&[&first.advertise, &settings.listen], &hostname(), &first.sans);
    let node = NodeIdentity { node_id: 1, role: NodeRole::Manager, cluster_id };
    let key =
        ca.issue_node(&node, &names, settings.manager.node_cert_validity).context("issue this node's certificate")?;
    let password = crate::input::read_password_file(first.password_file.as_deref())?;
    run_manager(dir, identity, key, settings, Start::NewCluster { password }, listener).await
}

/// The cluster id the state in `dir` holds, if any, once `wharf_manager::bootstrap` agrees
/// that a first start may take that state.
fn state_of_a_first_start(dir: &Path, advertise: &str) -> anyhow::Result<Option<String>> {
    let store = Store::open(&DataDir::new(dir).state()).context("open the state store")?;
    bootstrap::check_first_start(&store, advertise).with_context(|| format!("{}", dir.display()))
}

/// Folds the Raft log in `dir` into its state (see `wharf_manager::bootstrap::fold_raft_log`).
async fn fold_raft_log_into_state(dir: &Path) -> anyhow::Result<()> {
    let dir = DataDir::new(dir);
    let (log, state, snapshots) = (dir.raft_log(), dir.state(), dir.snapshots());
    Ok(bootstrap::fold_raft_log(&log, &state, &snapshots).await?)
}

pub async fn join(args: JoinArgs) -> anyhow::Result<Ending> {
    wharf_node::secure(&args.node.data_dir)?;
    let settings = args.node.settings();
    if let Some((identity, key)) = existing_identity(&args.node.data_dir)? {
        // The node has its identity: the token is not needed again (and not read).
        return run_node(&args.node.data_dir, identity, key, &settings, Some(args.manager.clone()), None).await;
    }
    check_advertise(&args.node.advertise)?;
    let token_text = join_token_given(&args)?;
    let token =
        JoinToken::parse(&token_text).context("that is not a Wharf join token (WHARF-1-<CA digest>-<secret>)")?;
    // The CA is fetched without verification and then pinned by the digest in the token.
    let unverified = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build()?;
    let ca_pem =
        unverified.get(format!("https://{}/ca", args.manager)).send().await?.error_for_status()?.text().await?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("the manager's /ca is not a certificate")?;
    if !token.pins(&ca_der) {
        bail!(
            "the CA of {} does not match the join token: refusing to join (wrong cluster, or someone in between)",
            args.manager
        );
    }
    let (key_pem, csr_pem) = wharf_pki::new_csr()?;
    // From here on the manager is authenticated as a manager under that CA, by the identity
    // its certificate names (not by the host name it was reached at).
    let tls = wharf_pki::joining_client_config(&ca_pem)?;
    let mut client = Client::for_node(tls, std::slice::from_ref(&args.manager), Duration::from_secs(30))?;
    let request =
        JoinRequest { token: token_text, csr_pem, hostname: hostname(), advertise: args.node.advertise.clone() };
    let joined: JoinResponse = client.call(Method::POST, "/cluster/join", Some(&request)).await.map_err(|e| {
        anyhow::anyhow!("{} refused the join: {}", args.manager, crate::terminal::printable(&e.to_string()))
    })?;
    let dir = DataDir::new(&args.node.data_dir);
    wharf_pki::create_private_dir(&dir.pki())?;
    if let Some(secrets) = &joined.manager_secrets {
        dir.save_manager_secrets(secrets)?;
    }
    write_private(&dir.ca_cert(), &joined.ca_pem)?;
    let identity = Identity {
        node_id: joined.node_id,
        cluster_id: joined.cluster_id,
        role: joined.role,
        advertise: args.node.advertise.clone(),
        managers: vec![args.manager.clone()],
    };
    let key = CertifiedKey::from_pems(joined.cert_pem, key_pem)?;
    dir.save_identity(&identity, &key)?;
    println!("Joined cluster {} as {} {}.", identity.cluster_id, identity.role, identity.node_id);
    run_node(&args.node.data_dir, identity, key, &settings, Some(args.manager), None).await
}

/// Runs the node `data_dir` holds in its role; a manager serves on `listener`, or binds the
/// address `settings` names.
pub(crate) async fn run_node(
    data_dir: &Path,
    mut identity: Identity,
    key: CertifiedKey,
    settings: &Settings,
    via: Option<String>,
    listener: Option<TcpListener>,
) -> anyhow::Result<Ending> {
    if let Some(via) = &via
        && !identity.managers.contains(via)
    {
        identity.managers.push(via.clone());
    }
    if identity.role == NodeRole::Manager {
        return run_manager(data_dir, identity, key, settings, Start::Existing { via }, listener).await;
    }
    let dir = DataDir::new(data_dir);
    dir.forget_manager_state()?;
    // Workers run the agent; tasks arrive with orchestration.
    let ca_pem = dir.ca_pem()?;
    let cert = Arc::new(wharf_pki::RenewableCert::new(&key, &ca_pem)?);
    let agent = Agent { data_dir: dir, identity: identity.clone(), key, cert, ca_pem };
    println!("Wharf worker {} of cluster {} is up (no tasks to run yet).", identity.node_id, identity.cluster_id);
    tokio::select! {
        () = shutdown_signal() => Ok(Ending::Stopped),
        ended = agent.run() => ended.map(|()| Ending::Restart),
    }
}

/// Runs a manager until SIGINT/SIGTERM or a change of its role.
async fn run_manager(
    data_dir: &Path,
    identity: Identity,
    key: CertifiedKey,
    settings: &Settings,
    start: Start,
    listener: Option<TcpListener>,
) -> anyhow::Result<Ending> {
    let listen = settings.listen.as_str();
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind(listen).await.with_context(|| format!("listen on {listen}"))?,
    };
    let dir = DataDir::new(data_dir);
    // Calls to other managers leave from the address this node listens on, when it names one.
    let source = listen.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
    let mut node = ManagerNode::start(&dir, &identity, &key, listener, source, &settings.manager).await?;
    let mut admin_password = None;
    let mut new_tokens = None;
    match start {
        Start::NewCluster { password } => {
            let parts = (&*node.store, &*node.auth, &*node.ca);
            let proposer = Arc::clone(&node.manager.proposer);
            (admin_password, new_tokens) =
                bootstrap_cluster(node.raft(), &identity, key.not_after, &proposer, parts, password).await?;
            // From here on the data directory holds a complete node: started again, it runs it.
            dir.save_identity(&identity, &key)?;
        }
        Start::ForcedNewCluster => {
            bootstrap::lead_alone(node.raft(), identity.node_id, &identity.advertise).await?;
            bootstrap::snapshot_and_purge(node.raft()).await?;
        }
        Start::Existing { via: Some(via) } => {
            // In the background: a restarted manager is a member already, and the manager it
            // joined through may itself be down; the request is retried until a leader takes it.
            let tls = node.client_tls.clone();
            node.spawn(async move {
                if let Err(e) = ask_to_be_added(&via, tls).await {
                    tracing::error!(error = %e, "this manager could not be added to raft");
                }
            });
        }
        Start::Existing { via: None } => {}
    }
    let local = node.local;
    print_banner(&identity, local, data_dir, &node.ca, new_tokens.as_ref(), admin_password.as_deref());
    tracing::info!(node_id = identity.node_id, cluster = %identity.cluster_id, addr = %local, "manager is serving");
    let ca_pem = node.ca.cert_pem().to_owned();
    let agent = Agent { data_dir: dir, identity: identity.clone(), key, cert: Arc::clone(&node.cert), ca_pem };
    let ending = tokio::select! {
        () = shutdown_signal() => Ok(Ending::Stopped),
        ended = agent.run() => ended.map(|()| Ending::Restart),
    };
    node.stop().await;
    tracing::info!("wharf stopped");
    ending
}

/// `wharf recover --force-new-cluster`: the other managers are marked removed (their
/// certificates are refused from now on; they join again with a token and an empty data
/// directory), the Raft log and snapshots go, and the state store forgets which log entry it
/// applied last. Each step can be repeated, so a crash in between is mended by running the
/// command again. Then the node runs as the only manager of a new Raft group over that state.
pub async fn recover(args: RecoverArgs) -> anyhow::Result<Ending> {
    let dir = &args.data_dir;
    wharf_node::secure(dir)?;
    let (identity, key) = DataDir::new(dir)
        .load_identity()?
        .with_context(|| format!("{} holds no node identity (node/identity.json)", dir.display()))?;
    if identity.role != NodeRole::Manager {
        bail!("node {} is a worker: only a manager's data directory holds the cluster's state", identity.node_id);
    }
    // Everything this manager's log holds reaches the state first.
    fold_raft_log_into_state(dir).await?;
    let store = Store::open(&DataDir::new(dir).state()).context("open the state store")?;
    for (id, addr) in bootstrap::remove_other_managers(&store, identity.node_id)? {
        println!("Manager {id} ({addr}) is not part of the new cluster; it can join again.");
    }
    drop(store);
    println!("Wharf: node {} starts a new cluster with the state it kept.", identity.node_id);
    let listen = args.listen.clone().unwrap_or_else(|| identity.advertise.clone());
    let settings = args.tuning.settings(listen);
    let mut identity = identity;
    identity.managers = vec![identity.advertise.clone()];
    DataDir::new(dir).save_identity(&identity, &key)?;
    run_manager(dir, identity, key, &settings, Start::ForcedNewCluster, None).await
}

/// The join tokens made by a first start, to print once: (manager, worker).
type NewTokens = (String, String);

/// The first start of the first manager (`wharf_manager::bootstrap::bootstrap`). Returns the
/// administrator's password if it was generated, and the join tokens.
async fn bootstrap_cluster(
    raft: &Raft,
    identity: &Identity,
    cert_not_after: wharf_pki::time::OffsetDateTime,
    proposer: &Arc<RaftProposer>,
    (store, auth, ca): (&Store, &Auth, &Ca),
    password: Option<String>,
) -> anyhow::Result<(Option<String>, Option<NewTokens>)> {
    let first = bootstrap::FirstManager {
        node_id: identity.node_id,
        cluster_id: identity.cluster_id.clone(),
        hostname: hostname(),
        advertise: identity.advertise.clone(),
        cert_not_after: cert_not_after.unix_timestamp().max(0) as u64,
    };
    let made = bootstrap::bootstrap(raft, proposer, store, auth, ca, &first, password.as_deref()).await?;
    Ok((made.admin_password, Some((made.manager_token, made.worker_token))))
}

/// Asks the cluster to add this manager to Raft (learner, then voter), following redirects to
/// the leader and retrying while the cluster is busy.
async fn ask_to_be_added(via: &str, tls: rustls::ClientConfig) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client =
        Client::for_node(tls, &[via.to_owned()], Duration::from_secs(30))?.with_patience(Duration::from_secs(60));
    loop {
        // A refusal can be passing too (the leader's replica may not have this node's new role
        // yet), so every failure is tried again until the deadline.
        match client.call::<(), MemberAdded>(Method::POST, "/cluster/members", None).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => tracing::warn!(error = %e, "joining raft: not yet"),
            Err(e) => bail!("could not join raft through {via} within a minute: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a manager prints when it is up. The join tokens are printed by the start that made
/// them only (like a generated password); later, `wharf token show` prints them.
fn print_banner(
    identity: &Identity,
    local: std::net::SocketAddr,
    data_dir: &Path,
    ca: &Ca,
    new_tokens: Option<&NewTokens>,
    admin_password: Option<&str>,
) {
    let host = &identity.advertise;
    println!("Wharf manager {} of cluster {} is up.", identity.node_id, identity.cluster_id);
    println!("  listening on https://{local}");
    println!("  advertised:  {host}");
    println!("  registry:    https://{host}/v2/");
    println!("  data dir:    {}", data_dir.display());
    println!("  CA:          https://{host}/ca");
    println!("  CA fingerprint (SHA-256): {}", ca.fingerprint());
    println!("  trust it:    wharf trust https://{host} --fingerprint {}", ca.fingerprint());
    println!("  log in:      docker login {host} -u admin");
    println!("  accounts:    wharf login https://{host} -u admin, then wharf user --help");
    match new_tokens {
        Some((manager, worker)) => {
            println!("  manager token: {manager}");
            println!("  worker token:  {worker}");
            println!("  (join tokens are shown only this once; later: wharf token show manager|worker)");
        }
        None => println!("  join tokens: wharf token show manager|worker (as an administrator)"),
    }
    println!("  join a node: wharf join --token-file FILE {host} --advertise HOST:PORT  (FILE holds the token)");
    if local.ip().is_loopback() {
        println!(
            "  (it listens on loopback only: other machines cannot join until it listens on 0.0.0.0 or a routable address)"
        );
    }
    if let Some(password) = admin_password {
        println!("  password of admin (generated; shown only this once): {password}");
    }
}

/// The node list, asked with the certificate of the node whose data directory is `data_dir`:
/// no account or login needed on the machine that runs it. A manager asks itself first; a
/// worker asks the managers it last heard of, in turn.
pub async fn nodes_as_this_node(data_dir: &Path) -> anyhow::Result<Vec<NodeInfo>> {
    let dir = DataDir::new(data_dir);
    let (identity, key) = dir
        .load_identity()?
        .with_context(|| format!("{} holds no node identity (node/identity.json)", data_dir.display()))?;
    let ca_pem = dir.ca_pem()?;
    let tls = wharf_pki::node_client_config(&key, &ca_pem, &identity.cluster_id)?;
    let mut targets = Vec::new();
    if identity.role == NodeRole::Manager {
        targets.push(identity.advertise.clone());
    }
    targets.extend(identity.managers.iter().filter(|m| **m != identity.advertise).cloned());
    // Any manager answers (a refusal, for a removed node or another cluster, is the same from
    // every manager); the client moves on from those it cannot reach.
    let mut client = Client::for_node(tls, &targets, Duration::from_secs(10))?;
    let nodes = client.call::<(), Vec<NodeInfo>>(Method::GET, "/cluster/nodes", None).await;
    nodes.map_err(|e| anyhow::anyhow!("{}", crate::terminal::printable(&e.to_string())))
}
