//! What grants cost, and a directory sync at scale. Two `wharf up` nodes (TLS, no engine) side
//! by side and a real slapd holding 10,000 users in 1,000 groups. Both nodes get the
//! administrator and one user (`bench`, who reads 50 services of a collection through a team
//! grant and pulls `bench/app`); one of them is then loaded: a sync of the directory (10,000
//! accounts, 100 groups mapped to 100 teams of 10 organizations), 1,000 grants on 100
//! collections, 100 repository grants, `bench` in 10 of the teams. In alternating rounds on
//! the two nodes, the same client measures, for `bench`, manifest GET requests per
//! second (wrk, 32 connections, a registry token), registry tokens issued per second (the
//! grants are read at issuance), and the latency of the Docker API's service list (`docker
//! service ls`: `GET /v1.41/services`, with `bench`'s client bundle, 200 calls on one
//! connection). Medians. Also: the seconds of the sync and the node's peak memory before and
//! after it.
//!
//! Run with `cargo bench -p wharf --bench access` (slapd and ldap-utils installed: the test
//! command installs them; wrk too: `apt-get install wrk`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{MANIFEST_TYPE, Res, median};
use wharf_testkit::{LDAP_ADMIN_DN, LDAP_ADMIN_PASSWORD, LDAP_BASE, Slapd};

const USERS: usize = 10_000;
const GROUPS: usize = 1_000;
const TEAMS: usize = 100;
const GRANTS_PER_TEAM: usize = 10;
const SERVICES: usize = 50;
const ROUNDS: usize = 3;

struct Node {
    child: Child,
    base: String,
    ca: PathBuf,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    /// `wharf ARGS` as the user of `config`, `input` on standard input.
    fn wharf(&self, config: &Path, args: &[&str], input: &str) -> Res<String> {
        let mut child = Command::new(common::wharf_binary())
            .args(args)
            .env("WHARF_CONFIG", config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().ok_or("stdin")?.write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("wharf {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn login(&self, user: &str, password: &str) -> Res<PathBuf> {
        let config = self.dir.join(format!("{user}-config.json"));
        let ca = self.ca.to_str().ok_or("path")?;
        self.wharf(
            &config,
            &["login", &self.base, "-u", user, "--password-stdin", "--ca", ca],
            &format!("{password}\n"),
        )?;
        Ok(config)
    }
}

fn start(dir: &Path) -> Res<Node> {
    let password = dir.join("admin-password");
    std::fs::write(&password, common::ADMIN_PASSWORD)?;
    let addr = format!("127.0.0.1:{}", common::free_port());
    let data = dir.join("wharf");
    let child = Command::new(common::wharf_binary())
        .args(["up", "--addr", &addr, "--data-dir"])
        .arg(&data)
        .arg("--admin-password-file")
        .arg(&password)
        .args(["--docker-host", "none"])
        .env("WHARF_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    let node = Node { child, base: format!("https://{addr}"), ca: data.join("pki/ca.crt"), dir: dir.to_path_buf() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(node.ca.exists() && node.login("admin", common::ADMIN_PASSWORD).is_ok()) {
        if Instant::now() > deadline {
            return Err("wharf up did not accept a login within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(node)
}

/// 10,000 users `u00000`... and 1,000 groups `g000`... of 10 users each.
fn fill_directory(slapd: &Slapd) {
    let mut ldif = String::new();
    for u in 0..USERS {
        ldif.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: u{u:05}\ncn: u{u:05}\nsn: u\nuserPassword: pw-{u}\n\n",
            Slapd::user_dn(&format!("u{u:05}"))
        ));
    }
    for g in 0..GROUPS {
        ldif.push_str(&format!(
            "dn: {}\nobjectClass: groupOfNames\ncn: g{g:03}\n",
            Slapd::group_dn(&format!("g{g:03}"))
        ));
        for u in (g..USERS).step_by(GROUPS) {
            ldif.push_str(&format!("member: {}\n", Slapd::user_dn(&format!("u{u:05}"))));
        }
        ldif.push('\n');
    }
    slapd.add(&ldif);
}

/// A client that presents the bundle's certificate and trusts the cluster CA.
fn bundle_client(bundle: &Path) -> Res<reqwest::Client> {
    let mut pem = std::fs::read(bundle.join("cert.pem"))?;
    pem.extend(std::fs::read(bundle.join("key.pem"))?);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(bundle.join("ca.pem"))?)?;
    Ok(reqwest::Client::builder().identity(reqwest::Identity::from_pem(&pem)?).tls_certs_only([ca]).build()?)
}

/// Median milliseconds of `GET /v1.41/services` (what `docker service ls` sends), 200 calls.
async fn service_ls(client: &reqwest::Client, base: &str) -> Res<f64> {
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let services: serde_json::Value =
            client.get(format!("{base}/v1.41/services")).send().await?.error_for_status()?.json().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if services.as_array().map_or(0, Vec::len) != SERVICES {
            return Err(
                format!("bench sees {} services, not {SERVICES}", services.as_array().map_or(0, Vec::len)).into()
            );
        }
    }
    Ok(median(times))
}

/// One round of the three measurements for `bench`.
fn measure(node: &Node, runtime: &tokio::runtime::Runtime, docker: &reqwest::Client) -> Res<(f64, f64, f64)> {
    let token_url = format!("{}/auth/token?service=wharf-registry&scope=repository:bench/app:pull", node.base);
    let basic = format!(
        "Authorization: Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "bench:bench-password-1")
    );
    let token: serde_json::Value = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&node.ca)?)?])
            .build()?;
        let body = client
            .get(&token_url)
            .basic_auth("bench", Some("bench-password-1"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(body)
    })?;
    let bearer = format!("Bearer {}", token["token"].as_str().ok_or("no token")?);
    let manifest = format!("{}/v2/bench/app/manifests/1", node.base);
    let gets = common::wrk_get(&manifest, &node.dir, Some(&bearer))?;
    let tokens = common::wrk_get(&token_url, &node.dir, Some(basic.trim_start_matches("Authorization: ")))?;
    let ls = runtime.block_on(service_ls(docker, &node.base))?;
    Ok((gets, tokens, ls))
}

