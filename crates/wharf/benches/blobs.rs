//! Blobs on several managers, in one run with the same client:
//! - a 1 GiB monolithic push through one of three managers (acknowledged once the blob is
//!   durable on two of them: `--blob-copies 2`, the default), against the same push to a
//!   manager alone (a one-node cluster: nothing to copy);
//! - the first pull of that blob through the manager without a copy (it reads the blob from a
//!   holder over mutual TLS while it keeps a verified copy), against a pull from a holder.
//!
//! Every push is a new blob. Medians of 3 rounds; prints a table with ratios. Run with
//! `cargo bench -p wharf --bench blobs`; `WHARF_BENCH_QUICK=1` pushes 64 MiB blobs.

mod common;

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use common::cluster::{Node, PASSWORD, start_cluster};
use common::{Res, median};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

const ROUNDS: usize = 3;
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("wharf-bench-blobs").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(tmp.path()))
}

/// A blob of `size` bytes that differs from every other one this run makes (`seed`).
fn blob(size: usize, seed: u64) -> (Bytes, String) {
    let mut data = vec![0u8; size];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let digest = format!("sha256:{}", Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect::<String>());
    (Bytes::from(data), digest)
}

/// A rate and the whole machine's busy CPU time per GiB moved.
#[derive(Clone, Copy)]
struct Measured {
    mib_s: f64,
    cpu_per_gib: f64,
}

/// Measures `work`, which moves `size` bytes.
async fn measure(size: usize, work: impl std::future::Future<Output = Res<()>>) -> Res<Measured> {
    let (started, cpu) = (Instant::now(), common::cpu_seconds());
    work.await?;
    let (secs, cpu) = (started.elapsed().as_secs_f64(), common::cpu_seconds() - cpu);
    let gib = size as f64 / MIB / 1024.0;
    Ok(Measured { mib_s: size as f64 / MIB / secs, cpu_per_gib: cpu / gib })
}

/// Pushes `data` through `addr` in one request.
async fn push(c: &reqwest::Client, addr: &str, data: &Bytes, digest: &str) -> Res<()> {
    let url = format!("https://{addr}/v2/admin/bench/blobs/uploads/?digest={digest}");
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..data.len()).step_by(1 << 20).map(|at| Ok(data.slice(at..(at + (1 << 20)).min(data.len())))).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = c.post(url).basic_auth("admin", Some(PASSWORD)).body(body).send().await?;
    if resp.status() != reqwest::StatusCode::CREATED {
        return Err(format!("push through {addr}: {} {}", resp.status(), resp.text().await?).into());
    }
    Ok(())
}

/// Pulls blob `digest` (`size` bytes) through `addr`.
async fn pull(c: &reqwest::Client, addr: &str, digest: &str, size: usize) -> Res<()> {
    let url = format!("https://{addr}/v2/admin/bench/blobs/{digest}");
    let resp = c.get(url).basic_auth("admin", Some(PASSWORD)).send().await?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("pull through {addr}: {}", resp.status()).into());
    }
    let mut stream = resp.bytes_stream();
    let mut got = 0;
    while let Some(chunk) = stream.next().await {
        got += chunk?.len();
    }
    if got != size {
        return Err(format!("pull through {addr}: {got} of {size} bytes").into());
    }
    Ok(())
}

/// Whether manager `n` (1-based) of the cluster in `dir` has its own copy of `digest`.
fn holds(dir: &Path, n: usize, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    dir.join(format!("node{n}/blobs/blobs/sha256/{}/{hex}", &hex[..2])).exists()
}

