//! Behaviour of the state machine through its public commands and reads.

use wharf_api::{Algorithm, Digest};
use wharf_store::{
    AccountsCommand, ClusterCommand, Command, Outcome, PutManifest, Refusal, RegistryCommand, SessionKind,
    SessionRecord, SessionRecordCommand, Store, StoreError, UploadSegment,
};

fn d(n: u8) -> Digest {
    Digest::from_bytes(Algorithm::Sha256, &[n; 32])
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open");
    (dir, store)
}

fn upload(store: &Store, id: &str, repo: &str, digest: Digest) {
    store
        .apply(&RegistryCommand::StartUpload { id: id.into(), repo: repo.into(), algorithm: Algorithm::Sha256, at: 1 })
        .expect("start");
    let out = store.apply(&RegistryCommand::CommitUpload { id: id.into(), digest, size: 10 }).expect("commit");
    assert_eq!(out, Outcome::UploadCommitted { repo: repo.into() });
}

fn manifest(repo: &str, digest: Digest, blobs: Vec<Digest>, tags: &[&str], subject: Option<Digest>) -> Command {
    RegistryCommand::PutManifest(Box::new(PutManifest {
        repo: repo.into(),
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: b"{}".to_vec(),
        blobs,
        manifests: vec![],
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        referrer_descriptor: subject.as_ref().map(|_| b"{\"d\":1}".to_vec()),
        subject,
        at: 2,
    }))
    .into()
}

#[test]
fn upload_commit_links_blob_into_repo_only() {
    let (_dir, store) = open();
    upload(&store, "u1", "a/b", d(1));
    assert_eq!(store.blob_link("a/b", &d(1)).expect("read"), Some(10));
    assert_eq!(store.blob_link("other", &d(1)).expect("read"), None);
    assert_eq!(store.blob_size(&d(1)).expect("read"), Some(10));
    assert!(store.upload("u1").expect("read").is_none(), "session closed");
    assert!(matches!(
        store.apply(&RegistryCommand::CommitUpload { id: "u1".into(), digest: d(1), size: 10 }),
        Err(StoreError::Refused(Refusal::UploadUnknown(_)))
    ));
}

#[test]
fn manifest_with_missing_blobs_is_refused_and_changes_nothing() {
    let (_dir, store) = open();
    upload(&store, "u1", "r", d(1));
    let err = store.apply(manifest("r", d(9), vec![d(1), d(2)], &["v1"], None)).expect_err("refused");
    assert!(matches!(err, StoreError::Refused(Refusal::ManifestBlobUnknown(ref m)) if m == &vec![d(2)]));
    assert_eq!(store.tag("r", "v1").expect("read"), None);
    assert!(store.manifest("r", &d(9)).expect("read").is_none());
}

#[test]
fn tags_and_catalog_page_in_lexical_order() {
    let (_dir, store) = open();
    upload(&store, "u1", "r", d(1));
    store.apply(manifest("r", d(9), vec![d(1)], &["c", "a", "b", "d"], None)).expect("put");
    upload(&store, "u2", "r2", d(1));
    upload(&store, "u3", "q", d(1));
    let p = store.tags("r", None, 2).expect("tags");
    assert_eq!((p.items.as_slice(), p.more), (&["a".to_owned(), "b".to_owned()][..], true));
    let p = store.tags("r", Some("b"), 10).expect("tags");
    assert_eq!((p.items.as_slice(), p.more), (&["c".to_owned(), "d".to_owned()][..], false));
    assert!(store.tags("r2", None, 10).expect("tags").items.is_empty(), "repos do not bleed into each other");
    let c = store.catalog(None, 10).expect("catalog");
    assert_eq!(c.items, vec!["q", "r", "r2"]);
    let c = store.catalog(Some("q"), 1).expect("catalog");
    assert_eq!((c.items, c.more), (vec!["r".to_owned()], true));
}

