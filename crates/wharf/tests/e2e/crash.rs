//! Crash safety: SIGKILL the real process during pushes, restart it, and check that
//! acknowledged data is intact, no partial blob is visible, and interrupted uploads resume.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Wharf, wait_for};
use crate::oci::*;

/// Every file under the blob store's `blobs/` holds exactly the bytes its name says.
fn assert_no_partial_blobs(data_dir: &Path) {
    let root = data_dir.join("blobs/blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return;
    };
    let mut checked = 0;
    for prefix in prefixes {
        for file in std::fs::read_dir(prefix.expect("entry").path()).expect("read prefix dir") {
            let path = file.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
            let data = std::fs::read(&path).expect("read blob");
            assert_eq!(sha256(&data), format!("sha256:{name}"), "blob file {} is partial or corrupt", path.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no blob files found under {}", root.display());
}

#[tokio::test]
async fn sigkill_mid_stream_then_resume() {
    let mut w = Wharf::start();
    let (c, b) = (w.client(), w.base());
    let (digest, manifest) = push_image(&c, &b, "crash/stream", "v1", 31).await;
    let data = bytes(32, 8 * 1024 * 1024);
    let blob_digest = sha256(&data);
    let location = start_upload(&c, &b, "crash/stream").await;
    let id = location.rsplit('/').next().expect("id").to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let patch = tokio::spawn(c.patch(&location).body(body).send());
    for chunk in data[..3 * 1024 * 1024].chunks(256 * 1024) {
        tx.send(Ok(chunk.to_vec())).await.expect("feed");
    }
    let upload_file = w.data_dir.join("blobs/uploads").join(&id);
    wait_for(Duration::from_secs(20), "the upload file to grow", || {
        std::fs::metadata(&upload_file).ok().filter(|m| m.len() >= 1024 * 1024)
    });
    w.kill();
    drop(tx);
    assert!(patch.await.expect("join").is_err(), "the PATCH cut by SIGKILL must not be acknowledged");
    w.restart();
    let c = w.client();
    // Acknowledged content is intact.
    let resp = c.get(format!("{b}/v2/crash/stream/manifests/v1")).send().await.expect("GET");
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), manifest.as_slice());
    // The interrupted blob is not visible.
    let resp = c.head(format!("{b}/v2/crash/stream/blobs/{blob_digest}")).send().await.expect("HEAD");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The upload resumes from what survived.
    let resp = c.get(&location).send().await.expect("status");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let range = header(&resp, "range");
    let end: usize = range.strip_prefix("0-").and_then(|e| e.parse().ok()).expect("range 0-N");
    let offset = end + 1;
    assert!(offset <= 3 * 1024 * 1024, "upload holds {offset} bytes, more than was sent");
    let resp = c
        .patch(&location)
        .header("content-range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .expect("PATCH rest");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = c.put(format!("{location}{}digest={blob_digest}", join(&location))).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = get_bytes(&c, &format!("{b}/v2/crash/stream/blobs/{blob_digest}")).await;
    assert!(got.as_ref() == data.as_slice(), "resumed blob is byte-identical");
    assert_no_partial_blobs(&w.data_dir);
}

/// What a pusher was told was stored.
#[derive(Clone)]
struct Acked {
    repo: String,
    tag: String,
    manifest_digest: String,
    manifest: Vec<u8>,
    layer_seed: u64,
    layer_len: usize,
}

async fn pusher(c: reqwest::Client, b: String, worker: u64, acked: Arc<Mutex<Vec<Acked>>>, count: Arc<AtomicUsize>) {
    for i in 0u64.. {
        let repo = format!("crash/w{worker}");
        let seed = worker * 1_000_000 + i;
        let layer_len = 64 * 1024 + (seed as usize * 7919) % (1024 * 1024);
        let layer = bytes(seed, layer_len);
        let config = format!("{{\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
        // Any step may fail once the server is killed; only what was acknowledged counts.
        let Ok(cd) = try_push(&c, &b, &repo, &config).await else {
            return;
        };
        let Ok(ld) = try_push(&c, &b, &repo, &layer).await else {
            return;
        };
        let manifest = image_manifest((&cd, config.len()), &[(&ld, layer_len)], json!({}));
        let tag = format!("t{i}");
        let Ok(resp) = c
            .put(format!("{b}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
        else {
            return;
        };
        if resp.status() != StatusCode::CREATED {
            return;
        }
        let manifest_digest = sha256(&manifest);
        acked.lock().expect("lock").push(Acked { repo, tag, manifest_digest, manifest, layer_seed: seed, layer_len });
        count.fetch_add(1, Ordering::SeqCst);
    }
}

async fn try_push(c: &reqwest::Client, b: &str, repo: &str, data: &[u8]) -> Result<String, ()> {
    let digest = sha256(data);
    let resp = c
        .post(format!("{b}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .map_err(|_| ())?;
    if resp.status() == StatusCode::CREATED { Ok(digest) } else { Err(()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_pushes_loses_nothing_acknowledged() {
    let mut w = Wharf::start();
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    for round in 0..3 {
        let (c, b) = (w.client(), w.base());
        let count = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                tokio::spawn(pusher(c.clone(), b.clone(), round * 10 + worker, Arc::clone(&acked), Arc::clone(&count)))
            })
            .collect();
        let target = 5 + round as usize * 3;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while count.load(Ordering::SeqCst) < target {
            assert!(tokio::time::Instant::now() < deadline, "pushes made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        w.kill();
        for worker in workers {
            worker.await.expect("pusher");
        }
        w.restart();
        let c = w.client();
        let all = acked.lock().expect("lock").clone();
        for a in &all {
            let resp = c.get(format!("{}/v2/{}/manifests/{}", w.base(), a.repo, a.tag)).send().await.expect("GET");
            assert_eq!(resp.status(), StatusCode::OK, "acknowledged {}:{} lost in round {round}", a.repo, a.tag);
            assert_eq!(header(&resp, "docker-content-digest"), a.manifest_digest);
            assert_eq!(resp.bytes().await.expect("body").as_ref(), a.manifest.as_slice());
            let layer = bytes(a.layer_seed, a.layer_len);
            let url = format!("{}/v2/{}/blobs/{}", w.base(), a.repo, sha256(&layer));
            let got = c.get(url).send().await.expect("GET blob").bytes().await.expect("body");
            assert!(got.as_ref() == layer.as_slice(), "acknowledged layer of {}:{} corrupt", a.repo, a.tag);
        }
        assert_no_partial_blobs(&w.data_dir);
    }
    assert!(acked.lock().expect("lock").len() >= 5 + 8 + 11, "every round acknowledged pushes");
}
