//! `wharf up`: one node with every role, embedded state store, filesystem blob store and a CA
//! generated on first start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use wharf_auth::{Auth, AuthConfig};
use wharf_blobstore::FsBlobStore;
use wharf_pki::Ca;
use wharf_registry::Registry;
use wharf_store::Store;

use crate::cluster::RaftNode;

#[derive(Args)]
pub struct UpArgs {
    /// Where state, blobs and keys are kept.
    #[arg(long, default_value = "./wharf-data", env = "WHARF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the registry and API (one port for both).
    #[arg(long, default_value = "127.0.0.1:5000", env = "WHARF_ADDR")]
    addr: String,
    /// Extra names or addresses for the server certificate (repeatable).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Serve plain HTTP instead of HTTPS. Only for loopback testing and benchmarks.
    #[arg(long)]
    insecure_http: bool,
    /// Serve the registry without accounts: anyone who can reach it may push and pull.
    /// Only for benchmarks and throwaway test setups.
    #[arg(long)]
    insecure_no_auth: bool,
    /// File holding the first administrator's password (read on the first start only). Without
    /// it, a password is generated and printed once.
    #[arg(long, env = "WHARF_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// Lifetime of the server certificate in seconds; it is renewed after two thirds of it.
    #[arg(long, hide = true, default_value_t = 90 * 24 * 3600)]
    server_cert_validity: u64,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("create {}", args.data_dir.display()))?;
    let store = Store::open(&args.data_dir.join("state.redb")).context("open state store")?;
    let blobs = FsBlobStore::open(args.data_dir.join("blobs")).context("open blob store")?;
    let ca = Arc::new(Ca::load_or_create(&args.data_dir.join("pki")).context("load or create the CA")?);
    let store = Arc::new(store);
    let listener = TcpListener::bind(&args.addr).await.with_context(|| format!("listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    // Every state change goes through a one-member Raft group, as on a cluster manager.
    let raft = RaftNode::standalone(&args.data_dir, Arc::clone(&store), ca.cert_pem(), &local.to_string()).await?;
    let proposer: Arc<dyn wharf_store::Proposer> = raft.proposer.clone();
    let (auth, admin_password) = if args.insecure_no_auth {
        (None, None)
    } else {
        let (auth, generated) = start_auth(&args, &ca, Arc::clone(&store), Arc::clone(&proposer)).await?;
        (Some(auth), generated)
    };
    let registry = Arc::new(Registry::with_proposer(store, Arc::new(blobs), proposer));
    let purge = tokio::spawn(purge_stale(Arc::clone(&registry), auth.clone()));

    let tls = if args.insecure_http {
        None
    } else {
        let names = certificate_names(local, &args.sans);
        let validity = wharf_pki::time::Duration::seconds(args.server_cert_validity.min(i64::MAX as u64) as i64);
        let key = ca.issue_server_valid_for(&names, validity).context("issue the server certificate")?;
        let cert = Arc::new(wharf_pki::RenewableCert::new(&key, ca.cert_pem()).context("tls configuration")?);
        tokio::spawn(renew_server_cert(Arc::clone(&ca), Arc::clone(&cert), names, validity));
        Some(wharf_pki::renewing_server_config(cert))
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = Arc::new(wharf_http::App {
        registry,
        auth,
        ca_pem: Some(ca.cert_pem().to_owned()),
        scheme,
        default_host: local.to_string(),
        cluster: None,
    });
    print_banner(&args, local, scheme, &ca, admin_password.as_deref());
    tracing::info!(addr = %local, scheme, data_dir = %args.data_dir.display(), "wharf is serving");
    wharf_http::serve(listener, tls, wharf_http::router(app), shutdown_signal()).await;
    purge.abort();
    raft.stop().await;
    tracing::info!("wharf stopped");
    Ok(())
}

/// The names the server certificate covers: the listen address (when specific), loopback,
/// the host name and every `--san`.
pub(crate) fn certificate_names(local: SocketAddr, sans: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !local.ip().is_unspecified() {
        names.push(local.ip().to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    names.extend(sans.iter().cloned());
    names.dedup();
    names
}

/// The administrator's user name.
const ADMIN: &str = "admin";

/// Opens accounts and tokens: the token signing key (certified by the CA), the first
/// administrator. Returns the administrator's password when it was generated.
async fn start_auth(
    args: &UpArgs,
    ca: &Ca,
    store: Arc<Store>,
    proposer: Arc<dyn wharf_store::Proposer>,
) -> anyhow::Result<(Arc<Auth>, Option<String>)> {
    let key = ca.load_or_create_token_key(&args.data_dir.join("pki")).context("load or create the token key")?;
    let auth = Arc::new(Auth::with_proposer(store, proposer, &key, AuthConfig::default()).context("start accounts")?);
    let password = match &args.admin_password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            Some(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        None => None,
    };
    // Account writes wait on the proposer: off the async workers.
    let bootstrap = Arc::clone(&auth);
    let generated = tokio::task::spawn_blocking(move || bootstrap.bootstrap_admin(ADMIN, password.as_deref(), now()))
        .await?
        .context("create the administrator")?;
    Ok((auth, generated))
}

fn print_banner(args: &UpArgs, local: SocketAddr, scheme: &str, ca: &Ca, admin_password: Option<&str>) {
    let host = if local.ip().is_unspecified() {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}", name.trim(), local.port())
    } else {
        local.to_string()
    };
    println!("Wharf is up.");
    println!("  listening on {scheme}://{local}");
    println!("  registry:    {scheme}://{local}/v2/");
    println!("  data dir:    {}", args.data_dir.display());
    if scheme == "https" {
        println!("  CA:          {scheme}://{local}/ca");
        println!("  CA fingerprint (SHA-256): {}", ca.fingerprint());
        println!("  trust it:    wharf trust {scheme}://{host} --fingerprint {}", ca.fingerprint());
    } else {
        println!("  WARNING: --insecure-http: traffic is not encrypted.");
    }
    if args.insecure_no_auth {
        println!("  WARNING: --insecure-no-auth: anyone who can reach this node may push and pull.");
        return;
    }
    println!("  log in:      docker login {host} -u {ADMIN}");
    println!("  accounts:    wharf login {scheme}://{host} -u {ADMIN}, then wharf user --help");
    if let Some(password) = admin_password {
        println!("  password of {ADMIN} (generated; shown only this once): {password}");
    }
}

/// Renews the server certificate when two thirds of its lifetime have passed; new TLS
/// handshakes get the new certificate at once, without a restart.
async fn renew_server_cert(
    ca: Arc<Ca>,
    cert: Arc<wharf_pki::RenewableCert>,
    names: Vec<String>,
    validity: wharf_pki::time::Duration,
) {
    loop {
        let renew_at = cert.not_after() - validity / 3;
        let left: wharf_pki::time::Duration = renew_at - wharf_pki::time::OffsetDateTime::now_utc();
        let wait = left.max(wharf_pki::time::Duration::seconds(1));
        tokio::time::sleep(Duration::from_secs_f64(wait.as_seconds_f64())).await;
        let renewed = ca.issue_server_valid_for(&names, validity).and_then(|key| cert.install(&key, ca.cert_pem()));
        match renewed {
            Ok(()) => tracing::info!(not_after = %cert.not_after(), "server certificate renewed"),
            Err(e) => {
                tracing::error!(error = %e, "renewing the server certificate failed; retrying in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Upload sessions older than this are cancelled (distribution's default purge age).
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often stale uploads are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Removes stale upload sessions and expired login sessions, at start and then hourly.
pub(crate) async fn purge_stale(registry: Arc<Registry>, auth: Option<Arc<Auth>>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        match registry.purge_stale_uploads(UPLOAD_MAX_AGE.as_secs()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "removed stale upload sessions"),
            Err(e) => tracing::warn!(error = %e, "purging stale uploads failed"),
        }
        if let Some(auth) = auth.clone() {
            match tokio::task::spawn_blocking(move || auth.purge_sessions(now())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(purged = n, "removed expired sessions"),
                Ok(Err(e)) => tracing::warn!(error = %e, "purging expired sessions failed"),
                Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
            }
        }
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
    }
}