#[test]
fn delete_manifest_removes_its_tags_and_referrer_entry() {
    let (_dir, store) = open();
    upload(&store, "u1", "r", d(1));
    store.apply(manifest("r", d(9), vec![d(1)], &["v1", "v2"], None)).expect("put");
    store.apply(manifest("r", d(8), vec![d(1)], &["v3"], Some(d(9)))).expect("put referrer");
    assert_eq!(store.referrers("r", &d(9)).expect("referrers").len(), 1);
    let out = store.apply(&RegistryCommand::DeleteManifest { repo: "r".into(), digest: d(9) }).expect("delete");
    assert_eq!(out, Outcome::ManifestDeleted { tags: vec!["v1".into(), "v2".into()] });
    assert_eq!(store.tag("r", "v3").expect("read"), Some(d(8)), "other tags stay");
    store.apply(&RegistryCommand::DeleteManifest { repo: "r".into(), digest: d(8) }).expect("delete referrer");
    assert!(store.referrers("r", &d(9)).expect("referrers").is_empty());
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    {
        let store = Store::open(&path).expect("open");
        upload(&store, "u1", "r", d(1));
        store.apply(manifest("r", d(9), vec![d(1)], &["v1"], None)).expect("put");
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.tag("r", "v1").expect("read"), Some(d(9)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    /// Two stores that apply the same commands agree on every read: the state machine is
    /// deterministic, as replication needs.
    #[test]
    fn same_commands_same_state(ops in proptest::collection::vec((0u8..4, 0u8..4, 0u8..3), 1..30)) {
        let (_d1, a) = open();
        let (_d2, b) = open();
        for (i, (kind, x, y)) in ops.iter().enumerate() {
            let repo = format!("r{y}");
            let cmd: Command = match kind {
                0 => RegistryCommand::StartUpload { id: format!("u{i}"), repo, algorithm: Algorithm::Sha256, at: 1 }.into(),
                1 => RegistryCommand::LinkBlob { repo, digest: d(*x), size: 3 }.into(),
                2 => manifest(&repo, d(10 + x), vec![d(*x)], &["t"], Some(d(*y))),
                _ => RegistryCommand::DeleteManifest { repo, digest: d(10 + x) }.into(),
            };
            let ra = a.apply(&cmd).map_err(|e| e.to_string());
            let rb = b.apply(&cmd).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(ra, rb);
        }
        for y in 0..3 {
            let repo = format!("r{y}");
            proptest::prop_assert_eq!(a.tags(&repo, None, 100).expect("a"), b.tags(&repo, None, 100).expect("b"));
            proptest::prop_assert_eq!(a.referrers(&repo, &d(y)).expect("a"), b.referrers(&repo, &d(y)).expect("b"));
        }
        proptest::prop_assert_eq!(a.catalog(None, 100).expect("a"), b.catalog(None, 100).expect("b"));
    }
}

#[test]
fn large_tag_lists_stay_current_through_the_cache() {
    let (_dir, store) = open();
    upload(&store, "u1", "big", d(1));
    let tags: Vec<String> = (0..600).map(|i| format!("t{i:04}")).collect();
    for batch in tags.chunks(64) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        store.apply(manifest("big", d(9), vec![d(1)], &refs, None)).expect("put");
    }
    let all = store.tags("big", None, usize::MAX).expect("tags");
    assert_eq!(all.items, tags, "first read fills the cache");
    let page = store.tags("big", Some("t0100"), 3).expect("page");
    assert_eq!((page.items, page.more), (vec!["t0101".to_owned(), "t0102".to_owned(), "t0103".to_owned()], true));
    store.apply(&RegistryCommand::DeleteTag { repo: "big".into(), tag: "t0101".into() }).expect("untag");
    let page = store.tags("big", Some("t0100"), 2).expect("page");
    assert_eq!(page.items, vec!["t0102".to_owned(), "t0103".to_owned()], "a deleted tag leaves the cached list");
    store.apply(manifest("big", d(9), vec![d(1)], &["t0101a"], None)).expect("tag");
    let page = store.tags("big", Some("t0101"), 1).expect("page");
    assert_eq!(page.items, vec!["t0101a".to_owned()], "a new tag appears in the cached list");
    let last = store.tags("big", Some("t0599"), 10).expect("page");
    assert_eq!((last.items.len(), last.more), (0, false));
    store.apply(&RegistryCommand::DeleteManifest { repo: "big".into(), digest: d(9) }).expect("delete");
    assert!(store.tags("big", None, usize::MAX).expect("tags").items.is_empty());
}

#[test]
fn a_batch_gives_each_command_its_sequential_result() {
    let (_d1, batched) = open();
    let (_d2, sequential) = open();
    let commands: Vec<Command> = vec![
        RegistryCommand::StartUpload { id: "u1".into(), repo: "r".into(), algorithm: Algorithm::Sha256, at: 1 }.into(),
        RegistryCommand::CommitUpload { id: "u1".into(), digest: d(1), size: 10 }.into(),
        RegistryCommand::CommitUpload { id: "u1".into(), digest: d(1), size: 10 }.into(),
        manifest("r", d(9), vec![d(1)], &["v1"], None),
        manifest("r", d(8), vec![d(2)], &["v2"], None),
        RegistryCommand::DeleteTag { repo: "r".into(), tag: "nope".into() }.into(),
        RegistryCommand::DeleteTag { repo: "r".into(), tag: "v1".into() }.into(),
    ];
    let got: Vec<_> = batched.apply_batch(&commands).into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
    let want: Vec<_> = commands.iter().map(|c| sequential.apply(c).map_err(|e| e.to_string())).collect();
    assert_eq!(got, want);
    assert!(got[2].is_err() && got[4].is_err() && got[5].is_err(), "refusals are reported");
    assert_eq!(batched.tag("r", "v1").expect("read"), None);
    assert_eq!(batched.blob_link("r", &d(1)).expect("read"), Some(10));
    assert!(batched.manifest("r", &d(8)).expect("read").is_none(), "a refused manifest wrote nothing");
}

fn create_user(store: &Store, name: &str, admin: bool) {
    let cmd = AccountsCommand::CreateUser { name: name.into(), password_hash: format!("hash-{name}"), admin, at: 5 };
    store.apply(&cmd).expect("create user");
}

fn session(store: &Store, id: &str, user: &str, kind: SessionKind, expires: u64) -> Result<Outcome, StoreError> {
    let session = SessionRecord { user: user.into(), kind, created: 5, expires, client: "test".into() };
    store.apply(AccountsCommand::CreateSession(Box::new(SessionRecordCommand { id: id.into(), session })))
}

#[test]
fn accounts_are_created_once_and_keep_the_last_admin() {
    let (_dir, store) = open();
    create_user(&store, "admin", true);
    let again = AccountsCommand::CreateUser { name: "admin".into(), password_hash: "x".into(), admin: false, at: 6 };
    assert!(matches!(store.apply(&again), Err(StoreError::Refused(Refusal::UserExists(_)))));
    assert_eq!(store.user("admin").expect("read").expect("exists").password_hash, "hash-admin");
    let disable = AccountsCommand::SetUserDisabled { name: "admin".into(), disabled: true };
    assert!(matches!(store.apply(&disable), Err(StoreError::Refused(Refusal::LastAdmin))));
    assert!(matches!(
        store.apply(&AccountsCommand::DeleteUser { name: "admin".into() }),
        Err(StoreError::Refused(Refusal::LastAdmin))
    ));
    create_user(&store, "root2", true);
    store.apply(&disable).expect("another admin remains");
    assert!(store.user("admin").expect("read").expect("exists").disabled);
    assert!(matches!(
        store.apply(&AccountsCommand::DeleteUser { name: "root2".into() }),
        Err(StoreError::Refused(Refusal::LastAdmin))
    ));
    assert_eq!(store.users().expect("list").len(), 2);
}

#[test]
fn disabling_or_new_password_ends_sessions_and_refuses_new_ones() {
    let (_dir, store) = open();
    create_user(&store, "admin", true);
    create_user(&store, "bob", false);
    session(&store, "s1", "bob", SessionKind::Api, 100).expect("session");
    session(&store, "s2", "bob", SessionKind::Refresh, 100).expect("refresh");
    session(&store, "s3", "admin", SessionKind::Api, 100).expect("admin session");
    assert_eq!(store.sessions_of("bob").expect("list").len(), 2);
    let generation = store.access_generation();
    let out = store.apply(&AccountsCommand::SetUserDisabled { name: "bob".into(), disabled: true }).expect("disable");
    assert_eq!(out, Outcome::SessionsEnded { count: 2 });
    assert!(store.access_generation() > generation, "caches must notice");
    assert!(store.session("s1").expect("read").is_none());
    assert!(store.sessions_of("bob").expect("list").is_empty());
    assert!(matches!(
        session(&store, "s4", "bob", SessionKind::Api, 100),
        Err(StoreError::Refused(Refusal::UserDisabled(_)))
    ));
    assert!(matches!(
        session(&store, "s5", "nobody", SessionKind::Api, 100),
        Err(StoreError::Refused(Refusal::UserUnknown(_)))
    ));
    let out =
        store.apply(&AccountsCommand::SetPassword { name: "admin".into(), password_hash: "new".into() }).expect("pw");
    assert_eq!(out, Outcome::SessionsEnded { count: 1 });
    assert_eq!(store.user("admin").expect("read").expect("exists").password_hash, "new");
}

#[test]
fn expired_sessions_are_purged_and_deleted_users_lose_theirs() {
    let (_dir, store) = open();
    create_user(&store, "admin", true);
    create_user(&store, "bob", false);
    session(&store, "old", "bob", SessionKind::Api, 10).expect("session");
    session(&store, "new", "bob", SessionKind::Api, 1000).expect("session");
    assert_eq!(
        store.apply(&AccountsCommand::PurgeSessions { now: 10 }).expect("purge"),
        Outcome::SessionsEnded { count: 1 }
    );
    assert!(store.session("old").expect("read").is_none());
    assert_eq!(store.session("new").expect("read").expect("kept").expires, 1000);
    store.apply(&AccountsCommand::DeleteSession { id: "new".into() }).expect("logout");
    assert!(matches!(
        store.apply(&AccountsCommand::DeleteSession { id: "new".into() }),
        Err(StoreError::Refused(Refusal::SessionUnknown))
    ));
    session(&store, "again", "bob", SessionKind::Refresh, 1000).expect("session");
    store.apply(&AccountsCommand::DeleteUser { name: "bob".into() }).expect("delete");
    assert!(store.session("again").expect("read").is_none());
    assert!(store.user("bob").expect("read").is_none());
}

#[test]
fn repositories_are_private_until_made_public() {
    let (_dir, store) = open();
    assert!(!store.repo_settings("a/b").expect("read").public);
    store.apply(&AccountsCommand::SetRepoPublic { repo: "a/b".into(), public: true }).expect("public");
    assert!(store.repo_settings("a/b").expect("read").public);
    assert!(!store.repo_settings("a").expect("read").public);
}

#[test]
fn a_repository_accepts_sparse_manifests_only_once_allowed_and_keeps_its_visibility() {
    let (_dir, store) = open();
    store.apply(&AccountsCommand::SetRepoPublic { repo: "r".into(), public: true }).expect("public");
    let sparse = || manifest("r", d(9), vec![d(1)], &["v1"], None);
    let refused = store.apply(sparse()).expect_err("refused by default");
    assert!(matches!(refused, StoreError::Refused(Refusal::ManifestBlobUnknown(_))), "{refused}");
    store.apply(&AccountsCommand::SetRepoSparseManifests { repo: "r".into(), allowed: true }).expect("allow");
    let settings = store.repo_settings("r").expect("read");
    assert!(settings.sparse_manifests && settings.public, "one setting does not reset the other: {settings:?}");
    store.apply(sparse()).expect("accepted once allowed");
    assert_eq!(store.tag("r", "v1").expect("read"), Some(d(9)));
    assert!(!store.repo_settings("other").expect("read").sparse_manifests, "per repository");
    let elsewhere = store.apply(manifest("other", d(9), vec![d(1)], &[], None)).expect_err("other repository");
    assert!(matches!(elsewhere, StoreError::Refused(Refusal::ManifestBlobUnknown(_))));
    store.apply(&AccountsCommand::SetRepoPublic { repo: "r".into(), public: false }).expect("private");
    let settings = store.repo_settings("r").expect("read");
    assert!(settings.sparse_manifests && !settings.public, "{settings:?}");
}

/// A store with some of everything: blobs, manifests with tags and a referrer, an upload, an
/// account with a session, a public repository.
fn populated() -> (tempfile::TempDir, Store) {
    let (dir, store) = open();
    upload(&store, "u1", "a/b", d(1));
    store.apply(manifest("a/b", d(9), vec![d(1)], &["v1", "latest"], None)).expect("manifest");
    store.apply(manifest("a/b", d(8), vec![], &[], Some(d(9)))).expect("referrer");
    store
        .apply(&RegistryCommand::StartUpload {
            id: "open".into(),
            repo: "c".into(),
            algorithm: Algorithm::Sha512,
            at: 3,
        })
        .expect("open upload");
    create_user(&store, "admin", true);
    session(&store, "s1", "admin", SessionKind::Refresh, 99).expect("session");
    store.apply(&AccountsCommand::SetRepoPublic { repo: "a/b".into(), public: true }).expect("public");
    commit_on(&store, "u2", "a/b", d(2), 3);
    let segment =
        RegistryCommand::AddUploadSegment { id: "open".into(), start: 0, len: 7, key: "uploads/open/0".into() };
    store.apply(&segment).expect("segment");
    (dir, store)
}

/// Uploads blob `digest` into `repo` through node `node`.
fn commit_on(store: &Store, id: &str, repo: &str, digest: Digest, node: u64) {
    store
        .apply(&RegistryCommand::StartUpload { id: id.into(), repo: repo.into(), algorithm: Algorithm::Sha256, at: 1 })
        .expect("start");
    let out = store
        .apply(&RegistryCommand::CommitUploadOn { id: id.into(), digest, size: 10, holders: vec![node] })
        .expect("commit");
    assert_eq!(out, Outcome::UploadCommitted { repo: repo.into() });
}

#[test]
fn a_blob_committed_on_a_node_records_that_node_as_a_holder() {
    let (_dir, store) = open();
    commit_on(&store, "u1", "a", d(1), 2);
    commit_on(&store, "u2", "b", d(1), 1);
    upload(&store, "u3", "c", d(3));
    assert_eq!(store.blob_holders(&d(1)).expect("read"), vec![1, 2], "every node that committed a copy");
    assert_eq!(store.blob_link("b", &d(1)).expect("read"), Some(10));
    assert_eq!(store.blob_holders(&d(3)).expect("read"), Vec::<u64>::new(), "a commit of no node records none");
    assert_eq!(store.blob_holders(&d(4)).expect("read"), Vec::<u64>::new());
    let again =
        store.apply(&RegistryCommand::CommitUploadOn { id: "u1".into(), digest: d(1), size: 10, holders: vec![3] });
    assert!(matches!(again, Err(StoreError::Refused(Refusal::UploadUnknown(_)))));
    assert_eq!(store.blob_holders(&d(1)).expect("read"), vec![1, 2], "a refused commit records no holder");
}

#[test]
fn an_upload_in_shared_storage_grows_one_agreed_segment_at_a_time() {
    let (_dir, store) = open();
    let segment = |id: &str, start: u64, len: u64, key: &str| RegistryCommand::AddUploadSegment {
        id: id.into(),
        start,
        len,
        key: key.into(),
    };
    assert!(matches!(store.apply(segment("nope", 0, 1, "k")), Err(StoreError::Refused(Refusal::UploadUnknown(_)))));
    assert_eq!(store.upload_segments("nope").expect("read"), None);
    store
        .apply(&RegistryCommand::StartUpload { id: "u".into(), repo: "r".into(), algorithm: Algorithm::Sha256, at: 1 })
        .expect("start");
    assert_eq!(store.upload_segments("u").expect("read"), Some(vec![]));
    store.apply(segment("u", 0, 5, "k0")).expect("first segment");
    for stale in [0, 4, 6] {
        let refused = store.apply(segment("u", stale, 3, "lost"));
        assert!(
            matches!(&refused, Err(StoreError::Refused(Refusal::UploadOffset { actual: 5, .. }))),
            "a segment at {stale} of a 5-byte upload: {refused:?}"
        );
    }
    store.apply(segment("u", 5, 3, "k5")).expect("second segment");
    assert_eq!(
        store.upload_segments("u").expect("read"),
        Some(vec![
            UploadSegment { start: 0, len: 5, key: "k0".into() },
            UploadSegment { start: 5, len: 3, key: "k5".into() }
        ])
    );
    store.apply(&RegistryCommand::CommitUpload { id: "u".into(), digest: d(1), size: 8 }).expect("commit");
    assert_eq!(store.upload_segments("u").expect("read"), None, "a committed upload has no segments left");
    store
        .apply(&RegistryCommand::StartUpload { id: "u".into(), repo: "r".into(), algorithm: Algorithm::Sha256, at: 2 })
        .expect("the same id again");
    assert_eq!(store.upload_segments("u").expect("read"), Some(vec![]), "and a new one starts empty");
}

#[test]
fn blobs_are_read_a_page_at_a_time_with_their_holders_and_holders_can_be_forgotten() {
    let (_dir, store) = open();
    commit_on(&store, "u1", "a", d(1), 1);
    commit_on(&store, "u2", "a", d(2), 2);
    commit_on(&store, "u3", "b", d(1), 3);
    upload(&store, "u4", "c", d(3));
    let first = store.blobs_with_holders(None, 2).expect("page");
    assert_eq!(first.len(), 2);
    assert_eq!(
        (first[0].digest.as_str(), first[0].size, &first[0].holders),
        (d(1).to_string().as_str(), 10, &vec![1, 3])
    );
    let rest = store.blobs_with_holders(Some(&first[1].digest), 10).expect("page");
    assert_eq!(rest.len(), 1, "the page after the last one read");
    assert_eq!(rest[0].holders, Vec::<u64>::new(), "a blob no node committed has no holders");
    store.apply(RegistryCommand::RemoveBlobHolder { digest: d(1), node: 3 }).expect("forget");
    store.apply(RegistryCommand::RemoveBlobHolder { digest: d(1), node: 3 }).expect("forgetting again is no error");
    assert_eq!(store.blob_holders(&d(1)).expect("read"), vec![1]);
    assert_eq!(store.blob_link("b", &d(1)).expect("read"), Some(10), "the blob itself stays");
}

#[test]
fn a_snapshot_carries_the_whole_state_and_replaces_the_old() {
    let (_d1, source) = populated();
    let mut snapshot = Vec::new();
    source.export(&mut snapshot).expect("export");
    let (_d2, target) = open();
    upload(&target, "other", "stale/repo", d(5));
    target.import(&mut snapshot.as_slice(), b"marker-1").expect("import");
    assert_eq!(target.applied_marker().expect("marker"), Some(b"marker-1".to_vec()));
    assert!(!target.repo_exists("stale/repo").expect("read"), "the old state is gone");
    assert_eq!(target.catalog(None, 10).expect("catalog").items, vec!["a/b".to_owned()]);
    assert_eq!(target.tags("a/b", None, 10).expect("tags").items, vec!["latest".to_owned(), "v1".to_owned()]);
    assert_eq!(target.manifest("a/b", &d(9)).expect("read"), source.manifest("a/b", &d(9)).expect("read"));
    assert_eq!(target.referrers("a/b", &d(9)).expect("read"), source.referrers("a/b", &d(9)).expect("read"));
    assert_eq!(target.blob_link("a/b", &d(1)).expect("read"), Some(10));
    assert_eq!(target.upload("open").expect("read"), source.upload("open").expect("read"));
    assert_eq!(target.user("admin").expect("read"), source.user("admin").expect("read"));
    assert_eq!(target.sessions_of("admin").expect("read"), source.sessions_of("admin").expect("read"));
    assert!(target.repo_settings("a/b").expect("read").public);
    assert_eq!(target.blob_holders(&d(2)).expect("read"), vec![3], "where blobs live travels too");
    assert_eq!(
        target.upload_segments("open").expect("read"),
        Some(vec![UploadSegment { start: 0, len: 7, key: "uploads/open/0".into() }])
    );
    let mut again = Vec::new();
    target.export(&mut again).expect("export");
    assert_eq!(again, snapshot, "export after import is byte-identical");
}

#[test]
fn a_broken_snapshot_changes_nothing() {
    let (_d1, source) = populated();
    let mut snapshot = Vec::new();
    source.export(&mut snapshot).expect("export");
    let (_d2, target) = open();
    upload(&target, "mine", "kept/repo", d(5));
    for broken in [&snapshot[..snapshot.len() - 3], &snapshot[..10], b"not a snapshot at all".as_slice()] {
        assert!(target.import(&mut &broken[..], b"m").is_err());
        assert!(target.repo_exists("kept/repo").expect("read"), "the old state survives");
        assert_eq!(target.applied_marker().expect("marker"), None);
    }
}

#[test]
fn marked_batches_record_the_marker_with_the_commands() {
    let (_dir, store) = open();
    assert_eq!(store.applied_marker().expect("marker"), None);
    let commands: Vec<Command> = vec![
        RegistryCommand::StartUpload { id: "u".into(), repo: "r".into(), algorithm: Algorithm::Sha256, at: 1 }.into(),
        RegistryCommand::CancelUpload { id: "missing".into() }.into(),
        RegistryCommand::CommitUpload { id: "u".into(), digest: d(3), size: 4 }.into(),
    ];
    let results = store.apply_marked(&commands, b"applied-3").expect("batch");
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(
        matches!(results[1], Err(StoreError::Refused(Refusal::UploadUnknown(_)))),
        "a refusal does not stop the batch"
    );
    assert_eq!(store.blob_link("r", &d(3)).expect("read"), Some(4));
    assert_eq!(store.applied_marker().expect("marker"), Some(b"applied-3".to_vec()));
    store.apply_marked(&[], b"applied-4").expect("empty batch");
    assert_eq!(store.applied_marker().expect("marker"), Some(b"applied-4".to_vec()));
}

#[test]
fn node_ids_are_handed_out_in_order_and_never_reused() {
    let (_dir, store) = open();
    let add =
        |role: &str| ClusterCommand::AddNode { role: role.into(), hostname: "h".into(), addr: "a:1".into(), at: 1 };
    assert_eq!(store.apply(add("manager")).expect("add"), Outcome::NodeAdded { id: 1 });
    assert_eq!(store.apply(add("worker")).expect("add"), Outcome::NodeAdded { id: 2 });
    store.apply(&ClusterCommand::RemoveNode { id: 2 }).expect("remove");
    assert!(matches!(
        store.apply(&ClusterCommand::RemoveNode { id: 9 }),
        Err(StoreError::Refused(Refusal::NodeUnknown(9)))
    ));
    assert_eq!(store.apply(add("worker")).expect("add"), Outcome::NodeAdded { id: 3 }, "2 is not given again");
    let nodes = store.nodes().expect("nodes");
    assert_eq!(nodes.len(), 3);
    assert!(nodes[1].1.removed && !nodes[2].1.removed);
    store.apply(&ClusterCommand::InitCluster { cluster_id: "c1".into() }).expect("init");
    store.apply(&ClusterCommand::InitCluster { cluster_id: "c2".into() }).expect("init again");
    assert_eq!(store.cluster_id().expect("read"), Some("c1".into()), "the id is set once");
    store.apply(&ClusterCommand::SetJoinToken { role: "worker".into(), token: "abc".into() }).expect("token");
    assert_eq!(store.legacy_join_token("worker").expect("read"), Some("abc".into()));
    assert_eq!(store.legacy_join_token("manager").expect("read"), None);
    // A sealed token replaces one an earlier version kept in clear.
    store.apply(&ClusterCommand::SetSealedJoinToken { role: "worker".into(), sealed: vec![1, 2, 3] }).expect("sealed");
    assert_eq!(store.legacy_join_token("worker").expect("read"), None, "the token in clear is gone");
    assert_eq!(store.sealed_join_token("worker").expect("read"), Some(vec![1, 2, 3]));
    assert_eq!(store.sealed_join_token("manager").expect("read"), None);
    // Cluster state travels in snapshots too.
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_d2, other) = open();
    other.import(&mut snapshot.as_slice(), b"m").expect("import");
    assert_eq!(other.nodes().expect("nodes"), nodes);
    assert_eq!(other.sealed_join_token("worker").expect("read"), Some(vec![1, 2, 3]));
    assert_eq!(other.apply(add("manager")).expect("add"), Outcome::NodeAdded { id: 4 });
}

