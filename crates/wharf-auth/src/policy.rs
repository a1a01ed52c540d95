//! Who may do what in the registry: the administrator may do everything, a user may pull, push
//! and delete in the namespace named after them, anyone (also anonymous) may pull a public
//! repository, a user may list the catalog (which shows them what they may pull), and
//! repository grants (`crate::rbac::RepoLevel`, of a user or their teams) add their level's
//! actions. Pure functions: the caller supplies the facts.

use crate::rbac::RepoLevel;
use crate::scope::Access;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User { name: String, admin: bool },
}

impl Principal {
    /// The token subject: the user name, or empty for anonymous.
    pub fn subject(&self) -> &str {
        match self {
            Principal::Anonymous => "",
            Principal::User { name, .. } => name,
        }
    }
}

const EVERYTHING: &[&str] = &["pull", "push", "delete", "*"];
const PULL: &[&str] = &["pull"];

/// The actions `principal` may take on resource `kind:name`; `public` says whether that
/// repository is public.
pub fn allowed_actions(principal: &Principal, kind: &str, name: &str, public: bool) -> &'static [&'static str] {
    match (kind, principal) {
        ("registry", Principal::User { .. }) if name == "catalog" => &["*"],
        ("repository", Principal::User { admin: true, .. }) => EVERYTHING,
        ("repository", Principal::User { name: user, .. }) if owns(user, name) => EVERYTHING,
        ("repository", _) if public => PULL,
        _ => &[],
    }
}

/// Whether `repo` is in `user`'s namespace (`user/...`).
fn owns(user: &str, repo: &str) -> bool {
    repo.strip_prefix(user).is_some_and(|rest| rest.starts_with('/'))
}

/// The intersection of what was asked and what is allowed: entries with no action left are
/// dropped (a partial grant is not an error; the registry refuses later).
///
/// `level_of` says what repository grants give the principal on a repository.
pub fn grant(
    principal: &Principal,
    requested: &[Access],
    is_public: impl Fn(&str) -> bool,
    level_of: impl Fn(&str) -> Option<RepoLevel>,
) -> Vec<Access> {
    let mut granted: Vec<Access> = Vec::new();
    for ask in requested {
        let public = ask.kind == "repository" && is_public(&ask.name);
        let allowed = allowed_actions(principal, &ask.kind, &ask.name, public);
        let granted_level = match (ask.kind.as_str(), principal) {
            ("repository", Principal::User { .. }) => level_of(&ask.name).map_or(&[][..], RepoLevel::actions),
            _ => &[],
        };
        let actions: Vec<String> = ask
            .actions
            .iter()
            .filter(|a| allowed.contains(&a.as_str()) || granted_level.contains(&a.as_str()))
            .cloned()
            .collect::<Vec<_>>();
        if actions.is_empty() {
            continue;
        }
        match granted.iter_mut().find(|g| g.kind == ask.kind && g.name == ask.name) {
            Some(existing) => {
                for a in actions {
                    if !existing.actions.contains(&a) {
                        existing.actions.push(a);
                    }
                }
            }
            None => granted.push(Access { kind: ask.kind.clone(), name: ask.name.clone(), actions }),
        }
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Principal {
        Principal::User { name: name.to_owned(), admin: false }
    }

    #[test]
    fn namespaces_belong_to_their_user() {
        let ask = [Access::new("repository", "alice/app", &["pull", "push"])];
        assert_eq!(grant(&user("alice"), &ask, |_| false, |_| None), ask.to_vec());
        assert!(grant(&user("bob"), &ask, |_| false, |_| None).is_empty());
        assert!(grant(&user("ali"), &ask, |_| false, |_| None).is_empty(), "a prefix of a name is not the namespace");
        assert!(
            grant(&user("alice"), &[Access::new("repository", "alice", &["push"])], |_| false, |_| None).is_empty()
        );
    }

    #[test]
    fn public_repositories_are_pullable_by_anyone() {
        let ask = [Access::new("repository", "lib/base", &["pull", "push"])];
        for who in [Principal::Anonymous, user("bob")] {
            assert_eq!(
                grant(&who, &ask, |r| r == "lib/base", |_| None),
                vec![Access::new("repository", "lib/base", &["pull"])]
            );
            assert!(grant(&who, &ask, |_| false, |_| None).is_empty());
        }
    }

    #[test]
    fn the_admin_gets_everything_and_users_the_catalog_which_shows_them_what_they_may_pull() {
        let admin = Principal::User { name: "admin".into(), admin: true };
        let ask = [Access::new("registry", "catalog", &["*"]), Access::new("repository", "x/y", &["*", "delete"])];
        assert_eq!(grant(&admin, &ask, |_| false, |_| None), ask.to_vec());
        assert_eq!(grant(&user("x"), &ask[..1], |_| false, |_| None), ask[..1].to_vec());
        assert!(grant(&Principal::Anonymous, &ask[..1], |_| false, |_| None).is_empty());
        assert!(grant(&admin, &[Access::new("registry", "other", &["*"])], |_| false, |_| None).is_empty());
    }

    #[test]
    fn repository_grants_add_their_level_and_nothing_to_anonymous() {
        let ask = [Access::new("repository", "acme/web", &["pull", "push", "delete"])];
        let level = |repo: &str| (repo == "acme/web").then_some(RepoLevel::ReadWrite);
        assert_eq!(
            grant(&user("dev"), &ask, |_| false, level),
            vec![Access::new("repository", "acme/web", &["pull", "push"])]
        );
        assert!(grant(&Principal::Anonymous, &ask, |_| false, level).is_empty());
        let other = [Access::new("repository", "acme/db", &["pull"])];
        assert!(grant(&user("dev"), &other, |_| false, level).is_empty());
    }

    #[test]
    fn repeated_scopes_merge() {
        let ask = [Access::new("repository", "a/b", &["pull"]), Access::new("repository", "a/b", &["push", "pull"])];
        assert_eq!(
            grant(&user("a"), &ask, |_| false, |_| None),
            vec![Access::new("repository", "a/b", &["pull", "push"])]
        );
    }
}
