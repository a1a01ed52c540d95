//! Organizations, teams, collections, custom roles and grants: their commands and reads. What
//! a grant allows is decided elsewhere (`wharf_auth::rbac`, pure); the state keeps the facts
//! and refuses, inside apply, what would leave them inconsistent: a team of an organization
//! that does not exist, a member who is no account, a grant to a subject, role or collection
//! that does not exist, a collection without its parent, the removal of a role or collection
//! that grants still name.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use wharf_api::identity::{self as paths, BUILT_IN_COLLECTIONS, BUILT_IN_ROLES};

use crate::command::Outcome;
use crate::refusal::Refusal;
use crate::store::{Store, StoreError, encode};
use crate::tables::{COLLECTIONS, GRANTS, IDENTITY_SETTINGS, ORGS, REPO_ACCESS, ROLES, TEAMS, USERS};

/// A change of organizations, teams, collections, roles or grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdentityCommand {
    CreateOrg {
        name: String,
        at: u64,
    },
    /// Deletes an organization with its teams and every grant to it or its teams.
    DeleteOrg {
        name: String,
    },
    CreateTeam {
        org: String,
        team: String,
        at: u64,
    },
    /// Deletes a team and every grant to it.
    DeleteTeam {
        org: String,
        team: String,
    },
    /// Replaces a team's members (every one an account).
    SetTeamMembers {
        org: String,
        team: String,
        members: BTreeSet<String>,
    },
    AddTeamMember {
        org: String,
        team: String,
        user: String,
    },
    RemoveTeamMember {
        org: String,
        team: String,
        user: String,
    },
    /// Creates a collection under an existing parent.
    CreateCollection {
        path: String,
        at: u64,
    },
    /// Deletes a collection that has no child and no grant.
    DeleteCollection {
        path: String,
    },
    /// Creates a custom role: a named set of permissions, immutable once made.
    CreateRole {
        name: String,
        permissions: Vec<String>,
        at: u64,
    },
    /// Deletes a custom role that no grant names.
    DeleteRole {
        name: String,
    },
    /// Grants `role` on `collection` to `subject` (`user:NAME`, `team:ORG/TEAM`, `org:ORG`).
    Grant {
        subject: String,
        role: String,
        collection: String,
        at: u64,
    },
    Revoke {
        subject: String,
        role: String,
        collection: String,
    },
    /// The role every user holds on their private collection.
    SetDefaultRole {
        role: String,
    },
    /// Gives `subject` a level (`read`, `read-write`, `admin`) on a repository, or on every
    /// repository of a namespace (`NAMESPACE/*`); `none` takes it back.
    SetRepoAccess {
        repo: String,
        subject: String,
        level: String,
        at: u64,
    },
    /// The directory configuration (JSON, without passwords) and each server's bind password
    /// sealed by the manager that took it.
    SetDirectory {
        config: String,
        sealed_passwords: Vec<Vec<u8>>,
    },
}

impl std::fmt::Display for IdentityCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityCommand::CreateOrg { name, .. } => write!(f, "create-org {name}"),
            IdentityCommand::DeleteOrg { name } => write!(f, "delete-org {name}"),
            IdentityCommand::CreateTeam { org, team, .. } => write!(f, "create-team {org}/{team}"),
            IdentityCommand::DeleteTeam { org, team } => write!(f, "delete-team {org}/{team}"),
            IdentityCommand::SetTeamMembers { org, team, members } => {
                write!(f, "set-team-members {org}/{team} ({} members)", members.len())
            }
            IdentityCommand::AddTeamMember { org, team, user } => write!(f, "add-team-member {org}/{team} {user}"),
            IdentityCommand::RemoveTeamMember { org, team, user } => {
                write!(f, "remove-team-member {org}/{team} {user}")
            }
            IdentityCommand::CreateCollection { path, .. } => write!(f, "create-collection {path}"),
            IdentityCommand::DeleteCollection { path } => write!(f, "delete-collection {path}"),
            IdentityCommand::CreateRole { name, .. } => write!(f, "create-role {name}"),
            IdentityCommand::DeleteRole { name } => write!(f, "delete-role {name}"),
            IdentityCommand::Grant { subject, role, collection, .. } => {
                write!(f, "grant {role} on {collection} to {subject}")
            }
            IdentityCommand::Revoke { subject, role, collection } => {
                write!(f, "revoke {role} on {collection} from {subject}")
            }
            IdentityCommand::SetDefaultRole { role } => write!(f, "set-default-role {role}"),
            IdentityCommand::SetDirectory { sealed_passwords, .. } => {
                write!(f, "set-directory ({} servers)", sealed_passwords.len())
            }
            IdentityCommand::SetRepoAccess { repo, subject, level, .. } => {
                write!(f, "set-repo-access {repo} {subject} {level}")
            }
        }
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub created: u64,
}

