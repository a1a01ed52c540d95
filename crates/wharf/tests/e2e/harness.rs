//! Starting and stopping the real `wharf` binary, and finding the external programs tests need.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `wharf up` process with its own data directory.
pub struct Wharf {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: bool,
    _tmp: Option<tempfile::TempDir>,
}

/// Options for [`Wharf::start_with`].
#[derive(Clone, Default)]
pub struct Options {
    pub tls: bool,
    /// Listen address; `127.0.0.1:0` when unset.
    pub addr: Option<String>,
    pub sans: Vec<String>,
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
        let (child, addr) = spawn(&data_dir, &options);
        Wharf { child: Some(child), addr, data_dir, tls: options.tls, _tmp: Some(tmp) }
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

    /// An HTTP client that trusts this node's CA.
    pub fn client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if self.tls {
            let pem = std::fs::read(self.data_dir.join("pki/ca.crt")).expect("ca.crt");
            let cert = reqwest::Certificate::from_pem(&pem).expect("ca pem");
            builder = builder.tls_certs_only([cert]);
        }
        builder.build().expect("client")
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
        let options = Options { tls: self.tls, addr: Some(self.addr.to_string()), sans: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match try_spawn(&self.data_dir, &options) {
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

fn spawn(data_dir: &Path, options: &Options) -> (Child, SocketAddr) {
    try_spawn(data_dir, options).unwrap_or_else(|e| panic!("start wharf: {e}"))
}

fn try_spawn(data_dir: &Path, options: &Options) -> Result<(Child, SocketAddr), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("up").arg("--data-dir").arg(data_dir);
    cmd.args(["--addr", options.addr.as_deref().unwrap_or("127.0.0.1:0")]);
    for san in &options.sans {
        cmd.args(["--san", san]);
    }
    if !options.tls {
        cmd.arg("--insecure-http");
    }
    cmd.env("WHARF_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("spawn wharf: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
