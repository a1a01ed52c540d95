//! The attacks of the security review, each run against the real binary and now refused:
//! another local user reading the data directory (and the join tokens in it), a worker token
//! buying a certificate that serves any name, registry tokens outliving a password change or
//! an account, connections held open without end, the join token in the process list, one
//! address locking a user out, joins that leave nodes behind or smuggle escape sequences onto
//! the administrator's terminal, and one user opening uploads without limit.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{access_token, api_login, create_user};
use crate::harness::{ADMIN_PASSWORD, Options, Wharf, require, wait_for};
use crate::oci::{push_blob, sha256};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// The join token of `role` (`manager` or `worker`) the first start printed.
fn printed_token(w: &Wharf, role: &str) -> String {
    let line = wait_for(Duration::from_secs(10), "the first start to print the join tokens", || {
        w.printed(&format!("{role} token:"))
    });
    line.split_whitespace().find(|t| t.starts_with("WHARF-1-")).expect("a token").to_owned()
}

/// The secret part of a join token (after `WHARF-1-<64 hex digits>-`).
fn secret_of(token: &str) -> &str {
    &token["WHARF-1-".len() + 65..]
}

/// Every file and folder under `dir` (not following links), `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        if std::fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                out.push(entry.expect("entry").path());
            }
        }
        i += 1;
    }
    out
}

/// The paths among `paths` that the user `nobody` can open (read a file, list a folder).
fn openable_by_nobody(paths: &[PathBuf]) -> Vec<String> {
    require("runuser");
    let script = r#"for p; do if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "$p"; else cat "$p" >/dev/null 2>&1 && echo "$p"; fi; done"#;
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "sh", "-c", script, "sh"])
        .args(paths)
        .output()
        .expect("runuser");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Checks that every entry under `dir` is private (0700 folders, 0600 files) and that
/// `nobody` can open none of them, while it can open `control` (so the check can fail).
fn assert_private(dir: &Path, control: &Path) {
    let entries = walk(dir);
    assert!(entries.len() > 10, "the data directory holds the state, the log, keys and blobs: {entries:?}");
    for path in &entries {
        let meta = std::fs::symlink_metadata(path).expect("stat");
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, wanted, "{} is {mode:o}", path.display());
    }
    let mut asked = entries.clone();
    asked.push(control.to_owned());
    let opened = openable_by_nobody(&asked);
    assert_eq!(opened, vec![control.display().to_string()], "nobody opens only the control file");
}

