//! The control plane's services over a real store and CA.

use std::sync::Arc;

use wharf_api::NodeRole;
use wharf_pki::Ca;
use wharf_store::{ClusterCommand, Store};

/// Join tokens rest sealed: a manager opens them with the CA key, a snapshot of the state holds
/// none in clear, another CA opens nothing, and a token an earlier version kept in clear is
/// accepted until the leader replaces it.
#[tokio::test]
async fn join_tokens_are_sealed_and_tokens_kept_in_clear_are_replaced() {
    use wharf_manager::{join_token, rotate_join_token, seal_legacy_join_tokens};
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(&tmp.path().join("pki")).expect("ca");
    let store = Arc::new(Store::open(&tmp.path().join("state.redb")).expect("store"));
    let proposer = wharf_store::LocalProposer(Arc::clone(&store));
    let legacy = wharf_pki::JoinToken::new(ca.cert_der(), "a-legacy-secret-long-enough".into()).to_string();
    store.apply(&ClusterCommand::SetJoinToken { role: "worker".into(), token: legacy.clone() }).expect("legacy token");
    assert_eq!(
        join_token(&store, &ca, NodeRole::Worker).expect("read"),
        Some(legacy.clone()),
        "accepted until replaced"
    );
    assert_eq!(seal_legacy_join_tokens(&proposer, &store, &ca).await.expect("seal"), 1);
    assert_eq!(seal_legacy_join_tokens(&proposer, &store, &ca).await.expect("again"), 0, "nothing left in clear");
    let worker = join_token(&store, &ca, NodeRole::Worker).expect("read").expect("a worker token");
    assert_ne!(worker, legacy, "the token kept in clear stops working");
    assert_eq!(store.legacy_join_token("worker").expect("read"), None);
    let manager =
        rotate_join_token(&proposer, &ca, NodeRole::Manager, wharf_store::Origin::system()).await.expect("rotate");
    assert_eq!(join_token(&store, &ca, NodeRole::Manager).expect("read"), Some(manager.clone()));
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    for token in [&worker, &manager] {
        let secret = token.rsplit('-').next().expect("secret").as_bytes();
        assert!(!snapshot.windows(secret.len()).any(|w| w == secret), "a token in clear in the state");
    }
    let other = Ca::load_or_create(&tmp.path().join("other")).expect("other ca");
    assert!(join_token(&store, &other, NodeRole::Worker).is_err(), "another CA opens nothing");
}

/// A first start takes an empty state, or its own half-done one, but never a member's state;
/// `recover` removes every other manager and keeps workers.
#[test]
fn a_first_start_refuses_a_members_state_and_recover_removes_the_other_managers() {
    use wharf_manager::ClusterError;
    use wharf_manager::bootstrap::{check_first_start, remove_other_managers};
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&tmp.path().join("state.redb")).expect("store");
    assert_eq!(check_first_start(&store, "10.0.0.1:5000").expect("empty"), None);
    let add = |role: &str, addr: &str| ClusterCommand::AddNode {
        role: role.into(),
        hostname: "h".into(),
        addr: addr.into(),
        at: 1,
    };
    store.apply(&ClusterCommand::InitCluster { cluster_id: "c1".into() }).expect("init");
    store.apply(add("manager", "10.0.0.1:5000")).expect("node 1");
    assert_eq!(check_first_start(&store, "10.0.0.1:5000").expect("its own"), Some("c1".into()));
    assert!(matches!(check_first_start(&store, "10.0.0.9:5000"), Err(ClusterError::Conflict(_))), "another address");
    store.apply(add("manager", "10.0.0.2:5000")).expect("node 2");
    store.apply(add("worker", "10.0.0.3:5000")).expect("node 3");
    let refused = check_first_start(&store, "10.0.0.1:5000");
    assert!(matches!(&refused, Err(ClusterError::Conflict(why)) if why.contains("no node identity")), "{refused:?}");
    let removed = remove_other_managers(&store, 1).expect("remove");
    assert_eq!(removed, vec![(2, "10.0.0.2:5000".to_owned())]);
    let nodes = store.nodes().expect("nodes");
    assert!(!nodes[0].1.removed && nodes[1].1.removed && !nodes[2].1.removed, "node 1 and the worker stay");
    assert!(remove_other_managers(&store, 1).expect("again").is_empty(), "repeating changes nothing");
}
