//! The `wharf` binary: command line, configuration, wiring of the crates, signals and what a
//! node prints. It is the only crate that uses `anyhow`. Protocol logic lives in the crates:
//! the control plane in `wharf-manager`, the node's files, Raft node and manager assembly in
//! `wharf-node`, the client calls in `wharf-client`. Here: which node to start and what it
//! prints, the join client's token sources, the agent (until `wharf-agent`).

mod input;
mod local;
mod remote;
mod terminal;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wharf", version, about = "Wharf: a self-hosted container platform in one binary")]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an all-in-one node (registry and API on one port, embedded storage and CA) that is
    /// the first manager of a cluster other machines can join; started again, runs that node.
    Up(local::up::UpArgs),
    /// Creates a cluster: this node becomes its first manager, and prints the join tokens.
    Init(local::cluster::InitArgs),
    /// Joins a cluster with a token from `wharf init` or `wharf token show`.
    Join(local::cluster::JoinArgs),
    /// After the loss of a quorum: makes this manager a new one-manager cluster with the state
    /// it kept (`--force-new-cluster`); the other nodes can join it again.
    Recover(local::cluster::RecoverArgs),
    /// Trusts a node's CA for docker, podman, skopeo, buildah and containerd.
    Trust(local::trust::TrustArgs),
    /// Opens an API session with a node (for `wharf user` and `wharf repo`).
    Login(remote::account::LoginArgs),
    /// Ends the API session.
    Logout,
    /// Manages accounts.
    #[command(subcommand)]
    User(remote::account::UserCommand),
    /// Manages repository settings.
    #[command(subcommand)]
    Repo(remote::account::RepoCommand),
    /// Shows or rotates the cluster's join tokens.
    #[command(subcommand)]
    Token(remote::account::TokenCommand),
    /// Lists the cluster's nodes.
    #[command(subcommand)]
    Node(remote::account::NodeCommand),
    /// Fetches a client bundle (certificate, key, CA, env.sh) for the `docker` CLI.
    Bundle(remote::account::BundleArgs),
    /// Manages organizations.
    #[command(subcommand)]
    Org(remote::access::OrgCommand),
    /// Manages the teams of an organization and their members.
    #[command(subcommand)]
    Team(remote::access::TeamCommand),
    /// Manages collections (the tree that nodes, services, secrets and networks belong to).
    #[command(subcommand)]
    Collection(remote::access::CollectionCommand),
    /// Manages roles (built-in and custom) and the default role of users.
    #[command(subcommand)]
    Role(remote::access::RoleCommand),
    /// Grants roles on collections to users, teams and organizations.
    #[command(subcommand)]
    Grant(remote::access::GrantCommand),
    /// Prints the audit log: who did what, through which door, when, and how it ended.
    Audit(remote::access::AuditArgs),
    /// Connects Wharf to an LDAP or Active Directory directory; tests logins; syncs.
    #[command(subcommand)]
    Directory(remote::access::DirectoryCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if matches!(cli.command, Command::Up(_) | Command::Init(_) | Command::Join(_) | Command::Recover(_)) {
        // Before any thread or file exists: what a node creates is its user's alone, and it
        // may hold as many connections as its caps allow.
        wharf_node::private_umask();
        raise_open_file_limit();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Up(args) => ended(runtime, |runtime| runtime.block_on(local::up::run(args))),
        Command::Init(args) => ended(runtime, |runtime| runtime.block_on(local::cluster::init(args))),
        Command::Join(args) => ended(runtime, |runtime| runtime.block_on(local::cluster::join(args))),
        Command::Recover(args) => ended(runtime, |runtime| runtime.block_on(local::cluster::recover(args))),
        Command::Trust(args) => runtime.block_on(local::trust::run(args)),
        Command::Login(args) => runtime.block_on(remote::account::login(args)),
        Command::Logout => runtime.block_on(remote::account::logout()),
        Command::User(command) => runtime.block_on(remote::account::user(command)),
        Command::Repo(command) => runtime.block_on(remote::account::repo(command)),
        Command::Token(command) => runtime.block_on(remote::account::token(command)),
        Command::Node(command) => runtime.block_on(remote::account::node(command)),
        Command::Bundle(args) => runtime.block_on(remote::account::bundle(args)),
        Command::Org(command) => runtime.block_on(remote::access::org(command)),
        Command::Team(command) => runtime.block_on(remote::access::team(command)),
        Command::Collection(command) => runtime.block_on(remote::access::collection(command)),
        Command::Role(command) => runtime.block_on(remote::access::role(command)),
        Command::Grant(command) => runtime.block_on(remote::access::grant(command)),
        Command::Audit(args) => runtime.block_on(remote::access::audit(args)),
        Command::Directory(command) => runtime.block_on(remote::access::directory(command)),
    }
}

/// Runs a node; when its role changed, starts the program again with the same command line
/// (the node finds its new identity in its data directory).
fn ended(
    runtime: tokio::runtime::Runtime,
    run: impl FnOnce(&tokio::runtime::Runtime) -> anyhow::Result<local::cluster::Ending>,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    match run(&runtime)? {
        local::cluster::Ending::Stopped => Ok(()),
        local::cluster::Ending::Restart => {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            tracing::info!("restarting in the node's new role");
            let error = std::process::Command::new("/proc/self/exe").args(std::env::args_os().skip(1)).exec();
            Err(anyhow::Error::from(error).context("restart wharf"))
        }
    }
}

/// Raises this process's limit of open files to the hard limit, so that the connection caps
/// (`--max-connections`, 4096 by default), not a soft limit of 1024, bound what a node serves.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum != limit.current {
        let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum });
    }
}

fn init_logging(format: &str) {
    // Wharf's own lines from info up (every `wharf*` crate: targets match by prefix), and only
    // warnings of its dependencies (openraft's info lines are its internals).
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wharf=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
