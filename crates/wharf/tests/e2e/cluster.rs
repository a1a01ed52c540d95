//! A cluster of real `wharf` processes on distinct 127.0.0.x addresses: `wharf init`, managers
//! and a worker joining with tokens, writes through any manager, SIGKILL of the leader and
//! then of a second manager (no quorum: writes refused with a clear error, reads still
//! answer), restarts with the same command line, a restart of every manager at once, the
//! removal of a node, and joins refused for a token of another cluster or a rotated token;
//! heartbeats (ready/down), certificate renewal, promotion and demotion with three managers and
//! two workers; `wharf recover --force-new-cluster`; and a partition made with iptables.

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

    /// Every node runs its task agent on the machine's engine, as it would in a deployment
    /// (no service is made here, so it runs nothing): its long polls must not hold up a
    /// manager's stop when its role changes.
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
    assert_eq!(resp.status(), StatusCode::OK, "the node list of {}", node.addr);
    resp.json::<Value>().await.expect("json").as_array().cloned().expect("a list")
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

/// Pushes `data` through `node` until it is accepted, failing with `what` after `timeout`.
async fn push_until_accepted(c: &reqwest::Client, node: &Node, data: &[u8], timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while push(c, node, data).await != StatusCode::CREATED {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every manager has each of `present` and never `refused`.
async fn one_history(c: &reqwest::Client, managers: &[Node], present: &[&[u8]], refused: &[u8]) {
    for m in managers {
        for data in present {
            wait_known(c, m, data).await;
        }
        assert!(!known(c, m, refused).await, "{}: the refused write never appears", m.addr);
    }
}

/// Starts the first manager of a new cluster in `dir` with `extra` arguments; returns it with
/// the manager and worker join tokens it printed.
fn start_first(addr: &str, dir: &Path, password_file: &Path, extra: &[String]) -> (Node, String, String) {
    let mut args = vec!["init".to_owned(), "--advertise".into(), addr.to_owned(), "--data-dir".into()];
    args.extend([dir.to_str().expect("path").into(), "--admin-password-file".into()]);
    args.push(password_file.to_str().expect("path").into());
    args.extend(extra.iter().cloned());
    let node = Node::start(args, addr.to_owned());
    let token_of = |role: &str| {
        let line = node.printed(&format!("{role} token:")).expect("the first start prints the join tokens");
        line.split_whitespace().find(|w| w.starts_with("WHARF-1-")).expect("token").to_owned()
    };
    let (manager, worker) = (token_of("manager"), token_of("worker"));
    (node, manager, worker)
}

/// `wharf join` with the token in a file beside the data directory, as the README says.
fn join_args(token: &str, via: &str, addr: &str, dir: &Path) -> Vec<String> {
    let token_file = dir.with_extension("token");
    std::fs::write(&token_file, token).expect("write the token file");
    let (dir, token_file) = (dir.to_str().expect("path"), token_file.to_str().expect("path"));
    ["join", "--token-file", token_file, via, "--advertise", addr, "--data-dir", dir]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
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
    let (first, manager_token, worker_token) = start_first(&addrs[0], &data_dir(tmp.path(), 1), &password_file, &[]);
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
    let out = Command::new(WHARF)
        .env("WHARF_DOCKER_HOST", "none")
        .args(["node", "ls", "--data-dir"])
        .arg(data_dir(tmp.path(), 2))
        .output()
        .expect("node ls");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wharf node ls --data-dir: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains("manager") && l.contains("voter")).count(), 3, "{text}");
    assert_eq!(listed[3]["raft"], "none", "a worker does not join raft");

    // A write through any manager reaches every manager.
    assert_eq!(push(&c, &managers[1], b"through manager 2").await, StatusCode::CREATED);
    for m in &managers {
        wait_known(&c, m, b"through manager 2").await;
    }
    // Only manager 2 received the bytes; every manager serves them (the others read them from
    // manager 2 over mutual TLS and keep a copy).
    for m in &managers {
        let url = m.url(&format!("/v2/admin/app/blobs/{}", sha256(b"through manager 2")));
        let resp = c.get(url).basic_auth("admin", Some(PASSWORD)).send().await.expect("GET");
        assert_eq!(resp.status(), StatusCode::OK, "GET through {}", m.addr);
        assert_eq!(resp.bytes().await.expect("body").as_ref(), b"through manager 2", "through {}", m.addr);
    }
    // Read-after-write across managers: what one manager acknowledged, every other manager
    // answers at once (a read that finds nothing first catches up with the leader).
    for i in 0..20u32 {
        let data = format!("read after write {i}");
        let (writer, reader) = (&managers[i as usize % 3], &managers[(i as usize + 1) % 3]);
        assert_eq!(push(&c, writer, data.as_bytes()).await, StatusCode::CREATED);
        assert!(
            known(&c, reader, data.as_bytes()).await,
            "{} did not see at once what {} acknowledged",
            reader.addr,
            writer.addr
        );
    }
    let admin_elsewhere = session(&c, &managers[0]).await;
    let resp = c.get(managers[2].url("/api/me")).bearer_auth(&admin_elsewhere).send().await.expect("me");
    assert_eq!(resp.status(), StatusCode::OK, "a session opened on one manager works at once on another");

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
    // The admin session was opened before the quorum was lost: every manager has it.
    let resp = c.get(managers[survivor].url("/api/nodes")).bearer_auth(&admin).send().await.expect("nodes");
    assert_eq!(resp.status(), StatusCode::OK, "the node list still answers without a quorum");
    assert!(resp.headers().contains_key("wharf-stale"), "and says it may be stale");

    // Restart both with their own command lines: the cluster heals and has one history.
    managers[leader_index].spawn();
    managers[other].spawn();
    push_until_accepted(
        &c,
        &managers[other],
        b"healed",
        Duration::from_secs(30),
        "the cluster did not heal after the restarts",
    )
    .await;
    one_history(
        &c,
        &managers,
        &[b"through manager 2".as_slice(), b"after the leader died", b"healed"],
        b"without a quorum",
    )
    .await;

    // Every manager stops at once and starts again: the cluster comes back by itself.
    for m in &mut managers {
        m.kill();
    }
    for m in &mut managers {
        m.spawn();
    }
    push_until_accepted(
        &c,
        &managers[leader_index],
        b"after a full restart",
        Duration::from_secs(30),
        "the cluster did not come back after a full restart",
    )
    .await;
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
    let (manager, _, token) = start_first(&addr, &dir, &password_file, &[]);
    let joiner = |token: &str, n: u32| {
        let target = format!("127.0.0.6:{}", free_port("127.0.0.6"));
        Command::new(WHARF)
            .env("WHARF_DOCKER_HOST", "none")
            .args(join_args(token, &addr, &target, &data_dir(tmp.path(), n)))
            .output()
            .expect("join")
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

/// The node list as `node` sees it, once `ok` holds for it (polled with a deadline).
async fn nodes_until(
    c: &reqwest::Client,
    node: &Node,
    session: &str,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let listed = nodes(c, node, session).await;
        if ok(&listed) {
            return listed;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {listed:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn field<'a>(listed: &'a [Value], id: u64, key: &str) -> &'a Value {
    listed.iter().find(|n| n["id"] == id).map_or(&Value::Null, |n| &n[key])
}

/// A client that presents the node certificate kept in `dir`.
fn as_node(dir: &Path, ca: &Path) -> reqwest::Client {
    let mut pem = std::fs::read(dir.join("node/node.crt")).expect("cert");
    pem.extend(std::fs::read(dir.join("node/node.key")).expect("key"));
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca).expect("ca")).expect("pem")])
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Sets node `id`'s role through `node`, following the answer to the leader and trying again
/// while no leader is known (503), as the CLI does.
async fn set_role(c: &reqwest::Client, node: &Node, session: &str, id: u64, role: &str) {
    let first = node.url(&format!("/api/nodes/{id}/role"));
    let mut url = first.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "setting the role of {id} found no leader to do it");
        let resp = c.put(&url).bearer_auth(session).json(&json!({"role": role})).send().await.expect("role");
        match resp.status() {
            StatusCode::OK => return,
            StatusCode::MISDIRECTED_REQUEST => {
                let leader = resp.json::<Value>().await.expect("json")["leader"].as_str().expect("leader").to_owned();
                url = format!("https://{leader}/api/nodes/{id}/role");
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                url = first.clone();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            status => panic!("setting the role of {id}: {status} {}", resp.text().await.unwrap_or_default()),
        }
    }
}

