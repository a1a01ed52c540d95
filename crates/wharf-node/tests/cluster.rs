//! Three managers in one process, each with its own redb files and its own mutual-TLS
//! listener, replicating state-store commands with openraft over Wharf's transport: writes
//! reach every manager, a lost leader is replaced and no acknowledged write is lost, and the
//! Raft routes refuse callers without a manager certificate of the cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use wharf_api::cluster::{HeartbeatReply, JoinResponse, RenewRequest};
use wharf_node::{DataDir, StorageChoice};
use wharf_pki::{Ca, NODE_VALIDITY, NodeIdentity, NodeRole};
use wharf_raft::Applied;
use wharf_store::{
    AccountsCommand, ClusterCommand, Command, LegacyCommand, Origin, ProposeError, ProposerExt, Refusal, Store,
    VersionedCommand,
};

mod support;

use support::*;

fn create_user(name: &str) -> VersionedCommand {
    VersionedCommand::V1(LegacyCommand::CreateUser {
        name: name.into(),
        password_hash: "h".into(),
        admin: false,
        at: 1,
    })
}

fn unversioned(command: VersionedCommand) -> Command {
    command.into_command()
}

async fn wait_for_user(store: &Store, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.user(name).expect("read").is_none() {
        assert!(Instant::now() < deadline, "{name} never reached this manager");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_replicate_and_survive_the_loss_of_the_leader() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut managers, leader) = three_managers(tmp.path()).await;
    let leader_index = managers.iter().position(|m| m.id == leader).expect("leader");

    let written = managers[leader_index].proposer().propose(unversioned(create_user("alice"))).await;
    assert!(written.is_ok(), "{written:?}");
    let again = managers[leader_index].raft().client_write(create_user("alice")).await.expect("write");
    assert!(matches!(again.data, Applied::Refused(wharf_store::Refusal::UserExists(_))), "{:?}", again.data);
    for m in &managers {
        wait_for_user(m.store(), "alice").await;
    }

    // Lose the leader: its Raft stops and its listener closes.
    let mut old = managers.remove(leader_index);
    let killed = Instant::now();
    old.stop().await;
    let rest: Vec<&Manager> = managers.iter().collect();
    let new_leader = leader_among(&rest, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let new_index = managers.iter().position(|m| m.id == new_leader).expect("new leader");
    let written = managers[new_index].proposer().propose(unversioned(create_user("bob"))).await;
    eprintln!("first acknowledged write {:?} after the leader was stopped", killed.elapsed());
    assert!(written.is_ok(), "a write after failover: {written:?}");
    for m in &managers {
        wait_for_user(m.store(), "alice").await;
        wait_for_user(m.store(), "bob").await;
    }

    // A follower forwards to the leader; refusals come back typed. The entry keeps who asked.
    let follower = managers.iter().find(|m| m.id != new_leader).expect("a follower");
    let carol = AccountsCommand::CreateUser { name: "carol".into(), password_hash: "h".into(), admin: false, at: 1 };
    let by = Origin::user("root", Some("10.0.0.9"));
    follower.proposer().propose_by(by.clone(), carol.clone()).await.expect("a write through a follower");
    assert!(matches!(follower.proposer().propose(carol).await, Err(ProposeError::Refused(Refusal::UserExists(_)))));
    for m in &managers {
        wait_for_user(m.store(), "carol").await;
    }

    // Quorum lost: the last manager refuses writes with a clear error instead of hanging.
    let mut lost = managers.remove(new_index);
    lost.stop().await;
    let recorded = origins_in_log(&tmp.path().join(format!("node{}", lost.id)), "carol").await;
    // Two entries: the write, and the repeat that apply refused (it is in the log all the same).
    assert_eq!(recorded, vec![by, Origin::system()], "each entry says who asked for it, and from where");
    let dave = AccountsCommand::CreateUser { name: "dave".into(), password_hash: "h".into(), admin: false, at: 1 };
    let refused = managers[0].proposer().propose(dave).await;
    assert!(matches!(refused, Err(ProposeError::Unavailable(_))), "{refused:?}");
    assert!(managers[0].store().user("dave").expect("read").is_none(), "nothing was applied without a quorum");
    assert!(managers[0].store().user("carol").expect("read").is_some(), "reads still answer (maybe stale)");
}

/// Where a blob lives is replicated state. A manager without a copy reads a blob from its
/// holder over mutual TLS (a part passed through; the whole blob copied while served, verified,
/// and recorded), and when no holder can be read it answers 503 naming it, never 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_without_a_copy_reads_the_blob_from_its_holder_and_keeps_a_copy() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let mut managers = recorded_cluster(&ca, tmp.path(), &[1, 1]).await;

    let (one, two) = (&managers[0].node().registry, &managers[1].node().registry);
    let first = push_blob(one, "lib/app", vec![7u8; 300_000]).await;
    let second = push_blob(one, "lib/app", b"a blob whose holder goes away".to_vec()).await;
    for (digest, _) in [&first, &second] {
        wait_for_blob(managers[1].store(), digest).await;
        for m in &managers {
            assert_eq!(m.store().blob_holders(digest).expect("read"), vec![1], "manager {} knows the holder", m.id);
        }
    }
    assert!(two.open_own_blob(&first.0, None).await.is_err(), "manager 2 has no copy yet");

    // A part is passed through from the holder.
    let part = two.open_blob("lib/app", &first.0, Some("bytes=10-19")).await.expect("a range through manager 2");
    assert_eq!(collect(part.body.expect("body")).await, first.1[10..20]);
    // The whole blob is served and copied, verified, and recorded.
    let whole = two.open_blob("lib/app", &first.0, None).await.expect("through manager 2");
    assert_eq!(collect(whole.body.expect("body")).await, first.1, "the same bytes, all of them");
    let deadline = Instant::now() + Duration::from_secs(10);
    while managers[0].store().blob_holders(&first.0).expect("read") != vec![1, 2] {
        assert!(Instant::now() < deadline, "manager 2 was never recorded as a holder");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(two.open_own_blob(&first.0, None).await.is_ok(), "manager 2 keeps its copy");

    // The holder goes away: the other manager says so, with a 503 naming it.
    let mut holder = managers.remove(0);
    holder.stop().await;
    let refused = managers[0].node().registry.open_blob("lib/app", &second.0, None).await;
    let error = refused.err().expect("no holder can be read");
    assert_eq!(error.status, 503, "never 404 for a blob the cluster holds: {error:?}");
    assert!(error.message.contains(&holder.addr), "the answer names the holder: {}", error.message);
    assert!(managers[0].node().registry.open_blob("lib/app", &first.0, None).await.is_ok(), "its own copy serves");
    for mut m in managers {
        m.stop().await;
    }
}

/// Three managers over one S3 bucket (a real moto server): an upload started through one
/// manager is continued through the others (status, chunks, the final PUT), also after the
/// manager that took its last chunk is stopped; the blob is served by every manager from the
/// bucket with no holders recorded and no copies made, and no segment outlives the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_sharing_s3_continue_each_others_uploads_and_serve_every_blob() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let moto = wharf_testkit::Moto::start();
    moto.create_bucket("wharf");
    let credentials = tmp.path().join("s3-credentials");
    std::fs::write(&credentials, "aws_access_key_id = test\naws_secret_access_key = test-secret\n").expect("write");
    let storage = StorageChoice {
        location: Some(format!("s3://wharf/registry?endpoint={}&retry=3", moto.endpoint())),
        credentials: Some(credentials),
    };
    let mut managers = recorded_cluster_on(&ca, tmp.path(), &[2, 2, 2], &storage).await;
    let leader = managers[0].raft().current_leader().await.expect("a leader");
    let followers: Vec<usize> = (0..3).filter(|&i| managers[i].id != leader).collect();
    let leader = (0..3).find(|&i| managers[i].id == leader).expect("the leader is one of them");
    // Chunks go through a follower, the leader, then the other follower, which then stops.
    let order = [followers[0], leader, followers[1]];
    let order_ids: Vec<u64> = order.iter().map(|&i| managers[i].id).collect();

    let data: Vec<u8> = (0..6 * 1024 * 1024 + 11).map(|i| (i % 241) as u8).collect();
    let digest = wharf_registry::Hasher::digest(wharf_api::Algorithm::Sha256, &data);
    let body = |bytes: &[u8]| -> wharf_blobstore::ByteStream {
        let chunk = bytes::Bytes::from(bytes.to_vec());
        Box::pin(futures::stream::once(async move { Ok(chunk) }))
    };
    let registry = |i: usize| &managers[i].node().registry;
    let id = registry(leader).start_upload("lib/app", wharf_api::Algorithm::Sha256, "alice").await.expect("start");
    let cuts = [0, 1024 * 1024, 5 * 1024 * 1024, data.len()];
    for (through, window) in order.into_iter().zip(cuts.windows(2)) {
        let at = registry(through).upload_status("lib/app", &id).await.expect("status through another manager");
        assert_eq!(at, window[0] as u64, "manager {} sees the bytes so far", managers[through].id);
        let end = registry(through)
            .patch_upload("lib/app", &id, Some(at), body(&data[window[0]..window[1]]))
            .await
            .expect("a chunk through another manager");
        assert_eq!(end, window[1] as u64);
        let stale = registry(leader).patch_upload("lib/app", &id, Some(0), body(b"again")).await;
        assert_eq!(stale.err().map(|e| e.status), Some(416), "a stale chunk is refused wherever it arrives");
    }
    // The manager that took the last chunk goes away; another one finishes the upload.
    let mut gone = managers.remove(followers[1]);
    gone.stop().await;
    let first_follower = managers.iter().position(|m| m.id == order_ids[0]).expect("still running");
    let size = managers[first_follower]
        .node()
        .registry
        .finish_upload("lib/app", &id, &digest, None)
        .await
        .expect("the PUT through a manager that took no chunk since");
    assert_eq!(size, data.len() as u64);
    for m in &managers {
        let read = m.node().registry.open_blob("lib/app", &digest, None).await.expect("served by every manager");
        assert!(collect(read.body.expect("body")).await == data, "manager {} serves the same bytes", m.id);
        let part = m.node().registry.open_blob("lib/app", &digest, Some("bytes=5242870-5242889")).await.expect("range");
        assert_eq!(collect(part.body.expect("body")).await, data[5_242_870..5_242_890]);
        assert_eq!(m.store().blob_holders(&digest).expect("read"), Vec::<u64>::new(), "shared storage: no holders");
    }
    assert_eq!(moto.list("wharf", "registry/uploads/"), Vec::<String>::new(), "no segment outlives its upload");
    assert_eq!(moto.list("wharf", "registry/blobs/").len(), 1, "one object per blob, no copies");
    assert!(!tmp.path().join("node2/blobs").exists(), "nothing is kept on a manager's disk");
    for mut m in managers {
        m.stop().await;
    }
}

