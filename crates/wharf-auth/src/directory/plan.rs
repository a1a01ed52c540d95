//! What a directory sync changes, decided without I/O: from what the directory holds (users
//! and their groups) and what the state holds (accounts, teams), the accounts to create, the
//! accounts to disable (those of the directory it no longer holds: disabling ends their
//! sessions, refresh tokens, registry tokens and client bundles at once), and the members of
//! each mapped team.

use std::collections::{BTreeMap, BTreeSet};

use wharf_api::identity::TeamMapping;

/// A user as the directory holds them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryUser {
    pub dn: String,
    /// The DNs of the groups they are in (nested ones included where the server says so).
    pub groups: BTreeSet<String>,
}

/// An account as the state holds it, for the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Made from the directory (it has no password of its own).
    pub external: bool,
    pub disabled: bool,
}

/// What a sync changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    pub create: Vec<String>,
    pub disable: Vec<String>,
    /// ("org", "team") -> members, for mapped teams whose members change (or that are new).
    pub teams: BTreeMap<(String, String), BTreeSet<String>>,
    /// Names the directory holds that cannot name an account.
    pub skipped: Vec<String>,
}

/// The plan of a sync. `users` are the directory's, by user name; `accounts` the state's;
/// `teams` the current members of existing teams ("org/team"); `create_all` says whether a
/// sync creates every user of the directory (otherwise accounts are made at first login).
pub fn plan(
    users: &BTreeMap<String, DirectoryUser>,
    accounts: &BTreeMap<String, Account>,
    teams: &BTreeMap<String, BTreeSet<String>>,
    mappings: &[TeamMapping],
    create_all: bool,
) -> SyncPlan {
    let mut out = SyncPlan::default();
    let mut will_exist: BTreeSet<&str> = accounts.keys().map(String::as_str).collect();
    for name in users.keys() {
        if !crate::password::valid_user_name(name) {
            out.skipped.push(name.clone());
            continue;
        }
        if create_all && !accounts.contains_key(name) {
            out.create.push(name.clone());
            will_exist.insert(name);
        }
    }
    for (name, account) in accounts {
        if account.external && !account.disabled && !users.contains_key(name) {
            out.disable.push(name.clone());
        }
    }
    for mapping in mappings {
        let members: BTreeSet<String> = users
            .iter()
            .filter(|(name, user)| user.groups.contains(&mapping.group_dn) && will_exist.contains(name.as_str()))
            .filter(|(name, _)| accounts.get(*name).is_none_or(|a| a.external))
            .map(|(name, _)| name.clone())
            .collect();
        let key = (mapping.org.clone(), mapping.team.clone());
        let current = teams.get(&format!("{}/{}", mapping.org, mapping.team));
        let merged = out.teams.entry(key).or_default();
        merged.extend(members);
        if current == Some(merged) {
            out.teams.remove(&(mapping.org.clone(), mapping.team.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn user(dn: &str, groups: &[&str]) -> DirectoryUser {
        DirectoryUser { dn: dn.into(), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    fn mapping(group: &str, team: &str) -> TeamMapping {
        TeamMapping { group_dn: group.into(), org: "acme".into(), team: team.into() }
    }

    #[test]
    fn users_gone_upstream_are_disabled_and_local_accounts_are_never_touched() {
        let users = BTreeMap::from([("alice".to_owned(), user("uid=alice", &["cn=devs"]))]);
        let accounts = BTreeMap::from([
            ("admin".to_owned(), Account { external: false, disabled: false }),
            ("alice".to_owned(), Account { external: true, disabled: false }),
            ("bob".to_owned(), Account { external: true, disabled: false }),
            ("carl".to_owned(), Account { external: true, disabled: true }),
        ]);
        let plan = plan(&users, &accounts, &BTreeMap::new(), &[mapping("cn=devs", "dev")], true);
        assert_eq!(plan.disable, vec!["bob"], "gone upstream; carl is disabled already; admin is local");
        assert!(plan.create.is_empty());
        assert_eq!(plan.teams[&("acme".into(), "dev".into())], BTreeSet::from(["alice".to_owned()]));
    }

    #[test]
    fn a_sync_creates_users_unless_they_are_made_at_first_login_and_skips_bad_names() {
        let users = BTreeMap::from([
            ("dora".to_owned(), user("uid=dora", &["cn=ops"])),
            ("Bad Name".to_owned(), user("uid=x", &["cn=ops"])),
        ]);
        let all = plan(&users, &BTreeMap::new(), &BTreeMap::new(), &[mapping("cn=ops", "ops")], true);
        assert_eq!(all.create, vec!["dora"]);
        assert_eq!(all.skipped, vec!["Bad Name"]);
        assert_eq!(all.teams[&("acme".into(), "ops".into())], BTreeSet::from(["dora".to_owned()]));
        let jit = plan(&users, &BTreeMap::new(), &BTreeMap::new(), &[mapping("cn=ops", "ops")], false);
        assert!(jit.create.is_empty());
        assert!(jit.teams[&("acme".into(), "ops".into())].is_empty(), "no account yet: not a member yet");
    }

    #[test]
    fn an_unchanged_team_is_left_alone_and_a_local_account_of_the_same_name_is_not_made_a_member() {
        let users = BTreeMap::from([("eve".to_owned(), user("uid=eve", &["cn=ops"]))]);
        let local = BTreeMap::from([("eve".to_owned(), Account { external: false, disabled: false })]);
        let plan1 = plan(&users, &local, &BTreeMap::new(), &[mapping("cn=ops", "ops")], true);
        assert!(plan1.teams[&("acme".into(), "ops".into())].is_empty(), "a local eve is not the directory's eve");
        let external = BTreeMap::from([("eve".to_owned(), Account { external: true, disabled: false })]);
        let teams = BTreeMap::from([("acme/ops".to_owned(), BTreeSet::from(["eve".to_owned()]))]);
        assert!(plan(&users, &external, &teams, &[mapping("cn=ops", "ops")], true).teams.is_empty());
    }

    proptest! {
        #[test]
        fn a_plan_never_disables_a_local_account_nor_one_the_directory_holds(
            directory in proptest::collection::btree_set("[a-e]", 0..5),
            local in proptest::collection::btree_map("[a-e]", any::<(bool, bool)>(), 0..5),
        ) {
            let users: BTreeMap<String, DirectoryUser> =
                directory.iter().map(|n| (n.clone(), user(&format!("uid={n}"), &["cn=g"]))).collect();
            let accounts: BTreeMap<String, Account> =
                local.into_iter().map(|(n, (external, disabled))| (n, Account { external, disabled })).collect();
            let p = plan(&users, &accounts, &BTreeMap::new(), &[mapping("cn=g", "t")], true);
            for name in &p.disable {
                prop_assert!(accounts[name].external && !users.contains_key(name));
            }
            for name in &p.create {
                prop_assert!(!accounts.contains_key(name) && users.contains_key(name));
            }
            for members in p.teams.values() {
                for m in members {
                    prop_assert!(users.contains_key(m));
                    prop_assert!(accounts.get(m).is_none_or(|a| a.external));
                }
            }
        }
    }
}