/// A team of an organization, with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub members: BTreeSet<String>,
    pub created: u64,
}

/// A collection made by an administrator (the built-in ones and the users' private ones are
/// not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionRecord {
    pub created: u64,
}

/// A custom role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub permissions: Vec<String>,
    pub created: u64,
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub subject: String,
    pub role: String,
    pub collection: String,
    pub created: u64,
}

/// A subject's level on a repository or a namespace's repositories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoAccessRecord {
    /// A repository name, or `NAMESPACE/*`.
    pub repo: String,
    pub subject: String,
    pub level: String,
    pub created: u64,
}

const REPO_LEVELS: [&str; 3] = ["read", "read-write", "admin"];

#[derive(Serialize, Deserialize)]
enum Stored<T> {
    V1(T),
}

fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, StoreError> {
    let Stored::V1(value) = postcard::from_bytes(raw)?;
    Ok(value)
}

fn put<T: Serialize>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    key: &str,
    value: T,
) -> Result<(), StoreError> {
    txn.open_table(table)?.insert(key, encode(&Stored::V1(value))?.as_slice())?;
    Ok(())
}

fn get<T: for<'de> Deserialize<'de>>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let raw = txn.open_table(table)?.get(key)?.map(|v| v.value().to_vec());
    raw.map(|raw| decode(&raw)).transpose()
}

fn team_key(org: &str, team: &str) -> String {
    format!("{org}/{team}")
}

/// A grant's key: its three parts, which hold no space.
fn grant_key(subject: &str, role: &str, collection: &str) -> String {
    format!("{subject} {collection} {role}")
}

fn unknown(kind: &str, id: &str) -> StoreError {
    Refusal::ObjectUnknown { kind: kind.into(), id: id.into() }.into()
}

fn invalid(what: String) -> StoreError {
    Refusal::Invalid(what).into()
}

