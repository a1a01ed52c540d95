//! A cluster of real `wharf` processes on distinct 127.0.0.x addresses: `wharf init`, managers
//! and a worker joining with tokens, writes through any manager, SIGKILL of the leader and
//! then of a second manager (no quorum: writes refused with a clear error, reads still
//! answer), restarts with the same command line, a restart of every manager at once, the
//! removal of a node, and joins refused for a token of another cluster or a rotated token.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oci::sha256;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const PASSWORD: &str = "cluster-admin-password";

/// A free port on `ip`.
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

struct Node {
    child: Option<Child>,
    args: Vec<String>,
    /// The line that says the process is ready.
    ready: &'static str,
    addr: String,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Runs a manager, `wharf <args>`, and waits for its "listening on" line.
    fn start(args: Vec<String>, addr: String) -> Node {
        Node::start_until(args, addr, "listening on")
    }

    /// Runs `wharf <args>` and waits for a line containing `ready`.
    fn start_until(args: Vec<String>, addr: String, ready: &'static str) -> Node {
        let mut node = Node { child: None, args, ready, addr, stdout: Arc::new(Mutex::new(Vec::new())) };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut child = Command::new(WHARF)
            .args(&self.args)
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wharf");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&self.stdout);
        let ready = self.ready;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let listening = line.contains(ready);
                lines.lock().expect("lock").push(line);
                if listening {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("wharf {:?} did not start: {:?}", self.args, self.stdout.lock().expect("lock"));
        }
        self.child = Some(child);
    }

