//! [`Auth`]'s calls for organizations, teams, collections, roles and grants: reads as the API
//! shows them, and changes proposed as [`IdentityCommand`]s (the state refuses, inside apply,
//! what would name something that does not exist). Who may call them is decided by
//! [`crate::authorize`] at the edge; what a grant allows, by [`crate::rbac`].

use std::collections::BTreeSet;

use wharf_api::identity::{
    self as paths, AccessSettings, BUILT_IN_COLLECTIONS, CollectionInfo, GrantInfo, NewRole, OrgInfo, RepoAccessInfo,
    RoleInfo, TeamInfo,
};
use wharf_store::{IdentityCommand, Origin};

use crate::rbac::{self, BUILT_IN_ROLES, Permission, Subject};
use crate::service::{Auth, AuthError};

impl Auth {
    pub fn orgs(&self) -> Result<Vec<OrgInfo>, AuthError> {
        let state = self.store().identity_state()?;
        Ok(state
            .orgs
            .iter()
            .map(|(name, org)| OrgInfo {
                name: name.clone(),
                created: org.created,
                teams: state
                    .teams
                    .iter()
                    .filter_map(|(key, _)| key.strip_prefix(&format!("{name}/")).map(str::to_owned))
                    .collect(),
            })
            .collect())
    }

    pub fn teams(&self, org: &str) -> Result<Vec<TeamInfo>, AuthError> {
        let state = self.store().identity_state()?;
        if !state.orgs.iter().any(|(name, _)| name == org) {
            return Err(AuthError::Refused(wharf_store::Refusal::ObjectUnknown {
                kind: "organization".into(),
                id: org.into(),
            }));
        }
        Ok(state
            .teams
            .iter()
            .filter_map(|(key, team)| {
                let name = key.strip_prefix(&format!("{org}/"))?;
                Some(TeamInfo {
                    org: org.to_owned(),
                    name: name.to_owned(),
                    members: team.members.iter().cloned().collect(),
                    created: team.created,
                })
            })
            .collect())
    }

    pub fn collections(&self) -> Result<Vec<CollectionInfo>, AuthError> {
        let state = self.store().identity_state()?;
        let built_in =
            BUILT_IN_COLLECTIONS.iter().map(|p| CollectionInfo { path: (*p).into(), built_in: true, created: 0 });
        let made = state.collections.iter().map(|(p, c)| CollectionInfo {
            path: p.clone(),
            built_in: false,
            created: c.created,
        });
        let mut all: Vec<CollectionInfo> = built_in.chain(made).collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(all)
    }

    pub fn roles(&self) -> Result<Vec<RoleInfo>, AuthError> {
        let state = self.store().identity_state()?;
        let names = |set: BTreeSet<Permission>| set.into_iter().map(|p| p.as_str().to_owned()).collect();
        let built_in = BUILT_IN_ROLES.iter().map(|name| RoleInfo {
            name: (*name).into(),
            built_in: true,
            permissions: names(rbac::built_in_role(name).unwrap_or_default()),
        });
        let custom = state.roles.iter().map(|(name, role)| RoleInfo {
            name: name.clone(),
            built_in: false,
            permissions: role.permissions.clone(),
        });
        Ok(built_in.chain(custom).collect())
    }