pub(crate) fn apply(txn: &WriteTransaction, command: &IdentityCommand) -> Result<Outcome, StoreError> {
    match command {
        IdentityCommand::CreateOrg { name, at } => {
            if !paths::valid_identity_name(name) {
                return Err(invalid(format!("organization name {name:?}")));
            }
            if get::<OrgRecord>(txn, ORGS, name)?.is_some() {
                return Err(Refusal::NameTaken { kind: "organization".into(), name: name.clone() }.into());
            }
            put(txn, ORGS, name, OrgRecord { created: *at })?;
        }
        IdentityCommand::DeleteOrg { name } => {
            if txn.open_table(ORGS)?.remove(name.as_str())?.is_none() {
                return Err(unknown("organization", name));
            }
            let teams: Vec<String> =
                keys(txn, TEAMS)?.into_iter().filter(|k| k.starts_with(&format!("{name}/"))).collect();
            for team in &teams {
                txn.open_table(TEAMS)?.remove(team.as_str())?;
            }
            let subjects: BTreeSet<String> =
                teams.iter().map(|t| format!("team:{t}")).chain(std::iter::once(format!("org:{name}"))).collect();
            remove_grants_of(txn, |subject| subjects.contains(subject))?;
        }
        IdentityCommand::CreateTeam { org, team, at } => {
            if !paths::valid_identity_name(team) {
                return Err(invalid(format!("team name {team:?}")));
            }
            get::<OrgRecord>(txn, ORGS, org)?.ok_or_else(|| unknown("organization", org))?;
            let key = team_key(org, team);
            if get::<TeamRecord>(txn, TEAMS, &key)?.is_some() {
                return Err(Refusal::NameTaken { kind: "team".into(), name: key }.into());
            }
            put(txn, TEAMS, &key, TeamRecord { members: BTreeSet::new(), created: *at })?;
        }
        IdentityCommand::DeleteTeam { org, team } => {
            let key = team_key(org, team);
            if txn.open_table(TEAMS)?.remove(key.as_str())?.is_none() {
                return Err(unknown("team", &key));
            }
            let subject = format!("team:{key}");
            remove_grants_of(txn, |s| s == subject)?;
        }
        IdentityCommand::SetTeamMembers { org, team, members } => {
            let key = team_key(org, team);
            let mut record: TeamRecord = get(txn, TEAMS, &key)?.ok_or_else(|| unknown("team", &key))?;
            for user in members {
                user_exists(txn, user)?;
            }
            record.members = members.clone();
            put(txn, TEAMS, &key, record)?;
        }
        IdentityCommand::AddTeamMember { org, team, user } | IdentityCommand::RemoveTeamMember { org, team, user } => {
            let key = team_key(org, team);
            let mut record: TeamRecord = get(txn, TEAMS, &key)?.ok_or_else(|| unknown("team", &key))?;
            if matches!(command, IdentityCommand::AddTeamMember { .. }) {
                user_exists(txn, user)?;
                record.members.insert(user.clone());
            } else if !record.members.remove(user) {
                return Err(unknown("team member", user));
            }
            put(txn, TEAMS, &key, record)?;
        }
        IdentityCommand::CreateCollection { path, at } => {
            if !paths::valid_collection(path) {
                return Err(invalid(format!("collection path {path:?}")));
            }
            if collection_exists(txn, path)? {
                return Err(Refusal::NameTaken { kind: "collection".into(), name: path.clone() }.into());
            }
            let parent = paths::parent(path).unwrap_or(paths::ROOT);
            if !collection_exists(txn, parent)? {
                return Err(unknown("collection", parent));
            }
            put(txn, COLLECTIONS, path, CollectionRecord { created: *at })?;
        }
        IdentityCommand::DeleteCollection { path } => {
            if get::<CollectionRecord>(txn, COLLECTIONS, path)?.is_none() {
                return Err(unknown("collection", path));
            }
            if keys(txn, COLLECTIONS)?.iter().any(|c| c != path && paths::within(c, path)) {
                return Err(held("collection", path, "the parent of other collections"));
            }
            if !grants_where(txn, &|g: &GrantRecord| g.collection == *path)?.is_empty() {
                return Err(held("collection", path, "named by grants"));
            }
            txn.open_table(COLLECTIONS)?.remove(path.as_str())?;
        }
        IdentityCommand::CreateRole { name, permissions, at } => {
            if !paths::valid_identity_name(name) || BUILT_IN_ROLES.contains(&name.as_str()) {
                return Err(invalid(format!("role name {name:?}")));
            }
            if get::<RoleRecord>(txn, ROLES, name)?.is_some() {
                return Err(Refusal::NameTaken { kind: "role".into(), name: name.clone() }.into());
            }
            put(txn, ROLES, name, RoleRecord { permissions: permissions.clone(), created: *at })?;
        }
        IdentityCommand::DeleteRole { name } => {
            if get::<RoleRecord>(txn, ROLES, name)?.is_none() {
                return Err(unknown("role", name));
            }
            if !grants_where(txn, &|g: &GrantRecord| g.role == *name)?.is_empty() || default_role_in(txn)? == *name {
                return Err(held("role", name, "named by grants or the default role"));
            }
            txn.open_table(ROLES)?.remove(name.as_str())?;
        }
        IdentityCommand::Grant { subject, role, collection, at } => {
            subject_exists(txn, subject)?;
            role_exists(txn, role)?;
            if !collection_exists(txn, collection)? {
                return Err(unknown("collection", collection));
            }
            let key = grant_key(subject, role, collection);
            let record = GrantRecord {
                subject: subject.clone(),
                role: role.clone(),
                collection: collection.clone(),
                created: *at,
            };
            put(txn, GRANTS, &key, record)?;
        }
        IdentityCommand::Revoke { subject, role, collection } => {
            let key = grant_key(subject, role, collection);
            if txn.open_table(GRANTS)?.remove(key.as_str())?.is_none() {
                return Err(unknown("grant", &format!("{role} on {collection} to {subject}")));
            }
        }
        IdentityCommand::SetDefaultRole { role } => {
            role_exists(txn, role)?;
            txn.open_table(IDENTITY_SETTINGS)?.insert("default_role", role.as_bytes())?;
        }
        IdentityCommand::SetDirectory { config, sealed_passwords } => {
            let value = encode(&(config, sealed_passwords))?;
            txn.open_table(IDENTITY_SETTINGS)?.insert("directory", value.as_slice())?;
        }
        IdentityCommand::SetRepoAccess { repo, subject, level, at } => {
            let name = repo.strip_suffix("/*").unwrap_or(repo);
            if !wharf_api::validate_name(name) {
                return Err(invalid(format!("repository {repo:?}: a name, or NAMESPACE/*")));
            }
            let key = format!("{subject} {repo}");
            if level == "none" {
                if txn.open_table(REPO_ACCESS)?.remove(key.as_str())?.is_none() {
                    return Err(unknown("repository access", &format!("{subject} on {repo}")));
                }
                return Ok(Outcome::Done);
            }
            if !REPO_LEVELS.contains(&level.as_str()) {
                return Err(invalid(format!("repository access level {level:?}: read, read-write or admin")));
            }
            subject_exists(txn, subject)?;
            let record =
                RepoAccessRecord { repo: repo.clone(), subject: subject.clone(), level: level.clone(), created: *at };
            put(txn, REPO_ACCESS, &key, record)?;
        }
    }
    Ok(Outcome::Done)
}