#[test]
fn node_role_state_and_certificate_are_recorded_until_removal() {
    let (_dir, store) = open();
    let add = ClusterCommand::AddNode { role: "worker".into(), hostname: "h".into(), addr: "a:1".into(), at: 10 };
    store.apply(&add).expect("add");
    // Another manager, so that node 1 is not the last manager when it is removed.
    let other = ClusterCommand::AddNode { role: "manager".into(), hostname: "m".into(), addr: "m:1".into(), at: 10 };
    store.apply(&other).expect("add a manager");
    let node = store.node(1).expect("read").expect("node");
    assert_eq!((node.state.as_str(), node.state_since, node.cert_not_after), ("unknown", 10, 0));
    store.apply(&ClusterCommand::SetNodeState { id: 1, state: "ready".into(), at: 20 }).expect("ready");
    store.apply(&ClusterCommand::SetNodeState { id: 1, state: "ready".into(), at: 30 }).expect("ready again");
    store.apply(&ClusterCommand::SetNodeRole { id: 1, role: "manager".into() }).expect("promote");
    store.apply(&ClusterCommand::SetNodeCert { id: 1, not_after: 99 }).expect("cert");
    let node = store.node(1).expect("read").expect("node");
    assert_eq!(node.state, "ready");
    assert_eq!(node.state_since, 20, "a repeated state keeps the time it began");
    assert_eq!((node.role.as_str(), node.cert_not_after), ("manager", 99));
    store.apply(&ClusterCommand::RemoveNode { id: 1 }).expect("remove");
    store.apply(&ClusterCommand::RemoveNode { id: 1 }).expect("removing twice changes nothing");
    for change in [
        ClusterCommand::SetNodeState { id: 1, state: "down".into(), at: 40 },
        ClusterCommand::SetNodeRole { id: 1, role: "worker".into() },
        ClusterCommand::SetNodeCert { id: 1, not_after: 100 },
    ] {
        assert!(
            matches!(store.apply(&change), Err(StoreError::Refused(Refusal::NodeUnknown(1)))),
            "{change}: a removed node stays"
        );
    }
    let node = store.node(1).expect("read").expect("node");
    assert_eq!((node.removed, node.role.as_str(), node.state.as_str()), (true, "manager", "ready"));
}

