//! Role-based access to the cluster's objects, as one pure evaluation: who a caller is (their
//! account and teams), the grants of the cluster (subject + role + collection), and the
//! collection an object belongs to decide whether an operation is allowed. No I/O: the
//! [`AccessModel`] is built from the state by the caller and kept until access changes.
//!
//! Collections form a tree of paths (`/`, `/System`, `/Shared`, `/Shared/Private/<user>`); a
//! grant on a collection applies to everything beneath it. Every user holds two grants
//! implicitly: the default role (Restricted Control unless configured) on their private
//! collection, and Scheduler on `/Shared`, as in UCP.

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use wharf_api::identity::{
    BUILT_IN_COLLECTIONS, COLLECTION_LABEL, PRIVATE, ROOT, SHARED, SYSTEM, lineage, parent, private_collection,
    valid_collection, within,
};

macro_rules! permissions {
    ($($variant:ident = $name:literal, $doc:literal;)*) => {
        /// One operation a role allows, on the objects of a collection.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, in order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

            /// Its name in custom roles and in answers (`service.create`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }

            /// The permission a name names.
            pub fn parse(name: &str) -> Option<Permission> {
                match name {
                    $($name => Some(Permission::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

permissions! {
    ServiceView = "service.view", "See services, their tasks and their logs.";
    ServiceCreate = "service.create", "Create services.";
    ServiceUpdate = "service.update", "Change, scale and roll back services.";
    ServiceRemove = "service.remove", "Remove services.";
    NodeView = "node.view", "See nodes.";
    NodeSchedule = "node.schedule", "Run tasks on nodes.";
    NodeUpdate = "node.update", "Change a node's availability, labels and role; remove it.";
    SecretView = "secret.view", "See secrets and configs (never a secret's value).";
    SecretCreate = "secret.create", "Create secrets and configs.";
    SecretUse = "secret.use", "Give a secret or config to a service.";
    SecretUpdate = "secret.update", "Change the labels of secrets and configs.";
    SecretRemove = "secret.remove", "Remove secrets and configs.";
    NetworkView = "network.view", "See networks.";
    NetworkCreate = "network.create", "Create networks.";
    NetworkAttach = "network.attach", "Attach a service to a network.";
    NetworkRemove = "network.remove", "Remove networks.";
    ContainerView = "container.view", "See containers, their details and their logs.";
    ContainerCreate = "container.create", "Create and start containers.";
    ContainerUpdate = "container.update", "Stop containers, and run commands in those one made.";
    ContainerRemove = "container.remove", "Remove containers.";
    BindMount = "host.bind-mount", "Mount a node's own files into a task.";
    Privileged = "host.privileged", "Run a task privileged.";
    HostNamespaces = "host.namespaces", "Use a node's network or process namespace.";
    AddCapabilities = "host.capabilities", "Give a task kernel capabilities beyond the engine's default.";
    ExecOthers = "container.exec", "Run commands in any container, not only in those one made.";
}

impl Permission {
    /// Whether this permission reaches past the container into its node (what Restricted
    /// Control withholds).
    pub fn touches_the_node(self) -> bool {
        matches!(
            self,
            Permission::BindMount
                | Permission::Privileged
                | Permission::HostNamespaces
                | Permission::AddCapabilities
                | Permission::ExecOthers
        )
    }

    /// Whether this permission only reads.
    pub fn is_view(self) -> bool {
        matches!(
            self,
            Permission::ServiceView
                | Permission::NodeView
                | Permission::SecretView
                | Permission::NetworkView
                | Permission::ContainerView
        )
    }
}

/// The built-in roles, by the names grants use (the state checks names against the same list).
pub use wharf_api::identity::{
    BUILT_IN_ROLES, ROLE_FULL_CONTROL as FULL_CONTROL, ROLE_NONE as NONE,
    ROLE_RESTRICTED_CONTROL as RESTRICTED_CONTROL, ROLE_SCHEDULER as SCHEDULER, ROLE_VIEW_ONLY as VIEW_ONLY,
};

/// The permissions of a built-in role (`None` when `name` is not one).
pub fn built_in_role(name: &str) -> Option<BTreeSet<Permission>> {
    let all = Permission::ALL.iter().copied();
    let set: BTreeSet<Permission> = match name {
        NONE => BTreeSet::new(),
        VIEW_ONLY => all.filter(|p| p.is_view()).collect(),
        RESTRICTED_CONTROL => all.filter(|p| !p.touches_the_node()).collect(),
        SCHEDULER => [Permission::NodeView, Permission::NodeSchedule].into(),
        FULL_CONTROL => all.collect(),
        _ => return None,
    };
    Some(set)
}

/// Whether built-in role `name` holds `permission` (`None`: no built-in role of that name).
/// Decided without building the role's set: it is asked for every object a listing shows.
fn built_in_allows(name: &str, permission: Permission) -> Option<bool> {
    Some(match name {
        NONE => false,
        VIEW_ONLY => permission.is_view(),
        RESTRICTED_CONTROL => !permission.touches_the_node(),
        SCHEDULER => matches!(permission, Permission::NodeView | Permission::NodeSchedule),
        FULL_CONTROL => true,
        _ => return None,
    })
}

/// The grants that apply to one caller: (collection, role name), or everything for an
/// administrator.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    admin: bool,
    grants: Vec<(String, String)>,
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    User(String),
    /// A team of an organization.
    Team {
        org: String,
        team: String,
    },
    /// Every member of any team of an organization.
    Org(String),
}

impl Subject {
    /// `user:NAME`, `team:ORG/TEAM` or `org:ORG`.
    pub fn parse(s: &str) -> Option<Subject> {
        let (kind, name) = s.split_once(':')?;
        match kind {
            "user" if !name.is_empty() => Some(Subject::User(name.to_owned())),
            "org" if !name.is_empty() => Some(Subject::Org(name.to_owned())),
            "team" => {
                let (org, team) = name.split_once('/')?;
                (!org.is_empty() && !team.is_empty() && !team.contains('/'))
                    .then(|| Subject::Team { org: org.to_owned(), team: team.to_owned() })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(name) => write!(f, "user:{name}"),
            Subject::Team { org, team } => write!(f, "team:{org}/{team}"),
            Subject::Org(org) => write!(f, "org:{org}"),
        }
    }
}

/// One grant: `subject` may do what `role` allows on `collection` and beneath.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub subject: Subject,
    pub role: String,
    pub collection: String,
}

/// What a subject may do with a repository, or with every repository of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepoLevel {
    /// Pull.
    Read,
    /// Pull and push.
    ReadWrite,
    /// Pull, push, delete, and change the repository's settings.
    Admin,
}

impl RepoLevel {
    pub fn parse(name: &str) -> Option<RepoLevel> {
        match name {
            "read" => Some(RepoLevel::Read),
            "read-write" => Some(RepoLevel::ReadWrite),
            "admin" => Some(RepoLevel::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RepoLevel::Read => "read",
            RepoLevel::ReadWrite => "read-write",
            RepoLevel::Admin => "admin",
        }
    }

    /// The registry actions of this level.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            RepoLevel::Read => &["pull"],
            RepoLevel::ReadWrite => &["pull", "push"],
            RepoLevel::Admin => &["pull", "push", "delete", "*"],
        }
    }
}

/// Whether repository pattern `pattern` (a name, or `NAMESPACE/*` for every repository
/// beneath a namespace) covers `repo`.
pub fn repo_matches(pattern: &str, repo: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(namespace) => repo.strip_prefix(namespace).is_some_and(|rest| rest.starts_with('/')),
        None => pattern == repo,
    }
}

/// One repository grant: `subject` has `level` on the repositories `repo` covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoGrant {
    pub subject: Subject,
    pub repo: String,
    pub level: RepoLevel,
}

/// Who is calling: their account, whether it is an administrator, and the teams they are in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: String,
    pub admin: bool,
    /// (organization, team) pairs.
    pub teams: BTreeSet<(String, String)>,
}

