//! Failover benchmark: three managers on 127.0.0.21-23; a client writes continuously (small
//! blob pushes, each a replicated state change) through a manager that is not the leader;
//! the leader is killed with SIGKILL; the time from the kill to the first acknowledged write
//! is measured. 20 trials (the killed manager is restarted and rejoins between trials);
//! prints the median and p99, and checks at the end that every acknowledged write is on every
//! manager. Run with `cargo bench -p wharf --bench failover` (or `./scripts/bench`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{PASSWORD, start_cluster};
use common::percentile;

use sha2::{Digest as _, Sha256};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
const TRIALS: usize = 20;

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

async fn push(c: &reqwest::Client, addr: &str, data: &[u8]) -> bool {
    let url = format!("https://{addr}/v2/admin/bench/blobs/uploads/?digest={}", digest(data));
    let sent = c.post(url).basic_auth("admin", Some(PASSWORD)).body(data.to_vec()).send().await;
    sent.map(|r| r.status() == reqwest::StatusCode::CREATED).unwrap_or(false)
}

async fn known(c: &reqwest::Client, addr: &str, data: &[u8]) -> bool {
    let url = format!("https://{addr}/v2/admin/bench/blobs/{}", digest(data));
    let sent = c.head(url).basic_auth("admin", Some(PASSWORD)).send().await;
    sent.map(|r| r.status() == reqwest::StatusCode::OK).unwrap_or(false)
}

/// The node id of manager `addr` if it says it is the leader of three voters that all
/// replicate from it.
async fn leader(c: &reqwest::Client, addr: &str, session: &str) -> Option<(u64, usize)> {
    let nodes: serde_json::Value =
        c.get(format!("https://{addr}/api/nodes")).bearer_auth(session).send().await.ok()?.json().await.ok()?;
    let nodes = nodes.as_array()?;
    let me = nodes.iter().find(|n| n["self"] == true && n["leader"] == true)?["id"].as_u64()?;
    let replicating = nodes.iter().filter(|n| n["raft"] == "voter" && n["reachability"] == "reachable").count();
    Some((me, replicating))
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("wharf-bench-failover").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(tmp.path()))
}

async fn run(dir: &Path) -> Res<()> {
    let (mut nodes, c, session) = start_cluster(dir, &["127.0.0.21", "127.0.0.22", "127.0.0.23"]).await?;
    let mut acknowledged: Vec<Vec<u8>> = Vec::new();
    let mut times = Vec::new();
    let mut counter = 0usize;
    for trial in 0..TRIALS {
        // A healthy cluster of three voters, and its leader.
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader_id = loop {
            let mut seen = None;
            for n in &nodes {
                if let Some((l, voters)) = leader(&c, &n.addr, &session).await
                    && voters == 3
                {
                    seen = Some(l);
                    break;
                }
            }
            if let Some(l) = seen {
                break l;
            }
            if Instant::now() > deadline {
                return Err("the cluster did not become healthy".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let leader_index = (leader_id - 1) as usize;
        let writer = &nodes[(leader_index + 1) % 3].addr.clone();
        // Writes go on before, during and after the kill.
        for _ in 0..5 {
            counter += 1;
            let blob = format!("write {counter}").into_bytes();
            if push(&c, writer, &blob).await {
                acknowledged.push(blob);
            }
        }
        nodes[leader_index].kill();
        let killed = Instant::now();
        loop {
            counter += 1;
            let blob = format!("write {counter}").into_bytes();
            if push(&c, writer, &blob).await {
                acknowledged.push(blob);
                break;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                return Err("no write was acknowledged within 30 s of the kill".into());
            }
        }
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        eprintln!("trial {:>2}: leader {leader_id} killed, first acknowledged write after {took:.0} ms", trial + 1);
        times.push(took);
        nodes[leader_index].start()?;
    }
    // Every acknowledged write is on every manager.
    let mut lost = 0;
    for blob in &acknowledged {
        for n in &nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !known(&c, &n.addr, blob).await {
                if Instant::now() > deadline {
                    lost += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!();
    println!("| failover, {TRIALS} trials, 3 managers on loopback | value |");
    println!("|---|---:|");
    println!(
        "| median from SIGKILL of the leader to the first acknowledged write | {:.0} ms |",
        percentile(&times, 0.5)
    );
    println!("| p99 | {:.0} ms |", percentile(&times, 0.99));
    println!("| min / max | {:.0} / {:.0} ms |", times[0], times[times.len() - 1]);
    println!("| acknowledged writes checked on all 3 managers | {} |", acknowledged.len());
    println!("| acknowledged writes lost | {lost} |");
    if lost > 0 {
        return Err(format!("{lost} acknowledged writes are missing").into());
    }
    Ok(())
}
