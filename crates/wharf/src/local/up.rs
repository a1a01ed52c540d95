//! `wharf up`: one node with every role, embedded state store, filesystem blob store and a CA
//! generated on first start. Over TLS it is the first manager of a cluster that other nodes can
//! join (`wharf init` with defaults); with `--insecure-http` it is a standalone node.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use wharf_node::{ADMIN, Accounts, DataDir, StandaloneNode};

use crate::local::cluster::{self, Ending, Tuning};

#[derive(Args)]
pub struct UpArgs {
    /// Where state, blobs and keys are kept.
    #[arg(long, default_value = "./wharf-data", env = "WHARF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the registry and API (one port for both).
    #[arg(long, default_value = "127.0.0.1:5000", env = "WHARF_ADDR")]
    addr: String,
    /// The address other nodes and clients reach this node at (host:port); by default the
    /// listen address, or the host name when listening on every interface.
    #[arg(long)]
    advertise: Option<String>,
    /// Extra names or addresses for the server certificate (repeatable).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Serve plain HTTP instead of HTTPS. Only for loopback testing and benchmarks: such a
    /// node is standalone (no node identity, nothing can join it).
    #[arg(long)]
    insecure_http: bool,
    /// Serve the registry without accounts: anyone who can reach it may push and pull.
    /// Only for benchmarks and throwaway test setups (with --insecure-http).
    #[arg(long, requires = "insecure_http")]
    insecure_no_auth: bool,
    /// File holding the first administrator's password (read on the first start only). Without
    /// it, a password is generated and printed once.
    #[arg(long, env = "WHARF_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    #[command(flatten)]
    tuning: Tuning,
}

/// `wharf up`: the first manager of a one-node cluster (other nodes can join it), started
/// again from its data directory after that; with `--insecure-http`, a standalone node.
pub async fn run(args: UpArgs) -> anyhow::Result<Ending> {
    wharf_node::secure(&args.data_dir)?;
    if args.insecure_http {
        return standalone(args).await.map(|()| Ending::Stopped);
    }
    let listener = TcpListener::bind(&args.addr).await.with_context(|| format!("listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let settings = args.tuning.settings(local.to_string());
    if let Some((identity, key)) = cluster::existing_identity(&args.data_dir)? {
        return cluster::run_node(&args.data_dir, identity, key, &settings, None, Some(listener)).await;
    }
    let advertise = args.advertise.clone().unwrap_or_else(|| advertised(local));
    wharf_api::parse_advertise(&advertise).map_err(|e| anyhow::anyhow!("advertise address: {e}"))?;
    let first = cluster::FirstManager {
        data_dir: args.data_dir,
        advertise,
        sans: args.sans,
        password_file: args.admin_password_file,
    };
    cluster::start_first_manager(first, &settings, Some(listener)).await
}

/// The address a node listening on `local` is reached at: that address, or the machine's host
/// name with its port when it listens on every interface.
fn advertised(local: SocketAddr) -> String {
    if !local.ip().is_unspecified() {
        return local.to_string();
    }
    format!("{}:{}", wharf_node::hostname(), local.port())
}

/// `wharf up --insecure-http`: plain HTTP, state through a one-member Raft group of its own
/// (`wharf_node::StandaloneNode`), until SIGINT or SIGTERM.
async fn standalone(args: UpArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(&args.data_dir);
    StandaloneNode::check_dir(&dir)?;
    let listener = TcpListener::bind(&args.addr).await.with_context(|| format!("listen on {}", args.addr))?;
    let settings = args.tuning.settings(listener.local_addr()?.to_string());
    let accounts = if args.insecure_no_auth {
        Accounts::Off
    } else {
        Accounts::On { admin_password: crate::input::read_password_file(args.admin_password_file.as_deref())? }
    };
    let node = StandaloneNode::start(
        &dir,
        listener,
        accounts,
        settings.manager.limits,
        settings.manager.uploads,
        &settings.manager.storage,
    )
    .await?;
    print_banner(&args, node.local, node.generated_password.as_deref());
    tracing::info!(addr = %node.local, scheme = "http", data_dir = %args.data_dir.display(), "wharf is serving");
    shutdown_signal().await;
    node.stop().await;
    tracing::info!("wharf stopped");
    Ok(())
}

fn print_banner(args: &UpArgs, local: SocketAddr, admin_password: Option<&str>) {
    println!("Wharf is up (standalone: nothing can join this node).");
    println!("  listening on http://{local}");
    println!("  registry:    http://{local}/v2/");
    println!("  data dir:    {}", args.data_dir.display());
    println!("  WARNING: --insecure-http: traffic is not encrypted.");
    if args.insecure_no_auth {
        println!("  WARNING: --insecure-no-auth: anyone who can reach this node may push and pull.");
        return;
    }
    println!("  log in:      docker login {local} -u {ADMIN}");
    println!("  accounts:    wharf login http://{local} -u {ADMIN}, then wharf user --help");
    if let Some(password) = admin_password {
        println!("  password of {ADMIN} (generated; shown only this once): {password}");
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
