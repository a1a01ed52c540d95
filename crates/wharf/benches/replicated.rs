//! Replicated writes: three Wharf managers against three etcd 3.4 members (Debian's
//! etcd-server), both on loopback with fsync on, running side by side, driven by the same
//! client: 16 concurrent tasks, each writing in a loop to the member its index picks, in
//! alternating rounds (Wharf, etcd, Wharf, ...) so that the machine's noise falls on both;
//! the table shows the medians over the rounds. A Wharf
//! write is one replicated command (`PATCH /api/repositories/<name>` making a repository
//! public: a Raft entry applied on every manager); an etcd write is a `put` through its HTTP
//! gateway. Prints throughput and p50/p99 latency for both, and the ratios.
//! Run with `cargo bench -p wharf --bench replicated` (`./scripts/bench` installs etcd).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::Res;
use common::cluster::start_cluster;

const CLIENTS: usize = 16;
const DURATION: Duration = Duration::from_secs(4);
const ROUNDS: usize = 5;

struct Etcd(Vec<Child>);

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_etcd(dir: &Path) -> Res<(Etcd, Vec<String>)> {
    let port = || std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map(|a| a.port());
    let peers: Vec<u16> = (0..3).map(|_| port()).collect::<Result<_, _>>()?;
    let clients: Vec<u16> = (0..3).map(|_| port()).collect::<Result<_, _>>()?;
    let cluster: Vec<String> = (0..3).map(|i| format!("e{i}=http://127.0.0.1:{}", peers[i])).collect();
    let mut children = Vec::new();
    for i in 0..3 {
        let child = Command::new("etcd")
            .args(["--name", &format!("e{i}"), "--data-dir"])
            .arg(dir.join(format!("etcd{i}")))
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", peers[i])])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", peers[i])])
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{}", clients[i])])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{}", clients[i])])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "wharf-bench", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start etcd (apt-get install etcd-server): {e}"))?;
        children.push(child);
    }
    Ok((Etcd(children), clients.iter().map(|p| format!("http://127.0.0.1:{p}")).collect()))
}

/// One write: `Ok(latency)` if acknowledged.
type Write = Arc<dyn Fn(usize, u64) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// Runs CLIENTS tasks writing for DURATION; returns (writes per second, p50 ms, p99 ms).
async fn drive(write: Write) -> Res<(f64, f64, f64)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..CLIENTS {
        let write = Arc::clone(&write);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < DURATION {
                let t = Instant::now();
                if write(task, n).await {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                n += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    if all.is_empty() {
        return Err("no write succeeded".into());
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    Ok((rate, common::percentile(&all, 0.5), common::percentile(&all, 0.99)))
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("wharf-bench-replicated").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(tmp.path()))
}

async fn run(dir: &Path) -> Res<()> {
    let (nodes, c, session) = start_cluster(dir, &["127.0.0.31", "127.0.0.32", "127.0.0.33"]).await?;
    let addrs: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.addr.clone()).collect());
    // Wait until all three are voters.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed: serde_json::Value =
            c.get(format!("https://{}/api/nodes", addrs[0])).bearer_auth(&session).send().await?.json().await?;
        if listed.as_array().map_or(0, |a| a.iter().filter(|n| n["raft"] == "voter").count()) == 3 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the managers did not form a cluster".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wharf_write: Write = {
        let (c, session, addrs) = (c.clone(), session.clone(), Arc::clone(&addrs));
        Arc::new(move |task, n| {
            let (c, session) = (c.clone(), session.clone());
            let url = format!("https://{}/api/repositories/admin/r{task}", addrs[task % addrs.len()]);
            Box::pin(async move {
                let body = serde_json::json!({"public": n % 2 == 0});
                let sent = c.patch(url).bearer_auth(&session).json(&body).send().await;
                sent.map(|r| r.status().is_success()).unwrap_or(false)
            })
        })
    };
    let (_etcd, endpoints) = start_etcd(dir)?;
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(64).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while plain.get(format!("{}/health", endpoints[0])).send().await.map(|r| r.status().is_success()).ok() != Some(true)
    {
        if Instant::now() > deadline {
            return Err("etcd did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoints = Arc::new(endpoints);
    let etcd_write: Write = {
        let (c, endpoints) = (plain.clone(), Arc::clone(&endpoints));
        Arc::new(move |task, n| {
            let c = c.clone();
            let url = format!("{}/v3/kv/put", endpoints[task % endpoints.len()]);
            let b64 = base64::engine::general_purpose::STANDARD;
            let body = serde_json::json!({"key": b64.encode(format!("r{task}")), "value": b64.encode(format!("{}", n % 2 == 0))});
            Box::pin(async move {
                let sent = c.post(url).json(&body).send().await;
                sent.map(|r| r.status().is_success()).unwrap_or(false)
            })
        })
    };
    let (mut wharf_rounds, mut etcd_rounds) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}: {CLIENTS} clients for {DURATION:?} on each");
        wharf_rounds.push(drive(Arc::clone(&wharf_write)).await?);
        etcd_rounds.push(drive(Arc::clone(&etcd_write)).await?);
    }
    drop(nodes);
    let median = |rounds: &[(f64, f64, f64)], pick: fn(&(f64, f64, f64)) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        values[values.len() / 2]
    };
    let wharf = (median(&wharf_rounds, |r| r.0), median(&wharf_rounds, |r| r.1), median(&wharf_rounds, |r| r.2));
    let etcd = (median(&etcd_rounds, |r| r.0), median(&etcd_rounds, |r| r.1), median(&etcd_rounds, |r| r.2));
    println!();
    println!(
        "| replicated small writes, 3 members, {CLIENTS} clients, fsync on, median of {ROUNDS} rounds | Wharf | etcd 3.4 | Wharf advantage |"
    );
    println!("|---|---:|---:|---:|");
    println!("| writes per second | {:.0} | {:.0} | {:.2}x |", wharf.0, etcd.0, wharf.0 / etcd.0);
    println!("| p50 latency | {:.1} ms | {:.1} ms | {:.2}x |", wharf.1, etcd.1, etcd.1 / wharf.1);
    println!("| p99 latency | {:.1} ms | {:.1} ms | {:.2}x |", wharf.2, etcd.2, etcd.2 / wharf.2);
    Ok(())
}