/// Loosens every entry under `dir` as an earlier version or a careless `chmod -R` would.
fn loosen(dir: &Path) {
    for path in walk(dir) {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = if meta.is_dir() { 0o777 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// Defect 1: as `nobody`, nothing under the data directory opens, and no file in it holds a
/// join token; a loosened directory is tightened (and the log says so) on the next start.
#[tokio::test]
async fn the_data_directory_is_private_and_holds_no_join_token() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("wharf.log");
    let mut w = Wharf::start_with(Options { tls: true, log: Some((log.clone(), "info".into())), ..Options::default() });
    let tokens = [printed_token(&w, "manager"), printed_token(&w, "worker")];
    // A private image's layer, and a snapshot and log entries around it.
    let layer = crate::oci::bytes(1, 300_000);
    push_blob(&w.client(), &w.base(), "admin/private", &layer).await;
    // The administrator still sees the token: sealed in the state, opened by the manager.
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    let shown: Value = w
        .anonymous_client()
        .get(w.url("/api/cluster/tokens/worker"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["token"], tokens[1].as_str(), "wharf token show prints the same token");

    // Only Wharf's own modes stand between nobody and the data: its parent is open to all.
    let parent = w.data_dir.parent().expect("parent").to_owned();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).expect("chmod parent");
    let control = parent.join("control");
    std::fs::write(&control, b"readable by anyone").expect("write");
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_private(&w.data_dir, &control);
    let holders: Vec<String> = walk(&w.data_dir)
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            let bytes = std::fs::read(p).expect("read");
            tokens.iter().any(|t| bytes.windows(secret_of(t).len()).any(|win| win == secret_of(t).as_bytes()))
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(holders.is_empty(), "files holding a join token: {holders:?}");

    // A directory loosened while the node was down is tightened when it starts again.
    w.terminate();
    loosen(&w.data_dir);
    w.restart();
    let said = wait_for(Duration::from_secs(10), "the log line about tightening", || {
        std::fs::read_to_string(&log).ok().filter(|l| l.contains("tightened folders to 0700 and files to 0600"))
    });
    assert!(said.contains(&w.data_dir.display().to_string()), "the line names the directory");
    let layer_after = crate::oci::bytes(2, 200_000);
    push_blob(&w.client(), &w.base(), "admin/private", &layer_after).await;
    assert_private(&w.data_dir, &control);
    let printed = w.stdout.lock().expect("lock").iter().filter(|l| l.contains("worker token:")).count();
    assert_eq!(printed, 1, "the tokens are printed by the start that made them only");
}

/// Serves `cert`/`key` with `openssl s_server` and returns, for each name, whether curl
/// trusting only the cluster CA accepts it as that name.
fn served_names(ca: &Path, cert: &Path, key: &Path, names: &[&str]) -> Vec<(String, bool)> {
    require("openssl");
    require("curl");
    let port = wharf_testkit::free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    wait_for(Duration::from_secs(10), "openssl s_server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let results = names
        .iter()
        .map(|name| {
            let ok = Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "--max-time", "5", "--cacert"])
                .arg(ca)
                .args(["--connect-to", &format!("{name}:{port}:127.0.0.1:{port}")])
                .arg(format!("https://{name}:{port}/"))
                .status()
                .expect("curl")
                .success();
            ((*name).to_owned(), ok)
        })
        .collect();
    let _ = server.kill();
    let _ = server.wait();
    results
}

/// Defect 2: with only the worker token, neither the certificate a join issues nor a renewed
/// one verifies as a server for the names asked for (or loopback); the manager's own does.
#[tokio::test]
async fn a_worker_token_buys_no_certificate_that_serves_a_name() {
    let w = Wharf::start_tls();
    let worker_token = printed_token(&w, "worker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (key_pem, csr_pem) = wharf_pki::new_csr().expect("csr");
    let request = json!({"token": worker_token, "csr_pem": csr_pem, "hostname": "registry.example.com",
                         "advertise": "10.0.0.1:443"});
    let resp = w.anonymous_client().post(w.url("/cluster/join")).json(&request).send().await.expect("join");
    assert_eq!(resp.status(), StatusCode::OK, "the worker token is valid");
    let joined: Value = resp.json().await.expect("json");
    let (cert, key) = (tmp.path().join("worker.crt"), tmp.path().join("worker.key"));
    std::fs::write(&cert, joined["cert_pem"].as_str().expect("cert")).expect("write");
    std::fs::write(&key, &key_pem).expect("write");
    let names = ["registry.example.com", "10.0.0.1", "localhost", "127.0.0.1"];
    for (name, ok) in served_names(&w.ca_path(), &cert, &key, &names) {
        assert!(!ok, "a worker's certificate from a join verified as {name}");
    }
    // The control: the manager's certificate serves its names to the same curl.
    let node = w.data_dir.join("node");
    let control =
        served_names(&w.ca_path(), &node.join("node.crt"), &node.join("node.key"), &["localhost", "127.0.0.1"]);
    assert!(control.iter().all(|(_, ok)| *ok), "the manager's certificate is the control: {control:?}");

    // A renewal by the worker, with its certificate, follows the same rule.
    let identity =
        reqwest::Identity::from_pem(format!("{}{key_pem}", joined["cert_pem"].as_str().expect("cert")).as_bytes())
            .expect("identity");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(w.ca_path()).expect("ca")).expect("ca");
    let as_worker = reqwest::Client::builder().tls_certs_only([ca]).identity(identity).build().expect("client");
    let (renew_key, renew_csr) = wharf_pki::new_csr().expect("csr");
    let resp =
        as_worker.post(w.url("/cluster/renew")).json(&json!({"csr_pem": renew_csr})).send().await.expect("renew");
    assert_eq!(resp.status(), StatusCode::OK, "a worker renews its certificate");
    let renewed: Value = resp.json().await.expect("json");
    std::fs::write(&cert, renewed["cert_pem"].as_str().expect("cert")).expect("write");
    std::fs::write(&key, &renew_key).expect("write");
    for (name, ok) in served_names(&w.ca_path(), &cert, &key, &names) {
        assert!(!ok, "a worker's renewed certificate verified as {name}");
    }
}

/// Defect 3: a registry token stops at a password change, while its user is disabled and
/// after re-enabling, and for another account created later with the same name; what it could
/// have deleted is still there.
#[tokio::test]
async fn registry_tokens_end_with_the_credentials_they_were_issued_under() {
    let w = Wharf::start();
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    create_user(&w, &admin, "alice", "alice-password").await;
    let scope = "scope=repository:alice/app:pull,push,delete";
    let c = w.anonymous_client();
    let layer = b"alice's layer".to_vec();
    let digest = sha256(&layer);
    let blob = w.url(&format!("/v2/alice/app/blobs/{digest}"));
    let uploads = w.url("/v2/alice/app/blobs/uploads/");
    // What an old token tries: pull, start an upload, delete a blob.
    let attempts = |token: String| {
        let (c, blob, uploads) = (c.clone(), blob.clone(), uploads.clone());
        async move {
            let pull = c.get(&blob).bearer_auth(&token).send().await.expect("GET").status();
            let push = c.post(&uploads).bearer_auth(&token).send().await.expect("POST").status();
            let delete = c.delete(&blob).bearer_auth(&token).send().await.expect("DELETE").status();
            [pull, push, delete]
        }
    };
    let first = access_token(&w, Some(("alice", "alice-password")), scope).await;
    let resp = c
        .post(format!("{uploads}?digest={digest}"))
        .bearer_auth(&first)
        .body(layer.clone())
        .send()
        .await
        .expect("push");
    assert_eq!(resp.status(), StatusCode::CREATED, "the control: alice's token pushes");
    assert_eq!(c.get(&blob).bearer_auth(&first).send().await.expect("GET").status(), StatusCode::OK);

    let password = |name: &str, new: &str| {
        let resp =
            c.put(w.url(&format!("/api/users/{name}/password"))).bearer_auth(&admin).json(&json!({"password": new}));
        async move { assert_eq!(resp.send().await.expect("password").status(), StatusCode::NO_CONTENT) }
    };
    let disabled = |name: &str, disabled: bool| {
        let resp =
            c.patch(w.url(&format!("/api/users/{name}"))).bearer_auth(&admin).json(&json!({"disabled": disabled}));
        async move { assert_eq!(resp.send().await.expect("patch").status(), StatusCode::OK) }
    };
    password("alice", "alice-new-password").await;
    assert_eq!(attempts(first).await, [StatusCode::UNAUTHORIZED; 3], "after a password change");

    let second = access_token(&w, Some(("alice", "alice-new-password")), scope).await;
    disabled("alice", true).await;
    assert_eq!(attempts(second.clone()).await, [StatusCode::UNAUTHORIZED; 3], "while disabled");
    disabled("alice", false).await;
    assert_eq!(attempts(second).await, [StatusCode::UNAUTHORIZED; 3], "after re-enabling");

    let third = access_token(&w, Some(("alice", "alice-new-password")), scope).await;
    assert_eq!(c.get(&blob).bearer_auth(&third).send().await.expect("GET").status(), StatusCode::OK);
    let resp = c.delete(w.url("/api/users/alice")).bearer_auth(&admin).send().await.expect("delete");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    create_user(&w, &admin, "alice", "alice-new-password").await;
    assert_eq!(attempts(third).await, [StatusCode::UNAUTHORIZED; 3], "for another account of the same name");
    let resp = w.client().head(&blob).send().await.expect("HEAD");
    assert_eq!(resp.status(), StatusCode::OK, "nothing the old tokens tried was done");
}

/// A TCP connection to `target` from the loopback address `source`.
async fn connect_from(source: &str, target: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("addr")).expect("bind");
    socket.connect(target).await.expect("connect")
}

