//! The one decision of who may do what through the account, repository and node APIs: the
//! edge turns a request into an [`Operation`] and asks [`authorize`], and so will every other
//! door (the Docker-compatible API, RBAC with grants later). Pure: the facts a decision needs
//! (whether a repository is public, whether a session is the caller's) come in the operation.
//! The registry's own scopes are decided by [`crate::policy`] with the same rules.

use crate::policy::{self, Principal};
use crate::rbac::RepoLevel;

/// Something a caller asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation<'a> {
    /// List accounts, create one, disable or enable one, delete one.
    ListUsers,
    CreateUser,
    ChangeUser {
        name: &'a str,
    },
    DeleteUser {
        name: &'a str,
    },
    /// See an account, change its password, list its sessions.
    ShowUser {
        name: &'a str,
    },
    SetPassword {
        name: &'a str,
    },
    ListSessions {
        user: &'a str,
    },
    /// End a session; `owned` says whether it is one of the caller's.
    EndSession {
        owned: bool,
    },
    /// See a repository's settings; `public` says whether it is public, `level` what
    /// repository grants give the caller there.
    ShowRepository {
        repo: &'a str,
        public: bool,
        level: Option<RepoLevel>,
    },
    /// Change a repository's settings (its visibility, who may reach it).
    ChangeRepository {
        repo: &'a str,
        level: Option<RepoLevel>,
    },
    /// The cluster: the node list, removal and role changes, join tokens.
    ListNodes,
    ChangeNodes,
    ShowJoinToken,
    RotateJoinToken,
    /// Organizations, teams, collections, roles, grants and the default role: read them (any
    /// signed-in user: `others` says whether grants that are not the caller's are asked for),
    /// or change them.
    ShowAccess {
        others: bool,
    },
    ChangeAccess,
    /// Read the audit log.
    ShowAudit,
}

