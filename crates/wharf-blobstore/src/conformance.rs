//! The conformance suite every [`BlobStore`] driver runs (filesystem today; S3 and Swift
//! later). Each check panics with a message on failure, so a driver's test is one call:
//! `conformance::run_all(&driver).await`.

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use wharf_api::range::ByteRange;
use wharf_api::{Algorithm, Digest};

use crate::{BlobError, BlobStore, ByteStream, Observer};

/// The sha256 digest of `data`.
pub fn digest_of(data: &[u8]) -> Digest {
    Digest::from_bytes(Algorithm::Sha256, &Sha256::digest(data))
}

/// A body stream made of the given chunks.
pub fn chunks(parts: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
}

/// Reads a whole stream into memory (tests only).
pub async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("stream chunk"));
    }
    out
}

/// An observer that ignores what it sees.
pub fn ignore() -> Observer {
    Box::new(|_| {})
}

/// An observer that records what it sees into the returned buffer.
pub fn recorder() -> (Observer, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    (Box::new(move |b: &[u8]| sink.lock().expect("lock").extend_from_slice(b)), seen)
}

/// Uploads `data` in one append under upload `id` and commits it.
pub async fn put_blob(store: &dyn BlobStore, id: &str, data: &[u8]) -> Digest {
    let digest = digest_of(data);
    store.create_upload(id).await.expect("create upload");
    store.append(id, 0, chunks(vec![data.to_vec()]), ignore()).await.expect("append");
    store.commit(id, &digest).await.expect("commit");
    digest
}

/// Runs every check against `store`.
pub async fn run_all(store: &dyn BlobStore) {
    upload_append_commit_get(store).await;
    appends_must_be_contiguous(store).await;
    ranges(store).await;
    unknown_things(store).await;
    dedup_and_delete(store).await;
    abort_discards(store).await;
    body_errors_keep_the_prefix(store).await;
    large_blob_streams(store).await;
}

async fn upload_append_commit_get(store: &dyn BlobStore) {
    store.create_upload("c-upload-1").await.expect("create");
    assert_eq!(store.upload_size("c-upload-1").await.expect("size"), 0);
    let (observer, seen) = recorder();
    let n = store
        .append("c-upload-1", 0, chunks(vec![b"hello ".to_vec(), b"wor".to_vec()]), observer)
        .await
        .expect("append");
    assert_eq!(*seen.lock().expect("lock"), b"hello wor");
    assert_eq!(n, 9);
    let n = store.append("c-upload-1", 9, chunks(vec![b"ld".to_vec()]), ignore()).await.expect("append 2");
    assert_eq!(n, 11);
    assert_eq!(collect(store.read_upload("c-upload-1").await.expect("read upload")).await, b"hello world");
    let d = digest_of(b"hello world");
    assert_eq!(store.commit("c-upload-1", &d).await.expect("commit"), 11);
    assert!(matches!(store.upload_size("c-upload-1").await, Err(BlobError::UploadNotFound(_))));
    assert_eq!(store.stat(&d).await.expect("stat"), Some(11));
    assert_eq!(collect(store.get(&d, None).await.expect("get")).await, b"hello world");
}

async fn appends_must_be_contiguous(store: &dyn BlobStore) {
    store.create_upload("c-upload-2").await.expect("create");
    store.append("c-upload-2", 0, chunks(vec![b"abc".to_vec()]), ignore()).await.expect("append");
    for wrong in [0, 2, 4] {
        match store.append("c-upload-2", wrong, chunks(vec![b"x".to_vec()]), ignore()).await {
            Err(BlobError::OffsetMismatch { actual: 3, .. }) => {}
            other => panic!("append at {wrong} of a 3-byte upload gave {other:?}"),
        }
    }
    assert_eq!(store.upload_size("c-upload-2").await.expect("size"), 3, "refused appends wrote nothing");
    store.create_upload("c-upload-2").await.expect("create again is a no-op");
    assert_eq!(store.upload_size("c-upload-2").await.expect("size"), 3, "create again keeps the bytes");
    store.abort("c-upload-2").await.expect("abort");
}

async fn ranges(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..=255u8).collect();
    let d = put_blob(store, "c-upload-3", &data).await;
    let got = collect(store.get(&d, Some(ByteRange { offset: 10, len: 5 })).await.expect("range")).await;
    assert_eq!(got, &data[10..15]);
    let got = collect(store.get(&d, Some(ByteRange { offset: 250, len: 6 })).await.expect("tail")).await;
    assert_eq!(got, &data[250..]);
}