/// Reads until the peer closes; returns when it did (`None` if not within `limit`).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A TLS connection from `source` that offers `alpn`.
async fn tls_from(
    source: &str,
    target: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = wharf_pki::ca_client_config(ca_pem).expect("tls config");
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = connect_from(source, target).await;
    connector.connect("127.0.0.1".try_into().expect("name"), tcp).await.expect("handshake")
}

/// Defect 4: a few hundred connections that never send a ClientHello, idle after the
/// handshake (HTTP/1.1 and HTTP/2), stop in their request head, or announce a body they never
/// send are all closed by their deadlines, while a normal client is served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_hold_on_are_closed_by_their_deadlines() {
    use tokio::io::AsyncWriteExt;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let deadlines = ["--handshake-timeout-ms", "1000", "--header-timeout-ms", "1000", "--body-idle-timeout-ms", "1000"];
    let mut extra: Vec<String> = deadlines.iter().map(|s| (*s).to_owned()).collect();
    extra.extend(["--idle-timeout-ms", "1500", "--max-connections-per-source", "400"].map(str::to_owned));
    let w = Wharf::start_with(Options { tls: true, extra, ..Options::default() });
    let ca_pem = std::fs::read_to_string(w.ca_path()).expect("ca");
    // The normal client comes from another address and asks all along.
    let normal = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().expect("ip"))
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca")])
        .build()
        .expect("client");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = {
        let (stop, url) = (Arc::clone(&stop), w.url("/v2/"));
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(normal.get(&url).send().await.map(|r| r.status()).map_err(|e| e.to_string()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        })
    };
    let target = w.addr;
    let mut silent = Vec::new();
    for _ in 0..250 {
        silent.push(connect_from("127.0.0.1", target).await);
    }
    let mut idle_h1 = Vec::new();
    let mut idle_h2 = Vec::new();
    let mut slow_head = Vec::new();
    let mut slow_body = Vec::new();
    for _ in 0..20 {
        idle_h1.push(tls_from("127.0.0.1", target, &ca_pem, b"http/1.1").await);
        let mut h2 = tls_from("127.0.0.1", target, &ca_pem, b"h2").await;
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.expect("preface");
        idle_h2.push(h2);
        let mut head = tls_from("127.0.0.1", target, &ca_pem, b"http/1.1").await;
        head.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").await.expect("head");
        slow_head.push(head);
        let mut body = tls_from("127.0.0.1", target, &ca_pem, b"http/1.1").await;
        let login = b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username\":";
        body.write_all(login).await.expect("login head");
        slow_body.push(body);
    }
    // Each deadline is at most 1.5 s (an idle HTTP/2 connection gets as long again to go
    // after its GOAWAY); a connection still open after 8 s was not closed by one.
    let limit = Duration::from_secs(8);
    let mut open = Vec::new();
    for (i, s) in silent.iter_mut().enumerate() {
        if closed_within(s, limit).await.is_none() {
            open.push(format!("silent #{i}"));
        }
    }
    for (kind, list) in [("idle HTTP/1.1", &mut idle_h1), ("idle HTTP/2", &mut idle_h2), ("slow head", &mut slow_head)]
    {
        for (i, s) in list.iter_mut().enumerate() {
            if closed_within(s, limit).await.is_none() {
                open.push(format!("{kind} #{i}"));
            }
        }
    }
    let mut statuses = HashSet::new();
    for (i, s) in slow_body.iter_mut().enumerate() {
        use tokio::io::AsyncReadExt;
        let mut answer = Vec::new();
        match tokio::time::timeout(limit, s.read_to_end(&mut answer)).await {
            Err(_) => open.push(format!("slow body #{i}")),
            Ok(_) => {
                statuses.insert(String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned());
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = served.await.expect("normal client");
    assert!(open.is_empty(), "still open after {limit:?}: {open:?}");
    assert_eq!(
        statuses,
        HashSet::from(["HTTP/1.1 408 Request Timeout".to_owned()]),
        "a stalled body is answered 408 and closed"
    );
    assert!(answers.len() >= 10, "the normal client kept asking: {}", answers.len());
    let failed: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(StatusCode::UNAUTHORIZED))).collect();
    assert!(failed.is_empty(), "the normal client was served all along (401 from /v2/): {failed:?}");
}