impl Identity {
    /// Every subject this caller is: their account, each team, each organization.
    fn subjects(&self) -> Vec<Subject> {
        let mut out = vec![Subject::User(self.user.clone())];
        let mut orgs = BTreeSet::new();
        for (org, team) in &self.teams {
            out.push(Subject::Team { org: org.clone(), team: team.clone() });
            orgs.insert(org.clone());
        }
        out.extend(orgs.into_iter().map(Subject::Org));
        out
    }

    /// Whether this caller is `subject` (the tests' oracle of [`Identity::subjects`]).
    #[cfg(test)]
    fn is(&self, subject: &Subject) -> bool {
        match subject {
            Subject::User(name) => *name == self.user,
            Subject::Team { org, team } => self.teams.iter().any(|(o, t)| o == org && t == team),
            Subject::Org(org) => self.teams.iter().any(|(o, _)| o == org),
        }
    }
}

/// The grants and roles of a cluster, indexed for evaluation.
#[derive(Debug, Clone, Default)]
pub struct AccessModel {
    /// Custom roles by name (built-in names are never here).
    roles: BTreeMap<String, BTreeSet<Permission>>,
    grants: HashMap<Subject, Vec<(String, String)>>,
    /// Repository grants: (pattern, level) by subject.
    repo_grants: HashMap<Subject, Vec<(String, RepoLevel)>>,
    /// The role each user holds on their private collection.
    default_role: String,
}

