//! `wharf init` and `wharf join`: a cluster of managers replicating the state store with Raft
//! over mutual TLS. A node keeps its identity in its data directory (`node/`); started again
//! with the same command line it finds it there and rejoins, and the token is not used again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::net::TcpListener;
use wharf_api::NodeRole;
use wharf_api::cluster::NodeInfo;
use wharf_node::{
    Agent, Began, DataDir, EngineSettings, FirstStart, Identity, JoinAsk, ManagerNode, ManagerSettings, Recovered,
    Start, Uploads,
};
use wharf_pki::{Ca, CertifiedKey, NODE_VALIDITY};

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
    /// On how many managers a pushed blob must be durable before the push is acknowledged
    /// (at most the number of managers): with 2, losing any one manager's disk loses no
    /// acknowledged image.
    #[arg(long, default_value_t = 2, env = "WHARF_BLOB_COPIES")]
    blob_copies: u32,
    /// Where blob bytes are kept: `filesystem` (the data directory; managers copy blobs to
    /// each other) or shared S3 storage every manager uses,
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION&addressing=path|virtual`. Chosen at the
    /// first start and recorded; later starts need not repeat it.
    #[arg(long, env = "WHARF_STORAGE")]
    storage: Option<String>,
    /// A file with the S3 credentials (`aws_access_key_id = ...` and
    /// `aws_secret_access_key = ...` lines); without it, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "WHARF_STORAGE_CREDENTIALS")]
    storage_credentials: Option<PathBuf>,
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
    /// How often the leader looks for blobs on too few managers (milliseconds).
    #[arg(long, default_value_t = 60_000, hide = true)]
    blob_repair_interval_ms: u64,
    /// How often each manager re-reads and re-hashes its own blob copies (milliseconds).
    #[arg(long, default_value_t = 86_400_000, hide = true)]
    blob_scrub_interval_ms: u64,
    /// The Docker Engine this node runs its tasks on: `unix:///path/docker.sock`,
    /// `tcp://host:port`, or `none` (the node runs no tasks). Default: the local socket.
    #[arg(long, env = "WHARF_DOCKER_HOST")]
    docker_host: Option<String>,
    /// The engine's certs.d folder, where the node puts the cluster CA before it pulls from
    /// the cluster's registry.
    #[arg(long, default_value = "/etc/docker/certs.d", env = "WHARF_DOCKER_CERTS_D")]
    docker_certs_d: PathBuf,
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
            blob_copies: self.blob_copies.max(1),
            storage: wharf_node::StorageChoice {
                location: self.storage.clone(),
                credentials: self.storage_credentials.clone(),
            },
            blob_care: wharf_node::BlobCare {
                repair_every: ms(self.blob_repair_interval_ms),
                scrub_every: ms(self.blob_scrub_interval_ms),
                ..wharf_node::BlobCare::default()
            },
        };
        let engine = match self.docker_host.as_deref() {
            Some("none") => None,
            host => Some(EngineSettings { docker_host: host.map(str::to_owned), certs_d: self.docker_certs_d.clone() }),
        };
        Settings { listen, manager, engine }
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
    /// Where this node runs tasks (`None`: it runs none).
    pub engine: Option<EngineSettings>,
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

/// Starts the first manager of a new cluster over whatever state `data_dir` holds
/// (`wharf_node::first_manager`); the identity is saved once the cluster is bootstrapped, so a
/// crash before that point is mended by running the same command again.
pub(crate) async fn start_first_manager(
    first: FirstManager,
    settings: &Settings,
    listener: Option<TcpListener>,
) -> anyhow::Result<Ending> {
    let dir = &first.data_dir;
    wharf_node::secure(dir)?;
    let start = FirstStart {
        advertise: &first.advertise,
        listen: &settings.listen,
        hostname: &wharf_node::hostname(),
        sans: &first.sans,
        cert_validity: settings.manager.node_cert_validity,
    };
    let (identity, key) = wharf_node::first_manager(&DataDir::new(dir), &start).await?;
    let password = crate::input::read_password_file(first.password_file.as_deref())?;
    run_manager(dir, identity, key, settings, Start::NewCluster { password }, listener).await
}