/// Defect 4: connections over the cap per source, or in all, are closed as they arrive and
/// never queued; places come back when connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_refused_at_once() {
    let extra = ["--max-connections-per-source", "20", "--max-connections", "50"].map(str::to_owned).to_vec();
    let w = Wharf::start_with(Options { extra, ..Options::default() });
    let normal = |source: &str| {
        reqwest::Client::builder()
            .local_address(source.parse::<std::net::IpAddr>().expect("ip"))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    };
    let still_open = |mut s: tokio::net::TcpStream| async move {
        let open = closed_within(&mut s, Duration::from_millis(100)).await.is_none();
        (open, s)
    };
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.3", w.addr).await);
    }
    let (open, _s) = still_open(connect_from("127.0.0.3", w.addr).await).await;
    assert!(!open, "the 21st connection from one source is closed at once");
    let resp = normal("127.0.0.2").get(w.url("/v2/")).send().await.expect("another source is served");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for source in ["127.0.0.4", "127.0.0.5"] {
        for _ in 0..15 {
            let (open, s) = still_open(connect_from(source, w.addr).await).await;
            assert!(open, "under both caps a connection is kept");
            held.push(s);
        }
    }
    let (open, _s) = still_open(connect_from("127.0.0.6", w.addr).await).await;
    assert!(!open, "over the total cap a new source is refused too");
    held.truncate(10);
    let resp = wait_for(Duration::from_secs(10), "a place to come free", || {
        let client = normal("127.0.0.6");
        let url = w.url("/v2/");
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().expect("runtime").block_on(async { client.get(url).send().await.ok() })
        })
        .join()
        .expect("thread")
    });
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "served once connections closed");
}

