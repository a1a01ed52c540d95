//! [`Dockerd`]: a Docker Engine of its own for one test node, beside the machine's default one
//! (its own data root, exec root, pidfile, socket and bridge; no iptables, so published ports
//! go through docker-proxy and answer on 127.0.0.1). Stopped by its PID and its bridge
//! deleted when dropped.
//!
//! An engine without iptables adds no rule letting containers on one of its networks talk
//! (an engine with iptables adds one per bridge), and the machine's default engine set the
//! `FORWARD` policy to `DROP` for bridged traffic too: [`Dockerd::start`] makes sure one rule
//! accepts traffic that stays on one bridge (`physdev --physdev-is-bridged`), which a default
//! engine allows anyway between the containers of a network.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dockerd {
    child: Child,
    bridge: String,
    /// `unix:///.../sock`, what `--docker-host` and `DOCKER_HOST` take.
    pub host: String,
    dir: tempfile::TempDir,
}

fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(found, "{program} is not installed: run ./scripts/test (it installs docker.io and iproute2)");
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Dockerd {
    /// Starts an engine and waits until it answers (a few seconds).
    pub fn start() -> Dockerd {
        require("dockerd");
        require("docker");
        require("ip");
        require("iptables");
        let rule = ["FORWARD", "-m", "physdev", "--physdev-is-bridged", "-j", "ACCEPT"];
        let iptables = |op: &str| {
            let status =
                Command::new("iptables").arg(op).args(rule).stdout(Stdio::null()).stderr(Stdio::null()).status();
            status.is_ok_and(|s| s.success())
        };
        assert!(iptables("-C") || iptables("-I"), "accepting bridged traffic with iptables failed (needs root)");
        let dir = tempfile::Builder::new().prefix("wharf-dockerd").tempdir().expect("tempdir");
        // Bridge `wharfbrN` owns 10.213.N.0/24: creating the link is the lock on N, so engines
        // of parallel tests (and bridges a killed test left) never share a subnet.
        let n = (0..250)
            .find(|n| ip(&["link", "add", &format!("wharfbr{n}"), "type", "bridge"]))
            .expect("no free bridge wharfbr0..249 (needs root; `ip link del` leftovers)");
        let (bridge, subnet) = (format!("wharfbr{n}"), format!("10.213.{n}.1/24"));
        assert!(ip(&["addr", "add", &subnet, "dev", &bridge]), "addressing bridge {bridge} failed");
        assert!(ip(&["link", "set", &bridge, "up"]), "starting bridge {bridge} failed");
        let root = dir.path();
        let socket = root.join("sock");
        let log = std::fs::File::create(root.join("log")).expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(root.join("root"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge", &bridge, "--iptables=false", "--ip6tables=false", "--log-level=warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let host = format!("unix://{}", socket.display());
        let engine = Dockerd { child, bridge, host, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["info"]).status().is_ok_and(|s| s.success()) {
            assert!(Instant::now() < deadline, "dockerd did not answer within 60 s: see {}", engine.log().display());
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    /// A `docker` command against this engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", &self.host).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// The names of the containers on this engine (all, or running only).
    pub fn containers(&self, all: bool) -> Vec<String> {
        let mut args = vec!["ps", "--format", "{{.Names}}"];
        if all {
            args.push("-a");
        }
        let out = self.docker(&args).output().expect("docker ps");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// What `docker ps` shows of each running container's ports.
    pub fn ports(&self) -> Vec<String> {
        let out = self.docker(&["ps", "--format", "{{.Names}} {{.Ports}}"]).output().expect("docker ps");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first, so no docker-proxy or shim outlives the engine.
        let ids = self.docker(&["ps", "-aq"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let ids: Vec<String> = ids.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.docker(&args).output();
        }
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().is_ok_and(|s| s.is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
