//! Registry logic on the in-memory blob store: the parts the HTTP tests cannot reach directly.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use wharf_api::{Algorithm, ErrorCode};
use wharf_blobstore::{BlobStore, ByteStream, MemoryBlobStore};
use wharf_registry::{Hasher, Registry};
use wharf_store::Store;

fn body(data: &[u8]) -> ByteStream {
    let data = Bytes::copy_from_slice(data);
    futures::stream::once(async move { Ok(data) }).boxed()
}

fn registry() -> (tempfile::TempDir, Registry, Arc<MemoryBlobStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).expect("store"));
    let blobs = Arc::new(MemoryBlobStore::new());
    let registry = Registry::new(store, Arc::clone(&blobs) as Arc<dyn BlobStore>).expect("registry");
    (dir, registry, blobs)
}

#[tokio::test]
async fn stale_uploads_are_purged_and_fresh_ones_kept() {
    let (_dir, registry, blobs) = registry();
    let old = registry.start_upload("r", Algorithm::Sha256, "alice").await.expect("start");
    registry.patch_upload("r", &old, None, body(b"partial")).await.expect("patch");
    assert_eq!(registry.purge_stale_uploads(3600).await.expect("purge"), 0, "a new session is kept");
    assert_eq!(registry.purge_stale_uploads(0).await.expect("purge"), 1);
    let err = registry.upload_status("r", &old).await.expect_err("purged");
    assert_eq!(err.code, ErrorCode::BlobUploadUnknown);
    assert!(blobs.upload_size(&old).await.is_err(), "bytes freed");
}

#[tokio::test]
async fn stored_uploads_without_a_session_are_swept() {
    let (_dir, registry, blobs) = registry();
    blobs.create_upload("orphan-upload").await.expect("orphan");
    let live = registry.start_upload("r", Algorithm::Sha256, "alice").await.expect("start");
    assert_eq!(registry.purge_stale_uploads(3600).await.expect("purge"), 1);
    assert!(blobs.upload_size("orphan-upload").await.is_err(), "orphan removed");
    assert_eq!(registry.upload_status("r", &live).await.expect("live session kept"), 0);
}

#[tokio::test]
async fn finishing_with_another_algorithm_rehashes_the_stored_bytes() {
    let (_dir, registry, _blobs) = registry();
    let data = b"some bytes uploaded with a sha256 session";
    let up = registry.start_upload("r", Algorithm::Sha256, "alice").await.expect("start");
    registry.patch_upload("r", &up, None, body(data)).await.expect("patch");
    let sha512 = Hasher::digest(Algorithm::Sha512, data);
    registry.finish_upload("r", &up, &sha512, None).await.expect("finish with sha512");
    assert_eq!(registry.blob_size("r", &sha512).expect("stored"), data.len() as u64);
}

#[tokio::test]
async fn uploads_belong_to_their_repository() {
    let (_dir, registry, _blobs) = registry();
    let up = registry.start_upload("a", Algorithm::Sha256, "alice").await.expect("start");
    let err = registry.patch_upload("b", &up, None, body(b"x")).await.expect_err("other repo");
    assert_eq!(err.code, ErrorCode::BlobUploadUnknown);
    let err = registry.cancel_upload("b", &up).await.expect_err("other repo");
    assert_eq!(err.code, ErrorCode::BlobUploadUnknown);
    assert_eq!(registry.upload_status("a", &up).await.expect("still there"), 0);
}

#[tokio::test]
async fn each_user_has_at_most_the_limit_of_open_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).expect("store"));
    let blobs: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new());
    let registry = Registry::new(store, blobs).expect("registry").with_upload_limit(2);
    let first = registry.start_upload("alice/a", Algorithm::Sha256, "alice").await.expect("start");
    registry.start_upload("alice/b", Algorithm::Sha256, "alice").await.expect("start");
    let refused = registry.start_upload("alice/a", Algorithm::Sha256, "alice").await.expect_err("over the cap");
    assert_eq!((refused.code, refused.status), (ErrorCode::TooManyRequests, 429));
    let data = b"a whole blob";
    let digest = Hasher::digest(Algorithm::Sha256, data);
    let refused = registry.monolithic_upload("alice/a", &digest, body(data), "alice").await.expect_err("over the cap");
    assert_eq!(refused.code, ErrorCode::TooManyRequests, "a single-request upload opens a session too");
    registry.start_upload("bob/a", Algorithm::Sha256, "bob").await.expect("bob has his own count");
    registry.cancel_upload("alice/a", &first).await.expect("cancel");
    registry.monolithic_upload("alice/a", &digest, body(data), "alice").await.expect("a place is free again");
    registry.start_upload("alice/a", Algorithm::Sha256, "alice").await.expect("and the monolithic one is closed");
    // A purge of old sessions frees their places.
    assert_eq!(registry.purge_stale_uploads(0).await.expect("purge"), 3);
    registry.start_upload("alice/a", Algorithm::Sha256, "alice").await.expect("purged sessions no longer count");
}