/// A `wharf` process whose standard output and error are collected line by line.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Runs `wharf` with `args` (and `env`, and `stdin` written to it), and waits for a line
    /// of standard output containing `ready`.
    fn start(args: &[String], env: &[(&str, &str)], stdin: Option<&str>, ready: &str) -> Process {
        let mut command = Command::new(WHARF);
        command.env("WHARF_DOCKER_HOST", "none");
        command.args(args).env("WHARF_LOG", "warn").env_remove("WHARF_JOIN_TOKEN");
        command.envs(env.iter().copied());
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn wharf");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let (lines, tx, ready) = (Arc::clone(&lines), tx.clone(), ready.to_owned());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let found = line.contains(&ready);
                    lines.lock().expect("lock").push(line);
                    if found {
                        let _ = tx.send(());
                    }
                }
            });
        }
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("wharf {args:?} did not print {ready:?}: {:?}", lines.lock().expect("lock"));
        }
        Process { child, lines }
    }

    fn printed(&self, text: &str) -> bool {
        self.lines.lock().expect("lock").iter().any(|l| l.contains(text))
    }

    /// The process's command line as any user of the machine sees it (`ps`), read as nobody.
    fn command_line_seen_by_nobody(&self) -> String {
        let path = format!("/proc/{}/cmdline", self.child.id());
        let out = Command::new("runuser").args(["-u", "nobody", "--", "cat", &path]).output().expect("runuser");
        assert!(out.status.success(), "nobody reads a command line like ps does");
        String::from_utf8_lossy(&out.stdout).replace('\0', " ")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Defect 5: `wharf join` takes the token from a file, standard input or the environment, so
/// the process list never shows it; a restart needs no token; `--token` still works but warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_token_stays_out_of_the_process_list() {
    let w = Wharf::start_tls();
    let token = printed_token(&w, "worker");
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("worker-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write");
    let manager = w.host();
    let args = |n: u32, extra: &[&str]| {
        let port = wharf_testkit::free_port();
        let dir = tmp.path().join(format!("worker{n}"));
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["join".into(), manager.clone(), "--advertise".into(), format!("127.0.0.1:{port}")]);
        args.extend(["--data-dir".into(), dir.display().to_string()]);
        args
    };
    let up = "is up";
    let by_file = args(1, &[]);
    let mut with_file = by_file.clone();
    with_file.extend(["--token-file".into(), token_file.display().to_string()]);
    let first = Process::start(&with_file, &[], None, up);
    let mut with_stdin = args(2, &[]);
    with_stdin.push("--token-stdin".into());
    let second = Process::start(&with_stdin, &[], Some(&format!("{token}\n")), up);
    let third = Process::start(&args(3, &[]), &[("WHARF_JOIN_TOKEN", &token)], None, up);
    for process in [&first, &second, &third] {
        let seen = process.command_line_seen_by_nobody();
        assert!(seen.contains("join"), "the control: {seen}");
        assert!(!seen.contains(secret_of(&token)), "the token is in the process list: {seen}");
        assert!(!process.printed("warning"), "no warning without --token");
    }
    // Started again, the node needs no token: its identity is in its data directory.
    drop(first);
    let again = Process::start(&by_file, &[], None, up);
    assert!(again.printed("found in"), "it runs the node its data directory holds");
    // --token still works for scripts, with a warning.
    let mut on_the_line = args(4, &[]);
    on_the_line.extend(["--token".into(), token.clone()]);
    let fourth = Process::start(&on_the_line, &[], None, up);
    assert!(fourth.printed("warning: a join token on the command line"), "--token warns");
    // Without any token, a first start says where to put one.
    let out = Command::new(WHARF)
        .env("WHARF_DOCKER_HOST", "none")
        .args(args(5, &[]))
        .env_remove("WHARF_JOIN_TOKEN")
        .output()
        .expect("join");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"), "{out:?}");
}

