//! Small OCI helpers for tests: digests, manifests, and pushes over plain HTTP calls.

use reqwest::{Client, Response, StatusCode};
use serde_json::json;
use sha2::{Digest as _, Sha256, Sha512};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex(&Sha512::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pseudo-random but reproducible bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Absolute URL of a `Location` header value.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

pub fn header(resp: &Response, name: &str) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Opens an upload session and returns its absolute location.
pub async fn start_upload(client: &Client, base: &str, repo: &str) -> String {
    let resp = client.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.expect("POST upload");
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "start upload in {repo}");
    absolute(base, &header(&resp, "location"))
}

/// `?` or `&`, whichever joins a query parameter to `url`.
pub fn join(url: &str) -> &'static str {
    if url.contains('?') { "&" } else { "?" }
}

/// Pushes a blob with POST then PUT (the two-request monolithic upload); returns its digest.
pub async fn push_blob(client: &Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let location = start_upload(client, base, repo).await;
    let resp = client
        .put(format!("{location}{}digest={digest}", join(&location)))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("PUT blob");
    assert_eq!(resp.status(), StatusCode::CREATED, "push blob {digest} to {repo}");
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    digest
}

/// An OCI image manifest over a config and layers given as (digest, size).
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)], extra: serde_json::Value) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": OCI_LAYER, "digest": d, "size": s})).collect::<Vec<_>>(),
    });
    if let (Some(obj), Some(more)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec_pretty(&m).expect("json")
}

pub async fn put_manifest(
    client: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    client
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("PUT manifest")
}

/// Pushes a config, one layer and a manifest tagged `tag`; returns (manifest digest, manifest bytes).
pub async fn push_image(client: &Client, base: &str, repo: &str, tag: &str, seed: u64) -> (String, Vec<u8>) {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = bytes(seed, 2048);
    let c = push_blob(client, base, repo, &config).await;
    let l = push_blob(client, base, repo, &layer).await;
    let manifest = image_manifest((&c, config.len()), &[(&l, layer.len())], json!({}));
    let resp = put_manifest(client, base, repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "push manifest {repo}:{tag}");
    (sha256(&manifest), manifest)
}

/// The body of a GET, which must succeed.
pub async fn get_bytes(client: &Client, url: &str) -> bytes::Bytes {
    let resp = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.bytes().await.unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

/// Writes an OCI image layout in `dir` holding one image, tagged `tag`, of `layer` with a
/// minimal config (what `skopeo copy oci:DIR:TAG ...` reads); returns the manifest digest.
pub fn write_oci_layout(dir: &std::path::Path, tag: &str, layer: &[u8]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| {
        let digest = sha256(data);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), data).expect("write blob");
        digest
    };
    let ld = put(layer);
    let config = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [ld]}});
    let config = serde_json::to_vec(&config).expect("json");
    let cd = put(&config);
    let manifest = image_manifest((&cd, config.len()), &[(&ld, layer.len())], json!({}));
    let md = put(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md,
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write index");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
    md
}