/// After a holder is removed, the leader's repair loop copies its blobs to another manager by
/// itself (the membership change wakes it) and forgets the removed holder; a copy corrupted on
/// disk is found by the scrub, deleted and un-recorded, and the next repair copies it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_corrupt_copy_is_replaced_by_the_repair() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let mut managers = recorded_cluster(&ca, tmp.path(), &[2, 2, 2]).await;
    let leader = managers[0].raft().current_leader().await.expect("a leader");
    let at = |managers: &[Manager], id: u64| managers.iter().position(|m| m.id == id).expect("running");
    // Push through the leader: it keeps a copy and has the lowest other manager take one.
    let (digest, data) =
        push_blob(&managers[at(&managers, leader)].node().registry, "lib/app", vec![9u8; 300_000]).await;
    let holders = managers[0].store().blob_holders(&digest).expect("read");
    assert_eq!(holders.len(), 2, "{holders:?}");
    let lost = *holders.iter().find(|h| **h != leader).expect("a holder besides the leader");
    let spare = managers.iter().map(|m| m.id).find(|id| !holders.contains(id)).expect("a manager without a copy");

    // The other holder's machine is gone, and the administrator removes it.
    let mut gone = managers.remove(at(&managers, lost));
    gone.stop().await;
    let remove = ClusterCommand::RemoveNode { id: lost };
    managers[at(&managers, leader)].proposer().propose(remove).await.expect("remove the node");
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = {
        let mut w = vec![leader, spare];
        w.sort_unstable();
        w
    };
    // Every manager has applied the new holder (the scrub below reads the spare's own state).
    while managers.iter().any(|m| m.store().blob_holders(&digest).expect("read") != wanted) {
        assert!(Instant::now() < deadline, "the repair never replaced the removed holder's copy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copy = managers[at(&managers, spare)].node().registry.open_own_blob(&digest, None).await.expect("a copy");
    assert!(collect(copy.body.expect("body")).await == data, "the new copy is the blob");

    // The new copy rots on disk: the scrub finds it, deletes it and says so in the state.
    let file = tmp.path().join(format!("node{spare}/blobs/blobs/sha256/{}/{}", &digest.hex()[..2], digest.hex()));
    let mut rotten = std::fs::read(&file).expect("the copy on disk");
    rotten[1000] ^= 0xff;
    std::fs::write(&file, rotten).expect("corrupt the copy");
    let scrubbed =
        managers[at(&managers, spare)].node().registry.scrub_own_copies(Duration::ZERO).await.expect("scrub");
    assert_eq!((scrubbed.verified, scrubbed.bad), (0, 1));
    assert!(!file.exists(), "the corrupt copy is deleted");
    let deadline = Instant::now() + Duration::from_secs(20);
    while managers[0].store().blob_holders(&digest).expect("read") != vec![leader] {
        assert!(Instant::now() < deadline, "the corrupt copy is still recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sound = managers[at(&managers, leader)].node().registry.scrub_own_copies(Duration::ZERO).await.expect("scrub");
    assert_eq!((sound.verified, sound.bad), (1, 0), "the leader's copy is sound and stays");
    // The next repair pass copies it again: the one run here, or the leader's own, which the
    // changed holders may have started first (then this one finds nothing to do).
    let pass = managers[at(&managers, leader)].node().registry.repair_copies().await.expect("repair");
    assert_eq!((pass.short, pass.lost), (0, 0), "{pass:?}");
    assert!(pass.copied <= 1, "{pass:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while managers[0].store().blob_holders(&digest).expect("read") != wanted {
        assert!(Instant::now() < deadline, "the copy was not made again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copy = managers[at(&managers, spare)].node().registry.open_own_blob(&digest, None).await.expect("a copy");
    assert!(collect(copy.body.expect("body")).await == data, "copied again, whole");
    for mut m in managers {
        m.stop().await;
    }
}

/// A push is acknowledged only once the blob is durable on `min(copies, managers)` managers,
/// and the commit records them all; when too few managers can take a copy the push is refused
/// with 503 and the state does not know the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_acknowledged_once_durable_on_enough_managers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    // Manager 1 acknowledges on 2 nodes, manager 2 on 3 (all of them).
    let mut managers = recorded_cluster(&ca, tmp.path(), &[2, 3, 1]).await;

    let (digest, data) = push_blob(&managers[0].node().registry, "lib/app", vec![3u8; 200_000]).await;
    // Acknowledged: a second manager has its own copy already, before anyone read it there.
    let copy = managers[1].node().registry.open_own_blob(&digest, None).await.expect("a copy on manager 2");
    assert_eq!(collect(copy.body.expect("body")).await, data);
    assert!(managers[2].node().registry.open_own_blob(&digest, None).await.is_err(), "two copies, not three");
    assert_eq!(managers[0].store().blob_holders(&digest).expect("read"), vec![1, 2], "one commit records both");

    // Manager 3 goes away (the other two keep a quorum): manager 2 cannot make its third copy,
    // so its push is not acknowledged.
    let mut third = managers.remove(2);
    third.stop().await;
    let data = b"nowhere to copy it".to_vec();
    let digest = wharf_registry::Hasher::digest(wharf_api::Algorithm::Sha256, &data);
    let chunk = bytes::Bytes::from(data);
    let body: wharf_blobstore::ByteStream = Box::pin(futures::stream::once(async move { Ok(chunk) }));
    let refused = managers[1].node().registry.monolithic_upload("lib/app", &digest, body, "alice").await;
    let error = refused.expect_err("refused");
    assert_eq!(error.status, 503, "{error:?}");
    assert!(error.message.contains("copied to 1 of the 2"), "{}", error.message);
    assert_eq!(managers[1].store().blob_link("lib/app", &digest).expect("read"), None, "the state does not know it");
    for mut m in managers {
        m.stop().await;
    }
}

/// Managers 1..=n (manager `i` acknowledging pushes on `copies[i - 1]` nodes) in one Raft
/// group with a leader, each recorded in the state with its address, as joined managers are.
async fn recorded_cluster(ca: &Arc<Ca>, tmp: &Path, copies: &[u32]) -> Vec<Manager> {
    recorded_cluster_on(ca, tmp, copies, &StorageChoice::default()).await
}

async fn recorded_cluster_on(ca: &Arc<Ca>, tmp: &Path, copies: &[u32], storage: &StorageChoice) -> Vec<Manager> {
    let mut managers = Vec::new();
    for (id, copies) in (1..).zip(copies) {
        managers.push(start_manager_on(ca, tmp, id, *copies, storage.clone()).await);
    }
    let members: BTreeMap<u64, BasicNode> = managers.iter().map(|m| (m.id, BasicNode::new(&m.addr))).collect();
    managers[0].raft().initialize(members).await.expect("initialize");
    let all: Vec<&Manager> = managers.iter().collect();
    leader_among(&all, Duration::from_secs(10)).await;
    for m in &managers {
        let add = ClusterCommand::AddNode { role: "manager".into(), hostname: "h".into(), addr: m.addr.clone(), at: 1 };
        managers[0].proposer().propose(add).await.expect("record the manager");
    }
    managers
}

/// Pushes `data` into `repo` through `registry`; returns its digest and the bytes.
async fn push_blob(registry: &wharf_registry::Registry, repo: &str, data: Vec<u8>) -> (wharf_api::Digest, Vec<u8>) {
    let digest = wharf_registry::Hasher::digest(wharf_api::Algorithm::Sha256, &data);
    let chunk = bytes::Bytes::from(data.clone());
    let body: wharf_blobstore::ByteStream = Box::pin(futures::stream::once(async move { Ok(chunk) }));
    registry.monolithic_upload(repo, &digest, body, "alice").await.expect("push");
    (digest, data)
}

async fn wait_for_blob(store: &Store, digest: &wharf_api::Digest) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.blob_holders(digest).expect("read").is_empty() {
        assert!(Instant::now() < deadline, "the push never reached this manager");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn collect(body: wharf_blobstore::ByteStream) -> Vec<u8> {
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = body.try_collect().await.expect("the whole body");
    chunks.concat()
}

/// The origins of the entries in the (stopped) manager's Raft log that create `user`.
async fn origins_in_log(dir: &Path, user: &str) -> Vec<Origin> {
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    // The stopped manager's last tasks may hold the log's lock a moment longer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = loop {
        match wharf_raft::LogStore::open(&DataDir::new(dir).raft_log()) {
            Ok(log) => break log,
            Err(e) => {
                assert!(Instant::now() < deadline, "open the log: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let entries = log.get_log_reader().await.try_get_log_entries(0..u64::MAX).await.expect("read the log");
    entries
        .into_iter()
        .filter_map(|entry| match entry.payload {
            openraft::EntryPayload::Normal(versioned) => match versioned.to_command() {
                Command::Accounts(AccountsCommand::CreateUser { name, .. }) if name == user => {
                    versioned.origin().cloned()
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A TLS client that trusts the cluster CA and presents `identity`'s certificate (or none).
fn client(ca: &Ca, identity: Option<NodeIdentity>) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let builder = match identity {
        Some(identity) => {
            let key = ca.issue_node(&identity, &[], NODE_VALIDITY).expect("cert");
            builder.use_preconfigured_tls(wharf_pki::node_client_config(&key, ca.cert_pem(), CLUSTER).expect("tls"))
        }
        None => builder.tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("ca")]),
    };
    builder.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_routes_need_a_manager_certificate_of_the_cluster() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let manager = start_manager(&ca, tmp.path(), 1).await;
    let url = format!("https://{}/raft/vote", manager.addr);
    let cases = [
        ("no certificate", None, 401),
        ("a worker", Some(NodeIdentity { node_id: 9, role: NodeRole::Worker, cluster_id: CLUSTER.into() }), 403),
        (
            "another cluster's manager",
            Some(NodeIdentity { node_id: 9, role: NodeRole::Manager, cluster_id: "other".into() }),
            403,
        ),
        (
            "a manager of this cluster, with garbage",
            Some(NodeIdentity { node_id: 2, role: NodeRole::Manager, cluster_id: CLUSTER.into() }),
            400,
        ),
    ];
    for (what, identity, status) in cases {
        let resp = client(&ca, identity).post(&url).body(vec![0xff; 16]).send().await.expect(what);
        assert_eq!(resp.status().as_u16(), status, "{what}");
    }
    // Node 2 is removed: its certificate, still validly signed, is refused from then on.
    for _ in 0..3 {
        let add = ClusterCommand::AddNode { role: "manager".into(), hostname: "h".into(), addr: "a:1".into(), at: 1 };
        manager.store().apply(&add).expect("add node");
    }
    manager.store().apply(&ClusterCommand::RemoveNode { id: 2 }).expect("remove");
    let removed = NodeIdentity { node_id: 2, role: NodeRole::Manager, cluster_id: CLUSTER.into() };
    let resp = client(&ca, Some(removed)).post(&url).body(vec![0xff; 16]).send().await.expect("removed");
    assert_eq!(resp.status().as_u16(), 403, "a removed node's certificate");
    // Node 3 was demoted: its manager certificate no longer opens the Raft routes.
    manager.store().apply(&ClusterCommand::SetNodeRole { id: 3, role: "worker".into() }).expect("demote");
    let demoted = NodeIdentity { node_id: 3, role: NodeRole::Manager, cluster_id: CLUSTER.into() };
    let resp = client(&ca, Some(demoted)).post(&url).body(vec![0xff; 16]).send().await.expect("demoted");
    assert_eq!(resp.status().as_u16(), 403, "a demoted manager's certificate");
}

/// `GET /cluster/blobs/{digest}` serves a manager's own bytes to the other managers of its
/// cluster only.
#[tokio::test]
async fn node_to_node_blob_routes_need_a_manager_certificate_of_the_cluster() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let manager = start_manager(&ca, tmp.path(), 1).await;
    let members = BTreeMap::from([(1, BasicNode::new(&manager.addr))]);
    manager.raft().initialize(members).await.expect("initialize");
    leader_among(&[&manager], Duration::from_secs(10)).await;
    let (digest, data) = push_blob(&manager.node().registry, "lib/app", b"held by manager 1".to_vec()).await;
    let url = format!("https://{}/cluster/blobs/{digest}", manager.addr);
    for _ in 0..3 {
        let add = ClusterCommand::AddNode { role: "manager".into(), hostname: "h".into(), addr: "a:1".into(), at: 1 };
        manager.proposer().propose(add).await.expect("add node");
    }
    manager.proposer().propose(ClusterCommand::RemoveNode { id: 3 }).await.expect("remove");
    let node = |id, role, cluster: &str| Some(NodeIdentity { node_id: id, role, cluster_id: cluster.into() });
    let cases = [
        ("no certificate", None, 401),
        ("a worker", node(9, NodeRole::Worker, CLUSTER), 403),
        ("another cluster's manager", node(2, NodeRole::Manager, "other"), 403),
        ("a removed manager", node(3, NodeRole::Manager, CLUSTER), 403),
        ("a manager of this cluster", node(2, NodeRole::Manager, CLUSTER), 200),
    ];
    for (what, identity, status) in cases {
        let resp = client(&ca, identity).get(&url).send().await.expect(what);
        assert_eq!(resp.status().as_u16(), status, "{what}");
        if status == 200 {
            assert_eq!(resp.bytes().await.expect("body").as_ref(), data.as_slice(), "{what}");
        }
    }
    let manager2 = || client(&ca, node(2, NodeRole::Manager, CLUSTER));
    let unknown = format!("https://{}/cluster/blobs/sha256:{}", manager.addr, "0".repeat(64));
    assert_eq!(manager2().get(&unknown).send().await.expect("unknown").status().as_u16(), 404, "not held here");
    let garbage = format!("https://{}/cluster/blobs/sha256:xyz", manager.addr);
    assert_eq!(manager2().get(&garbage).send().await.expect("garbage").status().as_u16(), 400, "a bad digest");

    // Asking for a copy is for managers of the cluster too, and a bad request records nothing.
    let copy = format!("https://{}/cluster/blobs/sha256:{}/copy", manager.addr, "1".repeat(64));
    let cases = [
        ("no certificate", None, 401),
        ("a worker", node(9, NodeRole::Worker, CLUSTER), 403),
        ("another cluster's manager", node(2, NodeRole::Manager, "other"), 403),
        ("a removed manager", node(3, NodeRole::Manager, CLUSTER), 403),
    ];
    for (what, identity, status) in cases {
        let resp = client(&ca, identity).post(&copy).json(&serde_json::json!({"size": 1})).send().await.expect(what);
        assert_eq!(resp.status().as_u16(), status, "copy request from {what}");
    }
    let resp = manager2().post(&copy).body("not json").send().await.expect("bad body");
    assert_eq!(resp.status().as_u16(), 400, "a copy request that is not JSON");
    let resp = manager2().post(&copy).body(vec![b'x'; 10_000]).send().await.expect("big body");
    assert_eq!(resp.status().as_u16(), 413, "a copy request body over 4 KiB");
    // Node 2's recorded address ("a:1") serves nothing: the copy fails and nothing is kept.
    let resp = manager2().post(&copy).json(&serde_json::json!({"size": 1})).send().await.expect("unreachable");
    assert_eq!(resp.status().as_u16(), 503, "a copy from a caller that cannot be read");
    let wanted: wharf_api::Digest = format!("sha256:{}", "1".repeat(64)).parse().expect("digest");
    assert!(manager.node().registry.open_own_blob(&wanted, None).await.is_err(), "nothing kept");
    assert!(manager.store().blob_holders(&wanted).expect("read").is_empty(), "nothing recorded");
}

async fn wait_for_state(store: &Store, id: u64, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let node = store.node(id).expect("read").expect("node");
        if node.state == state {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} stayed {} instead of becoming {state}", node.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    body: &str,
) -> (u16, Option<T>) {
    let resp = client.post(url).header("content-type", "application/json").body(body.to_owned()).send().await;
    let resp = resp.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (status, serde_json::from_slice(&bytes).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_mark_nodes_ready_and_down_and_renewal_follows_the_recorded_role() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let manager = start_manager(&ca, tmp.path(), 1).await;
    let members: BTreeMap<u64, BasicNode> = [(1, BasicNode::new(&manager.addr))].into_iter().collect();
    manager.raft().initialize(members).await.expect("initialize");
    leader_among(&[&manager], Duration::from_secs(10)).await;
    for (role, addr) in [("manager", manager.addr.as_str()), ("worker", "127.0.0.1:1")] {
        let add = ClusterCommand::AddNode { role: role.into(), hostname: "h".into(), addr: addr.into(), at: 1 };
        manager.proposer().propose(add).await.expect("add node");
    }
    let worker = NodeIdentity { node_id: 2, role: NodeRole::Worker, cluster_id: CLUSTER.into() };
    let as_worker = client(&ca, Some(worker.clone()));
    let beat = format!("https://{}/cluster/heartbeat", manager.addr);
    let (status, reply) = post_json::<HeartbeatReply>(&as_worker, &beat, "").await;
    assert_eq!(status, 200);
    let reply = reply.expect("reply");
    assert_eq!((reply.role.as_str(), reply.raft_member), ("worker", false));
    assert_eq!(reply.managers, vec![manager.addr.clone()]);
    assert_eq!(reply.period_ms, HEARTBEAT.as_millis() as u64);
    wait_for_state(manager.store(), 2, "ready").await;
    // Silent for three periods: down. Heard again: ready.
    wait_for_state(manager.store(), 2, "down").await;
    assert_eq!(post_json::<HeartbeatReply>(&as_worker, &beat, "").await.0, 200);
    wait_for_state(manager.store(), 2, "ready").await;
    // Only node certificates of this cluster may send heartbeats.
    assert_eq!(post_json::<serde_json::Value>(&client(&ca, None), &beat, "").await.0, 401);
    let stranger = NodeIdentity { node_id: 2, role: NodeRole::Worker, cluster_id: "other".into() };
    assert_eq!(post_json::<serde_json::Value>(&client(&ca, Some(stranger)), &beat, "").await.0, 403);

    // Renewal gives a certificate for the recorded role, and records its expiry.
    let renew = format!("https://{}/cluster/renew", manager.addr);
    let request = |csr: String| serde_json::to_string(&RenewRequest { csr_pem: csr, names: Vec::new() }).expect("json");
    let (_, csr) = wharf_pki::new_csr().expect("csr");
    let (status, renewed) = post_json::<JoinResponse>(&as_worker, &renew, &request(csr)).await;
    assert_eq!(status, 200);
    let renewed = renewed.expect("renewed");
    assert!(renewed.manager_secrets.is_none(), "a worker gets no manager keys");
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(renewed.cert_pem.as_bytes()).expect("der");
    let der: rustls_pki_types::CertificateDer = der;
    assert_eq!(wharf_pki::node_identity(&der), Some(worker.clone()));
    assert!(manager.store().node(2).expect("read").expect("node").cert_not_after > 1_700_000_000);
    assert_eq!(post_json::<serde_json::Value>(&as_worker, &renew, &request("garbage".into())).await.0, 400);
    // Promoted in the state: the next heartbeat says so, and renewal gives a manager certificate.
    manager.proposer().propose(ClusterCommand::SetNodeRole { id: 2, role: "manager".into() }).await.expect("promote");
    let (_, reply) = post_json::<HeartbeatReply>(&as_worker, &beat, "").await;
    assert_eq!(reply.expect("reply").role, NodeRole::Manager);
    let (_, csr) = wharf_pki::new_csr().expect("csr");
    let (status, renewed) = post_json::<JoinResponse>(&as_worker, &renew, &request(csr)).await;
    assert_eq!(status, 200);
    let renewed = renewed.expect("renewed");
    assert_eq!(renewed.role, NodeRole::Manager);
    assert!(renewed.manager_secrets.is_some(), "a manager gets the keys every manager holds");
    // A manager demoted in the state gets no worker certificate while it is still in Raft.
    manager.proposer().propose(ClusterCommand::SetNodeRole { id: 1, role: "worker".into() }).await.expect("demote");
    let as_one = client(&ca, Some(NodeIdentity { node_id: 1, role: NodeRole::Manager, cluster_id: CLUSTER.into() }));
    let (_, csr) = wharf_pki::new_csr().expect("csr");
    assert_eq!(post_json::<serde_json::Value>(&as_one, &renew, &request(csr)).await.0, 409);
}

/// `POST /cluster/assignments` as `client`: the node's complete task set, at once.
async fn assignments(client: &reqwest::Client, addr: &str, engine: bool) -> wharf_api::cluster::Assignments {
    let description = engine.then(|| wharf_api::cluster::EngineReport {
        hostname: "h".into(),
        os: "linux".into(),
        architecture: "x86_64".into(),
        nano_cpus: 2_000_000_000,
        memory_bytes: 1 << 32,
        engine_version: "28.0".into(),
        labels: BTreeMap::new(),
    });
    let request = wharf_api::cluster::AssignmentsRequest { known: 0, wait_ms: 0, description };
    let body = serde_json::to_string(&request).expect("json");
    let (status, set) = post_json(client, &format!("https://{addr}/cluster/assignments"), &body).await;
    assert_eq!(status, 200, "assignments");
    set.expect("a task set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gets_only_its_own_tasks_credentials_and_images_and_reports_only_its_own_tasks() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::load_or_create(&tmp.path().join("pki")).expect("ca"));
    let manager = start_manager(&ca, tmp.path(), 1).await;
    let members: BTreeMap<u64, BasicNode> = [(1, BasicNode::new(&manager.addr))].into_iter().collect();
    manager.raft().initialize(members).await.expect("initialize");
    leader_among(&[&manager], Duration::from_secs(10)).await;
    for addr in [manager.addr.as_str(), "127.0.0.1:2", "127.0.0.1:3"] {
        let role = if addr == manager.addr { "manager" } else { "worker" };
        let add = ClusterCommand::AddNode { role: role.into(), hostname: "h".into(), addr: addr.into(), at: 1 };
        manager.proposer().propose(add).await.expect("add node");
    }
    // Workers 2 and 3 beat and describe their engines; the manager's own node has none.
    let worker =
        |id| client(&ca, Some(NodeIdentity { node_id: id, role: NodeRole::Worker, cluster_id: CLUSTER.into() }));
    let (two, three) = (worker(2), worker(3));
    let beat = format!("https://{}/cluster/heartbeat", manager.addr);
    let beating = tokio::spawn({
        let (two, three, beat) = (two.clone(), three.clone(), beat.clone());
        async move {
            loop {
                for node in [&two, &three] {
                    let _ = node.post(&beat).body("").send().await;
                }
                tokio::time::sleep(HEARTBEAT / 4).await;
            }
        }
    });
    for node in [&two, &three] {
        assignments(node, &manager.addr, true).await;
    }
    wait_for_state(manager.store(), 2, "ready").await;
    wait_for_state(manager.store(), 3, "ready").await;

    let spec: wharf_api::docker::ServiceSpec = serde_json::from_str(
        r#"{"Name":"app","Mode":{"Replicated":{"Replicas":1}},
            "TaskTemplate":{"ContainerSpec":{"Image":"registry.example:5000/team/app:1"}}}"#,
    )
    .expect("spec");
    let auth = wharf_api::docker::RegistryAuth {
        username: "ci".into(),
        password: "registry-password-42".into(),
        serveraddress: "registry.example:5000".into(),
        ..Default::default()
    };
    let admin = wharf_manager::Caller { name: "admin".into(), admin: true, origin: Origin::system() };
    let node = &manager.node().manager;
    node.create_service(&admin, spec, Some(auth.clone())).await.expect("create the service");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (holder, other, task) = loop {
        let (a, b) = (assignments(&two, &manager.addr, false).await, assignments(&three, &manager.addr, false).await);
        match (a.tasks.first(), b.tasks.first()) {
            (Some(task), None) => break (&two, &three, task.clone()),
            (None, Some(task)) => break (&three, &two, task.clone()),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the task was never placed on one worker");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The credentials go to the task's node only, in its assignment.
    assert_eq!(task.registry_auth.as_ref(), Some(&auth));
    assert!(assignments(other, &manager.addr, false).await.tasks.is_empty());
    assert!(
        !node.inspect_service(&admin, "app").map(|s| format!("{s:?}")).expect("inspect").contains("registry-password")
    );

    // A registry token: for the repositories its tasks name, and nothing else.
    let token = format!("https://{}/cluster/registry-token", manager.addr);
    let ask = |repos: &[&str]| serde_json::json!({ "repositories": repos }).to_string();
    assert_eq!(post_json::<serde_json::Value>(holder, &token, &ask(&["team/app"])).await.0, 200);
    assert_eq!(post_json::<serde_json::Value>(holder, &token, &ask(&["team/app", "team/other"])).await.0, 403);
    assert_eq!(post_json::<serde_json::Value>(other, &token, &ask(&["team/app"])).await.0, 403);

    // Another node's report of the task changes nothing; its own node's does.
    let report = |state: &str| {
        let report = wharf_api::cluster::TaskReportWire {
            id: task.id.clone(),
            state: state.into(),
            message: "started".into(),
            err: String::new(),
            container_id: "c1".into(),
            exit_code: 0,
            ports: Vec::new(),
        };
        serde_json::to_string(&wharf_api::cluster::TaskReports { reports: vec![report] }).expect("json")
    };
    let tasks = format!("https://{}/cluster/tasks", manager.addr);
    assert_eq!(post_json::<serde_json::Value>(other, &tasks, &report("running")).await.0, 200);
    let state = |store: &Store| store.task(&task.id).expect("read").expect("task").status.state;
    assert_ne!(state(manager.store()), wharf_store::TaskState::Running, "another node's report was taken");
    assert_eq!(post_json::<serde_json::Value>(holder, &tasks, &report("running")).await.0, 200);
    assert_eq!(state(manager.store()), wharf_store::TaskState::Running);
    // A state a node may not report is refused.
    assert_eq!(post_json::<serde_json::Value>(holder, &tasks, &report("assigned")).await.0, 400);
    beating.abort();
}
