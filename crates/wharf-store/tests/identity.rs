//! Organizations, teams, collections, roles and grants: what apply refuses so that the facts
//! stay consistent, and what a snapshot carries.

use std::collections::BTreeSet;

use wharf_store::{AccountsCommand, IdentityCommand as I, Refusal, Store, StoreError};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open");
    (dir, store)
}

fn refused(result: Result<wharf_store::Outcome, StoreError>) -> Refusal {
    match result {
        Err(StoreError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn user(store: &Store, name: &str) {
    let create = AccountsCommand::CreateUser { name: name.into(), password_hash: "x".into(), admin: false, at: 1 };
    store.apply(create).expect("create user");
}

fn grant(subject: &str, role: &str, collection: &str) -> I {
    I::Grant { subject: subject.into(), role: role.into(), collection: collection.into(), at: 2 }
}

#[test]
fn teams_belong_to_organizations_and_hold_only_accounts() {
    let (_dir, store) = open();
    user(&store, "alice");
    assert!(matches!(
        refused(store.apply(I::CreateTeam { org: "acme".into(), team: "ops".into(), at: 1 })),
        Refusal::ObjectUnknown { .. }
    ));
    store.apply(I::CreateOrg { name: "acme".into(), at: 1 }).expect("org");
    assert!(matches!(refused(store.apply(I::CreateOrg { name: "acme".into(), at: 1 })), Refusal::NameTaken { .. }));
    assert!(matches!(refused(store.apply(I::CreateOrg { name: "a/b".into(), at: 1 })), Refusal::Invalid(_)));
    store.apply(I::CreateTeam { org: "acme".into(), team: "ops".into(), at: 1 }).expect("team");
    let members = BTreeSet::from(["alice".to_owned(), "ghost".to_owned()]);
    let set = I::SetTeamMembers { org: "acme".into(), team: "ops".into(), members };
    assert_eq!(refused(store.apply(set)), Refusal::UserUnknown("ghost".into()));
    store.apply(I::AddTeamMember { org: "acme".into(), team: "ops".into(), user: "alice".into() }).expect("add");
    let state = store.identity_state().expect("state");
    assert_eq!(state.teams[0].0, "acme/ops");
    assert_eq!(state.teams[0].1.members, BTreeSet::from(["alice".to_owned()]));
}

#[test]
fn grants_name_only_what_exists_and_go_with_what_they_name() {
    let (_dir, store) = open();
    user(&store, "alice");
    store.apply(I::CreateOrg { name: "acme".into(), at: 1 }).expect("org");
    store.apply(I::CreateTeam { org: "acme".into(), team: "ops".into(), at: 1 }).expect("team");
    for (bad, why) in [
        (grant("user:ghost", "viewonly", "/Shared"), "unknown user"),
        (grant("team:acme/dev", "viewonly", "/Shared"), "unknown team"),
        (grant("org:other", "viewonly", "/Shared"), "unknown organization"),
        (grant("alice", "viewonly", "/Shared"), "no kind"),
        (grant("user:alice", "superuser", "/Shared"), "unknown role"),
        (grant("user:alice", "viewonly", "/Shared/ops"), "unknown collection"),
        (grant("user:alice", "viewonly", "/Shared/Private/ghost"), "private collection of no user"),
    ] {
        assert!(store.apply(bad).is_err(), "{why}");
    }
    store.apply(grant("user:alice", "viewonly", "/Shared/Private/alice")).expect("private collection");
    store.apply(I::CreateCollection { path: "/Shared/ops".into(), at: 1 }).expect("collection");
    let no_parent = I::CreateCollection { path: "/Shared/a/b".into(), at: 1 };
    assert!(matches!(refused(store.apply(no_parent)), Refusal::ObjectUnknown { .. }));
    store
        .apply(I::CreateRole { name: "deployer".into(), permissions: vec!["service.update".into()], at: 1 })
        .expect("role");
    let built_in_name = I::CreateRole { name: "fullcontrol".into(), permissions: vec![], at: 1 };
    assert!(matches!(refused(store.apply(built_in_name)), Refusal::Invalid(_)));
    store.apply(grant("team:acme/ops", "deployer", "/Shared/ops")).expect("team grant");
    store.apply(grant("org:acme", "viewonly", "/Shared/ops")).expect("org grant");
    assert!(matches!(refused(store.apply(I::DeleteRole { name: "deployer".into() })), Refusal::Held { .. }));
    assert!(matches!(refused(store.apply(I::DeleteCollection { path: "/Shared/ops".into() })), Refusal::Held { .. }));
    assert_eq!(store.identity_state().expect("state").grants.len(), 3);

    store.apply(I::DeleteTeam { org: "acme".into(), team: "ops".into() }).expect("delete team");
    assert_eq!(store.identity_state().expect("state").grants.len(), 2, "the team's grant went with it");
    store.apply(I::DeleteRole { name: "deployer".into() }).expect("no grant names it now");
    store.apply(I::DeleteOrg { name: "acme".into() }).expect("delete org");
    let left = store.identity_state().expect("state").grants;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].subject, "user:alice");
    store.apply(I::DeleteCollection { path: "/Shared/ops".into() }).expect("no grant names it now");

    let revoke = I::Revoke { subject: "user:alice".into(), role: "viewonly".into(), collection: "/Shared".into() };
    assert!(matches!(refused(store.apply(revoke)), Refusal::ObjectUnknown { .. }));
}

#[test]
fn a_deleted_account_takes_its_grants_and_memberships_so_a_new_one_of_its_name_has_none() {
    let (_dir, store) = open();
    user(&store, "alice");
    user(&store, "admin2");
    store.apply(I::CreateOrg { name: "acme".into(), at: 1 }).expect("org");
    store.apply(I::CreateTeam { org: "acme".into(), team: "ops".into(), at: 1 }).expect("team");
    store.apply(I::AddTeamMember { org: "acme".into(), team: "ops".into(), user: "alice".into() }).expect("add");
    store.apply(grant("user:alice", "fullcontrol", "/")).expect("grant");
    store.apply(AccountsCommand::DeleteUser { name: "alice".into() }).expect("delete");
    user(&store, "alice");
    let state = store.identity_state().expect("state");
    assert!(state.grants.is_empty());
    assert!(state.teams[0].1.members.is_empty());
}

#[test]
fn identity_travels_in_snapshots_and_changes_the_access_generation() {
    let (_dir, store) = open();
    user(&store, "alice");
    let before = store.access_generation();
    store.apply(I::CreateCollection { path: "/Shared/ops".into(), at: 1 }).expect("collection");
    store.apply(grant("user:alice", "scheduler", "/Shared/ops")).expect("grant");
    store.apply(I::SetDefaultRole { role: "viewonly".into() }).expect("default role");
    assert!(matches!(refused(store.apply(I::SetDefaultRole { role: "nope".into() })), Refusal::ObjectUnknown { .. }));
    assert!(store.access_generation() > before);
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_other_dir, other) = open();
    other.import(&mut snapshot.as_slice(), b"m").expect("import");
    assert_eq!(other.identity_state().expect("state"), store.identity_state().expect("state"));
    assert_eq!(other.identity_state().expect("state").default_role, "viewonly");
}

