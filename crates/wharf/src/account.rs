//! `wharf login`, `wharf logout`, `wharf user ...` and `wharf repo ...`: clients of the
//! account API like any other. `wharf login` keeps the node's URL, the session token and the
//! CA it trusted in `$WHARF_CONFIG` (default `~/.wharf/config.json`, mode 0600).

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::terminal::{field, printable};

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

fn client(ca_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?]);
    }
    Ok(builder.build()?)
}

/// The CA to trust for `url`: `--ca`, else the one `wharf trust` installed, else the system's.
fn find_ca(url: &reqwest::Url, ca: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(path) = ca {
        return Ok(Some(std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?));
    }
    let installed = PathBuf::from("/etc/docker/certs.d").join(crate::trust::registry_host(url)?).join("ca.crt");
    Ok(std::fs::read_to_string(installed).ok())
}

/// The password in `path`, if given, without its line ending.
pub(crate) fn read_password_file(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
}

fn read_secret_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("read the {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(line)
}

async fn check(response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        bail!("{status}: {}", body["message"].as_str().map_or_else(|| "no message".to_owned(), printable));
    }
    Ok(body)
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
    let http = client(ca_pem.as_deref())?;
    let response = http
        .post(url.join("/auth/login")?)
        .json(&json!({"username": args.username, "password": password}))
        .send()
        .await
        .with_context(|| format!("connect to {url}"))?;
    let body = check(response).await?;
    let token = body["auth_token"].as_str().context("the node sent no auth_token")?.to_owned();
    let config = Config { url: url.to_string(), auth_token: token, ca_pem };
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    file.write_all(&serde_json::to_vec_pretty(&config)?)?;
    println!("Logged in to {url} as {}.", args.username);
    Ok(())
}

/// A logged-in API client.
struct Session {
    http: reqwest::Client,
    url: reqwest::Url,
    token: String,
}

impl Session {
    fn load() -> anyhow::Result<Session> {
        let path = config_path()?;
        let raw = std::fs::read(&path)
            .with_context(|| format!("not logged in ({} is missing): run wharf login", path.display()))?;
        let config: Config = serde_json::from_slice(&raw).with_context(|| format!("read {}", path.display()))?;
        let url = reqwest::Url::parse(&config.url)?;
        Ok(Session { http: client(config.ca_pem.as_deref())?, url, token: config.auth_token })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut request = self.http.request(method, self.url.join(path)?).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        check(request.send().await.with_context(|| format!("connect to {}", self.url))?).await
    }

    /// Like [`Session::call`], for what only the Raft leader can do: a manager that is not the
    /// leader answers 421 with the leader's address, and the call goes there (the session
    /// is valid on every manager); while no leader is known (503) it tries again for a while.
    async fn call_on_leader(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let mut request = self.http.request(method.clone(), self.url.join(path)?).bearer_auth(&self.token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.with_context(|| format!("connect to {}", self.url))?;
            match response.status() {
                reqwest::StatusCode::MISDIRECTED_REQUEST => {
                    let answer: serde_json::Value = response.json().await.unwrap_or_default();
                    let leader = answer["leader"].as_str().context("no leader is known; try again")?;
                    self.url = reqwest::Url::parse(&format!("https://{leader}/"))?;
                }
                reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                _ => return check(response).await,
            }
        }
        bail!("the leader kept changing; try again")
    }
}