#[test]
fn lazy_batches_apply_like_durable_ones_and_snapshots_carry_them() {
    let (_dir, store) = open();
    let (_d2, eager) = open();
    let batch = |i: u8| {
        vec![Command::from(AccountsCommand::CreateUser {
            name: format!("u{i}"),
            password_hash: "h".into(),
            admin: false,
            at: 1,
        })]
    };
    for i in 0..100u8 {
        let marker = [i];
        let lazy = store.apply_marked_lazily(&batch(i % 50), &marker).expect("lazy");
        let durable = eager.apply_marked(&batch(i % 50), &marker).expect("durable");
        assert_eq!(format!("{lazy:?}"), format!("{durable:?}"), "the same results, refusals included");
    }
    assert_eq!(store.applied_marker().expect("marker"), Some(vec![99]));
    store.flush().expect("flush");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    assert_eq!(store.export(&mut a).expect("export"), Some(vec![99]));
    eager.export(&mut b).expect("export");
    assert_eq!(a, b, "a lazily applied store exports the same state");
}

#[test]
fn accounts_get_ids_never_given_again_and_a_new_epoch_when_their_credentials_change() {
    let (_dir, store) = open();
    create_user(&store, "alice", false);
    create_user(&store, "bob", false);
    let alice = store.user("alice").expect("read").expect("alice");
    let bob = store.user("bob").expect("read").expect("bob");
    assert_eq!((alice.id, bob.id, alice.epoch), (1, 2, 0));
    let new_password = AccountsCommand::SetPassword { name: "alice".into(), password_hash: "h2".into() };
    store.apply(&new_password).expect("password");
    assert_eq!(store.user("alice").expect("read").expect("alice").epoch, 1);
    for disabled in [true, false] {
        store.apply(&AccountsCommand::SetUserDisabled { name: "alice".into(), disabled }).expect("disable or enable");
    }
    let alice = store.user("alice").expect("read").expect("alice");
    assert_eq!((alice.id, alice.epoch), (1, 3), "disabling and enabling each start a new epoch");
    store.apply(&AccountsCommand::DeleteUser { name: "alice".into() }).expect("delete");
    create_user(&store, "alice", false);
    let again = store.user("alice").expect("read").expect("alice");
    assert_eq!(again.id, 3, "a new account of the same name is another user");
    // The counter travels in snapshots.
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_d2, other) = open();
    other.import(&mut snapshot.as_slice(), b"m").expect("import");
    create_user(&other, "carol", false);
    assert_eq!(other.user("carol").expect("read").expect("carol").id, 4);
}