async fn unknown_things(store: &dyn BlobStore) {
    let d = digest_of(b"never stored");
    assert_eq!(store.stat(&d).await.expect("stat"), None);
    assert!(matches!(store.get(&d, None).await, Err(BlobError::NotFound(_))));
    assert!(!store.delete(&d).await.expect("delete unknown"));
    assert!(matches!(store.upload_size("c-nope").await, Err(BlobError::UploadNotFound(_))));
    assert!(matches!(
        store.append("c-nope", 0, chunks(vec![b"x".to_vec()]), ignore()).await,
        Err(BlobError::UploadNotFound(_))
    ));
    assert!(matches!(store.commit("c-nope", &d).await, Err(BlobError::UploadNotFound(_))));
    store.abort("c-nope").await.expect("abort unknown is fine");
}

async fn dedup_and_delete(store: &dyn BlobStore) {
    let d1 = put_blob(store, "c-upload-4", b"same bytes").await;
    let d2 = put_blob(store, "c-upload-5", b"same bytes").await;
    assert_eq!(d1, d2);
    assert!(matches!(store.upload_size("c-upload-5").await, Err(BlobError::UploadNotFound(_))));
    assert_eq!(collect(store.get(&d1, None).await.expect("get")).await, b"same bytes");
    assert!(store.delete(&d1).await.expect("delete"));
    assert_eq!(store.stat(&d1).await.expect("stat"), None);
}

async fn abort_discards(store: &dyn BlobStore) {
    store.create_upload("c-upload-6").await.expect("create");
    store.append("c-upload-6", 0, chunks(vec![b"partial".to_vec()]), ignore()).await.expect("append");
    assert!(store.list_uploads().await.expect("list").contains(&"c-upload-6".to_owned()));
    store.abort("c-upload-6").await.expect("abort");
    assert!(matches!(store.upload_size("c-upload-6").await, Err(BlobError::UploadNotFound(_))));
    assert!(!store.list_uploads().await.expect("list").contains(&"c-upload-6".to_owned()));
    assert_eq!(store.stat(&digest_of(b"partial")).await.expect("stat"), None, "no partial blob is visible");
}

async fn body_errors_keep_the_prefix(store: &dyn BlobStore) {
    store.create_upload("c-upload-7").await.expect("create");
    let body: ByteStream = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"first")),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ])
    .boxed();
    assert!(matches!(store.append("c-upload-7", 0, body, ignore()).await, Err(BlobError::Body(_))));
    assert_eq!(store.upload_size("c-upload-7").await.expect("size"), 5, "bytes before the error are kept");
    store.abort("c-upload-7").await.expect("abort");
}

async fn large_blob_streams(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let parts: Vec<Vec<u8>> = data.chunks(64 * 1024 + 3).map(<[u8]>::to_vec).collect();
    store.create_upload("c-upload-8").await.expect("create");
    let (observer, seen) = recorder();
    store.append("c-upload-8", 0, chunks(parts), observer).await.expect("append");
    assert!(*seen.lock().expect("lock") == data, "the observer saw every byte once, in order");
    let d = digest_of(&data);
    store.commit("c-upload-8", &d).await.expect("commit");
    let got = collect(store.get(&d, None).await.expect("get")).await;
    assert!(got == data, "large blob reads back byte for byte");
    let range = ByteRange { offset: 4097, len: 3 * 1024 * 1024 + 5 };
    let got = collect(store.get(&d, Some(range)).await.expect("large range")).await;
    assert!(got == data[4097..4097 + 3 * 1024 * 1024 + 5], "a large unaligned range reads back byte for byte");
    store.delete(&d).await.expect("delete");
    // A large append that starts at an unaligned offset.
    store.create_upload("c-upload-9").await.expect("create");
    store.append("c-upload-9", 0, chunks(vec![data[..3].to_vec()]), ignore()).await.expect("small append");
    let (observer, seen) = recorder();
    let n = store.append("c-upload-9", 3, chunks(vec![data[3..].to_vec()]), observer).await.expect("large append");
    assert!(*seen.lock().expect("lock") == data[3..], "the buffered path feeds the observer too");
    assert_eq!(n, data.len() as u64);
    assert!(collect(store.read_upload("c-upload-9").await.expect("read")).await == data);
    store.abort("c-upload-9").await.expect("abort");
}