impl AccessModel {
    /// A model of `grants`, with `custom_roles` beside the built-in ones; `default_role` is
    /// what every user holds on their private collection (Restricted Control when empty).
    pub fn new(
        grants: impl IntoIterator<Item = Grant>,
        custom_roles: BTreeMap<String, BTreeSet<Permission>>,
        default_role: &str,
    ) -> AccessModel {
        let mut by_subject: HashMap<Subject, Vec<(String, String)>> = HashMap::new();
        for grant in grants {
            by_subject.entry(grant.subject).or_default().push((grant.collection, grant.role));
        }
        let default_role = if default_role.is_empty() { RESTRICTED_CONTROL } else { default_role };
        AccessModel {
            roles: custom_roles,
            grants: by_subject,
            repo_grants: HashMap::new(),
            default_role: default_role.to_owned(),
        }
    }

    /// This model with `grants` on repositories.
    pub fn with_repository_grants(mut self, grants: impl IntoIterator<Item = RepoGrant>) -> AccessModel {
        for grant in grants {
            self.repo_grants.entry(grant.subject).or_default().push((grant.repo, grant.level));
        }
        self
    }

    /// The highest level `who` holds on `repo` through repository grants (the administrator:
    /// admin). The owner of a user namespace and public repositories are the registry
    /// policy's (`crate::policy`), not grants.
    pub fn repository_level(&self, who: &Identity, repo: &str) -> Option<RepoLevel> {
        if who.admin {
            return Some(RepoLevel::Admin);
        }
        who.subjects()
            .into_iter()
            .filter_map(|subject| self.repo_grants.get(&subject))
            .flat_map(|list| list.iter())
            .filter(|(pattern, _)| repo_matches(pattern, repo))
            .map(|(_, level)| *level)
            .max()
    }

    /// The permissions of role `name` (empty for an unknown role: it allows nothing).
    pub fn role(&self, name: &str) -> BTreeSet<Permission> {
        built_in_role(name).or_else(|| self.roles.get(name).cloned()).unwrap_or_default()
    }

    fn role_allows(&self, name: &str, permission: Permission) -> bool {
        match built_in_allows(name, permission) {
            Some(allowed) => allowed,
            None => self.roles.get(name).is_some_and(|set| set.contains(&permission)),
        }
    }