#[test]
fn the_audit_log_keeps_its_order_travels_in_snapshots_and_is_pruned_by_age_and_count() {
    use wharf_store::{AuditCommand, AuditQuery, AuditRecord};
    let (_dir, store) = open();
    let entry = |at_ms: u64, actor: &str, outcome: &str| AuditRecord {
        at_ms,
        actor: actor.into(),
        source: "10.0.0.1".into(),
        door: "api".into(),
        method: "POST".into(),
        path: "/api/users".into(),
        status: 201,
        outcome: outcome.into(),
    };
    let first: Vec<AuditRecord> = (0..5).map(|n| entry(n * 10, "ann", "ok")).collect();
    store.apply(AuditCommand::Record { entries: first }).expect("record");
    store
        .apply(AuditCommand::Record { entries: vec![entry(50, "bob", "denied"), entry(60, "ann", "ok")] })
        .expect("record");
    let all = store.audit(&AuditQuery { limit: 100, ..Default::default() }).expect("read");
    assert_eq!(all.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![0, 10, 20, 30, 40, 50, 60]);
    let newest = store.audit(&AuditQuery { limit: 2, ..Default::default() }).expect("read");
    assert_eq!(newest.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![50, 60], "the newest, oldest first");
    let denied = AuditQuery { outcome: Some("denied".into()), limit: 10, ..Default::default() };
    assert_eq!(store.audit(&denied).expect("read")[0].actor, "bob");
    let window = AuditQuery { since_ms: Some(20), until_ms: Some(40), limit: 10, ..Default::default() };
    assert_eq!(store.audit(&window).expect("read").len(), 3);

    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_other_dir, other) = open();
    other.import(&mut snapshot.as_slice(), b"m").expect("import");
    assert_eq!(other.audit(&AuditQuery { limit: 100, ..Default::default() }).expect("read"), all);

    // Older than 25 ms, and beyond the newest 3: gone.
    store.apply(AuditCommand::Prune { before_ms: 25, keep: 1000 }).expect("prune by age");
    let left = store.audit(&AuditQuery { limit: 100, ..Default::default() }).expect("read");
    assert_eq!(left.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![30, 40, 50, 60]);
    store.apply(AuditCommand::Prune { before_ms: 0, keep: 3 }).expect("prune by count");
    let left = store.audit(&AuditQuery { limit: 100, ..Default::default() }).expect("read");
    assert_eq!(left.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![40, 50, 60]);
    store.apply(AuditCommand::Record { entries: vec![entry(70, "cy", "ok")] }).expect("record after a prune");
    let last = store.audit(&AuditQuery { limit: 1, ..Default::default() }).expect("read");
    assert_eq!(last[0].actor, "cy", "numbers are never reused");
}