/// An HTTP client that leaves from the loopback address `source`.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(source.parse::<std::net::IpAddr>().expect("ip")).build().expect("client")
}

async fn login_from(w: &Wharf, source: &str, user: &str, password: &str) -> StatusCode {
    let resp = client_from(source)
        .post(w.url("/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login");
    resp.status()
}

/// Defect 6: wrong passwords for carol from one address do not lock her out from another,
/// while that address is stopped; a guess spread over many addresses gets one try per address
/// once her budget is spent, and she still logs in from a quiet address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_elsewhere_lock_nobody_out() {
    let w = Wharf::start();
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    create_user(&w, &admin, "carol", "carol-password").await;
    create_user(&w, &admin, "dave", "dave-password").await;
    let mut failures = 0;
    while login_from(&w, "127.0.0.1", "carol", "not-carols-password").await == StatusCode::UNAUTHORIZED {
        failures += 1;
        assert!(failures <= 12, "the guessing address is stopped after about ten wrong passwords");
    }
    assert!(failures >= 10, "ten wrong passwords are allowed first: {failures}");
    for _ in 0..20 {
        let status = login_from(&w, "127.0.0.1", "carol", "not-carols-password").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the guessing address stays stopped");
    }
    for _ in 0..3 {
        let status = login_from(&w, "127.0.0.2", "carol", "carol-password").await;
        assert_eq!(status, StatusCode::OK, "carol from another address is not locked out");
    }
    let status = login_from(&w, "127.0.0.1", "carol", "carol-password").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the guessing address waits, even with the password");

    // Seventy addresses, one wrong password each, spend dave's budget of fifty (with room for
    // what flows back while they try).
    for i in 0..70 {
        let status = login_from(&w, &format!("127.0.1.{i}"), "dave", "not-daves-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let status = login_from(&w, "127.0.1.0", "dave", "another-guess").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "an address that failed for dave waits ten minutes");
    let status = login_from(&w, "127.0.2.1", "dave", "dave-password").await;
    assert_eq!(status, StatusCode::OK, "dave from a quiet address logs in");
    let status = login_from(&w, "127.0.1.0", "carol", "carol-password").await;
    assert_eq!(status, StatusCode::OK, "other users from those addresses are not affected");
}

/// The nodes the cluster records, as the administrator lists them.
async fn node_count(w: &Wharf, admin: &str) -> usize {
    let resp = w.anonymous_client().get(w.url("/api/nodes")).bearer_auth(admin).send().await.expect("nodes");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<Value>().await.expect("json").as_array().expect("a list").len()
}

/// A join request from `source`; returns the status and message.
async fn join_from(w: &Wharf, source: &str, request: &Value) -> (StatusCode, String) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(w.ca_path()).expect("ca")).expect("ca");
    let client = reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().expect("ip"))
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let resp = client.post(w.url("/cluster/join")).json(request).send().await.expect("join");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["message"].as_str().unwrap_or_default().to_owned())
}