#[test]
fn each_owner_has_at_most_the_limit_of_open_uploads() {
    let (_dir, store) = open();
    let start = |id: &str, owner: &str, limit: u32| RegistryCommand::StartOwnedUpload {
        id: id.into(),
        repo: "r".into(),
        algorithm: Algorithm::Sha256,
        at: 1,
        owner: owner.into(),
        limit,
    };
    for i in 0..3 {
        store.apply(start(&format!("a{i}"), "alice", 3)).expect("under the limit");
    }
    let refused = store.apply(start("a3", "alice", 3));
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::TooManyUploads { ref owner, limit: 3 })) if owner == "alice")
    );
    assert!(refused.expect_err("refused").is_refusal());
    assert_eq!(store.upload("a3").expect("read"), None, "a refused start records nothing");
    store.apply(start("b0", "bob", 3)).expect("others are not counted against alice");
    store.apply(start("aa0", "alice-2", 3)).expect("nor is a name that extends hers");
    store.apply(&RegistryCommand::CancelUpload { id: "a0".into() }).expect("cancel");
    store.apply(&RegistryCommand::CommitUpload { id: "a1".into(), digest: d(1), size: 1 }).expect("commit");
    store.apply(start("a4", "alice", 3)).expect("cancelled and committed uploads no longer count");
    store.apply(start("a5", "alice", 3)).expect("two free places");
    assert!(matches!(store.apply(start("a6", "alice", 3)), Err(StoreError::Refused(Refusal::TooManyUploads { .. }))));
    store.apply(start("a7", "alice", 0)).expect("0 is no limit");
    assert_eq!(store.upload("a4").expect("read").expect("open").owner, "alice");
    // The count travels in snapshots.
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_d2, other) = open();
    other.import(&mut snapshot.as_slice(), b"m").expect("import");
    assert!(matches!(other.apply(start("a8", "alice", 3)), Err(StoreError::Refused(Refusal::TooManyUploads { .. }))));
}

