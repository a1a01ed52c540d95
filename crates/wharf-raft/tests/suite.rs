//! openraft's storage conformance suite against Wharf's log store and state machine, on real
//! redb files in a temporary folder.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use wharf_raft::{LogStore, StateMachine, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("raft-log.redb")).expect("log store");
        let store = Arc::new(wharf_store::Store::open(&dir.path().join("state.redb")).expect("state store"));
        let sm = StateMachine::open(store, &dir.path().join("snapshots")).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("openraft storage suite");
}

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{log_id, membership_ent};
use openraft::{Entry, EntryPayload};
use wharf_store::{AccountsCommand, Command, Origin, VersionedCommand};

fn command_entry(index: u64, command: impl Into<Command>) -> openraft::type_config::alias::EntryOf<TypeConfig> {
    let entry = wharf_store::Entry { origin: Origin::system(), at: 1, command: command.into() };
    Entry { log_id: log_id::<TypeConfig>(1, 1, index), payload: EntryPayload::Normal(VersionedCommand::V2(entry)) }
}

fn state_machine(dir: &std::path::Path) -> (Arc<wharf_store::Store>, StateMachine) {
    let store = Arc::new(wharf_store::Store::open(&dir.join("state.redb")).expect("state store"));
    let sm = StateMachine::open(Arc::clone(&store), &dir.join("snapshots")).expect("state machine");
    (store, sm)
}

fn create_user(name: &str) -> Command {
    AccountsCommand::CreateUser { name: name.into(), password_hash: "h".into(), admin: true, at: 1 }.into()
}

/// The suite cannot build application entries; these apply real commands, refusals included,
/// and carry them to another node through a snapshot.
#[tokio::test]
async fn commands_apply_and_travel_in_snapshots() {
    let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (store_a, mut sm_a) = state_machine(a.path());
    let entries = vec![
        membership_ent::<TypeConfig>(1, 1, 1, vec![[1u64].into_iter().collect()]),
        command_entry(2, create_user("admin")),
        command_entry(3, create_user("admin")),
        command_entry(4, AccountsCommand::SetRepoPublic { repo: "lib/base".into(), public: true }),
    ];
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm_a.apply(stream).await.expect("apply");
    let (applied, membership) = sm_a.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id::<TypeConfig>(1, 1, 4)));
    assert_eq!(membership.log_id(), &Some(log_id::<TypeConfig>(1, 1, 1)));
    assert!(store_a.user("admin").expect("read").is_some(), "the command was applied");
    assert_eq!(store_a.users().expect("read").len(), 1, "the repeated create was refused, not applied twice");

    let snapshot = sm_a.get_snapshot_builder().await.build_snapshot().await.expect("build");
    let (store_b, mut sm_b) = state_machine(b.path());
    sm_b.install_snapshot(&snapshot.meta, snapshot.snapshot).await.expect("install");
    assert_eq!(sm_b.applied_state().await.expect("state").0, Some(log_id::<TypeConfig>(1, 1, 4)));
    assert!(store_b.user("admin").expect("read").is_some());
    assert!(store_b.repo_settings("lib/base").expect("read").public);
    let current = sm_b.get_current_snapshot().await.expect("read").expect("a current snapshot");
    assert_eq!(current.meta, snapshot.meta);

    // Reopened from disk, the follower still knows what it applied and its snapshot.
    drop((sm_b, store_b));
    let (store_b, mut sm_b) = state_machine(b.path());
    assert_eq!(sm_b.applied_state().await.expect("state").0, Some(log_id::<TypeConfig>(1, 1, 4)));
    assert!(sm_b.get_current_snapshot().await.expect("read").is_some());
    assert!(store_b.user("admin").expect("read").is_some());
}
