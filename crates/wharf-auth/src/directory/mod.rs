//! Directories (LDAP, and Active Directory over LDAP): the configuration in the replicated
//! state (each server's bind password sealed with the cluster's secrets key), logins of the
//! directory's users (their account made at first login when `jit` is on), a test login, and
//! the sync that creates accounts, disables those the directory no longer holds (which ends
//! their sessions, refresh tokens, registry tokens and client bundles at once) and makes
//! mapped groups' members a team's. Local accounts (the administrator) never depend on the
//! directory: they log in with their own password even when it is unreachable.

mod ldap;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use ldap::DirectoryError;
use wharf_api::identity::{DirectoryConfig, DirectoryUserInfo, SyncSummary};
use wharf_store::{AccountsCommand, IdentityCommand, Origin};

use crate::service::{Auth, AuthError, Identity};
use plan::{Account, DirectoryUser};

/// The password hash of an account made from a directory: no password of Wharf's matches it
/// (it is no PHC string), so such a user logs in through the directory alone.
pub const EXTERNAL_PASSWORD: &str = "!directory";

fn purpose(index: usize, server: &wharf_api::identity::DirectoryServer) -> String {
    format!("directory-bind:{index}:{}:{}", server.url, server.bind_dn)
}

impl From<DirectoryError> for AuthError {
    fn from(e: DirectoryError) -> AuthError {
        match e {
            DirectoryError::Unreachable { .. } => AuthError::Unavailable(e.to_string()),
            DirectoryError::Refused { .. } => AuthError::Invalid(e.to_string()),
        }
    }
}

impl Auth {
    /// The CA whose secrets key seals the bind passwords (set once by the node).
    pub fn set_ca(&self, ca: Arc<wharf_pki::Ca>) {
        let _ = self.ca.set(ca);
    }

    fn secrets(&self) -> Result<&wharf_pki::SecretsKey, AuthError> {
        self.ca.get().map(|ca| ca.secrets()).ok_or_else(|| AuthError::Internal("this node has no secrets key".into()))
    }

    /// The directory configuration with its bind passwords opened, if one is set.
    fn directory(&self) -> Result<Option<DirectoryConfig>, AuthError> {
        let Some((json, sealed)) = self.store().directory()? else { return Ok(None) };
        let mut config: DirectoryConfig = serde_json::from_str(&json)
            .map_err(|e| AuthError::Internal(format!("the directory configuration: {e}")))?;
        if config.servers.is_empty() {
            return Ok(None);
        }
        let secrets = self.secrets()?;
        for (index, server) in config.servers.iter_mut().enumerate() {
            let opened = sealed.get(index).and_then(|s| secrets.open(&purpose(index, server), s).ok());
            let Some(clear) = opened else {
                return Err(AuthError::Internal(format!("the bind password of {} cannot be opened", server.url)));
            };
            server.bind_password = String::from_utf8(clear).unwrap_or_default();
        }
        Ok(Some(config))
    }

    /// The directory configuration as an administrator sees it (no password).
    pub fn show_directory(&self) -> Result<Option<DirectoryConfig>, AuthError> {
        let Some((json, _)) = self.store().directory()? else { return Ok(None) };
        let config: DirectoryConfig = serde_json::from_str(&json)
            .map_err(|e| AuthError::Internal(format!("the directory configuration: {e}")))?;
        Ok(Some(config))
    }