/// Defects 7 and 8: a join with a valid token but a bad CSR, a malformed address or a host
/// name carrying escape sequences is refused with 400 and records nothing; joins from one
/// source are rate-limited; a good join still records exactly one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_joins_record_nothing_and_are_rate_limited() {
    let w = Wharf::start_tls();
    let token = printed_token(&w, "worker");
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    assert_eq!(node_count(&w, &admin).await, 1);
    let (_key, csr) = wharf_pki::new_csr().expect("csr");
    let good = json!({"token": token, "csr_pem": csr, "hostname": "worker-1", "advertise": "127.0.0.9:5000"});
    let with = |key: &str, value: &str| {
        let mut request = good.clone();
        request[key] = json!(value);
        request
    };
    let refused = [
        (
            "an invalid CSR",
            with("csr_pem", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
        ),
        ("a malformed address", with("advertise", "not an address")),
        ("an unspecified address", with("advertise", "0.0.0.0:5000")),
        ("no port", with("advertise", "worker-1")),
        ("an escape sequence in the host name", with("hostname", "evil\u{1b}[2J\u{1b}]0;owned\u{7}")),
        ("a host name with a space", with("hostname", "two words")),
        ("an empty host name", with("hostname", "")),
    ];
    for (what, request) in &refused {
        let (status, message) = join_from(&w, "127.0.0.3", request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {message}");
        assert!(!message.chars().any(char::is_control), "{what}: the refusal echoes no control character");
    }
    assert_eq!(node_count(&w, &admin).await, 1, "refused joins recorded no node");
    // The same source is stopped after ten attempts, good or bad.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(join_from(&w, "127.0.0.3", &with("advertise", "bad")).await.0);
    }
    assert_eq!(&statuses[..3], [StatusCode::BAD_REQUEST; 3], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let (status, _) = join_from(&w, "127.0.0.3", &good).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "even a good join waits");
    // Another source joins, and exactly one node is recorded.
    let (status, message) = join_from(&w, "127.0.0.4", &good).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(node_count(&w, &admin).await, 2);
}

/// Serves `routes` (path -> JSON body) over plain HTTP on loopback, as a server that sends
/// whatever it likes; returns its base URL.
async fn answering_server(routes: Vec<(&'static str, Value)>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let first = String::from_utf8_lossy(&request).lines().next().unwrap_or("").to_owned();
                let path = first.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_owned();
                let body = routes.iter().find(|(p, _)| *p == path).map_or(Value::Null, |(_, b)| b.clone()).to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/")
}

/// Defect 8: whatever a server sends, `wharf node ls` and `wharf user sessions` print no
/// control character: escape sequences show as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_no_control_character_from_a_server() {
    let evil = "node\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m";
    let nodes = json!([{"id": 2, "hostname": evil, "role": "worker", "state": "ready", "state_since": 0, "raft": "none",
                        "leader": false, "reachability": "unknown", "addr": evil, "self": false, "cert_not_after": 0}]);
    let sessions = json!([{"id": evil, "kind": "api", "client": evil, "created": 1, "expires": 2, "current": false}]);
    let url = answering_server(vec![("/api/nodes", nodes), ("/api/sessions", sessions)]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config.json");
    std::fs::write(&config, json!({"url": url, "auth_token": "x", "ca_pem": null}).to_string()).expect("write");
    for args in [["node", "ls"], ["user", "sessions"]] {
        let out = Command::new(WHARF)
            .env("WHARF_DOCKER_HOST", "none")
            .args(args)
            .env("WHARF_CONFIG", &config)
            .output()
            .expect("wharf");
        assert!(out.status.success(), "{args:?}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("\\u{1b}[2J"), "{args:?}: the sequence shows as text: {stdout}");
        let controls: Vec<char> = stdout.chars().filter(|c| c.is_control() && *c != '\n').collect();
        assert!(controls.is_empty(), "{args:?} printed control characters {controls:?}");
    }
}

/// Defect 9: one user may have a bounded number of uploads open (429 `TOOMANYREQUESTS` over
/// it, others unaffected, places freed by finishing or cancelling), and abandoned uploads are
/// purged after the configured age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_uploads_are_capped_per_user_and_purged_when_abandoned() {
    let extra = ["--max-open-uploads", "5"].map(str::to_owned).to_vec();
    let w = Wharf::start_with(Options { extra, ..Options::default() });
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    create_user(&w, &admin, "alice", "alice-password").await;
    let c = w.anonymous_client();
    let start = |user: &'static str, password: &'static str| {
        let req = c.post(w.url(&format!("/v2/{user}/app/blobs/uploads/"))).basic_auth(user, Some(password));
        async move { req.send().await.expect("POST") }
    };
    let mut locations = Vec::new();
    for _ in 0..5 {
        let resp = start("alice", "alice-password").await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        locations.push(crate::oci::header(&resp, "location"));
    }
    let resp = start("alice", "alice-password").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "the sixth open upload");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    let data = b"a monolithic push is an upload too";
    let resp = c
        .post(w.url(&format!("/v2/alice/app/blobs/uploads/?digest={}", sha256(data))))
        .basic_auth("alice", Some("alice-password"))
        .body(data.to_vec())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let resp = start("admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "another user is not counted against alice");
    let resp = c.delete(w.url(&locations[0])).basic_auth("alice", Some("alice-password")).send().await.expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        start("alice", "alice-password").await.status(),
        StatusCode::ACCEPTED,
        "a cancelled upload frees its place"
    );

    // A node that purges uploads older than a second, looking every 200 ms.
    let extra = ["--max-open-uploads", "2", "--upload-max-age", "1s", "--upload-purge-interval-ms", "200"];
    let w = Wharf::start_with(Options { extra: extra.map(str::to_owned).to_vec(), ..Options::default() });
    let c = w.client();
    let first = crate::oci::start_upload(&c, &w.base(), "admin/abandoned").await;
    let second = crate::oci::start_upload(&c, &w.base(), "admin/abandoned").await;
    // Both purged (a purge pass may take the first before the second is old enough).
    wait_for(Duration::from_secs(15), "the abandoned uploads to be purged", || {
        let (c, urls) = (c.clone(), [first.clone(), second.clone()]);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let gone = urls.iter().all(|url| {
                let status = runtime.block_on(async { c.get(url).send().await.map(|r| r.status()).ok() });
                status == Some(StatusCode::NOT_FOUND)
            });
            gone.then_some(())
        })
        .join()
        .expect("thread")
    });
    crate::oci::start_upload(&c, &w.base(), "admin/abandoned").await;
    crate::oci::start_upload(&c, &w.base(), "admin/abandoned").await;
}

