//! Starting and stopping the real `wharf` binary, and finding the external programs tests need.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The administrator's password of every node the tests start.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password";

/// A running `wharf up` process with its own data directory.
pub struct Wharf {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: bool,
    options: Options,
    /// Every line the process printed on standard output.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// The other managers of a cluster behind a balancer (see [`Wharf::cluster`]).
    others: Vec<Child>,
    /// Whether `addr` is a balancer that sends each connection to the next manager: clients
    /// then open one connection per request.
    balanced: bool,
    /// What must live as long as the node: its object store, its balancer.
    _keep: Vec<Box<dyn std::any::Any + Send>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Where a node under test keeps blobs.
pub enum Storage {
    Filesystem,
    /// A bucket of this moto server.
    S3(wharf_testkit::Moto),
    /// A container of this Swift.
    Swift(wharf_testkit::Swift),
}

impl Storage {
    pub fn s3() -> Storage {
        let moto = wharf_testkit::Moto::start();
        moto.create_bucket("e2e");
        Storage::S3(moto)
    }

    pub fn swift() -> Storage {
        Storage::Swift(wharf_testkit::Swift::start())
    }

    /// The `--storage` and `--storage-credentials` arguments (the credentials written in `dir`).
    fn args(&self, dir: &Path) -> Vec<String> {
        let (location, credentials) = match self {
            Storage::Filesystem => return Vec::new(),
            Storage::S3(moto) => (
                format!("s3://e2e/wharf?endpoint={}&retry=20", moto.endpoint()),
                "aws_access_key_id = e2e\naws_secret_access_key = e2e-secret\n".to_owned(),
            ),
            Storage::Swift(swift) => (
                format!("swift://e2e/wharf?auth={}&retry=20", swift.auth_url()),
                format!("user = {}\nkey = {}\n", wharf_testkit::SWIFT_USER, wharf_testkit::SWIFT_KEY),
            ),
        };
        let file = dir.join("storage-credentials");
        std::fs::write(&file, credentials).expect("write the storage credentials");
        vec!["--storage".into(), location, "--storage-credentials".into(), file.to_str().expect("path").into()]
    }
}

/// Accepts connections on `listener` and sends each to the next of `backends` in turn, bytes
/// copied both ways (TLS passes through: the client talks to the manager itself).
fn balance(listener: std::net::TcpListener, backends: Vec<SocketAddr>, served: Arc<Vec<AtomicUsize>>) {
    use std::net::TcpStream;
    let mut next = 0usize;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let backend = backends[next % backends.len()];
        served[next % backends.len()].fetch_add(1, Ordering::Relaxed);
        next += 1;
        std::thread::spawn(move || {
            let Ok(server) = TcpStream::connect(backend) else { return };
            let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone()) else { return };
            let upstream = std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_read, &mut server_write);
                let _ = server_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut server_read, mut client_write) = (server, client);
            let _ = std::io::copy(&mut server_read, &mut client_write);
            let _ = client_write.shutdown(std::net::Shutdown::Write);
            let _ = upstream.join();
        });
    }
}

/// Options for [`Wharf::start_with`].
#[derive(Clone, Default)]
pub struct Options {
    pub tls: bool,
    /// Listen address; `127.0.0.1:0` when unset.
    pub addr: Option<String>,
    pub sans: Vec<String>,
    /// Runs with `--insecure-no-auth`.
    pub no_auth: bool,
    /// Extra arguments for `wharf up`.
    pub extra: Vec<String>,
    /// Where the process's standard error goes (inherited when unset), and its log filter.
    pub log: Option<(PathBuf, String)>,
}

impl Wharf {
    /// A plain-HTTP node on a free loopback port.
    pub fn start() -> Wharf {
        Wharf::start_with(Options::default())
    }

    pub fn start_tls() -> Wharf {
        Wharf::start_with(Options { tls: true, ..Options::default() })
    }

    pub fn start_with(options: Options) -> Wharf {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (child, addr) = spawn(&data_dir, &options, &stdout);
        Wharf {
            child: Some(child),
            addr,
            data_dir,
            tls: options.tls,
            options,
            stdout,
            others: Vec::new(),
            balanced: false,
            _keep: Vec::new(),
            _tmp: Some(tmp),
        }
    }

    /// A TLS node (`wharf up`) keeping its blobs in `storage`.
    pub fn start_on(storage: Storage) -> Wharf {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = Options { tls: true, extra: storage.args(tmp.path()), ..Options::default() };
        let mut w = Wharf::start_with(options);
        w._keep.push(Box::new(storage));
        w._keep.push(Box::new(tmp));
        w
    }

