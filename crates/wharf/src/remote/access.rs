//! `wharf org`, `wharf team`, `wharf collection`, `wharf role` and `wharf grant`: clients of
//! the access API (`/api/orgs`, `/api/collections`, `/api/roles`, `/api/grants`).

use clap::Subcommand;
use reqwest::Method;
use wharf_api::identity::{
    AccessSettings, CollectionInfo, GrantInfo, NewCollection, NewName, NewRole, OrgInfo, RoleInfo, TeamInfo,
    TeamMembers,
};

use crate::remote::account::{remote, session};
use crate::terminal::printable;

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Lists the organizations and their teams.
    Ls,
    /// Creates an organization.
    Create { name: String },
    /// Deletes an organization, its teams and their grants.
    Rm { name: String },
}

pub async fn org(command: OrgCommand) -> anyhow::Result<()> {
    let mut api = session()?;
    match command {
        OrgCommand::Ls => {
            let orgs: Vec<OrgInfo> = api.call::<(), _>(Method::GET, "/api/orgs", None).await.map_err(remote)?;
            for org in orgs {
                println!("{}\t{}", printable(&org.name), printable(&org.teams.join(",")));
            }
        }
        OrgCommand::Create { name } => {
            api.call::<_, ()>(Method::POST, "/api/orgs", Some(&NewName { name: name.clone() }))
                .await
                .map_err(remote)?;
            println!("Created organization {}.", printable(&name));
        }
        OrgCommand::Rm { name } => {
            api.call::<(), ()>(Method::DELETE, &format!("/api/orgs/{name}"), None).await.map_err(remote)?;
            println!("Deleted organization {}.", printable(&name));
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum TeamCommand {
    /// Lists an organization's teams and their members.
    Ls { org: String },
    /// Creates a team in an organization.
    Create { org: String, team: String },
    /// Deletes a team and its grants.
    Rm { org: String, team: String },
    /// Adds users to a team.
    Add { org: String, team: String, users: Vec<String> },
    /// Removes users from a team.
    Remove { org: String, team: String, users: Vec<String> },
    /// Replaces a team's members.
    Set { org: String, team: String, users: Vec<String> },
}

pub async fn team(command: TeamCommand) -> anyhow::Result<()> {
    let mut api = session()?;
    match command {
        TeamCommand::Ls { org } => {
            let teams: Vec<TeamInfo> =
                api.call::<(), _>(Method::GET, &format!("/api/orgs/{org}/teams"), None).await.map_err(remote)?;
            for team in teams {
                println!("{}/{}\t{}", printable(&team.org), printable(&team.name), printable(&team.members.join(",")));
            }
        }
        TeamCommand::Create { org, team } => {
            let body = NewName { name: team.clone() };
            api.call::<_, ()>(Method::POST, &format!("/api/orgs/{org}/teams"), Some(&body)).await.map_err(remote)?;
            println!("Created team {}/{}.", printable(&org), printable(&team));
        }
        TeamCommand::Rm { org, team } => {
            let path = format!("/api/orgs/{org}/teams/{team}");
            api.call::<(), ()>(Method::DELETE, &path, None).await.map_err(remote)?;
            println!("Deleted team {}/{}.", printable(&org), printable(&team));
        }
        TeamCommand::Add { org, team, users } | TeamCommand::Remove { org, team, users } if users.is_empty() => {
            anyhow::bail!("name at least one user of team {org}/{team}")
        }
        TeamCommand::Add { org, team, users } => {
            for user in users {
                let path = format!("/api/orgs/{org}/teams/{team}/members/{user}");
                api.call::<(), ()>(Method::PUT, &path, None).await.map_err(remote)?;
                println!("Added {} to {}/{}.", printable(&user), printable(&org), printable(&team));
            }
        }
        TeamCommand::Remove { org, team, users } => {
            for user in users {
                let path = format!("/api/orgs/{org}/teams/{team}/members/{user}");
                api.call::<(), ()>(Method::DELETE, &path, None).await.map_err(remote)?;
                println!("Removed {} from {}/{}.", printable(&user), printable(&org), printable(&team));
            }
        }
        TeamCommand::Set { org, team, users } => {
            let path = format!("/api/orgs/{org}/teams/{team}/members");
            api.call::<_, ()>(Method::PUT, &path, Some(&TeamMembers { members: users })).await.map_err(remote)?;
            println!("Set the members of {}/{}.", printable(&org), printable(&team));
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CollectionCommand {
    /// Lists the collections.
    Ls,
    /// Creates a collection (its parent must exist), e.g. /Shared/ops.
    Create { path: String },
    /// Deletes a collection that has no child and no grant.
    Rm { path: String },
}

pub async fn collection(command: CollectionCommand) -> anyhow::Result<()> {
    let mut api = session()?;
    match command {
        CollectionCommand::Ls => {
            let all: Vec<CollectionInfo> =
                api.call::<(), _>(Method::GET, "/api/collections", None).await.map_err(remote)?;
            for c in all {
                println!("{}{}", printable(&c.path), if c.built_in { "\t(built-in)" } else { "" });
            }
        }
        CollectionCommand::Create { path } => {
            let body = NewCollection { path: path.clone() };
            api.call::<_, ()>(Method::POST, "/api/collections", Some(&body)).await.map_err(remote)?;
            println!("Created collection {}.", printable(&path));
        }
        CollectionCommand::Rm { path } => {
            let query = format!("/api/collections?path={}", form_encode(&path));
            api.call::<(), ()>(Method::DELETE, &query, None).await.map_err(remote)?;
            println!("Deleted collection {}.", printable(&path));
        }
    }
    Ok(())
}

/// Percent-encodes a query value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Lists the roles and what they allow.
    Ls,
    /// Creates a custom role from permissions (see `wharf role ls`), e.g.
    /// `wharf role create deployer service.view service.update`.
    Create { name: String, permissions: Vec<String> },
    /// Deletes a custom role that no grant names.
    Rm { name: String },
    /// Shows or sets the role every user holds on their private collection.
    Default { role: Option<String> },
}

pub async fn role(command: RoleCommand) -> anyhow::Result<()> {
    let mut api = session()?;
    match command {
        RoleCommand::Ls => {
            let roles: Vec<RoleInfo> = api.call::<(), _>(Method::GET, "/api/roles", None).await.map_err(remote)?;
            for role in roles {
                let kind = if role.built_in { "built-in" } else { "custom" };
                println!("{}\t{kind}\t{}", printable(&role.name), printable(&role.permissions.join(",")));
            }
        }
        RoleCommand::Create { name, permissions } => {
            let body = NewRole { name: name.clone(), permissions };
            api.call::<_, ()>(Method::POST, "/api/roles", Some(&body)).await.map_err(remote)?;
            println!("Created role {}.", printable(&name));
        }
        RoleCommand::Rm { name } => {
            api.call::<(), ()>(Method::DELETE, &format!("/api/roles/{name}"), None).await.map_err(remote)?;
            println!("Deleted role {}.", printable(&name));
        }
        RoleCommand::Default { role: None } => {
            let settings: AccessSettings =
                api.call::<(), _>(Method::GET, "/api/settings/access", None).await.map_err(remote)?;
            println!("{}", printable(&settings.default_role));
        }
        RoleCommand::Default { role: Some(role) } => {
            let body = AccessSettings { default_role: role.clone() };
            api.call::<_, ()>(Method::PUT, "/api/settings/access", Some(&body)).await.map_err(remote)?;
            println!("Every user now holds {} on their private collection.", printable(&role));
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Lists your grants (with --all, everyone's: administrators).
    Ls {
        #[arg(long)]
        all: bool,
    },
    /// Grants a role on a collection (and beneath) to a subject: user:NAME, team:ORG/TEAM or
    /// org:ORG, e.g. `wharf grant add team:acme/ops fullcontrol /Shared/ops`.
    Add { subject: String, role: String, collection: String },
    /// Takes a grant back.
    Rm { subject: String, role: String, collection: String },
}

pub async fn grant(command: GrantCommand) -> anyhow::Result<()> {
    let mut api = session()?;
    match command {
        GrantCommand::Ls { all } => {
            let path = if all { "/api/grants?scope=all" } else { "/api/grants" };
            let grants: Vec<GrantInfo> = api.call::<(), _>(Method::GET, path, None).await.map_err(remote)?;
            for g in grants {
                println!("{}\t{}\t{}", printable(&g.subject), printable(&g.role), printable(&g.collection));
            }
        }
        GrantCommand::Add { subject, role, collection } => {
            let body = GrantInfo { subject, role, collection };
            api.call::<_, ()>(Method::POST, "/api/grants", Some(&body)).await.map_err(remote)?;
            println!(
                "Granted {} on {} to {}.",
                printable(&body.role),
                printable(&body.collection),
                printable(&body.subject)
            );
        }
        GrantCommand::Rm { subject, role, collection } => {
            let body = GrantInfo { subject, role, collection };
            api.call::<_, ()>(Method::DELETE, "/api/grants", Some(&body)).await.map_err(remote)?;
            println!(
                "Revoked {} on {} from {}.",
                printable(&body.role),
                printable(&body.collection),
                printable(&body.subject)
            );
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only the calls of this account.
    #[arg(long)]
    actor: Option<String>,
    /// Only through this door: registry, docker, api, auth or cluster.
    #[arg(long)]
    door: Option<String>,
    /// Only refused calls.
    #[arg(long)]
    denied: bool,
    /// Only calls of the last SECONDS.
    #[arg(long)]
    since: Option<u64>,
    /// At most this many, the newest.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// `wharf audit`: the audit log, oldest first, one call per line.
pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={}", args.limit)];
    if let Some(actor) = &args.actor {
        query.push(format!("actor={}", form_encode(actor)));
    }
    if let Some(door) = &args.door {
        query.push(format!("door={}", form_encode(door)));
    }
    if args.denied {
        query.push("outcome=denied".into());
    }
    if let Some(seconds) = args.since {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        query.push(format!("since={}", now.saturating_sub(seconds * 1000)));
    }
    let path = format!("/api/audit?{}", query.join("&"));
    let entries: Vec<wharf_api::account::AuditEntry> =
        session()?.call::<(), _>(Method::GET, &path, None).await.map_err(remote)?;
    for e in entries {
        let actor = if e.actor.is_empty() { "-" } else { e.actor.as_str() };
        println!(
            "{}\t{}\t{}\t{}\t{} {}\t{}\t{}",
            e.at_ms,
            printable(actor),
            printable(&e.source),
            printable(&e.door),
            printable(&e.method),
            printable(&e.path),
            e.status,
            printable(&e.outcome)
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Connects Wharf to a directory: CONFIG is a JSON file (servers with url, bind_dn,
    /// user_base, user_filter, username_attr, membership; jit; sync_interval_secs;
    /// team_mappings), each server's bind password read from a --bind-password-file, in order.
    Set {
        config: std::path::PathBuf,
        #[arg(long)]
        bind_password_file: Vec<std::path::PathBuf>,
    },
    /// Prints the directory configuration (never a password).
    Show,
    /// Tries a login against the directory alone (the password on standard input): the
    /// user's entry and groups, or why not.
    Test { username: String },
    /// Syncs now: creates accounts, disables those gone upstream, sets mapped teams' members.
    Sync,
}

pub async fn directory(command: DirectoryCommand) -> anyhow::Result<()> {
    use wharf_api::identity::{DirectoryConfig, DirectoryLogin, DirectoryUserInfo, SyncSummary};
    let mut api = session()?;
    match command {
        DirectoryCommand::Set { config, bind_password_file } => {
            let text =
                std::fs::read_to_string(&config).map_err(|e| anyhow::anyhow!("read {}: {e}", config.display()))?;
            let mut parsed: DirectoryConfig =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            for (server, file) in parsed.servers.iter_mut().zip(&bind_password_file) {
                server.bind_password = crate::input::read_password_file(Some(file))?.unwrap_or_default();
            }
            api.call::<_, ()>(Method::PUT, "/api/directory", Some(&parsed)).await.map_err(remote)?;
            println!("Directory set: {} server(s).", parsed.servers.len());
        }
        DirectoryCommand::Show => {
            let config: DirectoryConfig =
                api.call::<(), _>(Method::GET, "/api/directory", None).await.map_err(remote)?;
            println!("{}", printable(&serde_json::to_string_pretty(&config)?));
        }
        DirectoryCommand::Test { username } => {
            let password = crate::input::read_secret_line("password")?;
            let body = DirectoryLogin { username, password };
            let found: DirectoryUserInfo =
                api.call(Method::POST, "/api/directory/test", Some(&body)).await.map_err(remote)?;
            println!("{}\t{}", printable(&found.username), printable(&found.dn));
            for group in found.groups {
                println!("  member of {}", printable(&group));
            }
        }
        DirectoryCommand::Sync => {
            let summary: SyncSummary =
                api.call::<(), _>(Method::POST, "/api/directory/sync", None).await.map_err(remote)?;
            // Names in full up to a few; counts beyond (a first sync creates thousands).
            let names = |list: &[String]| match list.len() {
                0 => "none".to_owned(),
                1..=20 => printable(&list.join(",")),
                n => format!("{n}"),
            };
            println!(
                "Synced {} directory users in {} ms: created {}, disabled {}, teams {}{}",
                summary.found,
                summary.millis,
                names(&summary.created),
                names(&summary.disabled),
                names(&summary.teams),
                if summary.skipped.is_empty() {
                    String::new()
                } else {
                    format!(", skipped {}", names(&summary.skipped))
                }
            );
        }
    }
    Ok(())
}
