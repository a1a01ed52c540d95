//! `wharf up`: one node with every role, embedded state store, filesystem blob store and a CA
//! generated on first start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use wharf_blobstore::FsBlobStore;
use wharf_pki::Ca;
use wharf_registry::Registry;
use wharf_store::Store;

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
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("create {}", args.data_dir.display()))?;
    let store = Store::open(&args.data_dir.join("state.redb")).context("open state store")?;
    let blobs = FsBlobStore::open(args.data_dir.join("blobs")).context("open blob store")?;
    let ca = Ca::load_or_create(&args.data_dir.join("pki")).context("load or create the CA")?;
    let registry = Arc::new(Registry::new(Arc::new(store), Arc::new(blobs)).context("start the registry")?);
    tokio::spawn(purge_stale_uploads(Arc::clone(&registry)));

    let listener = TcpListener::bind(&args.addr).await.with_context(|| format!("listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let tls = if args.insecure_http {
        None
    } else {
        let names = certificate_names(local, &args.sans);
        let key = ca.issue_server(&names).context("issue the server certificate")?;
        Some(wharf_pki::server_config(&key, ca.cert_pem()).context("tls configuration")?)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = Arc::new(wharf_http::App { registry, ca_pem: Some(ca.cert_pem().to_owned()) });
    print_banner(&args, local, scheme, &ca);
    tracing::info!(addr = %local, scheme, data_dir = %args.data_dir.display(), "wharf is serving");
    wharf_http::serve(listener, tls, wharf_http::router(app), shutdown_signal()).await;
    tracing::info!("wharf stopped");
    Ok(())
}

/// The names the server certificate covers: the listen address (when specific), loopback,
/// the host name and every `--san`.
fn certificate_names(local: SocketAddr, sans: &[String]) -> Vec<String> {
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

fn print_banner(args: &UpArgs, local: SocketAddr, scheme: &str, ca: &Ca) {
    println!("Wharf is up.");
    println!("  listening on {scheme}://{local}");
    println!("  registry:    {scheme}://{local}/v2/");
    println!("  data dir:    {}", args.data_dir.display());
    if scheme == "https" {
        println!("  CA:          {scheme}://{local}/ca");
        println!("  CA fingerprint (SHA-256): {}", ca.fingerprint());
    } else {
        println!("  WARNING: --insecure-http: traffic is not encrypted.");
    }
    println!("  WARNING: the registry is open: there are no accounts yet, anyone who can reach it may push and pull.");
}

/// Upload sessions older than this are cancelled (distribution's default purge age).
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often stale uploads are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

async fn purge_stale_uploads(registry: Arc<Registry>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        match registry.purge_stale_uploads(UPLOAD_MAX_AGE.as_secs()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "removed stale upload sessions"),
            Err(e) => tracing::warn!(error = %e, "purging stale uploads failed"),
        }
    }
}

async fn shutdown_signal() {
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