    /// Sets the directory configuration. A server sent without a bind password keeps the one
    /// the server at its place had with the same bind DN (a new URL, say StartTLS instead of
    /// LDAPS, keeps it); no servers turns the directory off.
    pub async fn set_directory(&self, mut config: DirectoryConfig, by: &Origin) -> Result<(), AuthError> {
        let old = self.directory().ok().flatten();
        for (index, server) in config.servers.iter_mut().enumerate() {
            if !(server.url.starts_with("ldap://") || server.url.starts_with("ldaps://")) {
                return Err(AuthError::Invalid(format!("{}: the URL must start with ldap:// or ldaps://", server.url)));
            }
            if !["memberOf", "member", "nested"].contains(&server.membership.as_str()) {
                return Err(AuthError::Invalid(format!(
                    "membership {:?}: memberOf, member or nested",
                    server.membership
                )));
            }
            if !["sub", "one"].contains(&server.scope.as_str()) {
                return Err(AuthError::Invalid(format!("scope {:?}: sub or one", server.scope)));
            }
            if server.bind_password.is_empty() {
                let kept = old.as_ref().and_then(|o| o.servers.get(index)).filter(|s| s.bind_dn == server.bind_dn);
                match kept {
                    Some(kept) => server.bind_password.clone_from(&kept.bind_password),
                    None => return Err(AuthError::Invalid(format!("{}: a bind password is needed", server.url))),
                }
            }
        }
        for mapping in &config.team_mappings {
            if !wharf_api::identity::valid_identity_name(&mapping.org)
                || !wharf_api::identity::valid_identity_name(&mapping.team)
            {
                return Err(AuthError::Invalid(format!(
                    "team mapping to {}/{}: invalid names",
                    mapping.org, mapping.team
                )));
            }
        }
        let secrets = self.secrets()?;
        let mut sealed = Vec::new();
        for (index, server) in config.servers.iter_mut().enumerate() {
            let password = std::mem::take(&mut server.bind_password);
            let seal = secrets.seal(&purpose(index, server), password.as_bytes());
            sealed.push(seal.map_err(|e| AuthError::Internal(format!("sealing a bind password: {e}")))?);
        }
        let json = serde_json::to_string(&config).map_err(|e| AuthError::Internal(e.to_string()))?;
        self.propose(by, IdentityCommand::SetDirectory { config: json, sealed_passwords: sealed }).await?;
        Ok(())
    }