/// The node-to-node blob routes serve nothing on a node that is no cluster manager: a
/// standalone node (plain HTTP, no client certificates) and a TLS node asked without a node
/// certificate both refuse, with or without an account's credentials.
#[tokio::test]
async fn node_to_node_blob_routes_refuse_everyone_but_managers() {
    for w in [Wharf::start(), Wharf::start_tls()] {
        let data = b"a blob only registry clients may read".to_vec();
        let digest = push_blob(&w.client(), &w.base(), "lib/secret", &data).await;
        let read = w.url(&format!("/cluster/blobs/{digest}"));
        let copy = w.url(&format!("/cluster/blobs/{digest}/copy"));
        for c in [w.anonymous_client(), w.client()] {
            let resp = c.get(&read).send().await.expect("GET");
            assert!(resp.status().is_client_error(), "GET {read}: {}", resp.status());
            assert_ne!(resp.bytes().await.expect("body").as_ref(), data.as_slice());
            let resp = c.post(&copy).json(&json!({"size": data.len()})).send().await.expect("POST");
            assert!(resp.status().is_client_error(), "POST {copy}: {}", resp.status());
        }
    }
}

/// A request for an upload another manager holds is sent on only after this manager let it
/// through: without credentials, or with a header that claims it was sent on already, no
/// manager moves a byte of it; the upload stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_requests_sent_on_between_managers_are_authorized_first() {
    let w = Wharf::cluster(crate::harness::Storage::Filesystem);
    let (c, b) = (w.client(), w.base());
    let location = crate::oci::start_upload(&c, &b, "admin/forwarded").await;
    let anonymous = w.anonymous_client();
    for _ in 0..3 {
        // Three requests, one per manager in turn.
        let resp = anonymous
            .patch(&location)
            .header("content-range", "0-4")
            .header("x-wharf-forwarded", "1")
            .body(b"hello".to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        let status = c.get(&location).send().await.expect("status");
        assert_eq!(status.status(), StatusCode::NO_CONTENT);
        assert_eq!(crate::oci::header(&status, "range"), "0-0", "nothing was appended (an empty upload reads 0-0)");
    }
}