    /// Every grant, or those whose subject is `user` or one of their teams and organizations.
    pub fn grants(&self, user: Option<&str>) -> Result<Vec<GrantInfo>, AuthError> {
        let state = self.store().identity_state()?;
        let teams: BTreeSet<(String, String)> = match user {
            Some(user) => state
                .teams
                .iter()
                .filter(|(_, t)| t.members.contains(user))
                .filter_map(|(key, _)| key.split_once('/').map(|(o, t)| (o.to_owned(), t.to_owned())))
                .collect(),
            None => BTreeSet::new(),
        };
        let concerns = |subject: &str| match (user, Subject::parse(subject)) {
            (None, _) => true,
            (Some(user), Some(Subject::User(name))) => name == user,
            (Some(_), Some(Subject::Team { org, team })) => teams.contains(&(org, team)),
            (Some(_), Some(Subject::Org(org))) => teams.iter().any(|(o, _)| *o == org),
            (Some(_), None) => false,
        };
        let mut out: Vec<GrantInfo> = state
            .grants
            .into_iter()
            .filter(|g| concerns(&g.subject))
            .map(|g| GrantInfo { subject: g.subject, role: g.role, collection: g.collection })
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn access_settings(&self) -> Result<AccessSettings, AuthError> {
        let role = self.store().identity_state()?.default_role;
        Ok(AccessSettings { default_role: if role.is_empty() { rbac::RESTRICTED_CONTROL.into() } else { role } })
    }

    pub async fn create_org(&self, name: &str, by: &Origin) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::CreateOrg { name: name.into(), at: crate::service::now() }).await
    }

    pub async fn delete_org(&self, name: &str, by: &Origin) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::DeleteOrg { name: name.into() }).await
    }

    pub async fn create_team(&self, org: &str, team: &str, by: &Origin) -> Result<(), AuthError> {
        let at = crate::service::now();
        self.change(by, IdentityCommand::CreateTeam { org: org.into(), team: team.into(), at }).await
    }

    pub async fn delete_team(&self, org: &str, team: &str, by: &Origin) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::DeleteTeam { org: org.into(), team: team.into() }).await
    }

    /// Replaces a team's members.
    pub async fn set_team_members(
        &self,
        org: &str,
        team: &str,
        members: BTreeSet<String>,
        by: &Origin,
    ) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::SetTeamMembers { org: org.into(), team: team.into(), members }).await
    }

    pub async fn add_team_member(&self, org: &str, team: &str, user: &str, by: &Origin) -> Result<(), AuthError> {
        let command = IdentityCommand::AddTeamMember { org: org.into(), team: team.into(), user: user.into() };
        self.change(by, command).await
    }

    pub async fn remove_team_member(&self, org: &str, team: &str, user: &str, by: &Origin) -> Result<(), AuthError> {
        let command = IdentityCommand::RemoveTeamMember { org: org.into(), team: team.into(), user: user.into() };
        self.change(by, command).await
    }

    pub async fn create_collection(&self, path: &str, by: &Origin) -> Result<(), AuthError> {
        if !paths::valid_collection(path) {
            return Err(AuthError::Invalid(format!(
                "invalid collection path {path:?}: /-separated names of letters, digits, '.', '_' and '-'"
            )));
        }
        self.change(by, IdentityCommand::CreateCollection { path: path.into(), at: crate::service::now() }).await
    }

    pub async fn delete_collection(&self, path: &str, by: &Origin) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::DeleteCollection { path: path.into() }).await
    }

    /// A custom role: every permission must be one Wharf knows.
    pub async fn create_role(&self, role: NewRole, by: &Origin) -> Result<(), AuthError> {
        if let Some(unknown) = role.permissions.iter().find(|p| Permission::parse(p).is_none()) {
            let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
            return Err(AuthError::Invalid(format!("unknown permission {unknown:?}; known: {}", known.join(", "))));
        }
        let mut permissions = role.permissions;
        permissions.sort();
        permissions.dedup();
        let at = crate::service::now();
        self.change(by, IdentityCommand::CreateRole { name: role.name, permissions, at }).await
    }

    pub async fn delete_role(&self, name: &str, by: &Origin) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::DeleteRole { name: name.into() }).await
    }

    pub async fn grant(&self, grant: GrantInfo, by: &Origin) -> Result<(), AuthError> {
        check_grant(&grant)?;
        let GrantInfo { subject, role, collection } = grant;
        self.change(by, IdentityCommand::Grant { subject, role, collection, at: crate::service::now() }).await
    }

    pub async fn revoke(&self, grant: GrantInfo, by: &Origin) -> Result<(), AuthError> {
        check_grant(&grant)?;
        let GrantInfo { subject, role, collection } = grant;
        self.change(by, IdentityCommand::Revoke { subject, role, collection }).await
    }

    /// The repository access entries on `repo` (or its namespace), or every one.
    pub fn repo_access(&self, repo: Option<&str>) -> Result<Vec<RepoAccessInfo>, AuthError> {
        let state = self.store().identity_state()?;
        let mut out: Vec<RepoAccessInfo> = state
            .repo_access
            .into_iter()
            .filter(|r| repo.is_none_or(|repo| r.repo == repo || rbac::repo_matches(&r.repo, repo)))
            .map(|r| RepoAccessInfo { repo: r.repo, subject: r.subject, level: r.level })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Gives a subject a level on a repository or namespace (`none` takes it back).
    pub async fn set_repo_access(&self, access: RepoAccessInfo, by: &Origin) -> Result<(), AuthError> {
        if Subject::parse(&access.subject).is_none() {
            return Err(AuthError::Invalid(format!(
                "invalid subject {:?}: user:NAME, team:ORG/TEAM or org:ORG",
                access.subject
            )));
        }
        if access.level != "none" && rbac::RepoLevel::parse(&access.level).is_none() {
            return Err(AuthError::Invalid(format!(
                "invalid level {:?}: read, read-write, admin or none",
                access.level
            )));
        }
        let RepoAccessInfo { repo, subject, level } = access;
        self.change(by, IdentityCommand::SetRepoAccess { repo, subject, level, at: crate::service::now() }).await
    }

    pub async fn set_default_role(&self, role: &str, by: &Origin) -> Result<(), AuthError> {
        self.change(by, IdentityCommand::SetDefaultRole { role: role.into() }).await
    }

    async fn change(&self, by: &Origin, command: IdentityCommand) -> Result<(), AuthError> {
        self.propose(by, command).await?;
        Ok(())
    }
}

fn check_grant(grant: &GrantInfo) -> Result<(), AuthError> {
    if Subject::parse(&grant.subject).is_none() {
        return Err(AuthError::Invalid(format!(
            "invalid subject {:?}: user:NAME, team:ORG/TEAM or org:ORG",
            grant.subject
        )));
    }
    if !paths::valid_collection(&grant.collection) {
        return Err(AuthError::Invalid(format!("invalid collection path {:?}", grant.collection)));
    }
    Ok(())
}
