//! Organizations, teams, collections, roles and grants: the grammar of collection paths and
//! the wire contracts of `/api/orgs`, `/api/collections`, `/api/roles` and `/api/grants`,
//! shared by the server and the CLI.

use serde::{Deserialize, Serialize};

/// The root of the collection tree.
pub const ROOT: &str = "/";
/// Where the managers are (and the platform's own objects).
pub const SYSTEM: &str = "/System";
/// Where the workers are, and every user's private collection beneath.
pub const SHARED: &str = "/Shared";
/// The parent of the users' private collections.
pub const PRIVATE: &str = "/Shared/Private";
/// The collections every cluster has.
pub const BUILT_IN_COLLECTIONS: [&str; 4] = [ROOT, SYSTEM, SHARED, PRIVATE];

/// The label that puts an object (a service, secret, config, network or node) in a collection.
pub const COLLECTION_LABEL: &str = "wharf.collection";

/// A user's own collection.
pub fn private_collection(user: &str) -> String {
    format!("{PRIVATE}/{user}")
}

/// The user whose private collection `path` is (`/Shared/Private/<user>` itself, not beneath).
pub fn private_owner(path: &str) -> Option<&str> {
    let user = path.strip_prefix(PRIVATE)?.strip_prefix('/')?;
    (!user.is_empty() && !user.contains('/')).then_some(user)
}

/// The built-in roles, by the names grants use.
pub const ROLE_NONE: &str = "none";
pub const ROLE_VIEW_ONLY: &str = "viewonly";
pub const ROLE_RESTRICTED_CONTROL: &str = "restrictedcontrol";
pub const ROLE_SCHEDULER: &str = "scheduler";
pub const ROLE_FULL_CONTROL: &str = "fullcontrol";
pub const BUILT_IN_ROLES: [&str; 5] =
    [ROLE_NONE, ROLE_VIEW_ONLY, ROLE_RESTRICTED_CONTROL, ROLE_SCHEDULER, ROLE_FULL_CONTROL];

/// Whether `path` is a well-formed collection path: `/`, or `/`-separated segments of
/// letters, digits, `.`, `_` and `-` (not `.` or `..`), at most 64 each, at most 8 deep.
pub fn valid_collection(path: &str) -> bool {
    if path == ROOT {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else { return false };
    let segments: Vec<&str> = rest.split('/').collect();
    segments.len() <= 8
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
                && *s != "."
                && *s != ".."
        })
}

/// Whether `path` is `ancestor` or beneath it.
pub fn within(path: &str, ancestor: &str) -> bool {
    ancestor == ROOT || path == ancestor || path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
}

/// The parent of a collection (`None` for the root).
pub fn parent(path: &str) -> Option<&str> {
    if path == ROOT {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some(ROOT),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// `path` and each of its ancestors, the path first and the root last.
pub fn lineage(path: &str) -> Vec<&str> {
    let mut out = vec![path];
    let mut at = path;
    while let Some(up) = parent(at) {
        out.push(up);
        at = up;
    }
    out
}

/// Whether `name` may name an organization, a team or a custom role: letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit, at most 64.
pub fn valid_identity_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// An organization (`GET /api/orgs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgInfo {
    pub name: String,
    pub created: u64,
    pub teams: Vec<String>,
}

/// A team of an organization (`GET /api/orgs/{org}/teams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamInfo {
    pub org: String,
    pub name: String,
    pub members: Vec<String>,
    pub created: u64,
}

/// `POST /api/orgs` and `POST /api/orgs/{org}/teams`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewName {
    pub name: String,
}

/// `PUT /api/orgs/{org}/teams/{team}/members`: the whole member list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamMembers {
    pub members: Vec<String>,
}

/// A collection (`GET /api/collections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    pub path: String,
    pub built_in: bool,
    pub created: u64,
}

/// `POST /api/collections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCollection {
    pub path: String,
}

/// A role (`GET /api/roles`): its name and the operations it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub name: String,
    pub built_in: bool,
    pub permissions: Vec<String>,
}

/// `POST /api/roles`: a custom role (immutable once made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRole {
    pub name: String,
    pub permissions: Vec<String>,
}

/// A grant (`GET`, `POST` and `DELETE /api/grants`): `subject` (`user:NAME`, `team:ORG/TEAM`
/// or `org:ORG`) may do what `role` allows on `collection` and beneath.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GrantInfo {
    pub subject: String,
    pub role: String,
    pub collection: String,
}

/// A subject's level on a repository, or on every repository of a namespace (`NS/*`)
/// (`GET` and `PUT /api/repository-access`); `level` is `read`, `read-write`, `admin`, or
/// `none` to take it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoAccessInfo {
    pub repo: String,
    pub subject: String,
    pub level: String,
}