pub async fn logout() -> anyhow::Result<()> {
    let session = Session::load()?;
    session.call(reqwest::Method::POST, "/auth/logout", None).await?;
    std::fs::remove_file(config_path()?)?;
    println!("Logged out.");
    Ok(())
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Lists the accounts.
    Ls,
    /// Creates an account; the password is read from standard input.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
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
    /// Lists your sessions and refresh tokens.
    Sessions,
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let session = Session::load()?;
    match command {
        UserCommand::Ls => {
            let users = session.call(Method::GET, "/api/users", None).await?;
            println!("{:<24} {:<6} {:<9}", "NAME", "ADMIN", "DISABLED");
            for u in users.as_array().into_iter().flatten() {
                println!("{:<24} {:<6} {:<9}", field(u, "name"), u["admin"], u["disabled"]);
            }
        }
        UserCommand::Create { name, admin } => {
            let password = read_secret_line("password")?;
            session
                .call(Method::POST, "/api/users", Some(json!({"name": name, "password": password, "admin": admin})))
                .await?;
            println!("Created {name}.");
        }
        UserCommand::Passwd { name, old_password_file } => {
            let password = read_secret_line("new password")?;
            let old = read_password_file(old_password_file.as_deref())?;
            let body = json!({"password": password, "old_password": old});
            session.call(Method::PUT, &format!("/api/users/{name}/password"), Some(body)).await?;
            println!("Password of {name} changed; its sessions and tokens were ended.");
        }
        UserCommand::Disable { name } => {
            session.call(Method::PATCH, &format!("/api/users/{name}"), Some(json!({"disabled": true}))).await?;
            println!("Disabled {name}.");
        }
        UserCommand::Enable { name } => {
            session.call(Method::PATCH, &format!("/api/users/{name}"), Some(json!({"disabled": false}))).await?;
            println!("Enabled {name}.");
        }
        UserCommand::Rm { name } => {
            session.call(Method::DELETE, &format!("/api/users/{name}"), None).await?;
            println!("Deleted {name}.");
        }
        UserCommand::Sessions => {
            let sessions = session.call(Method::GET, "/api/sessions", None).await?;
            println!("{:<16} {:<14} {:<20} {:<12} {:<12}", "ID", "KIND", "CLIENT", "CREATED", "EXPIRES");
            for s in sessions.as_array().into_iter().flatten() {
                let id: String = field(s, "id").chars().take(12).collect();
                let current = if s["current"] == true { "*" } else { "" };
                println!(
                    "{:<16} {:<14} {:<20} {:<12} {:<12}",
                    format!("{id}{current}"),
                    field(s, "kind"),
                    field(s, "client"),
                    s["created"],
                    s["expires"]
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
}

pub async fn repo(command: RepoCommand) -> anyhow::Result<()> {
    let session = Session::load()?;
    let (name, public) = match command {
        RepoCommand::Public { name } => (name, true),
        RepoCommand::Private { name } => (name, false),
    };
    session.call(reqwest::Method::PATCH, &format!("/api/repositories/{name}"), Some(json!({"public": public}))).await?;
    println!("{name} is now {}.", if public { "public" } else { "private" });
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
    let session = Session::load()?;
    let (method, role) = match command {
        TokenCommand::Show { role } => (reqwest::Method::GET, role),
        TokenCommand::Rotate { role } => (reqwest::Method::POST, role),
    };
    let body = session.call(method, &format!("/api/cluster/tokens/{role}"), None).await?;
    println!("{}", field(&body, "token"));
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
        let nodes = crate::cluster::nodes_as_this_node(dir).await?;
        print_nodes(&nodes);
        return Ok(());
    }
    let mut session = Session::load()?;
    match command {
        NodeCommand::Rm { id } => {
            session.call_on_leader(reqwest::Method::DELETE, &format!("/api/nodes/{id}"), None).await?;
            println!("Removed node {id}.");
        }
        NodeCommand::Promote { id } | NodeCommand::Demote { id } => {
            let role = if matches!(command, NodeCommand::Promote { .. }) { "manager" } else { "worker" };
            let path = format!("/api/nodes/{id}/role");
            session.call_on_leader(reqwest::Method::PUT, &path, Some(json!({"role": role}))).await?;
            println!("Node {id} is now a {role}; it takes the role at its next heartbeat.");
        }
        NodeCommand::Ls { .. } => {
            let url = session.url.join("/api/nodes")?;
            let response = session.http.get(url).bearer_auth(&session.token).send().await?;
            let stale =
                response.headers().get(wharf_http::STALE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let nodes = check(response).await?;
            if let Some(why) = stale {
                eprintln!("warning: {}", printable(&why));
            }
            print_nodes(&nodes);
        }
    }
    Ok(())
}

fn print_nodes(nodes: &serde_json::Value) {
    println!(
        "{:<4} {:<20} {:<8} {:<8} {:<7} {:<7} {:<22} {:<22} CERT EXPIRES",
        "ID", "HOSTNAME", "ROLE", "STATE", "RAFT", "LEADER", "REACHABILITY", "ADDRESS"
    );
    for n in nodes.as_array().into_iter().flatten() {
        let s = |k: &str| field(n, k);
        let leader = if n["leader"] == true { "*" } else { "" };
        let id = format!("{}{}", n["id"], if n["self"] == true { "*" } else { "" });
        let expires = n["cert_not_after"]
            .as_i64()
            .filter(|t| *t > 0)
            .and_then(|t| wharf_pki::time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map_or("?".to_owned(), |t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()));
        println!(
            "{:<4} {:<20} {:<8} {:<8} {:<7} {:<7} {:<22} {:<22} {}",
            id,
            s("hostname"),
            s("role"),
            s("state"),
            s("raft"),
            leader,
            s("reachability"),
            s("addr"),
            expires
        );
    }
}