fn held(kind: &str, name: &str, why: &str) -> StoreError {
    Refusal::Held { kind: kind.into(), name: name.into(), why: why.into() }.into()
}

fn keys(txn: &WriteTransaction, table: redb::TableDefinition<&str, &[u8]>) -> Result<Vec<String>, StoreError> {
    let table = txn.open_table(table)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        out.push(entry?.0.value().to_owned());
    }
    Ok(out)
}

fn grants_where(txn: &WriteTransaction, pick: &impl Fn(&GrantRecord) -> bool) -> Result<Vec<String>, StoreError> {
    let table = txn.open_table(GRANTS)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, raw) = entry?;
        if pick(&decode(raw.value())?) {
            out.push(key.value().to_owned());
        }
    }
    Ok(out)
}

/// Removes every grant and repository access of the subjects `gone` picks.
fn remove_grants_of(txn: &WriteTransaction, gone: impl Fn(&str) -> bool) -> Result<(), StoreError> {
    for key in grants_where(txn, &|g: &GrantRecord| gone(&g.subject))? {
        txn.open_table(GRANTS)?.remove(key.as_str())?;
    }
    let mut gone_access = Vec::new();
    for entry in txn.open_table(REPO_ACCESS)?.iter()? {
        let (key, raw) = entry?;
        let record: RepoAccessRecord = decode(raw.value())?;
        if gone(&record.subject) {
            gone_access.push(key.value().to_owned());
        }
    }
    let gone = gone_access;
    for key in gone {
        txn.open_table(REPO_ACCESS)?.remove(key.as_str())?;
    }
    Ok(())
}

/// What deleting account `user` takes with it: their grants and team memberships, so that a
/// later account of the same name starts with nothing.
pub(crate) fn forget_user(txn: &WriteTransaction, user: &str) -> Result<(), StoreError> {
    let subject = format!("user:{user}");
    remove_grants_of(txn, |s| s == subject)?;
    for key in keys(txn, TEAMS)? {
        let Some(mut team) = get::<TeamRecord>(txn, TEAMS, &key)? else { continue };
        if team.members.remove(user) {
            put(txn, TEAMS, &key, team)?;
        }
    }
    Ok(())
}

fn user_exists(txn: &WriteTransaction, user: &str) -> Result<(), StoreError> {
    if txn.open_table(USERS)?.get(user)?.is_none() {
        return Err(Refusal::UserUnknown(user.to_owned()).into());
    }
    Ok(())
}

