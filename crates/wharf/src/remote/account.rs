//! `wharf login`, `wharf logout`, `wharf user ...` and `wharf repo ...`: clients of the
//! account API like any other. `wharf login` keeps the node's URL, the session token and the
//! CA it trusted in `$WHARF_CONFIG` (default `~/.wharf/config.json`, mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use wharf_api::NodeRole;
use wharf_api::account::{
    LoginRequest, LoginResponse, NewPassword, NewUser, RepositoryInfo, RepositoryUpdate, SessionInfo, UserInfo,
    UserUpdate,
};
use wharf_api::cluster::{JoinTokenInfo, NodeInfo, NodeRoleInfo, RoleChange};
use wharf_api::identity::RepoAccessInfo;
use wharf_client::{Client, ClientError};

use crate::input::{read_password_file, read_secret_line};
use crate::terminal::printable;

#[derive(Serialize, Deserialize)]
struct Config {
    url: String,
    auth_token: String,
    /// The CA the session was opened with, if not the system's.
    ca_pem: Option<String>,
}

fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("WHARF_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set WHARF_CONFIG")?;
    Ok(PathBuf::from(home).join(".wharf/config.json"))
}

/// An API client of the node at `url`, trusting `ca_pem` if given (else the system's CAs).
fn client(url: &str, ca_pem: Option<&str>) -> anyhow::Result<Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?]);
    }
    Ok(Client::new(builder.build()?, &[url.to_owned()]))
}

/// The CA to trust for `url`: `--ca`, else the one `wharf trust` installed, else the system's.
fn find_ca(url: &reqwest::Url, ca: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(path) = ca {
        return Ok(Some(std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?));
    }
    let installed = PathBuf::from("/etc/docker/certs.d").join(crate::local::trust::registry_host(url)?).join("ca.crt");
    Ok(std::fs::read_to_string(installed).ok())
}

/// A failed call as the user sees it: what the server said, printable.
pub(crate) fn remote(e: ClientError) -> anyhow::Error {
    anyhow::anyhow!("{}", printable(&e.to_string()))
}

#[derive(Args)]
pub struct LoginArgs {
    /// The node's URL, e.g. https://registry.example.com:5000
    url: String,
    #[arg(short, long)]
    username: String,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The CA certificate to trust (default: the one `wharf trust` installed, else the system's).
    #[arg(long)]
    ca: Option<PathBuf>,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    if !args.password_stdin {
        bail!("pass the password on standard input with --password-stdin");
    }
    let password = read_secret_line("password")?;
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("invalid URL {}", args.url))?;
    let ca_pem = find_ca(&url, args.ca.as_ref())?;
    let mut api = client(url.as_str(), ca_pem.as_deref())?;
    let request = LoginRequest { username: args.username.clone(), password };
    let answer: LoginResponse = api.call(Method::POST, "/auth/login", Some(&request)).await.map_err(remote)?;
    let config = Config { url: url.to_string(), auth_token: answer.auth_token, ca_pem };
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    file.write_all(&serde_json::to_vec_pretty(&config)?)?;
    println!("Logged in to {url} as {}.", args.username);
    Ok(())
}

/// The API client of the session `wharf login` saved. A call follows the leader where only
/// the leader can answer (the session is valid on every manager) and waits out an election.
pub(crate) fn session() -> anyhow::Result<Client> {
    let path = config_path()?;
    let raw = std::fs::read(&path)
        .with_context(|| format!("not logged in ({} is missing): run wharf login", path.display()))?;
    let config: Config = serde_json::from_slice(&raw).with_context(|| format!("read {}", path.display()))?;
    Ok(client(&config.url, config.ca_pem.as_deref())?.with_bearer(&config.auth_token))
}

