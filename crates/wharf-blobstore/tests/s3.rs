//! The S3 driver against a real S3 server (moto, started by each test): the conformance suite
//! every driver passes, uploads continued through another driver instance (another manager),
//! two appends racing for one offset, and faults of the storage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_blobstore::conformance::{self, chunks, collect, digest_of, ignore};
use wharf_blobstore::{BlobError, BlobStore, MemoryLedger, S3BlobStore, S3Config, UploadLedger};
use wharf_testkit::Moto;

fn config(endpoint: String, bucket: &str, prefix: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: Some(endpoint),
        region: "us-east-1".to_owned(),
        path_style: true,
        access_key: "wharf-test".to_owned(),
        secret_key: "wharf-test-secret".to_owned(),
        retry_for: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn the_s3_driver_passes_the_conformance_suite_against_moto() {
    let moto = Moto::start();
    moto.create_bucket("conformance");
    for prefix in ["", "wharf/registry"] {
        let store =
            S3BlobStore::new(&config(moto.endpoint(), "conformance", prefix), Arc::new(MemoryLedger::default()))
                .expect("driver");
        store.check().await.expect("the bucket answers");
        assert!(store.shared(), "S3 is storage every manager shares");
        conformance::run_all(&store).await;
        let uploads = if prefix.is_empty() { "uploads/".to_owned() } else { format!("{prefix}/uploads/") };
        assert_eq!(moto.list("conformance", &uploads), Vec::<String>::new(), "no segment outlives its upload");
    }
    let blobs = moto.list("conformance", "wharf/registry/blobs/");
    assert!(
        blobs.iter().all(|k| k.starts_with("wharf/registry/blobs/sha256/")),
        "blobs sit under the prefix, by digest: {blobs:?}"
    );
}

#[tokio::test]
async fn an_upload_continues_through_another_manager_and_a_lost_race_leaves_nothing() {
    let moto = Moto::start();
    moto.create_bucket("shared");
    let ledger: Arc<dyn UploadLedger> = Arc::new(MemoryLedger::default());
    let one = S3BlobStore::new(&config(moto.endpoint(), "shared", "w"), Arc::clone(&ledger)).expect("driver 1");
    let two = S3BlobStore::new(&config(moto.endpoint(), "shared", "w"), Arc::clone(&ledger)).expect("driver 2");
    let data: Vec<u8> = (0..9 * 1024 * 1024 + 5).map(|i| (i % 253) as u8).collect();
    let (a, b) = data.split_at(3 * 1024 * 1024 + 1);

    one.create_upload("u1").await.expect("create");
    one.append("u1", 0, chunks(vec![a.to_vec()]), ignore()).await.expect("append through manager 1");
    assert_eq!(two.upload_size("u1").await.expect("size"), a.len() as u64, "manager 2 sees the first append");
    // Manager 2 continues from where the record ends; a stale offset is refused.
    assert!(matches!(
        two.append("u1", 0, chunks(vec![b"x".to_vec()]), ignore()).await,
        Err(BlobError::OffsetMismatch { actual, .. }) if actual == a.len() as u64
    ));
    let parts: Vec<Vec<u8>> = b.chunks(1024 * 1024 + 7).map(<[u8]>::to_vec).collect();
    let n = two.append("u1", a.len() as u64, chunks(parts), ignore()).await.expect("append through manager 2");
    assert_eq!(n, data.len() as u64);
    assert!(collect(one.read_upload("u1").await.expect("read")).await == data, "manager 1 reads both segments");
    let digest = digest_of(&data);
    assert_eq!(one.commit("u1", &digest).await.expect("commit through manager 1"), data.len() as u64);
    assert!(collect(two.get(&digest, None).await.expect("get")).await == data, "a two-segment blob reads back");
    assert_eq!(moto.list("shared", "w/uploads/"), Vec::<String>::new(), "the segments are gone after commit");

    // Two appends at the same offset: the ledger takes one; the other's object is removed.
    one.create_upload("u2").await.expect("create");
    let (r1, r2) = tokio::join!(
        one.append("u2", 0, chunks(vec![b"first writer".to_vec()]), ignore()),
        two.append("u2", 0, chunks(vec![b"second writer".to_vec()]), ignore()),
    );
    assert!(r1.is_ok() != r2.is_ok(), "exactly one append of offset 0 wins: {r1:?} {r2:?}");
    let won = if r1.is_ok() { b"first writer".to_vec() } else { b"second writer".to_vec() };
    assert_eq!(collect(two.read_upload("u2").await.expect("read")).await, won);
    assert_eq!(moto.list("shared", "w/uploads/u2/").len(), 1, "the losing segment was removed");
    one.abort("u2").await.expect("abort");
    assert_eq!(moto.list("shared", "w/uploads/"), Vec::<String>::new());
}

#[tokio::test]
async fn storage_that_fails_gives_unavailable_after_retries_and_shows_nothing_half_written() {
    // Nobody listens: every call is refused, retried, then reported, within the retry budget.
    let store = S3BlobStore::new(
        &config(format!("http://127.0.0.1:{}", wharf_testkit::free_port()), "none", ""),
        Arc::new(MemoryLedger::default()),
    )
    .expect("driver");
    let started = Instant::now();
    assert!(matches!(store.check().await, Err(BlobError::Unavailable(_))));
    assert!(matches!(store.stat(&digest_of(b"x")).await, Err(BlobError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(20), "retries stop at their budget: {:?}", started.elapsed());

    // A bucket that does not exist is reported at start.
    let mut moto = Moto::start();
    let missing = S3BlobStore::new(&config(moto.endpoint(), "no-such-bucket", ""), Arc::new(MemoryLedger::default()))
        .expect("driver");
    assert!(matches!(missing.check().await, Err(BlobError::Unavailable(_))), "a missing bucket fails the check");

    // The server dies in the middle of an upload: the append fails, the upload keeps what was
    // recorded before, and no blob appears.
    moto.create_bucket("dies");
    let ledger: Arc<dyn UploadLedger> = Arc::new(MemoryLedger::default());
    let store = S3BlobStore::new(&config(moto.endpoint(), "dies", ""), Arc::clone(&ledger)).expect("driver");
    store.create_upload("u").await.expect("create");
    store.append("u", 0, chunks(vec![b"recorded".to_vec()]), ignore()).await.expect("first append");
    moto.kill();
    let big: Vec<Vec<u8>> = vec![vec![7u8; 1024 * 1024]; 12];
    match store.append("u", 8, chunks(big), ignore()).await {
        Err(BlobError::Unavailable(why)) => assert!(why.contains("object storage"), "{why}"),
        other => panic!("an append to a dead server gave {other:?}"),
    }
    assert_eq!(store.upload_size("u").await.expect("the ledger still answers"), 8, "only recorded bytes count");
    assert!(matches!(store.commit("u", &digest_of(b"recorded")).await, Err(BlobError::Unavailable(_))));
}