fn subject_exists(txn: &WriteTransaction, subject: &str) -> Result<(), StoreError> {
    let Some((kind, name)) = subject.split_once(':') else { return Err(invalid(format!("subject {subject:?}"))) };
    match kind {
        "user" => user_exists(txn, name),
        "org" => get::<OrgRecord>(txn, ORGS, name)?.map(|_| ()).ok_or_else(|| unknown("organization", name)),
        "team" => get::<TeamRecord>(txn, TEAMS, name)?.map(|_| ()).ok_or_else(|| unknown("team", name)),
        _ => Err(invalid(format!("subject {subject:?}: user:NAME, team:ORG/TEAM or org:ORG"))),
    }
}

fn role_exists(txn: &WriteTransaction, role: &str) -> Result<(), StoreError> {
    if BUILT_IN_ROLES.contains(&role) || get::<RoleRecord>(txn, ROLES, role)?.is_some() {
        return Ok(());
    }
    Err(unknown("role", role))
}

/// Whether a collection exists: a built-in one, a user's private one, or one made.
fn collection_exists(txn: &WriteTransaction, path: &str) -> Result<bool, StoreError> {
    if BUILT_IN_COLLECTIONS.contains(&path) || get::<CollectionRecord>(txn, COLLECTIONS, path)?.is_some() {
        return Ok(true);
    }
    // `/Shared/Private/<user>` exists with its user.
    Ok(match paths::private_owner(path) {
        Some(user) => txn.open_table(USERS)?.get(user)?.is_some(),
        None => false,
    })
}

fn default_role_in(txn: &WriteTransaction) -> Result<String, StoreError> {
    let table = txn.open_table(IDENTITY_SETTINGS)?;
    let raw = table.get("default_role")?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
    Ok(raw.unwrap_or_default())
}

/// The directory configuration (JSON) and each server's sealed bind password.
pub type StoredDirectory = (String, Vec<Vec<u8>>);

/// Everything the access model is built from, read at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityState {
    pub orgs: Vec<(String, OrgRecord)>,
    /// ("org/team", record).
    pub teams: Vec<(String, TeamRecord)>,
    pub collections: Vec<(String, CollectionRecord)>,
    pub roles: Vec<(String, RoleRecord)>,
    pub grants: Vec<GrantRecord>,
    pub repo_access: Vec<RepoAccessRecord>,
    /// Empty when never set.
    pub default_role: String,
}

impl Store {
    /// The directory configuration (JSON) and the sealed bind passwords, if one was set.
    pub fn directory(&self) -> Result<Option<StoredDirectory>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IDENTITY_SETTINGS)?;
        let raw = table.get("directory")?.map(|v| v.value().to_vec());
        Ok(raw.map(|raw| postcard::from_bytes(&raw)).transpose()?)
    }

    /// Organizations, teams, collections, roles, grants and the default role, as of one
    /// snapshot.
    pub fn identity_state(&self) -> Result<IdentityState, StoreError> {
        let txn = self.db.begin_read()?;
        fn all<T: for<'de> Deserialize<'de>>(
            txn: &redb::ReadTransaction,
            def: redb::TableDefinition<&str, &[u8]>,
        ) -> Result<Vec<(String, T)>, StoreError> {
            let table = txn.open_table(def)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (key, raw) = entry?;
                out.push((key.value().to_owned(), decode(raw.value())?));
            }
            Ok(out)
        }
        let settings = txn.open_table(IDENTITY_SETTINGS)?;
        let default_role = settings.get("default_role")?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
        Ok(IdentityState {
            orgs: all(&txn, ORGS)?,
            teams: all(&txn, TEAMS)?,
            collections: all(&txn, COLLECTIONS)?,
            roles: all(&txn, ROLES)?,
            grants: all::<GrantRecord>(&txn, GRANTS)?.into_iter().map(|(_, g)| g).collect(),
            repo_access: all::<RepoAccessRecord>(&txn, REPO_ACCESS)?.into_iter().map(|(_, r)| r).collect(),
            default_role: default_role.unwrap_or_default(),
        })
    }
}
