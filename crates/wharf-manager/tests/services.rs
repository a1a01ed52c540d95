//! The control plane's services over a real store and CA.

use std::sync::Arc;

use wharf_api::NodeRole;
use wharf_pki::Ca;
use wharf_store::{Command, Store};

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
    store.apply(&Command::SetJoinToken { role: "worker".into(), token: legacy.clone() }).expect("legacy token");
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
    let manager = rotate_join_token(&proposer, &ca, NodeRole::Manager).await.expect("rotate");
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
