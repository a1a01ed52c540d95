//! The access model of a running node: built from the replicated state when access last
//! changed (the store's access generation) and shared until it changes again, so a request
//! pays for an evaluation, not for reading a thousand grants.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use wharf_api::identity::{self as paths, BUILT_IN_COLLECTIONS};
use wharf_store::{IdentityState, Store, StoreError};

use crate::rbac::{AccessModel, Grant, Identity, Permission, RepoGrant, RepoLevel, Subject};

/// What the state says about access, at one generation.
#[derive(Debug, Default)]
pub struct AccessView {
    pub model: AccessModel,
    /// user -> the (organization, team) pairs they are in.
    teams_of: HashMap<String, BTreeSet<(String, String)>>,
    /// The collections an administrator made.
    collections: BTreeSet<String>,
    /// The state it was built from.
    pub state: IdentityState,
}

impl AccessView {
    /// Builds the model of `state`. Grants naming a custom role whose permissions hold a name
    /// this release does not know keep the permissions it does know.
    pub fn new(state: IdentityState) -> AccessView {
        let mut teams_of: HashMap<String, BTreeSet<(String, String)>> = HashMap::new();
        for (key, team) in &state.teams {
            let Some((org, name)) = key.split_once('/') else { continue };
            for member in &team.members {
                teams_of.entry(member.clone()).or_default().insert((org.to_owned(), name.to_owned()));
            }
        }
        let roles: BTreeMap<String, BTreeSet<Permission>> = state
            .roles
            .iter()
            .map(|(name, role)| (name.clone(), role.permissions.iter().filter_map(|p| Permission::parse(p)).collect()))
            .collect();
        let grants: Vec<Grant> = state
            .grants
            .iter()
            .filter_map(|g| {
                let subject = Subject::parse(&g.subject)?;
                Some(Grant { subject, role: g.role.clone(), collection: g.collection.clone() })
            })
            .collect();
        let repo_grants = state.repo_access.iter().filter_map(|r| {
            Some(RepoGrant {
                subject: Subject::parse(&r.subject)?,
                repo: r.repo.clone(),
                level: RepoLevel::parse(&r.level)?,
            })
        });
        let model = AccessModel::new(grants, roles, &state.default_role).with_repository_grants(repo_grants);
        let collections = state.collections.iter().map(|(path, _)| path.clone()).collect();
        AccessView { model, teams_of, collections, state }
    }

    /// Who `user` is for the model: their account and teams.
    pub fn identity(&self, user: &str, admin: bool) -> Identity {
        Identity { user: user.to_owned(), admin, teams: self.teams_of.get(user).cloned().unwrap_or_default() }
    }

    /// Whether `path` names a collection: a built-in one, one an administrator made, or a
    /// user's private one (and beneath it) when `is_user` says the user exists.
    pub fn collection_exists(&self, path: &str, is_user: impl Fn(&str) -> bool) -> bool {
        BUILT_IN_COLLECTIONS.contains(&path)
            || self.collections.contains(path)
            || paths::private_owner(path).is_some_and(is_user)
    }
}

/// The current [`AccessView`] of a store, rebuilt after access changed.
pub struct AccessControl {
    store: Arc<Store>,
    cached: Mutex<Option<(u64, Arc<AccessView>)>>,
}

impl AccessControl {
    pub fn new(store: Arc<Store>) -> AccessControl {
        AccessControl { store, cached: Mutex::new(None) }
    }

    /// The view as of now (or of a commit that changed nothing about access since).
    pub fn view(&self) -> Result<Arc<AccessView>, StoreError> {
        // The generation is read before the state: a change that lands in between makes the
        // next call build again rather than keep a view older than its generation.
        let generation = self.store.access_generation();
        if let Some((at, view)) = self.cached.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && *at == generation
        {
            return Ok(Arc::clone(view));
        }
        let view = Arc::new(AccessView::new(self.store.identity_state()?));
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, Arc::clone(&view)));
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use wharf_store::{AccountsCommand, IdentityCommand};

    use super::*;

    #[test]
    fn the_view_follows_the_state_and_is_kept_while_access_is_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).expect("open"));
        let create = AccountsCommand::CreateUser { name: "ann".into(), password_hash: "x".into(), admin: false, at: 1 };
        store.apply(create).expect("user");
        let access = AccessControl::new(Arc::clone(&store));
        let first = access.view().expect("view");
        assert!(Arc::ptr_eq(&first, &access.view().expect("view")), "kept while nothing changed");
        assert!(!first.model.allows(&first.identity("ann", false), Permission::ServiceView, "/Shared/ops"));
        store.apply(IdentityCommand::CreateOrg { name: "acme".into(), at: 1 }).expect("org");
        store.apply(IdentityCommand::CreateTeam { org: "acme".into(), team: "ops".into(), at: 1 }).expect("team");
        let add = IdentityCommand::AddTeamMember { org: "acme".into(), team: "ops".into(), user: "ann".into() };
        store.apply(add).expect("member");
        store.apply(IdentityCommand::CreateCollection { path: "/Shared/ops".into(), at: 1 }).expect("collection");
        let grant = IdentityCommand::Grant {
            subject: "team:acme/ops".into(),
            role: "viewonly".into(),
            collection: "/Shared/ops".into(),
            at: 1,
        };
        store.apply(grant).expect("grant");
        let view = access.view().expect("view");
        let ann = view.identity("ann", false);
        assert!(ann.teams.contains(&("acme".to_owned(), "ops".to_owned())));
        assert!(view.model.allows(&ann, Permission::ServiceView, "/Shared/ops/web"));
        assert!(view.collection_exists("/Shared/ops", |_| false));
        assert!(view.collection_exists("/Shared/Private/ann", |u| u == "ann"));
        assert!(!view.collection_exists("/Shared/Private/ann/x", |u| u == "ann"));
        assert!(!view.collection_exists("/Shared/other", |_| true));
    }
}