/// Waits until every manager of `nodes` is a Raft voter.
async fn wait_for_voters(c: &reqwest::Client, nodes: &[Node], session: &str) -> Res<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed: serde_json::Value =
            c.get(format!("https://{}/api/nodes", nodes[0].addr)).bearer_auth(session).send().await?.json().await?;
        let voters = listed.as_array().map_or(0, |l| l.iter().filter(|n| n["raft"] == "voter").count());
        if voters == nodes.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the managers did not all become voters".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn run(dir: &Path) -> Res<()> {
    let size: usize = if std::env::var_os("WHARF_BENCH_QUICK").is_some() { 64 << 20 } else { 1 << 30 };
    let alone_dir = dir.join("alone");
    let three_dir = dir.join("three");
    std::fs::create_dir_all(&alone_dir)?;
    std::fs::create_dir_all(&three_dir)?;
    let (alone, _, _) = start_cluster(&alone_dir, &["127.0.0.31"]).await?;
    let (three, c3, session) = start_cluster(&three_dir, &["127.0.0.32", "127.0.0.33", "127.0.0.34"]).await?;
    wait_for_voters(&c3, &three, &session).await?;
    // One client for every request (it trusts both clusters' CAs).
    let ca = |d: &Path| std::fs::read(d.join("node1/pki/ca.crt")).map(|pem| reqwest::Certificate::from_pem(&pem));
    let c = reqwest::Client::builder()
        .tls_certs_only([ca(&alone_dir)??, ca(&three_dir)??])
        .timeout(std::time::Duration::from_secs(600))
        .build()?;
    let (mut alone_push, mut three_push, mut holder_pull, mut copying_pull) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS as u64 {
        let (data, digest) = blob(size, 2 * round + 1);
        alone_push.push(measure(size, push(&c, &alone[0].addr, &data, &digest)).await?);
        let (data, digest) = blob(size, 2 * round + 2);
        three_push.push(measure(size, push(&c, &three[0].addr, &data, &digest)).await?);
        let copies = (1..=3).filter(|n| holds(&three_dir, *n, &digest)).count();
        let Some(without) = (1..=3).find(|n| !holds(&three_dir, *n, &digest)) else {
            return Err("every manager holds the blob already".into());
        };
        copying_pull.push(measure(size, pull(&c, &three[without - 1].addr, &digest, size)).await?);
        holder_pull.push(measure(size, pull(&c, &three[0].addr, &digest, size)).await?);
        eprintln!(
            "round {}: {copies} copies when acknowledged; push alone {:.0}, through one of three {:.0}; pull from a holder {:.0}, first pull through manager {without} {:.0} MiB/s",
            round + 1,
            alone_push[round as usize].mib_s,
            three_push[round as usize].mib_s,
            holder_pull[round as usize].mib_s,
            copying_pull[round as usize].mib_s,
        );
        if copies != 2 {
            return Err(format!("{copies} copies of an acknowledged push, not 2").into());
        }
    }
    drop(alone);
    let gib = size as f64 / MIB / 1024.0;
    println!();
    println!("| blobs on several managers, {gib} GiB, median of {ROUNDS} | 3 managers | reference | ratio | target |");
    println!("|---|---:|---:|---:|---:|");
    let rows = [
        ("monolithic push, acknowledged on 2 of 3 managers, against a manager alone", three_push, alone_push, 0.6),
        ("first pull through the manager without a copy, against a pull from a holder", copying_pull, holder_pull, 0.7),
    ];
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let mut bounds = Vec::new();
    for (what, ours, reference, target) in rows {
        let rate = |m: &[Measured]| median(m.iter().map(|m| m.mib_s).collect());
        let cpu = |m: &[Measured]| median(m.iter().map(|m| m.cpu_per_gib).collect());
        let (o, r) = (rate(&ours), rate(&reference));
        println!("| {what} | {o:.0} MiB/s | {r:.0} MiB/s | {:.2}x | {target}x |", o / r);
        bounds.push((what, cpu(&ours), cpu(&reference), o, r));
    }
    println!();
    // What the machine allows: every byte costs CPU on each node it passes (TLS, SHA-256,
    // the disk), and all the nodes share these cores.
    for (what, cpu_ours, cpu_reference, o, r) in bounds {
        let (ceiling_ours, ceiling_reference) = (1024.0 * cores / cpu_ours, 1024.0 * cores / cpu_reference);
        println!(
            "{what}: {cpu_ours:.2} against {cpu_reference:.2} CPU-s per GiB (whole machine); on {cores} cores at most \
             {ceiling_ours:.0} against {ceiling_reference:.0} MiB/s, a ratio of at most {:.2}x; reached {:.0}% and {:.0}% of those ceilings",
            ceiling_ours / ceiling_reference,
            100.0 * o / ceiling_ours,
            100.0 * r / ceiling_reference,
        );
    }
    Ok(())
}