#[test]
fn the_last_manager_cannot_be_demoted_or_removed_even_by_racing_changes() {
    let (_dir, store) = open();
    for addr in ["a:1", "b:1"] {
        let add = ClusterCommand::AddNode { role: "manager".into(), hostname: "h".into(), addr: addr.into(), at: 1 };
        store.apply(&add).expect("a manager");
    }
    let worker = ClusterCommand::AddNode { role: "worker".into(), hostname: "w".into(), addr: "w:1".into(), at: 1 };
    store.apply(&worker).expect("a worker");
    let demote = |id: u64| Command::from(ClusterCommand::SetNodeRole { id, role: "worker".into() });
    // Two demotions that each passed a check made before proposing, applied together.
    let results = store.apply_marked(&[demote(1), demote(2)], b"m").expect("batch");
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::Refused(Refusal::LastManager))), "{:?}", results[1]);
    assert!(results[1].as_ref().expect_err("refused").is_refusal());
    assert!(matches!(
        store.apply(&ClusterCommand::RemoveNode { id: 2 }),
        Err(StoreError::Refused(Refusal::LastManager))
    ));
    store.apply(&ClusterCommand::RemoveNode { id: 3 }).expect("a worker goes");
    store.apply(&ClusterCommand::SetNodeRole { id: 2, role: "manager".into() }).expect("staying a manager is fine");
    // From two threads at once, exactly one of two demotions passes.
    store.apply(&ClusterCommand::SetNodeRole { id: 1, role: "manager".into() }).expect("promote 1 again");
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = [1u64, 2]
        .into_iter()
        .map(|id| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || store.apply(demote(id)).is_ok())
        })
        .collect();
    let passed = threads.into_iter().map(|t| t.join().expect("thread")).filter(|ok| *ok).count();
    assert_eq!(passed, 1, "exactly one demotion passes");
    let managers = store.nodes().expect("nodes").into_iter().filter(|(_, n)| !n.removed && n.role == "manager").count();
    assert_eq!(managers, 1);
}