/// Why an operation is refused, and how the refusal should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Say it is forbidden (403).
    Forbidden(&'static str),
    /// Say the thing does not exist (404), so that a caller learns nothing of what it may not see.
    Hidden(&'static str),
}

/// The answer of [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

const ADMIN_ONLY: Denial = Denial::Forbidden("only an administrator may do this");
const SELF_ONLY: Denial = Denial::Forbidden("you may only see or change your own account");

/// Whether `principal` may take `operation`: the administrator everything; a user their own
/// account and sessions, and the repositories of their namespace; anyone a public repository's
/// settings.
pub fn authorize(principal: &Principal, operation: &Operation<'_>) -> Decision {
    let (name, admin) = match principal {
        Principal::User { name, admin } => (name.as_str(), *admin),
        Principal::Anonymous => ("", false),
    };
    let allow_if = |allowed: bool, denial: Denial| if allowed { Decision::Allow } else { Decision::Deny(denial) };
    match operation {
        Operation::ListUsers
        | Operation::CreateUser
        | Operation::ChangeUser { .. }
        | Operation::DeleteUser { .. }
        | Operation::ListNodes
        | Operation::ChangeNodes
        | Operation::ShowJoinToken
        | Operation::RotateJoinToken
        | Operation::ChangeAccess
        | Operation::ShowAudit => allow_if(admin, ADMIN_ONLY),
        Operation::ShowAccess { others } => {
            allow_if(admin || (!name.is_empty() && !others), Denial::Forbidden("you may only see your own grants"))
        }
        Operation::ShowUser { name: who }
        | Operation::SetPassword { name: who }
        | Operation::ListSessions { user: who } => allow_if(admin || (!name.is_empty() && name == *who), SELF_ONLY),
        Operation::EndSession { owned } => allow_if(admin || *owned, Denial::Hidden("session is unknown")),
        Operation::ShowRepository { repo, public, level } => {
            let may_pull = policy::allowed_actions(principal, "repository", repo, *public).contains(&"pull");
            allow_if(*public || may_pull || level.is_some(), Denial::Hidden("no such repository, or no access"))
        }
        Operation::ChangeRepository { repo, level } => {
            let owns = policy::allowed_actions(principal, "repository", repo, false).contains(&"push");
            allow_if(
                admin || owns || *level == Some(RepoLevel::Admin),
                Denial::Forbidden("only the namespace owner, a repository admin or an administrator may change this"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn user(name: &str, admin: bool) -> Principal {
        Principal::User { name: name.to_owned(), admin }
    }

    /// Every operation, about `who` and `repo`.
    fn operations<'a>(who: &'a str, repo: &'a str) -> Vec<Operation<'a>> {
        vec![
            Operation::ListUsers,
            Operation::CreateUser,
            Operation::ChangeUser { name: who },
            Operation::DeleteUser { name: who },
            Operation::ShowUser { name: who },
            Operation::SetPassword { name: who },
            Operation::ListSessions { user: who },
            Operation::EndSession { owned: false },
            Operation::ShowRepository { repo, public: false, level: None },
            Operation::ChangeRepository { repo, level: None },
            Operation::ListNodes,
            Operation::ChangeNodes,
            Operation::ShowJoinToken,
            Operation::RotateJoinToken,
            Operation::ShowAccess { others: true },
            Operation::ChangeAccess,
            Operation::ShowAudit,
        ]
    }

    #[test]
    fn users_act_on_themselves_and_their_namespace_administrators_on_everything() {
        let alice = user("alice", false);
        assert_eq!(authorize(&alice, &Operation::ShowUser { name: "alice" }), Decision::Allow);
        assert_eq!(authorize(&alice, &Operation::ShowUser { name: "bob" }), Decision::Deny(SELF_ONLY));
        assert_eq!(authorize(&alice, &Operation::ListUsers), Decision::Deny(ADMIN_ONLY));
        assert_eq!(authorize(&alice, &Operation::EndSession { owned: true }), Decision::Allow);
        assert!(matches!(
            authorize(&alice, &Operation::EndSession { owned: false }),
            Decision::Deny(Denial::Hidden(_))
        ));
        assert_eq!(authorize(&alice, &Operation::ChangeRepository { repo: "alice/app", level: None }), Decision::Allow);
        assert!(matches!(
            authorize(&alice, &Operation::ChangeRepository { repo: "bob/app", level: None }),
            Decision::Deny(_)
        ));
        assert_eq!(
            authorize(&alice, &Operation::ShowRepository { repo: "bob/app", public: true, level: None }),
            Decision::Allow
        );
        let hidden = authorize(&alice, &Operation::ShowRepository { repo: "bob/app", public: false, level: None });
        assert!(matches!(hidden, Decision::Deny(Denial::Hidden(_))));
        assert_eq!(
            authorize(&Principal::Anonymous, &Operation::ShowRepository { repo: "a/b", public: true, level: None }),
            Decision::Allow
        );
    }

    proptest! {
        #[test]
        fn an_administrator_may_do_everything(who in "[a-z]{1,8}", repo in "[a-z]{1,8}/[a-z]{1,8}") {
            for operation in operations(&who, &repo) {
                prop_assert_eq!(authorize(&user("root", true), &operation), Decision::Allow, "{:?}", operation);
            }
        }

        #[test]
        fn a_user_never_gets_what_is_not_theirs(me in "[a-z]{1,8}", who in "[a-z]{1,8}", repo in "[a-z]{1,8}/[a-z]{1,8}") {
            prop_assume!(me != who && !repo.starts_with(&format!("{me}/")));
            let principal = user(&me, false);
            for operation in operations(&who, &repo) {
                prop_assert!(matches!(authorize(&principal, &operation), Decision::Deny(_)), "{:?}", operation);
                prop_assert!(matches!(authorize(&Principal::Anonymous, &operation), Decision::Deny(_)), "{:?}", operation);
            }
        }
    }
}