/// `GET` and `PUT /api/settings/access`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSettings {
    /// The role every user holds on their private collection.
    pub default_role: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths_nest() {
        for good in ["/", "/System", "/Shared/Private/alice", "/a.b/c_d/e-f"] {
            assert!(valid_collection(good), "{good}");
        }
        for bad in ["", "Shared", "/Shared/", "//", "/a//b", "/a/../b", "/a b", "/a/./b", "/1/2/3/4/5/6/7/8/9"] {
            assert!(!valid_collection(bad), "{bad}");
        }
        assert!(within("/Shared/Private/alice", "/Shared"));
        assert!(within("/Shared", "/Shared"));
        assert!(within("/System", "/"));
        assert!(!within("/SharedX", "/Shared"), "a prefix of a name is not a parent");
        assert!(!within("/Shared", "/Shared/Private"));
        assert_eq!(lineage("/Shared/Private/a"), vec!["/Shared/Private/a", "/Shared/Private", "/Shared", "/"]);
        assert_eq!(lineage("/"), vec!["/"]);
        assert_eq!(parent("/System"), Some("/"));
        assert_eq!(private_owner("/Shared/Private/ann"), Some("ann"));
        for none in ["/Shared/Private", "/Shared/Private/", "/Shared/Private/ann/x", "/Shared/PrivateX/ann"] {
            assert_eq!(private_owner(none), None, "{none}");
        }
    }

    #[test]
    fn identity_names_are_plain() {
        assert!(valid_identity_name("acme-ops.2"));
        for bad in ["", "-x", "a/b", "a b", "team:x", &"x".repeat(65)] {
            assert!(!valid_identity_name(bad), "{bad}");
        }
    }
}

/// How Wharf reaches a directory (LDAP, or Active Directory over LDAP): `GET` and `PUT
/// /api/directory`. The bind passwords are write-only: sent with `PUT`, sealed in the state,
/// never answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryConfig {
    /// Tried in order: a user is who the first server that finds them says.
    pub servers: Vec<DirectoryServer>,
    /// Create an account at a user's first login (else only a sync creates them).
    #[serde(default)]
    pub jit: bool,
    /// Seconds between syncs (0: only on demand).
    #[serde(default = "default_sync_interval")]
    pub sync_interval_secs: u64,
    /// Groups whose members a sync makes a team's members.
    #[serde(default)]
    pub team_mappings: Vec<TeamMapping>,
}

fn default_sync_interval() -> u64 {
    3600
}

/// One directory server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryServer {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// The PEM of the CA that signed the server's certificate (else the system's CAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The account Wharf searches with.
    pub bind_dn: String,
    /// Write-only (`PUT`); empty in answers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind_password: String,
    /// Where users are, and which entries are users.
    pub user_base: String,
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// The attribute that holds the user name (`uid`; `sAMAccountName` in AD).
    #[serde(default = "default_username_attr")]
    pub username_attr: String,
    /// `sub` (the whole subtree) or `one` (one level).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// How group membership is read: `memberOf` (the user's attribute, as slapd's memberof
    /// overlay and AD keep it), `member` (the groups' attribute), or `nested` (AD's
    /// in-chain rule: groups within groups).
    #[serde(default = "default_membership")]
    pub membership: String,
    /// Where groups are (for `member` and `nested`; the user base when empty).
    #[serde(default)]
    pub group_base: String,
}

impl std::fmt::Debug for DirectoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryServer")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("user_base", &self.user_base)
            .finish_non_exhaustive()
    }
}

fn default_user_filter() -> String {
    "(objectClass=*)".into()
}

fn default_username_attr() -> String {
    "uid".into()
}

fn default_scope() -> String {
    "sub".into()
}

fn default_membership() -> String {
    "memberOf".into()
}

/// A directory group whose members are a team's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMapping {
    pub group_dn: String,
    pub org: String,
    pub team: String,
}

/// `POST /api/directory/test`: a login tried against the directory alone.
#[derive(Clone, Serialize, Deserialize)]
pub struct DirectoryLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for DirectoryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryLogin").field("username", &self.username).finish_non_exhaustive()
    }
}

/// What the directory says of a user: their entry and groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUserInfo {
    pub username: String,
    pub dn: String,
    pub groups: Vec<String>,
}

/// What a sync did (`POST /api/directory/sync`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// Users the directory holds.
    pub found: usize,
    pub created: Vec<String>,
    /// Accounts of the directory it no longer holds: disabled (their sessions, tokens and
    /// bundles ended).
    pub disabled: Vec<String>,
    /// Teams whose members changed ("org/team").
    pub teams: Vec<String>,
    /// User names the directory holds that cannot be Wharf accounts.
    pub skipped: Vec<String>,
    pub millis: u64,
}