/// Three managers and two workers with fast heartbeats and ten-second certificates: every node
/// becomes ready, a killed worker goes down and comes back ready, certificates renew by
/// themselves, a worker is promoted (and serves as a manager), the leader is demoted (and
/// its replica goes), a removed worker's certificate stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_send_heartbeats_renew_certificates_and_change_roles() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addrs: Vec<String> = (21..=25).map(|i| format!("127.0.0.{i}:{}", free_port(&format!("127.0.0.{i}")))).collect();
    let fast = ["--heartbeat-ms", "200", "--node-cert-validity", "10"].map(str::to_owned);
    let dir = |n: usize| data_dir(tmp.path(), n as u32);
    let (first, manager_token, worker_token) = start_first(&addrs[0], &dir(1), &password_file, &fast);
    let ca = dir(1).join("pki/ca.crt");
    let c = client(&ca);
    let mut nodes_by_id = vec![first];
    for n in 2..=5 {
        let token = if n <= 3 { &manager_token } else { &worker_token };
        let mut args = join_args(token, &addrs[0], &addrs[n - 1], &dir(n));
        args.extend(fast.clone());
        let ready = if n <= 3 { "listening on" } else { "is up" };
        nodes_by_id.push(Node::start_until(args, addrs[n - 1].clone(), ready));
    }
    let admin = session(&c, &nodes_by_id[0]).await;
    let listed = nodes_until(&c, &nodes_by_id[0], &admin, "five ready nodes", |l| {
        l.len() == 5 && l.iter().all(|n| n["state"] == "ready")
    })
    .await;
    assert_eq!(listed.iter().filter(|n| n["raft"] == "voter").count(), 3);
    let first_expiry = field(&listed, 4, "cert_not_after").as_u64().expect("expiry");
    // On a worker's machine too, its data directory is enough (it asks a manager).
    let out = Command::new(WHARF)
        .env("WHARF_DOCKER_HOST", "none")
        .args(["node", "ls", "--data-dir"])
        .arg(dir(5))
        .output()
        .expect("node ls");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node ls on a worker: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains("ready")).count(), 5, "{text}");

    // A worker that stops sending heartbeats is down; started again, it is ready.
    nodes_by_id[4].kill();
    nodes_until(&c, &nodes_by_id[1], &admin, "worker 5 down", |l| field(l, 5, "state") == "down").await;
    nodes_by_id[4].spawn();
    nodes_until(&c, &nodes_by_id[1], &admin, "worker 5 ready again", |l| field(l, 5, "state") == "ready").await;

    // Certificates renew by themselves (at 5-8 s of 10) and the nodes stay ready with them.
    let renewed = nodes_until(&c, &nodes_by_id[0], &admin, "renewed certificates", |l| {
        field(l, 4, "cert_not_after").as_u64().is_some_and(|t| t > first_expiry)
            && l.iter().all(|n| n["state"] == "ready")
    })
    .await;
    assert!(field(&renewed, 1, "cert_not_after").as_u64() > Some(first_expiry - 5), "managers renew too");

    // Promote worker 4: it renews as a manager, restarts into the role and joins Raft.
    set_role(&c, &nodes_by_id[1], &admin, 4, "manager").await;
    nodes_until(&c, &nodes_by_id[0], &admin, "node 4 a voter", |l| field(l, 4, "raft") == "voter").await;
    assert!(nodes_by_id[3].printed("Wharf manager 4").is_some(), "node 4 restarted as a manager");
    assert_eq!(push(&c, &nodes_by_id[3], b"through the promoted manager").await, StatusCode::CREATED);
    wait_known(&c, &nodes_by_id[0], b"through the promoted manager").await;

    // Demote the leader: leadership moves, it leaves Raft, restarts as a worker without a replica.
    let listed = nodes(&c, &nodes_by_id[0], &admin).await;
    let leader = listed.iter().find(|n| n["leader"] == true).expect("leader")["id"].as_u64().expect("id");
    let other = if leader == 1 { 2 } else { 1 };
    set_role(&c, &nodes_by_id[other - 1], &admin, leader, "worker").await;
    let listed = nodes_until(&c, &nodes_by_id[other - 1], &admin, "the old leader a worker outside Raft", |l| {
        field(l, leader, "raft") == "none"
            && field(l, leader, "role") == "worker"
            && field(l, leader, "state") == "ready"
    })
    .await;
    assert_eq!(listed.iter().filter(|n| n["raft"] == "voter").count(), 3, "{listed:#?}");
    // The state says worker before the process has restarted into the role and said so.
    let demoted = &nodes_by_id[leader as usize - 1];
    crate::harness::wait_for(Duration::from_secs(20), "the demoted leader restarted as a worker", || {
        demoted.printed(&format!("Wharf worker {leader}"))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir(leader as usize).join("state.redb").exists() {
        assert!(Instant::now() < deadline, "the demoted manager kept its replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Leadership moved a moment ago: a 503 says "try again", as clients do.
    let pushed = crate::harness::wait_for(Duration::from_secs(20), "a push after the demotion", || {
        let status = std::thread::scope(|s| {
            s.spawn(|| {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(push(&c, &nodes_by_id[other - 1], b"after the demotion"))
            })
            .join()
            .expect("thread")
        });
        (status != StatusCode::SERVICE_UNAVAILABLE).then_some(status)
    });
    assert_eq!(pushed, StatusCode::CREATED);

    // Remove worker 5: its certificate, still unexpired, is refused at once.
    let beat = nodes_by_id[other - 1].url("/cluster/heartbeat");
    let before = heartbeat_status(&dir(5), &ca, &beat).await;
    assert!(before == StatusCode::OK || before == StatusCode::MISDIRECTED_REQUEST, "{before}");
    let resp = c.delete(nodes_by_id[other - 1].url("/api/nodes/5")).bearer_auth(&admin).send().await.expect("rm");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(heartbeat_status(&dir(5), &ca, &beat).await, StatusCode::FORBIDDEN);
}

/// The status of a heartbeat sent as the node whose data directory is `node_dir`. The node
/// renews its short-lived certificate every few seconds, rewriting its certificate and key: a
/// client read between the two writes holds a pair that does not match and its handshake
/// fails. Such a request never reached the server, so it is made again with the files read
/// again (what is tested is the answer).
async fn heartbeat_status(node_dir: &Path, ca: &Path, url: &str) -> StatusCode {
    for _ in 0..10 {
        match as_node(node_dir, ca).post(url).send().await {
            Ok(response) => return response.status(),
            Err(e) if e.is_request() || e.is_connect() => {
                eprintln!("heartbeat not sent, sending it again: {e:?}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("heartbeat: {e}"),
        }
    }
    panic!("the heartbeat could not be sent ten times");
}

/// Quorum lost for good: `wharf recover --force-new-cluster` on the surviving manager keeps
/// the state and starts a one-manager cluster; the lost managers' certificates are refused,
/// and a new manager joins it and receives the whole state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_manager_recovers_the_cluster_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addrs: Vec<String> = (31..=34).map(|i| format!("127.0.0.{i}:{}", free_port(&format!("127.0.0.{i}")))).collect();
    let dir = |n: usize| data_dir(tmp.path(), n as u32);
    let (first, token, _) = start_first(&addrs[0], &dir(1), &password_file, &[]);
    let ca = dir(1).join("pki/ca.crt");
    let c = client(&ca);
    let mut managers = vec![first];
    for n in 2..=3 {
        managers.push(Node::start(join_args(&token, &addrs[0], &addrs[n - 1], &dir(n)), addrs[n - 1].clone()));
    }
    let admin = session(&c, &managers[0]).await;
    nodes_until(&c, &managers[0], &admin, "three voters", |l| l.iter().filter(|n| n["raft"] == "voter").count() == 3)
        .await;
    assert_eq!(push(&c, &managers[2], b"before the disaster").await, StatusCode::CREATED);
    wait_known(&c, &managers[0], b"before the disaster").await;

    // Two of three managers are lost: no quorum.
    managers[1].kill();
    managers[2].kill();
    assert_eq!(push(&c, &managers[0], b"without a quorum").await, StatusCode::SERVICE_UNAVAILABLE);
    managers[0].kill();
    let survivor_dir = dir(1);
    let recover = vec!["recover".to_owned(), "--force-new-cluster".into(), "--data-dir".into()];
    let mut recover = recover;
    recover.push(survivor_dir.to_str().expect("path").into());
    let recovered = Node::start(recover, addrs[0].clone());
    assert!(recovered.printed("Manager 2").is_some(), "{:?}", recovered.stdout.lock().expect("lock"));
    push_until_accepted(
        &c,
        &recovered,
        b"after the recovery",
        Duration::from_secs(20),
        "the recovered manager accepts no writes",
    )
    .await;
    assert!(known(&c, &recovered, b"before the disaster").await, "the state was kept");
    let admin = session(&c, &recovered).await;
    let listed = nodes(&c, &recovered, &admin).await;
    assert_eq!(field(&listed, 1, "raft"), "voter");
    for lost in [2, 3] {
        assert_eq!(field(&listed, lost, "state"), "removed", "{listed:#?}");
    }
    // A lost manager's certificate is refused by the new cluster.
    let old = as_node(&dir(2), &ca);
    let resp = old.get(recovered.url("/cluster/nodes")).send().await.expect("nodes");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A new manager joins the recovered cluster and gets the whole state, from before too.
    let joined = Node::start(join_args(&token, &addrs[0], &addrs[3], &dir(4)), addrs[3].clone());
    nodes_until(&c, &recovered, &admin, "the new manager a voter", |l| field(l, 4, "raft") == "voter").await;
    for data in [b"before the disaster".as_slice(), b"after the recovery"] {
        wait_known(&c, &joined, data).await;
    }
    assert!(!known(&c, &joined, b"without a quorum").await);
    assert_eq!(push(&c, &joined, b"through the new manager").await, StatusCode::CREATED);
}

/// Drops the packets between one address and others with iptables, in a chain of its own
/// that is removed when the partition heals or the test ends.
struct Partition {
    chain: String,
    active: bool,
}

fn iptables(args: &[&str]) {
    let out = Command::new("iptables").args(args).output().unwrap_or_else(|e| {
        panic!("iptables is needed for the partition test ({e}): install it with `apt-get install iptables` (scripts/test does)")
    });
    assert!(out.status.success(), "iptables {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Partition {
    fn isolate(ip: &str, others: &[&str]) -> Partition {
        let chain = format!("WHARF-TEST-{}", std::process::id());
        iptables(&["-N", &chain]);
        iptables(&["-I", "INPUT", "1", "-j", &chain]);
        for other in others {
            iptables(&["-A", &chain, "-s", ip, "-d", other, "-j", "DROP"]);
            iptables(&["-A", &chain, "-s", other, "-d", ip, "-j", "DROP"]);
        }
        Partition { chain, active: true }
    }

    fn heal(&mut self) {
        if std::mem::take(&mut self.active) {
            iptables(&["-D", "INPUT", "-j", &self.chain]);
            iptables(&["-F", &self.chain]);
            iptables(&["-X", &self.chain]);
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.heal();
    }
}

/// The leader is cut off from the other two managers by dropping their packets (the managers
/// connect from their own addresses, so the firewall sees who talks to whom): the isolated
/// leader accepts no write, the majority elects a leader and goes on, and after the partition
/// heals every manager has the same history, without the write the minority refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_accepts_no_writes_and_the_cluster_heals_to_one_history() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let ips: Vec<String> = (51..=53).map(|i| format!("127.0.0.{i}")).collect();
    let addrs: Vec<String> = ips.iter().map(|ip| format!("{ip}:{}", free_port(ip))).collect();
    let dir = |n: usize| data_dir(tmp.path(), n as u32);
    let (first, token, _) = start_first(&addrs[0], &dir(1), &password_file, &[]);
    let c = client(&dir(1).join("pki/ca.crt"));
    let mut managers = vec![first];
    for n in 2..=3 {
        managers.push(Node::start(join_args(&token, &addrs[0], &addrs[n - 1], &dir(n)), addrs[n - 1].clone()));
    }
    let admin = session(&c, &managers[0]).await;
    let listed = nodes_until(&c, &managers[0], &admin, "three voters", |l| {
        l.iter().filter(|n| n["raft"] == "voter").count() == 3 && l.iter().any(|n| n["leader"] == true)
    })
    .await;
    assert_eq!(push(&c, &managers[1], b"before the partition").await, StatusCode::CREATED);
    let leader = listed.iter().find(|n| n["leader"] == true).expect("leader")["id"].as_u64().expect("id") as usize - 1;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    for m in &managers {
        wait_known(&c, m, b"before the partition").await;
    }

    let mut partition = Partition::isolate(&ips[leader], &[&ips[a], &ips[b]]);
    // The isolated leader steps down: it names no leader any more and refuses writes at once.
    nodes_until(&c, &managers[leader], &admin, "the isolated leader stepping down", |l| {
        l.len() == 3 && l.iter().all(|n| n["leader"] == false)
    })
    .await;
    // Its reads still answer, saying they may be stale.
    let resp = c.get(managers[leader].url("/api/nodes")).bearer_auth(&admin).send().await.expect("nodes");
    let stale = resp.headers().get("wharf-stale").map(|v| v.to_str().unwrap_or("").to_owned());
    assert!(stale.is_some_and(|why| why.contains("stale")), "the isolated leader says its answer may be stale");
    let refused_at = Instant::now();
    assert_eq!(
        push(&c, &managers[leader], b"written to the minority").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the isolated leader cannot commit a write"
    );
    assert!(refused_at.elapsed() < Duration::from_secs(2), "refused at once, not after a timeout");
    push_until_accepted(
        &c,
        &managers[a],
        b"written to the majority",
        Duration::from_secs(20),
        "the majority did not elect a leader",
    )
    .await;
    let majority_view = nodes(&c, &managers[b], &admin).await;
    let new_leader = majority_view.iter().find(|n| n["leader"] == true).expect("leader")["id"].as_u64();
    assert_ne!(new_leader, Some(leader as u64 + 1), "the majority follows a leader of its own");

    partition.heal();
    push_until_accepted(
        &c,
        &managers[leader],
        b"after healing",
        Duration::from_secs(20),
        "the old leader did not rejoin after the partition healed",
    )
    .await;
    one_history(
        &c,
        &managers,
        &[b"before the partition".as_slice(), b"written to the majority", b"after healing"],
        b"written to the minority",
    )
    .await;
}

/// `wharf up` over TLS is the first manager of a cluster: a node started `--insecure-http`
/// (standalone) and killed keeps its state when started again over TLS, another manager joins
/// it with the token its banner prints and gets that state, and the data directory, now a
/// cluster node's, is refused to `--insecure-http`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wharf_up_is_a_cluster_that_managers_join() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addrs: Vec<String> = (41..=42).map(|i| format!("127.0.0.{i}:{}", free_port(&format!("127.0.0.{i}")))).collect();
    let dir = data_dir(tmp.path(), 1);
    let up = |extra: &[&str]| {
        let mut args = vec!["up".to_owned(), "--addr".into(), addrs[0].clone(), "--data-dir".into()];
        args.extend([dir.to_str().expect("path").to_owned(), "--admin-password-file".into()]);
        args.push(password_file.to_str().expect("path").into());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };

    // A standalone node takes a push and is killed.
    let mut standalone = Node::start(up(&["--insecure-http"]), addrs[0].clone());
    let data = b"pushed to a standalone node";
    let url = format!("http://{}/v2/admin/app/blobs/uploads/?digest={}", addrs[0], sha256(data));
    let resp = reqwest::Client::new()
        .post(url)
        .basic_auth("admin", Some(PASSWORD))
        .body(data.to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(resp.status(), StatusCode::CREATED);
    standalone.kill();

    // Over TLS the same data directory becomes manager 1 of a cluster, with the state it had.
    let first = Node::start(up(&[]), addrs[0].clone());
    assert!(first.printed("Wharf manager 1 of cluster").is_some(), "{:?}", first.stdout.lock().expect("lock"));
    let token = first.printed("manager token:").expect("the first start prints the join tokens");
    let token = token.split_whitespace().find(|w| w.starts_with("WHARF-1-")).expect("token").to_owned();
    let c = client(&dir.join("pki/ca.crt"));
    assert!(known(&c, &first, data).await, "the standalone node's state was kept");

    // A manager joins it and gets that state, and writes through either reach both.
    let joined = Node::start(join_args(&token, &addrs[0], &addrs[1], &data_dir(tmp.path(), 2)), addrs[1].clone());
    let admin = session(&c, &first).await;
    nodes_until(&c, &first, &admin, "two voters", |l| l.iter().filter(|n| n["raft"] == "voter").count() == 2).await;
    wait_known(&c, &joined, data).await;
    assert_eq!(push(&c, &joined, b"through the joined manager").await, StatusCode::CREATED);
    wait_known(&c, &first, b"through the joined manager").await;

    // The data directory of a cluster node cannot be served standalone.
    let out = Command::new(WHARF).env("WHARF_DOCKER_HOST", "none").args(up(&["--insecure-http"])).output().expect("up");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --insecure-http"), "{out:?}");

    // A member's state without its identity is not taken over as a new cluster's first manager.
    let mut joined = joined;
    joined.kill();
    let second = data_dir(tmp.path(), 2);
    std::fs::remove_dir_all(second.join("node")).expect("remove the identity");
    let out = Command::new(WHARF)
        .env("WHARF_DOCKER_HOST", "none")
        .args(["up", "--addr", &addrs[1], "--data-dir", second.to_str().expect("path")])
        .output()
        .expect("up");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("but no node identity"), "{out:?}");
    assert!(!second.join("node/identity.json").exists());
    assert!(second.join("raft-log.redb").exists(), "the member's raft log is left as it was");
}

/// Two managers (`wharf init`, `wharf join`) on one S3 bucket of a real moto server, driven by
/// skopeo: the joining manager adopts the cluster's storage by itself; an image pushed through
/// one manager is pulled whole through the other, with every blob once in the bucket and none
/// on a manager's disk; with the bucket gone, a push answers 503 `UNAVAILABLE` and what the
/// state holds still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_sharing_s3_serve_every_image_and_answer_503_without_it() {
    crate::harness::require("skopeo");
    let mut moto = wharf_testkit::Moto::start();
    moto.create_bucket("e2e");
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let credentials = tmp.path().join("s3-credentials");
    std::fs::write(&credentials, "[default]\naws_access_key_id = e2e\naws_secret_access_key = e2e-secret\n")
        .expect("write");
    let credentials = credentials.to_str().expect("path").to_owned();
    let addrs: Vec<String> = (1..=2).map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1"))).collect();
    let storage = format!("s3://e2e/wharf?endpoint={}&retry=2", moto.endpoint());
    let extra = ["--storage".to_owned(), storage, "--storage-credentials".to_owned(), credentials.clone()];
    let (first, manager_token, _) = start_first(&addrs[0], &data_dir(tmp.path(), 1), &password_file, &extra);
    let mut args = join_args(&manager_token, &addrs[0], &addrs[1], &data_dir(tmp.path(), 2));
    args.extend(["--storage-credentials".to_owned(), credentials]);
    let second = Node::start(args, addrs[1].clone());
    let recorded = |n: u32| std::fs::read_to_string(data_dir(tmp.path(), n).join("storage")).expect("storage record");
    assert!(recorded(1).starts_with("s3://e2e/wharf?endpoint="), "{}", recorded(1));
    assert_eq!(recorded(2), recorded(1), "the joining manager uses the cluster's storage");
    assert!(!recorded(1).contains("e2e-secret"), "no credential is recorded");

    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(data_dir(tmp.path(), 1).join("pki/ca.crt"), certs.join("ca.crt")).expect("copy the CA");
    let layer = crate::clients::busybox_layer(tmp.path());
    let layout = tmp.path().join("layout");
    let pushed = crate::oci::write_oci_layout(&layout, "1", &layer);
    let creds = format!("admin:{PASSWORD}");
    let certs = certs.to_str().expect("path");
    crate::harness::run(Command::new("skopeo").args([
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &creds,
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{}/admin/app:1", addrs[0]),
    ]));
    let pulled = tmp.path().join("pulled");
    crate::harness::run(Command::new("skopeo").args([
        "copy",
        "--preserve-digests",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &creds,
        &format!("docker://{}/admin/app:1", addrs[1]),
        &format!("oci:{}:1", pulled.display()),
    ]));
    let blob = |digest: &str| pulled.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    assert!(std::fs::read(blob(&sha256(&layer))).expect("the pulled layer") == layer, "the layer, byte for byte");
    assert!(blob(&pushed).exists(), "the manifest kept its digest");
    assert_eq!(moto.list("e2e", "wharf/blobs/").len(), 2, "layer and config, once each, in the bucket");
    assert_eq!(moto.list("e2e", "wharf/uploads/"), Vec::<String>::new(), "no upload left behind");
    for n in 1..=2 {
        assert!(!data_dir(tmp.path(), n).join("blobs").exists(), "manager {n} keeps no blob on its disk");
    }

    // The storage goes away: pushes are refused with 503 UNAVAILABLE, after the retries;
    // manifests and tags, which the cluster state holds, still answer.
    moto.kill();
    let c = client(&data_dir(tmp.path(), 1).join("pki/ca.crt"));
    let data = b"pushed while the bucket is gone";
    let url = second.url(&format!("/v2/admin/app/blobs/uploads/?digest={}", sha256(data)));
    let resp = c.post(url).basic_auth("admin", Some(PASSWORD)).body(data.to_vec()).send().await.expect("push");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.expect("an error body");
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    assert!(!known(&c, &first, data).await, "nothing half-written became visible");
    let tags = c.get(first.url("/v2/admin/app/tags/list")).basic_auth("admin", Some(PASSWORD)).send().await;
    assert_eq!(tags.expect("tags").status(), StatusCode::OK);
}

/// Three managers on their own disks, driven by docker and skopeo: `docker push` through
/// manager 1, which is killed (SIGKILL) as soon as the push is acknowledged; `docker pull` and
/// `docker run` through manager 2 and `skopeo copy` through manager 3 still get the image
/// (every blob was on two managers before the push was acknowledged); manager 1 is removed,
/// and the repair puts every blob back on two managers (2 and 3) by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_survive_the_loss_of_the_manager_that_took_them() {
    crate::clients::require_docker();
    crate::harness::require("skopeo");
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addrs: Vec<String> = (1..=3).map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1"))).collect();
    let (first, manager_token, _) = start_first(&addrs[0], &data_dir(tmp.path(), 1), &password_file, &[]);
    let mut managers = vec![first];
    for n in 2..=3 {
        let args = join_args(&manager_token, &addrs[0], &addrs[n - 1], &data_dir(tmp.path(), n as u32));
        managers.push(Node::start(args, addrs[n - 1].clone()));
    }
    let c = client(&data_dir(tmp.path(), 1).join("pki/ca.crt"));
    let admin = session(&c, &managers[0]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes(&c, &managers[0], &admin).await.iter().filter(|n| n["raft"] == "voter").count() < 3 {
        assert!(Instant::now() < deadline, "three voters never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", tmp.path().join("docker")).args(args);
        cmd
    };
    let login = |addr: &str| {
        let (ok, out, err) = crate::harness::run_with_input(
            &mut docker(&["login", addr, "-u", "admin", "--password-stdin"]),
            &format!("{PASSWORD}\n"),
        );
        assert!(ok, "docker login {addr}: {out} {err}");
    };
    let layer = crate::clients::busybox_layer(tmp.path());
    std::fs::write(tmp.path().join("rootfs.tar"), &layer).expect("write tar");
    let local = format!("wharf-e2e/ha:{}", free_port("127.0.0.1"));
    let pushed = format!("{}/admin/ha:1", addrs[0]);
    login(&addrs[0]);
    crate::harness::run(
        docker(&["import", tmp.path().join("rootfs.tar").to_str().expect("path"), &local])
            .arg("--change")
            .arg("CMD [\"sh\"]"),
    );
    crate::harness::run(&mut docker(&["tag", &local, &pushed]));
    crate::harness::run(&mut docker(&["push", &pushed]));
    managers[0].kill();
    crate::harness::run(&mut docker(&["rmi", &local, &pushed]));

    let through_two = format!("{}/admin/ha:1", addrs[1]);
    login(&addrs[1]);
    crate::harness::run(&mut docker(&["pull", &through_two]));
    let hi = crate::harness::run(&mut docker(&["run", "--rm", &through_two, "echo", "still here"]));
    assert_eq!(hi.trim(), "still here");
    crate::harness::run(&mut docker(&["rmi", &through_two]));
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(data_dir(tmp.path(), 2).join("pki/ca.crt"), certs.join("ca.crt")).expect("copy the CA");
    let out = tmp.path().join("through-three");
    crate::harness::run(Command::new("skopeo").args([
        "copy",
        "--src-cert-dir",
        certs.to_str().expect("path"),
        "--src-creds",
        &format!("admin:{PASSWORD}"),
        &format!("docker://{}/admin/ha:1", addrs[2]),
        &format!("dir:{}", out.display()),
    ]));

    // Manager 1 is gone for good: removed, its copies are replaced on the two that are left.
    let admin = session(&c, &managers[1]).await;
    let mut url = managers[1].url("/api/nodes/1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "removing manager 1 found no leader to do it");
        let resp = c.delete(&url).bearer_auth(&admin).send().await.expect("rm");
        match resp.status() {
            StatusCode::NO_CONTENT => break,
            StatusCode::MISDIRECTED_REQUEST => {
                let leader =
                    resp.json::<Value>().await.expect("json")["leader"].as_str().unwrap_or_default().to_owned();
                url = format!("https://{leader}/api/nodes/1");
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // The blobs on a manager's disk: `<data>/blobs/blobs/sha256/<xx>/<hex>`.
    let blobs_of = |n: u32| -> std::collections::BTreeSet<String> {
        let root = data_dir(tmp.path(), n).join("blobs/blobs/sha256");
        let dirs = std::fs::read_dir(root).map(|d| d.filter_map(Result::ok).collect::<Vec<_>>()).unwrap_or_default();
        dirs.iter()
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flat_map(|files| files.filter_map(Result::ok).map(|f| f.file_name().to_string_lossy().into_owned()))
            .collect()
    };
    // skopeo's `dir:` keeps the blobs as they were served, each in a file named by its digest.
    let pulled: std::collections::BTreeSet<String> = std::fs::read_dir(&out)
        .expect("the pulled directory")
        .filter_map(Result::ok)
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (two, three) = (blobs_of(2), blobs_of(3));
        // Layer and config (the manifest lives in the state, not on disk).
        if two.len() >= 2 && two == three {
            assert!(two.is_subset(&pulled), "the copies are the image's blobs: {two:?} {pulled:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the blobs never got back to two managers: {two:?} {three:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pull through a manager without a copy whose holder is killed (SIGKILL) in the middle: the
/// client gets an error, never a whole body of wrong bytes, and what it got is the blob's
/// start; with the holder back, the same pull gets the whole verified blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_in_the_middle_of_a_pull_through_gives_an_error_not_wrong_bytes() {
    use futures::StreamExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let password_file = tmp.path().join("admin-password");
    std::fs::write(&password_file, PASSWORD).expect("write");
    let addrs: Vec<String> = (1..=2).map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1"))).collect();
    // One copy per push, so that manager 1 is the blob's only holder.
    let one_copy = ["--blob-copies".to_owned(), "1".to_owned()];
    let (first, manager_token, _) = start_first(&addrs[0], &data_dir(tmp.path(), 1), &password_file, &one_copy);
    let mut args = join_args(&manager_token, &addrs[0], &addrs[1], &data_dir(tmp.path(), 2));
    args.extend(one_copy.iter().cloned());
    let second = Node::start(args, addrs[1].clone());
    let mut managers = [first, second];
    let c = client(&data_dir(tmp.path(), 1).join("pki/ca.crt"));
    let data = crate::oci::bytes(77, 48 * 1024 * 1024);
    assert_eq!(push(&c, &managers[0], &data).await, StatusCode::CREATED);
    wait_known(&c, &managers[1], &data).await;

    let url = managers[1].url(&format!("/v2/admin/app/blobs/{}", sha256(&data)));
    let resp = c.get(&url).basic_auth("admin", Some(PASSWORD)).send().await.expect("GET through manager 2");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < 1024 * 1024 {
        got.extend_from_slice(&body.next().await.expect("a first part").expect("bytes"));
    }
    managers[0].kill();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(got.len() <= data.len() && got[..] == data[..got.len()], "only the blob's own bytes, in order");
    assert!(failed || got.len() < data.len() || got == data, "a body cut short is an error, never wrong bytes");
    if got.len() < data.len() {
        assert!(failed, "a short body ends with an error the client sees");
    }

    // The holder comes back: the same pull through manager 2 is whole and verified.
    let node = &mut managers[0];
    node.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = c.get(&url).basic_auth("admin", Some(PASSWORD)).send().await
            && resp.status() == StatusCode::OK
            && let Ok(whole) = resp.bytes().await
        {
            assert!(whole[..] == data[..], "the whole blob, byte for byte");
            break;
        }
        assert!(Instant::now() < deadline, "the blob never came back through manager 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