pub async fn join(args: JoinArgs) -> anyhow::Result<Ending> {
    wharf_node::secure(&args.node.data_dir)?;
    let settings = args.node.settings();
    if let Some((identity, key)) = existing_identity(&args.node.data_dir)? {
        // The node has its identity: the token is not needed again (and not read).
        return run_node(&args.node.data_dir, identity, key, &settings, Some(args.manager.clone()), None).await;
    }
    check_advertise(&args.node.advertise)?;
    let token = join_token_given(&args)?;
    let ask = JoinAsk {
        manager: &args.manager,
        token: &token,
        advertise: &args.node.advertise,
        hostname: wharf_node::hostname(),
    };
    let (identity, key) = wharf_node::join_cluster(&DataDir::new(&args.node.data_dir), &ask)
        .await
        .map_err(|e| anyhow::anyhow!("{}", crate::terminal::printable(&e.to_string())))?;
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
    // Workers run the agent: heartbeats, renewal, and the tasks the managers assign.
    let ca_pem = dir.ca_pem()?;
    let cert = Arc::new(wharf_pki::RenewableCert::new(&key, &ca_pem)?);
    let agent = Agent { data_dir: dir, identity: identity.clone(), key, cert, ca_pem, engine: settings.engine.clone() };
    println!("Wharf worker {} of cluster {} is up.", identity.node_id, identity.cluster_id);
    tokio::select! {
        () = shutdown_signal() => Ok(Ending::Stopped),
        ended = agent.run() => ended.map(|()| Ending::Restart).map_err(anyhow::Error::from),
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
    let began = node.begin(&dir, &identity, &key, start).await?;
    let local = node.local;
    print_banner(&identity, local, data_dir, &node.ca, &began);
    tracing::info!(node_id = identity.node_id, cluster = %identity.cluster_id, addr = %local, "manager is serving");
    let ca_pem = node.ca.cert_pem().to_owned();
    let cert = Arc::clone(&node.cert);
    let agent = Agent { data_dir: dir, identity: identity.clone(), key, cert, ca_pem, engine: settings.engine.clone() };
    let ending = tokio::select! {
        () = shutdown_signal() => Ok(Ending::Stopped),
        ended = agent.run() => ended.map(|()| Ending::Restart).map_err(anyhow::Error::from),
    };
    node.stop().await;
    tracing::info!("wharf stopped");
    ending
}

/// `wharf recover --force-new-cluster` (`wharf_node::recover_alone`): the other managers are
/// marked removed, then the node runs as the only manager of a new Raft group over the state
/// it kept.
pub async fn recover(args: RecoverArgs) -> anyhow::Result<Ending> {
    let dir = &args.data_dir;
    wharf_node::secure(dir)?;
    let Recovered { identity, key, removed } = wharf_node::recover_alone(&DataDir::new(dir)).await?;
    for (id, addr) in removed {
        println!("Manager {id} ({addr}) is not part of the new cluster; it can join again.");
    }
    println!("Wharf: node {} starts a new cluster with the state it kept.", identity.node_id);
    let listen = args.listen.clone().unwrap_or_else(|| identity.advertise.clone());
    let settings = args.tuning.settings(listen);
    run_manager(dir, identity, key, &settings, Start::ForcedNewCluster, None).await
}

/// What a manager prints when it is up. The join tokens are printed by the start that made
/// them only (like a generated password); later, `wharf token show` prints them.
fn print_banner(identity: &Identity, local: std::net::SocketAddr, data_dir: &Path, ca: &Ca, began: &Began) {
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
    match &began.join_tokens {
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
    if let Some(password) = &began.admin_password {
        println!("  password of admin (generated; shown only this once): {password}");
    }
}

/// The node list, asked with the certificate of the node whose data directory is `data_dir`
/// (`wharf_node::nodes_as_this_node`).
pub async fn nodes_as_this_node(data_dir: &Path) -> anyhow::Result<Vec<NodeInfo>> {
    let nodes = wharf_node::nodes_as_this_node(&DataDir::new(data_dir)).await;
    nodes.map_err(|e| anyhow::anyhow!("{}", crate::terminal::printable(&e.to_string())))
}
