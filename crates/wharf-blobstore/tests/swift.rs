//! The Swift driver against a real OpenStack Swift all-in-one (started by each test): the
//! conformance suite with TempAuth, again with a small segment size (appends split into
//! several segments, blobs stored as static large objects), and Keystone v3 authentication
//! with a token refreshed after Swift refuses it (the identity service is a stand-in that
//! hands out TempAuth tokens; the object store behind it is the real Swift).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wharf_blobstore::conformance::{self, chunks, collect, digest_of, ignore};
use wharf_blobstore::{BlobError, BlobStore, MemoryLedger, SwiftAuth, SwiftBlobStore, SwiftConfig};
use wharf_testkit::{SWIFT_KEY, SWIFT_USER, Swift};

fn config(auth: SwiftAuth, container: &str, segment_size: u64) -> SwiftConfig {
    SwiftConfig {
        auth,
        container: container.to_owned(),
        prefix: "wharf".to_owned(),
        retry_for: Duration::from_secs(3),
        request_timeout: Duration::from_secs(30),
        segment_size,
    }
}

fn v1(swift: &Swift) -> SwiftAuth {
    SwiftAuth::V1 { url: swift.auth_url(), user: SWIFT_USER.to_owned(), key: SWIFT_KEY.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swift_driver_passes_the_conformance_suite_against_swift() {
    let swift = Swift::start();
    for (container, segment_size) in [("whole", 1 << 30), ("segmented", 2 * 1024 * 1024)] {
        let store = SwiftBlobStore::new(config(v1(&swift), container, segment_size), Arc::new(MemoryLedger::default()))
            .expect("driver");
        store.check().await.expect("authenticate and create the container");
        assert!(store.shared());
        conformance::run_all(&store).await;
        assert_eq!(store.list_uploads().await.expect("list"), Vec::<String>::new(), "no upload is left over");
    }

    // A blob is a static large object over its upload's segments, whatever its size: it reads
    // back whole and in part, the sweep leaves its segments alone, and deleting it removes them.
    let store =
        SwiftBlobStore::new(config(v1(&swift), "segmented", 2 * 1024 * 1024), Arc::new(MemoryLedger::default()))
            .expect("driver");
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 239) as u8).collect();
    store.create_upload("big").await.expect("create");
    store.append("big", 0, chunks(vec![data[..1000].to_vec()]), ignore()).await.expect("append 1");
    store.append("big", 1000, chunks(vec![data[1000..].to_vec()]), ignore()).await.expect("append 2");
    let digest = digest_of(&data);
    store.commit("big", &digest).await.expect("commit");
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(data.len() as u64));
    assert!(collect(store.get(&digest, None).await.expect("get")).await == data);
    let range = wharf_api::range::ByteRange { offset: 2 * 1024 * 1024 - 5, len: 10 };
    let part = collect(store.get(&digest, Some(range)).await.expect("range across segments")).await;
    assert_eq!(part, data[2 * 1024 * 1024 - 5..2 * 1024 * 1024 + 5]);
    let segments = swift.list("segmented", "wharf/segments/big/");
    assert_eq!(segments.len(), 5, "1000 bytes, then 5 MiB in 2 MiB segments, and the marker: {segments:?}");
    assert_eq!(store.list_uploads().await.expect("list"), Vec::<String>::new(), "a blob's segments are no upload");
    assert!(store.delete(&digest).await.expect("delete"));
    assert_eq!(swift.list("segmented", "wharf/segments/big/"), Vec::<String>::new(), "the segments went with it");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
}

/// A stand-in Keystone v3: answers `POST /v3/auth/tokens` with `X-Subject-Token` and a catalog
/// naming Swift's storage URL. The first token it hands out is one Swift refuses; later ones
/// are real TempAuth tokens. Returns its URL and how many tokens it handed out.
fn keystone(swift: &Swift) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v3", listener.local_addr().expect("addr"));
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    let (token, storage_url) = swift.token().expect("a TempAuth token");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("header");
                if header.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).expect("body");
            let request: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let password = &request["auth"]["identity"]["password"]["user"]["password"];
            let (status, subject) = if !line.starts_with("POST /v3/auth/tokens") || password != "secret" {
                ("401 Unauthorized", String::new())
            } else if count.fetch_add(1, Ordering::SeqCst) == 0 {
                ("201 Created", "AUTH_tk_not_a_valid_token".to_owned())
            } else {
                ("201 Created", token.clone())
            };
            let answer = serde_json::json!({"token": {"catalog": [
                {"type": "identity", "endpoints": [{"interface": "public", "region": "r1", "url": "http://nowhere"}]},
                {"type": "object-store", "endpoints": [
                    {"interface": "internal", "region": "r1", "url": "http://127.0.0.1:9/internal"},
                    {"interface": "public", "region": "r2", "url": "http://127.0.0.1:9/elsewhere"},
                    {"interface": "public", "region": "r1", "url": storage_url}]}]}})
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nX-Subject-Token: {subject}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_v3_authenticates_and_a_refused_token_is_fetched_again() {
    let swift = Swift::start();
    let (url, issued) = keystone(&swift);
    let auth = |password: &str| SwiftAuth::V3 {
        url: url.clone(),
        user: "wharf".into(),
        user_domain: "Default".into(),
        password: password.into(),
        project: "registry".into(),
        project_domain: "Default".into(),
        region: Some("r1".into()),
    };
    let store =
        SwiftBlobStore::new(config(auth("secret"), "v3", 1 << 30), Arc::new(MemoryLedger::default())).expect("driver");
    // The first token is refused by Swift: the driver fetches another and goes on.
    store.check().await.expect("the container, through the catalog's public endpoint in r1");
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one refused token, one fetched again");
    let digest = conformance::put_blob(&store, "u", b"through keystone").await;
    assert_eq!(collect(store.get(&digest, None).await.expect("get")).await, b"through keystone");

    let refused =
        SwiftBlobStore::new(config(auth("wrong"), "v3", 1 << 30), Arc::new(MemoryLedger::default())).expect("driver");
    match refused.check().await {
        Err(BlobError::Unavailable(why)) => assert!(why.contains("Keystone answered 401"), "{why}"),
        other => panic!("wrong credentials gave {other:?}"),
    }
}