pub async fn logout() -> anyhow::Result<()> {
    session()?.call::<(), ()>(Method::POST, "/auth/logout", None).await.map_err(remote)?;
    std::fs::remove_file(config_path()?)?;
    println!("Logged out.");
    Ok(())
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Lists the accounts.
    Ls,
    /// Creates an account; the password is read from standard input. A service account
    /// (`--service-account`) has no password: it reaches the registry with access tokens.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long, conflicts_with = "admin")]
        service_account: bool,
    },
    /// Makes an access token for an account (yours, or any as an administrator), printed once:
    /// a registry password limited to its scopes (`--scope 'repository:acme/*:pull,push'`,
    /// repeated) for `--days` (at most 366). Listed and revoked with `sessions` and `revoke`.
    Token {
        name: String,
        /// What the token is for (shown in the session list).
        #[arg(long)]
        label: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// Sets a password, read from standard input (for your own account, `--old-password-file`).
    Passwd {
        name: String,
        #[arg(long)]
        old_password_file: Option<PathBuf>,
    },
    /// Disables an account: its sessions and tokens stop working at once.
    Disable { name: String },
    /// Enables a disabled account.
    Enable { name: String },
    /// Deletes an account.
    Rm { name: String },
    /// Lists your sessions, refresh tokens and client bundles.
    Sessions,
    /// Ends one of your sessions, refresh tokens or client bundles (by the start of its id).
    Revoke { id: String },
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    let mut api = session()?;
    let disabled = matches!(command, UserCommand::Disable { .. });
    match command {
        UserCommand::Ls => {
            let users: Vec<UserInfo> = api.call(Method::GET, "/api/users", None::<&()>).await.map_err(remote)?;
            println!("{:<24} {:<6} {:<9}", "NAME", "ADMIN", "DISABLED");
            for u in users {
                println!("{:<24} {:<6} {:<9}", printable(&u.name), u.admin, u.disabled);
            }
        }
        UserCommand::Create { name, admin, service_account } => {
            let password = if service_account { String::new() } else { read_secret_line("password")? };
            let new = NewUser { name: name.clone(), password, admin, service_account };
            api.call::<_, UserInfo>(Method::POST, "/api/users", Some(&new)).await.map_err(remote)?;
            println!("Created {name}.");
        }
        UserCommand::Passwd { name, old_password_file } => {
            let password = read_secret_line("new password")?;
            let old_password = read_password_file(old_password_file.as_deref())?;
            let change = NewPassword { password, old_password };
            api.call::<_, ()>(Method::PUT, &format!("/api/users/{name}/password"), Some(&change))
                .await
                .map_err(remote)?;
            println!("Password of {name} changed; its sessions and tokens were ended.");
        }
        UserCommand::Disable { name } | UserCommand::Enable { name } => {
            let update = UserUpdate { disabled: Some(disabled) };
            api.call::<_, UserInfo>(Method::PATCH, &format!("/api/users/{name}"), Some(&update))
                .await
                .map_err(remote)?;
            println!("{} {name}.", if disabled { "Disabled" } else { "Enabled" });
        }
        UserCommand::Token { name, label, scopes, days } => {
            let body = wharf_api::account::NewAccessToken { name: label, scopes, days };
            let path = format!("/api/users/{name}/tokens");
            let created: wharf_api::account::AccessTokenCreated =
                api.call(Method::POST, &path, Some(&body)).await.map_err(remote)?;
            println!("{}", printable(&created.token));
        }
        UserCommand::Rm { name } => {
            api.call::<(), ()>(Method::DELETE, &format!("/api/users/{name}"), None).await.map_err(remote)?;
            println!("Deleted {name}.");
        }
        UserCommand::Revoke { id } => {
            let sessions: Vec<SessionInfo> =
                api.call(Method::GET, "/api/sessions", None::<&()>).await.map_err(remote)?;
            let matching: Vec<&SessionInfo> = sessions.iter().filter(|s| s.id.starts_with(&id)).collect();
            let [session] = matching.as_slice() else {
                bail!("{} of your sessions and bundles start with {id:?}; give more of the id", matching.len());
            };
            api.call::<(), ()>(Method::DELETE, &format!("/api/sessions/{}", session.id), None).await.map_err(remote)?;
            println!("Ended {} {}.", session.kind.as_str(), printable(&session.id));
        }
        UserCommand::Sessions => {
            let sessions: Vec<SessionInfo> =
                api.call(Method::GET, "/api/sessions", None::<&()>).await.map_err(remote)?;
            println!("{:<16} {:<14} {:<20} {:<12} {:<12}", "ID", "KIND", "CLIENT", "CREATED", "EXPIRES");
            for s in sessions {
                let id: String = printable(&s.id).chars().take(12).collect();
                let current = if s.current { "*" } else { "" };
                println!(
                    "{:<16} {:<14} {:<20} {:<12} {:<12}",
                    format!("{id}{current}"),
                    s.kind.as_str(),
                    printable(&s.client),
                    s.created,
                    s.expires
                );
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Lets anyone, also without an account, pull the repository.
    Public { name: String },
    /// Makes the repository private again.
    Private { name: String },
    /// Whether the repository accepts manifests and indexes whose layers or child manifests it
    /// does not hold (e.g. one platform of a multi-arch image copied with its index): on or
    /// off (the default: such a push is refused with MANIFEST_BLOB_UNKNOWN).
    SparseManifests {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Prints the repository's settings.
    Show { name: String },
    /// Gives a user, team or organization (user:NAME, team:ORG/TEAM, org:ORG) a level on a
    /// repository, or on every repository of a namespace (NS/*): read, read-write, admin, or
    /// none to take it back.
    Access {
        name: String,
        subject: String,
        #[arg(value_parser = ["read", "read-write", "admin", "none"])]
        level: String,
    },
    /// Lists who has which level on a repository (every entry without a name: administrators).
    AccessLs { name: Option<String> },
}

pub async fn repo(command: RepoCommand) -> anyhow::Result<()> {
    let (name, update) = match command {
        RepoCommand::Access { name, subject, level } => {
            let body = RepoAccessInfo { repo: name.clone(), subject: subject.clone(), level: level.clone() };
            session()?.call::<_, ()>(Method::PUT, "/api/repository-access", Some(&body)).await.map_err(remote)?;
            println!("{} now has {} on {}.", printable(&subject), printable(&level), printable(&name));
            return Ok(());
        }
        RepoCommand::AccessLs { name } => {
            let path = match &name {
                Some(name) => format!("/api/repository-access?repo={name}"),
                None => "/api/repository-access".to_owned(),
            };
            let all: Vec<RepoAccessInfo> = session()?.call::<(), _>(Method::GET, &path, None).await.map_err(remote)?;
            for a in all {
                println!("{}\t{}\t{}", printable(&a.repo), printable(&a.subject), printable(&a.level));
            }
            return Ok(());
        }
        RepoCommand::Public { name } => (name, Some(RepositoryUpdate { public: Some(true), ..Default::default() })),
        RepoCommand::Private { name } => (name, Some(RepositoryUpdate { public: Some(false), ..Default::default() })),
        RepoCommand::SparseManifests { name, state } => {
            let update = RepositoryUpdate { sparse_manifests: Some(state == "on"), ..Default::default() };
            (name, Some(update))
        }
        RepoCommand::Show { name } => (name, None),
    };
    let path = format!("/api/repositories/{name}");
    let shown: RepositoryInfo = match &update {
        Some(update) => session()?.call(Method::PATCH, &path, Some(update)).await,
        None => session()?.call::<(), _>(Method::GET, &path, None).await,
    }
    .map_err(remote)?;
    let visibility = if shown.public { "public" } else { "private" };
    let sparse = if shown.sparse_manifests { "accepted" } else { "refused" };
    println!("{}: {visibility}; sparse manifests {sparse}.", printable(&shown.name));
    Ok(())
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Prints the join token of a role (manager or worker).
    Show { role: String },
    /// Replaces the join token of a role; the old one stops working at once.
    Rotate { role: String },
}

pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    let (method, role) = match command {
        TokenCommand::Show { role } => (Method::GET, role),
        TokenCommand::Rotate { role } => (Method::POST, role),
    };
    let path = format!("/api/cluster/tokens/{role}");
    let token: JoinTokenInfo = session()?.call(method, &path, None::<&()>).await.map_err(remote)?;
    println!("{}", printable(&token.token));
    Ok(())
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Lists the nodes of the cluster. With `--data-dir` of a manager on this machine, it uses
    /// that node's own certificate and needs no login.
    Ls {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Removes a node: it leaves Raft, its id is never reused, its certificate is refused.
    Rm { id: u64 },
    /// Makes a worker a manager: it renews its certificate and joins Raft.
    Promote { id: u64 },
    /// Makes a manager a worker: it leaves Raft, then renews its certificate as a worker.
    Demote { id: u64 },
}

pub async fn node(command: NodeCommand) -> anyhow::Result<()> {
    if let NodeCommand::Ls { data_dir: Some(dir) } = &command {
        let nodes = crate::local::cluster::nodes_as_this_node(dir).await?;
        print_nodes(&nodes);
        return Ok(());
    }
    let mut api = session()?;
    match command {
        NodeCommand::Rm { id } => {
            api.call::<(), ()>(Method::DELETE, &format!("/api/nodes/{id}"), None).await.map_err(remote)?;
            println!("Removed node {id}.");
        }
        NodeCommand::Promote { id } | NodeCommand::Demote { id } => {
            let role =
                if matches!(command, NodeCommand::Promote { .. }) { NodeRole::Manager } else { NodeRole::Worker };
            let path = format!("/api/nodes/{id}/role");
            api.call::<_, NodeRoleInfo>(Method::PUT, &path, Some(&RoleChange { role })).await.map_err(remote)?;
            println!("Node {id} is now a {role}; it takes the role at its next heartbeat.");
        }
        NodeCommand::Ls { .. } => {
            let (nodes, headers): (Vec<NodeInfo>, _) =
                api.call_with_headers(Method::GET, "/api/nodes", None::<&()>).await.map_err(remote)?;
            if let Some(why) = headers.get(wharf_http::STALE_HEADER).and_then(|v| v.to_str().ok()) {
                eprintln!("warning: {}", printable(why));
            }
            print_nodes(&nodes);
        }
    }
    Ok(())
}

fn print_nodes(nodes: &[NodeInfo]) {
    println!(
        "{:<4} {:<20} {:<8} {:<8} {:<7} {:<7} {:<22} {:<22} CERT EXPIRES",
        "ID", "HOSTNAME", "ROLE", "STATE", "RAFT", "LEADER", "REACHABILITY", "ADDRESS"
    );
    for n in nodes {
        let leader = if n.leader { "*" } else { "" };
        let id = format!("{}{}", n.id, if n.is_self { "*" } else { "" });
        let expires = i64::try_from(n.cert_not_after)
            .ok()
            .filter(|t| *t > 0)
            .and_then(|t| wharf_pki::time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map_or("?".to_owned(), |t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()));
        println!(
            "{:<4} {:<20} {:<8} {:<8} {:<7} {:<7} {:<22} {:<22} {}",
            id,
            printable(&n.hostname),
            n.role,
            n.state,
            n.raft.as_str(),
            leader,
            n.reachability.as_str(),
            printable(&n.addr),
            expires
        );
    }
}

#[derive(Args)]
pub struct BundleArgs {
    /// The folder to unpack the bundle into (created; default ./wharf-bundle-<user>).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// `wharf bundle`: a client bundle for the logged-in user, unpacked into a folder.
pub async fn bundle(args: BundleArgs) -> anyhow::Result<()> {
    let mut api = session()?;
    let me: wharf_api::account::Me = api.call(Method::GET, "/api/me", None::<&()>).await.map_err(remote)?;
    let zip = api.get_bytes("/api/clientbundle").await.map_err(remote)?;
    let dir = args.output.unwrap_or_else(|| PathBuf::from(format!("wharf-bundle-{}", me.name)));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).context("the bundle is not a zip")?;
    // The `docker` CLI imports a zip that holds only a context's files: those go to
    // context.zip too.
    let context_path = dir.join("context.zip");
    let mut context = zip::ZipWriter::new(
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&context_path)?,
    );
    for index in 0..archive.len() {
        let mut file = archive.by_index(index)?;
        let Some(name) = file.enclosed_name() else { bail!("the bundle names a file outside its folder") };
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mode = file.unix_mode().unwrap_or(0o600) & 0o700;
        let mut bytes = Vec::new();
        std::io::copy(&mut file, &mut bytes)?;
        let mut out =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode.max(0o600)).open(&path)?;
        out.write_all(&bytes)?;
        let name = file.name()?.into_owned();
        if name == "meta.json" || name.starts_with("tls/") {
            context.start_file(name, zip::write::SimpleFileOptions::default().unix_permissions(mode.max(0o600)))?;
            context.write_all(&bytes)?;
        }
    }
    context.finish()?;
    println!("Client bundle for {} in {}.", printable(&me.name), dir.display());
    println!("Use it:  cd {} && eval \"$(<env.sh)\" && docker node ls", dir.display());
    println!("Or as a context:  docker context import wharf {}", context_path.display());
    Ok(())
}