    /// Three managers (`wharf init`, then two `wharf join` with the manager token) keeping
    /// their blobs in `storage`, behind a balancer on loopback that sends each connection to
    /// the next manager in turn; clients of it open one connection per request, so that each
    /// request goes to the next manager. Returns once all three are Raft voters.
    pub fn cluster(storage: Storage) -> Wharf {
        let tmp = tempfile::tempdir().expect("tempdir");
        let password = tmp.path().join("admin-password");
        std::fs::write(&password, format!("{ADMIN_PASSWORD}\n")).expect("write the password");
        let extra = storage.args(tmp.path());
        let addrs: Vec<SocketAddr> =
            (0..3).map(|_| SocketAddr::from(([127, 0, 0, 1], wharf_testkit::free_port()))).collect();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let dir = |n: usize| tmp.path().join(format!("node{n}"));
        let mut first = vec!["init".to_owned(), "--advertise".into(), addrs[0].to_string(), "--data-dir".into()];
        first.extend([dir(1).to_str().expect("path").into(), "--admin-password-file".into()]);
        first.push(password.to_str().expect("path").into());
        first.extend(extra.iter().cloned());
        let child = spawn_node(&first, &stdout);
        let token = wait_for(Duration::from_secs(10), "the manager join token", || {
            let lines = stdout.lock().expect("lock");
            lines
                .iter()
                .find(|l| l.contains("manager token:"))?
                .split_whitespace()
                .find(|w| w.starts_with("WHARF-1-"))
                .map(str::to_owned)
        });
        let token_file = tmp.path().join("manager.token");
        std::fs::write(&token_file, &token).expect("write the token");
        let mut others = Vec::new();
        for n in 2..=3 {
            let mut args = vec!["join".to_owned(), "--token-file".into(), token_file.to_str().expect("path").into()];
            args.extend([addrs[0].to_string(), "--advertise".into(), addrs[n - 1].to_string(), "--data-dir".into()]);
            args.push(dir(n).to_str().expect("path").into());
            // A joining manager learns the storage from the cluster; it brings its credentials.
            args.extend(extra.iter().skip_while(|a| *a != "--storage-credentials").cloned());
            others.push(spawn_node(&args, &Arc::new(Mutex::new(Vec::new()))));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
        let addr = listener.local_addr().expect("balancer address");
        let backends = addrs.clone();
        let served: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
        let counts = Arc::clone(&served);
        std::thread::spawn(move || balance(listener, backends, counts));
        let mut w = Wharf {
            child: Some(child),
            addr,
            data_dir: dir(1),
            tls: true,
            options: Options { tls: true, ..Options::default() },
            stdout,
            others,
            balanced: true,
            _keep: vec![Box::new(storage), Box::new(served)],
            _tmp: Some(tmp),
        };
        w.wait_for_voters(&addrs);
        w
    }

    /// How many connections the balancer sent to each manager (a cluster; empty otherwise).
    pub fn served(&self) -> Vec<usize> {
        self._keep
            .iter()
            .find_map(|k| k.downcast_ref::<Arc<Vec<AtomicUsize>>>())
            .map(|counts| counts.iter().map(|c| c.load(Ordering::Relaxed)).collect())
            .unwrap_or_default()
    }

    /// Waits until the managers at `addrs` are all Raft voters, as manager 1 lists them (asked
    /// with curl, which this synchronous constructor can run inside an async test).
    fn wait_for_voters(&mut self, addrs: &[SocketAddr]) {
        let ca = self.ca_path();
        let first = format!("https://{}", addrs[0]);
        let curl = |args: &[&str]| -> Option<serde_json::Value> {
            let out = Command::new("curl").args(["-sS", "--fail", "--cacert"]).arg(&ca).args(args).output().ok()?;
            serde_json::from_slice(&out.stdout).ok()
        };
        let login = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
        let login_url = format!("{first}/auth/login");
        let bearer = wait_for(Duration::from_secs(30), "a session on manager 1", || {
            let session = curl(&["-H", "content-type: application/json", "-d", &login, &login_url])?;
            Some(format!("authorization: Bearer {}", session["auth_token"].as_str()?))
        });
        wait_for(Duration::from_secs(60), "three Raft voters", || {
            let nodes = curl(&["-H", &bearer, &format!("{first}/api/nodes")])?;
            let voters = nodes.as_array()?.iter().filter(|n| n["raft"] == "voter").count();
            (voters == addrs.len()).then_some(())
        });
    }

    /// The line of standard output that starts with `prefix` (after indentation), without it.
    pub fn printed(&self, prefix: &str) -> Option<String> {
        let lines = self.stdout.lock().expect("lock");
        lines.iter().find_map(|l| l.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    }

    /// `admin:<password>`, as `--creds` and `--user` take it.
    pub fn admin_creds(&self) -> String {
        format!("admin:{ADMIN_PASSWORD}")
    }

    /// `http://127.0.0.1:PORT` or `https://...`.
    pub fn base(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// `127.0.0.1:PORT`, as image references use it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// An HTTP client that trusts this node's CA and sends the administrator's credentials
    /// (Basic) with every request.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let basic = base64_encode(self.admin_creds().as_bytes());
        headers.insert(reqwest::header::AUTHORIZATION, format!("Basic {basic}").parse().expect("header"));
        self.client_builder().default_headers(headers).build().expect("client")
    }

    /// An HTTP client that trusts this node's CA and sends no credentials.
    pub fn anonymous_client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if self.balanced {
            builder = builder.pool_max_idle_per_host(0).http1_only();
        }
        if self.tls {
            let pem = std::fs::read(self.data_dir.join("pki/ca.crt")).expect("ca.crt");
            let cert = reqwest::Certificate::from_pem(&pem).expect("ca pem");
            builder = builder.tls_certs_only([cert]);
        }
        builder
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("pki/ca.crt")
    }

    /// Kills the process (every manager of a cluster) with SIGKILL: no chance to flush or
    /// clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for mut child in self.others.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops with SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "wharf did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same data directory and address.
    pub fn restart(&mut self) {
        self.kill();
        let options = Options { addr: Some(self.addr.to_string()), ..self.options.clone() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match try_spawn(&self.data_dir, &options, &self.stdout) {
                Ok((child, addr)) => {
                    self.child = Some(child);
                    self.addr = addr;
                    return;
                }
                Err(e) if Instant::now() < deadline => eprintln!("restart not ready yet: {e}"),
                Err(e) => panic!("wharf did not restart: {e}"),
            }
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `wharf <args>` (a cluster node) and waits for its "listening on" line; its standard
/// output goes to `lines`.
fn spawn_node(args: &[String], lines: &Arc<Mutex<Vec<String>>>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("WHARF_LOG", "warn")
        .env("WHARF_DOCKER_HOST", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wharf");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let lines = Arc::clone(lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let listening = line.contains("listening on");
            lines.lock().expect("lock").push(line);
            if listening {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("wharf {args:?} did not start");
    }
    child
}

fn spawn(data_dir: &Path, options: &Options, lines: &Arc<Mutex<Vec<String>>>) -> (Child, SocketAddr) {
    try_spawn(data_dir, options, lines).unwrap_or_else(|e| panic!("start wharf: {e}"))
}

fn try_spawn(
    data_dir: &Path,
    options: &Options,
    lines: &Arc<Mutex<Vec<String>>>,
) -> Result<(Child, SocketAddr), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    // Tests that run tasks name their engine with --docker-host; the others run none.
    cmd.env("WHARF_DOCKER_HOST", "none");
    cmd.arg("up").arg("--data-dir").arg(data_dir);
    cmd.args(["--addr", options.addr.as_deref().unwrap_or("127.0.0.1:0")]);
    for san in &options.sans {
        cmd.args(["--san", san]);
    }
    if !options.tls {
        cmd.arg("--insecure-http");
    }
    if options.no_auth {
        cmd.arg("--insecure-no-auth");
    } else {
        let file = data_dir.with_file_name("admin-password");
        std::fs::write(&file, format!("{ADMIN_PASSWORD}\n")).map_err(|e| e.to_string())?;
        cmd.arg("--admin-password-file").arg(file);
    }
    cmd.args(&options.extra);
    match &options.log {
        Some((path, filter)) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())?;
            cmd.env("WHARF_LOG", filter).stderr(file);
        }
        None => {
            cmd.env("WHARF_LOG", "warn").stderr(Stdio::inherit());
        }
    }
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn wharf: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    let lines = Arc::clone(lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.lock().expect("lock").push(line.clone());
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => {
            let addr = url.rsplit("://").next().unwrap_or(&url).parse().map_err(|e| format!("{url}: {e}"))?;
            Ok((child, addr))
        }
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().map_err(|e| e.to_string())?;
            Err(format!("wharf printed no listening line within 30 s (exit: {status})"))
        }
    }
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Fails the test, saying how to install `program`, unless it is on the PATH.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed: run ./scripts/test (it installs every test prerequisite), \
         or see ../shared/reference/test-environment.md"
    );
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command with `input` on its standard input; returns its exit success, stdout and stderr.
pub fn run_with_input(cmd: &mut Command, input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
