//! Starting and stopping the real `wharf` binary, and finding the external programs tests need.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    _tmp: Option<tempfile::TempDir>,
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
        Wharf { child: Some(child), addr, data_dir, tls: options.tls, options, stdout, _tmp: Some(tmp) }
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

    /// Kills the process with SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
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

fn spawn(data_dir: &Path, options: &Options, lines: &Arc<Mutex<Vec<String>>>) -> (Child, SocketAddr) {
    try_spawn(data_dir, options, lines).unwrap_or_else(|e| panic!("start wharf: {e}"))
}

fn try_spawn(
    data_dir: &Path,
    options: &Options,
    lines: &Arc<Mutex<Vec<String>>>,
) -> Result<(Child, SocketAddr), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
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