/// A holder that answers with fixed bytes, right or wrong.
struct Holder(Vec<u8>);

impl wharf_registry::PeerBlobs for Holder {
    fn fetch<'a>(
        &'a self,
        _addr: &'a str,
        _digest: &'a wharf_api::Digest,
        range: Option<wharf_api::range::ByteRange>,
    ) -> wharf_registry::PeerRead<'a> {
        let data = match range {
            Some(r) => self.0[r.offset as usize..(r.offset + r.len) as usize].to_vec(),
            None => self.0.clone(),
        };
        // In several chunks, as a network delivers them.
        let chunks: Vec<std::io::Result<Bytes>> = data.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(async move { Ok(futures::stream::iter(chunks).boxed()) })
    }

    fn request_copy<'a>(
        &'a self,
        _: &'a str,
        _: &'a wharf_api::Digest,
        _: u64,
        _: Option<u64>,
    ) -> wharf_registry::PeerCopy<'a> {
        Box::pin(async { Err("this holder copies nothing".to_owned()) })
    }
}

/// A registry on node 2 whose state says blob `data` of `r` is held by node 1 only, reading
/// from `holder`.
fn node_two(data: &[u8], holder: Holder) -> (tempfile::TempDir, Registry, Arc<Store>, wharf_api::Digest) {
    use wharf_store::{ClusterCommand, RegistryCommand};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).expect("store"));
    let add = ClusterCommand::AddNode { role: "manager".into(), hostname: "one".into(), addr: "one:1".into(), at: 1 };
    store.apply(add).expect("node 1");
    let digest = Hasher::digest(Algorithm::Sha256, data);
    let start = RegistryCommand::StartUpload { id: "u".into(), repo: "r".into(), algorithm: Algorithm::Sha256, at: 1 };
    store.apply(start).expect("start");
    let size = data.len() as u64;
    store
        .apply(RegistryCommand::CommitUploadOn { id: "u".into(), digest: digest.clone(), size, holders: vec![1] })
        .expect("on 1");
    let blobs = Arc::new(MemoryBlobStore::new()) as Arc<dyn BlobStore>;
    let registry = Registry::new(Arc::clone(&store), blobs).expect("registry").on_node(2).with_peers(Arc::new(holder));
    (dir, registry, store, digest)
}

async fn read_all(body: ByteStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut body = body;
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

#[tokio::test]
async fn a_blob_read_from_its_holder_is_served_verified_and_kept() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let (_dir, registry, store, digest) = node_two(&data, Holder(data.clone()));
    let read = registry.open_blob("r", &digest, None).await.expect("open");
    let (got, error) = read_all(read.body.expect("body")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(got, data);
    assert!(registry.open_own_blob(&digest, None).await.is_ok(), "a verified copy is kept here");
    assert_eq!(store.blob_holders(&digest).expect("read"), vec![1, 2], "and recorded");
}

#[tokio::test]
async fn wrong_bytes_from_a_holder_never_reach_the_client_whole() {
    let data = vec![7u8; 5000];
    let mut wrong = data.clone();
    wrong[4999] = 8;
    let (_dir, registry, store, digest) = node_two(&data, Holder(wrong));
    let read = registry.open_blob("r", &digest, None).await.expect("open");
    let (got, error) = read_all(read.body.expect("body")).await;
    assert!(error.is_some(), "the body ends in an error");
    assert!(got.len() < data.len(), "the last bytes were held back: {} of {}", got.len(), data.len());
    assert!(registry.open_own_blob(&digest, None).await.is_err(), "no copy of wrong bytes is kept");
    assert_eq!(store.blob_holders(&digest).expect("read"), vec![1], "nor recorded");
    let short = vec![7u8; 4000];
    let (_dir2, registry, _, digest) = node_two(&data, Holder(short));
    let (got, error) = read_all(registry.open_blob("r", &digest, None).await.expect("open").body.expect("body")).await;
    assert!(error.is_some() && got.len() < data.len(), "a short copy is an error too");
}
