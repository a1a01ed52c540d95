//! Registry benchmark: Wharf against Debian's docker-registry (distribution 2.8.2), side by
//! side on loopback, both plain HTTP on the filesystem, driven by the same client in the same
//! run. distribution runs without auth; Wharf with its accounts on (the administrator's Basic
//! credentials for pushes and pulls, a registry token for manifest requests, as docker does). Prints a table with ratios (medians; this machine is noisy).
//!
//! Run with `./scripts/bench` (it installs docker-registry and wrk), or
//! `cargo bench -p wharf --bench registry`. `WHARF_BENCH_QUICK=1` shrinks the sizes for a
//! smoke run. `WHARF_BENCH_STORAGE=s3` runs both on S3 instead: one moto server, a bucket each
//! (Wharf `--storage s3://...`, distribution's s3 driver with 8 MiB parts like Wharf's), with 8
//! concurrent pushes instead of 32, and measures what moto itself takes and gives (curl PUT and
//! GET of the big blob) as the bound. `WHARF_BENCH_STORAGE=swift` does the same on
//! an OpenStack Swift all-in-one (TempAuth; distribution's swift driver), same sizes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

mod common;

use common::{Res, Server, free_port, hey_head, median, start_wharf, wrk_get};

struct Sizes {
    big: usize,
    chunk: usize,
    small: usize,
    concurrent: usize,
    tags: usize,
    repos: usize,
    runs: usize,
}

/// Whether this run puts both registries on S3 (`WHARF_BENCH_STORAGE=s3`).
fn on_s3() -> bool {
    std::env::var("WHARF_BENCH_STORAGE").is_ok_and(|v| v == "s3")
}

/// Whether this run puts both registries on OpenStack Swift (`WHARF_BENCH_STORAGE=swift`).
fn on_swift() -> bool {
    std::env::var("WHARF_BENCH_STORAGE").is_ok_and(|v| v == "swift")
}

fn sizes() -> Sizes {
    if std::env::var_os("WHARF_BENCH_QUICK").is_some() {
        Sizes { big: 64 << 20, chunk: 16 << 20, small: 1 << 20, concurrent: 8, tags: 500, repos: 100, runs: 1 }
    } else if (on_s3() || on_swift()) && std::env::var_os("WHARF_BENCH_PUSH_ONLY").is_some() {
        Sizes { big: 1 << 30, chunk: 16 << 20, small: 8 << 20, concurrent: 8, tags: 0, repos: 0, runs: 3 }
    } else if on_s3() || on_swift() {
        Sizes { big: 1 << 30, chunk: 16 << 20, small: 8 << 20, concurrent: 8, tags: 10_000, repos: 2_000, runs: 3 }
    } else if std::env::var_os("WHARF_BENCH_PUSH_ONLY").is_some() {
        Sizes { big: 1 << 30, chunk: 16 << 20, small: 8 << 20, concurrent: 32, tags: 0, repos: 0, runs: 5 }
    } else {
        Sizes { big: 1 << 30, chunk: 16 << 20, small: 8 << 20, concurrent: 32, tags: 10_000, repos: 2_000, runs: 3 }
    }
}

/// Where distribution keeps blobs: its folder, a bucket of the S3 server at this endpoint, or a
/// container of the Swift whose TempAuth URL this is.
enum Backend {
    Filesystem,
    S3(String),
    Swift(String),
}