    /// Every (collection, role) that applies to `who`: their grants, their teams' and
    /// organizations' grants, and the two every user holds. Looked up by subject, so its cost
    /// follows the caller's teams, not the number of grants.
    pub fn grants_of<'a>(&'a self, who: &'a Identity) -> impl Iterator<Item = (String, &'a str)> + 'a {
        let implicit = (!who.user.is_empty())
            .then(|| [(private_collection(&who.user), self.default_role.as_str()), (SHARED.to_owned(), SCHEDULER)]);
        let explicit = who
            .subjects()
            .into_iter()
            .filter_map(|subject| self.grants.get(&subject))
            .flat_map(|list| list.iter().map(|(c, r)| (c.clone(), r.as_str())));
        implicit.into_iter().flatten().chain(explicit)
    }

    /// Whether `who` may take `permission` on an object of `collection`: the administrator
    /// always; anyone else when one of their grants covers the collection (it, or an ancestor)
    /// with a role that holds the permission.
    pub fn allows(&self, who: &Identity, permission: Permission, collection: &str) -> bool {
        self.allows_effective(&self.effective(who), permission, collection)
    }

    /// What applies to `who`, gathered once for many decisions (a listing asks for every
    /// object).
    pub fn effective(&self, who: &Identity) -> Effective {
        let grants = if who.admin {
            Vec::new()
        } else {
            self.grants_of(who).map(|(collection, role)| (collection, role.to_owned())).collect()
        };
        Effective { admin: who.admin, grants }
    }

    /// [`AccessModel::allows`] for grants gathered by [`AccessModel::effective`].
    pub fn allows_effective(&self, effective: &Effective, permission: Permission, collection: &str) -> bool {
        effective.admin
            || effective
                .grants
                .iter()
                .any(|(granted, role)| within(collection, granted) && self.role_allows(role, permission))
    }

    /// Every collection where `who` holds `permission` directly (what a listing filters by).
    pub fn collections_with(&self, who: &Identity, permission: Permission) -> Vec<String> {
        let mut out: Vec<String> =
            self.grants_of(who).filter(|(_, role)| self.role_allows(role, permission)).map(|(c, _)| c).collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn user(name: &str) -> Identity {
        Identity { user: name.into(), admin: false, teams: BTreeSet::new() }
    }

    fn grant(subject: Subject, role: &str, collection: &str) -> Grant {
        Grant { subject, role: role.into(), collection: collection.into() }
    }

    #[test]
    fn built_in_roles_are_as_ucp_defines_them() {
        let model = AccessModel::default();
        let full = model.role(FULL_CONTROL);
        let restricted = model.role(RESTRICTED_CONTROL);
        assert_eq!(full.len(), Permission::ALL.len());
        assert!(restricted.contains(&Permission::ServiceCreate));
        for risky in
            [Permission::BindMount, Permission::Privileged, Permission::AddCapabilities, Permission::ExecOthers]
        {
            assert!(!restricted.contains(&risky));
            assert!(full.contains(&risky));
        }
        assert!(model.role(VIEW_ONLY).iter().all(|p| p.is_view()));
        assert_eq!(model.role(SCHEDULER), [Permission::NodeView, Permission::NodeSchedule].into());
        assert!(model.role(NONE).is_empty());
        assert!(model.role("no-such-role").is_empty());
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
            for role in BUILT_IN_ROLES {
                let set = built_in_role(role).expect("built in");
                assert_eq!(built_in_allows(role, *p), Some(set.contains(p)), "{role} {p:?}");
            }
        }
    }

    #[test]
    fn users_hold_their_private_collection_and_may_schedule_on_shared() {
        let model = AccessModel::new([], BTreeMap::new(), "");
        let alice = user("alice");
        assert!(model.allows(&alice, Permission::ServiceCreate, "/Shared/Private/alice"));
        assert!(model.allows(&alice, Permission::ServiceCreate, "/Shared/Private/alice/web"));
        assert!(!model.allows(&alice, Permission::BindMount, "/Shared/Private/alice"));
        assert!(!model.allows(&alice, Permission::ServiceView, "/Shared/Private/bob"));
        assert!(model.allows(&alice, Permission::NodeSchedule, "/Shared"));
        assert!(!model.allows(&alice, Permission::NodeSchedule, "/System"));
        assert!(!model.allows(&alice, Permission::ServiceView, "/Shared"));
        let viewers = AccessModel::new([], BTreeMap::new(), VIEW_ONLY);
        assert!(!viewers.allows(&alice, Permission::ServiceCreate, "/Shared/Private/alice"));
        assert!(model.allows(&Identity { admin: true, ..user("root") }, Permission::Privileged, "/System"));
    }

    #[test]
    fn teams_and_organizations_carry_their_grants_to_their_members() {
        let team = Subject::Team { org: "acme".into(), team: "ops".into() };
        let model = AccessModel::new(
            [grant(team, FULL_CONTROL, "/Shared/ops"), grant(Subject::Org("acme".into()), VIEW_ONLY, "/Shared")],
            BTreeMap::new(),
            "",
        );
        let mut carol = user("carol");
        assert!(!model.allows(&carol, Permission::ServiceView, "/Shared/ops"));
        carol.teams.insert(("acme".into(), "dev".into()));
        assert!(model.allows(&carol, Permission::ServiceView, "/Shared/ops"), "the organization's grant");
        assert!(!model.allows(&carol, Permission::ServiceCreate, "/Shared/ops"));
        carol.teams.insert(("acme".into(), "ops".into()));
        assert!(model.allows(&carol, Permission::BindMount, "/Shared/ops/db"));
        assert!(!model.allows(&carol, Permission::ServiceCreate, "/Shared/other"));
    }

    #[test]
    fn custom_roles_allow_exactly_their_permissions() {
        let roles =
            BTreeMap::from([("deployer".to_owned(), [Permission::ServiceView, Permission::ServiceUpdate].into())]);
        let model = AccessModel::new([grant(Subject::User("dan".into()), "deployer", "/Shared/app")], roles, "");
        let dan = user("dan");
        assert!(model.allows(&dan, Permission::ServiceUpdate, "/Shared/app"));
        assert!(!model.allows(&dan, Permission::ServiceCreate, "/Shared/app"));
        assert_eq!(model.collections_with(&dan, Permission::ServiceView), vec!["/Shared/Private/dan", "/Shared/app"]);
    }

    #[test]
    fn repository_grants_cover_their_repository_or_namespace() {
        assert!(repo_matches("acme/*", "acme/app"));
        assert!(repo_matches("acme/*", "acme/team/app"));
        assert!(!repo_matches("acme/*", "acmeco/app"));
        assert!(!repo_matches("acme/app", "acme/app2"));
        let team = Subject::Team { org: "acme".into(), team: "dev".into() };
        let model = AccessModel::default().with_repository_grants([
            RepoGrant { subject: team.clone(), repo: "acme/*".into(), level: RepoLevel::Read },
            RepoGrant { subject: team, repo: "acme/web".into(), level: RepoLevel::ReadWrite },
        ]);
        let mut dev = user("dev1");
        assert_eq!(model.repository_level(&dev, "acme/web"), None);
        dev.teams.insert(("acme".into(), "dev".into()));
        assert_eq!(model.repository_level(&dev, "acme/web"), Some(RepoLevel::ReadWrite), "the highest level");
        assert_eq!(model.repository_level(&dev, "acme/db"), Some(RepoLevel::Read));
        assert_eq!(model.repository_level(&dev, "other/db"), None);
        assert_eq!(RepoLevel::Admin.actions(), ["pull", "push", "delete", "*"]);
    }

    #[test]
    fn subjects_round_trip() {
        for s in ["user:alice", "team:acme/ops", "org:acme"] {
            assert_eq!(Subject::parse(s).map(|x| x.to_string()).as_deref(), Some(s));
        }
        for bad in ["alice", "user:", "team:acme", "team:/ops", "team:a/b/c", "group:x"] {
            assert_eq!(Subject::parse(bad), None, "{bad}");
        }
    }

    const COLLECTIONS: [&str; 8] =
        ["/", "/System", "/Shared", "/Shared/Private", "/Shared/Private/u0", "/Shared/a", "/Shared/a/b", "/Other"];
    const ROLES: [&str; 6] = [NONE, VIEW_ONLY, RESTRICTED_CONTROL, SCHEDULER, FULL_CONTROL, "custom"];

    fn subjects() -> impl Strategy<Value = Subject> {
        prop_oneof![
            (0..3u8).prop_map(|i| Subject::User(format!("u{i}"))),
            (0..2u8, 0..2u8).prop_map(|(o, t)| Subject::Team { org: format!("o{o}"), team: format!("t{t}") }),
            (0..2u8).prop_map(|o| Subject::Org(format!("o{o}"))),
        ]
    }

    fn grants() -> impl Strategy<Value = Grant> {
        (subjects(), 0..ROLES.len(), 0..COLLECTIONS.len())
            .prop_map(|(subject, r, c)| grant(subject, ROLES[r], COLLECTIONS[c]))
    }

    fn identities() -> impl Strategy<Value = Identity> {
        (0..3u8, proptest::collection::btree_set((0..2u8, 0..2u8), 0..3)).prop_map(|(u, teams)| Identity {
            user: format!("u{u}"),
            admin: false,
            teams: teams.into_iter().map(|(o, t)| (format!("o{o}"), format!("t{t}"))).collect(),
        })
    }

    fn model(grants: &[Grant]) -> AccessModel {
        let custom = BTreeMap::from([("custom".to_owned(), [Permission::ServiceView, Permission::NodeUpdate].into())]);
        AccessModel::new(grants.to_vec(), custom, "")
    }

    /// Every (permission, collection) the model allows `who`.
    fn allowed(model: &AccessModel, who: &Identity) -> BTreeSet<(Permission, &'static str)> {
        let mut out = BTreeSet::new();
        for p in Permission::ALL {
            for c in COLLECTIONS.iter().chain(["/Shared/Private/u1", "/Shared/a/b/c"].iter()) {
                if model.allows(who, *p, c) {
                    out.insert((*p, *c));
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn a_grant_never_widens_access_beyond_its_collection_and_role(
            base in proptest::collection::vec(grants(), 0..12),
            extra in grants(),
            who in identities(),
        ) {
            let before = allowed(&model(&base), &who);
            let mut with = base.clone();
            with.push(extra.clone());
            let after = allowed(&model(&with), &who);
            let role = model(&[]).role(&extra.role);
            for (p, c) in after.difference(&before) {
                prop_assert!(who.is(&extra.subject), "{p:?} on {c} for someone the grant is not for");
                prop_assert!(within(c, &extra.collection), "{p:?} on {c} outside {}", extra.collection);
                prop_assert!(role.contains(p), "{p:?} not in role {}", extra.role);
            }
        }

        #[test]
        fn a_repository_grant_never_reaches_past_its_pattern_or_subject(
            subject in subjects(),
            pattern in prop::sample::select(vec!["a/*", "a/x", "b/*"]),
            repo in prop::sample::select(vec!["a/x", "a/y", "a/x/z", "b/x", "ab/x", "c"]),
            who in identities(),
        ) {
            let model = AccessModel::default().with_repository_grants([RepoGrant {
                subject: subject.clone(),
                repo: pattern.into(),
                level: RepoLevel::ReadWrite,
            }]);
            let level = model.repository_level(&who, repo);
            prop_assert_eq!(level.is_some(), who.is(&subject) && repo_matches(pattern, repo));
        }

        #[test]
        fn removing_a_grant_never_adds_access(
            grants in proptest::collection::vec(grants(), 1..12),
            index in any::<prop::sample::Index>(),
            who in identities(),
        ) {
            let before = allowed(&model(&grants), &who);
            let mut fewer = grants.clone();
            fewer.remove(index.index(grants.len()));
            let after = allowed(&model(&fewer), &who);
            prop_assert!(after.is_subset(&before));
        }

        #[test]
        fn the_administrator_is_allowed_everything_and_nobody_else_touches_the_system_without_a_grant(
            grants in proptest::collection::vec(grants(), 0..12),
            who in identities(),
        ) {
            let m = model(&grants);
            let admin = Identity { admin: true, ..who.clone() };
            prop_assert!(Permission::ALL.iter().all(|p| m.allows(&admin, *p, "/System")));
            let covering = grants.iter().any(|g| who.is(&g.subject) && within("/System", &g.collection));
            if !covering {
                prop_assert!(Permission::ALL.iter().all(|p| !m.allows(&who, *p, "/System")));
            }
        }
    }
}
