//! A real OpenStack Swift for tests: the all-in-one of Debian's packages (proxy with TempAuth,
//! SLO and DLO; account, container and object servers; memcached), one per test, in its own
//! folder and on its own ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TempAuth's user (`account:user`) and key.
pub const SWIFT_USER: &str = "test:tester";
pub const SWIFT_KEY: &str = "testing";

/// A running Swift all-in-one, killed when dropped.
#[derive(Debug)]
pub struct Swift {
    children: Vec<Child>,
    /// The proxy server (stopped and started again by tests of storage faults).
    proxy: Option<Child>,
    proxy_conf: std::path::PathBuf,
    proxy_port: u16,
    _dir: tempfile::TempDir,
}

const PROGRAMS: [&str; 6] = [
    "swift-ring-builder",
    "swift-proxy-server",
    "swift-object-server",
    "swift-container-server",
    "swift-account-server",
    "memcached",
];

fn require(program: &str) {
    let found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).exists()));
    assert!(
        found,
        "{program} is missing: run ./scripts/test (it installs it), or: apt-get install swift swift-proxy \
         swift-object swift-account swift-container memcached"
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Swift {
    /// Builds the rings and configuration in a fresh folder and starts every server; waits
    /// until the proxy hands out a token.
    pub fn start() -> Swift {
        for program in PROGRAMS {
            require(program);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        let devices = dir.path().join("node");
        std::fs::create_dir_all(&etc).expect("mkdir etc");
        std::fs::create_dir_all(devices.join("d1")).expect("mkdir device");
        write(
            &etc.join("swift.conf"),
            "[swift-hash]\nswift_hash_path_suffix = s\nswift_hash_path_prefix = p\n\
             [storage-policy:0]\nname = Policy-0\ndefault = yes\n",
        );
        let mut children = Vec::new();
        let mut servers = Vec::new();
        for kind in ["object", "container", "account"] {
            let port = crate::free_port();
            let builder = etc.join(format!("{kind}.builder"));
            let ring = |args: &[&str]| {
                let out = Command::new("swift-ring-builder").arg(&builder).args(args).output().expect("ring builder");
                // `rebalance` exits 1 with a warning on a one-device ring; the ring is written.
                assert!(out.status.code().is_some_and(|c| c <= 1), "swift-ring-builder {args:?}: {out:?}");
            };
            ring(&["create", "8", "1", "1"]);
            ring(&["add", &format!("r1z1-127.0.0.1:{port}/d1"), "100"]);
            ring(&["rebalance"]);
            let conf = etc.join(format!("{kind}-server.conf"));
            write(
                &conf,
                &format!(
                    "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nuser = root\ndevices = {}\n\
                     mount_check = false\nswift_dir = {}\nlog_level = WARNING\n[pipeline:main]\npipeline = {kind}-server\n\
                     [app:{kind}-server]\nuse = egg:swift#{kind}\n",
                    devices.display(),
                    etc.display()
                ),
            );
            servers.push((format!("swift-{kind}-server"), conf));
        }
        let memcached_port = crate::free_port();
        children.push(
            Command::new("memcached")
                .args(["-u", "root", "-l", "127.0.0.1", "-p", &memcached_port.to_string(), "-U", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start memcached"),
        );
        let proxy_port = crate::free_port();
        let filters = [
            "catch_errors",
            "gatekeeper",
            "healthcheck",
            "proxy-logging",
            "cache",
            "listing_formats",
            "tempurl",
            "tempauth",
            "copy",
            "slo",
            "dlo",
            "versioned_writes",
        ];
        let mut proxy = format!(
            "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {proxy_port}\nworkers = 0\nuser = root\nswift_dir = {}\n\
             log_level = WARNING\n[pipeline:main]\npipeline = {} proxy-logging proxy-server\n\
             [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n",
            etc.display(),
            filters.join(" ")
        );
        for filter in filters {
            let egg = if filter == "cache" { "memcache".to_owned() } else { filter.replace('-', "_") };
            proxy.push_str(&format!("[filter:{filter}]\nuse = egg:swift#{egg}\n"));
            match filter {
                "tempauth" => proxy.push_str(&format!("user_{} = {SWIFT_KEY} .admin\n", SWIFT_USER.replace(':', "_"))),
                "cache" => proxy.push_str(&format!("memcache_servers = 127.0.0.1:{memcached_port}\n")),
                _ => {}
            }
        }
        let proxy_conf = etc.join("proxy-server.conf");
        write(&proxy_conf, &proxy);
        let mut logs = Vec::new();
        for (program, conf) in servers {
            let log = dir.path().join(format!("{program}.log"));
            let file = std::fs::File::create(&log).expect("log file");
            children.push(
                Command::new(&program)
                    .arg(&conf)
                    .stdout(file.try_clone().expect("log file"))
                    .stderr(file)
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {program}: {e}")),
            );
            logs.push(log);
        }
        let mut swift = Swift { children, proxy: None, proxy_conf, proxy_port, _dir: dir };
        swift.proxy = Some(swift.spawn_proxy());
        logs.push(swift._dir.path().join("swift-proxy-server.log"));
        let deadline = Instant::now() + Duration::from_secs(60);
        // Ready when an object can be written: the proxy, TempAuth, and every server behind them.
        while !swift.writes() {
            if Instant::now() > deadline {
                let tails: Vec<String> = logs
                    .iter()
                    .map(|l| format!("{}: {}", l.display(), std::fs::read_to_string(l).unwrap_or_default()))
                    .collect();
                panic!("Swift did not take an object within 60 s on port {proxy_port}:\n{}", tails.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        swift
    }

    /// The TempAuth (v1) URL: `http://127.0.0.1:PORT/auth/v1.0`.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/v1.0", self.proxy_port)
    }

    /// A token and the storage URL, as TempAuth hands them out (None until the proxy answers).
    pub fn token(&self) -> Option<(String, String)> {
        let head = format!(
            "GET /auth/v1.0 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Auth-User: {SWIFT_USER}\r\nX-Auth-Key: {SWIFT_KEY}\r\n\
             Connection: close\r\n\r\n",
            self.proxy_port
        );
        let answer = self.raw(&head)?;
        let header = |name: &str| {
            answer.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        Some((header("x-auth-token")?, header("x-storage-url")?))
    }

    /// The names of the objects of `container` under `prefix`.
    pub fn list(&self, container: &str, prefix: &str) -> Vec<String> {
        let (token, url) = self.token().expect("a token");
        let path = url.split_once("/v1/").map(|(_, p)| format!("/v1/{p}")).expect("a storage URL");
        let head = format!(
            "GET {path}/{container}?prefix={prefix} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Auth-Token: {token}\r\n\
             Connection: close\r\n\r\n",
            self.proxy_port
        );
        let answer = self.raw(&head).expect("list the container");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    /// Whether a container and an object in it can be written now.
    fn writes(&self) -> bool {
        let Some((token, url)) = self.token() else { return false };
        let Some(path) = url.split_once("/v1/").map(|(_, p)| format!("/v1/{p}")) else { return false };
        ["/ready", "/ready/object"].iter().all(|name| {
            let head = format!(
                "PUT {path}{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Auth-Token: {token}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                self.proxy_port
            );
            self.raw(&head).is_some()
        })
    }

    fn raw(&self, request: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.proxy_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        answer.starts_with("HTTP/1.1 2").then_some(answer)
    }

    fn spawn_proxy(&self) -> Child {
        let log = self._dir.path().join("swift-proxy-server.log");
        let file = std::fs::File::options().create(true).append(true).open(&log).expect("log file");
        Command::new("swift-proxy-server")
            .arg(&self.proxy_conf)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start swift-proxy-server")
    }

    /// Stops the proxy (SIGKILL): Swift answers nothing until [`Swift::start_proxy`].
    pub fn stop_proxy(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
    }

    /// Starts the proxy again and waits until it takes objects; what Swift stored is kept.
    pub fn start_proxy(&mut self) {
        self.proxy = Some(self.spawn_proxy());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.writes() {
            assert!(Instant::now() < deadline, "the Swift proxy did not come back within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops every server now.
    pub fn kill(&mut self) {
        self.stop_proxy();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Swift {
    fn drop(&mut self) {
        self.kill();
    }
}