/// distribution on `backend`.
fn start_distribution(dir: &Path, backend: &Backend) -> Res<Server> {
    let data = dir.join("distribution");
    std::fs::create_dir_all(&data)?;
    let port = free_port();
    let config = dir.join("distribution.yml");
    let storage = match backend {
        Backend::Filesystem => {
            format!("{{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}", data.display())
        }
        Backend::Swift(auth) => format!(
            "{{swift: {{authurl: \"{auth}\", username: \"{}\", password: \"{}\", container: distribution, \
             authversion: 1}}, delete: {{enabled: true}}, redirect: {{disable: true}}}}",
            wharf_testkit::SWIFT_USER,
            wharf_testkit::SWIFT_KEY
        ),
        Backend::S3(endpoint) => format!(
            "{{s3: {{accesskey: bench, secretkey: bench-secret, region: us-east-1, regionendpoint: \"{endpoint}\", \
             bucket: distribution, secure: false, v4auth: true, chunksize: 8388608, rootdirectory: /registry}}, \
             delete: {{enabled: true}}, redirect: {{disable: true}}}}"
        ),
    };
    std::fs::write(
        &config,
        format!("version: 0.1\nlog: {{level: warn}}\nstorage: {storage}\nhttp: {{addr: 127.0.0.1:{port}}}\n"),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start docker-registry (apt-get install docker-registry): {e}"))?;
    Ok(Server { name: "distribution", child, base: format!("http://127.0.0.1:{port}"), auth: None })
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/v2/")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{base} did not become ready").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn digest(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    format!("sha256:{}", h.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn pattern(len: usize, seed: u64) -> Bytes {
    let mut v = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") { location.to_owned() } else { format!("{base}{location}") }
}

fn join(url: &str) -> &'static str {
    if url.contains('?') { "&" } else { "?" }
}

async fn start_upload(c: &reqwest::Client, base: &str, repo: &str) -> Res<String> {
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await?;
    if r.status() != 202 {
        return Err(format!("POST upload: {}", r.status()).into());
    }
    let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no location")?;
    Ok(absolute(base, loc))
}

/// POST + PUT with the whole body.
async fn push_monolithic(c: &reqwest::Client, base: &str, repo: &str, data: Bytes, d: &str) -> Res<()> {
    let loc = start_upload(c, base, repo).await?;
    let r = c.put(format!("{loc}{}digest={d}", join(&loc))).body(data).send().await?;
    if r.status() != 201 {
        return Err(format!("PUT blob: {} {}", r.status(), r.text().await.unwrap_or_default()).into());
    }
    Ok(())
}

async fn push_chunked(c: &reqwest::Client, base: &str, repo: &str, data: Bytes, d: &str, chunk: usize) -> Res<()> {
    let mut loc = start_upload(c, base, repo).await?;
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        let r = c
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{}", end - 1))
            .body(data.slice(offset..end))
            .send()
            .await?;
        if r.status() != 202 {
            return Err(format!("PATCH: {}", r.status()).into());
        }
        loc = absolute(base, r.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no location")?);
        offset = end;
    }
    let r = c.put(format!("{loc}{}digest={d}", join(&loc))).send().await?;
    if r.status() != 201 {
        return Err(format!("PUT: {}", r.status()).into());
    }
    Ok(())
}

/// Pulls a blob with curl into /dev/null; returns MiB/s. curl receives faster than the
/// in-process client, so it measures the servers rather than the client.
fn pull(server: &Server, repo: &str, d: &str) -> Res<f64> {
    curl_get(&format!("{}/v2/{repo}/blobs/{d}", server.base), server.auth.as_deref())
}

/// GETs `url` with curl into /dev/null; returns MiB/s.
fn curl_get(url: &str, auth: Option<&str>) -> Res<f64> {
    let mut curl = Command::new("curl");
    if let Some(auth) = auth {
        curl.arg("-H").arg(format!("Authorization: {auth}"));
    }
    let out = curl
        .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}"])
        .arg(url)
        .output()
        .map_err(|e| format!("run curl (apt-get install curl): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("curl pull failed: {} {}", text, String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap_or(0.0));
    let (size, speed) = (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0));
    if size <= 0.0 {
        return Err(format!("curl pulled nothing: {text}").into());
    }
    Ok(speed / (1024.0 * 1024.0))
}

/// The fastest pull curl can make on this machine: a minimal HTTP/1.1 server that answers
/// every request with `sendfile(2)` of a cached file of `len` bytes (no copy in the server),
/// pulled with the same curl; median of three, in MiB/s. Neither registry can beat it.
fn pull_ceiling(dir: &Path, len: usize) -> Res<f64> {
    use std::io::{Read, Write};
    let path = dir.join("ceiling.bin");
    std::fs::write(&path, pattern(len, 99))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/blob", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(file) = std::fs::File::open(&path) else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            if stream.write_all(header.as_bytes()).is_err() {
                continue;
            }
            let mut offset = 0u64;
            while offset < len as u64 {
                let left = len - offset as usize;
                match rustix::fs::sendfile(&stream, &file, Some(&mut offset), left) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    });
    curl_get(&url, None)?; // reads the file into the page cache
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(curl_get(&url, None)?);
    }
    Ok(median(rates))
}

fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

struct Row {
    name: String,
    unit: &'static str,
    higher_is_better: bool,
    values: [f64; 2],
}

struct Results {
    rows: Vec<Row>,
}

impl Results {
    fn add(&mut self, name: impl Into<String>, unit: &'static str, higher_is_better: bool, idx: usize, v: f64) {
        let name = name.into();
        eprintln!("  {:<14} {name}: {v:.1} {unit}", ["wharf", "distribution"][idx]);
        if let Some(row) = self.rows.iter_mut().find(|r| r.name == name) {
            row.values[idx] = v;
        } else {
            let mut values = [0.0; 2];
            values[idx] = v;
            self.rows.push(Row { name, unit, higher_is_better, values });
        }
    }
}

/// An OCI manifest over one config blob, so tags and repositories can be made cheaply.
fn tiny_manifest(config_digest: &str, config_len: usize, n: usize) -> Vec<u8> {
    format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{config_len}}},\
\"layers\":[],\"annotations\":{{\"n\":\"{n}\"}}}}"
    )
    .into_bytes()
}

async fn bench_server(idx: usize, server: &Server, s: &Sizes, results: &mut Results, dir: &Path) -> Res<()> {
    let c = server.client()?;
    let base = server.base.clone();
    wait_ready(&c, &base).await?;
    // Large pushes and pull.
    let mut mono = Vec::new();
    let mut mono_cpu = Vec::new();
    let mut chunked = Vec::new();
    let mut pulls = Vec::new();
    let mut repulls = Vec::new();
    for run in 0..s.runs {
        let data = pattern(s.big, 1000 + run as u64 * 2);
        let d = digest(&data);
        let t = Instant::now();
        let cpu = common::cpu_seconds();
        push_monolithic(&c, &base, "bench/big", data, &d).await?;
        mono.push(mib_s(s.big, t.elapsed().as_secs_f64()));
        mono_cpu.push((common::cpu_seconds() - cpu) / (s.big as f64 / f64::from(1 << 30)));
        let data = pattern(s.big, 1001 + run as u64 * 2);
        let d2 = digest(&data);
        let t = Instant::now();
        push_chunked(&c, &base, "bench/big", data, &d2, s.chunk).await?;
        chunked.push(mib_s(s.big, t.elapsed().as_secs_f64()));
        pulls.push(pull(server, "bench/big", &d)?);
        repulls.push(pull(server, "bench/big", &d)?);
    }
    let gib = if s.big >= 1 << 30 { "1 GiB".to_owned() } else { format!("{} MiB", s.big >> 20) };
    let rss = server.peak_rss_kib() as f64 / 1024.0;
    results.add(format!("server peak RSS during the {gib} pushes"), "MiB", false, idx, rss);
    results.add(format!("push {gib} monolithic"), "MiB/s", true, idx, median(mono));
    let what = "CPU time of the whole machine per GiB of monolithic push (client, loopback, server)";
    results.add(what, "s", false, idx, median(mono_cpu));
    results.add(format!("push {gib} in {} MiB chunks", s.chunk >> 20), "MiB/s", true, idx, median(chunked));
    results.add(format!("pull {gib} right after its push (curl)"), "MiB/s", true, idx, median(pulls));
    results.add(format!("pull {gib} again (curl)"), "MiB/s", true, idx, median(repulls));
    // Concurrent pushes.
    let mut conc = Vec::new();
    for run in 0..s.runs {
        let blobs: Vec<(Bytes, String)> = (0..s.concurrent)
            .map(|i| {
                let b = pattern(s.small, 50_000 + (run * 1000 + i) as u64);
                let d = digest(&b);
                (b, d)
            })
            .collect();
        let t = Instant::now();
        let tasks: Vec<_> = blobs
            .into_iter()
            .enumerate()
            .map(|(i, (b, d))| {
                let (c, base) = (c.clone(), base.clone());
                tokio::spawn(async move { push_monolithic(&c, &base, &format!("bench/conc{}", i % 4), b, &d).await })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        conc.push(mib_s(s.small * s.concurrent, t.elapsed().as_secs_f64()));
    }
    results.add(
        format!("{} concurrent pushes of {} MiB", s.concurrent, s.small >> 20),
        "MiB/s",
        true,
        idx,
        median(conc),
    );
    results.add(
        "server peak RSS after the concurrent pushes",
        "MiB",
        false,
        idx,
        server.peak_rss_kib() as f64 / 1024.0,
    );
    if s.tags == 0 {
        return Ok(());
    }
    // Tags: one config blob, many tags on small manifests.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = digest(config);
    push_monolithic(&c, &base, "bench/tags", Bytes::from_static(config), &cd).await?;
    let manifest = tiny_manifest(&cd, config.len(), 0);
    let md = digest(&manifest);
    let tags: Vec<String> = (0..s.tags).map(|i| format!("tag-{i:05}")).collect();
    make_tags(&c, &base, server.name, &manifest, &md, &tags).await?;
    let url = format!("{base}/v2/bench/tags/manifests/tag-00001");
    // Wharf is measured with accounts on, as docker uses it: a registry token on every request.
    let bearer = server.bearer("repository:bench/tags:pull").await?;
    results.add("manifest HEAD at 32 connections (hey)", "req/s", true, idx, hey_head(&url, bearer.as_deref())?);
    let bearer = server.bearer("repository:bench/tags:pull").await?;
    results.add("manifest GET at 32 connections (wrk)", "req/s", true, idx, wrk_get(&url, dir, bearer.as_deref())?);
    let mut lat = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = c.get(format!("{base}/v2/bench/tags/tags/list")).send().await?;
        if r.status() != 200 {
            return Err(format!("{}: tags list: {}", server.name, r.status()).into());
        }
        let body = r.bytes().await?;
        // The time is the registry's: request to last byte. Checking the list is not timed.
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let n = v["tags"].as_array().map_or(0, Vec::len);
        if n != s.tags {
            return Err(format!("{}: tags list has {n} tags, expected {}", server.name, s.tags).into());
        }
    }
    results.add(format!("tags list of {} tags", s.tags), "ms", false, idx, median(lat));
    // Catalog: repositories made by mounting the config and putting a manifest.
    make_repos(&c, &base, &cd, config.len(), s.repos).await?;
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut url = format!("{base}/v2/_catalog?n=1000");
        let mut pages = Vec::new();
        loop {
            let r = c.get(&url).send().await?;
            let link = r.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_owned);
            pages.push(r.bytes().await?);
            match link.and_then(|l| Some(l.split_once('<')?.1.split_once('>')?.0.to_owned())) {
                Some(next) => url = absolute(&base, &next),
                None => break,
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let mut total = 0;
        for page in &pages {
            let v: serde_json::Value = serde_json::from_slice(page)?;
            total += v["repositories"].as_array().map_or(0, Vec::len);
        }
        if total < s.repos {
            return Err(
                format!("{}: catalog has {total} repositories, expected at least {}", server.name, s.repos).into()
            );
        }
    }
    results.add(format!("catalog of {} repositories", s.repos), "ms", false, idx, median(lat));
    Ok(())
}

async fn make_tags(c: &reqwest::Client, base: &str, name: &str, manifest: &[u8], md: &str, tags: &[String]) -> Res<()> {
    let put = |url: String| {
        let c = c.clone();
        let body = manifest.to_vec();
        async move {
            let r = c
                .put(url)
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(body)
                .send()
                .await?;
            if r.status() != 201 {
                return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                    format!("{name}: PUT manifest: {} {}", r.status(), r.text().await.unwrap_or_default()).into(),
                );
            }
            Ok(())
        }
    };
    if name == "wharf" {
        // Wharf takes up to 64 tags per PUT (`?tag=`); distribution 2.8 does not.
        for batch in tags.chunks(64) {
            let q: Vec<String> = batch.iter().map(|t| format!("tag={t}")).collect();
            put(format!("{base}/v2/bench/tags/manifests/{md}?{}", q.join("&"))).await?;
        }
    } else {
        let mut stream = futures::stream::iter(tags.iter().map(|t| put(format!("{base}/v2/bench/tags/manifests/{t}"))))
            .buffer_unordered(16);
        while let Some(r) = stream.next().await {
            r?;
        }
    }
    Ok(())
}