    /// Finds `username` in the directory and checks `password` with a bind as them: the
    /// first server that holds the user decides.
    async fn directory_login(
        &self,
        config: &DirectoryConfig,
        username: &str,
        password: &str,
    ) -> Result<Option<DirectoryUser>, AuthError> {
        let mut unreachable = None;
        for server in &config.servers {
            match ldap::find_user(server, &server.bind_password, username).await {
                Ok(Some(user)) => {
                    return Ok(ldap::bind_as(server, &user.dn, password).await?.then_some(user));
                }
                Ok(None) => continue,
                Err(e @ DirectoryError::Unreachable { .. }) => unreachable = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        match unreachable {
            Some(e) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// `POST /api/directory/test`: what the directory says of a login, changing nothing.
    pub async fn test_directory(&self, username: &str, password: &str) -> Result<DirectoryUserInfo, AuthError> {
        let config = self.directory()?.ok_or_else(|| AuthError::Invalid("no directory is configured".into()))?;
        match self.directory_login(&config, username, password).await? {
            Some(user) => Ok(DirectoryUserInfo {
                username: username.to_owned(),
                dn: user.dn,
                groups: user.groups.into_iter().collect(),
            }),
            None => Err(AuthError::BadCredentials),
        }
    }

    /// A login of a directory user: checked by the directory, their account made now if it
    /// does not exist and `jit` is on. Local accounts never come here.
    pub async fn authenticate_directory(
        &self,
        username: &str,
        password: &str,
        source: &str,
        now_ms: u64,
    ) -> Result<Identity, AuthError> {
        let Some(config) = self.directory()? else { return Err(AuthError::BadCredentials) };
        if !self.limiter_allows(username, source, now_ms) {
            return Err(AuthError::RateLimited);
        }
        let record = self.user_record(username)?;
        let may_log_in = match &record {
            Some(user) => user.password_hash == EXTERNAL_PASSWORD,
            None => config.jit && crate::password::valid_user_name(username),
        };
        if !may_log_in || self.directory_login(&config, username, password).await?.is_none() {
            self.limiter_failed(username, source, now_ms);
            return Err(AuthError::BadCredentials);
        }
        if record.is_none() {
            let create = AccountsCommand::CreateUser {
                name: username.to_owned(),
                password_hash: EXTERNAL_PASSWORD.into(),
                admin: false,
                at: now_ms / 1000,
            };
            match self.propose(&Origin::user(username, Some(source)), create).await {
                Ok(_) | Err(wharf_store::ProposeError::Refused(wharf_store::Refusal::UserExists(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.identity(username)?.ok_or(AuthError::BadCredentials)
    }

    /// Reads the whole directory and changes the state to match it (see [`plan::plan`]).
    pub async fn sync_directory(&self, by: &Origin) -> Result<SyncSummary, AuthError> {
        let started = std::time::Instant::now();
        let config = self.directory()?.ok_or_else(|| AuthError::Invalid("no directory is configured".into()))?;
        let groups: BTreeSet<String> = config.team_mappings.iter().map(|m| m.group_dn.clone()).collect();
        let mut users: BTreeMap<String, DirectoryUser> = BTreeMap::new();
        for server in &config.servers {
            for (name, user) in ldap::all_users(server, &server.bind_password, &groups).await? {
                users.entry(name).or_insert(user);
            }
        }
        let accounts: BTreeMap<String, Account> = self
            .store()
            .users()?
            .into_iter()
            .map(|(name, u)| (name, Account { external: u.password_hash == EXTERNAL_PASSWORD, disabled: u.disabled }))
            .collect();
        let state = self.store().identity_state()?;
        let teams: BTreeMap<String, BTreeSet<String>> =
            state.teams.iter().map(|(k, t)| (k.clone(), t.members.clone())).collect();
        let plan = plan::plan(&users, &accounts, &teams, &config.team_mappings, !config.jit);
        let at = crate::service::now();
        for name in &plan.create {
            let create = AccountsCommand::CreateUser {
                name: name.clone(),
                password_hash: EXTERNAL_PASSWORD.into(),
                admin: false,
                at,
            };
            self.propose(by, create).await?;
        }
        for name in &plan.disable {
            self.propose(by, AccountsCommand::SetUserDisabled { name: name.clone(), disabled: true }).await?;
        }
        let mut changed = Vec::new();
        let mut orgs: BTreeSet<&str> = state.orgs.iter().map(|(o, _)| o.as_str()).collect();
        for ((org, team), members) in &plan.teams {
            if orgs.insert(org) {
                self.create_if_missing(by, IdentityCommand::CreateOrg { name: org.clone(), at }).await?;
            }
            if !teams.contains_key(&format!("{org}/{team}")) {
                let create = IdentityCommand::CreateTeam { org: org.clone(), team: team.clone(), at };
                self.create_if_missing(by, create).await?;
            }
            let set =
                IdentityCommand::SetTeamMembers { org: org.clone(), team: team.clone(), members: members.clone() };
            self.propose(by, set).await?;
            changed.push(format!("{org}/{team}"));
        }
        Ok(SyncSummary {
            found: users.len(),
            created: plan.create,
            disabled: plan.disable,
            teams: changed,
            skipped: plan.skipped,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// Proposes the creation of an organization or team; one made meanwhile is as good.
    async fn create_if_missing(&self, by: &Origin, create: IdentityCommand) -> Result<(), AuthError> {
        match self.propose(by, create).await {
            Ok(_) | Err(wharf_store::ProposeError::Refused(wharf_store::Refusal::NameTaken { .. })) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The sync interval of the configured directory (`None`: no directory, or no schedule).
    pub fn directory_sync_interval(&self) -> Option<std::time::Duration> {
        let config = self.show_directory().ok().flatten()?;
        (!config.servers.is_empty() && config.sync_interval_secs > 0)
            .then(|| std::time::Duration::from_secs(config.sync_interval_secs))
    }
}