#[test]
fn every_commit_is_published_to_subscribers_by_domain() {
    let (_dir, store) = open();
    let mut feed = store.subscribe();
    assert_eq!(*feed.borrow_and_update(), wharf_store::Changes::default());
    store.apply(&ClusterCommand::InitCluster { cluster_id: "c".into() }).expect("init");
    assert!(feed.has_changed().expect("open"), "a subscriber is woken");
    let seen = *feed.borrow_and_update();
    assert_eq!((seen.cluster, seen.registry, seen.accounts), (1, 0, 0));
    create_user(&store, "alice", false);
    upload(&store, "u", "r", d(1));
    let seen = *feed.borrow_and_update();
    assert_eq!((seen.cluster, seen.accounts), (1, 1));
    assert!(seen.registry >= 2, "a start and a commit: {seen:?}");
    let refused = store.apply(&RegistryCommand::CancelUpload { id: "missing".into() });
    assert!(refused.is_err());
    assert!(!feed.has_changed().expect("open"), "a refused command changed nothing and wakes nobody");
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    store.import(&mut snapshot.as_slice(), b"m").expect("import");
    let replaced = *feed.borrow_and_update();
    assert!(replaced.cluster > seen.cluster && replaced.accounts > seen.accounts && replaced.registry > seen.registry);
}