async fn make_repos(c: &reqwest::Client, base: &str, cd: &str, config_len: usize, n: usize) -> Res<()> {
    let manifest = Arc::new(tiny_manifest(cd, config_len, 1));
    let work = (0..n).map(|i| {
        let (c, base, manifest, cd) = (c.clone(), base.to_owned(), Arc::clone(&manifest), cd.to_owned());
        async move {
            let repo = format!("cat/repo-{i:05}");
            let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/?mount={cd}&from=bench/tags")).send().await?;
            if r.status() != 201 {
                return Err::<(), Box<dyn std::error::Error + Send + Sync>>(format!("mount: {}", r.status()).into());
            }
            let r = c
                .put(format!("{base}/v2/{repo}/manifests/v1"))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest.to_vec())
                .send()
                .await?;
            if r.status() != 201 {
                return Err(format!("PUT manifest: {} {}", r.status(), r.text().await.unwrap_or_default()).into());
            }
            Ok(())
        }
    });
    let mut stream = futures::stream::iter(work).buffer_unordered(16);
    while let Some(r) = stream.next().await {
        r?;
    }
    Ok(())
}

/// Touches most of the machine's free memory once. In a fresh virtual machine the first touch of
/// a page is far slower than later ones (the hypervisor backs it then), and the page cache of
/// whichever server runs first would pay for it. After this, both run on touched memory.
fn prime_memory() {
    let free_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let bytes = (free_kib * 1024 * 3 / 4) as usize;
    eprintln!("priming {} MiB of memory", bytes >> 20);
    let mut block = vec![0u8; 64 << 20];
    let mut touched = Vec::new();
    while touched.len() * block.len() < bytes {
        block.iter_mut().step_by(4096).for_each(|b| *b = 1);
        touched.push(std::mem::replace(&mut block, vec![0u8; 64 << 20]));
    }
    drop(touched);
}