/// What both nodes get: the user `bench` (in a team with View Only on `/Shared/bench`), the
/// 50 services of that collection, `bench/app:1`; returns `bench`'s Docker API client.
fn prepare(node: &Node, runtime: &tokio::runtime::Runtime) -> Res<reqwest::Client> {
    let admin = node.login("admin", common::ADMIN_PASSWORD)?;
    node.wharf(&admin, &["user", "create", "bench"], "bench-password-1\n")?;
    node.wharf(&admin, &["collection", "create", "/Shared/bench"], "")?;
    node.wharf(&admin, &["org", "create", "benchorg"], "")?;
    node.wharf(&admin, &["team", "create", "benchorg", "readers"], "")?;
    node.wharf(&admin, &["team", "add", "benchorg", "readers", "bench"], "")?;
    node.wharf(&admin, &["grant", "add", "team:benchorg/readers", "viewonly", "/Shared/bench"], "")?;
    let admin_bundle = node.dir.join("admin-bundle");
    node.wharf(&admin, &["bundle", "-o", admin_bundle.to_str().ok_or("path")?], "")?;
    let admin_docker = bundle_client(&admin_bundle)?;
    runtime.block_on(async {
        for n in 0..SERVICES {
            let spec = serde_json::json!({
                "Name": format!("s{n:02}"),
                "Labels": {"wharf.collection": "/Shared/bench"},
                "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
                "Mode": {"Replicated": {"Replicas": 0}},
            });
            admin_docker
                .post(format!("{}/v1.41/services/create", node.base))
                .json(&spec)
                .send()
                .await?
                .error_for_status()?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    push_manifest(node, runtime)?;
    let bench_config = node.login("bench", "bench-password-1")?;
    let bench_bundle = node.dir.join("bench-bundle");
    node.wharf(&bench_config, &["bundle", "-o", bench_bundle.to_str().ok_or("path")?], "")?;
    bundle_client(&bench_bundle)
}

/// Loads `node`: the directory synced (10,000 accounts, 100 teams), 1,000 grants on 100
/// collections, 100 repository grants, `bench` in 10 of the teams. Returns the sync's
/// seconds, the peak memory before and after it, and the counts of accounts and grants.
fn load(node: &Node, slapd: &Slapd, runtime: &tokio::runtime::Runtime) -> Res<(f64, f64, f64, usize, usize)> {
    let admin = node.login("admin", common::ADMIN_PASSWORD)?;
    let mappings: Vec<serde_json::Value> = (0..TEAMS)
        .map(|t| serde_json::json!({"group_dn": Slapd::group_dn(&format!("g{t:03}")), "org": format!("o{}", t / 10), "team": format!("t{t:03}")}))
        .collect();
    let config = serde_json::json!({
        "servers": [{"url": slapd.url(), "bind_dn": LDAP_ADMIN_DN, "user_base": format!("ou=people,{LDAP_BASE}"),
                     "user_filter": "(objectClass=inetOrgPerson)", "username_attr": "uid", "membership": "memberOf"}],
        "jit": false, "sync_interval_secs": 0, "team_mappings": mappings,
    });
    let config_file = node.dir.join("directory.json");
    std::fs::write(&config_file, serde_json::to_vec(&config)?)?;
    let bind = node.dir.join("bind");
    std::fs::write(&bind, LDAP_ADMIN_PASSWORD)?;
    let set =
        ["directory", "set", config_file.to_str().ok_or("path")?, "--bind-password-file", bind.to_str().ok_or("path")?];
    node.wharf(&admin, &set, "")?;
    let rss_before = node.peak_rss_mib();
    eprintln!("syncing the directory");
    let t = Instant::now();
    eprintln!("  {}", node.wharf(&admin, &["directory", "sync"], "")?.trim());
    let sync_seconds = t.elapsed().as_secs_f64();
    let rss_after = node.peak_rss_mib();
    eprintln!("granting");
    runtime.block_on(async {
        let client = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&node.ca)?)?]).build()?;
        let login: serde_json::Value = client
            .post(format!("{}/auth/login", node.base))
            .json(&serde_json::json!({"username": "admin", "password": common::ADMIN_PASSWORD}))
            .send().await?.error_for_status()?.json().await?;
        let session = login["auth_token"].as_str().ok_or("no session")?.to_owned();
        let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
            client.request(method, format!("{}{path}", node.base)).bearer_auth(&session).json(&body).send()
        };
        for c in 0..TEAMS {
            call(reqwest::Method::POST, "/api/collections", serde_json::json!({"path": format!("/Shared/c{c:03}")})).await?.error_for_status()?;
        }
        for t in 0..TEAMS {
            let subject = format!("team:o{}/t{t:03}", t / 10);
            for k in 0..GRANTS_PER_TEAM {
                let role = if k == 0 { "fullcontrol" } else { "viewonly" };
                let grant = serde_json::json!({"subject": subject, "role": role, "collection": format!("/Shared/c{:03}", (t + k * 7) % TEAMS)});
                call(reqwest::Method::POST, "/api/grants", grant).await?.error_for_status()?;
            }
            let access = serde_json::json!({"repo": format!("ns{t:03}/*"), "subject": subject, "level": "read-write"});
            call(reqwest::Method::PUT, "/api/repository-access", access).await?.error_for_status()?;
        }
        for t in 0..10 {
            let path = format!("/api/orgs/o{t}/teams/t{:03}/members/bench", t * 10);
            call(reqwest::Method::PUT, &path, serde_json::Value::Null).await?.error_for_status()?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let grants = node.wharf(&admin, &["grant", "ls", "--all"], "")?.lines().count();
    let users = node.wharf(&admin, &["user", "ls"], "")?.lines().count().saturating_sub(1);
    Ok((sync_seconds, rss_before, rss_after, users, grants))
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("wharf-bench-access").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    eprintln!("filling slapd with {USERS} users in {GROUPS} groups");
    let slapd = Slapd::start();
    fill_directory(&slapd);
    let (alone_dir, loaded_dir) = (tmp.path().join("alone"), tmp.path().join("loaded"));
    std::fs::create_dir_all(&alone_dir)?;
    std::fs::create_dir_all(&loaded_dir)?;
    let (alone, loaded) = (start(&alone_dir)?, start(&loaded_dir)?);
    let alone_docker = prepare(&alone, &runtime)?;
    let loaded_docker = prepare(&loaded, &runtime)?;
    let (sync_seconds, rss_before, rss_after, users, grants) = load(&loaded, &slapd, &runtime)?;

    // Alternating rounds on the two nodes, the same client.
    let (mut a, mut l) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(measure(&alone, &runtime, &alone_docker)?);
        l.push(measure(&loaded, &runtime, &loaded_docker)?);
        eprintln!("  alone {:?} / loaded {:?}", a.last(), l.last());
    }
    let col = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| median(v.iter().map(f).collect());
    let rows = [
        ("manifest GET, bench's registry token, 32 connections (req/s)", col(&a, |m| m.0), col(&l, |m| m.0)),
        ("registry tokens issued to bench, 32 connections (/s)", col(&a, |m| m.1), col(&l, |m| m.1)),
        ("`docker service ls` (GET /v1.41/services, 50 services), bench (ms)", col(&a, |m| m.2), col(&l, |m| m.2)),
    ];
    println!();
    println!(
        "| measurement | only the administrator | {users} accounts, {grants} grants, {TEAMS} teams | loaded / alone |"
    );
    println!("|---|---:|---:|---:|");
    for (name, alone, loaded) in rows {
        println!("| {name} | {alone:.1} | {loaded:.1} | {:.2} |", loaded / alone);
    }
    println!();
    println!("| directory sync | value |");
    println!("|---|---:|");
    println!("| users, groups in the directory | {USERS}, {GROUPS} |");
    println!("| sync of {USERS} users ({TEAMS} groups mapped to teams) | {sync_seconds:.1} s |");
    println!("| node peak memory before / after the sync | {rss_before:.0} / {rss_after:.0} MiB |");
    Ok(())
}

/// Pushes a config blob and a manifest as `bench/app:1` (as the administrator).
fn push_manifest(node: &Node, runtime: &tokio::runtime::Runtime) -> Res<()> {
    use sha2::Digest as _;
    let digest = |data: &[u8]| format!("sha256:{}", hex_of(&sha2::Sha256::digest(data)));
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&node.ca)?)?])
            .build()?;
        let creds = ("admin", Some(common::ADMIN_PASSWORD));
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let cd = digest(&config);
        let url = format!("{}/v2/bench/app/blobs/uploads/?digest={cd}", node.base);
        client.post(url).basic_auth(creds.0, creds.1).body(config.clone()).send().await?.error_for_status()?;
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{MANIFEST_TYPE}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{cd}\",\"size\":{}}},\"layers\":[]}}",
            config.len()
        );
        let url = format!("{}/v2/bench/app/manifests/1", node.base);
        client.put(&url).basic_auth(creds.0, creds.1).header("content-type", MANIFEST_TYPE).body(manifest).send().await?.error_for_status()?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