    /// The first line of standard output containing `marker`, waiting a little for it.
    fn printed(&self, marker: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self.stdout.lock().expect("lock").iter().find(|l| l.contains(marker)).cloned();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn session(c: &reqwest::Client, node: &Node) -> String {
    let resp = c
        .post(node.url("/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<Value>().await.expect("json")["auth_token"].as_str().expect("token").to_owned()
}

async fn nodes(c: &reqwest::Client, node: &Node, session: &str) -> Vec<Value> {
    let resp = c.get(node.url("/api/nodes")).bearer_auth(session).send().await.expect("nodes");
    resp.json::<Value>().await.expect("json").as_array().cloned().unwrap_or_default()
}

/// Pushes `data` as a blob through `node`; returns the status.
async fn push(c: &reqwest::Client, node: &Node, data: &[u8]) -> StatusCode {
    let url = node.url(&format!("/v2/admin/app/blobs/uploads/?digest={}", sha256(data)));
    match c.post(url).basic_auth("admin", Some(PASSWORD)).body(data.to_vec()).send().await {
        Ok(r) => {
            let status = r.status();
            if status != StatusCode::CREATED {
                eprintln!("push through {}: {status} {}", node.addr, r.text().await.unwrap_or_default());
            }
            status
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Waits until `node` knows the blob `data`.
async fn wait_known(c: &reqwest::Client, node: &Node, data: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !known(c, node, data).await {
        assert!(Instant::now() < deadline, "{} never learned of {:?}", node.addr, String::from_utf8_lossy(data));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn known(c: &reqwest::Client, node: &Node, data: &[u8]) -> bool {
    let url = node.url(&format!("/v2/admin/app/blobs/{}", sha256(data)));
    let resp = c.head(url).basic_auth("admin", Some(PASSWORD)).send().await;
    resp.map(|r| r.status() == StatusCode::OK).unwrap_or(false)
}

fn join_args(token: &str, via: &str, addr: &str, dir: &Path) -> Vec<String> {
    let dir = dir.to_str().expect("path");
    ["join", "--token", token, via, "--advertise", addr, "--data-dir", dir].iter().map(|s| (*s).to_owned()).collect()
}

fn data_dir(tmp: &Path, n: u32) -> PathBuf {
    tmp.join(format!("node{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_replicate_fail_over_and_rejoin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addrs: Vec<String> = (1..=4).map(|i| format!("127.0.0.{i}:{}", free_port(&format!("127.0.0.{i}")))).collect();
    let first = Node::start(
        vec![
            "init".into(),
            "--advertise".into(),
            addrs[0].clone(),
            "--data-dir".into(),
            data_dir(tmp.path(), 1).to_str().expect("path").into(),
            "--admin-password-file".into(),
            password_file.to_str().expect("path").into(),
        ],
        addrs[0].clone(),
    );
    let token_of = |node: &Node, role: &str| {
        let line = node.printed(&format!("join a {role}")).expect("the banner prints the join tokens");
        line.split_whitespace().find(|w| w.starts_with("WHARF-1-")).expect("token").to_owned()
    };
    let (manager_token, worker_token) = (token_of(&first, "manager"), token_of(&first, "worker"));
    let ca = data_dir(tmp.path(), 1).join("pki/ca.crt");
    let c = client(&ca);

    let mut managers = vec![first];
    for n in 2..=3 {
        let args = join_args(&manager_token, &addrs[0], &addrs[n as usize - 1], &data_dir(tmp.path(), n));
        managers.push(Node::start(args, addrs[n as usize - 1].clone()));
    }
    let worker = Node::start_until(
        join_args(&worker_token, &addrs[1], &addrs[3], &data_dir(tmp.path(), 4)),
        addrs[3].clone(),
        "is up",
    );
    assert!(worker.printed("worker 4").is_some(), "the worker got id 4: {:?}", worker.stdout.lock().expect("lock"));
    let admin = session(&c, &managers[0]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = nodes(&c, &managers[0], &admin).await;
        if listed.iter().filter(|n| n["raft"] == "voter").count() == 3 {
            break listed;
        }
        assert!(Instant::now() < deadline, "three voters never appeared: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[3]["role"], "worker");
    // On a manager's machine, its data directory is enough: the node's own certificate.
    let out =
        Command::new(WHARF).args(["node", "ls", "--data-dir"]).arg(data_dir(tmp.path(), 2)).output().expect("node ls");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wharf node ls --data-dir: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains("manager") && l.contains("voter")).count(), 3, "{text}");
    assert_eq!(listed[3]["raft"], "none", "a worker does not join raft");

    // A write through any manager reaches every manager.
    assert_eq!(push(&c, &managers[1], b"through manager 2").await, StatusCode::CREATED);
    for m in &managers {
        wait_known(&c, m, b"through manager 2").await;
    }

    // SIGKILL the leader: another manager leads and writes go on.
    let leader = listed.iter().find(|n| n["leader"] == true).expect("a leader")["id"].as_u64().expect("id");
    let leader_index = (leader - 1) as usize;
    managers[leader_index].kill();
    let killed = Instant::now();
    let survivor = (leader_index + 1) % 3;
    let other = (leader_index + 2) % 3;
    loop {
        if push(&c, &managers[survivor], b"after the leader died").await == StatusCode::CREATED {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "no write accepted after the leader died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("first acknowledged write {:?} after SIGKILL of the leader", killed.elapsed());
    assert!(known(&c, &managers[other], b"through manager 2").await, "acknowledged writes survive");

    // Quorum lost: writes are refused with 503 UNAVAILABLE, reads still answer.
    managers[other].kill();
    let status = push(&c, &managers[survivor], b"without a quorum").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a write without a quorum is refused");
    assert!(known(&c, &managers[survivor], b"after the leader died").await, "reads answer from the local replica");

    // Restart both with their own command lines: the cluster heals and has one history.
    managers[leader_index].spawn();
    managers[other].spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while push(&c, &managers[other], b"healed").await != StatusCode::CREATED {
        assert!(Instant::now() < deadline, "the cluster did not heal after the restarts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &managers {
        for data in [b"through manager 2".as_slice(), b"after the leader died", b"healed"] {
            wait_known(&c, m, data).await;
        }
        assert!(!known(&c, m, b"without a quorum").await, "the refused write never appears");
    }

    // Every manager stops at once and starts again: the cluster comes back by itself.
    for m in &mut managers {
        m.kill();
    }
    for m in &mut managers {
        m.spawn();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while push(&c, &managers[leader_index], b"after a full restart").await != StatusCode::CREATED {
        assert!(Instant::now() < deadline, "the cluster did not come back after a full restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &managers {
        for data in [b"healed".as_slice(), b"after a full restart"] {
            wait_known(&c, m, data).await;
        }
    }

    // Removing the worker: its id is marked removed everywhere and never handed out again.
    let admin = session(&c, &managers[other]).await;
    let resp = c.delete(managers[other].url("/api/nodes/4")).bearer_auth(&admin).send().await.expect("rm");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c.delete(managers[other].url("/api/nodes/4")).bearer_auth(&admin).send().await.expect("rm again");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = nodes(&c, &managers[leader_index], &admin).await;
        if listed.iter().any(|n| n["id"] == 4 && n["state"] == "removed") {
            break;
        }
        assert!(Instant::now() < deadline, "the removal did not reach every manager: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_with_a_foreign_or_rotated_token_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addr = format!("127.0.0.5:{}", free_port("127.0.0.5"));
    let dir = data_dir(tmp.path(), 1);
    let args = ["init", "--advertise", &addr, "--data-dir", dir.to_str().expect("p"), "--admin-password-file"];
    let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    args.push(password_file.to_str().expect("path").into());
    let manager = Node::start(args, addr.clone());
    let line = manager.printed("join a worker").expect("token line");
    let token = line.split_whitespace().find(|w| w.starts_with("WHARF-1-")).expect("token").to_owned();
    let joiner = |token: &str, n: u32| {
        let target = format!("127.0.0.6:{}", free_port("127.0.0.6"));
        Command::new(WHARF).args(join_args(token, &addr, &target, &data_dir(tmp.path(), n))).output().expect("join")
    };
    // A token for another CA: the joiner refuses before it sends anything.
    let foreign = format!("WHARF-1-{}-{}", "ab".repeat(32), "a-secret-long-enough-to-be-a-token");
    let out = joiner(&foreign, 2);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the join token"), "{out:?}");
    assert!(!data_dir(tmp.path(), 2).join("node/identity.json").exists());

    // A rotated token is refused by the manager.
    let c = client(&dir.join("pki/ca.crt"));
    let admin = session(&c, &manager).await;
    let resp = c.post(manager.url("/api/cluster/tokens/worker")).bearer_auth(&admin).send().await.expect("rotate");
    assert_eq!(resp.status(), StatusCode::OK);
    let out = joiner(&token, 3);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"), "{out:?}");
    assert!(!data_dir(tmp.path(), 3).join("node/identity.json").exists());
}