/// The single-core SHA-256 rate, in MiB/s.
fn sha256_rate() -> f64 {
    let data = pattern(256 << 20, 7);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(Sha256::digest(&data));
        rates.push(mib_s(data.len(), t.elapsed().as_secs_f64()));
    }
    median(rates)
}

/// The data disk's write rate with fsync (`dd ... conv=fsync`), in MiB/s.
fn disk_rate(dir: &Path) -> Res<f64> {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let target = dir.join("dd.test");
        let t = Instant::now();
        let out = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "count=1024", "conv=fsync", "status=none"])
            .arg(format!("of={}", target.display()))
            .output()?;
        if !out.status.success() {
            return Err("dd failed".into());
        }
        rates.push(1024.0 / t.elapsed().as_secs_f64());
        std::fs::remove_file(&target)?;
    }
    Ok(median(rates))
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list` and friends
    }
    let s = sizes();
    let base_dir = std::env::var_os("WHARF_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let tmp = tempfile::Builder::new().prefix("wharf-bench").tempdir_in(base_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut results = Results { rows: Vec::new() };
    prime_memory();
    eprintln!("measuring the physical limit of a durable push");
    let sha = sha256_rate();
    let disk = disk_rate(tmp.path())?;
    let only_wharf = std::env::var_os("WHARF_BENCH_ONLY_WHARF").is_some();
    let moto = on_s3().then(|| {
        let moto = wharf_testkit::Moto::start();
        moto.create_bucket("wharf");
        moto.create_bucket("distribution");
        moto
    });
    let credentials = tmp.path().join("s3-credentials");
    std::fs::write(&credentials, "aws_access_key_id = bench\naws_secret_access_key = bench-secret\n")?;
    let wharf_storage = moto.as_ref().map(|m| format!("s3://wharf/registry?endpoint={}", m.endpoint()));
    let mut wharf_flags = Vec::new();
    if let Some(location) = &wharf_storage {
        wharf_flags = vec!["--storage", location, "--storage-credentials", credentials.to_str().ok_or("path")?];
    }
    let swift = on_swift().then(wharf_testkit::Swift::start);
    let swift_credentials = tmp.path().join("swift-credentials");
    std::fs::write(
        &swift_credentials,
        format!("user = {}\nkey = {}\n", wharf_testkit::SWIFT_USER, wharf_testkit::SWIFT_KEY),
    )?;
    let swift_storage = swift.as_ref().map(|s| format!("swift://wharf/registry?auth={}", s.auth_url()));
    if let Some(location) = &swift_storage {
        wharf_flags = vec!["--storage", location, "--storage-credentials", swift_credentials.to_str().ok_or("path")?];
    }
    let backend = match (&moto, &swift) {
        (Some(m), _) => Backend::S3(m.endpoint()),
        (_, Some(s)) => Backend::Swift(s.auth_url()),
        _ => Backend::Filesystem,
    };
    for idx in [0, 1] {
        if idx == 1 && only_wharf {
            break;
        }
        let server = if idx == 0 {
            start_wharf(tmp.path(), "wharf", &wharf_flags)?
        } else {
            start_distribution(tmp.path(), &backend)?
        };
        eprintln!("benchmarking {} at {}", server.name, server.base);
        runtime.block_on(bench_server(idx, &server, &s, &mut results, tmp.path()))?;
        drop(server);
        let data = tmp.path().join(if idx == 0 { "wharf" } else { "distribution" });
        let _ = std::fs::remove_dir_all(data);
    }
    eprintln!("measuring the pull ceiling (sendfile server, same curl)");
    let ceiling = pull_ceiling(tmp.path(), s.big)?;
    print_table(&results, sha, disk);
    print_pull_ceiling(&results, ceiling);
    print_storage_bound(&results, &backend, tmp.path(), s.big)?;
    Ok(())
}

/// What the object store itself takes and gives: curl PUT and GET of a blob of `len` bytes
/// straight to it (moto: signed as any S3 client signs, though moto checks no signature;
/// Swift: with a TempAuth token), median of three, and the share of it each registry reached.
fn print_storage_bound(results: &Results, backend: &Backend, dir: &Path, len: usize) -> Res<()> {
    let file = dir.join("bound.bin");
    std::fs::write(&file, pattern(len, 7))?;
    let (name, url, auth): (&str, String, Vec<String>) = match backend {
        Backend::Filesystem => return Ok(()),
        Backend::S3(endpoint) => {
            let auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "bench:bench-secret"];
            let made = Command::new("curl")
                .args(["-sS", "--fail", "-X", "PUT"])
                .args(auth)
                .arg(format!("{endpoint}/bound"))
                .output()?;
            if !made.status.success() {
                return Err(format!("creating the bound bucket: {}", String::from_utf8_lossy(&made.stderr)).into());
            }
            ("moto", format!("{endpoint}/bound/blob"), auth.map(str::to_owned).to_vec())
        }
        Backend::Swift(auth_url) => {
            let out = Command::new("curl")
                .args(["-sS", "--fail", "-D", "-", "-o", "/dev/null", "-H"])
                .arg(format!("X-Auth-User: {}", wharf_testkit::SWIFT_USER))
                .arg("-H")
                .arg(format!("X-Auth-Key: {}", wharf_testkit::SWIFT_KEY))
                .arg(auth_url)
                .output()?;
            let headers = String::from_utf8_lossy(&out.stdout).into_owned();
            let header = |n: &str| {
                headers.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(n).then(|| v.trim().to_owned())
                })
            };
            let (token, storage) =
                (header("x-auth-token").ok_or("no token")?, header("x-storage-url").ok_or("no url")?);
            let auth = vec!["-H".to_owned(), format!("X-Auth-Token: {token}")];
            let made = Command::new("curl")
                .args(["-sS", "--fail", "-X", "PUT"])
                .args(&auth)
                .arg(format!("{storage}/bound"))
                .output()?;
            if !made.status.success() {
                return Err("creating the bound container".into());
            }
            ("Swift", format!("{storage}/bound/blob"), auth)
        }
    };
    let curl = |args: &[&str]| -> Res<f64> {
        let out = Command::new("curl").args(["-sS", "--fail"]).args(&auth).args(args).arg(&url).output()?;
        if !out.status.success() {
            return Err(format!("curl {args:?} to {name}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let speed: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0);
        Ok(speed / (1024.0 * 1024.0))
    };
    let file = file.to_str().ok_or("path")?;
    let mut puts = Vec::new();
    let mut gets = Vec::new();
    for _ in 0..3 {
        puts.push(curl(&["-o", "/dev/null", "-w", "%{speed_upload}", "-T", file])?);
        gets.push(curl(&["-o", "/dev/null", "-w", "%{speed_download}"])?);
    }
    let (put, get) = (median(puts), median(gets));
    println!("{name} itself (curl, no registry): PUT {put:.0} MiB/s, GET {get:.0} MiB/s");
    for row in results.rows.iter().filter(|r| r.name.starts_with("push ") || r.name.starts_with("pull ")) {
        let bound = if row.name.starts_with("push ") { put } else { get };
        let [w, d] = row.values;
        println!(
            "{}: Wharf {:.0}% of {name}'s rate, distribution {:.0}%",
            row.name,
            100.0 * w / bound,
            100.0 * d / bound
        );
    }
    Ok(())
}

fn print_pull_ceiling(results: &Results, ceiling: f64) {
    println!("pull ceiling of this machine (curl from a minimal sendfile server): {ceiling:.0} MiB/s");
    for row in results.rows.iter().filter(|r| r.name.starts_with("pull ")) {
        let [w, d] = row.values;
        println!(
            "{}: Wharf {:.0}% of the ceiling, distribution {:.0}%",
            row.name,
            100.0 * w / ceiling,
            100.0 * d / ceiling
        );
    }
}

fn print_table(results: &Results, sha: f64, disk: f64) {
    println!();
    println!("| measurement | Wharf | distribution 2.8.2 | Wharf advantage |");
    println!("|---|---:|---:|---:|");
    for row in &results.rows {
        let [w, d] = row.values;
        let ratio = if d == 0.0 || w == 0.0 {
            f64::NAN
        } else if row.higher_is_better {
            w / d
        } else {
            d / w
        };
        println!("| {} | {:.1} {} | {:.1} {} | {:.2}x |", row.name, w, row.unit, d, row.unit, ratio);
    }
    let limit = sha.min(disk);
    println!();
    println!(
        "physical limit of a durable push: min(SHA-256 single core {sha:.0} MiB/s, disk write with fsync {disk:.0} MiB/s) = {limit:.0} MiB/s"
    );
    if let Some(mono) = results.rows.iter().find(|r| r.name.starts_with("push") && r.name.contains("monolithic")) {
        println!(
            "Wharf monolithic push: {:.0} MiB/s = {:.0}% of the physical limit",
            mono.values[0],
            100.0 * mono.values[0] / limit
        );
    }
    if let Some(cpu) = results.rows.iter().find(|r| r.name.starts_with("CPU time")) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let bound = 1024.0 * cores / cpu.values[0];
        println!(
            "with {:.2} CPU-s per GiB on {cores} cores, Wharf's monolithic push could reach at most {bound:.0} MiB/s \
             if every core were busy throughout ({:.0}% of the physical limit)",
            cpu.values[0],
            100.0 * bound / limit
        );
    }
}
