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
