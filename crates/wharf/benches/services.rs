//! From `docker service create --replicas 50` to 50 running tasks: Wharf (one `wharf up` node
//! whose agent runs on a Docker Engine of its own, driven through a client bundle) against
//! Docker's own Swarm mode (`docker swarm init` on another engine of its own), with the same
//! `docker` CLI, the same image (imported into both engines; both try a pull first and run the
//! local image), the same flags (`-d`) and the same poll (`docker service
//! ls` every 100 ms until 50/50). Each side runs RUNS times; the table shows the medians and the
//! ratio, and the bound of this machine: the same engine starting the 50 containers by itself
//! (50 `docker run -d` at once), with the share of it Wharf reaches. Then a worker (`wharf
//! join` on a third engine) is killed with SIGKILL while it runs half of a 10-replica service:
//! the seconds until every replica runs on the manager's engine again, median of RUNS, beside
//! the bound of the down detection (three missed 1 s heartbeats). Each created service is
//! also updated to another image (a rolling update, 5 slots at a time, stop-first, no delay,
//! no monitor window on either side) until `UpdateStatus` says completed, Wharf against Swarm.
//! Every task runs a process that ends on SIGTERM. The update's bound: the same engine doing by
//! itself what such an update asks of it (5 `docker stop` at once, then 5 `docker run -d`, ten
//! times), with the share of it Wharf reaches. Run with `cargo bench -p
//! wharf --bench services` (as root: it starts engines).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{median, wharf_binary};
use wharf_testkit::Dockerd;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const REPLICAS: usize = 50;
const RUNS: usize = 5;
const IMAGE: &str = "wharf-bench/busybox:1";
/// The image a rolling update moves to (the same files under another name).
const NEW_IMAGE: &str = "wharf-bench/busybox:2";
/// What each task runs: a process that ends on SIGTERM, as a service should, so that a stop
/// measures the orchestration rather than the 10 s grace period of a process that ignores it.
const TASK: [&str; 4] = ["busybox", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];

fn main() -> Res<()> {
    let tmp = tempfile::tempdir()?;
    let (wharf_engine, swarm_engine) = (Dockerd::start(), Dockerd::start());
    let rootfs = busybox_rootfs(tmp.path())?;
    for engine in [&wharf_engine, &swarm_engine] {
        run(engine.docker(&["import", rootfs.to_str().ok_or("path")?, IMAGE]))?;
        run(engine.docker(&["tag", IMAGE, NEW_IMAGE]))?;
    }
    run(swarm_engine.docker(&[
        "swarm",
        "init",
        "--advertise-addr",
        "127.0.0.1",
        "--listen-addr",
        &format!("127.0.0.1:{}", common::free_port()),
    ]))?;
    let (mut node, bundle) = start_wharf(tmp.path(), &wharf_engine)?;
    let wharf = |args: &[&str]| bundle_docker(&bundle, args);
    let swarm = |args: &[&str]| swarm_engine.docker(args);
    let (mut wharf_times, mut swarm_times) = (Vec::new(), Vec::new());
    let (mut wharf_updates, mut swarm_updates) = (Vec::new(), Vec::new());
    for n in 0..RUNS {
        let (name, took) = (format!("w{n}"), converge(&wharf, &format!("w{n}"))?);
        wharf_times.push(took);
        wharf_updates.push(rolling_update(&wharf, &name)?);
        remove(&wharf, &wharf_engine, &name)?;
        let (name, took) = (format!("s{n}"), converge(&swarm, &format!("s{n}"))?);
        swarm_times.push(took);
        swarm_updates.push(rolling_update(&swarm, &name)?);
        remove(&swarm, &swarm_engine, &name)?;
    }
    let (w, s) = (median(wharf_times.clone()), median(swarm_times.clone()));
    let (wu, su) = (median(wharf_updates.clone()), median(swarm_updates.clone()));
    // The bound: the same engine starting 50 such containers at once by itself.
    let mut bounds = Vec::new();
    for _ in 0..RUNS {
        bounds.push(engine_alone(&wharf_engine)?);
    }
    let b = median(bounds.clone());
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        format!("service create --replicas {REPLICAS} to running"),
        "Wharf s",
        "Swarm s",
        "ratio"
    );
    println!("{:<44} {:>12.2} {:>12.2} {:>7.2}x", format!("median of {RUNS} (Swarm / Wharf)"), w, s, s / w);
    println!("{:<44} {:>12} {:>12}", "every run", format!("{wharf_times:.2?}"), format!("{swarm_times:.2?}"));
    println!(
        "{:<44} {:>12.2} {:>12} {:>7.0}%",
        format!("bound: the engine alone, {REPLICAS} docker run -d at once"),
        b,
        "",
        100.0 * b / w
    );
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        format!("rolling update of {REPLICAS} (parallelism 5, delay 0)"),
        "Wharf s",
        "Swarm s",
        "ratio"
    );
    println!("{:<44} {:>12.2} {:>12.2} {:>7.2}x", format!("median of {RUNS} (Swarm / Wharf)"), wu, su, su / wu);
    println!("{:<44} {:>12} {:>12}", "every run", format!("{wharf_updates:.2?}"), format!("{swarm_updates:.2?}"));
    let mut rolling_bounds = Vec::new();
    for _ in 0..RUNS {
        rolling_bounds.push(engine_rolling_alone(&wharf_engine)?);
    }
    let rb = median(rolling_bounds);
    println!(
        "{:<44} {:>12.2} {:>12} {:>7.0}%",
        "bound: the engine alone, 5 stops then 5 runs",
        rb,
        "",
        100.0 * rb / wu
    );

    // A worker's agent killed: its tasks running on the manager's engine again.
    let worker_engine = Dockerd::start();
    run(worker_engine.docker(&["import", rootfs.to_str().ok_or("path")?, IMAGE]))?;
    let mut worker = Worker::join(tmp.path(), &worker_engine)?;
    wait_ready(&bundle, 2)?;
    let mut failovers = Vec::new();
    for n in 0..RUNS {
        failovers.push(failover(&bundle, &wharf_engine, &worker_engine, &mut worker, &format!("f{n}"))?);
    }
    let detection = HEARTBEAT.as_secs_f64() * f64::from(wharf_manager::MISSED_HEARTBEATS);
    println!();
    println!("{:<44} {:>12}", format!("worker agent killed ({FAILOVER_REPLICAS} replicas, half on it)"), "Wharf s");
    println!("{:<44} {:>12.2}", format!("median of {RUNS}, kill to all running again"), median(failovers.clone()));
    println!("{:<44} {:>12}", "every run", format!("{failovers:.2?}"));
    println!(
        "{:<44} {:>12.2}",
        format!(
            "bound: down after {} missed {} ms heartbeats",
            wharf_manager::MISSED_HEARTBEATS,
            HEARTBEAT.as_millis()
        ),
        detection
    );
    worker.stop();
    let _ = node.kill();
    let _ = node.wait();
    Ok(())
}

/// How often nodes send heartbeats in this benchmark (`--heartbeat-ms`): a node is down after
/// three missed ones.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Tasks of the service whose worker is killed, spread over the two nodes.
const FAILOVER_REPLICAS: usize = 10;

/// A `wharf join` worker whose tasks run on an engine of its own.
struct Worker {
    child: Option<std::process::Child>,
    args: Vec<String>,
}

impl Worker {
    fn join(dir: &Path, engine: &Dockerd) -> Res<Worker> {
        let out = Command::new(wharf_binary())
            .args(["token", "show", "worker"])
            .env("WHARF_CONFIG", dir.join("wharf-config.json"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let token = text.split_whitespace().find(|w| w.starts_with("WHARF-")).ok_or("no worker token")?;
        let token_file = dir.join("worker.token");
        std::fs::write(&token_file, token)?;
        let manager = std::fs::read_to_string(dir.join("wharf-addr"))?;
        let args = vec![
            "join".to_owned(),
            "--token-file".into(),
            token_file.to_str().ok_or("path")?.into(),
            manager,
            "--advertise".into(),
            format!("127.0.0.1:{}", common::free_port()),
            "--data-dir".into(),
            dir.join("worker").to_str().ok_or("path")?.into(),
            "--docker-host".into(),
            engine.host.clone(),
        ];
        let mut worker = Worker { child: None, args };
        worker.start()?;
        Ok(worker)
    }

    fn start(&mut self) -> Res<()> {
        let child =
            Command::new(wharf_binary()).args(&self.args).env("WHARF_LOG", "warn").stdout(Stdio::null()).spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: its containers keep running on its engine, its heartbeats stop.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `nodes` nodes are ready with their engine described.
fn wait_ready(bundle: &Path, nodes: usize) -> Res<()> {
    poll(Duration::from_secs(60), &format!("{nodes} ready nodes"), || {
        let out = bundle_docker(bundle, &["node", "ls", "--format", "{{.Status}} {{.EngineVersion}}"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(text.lines().filter(|l| l.starts_with("Ready ") && l.len() > "Ready ".len()).count() == nodes)
    })
}

/// Calls `check` every 50 ms until it says yes, for at most `limit`.
fn poll(limit: Duration, what: &str, mut check: impl FnMut() -> Res<bool>) -> Res<()> {
    let deadline = Instant::now() + limit;
    while !check()? {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Running containers of service `name` on `engine`.
fn running(engine: &Dockerd, name: &str) -> usize {
    engine.containers(false).iter().filter(|c| c.starts_with(&format!("{name}."))).count()
}

/// One run: a service spread over both nodes, the worker killed; seconds from the kill until
/// every replica runs on the manager's engine. Then the worker comes back and removes its
/// stale containers, and the service is removed.
fn failover(bundle: &Path, manager: &Dockerd, engine: &Dockerd, worker: &mut Worker, name: &str) -> Res<f64> {
    let replicas = FAILOVER_REPLICAS.to_string();
    let args = ["service", "create", "-d", "--name", name, "--replicas", &replicas, IMAGE, "busybox", "sleep", "3600"];
    run(bundle_docker(bundle, &args))?;
    let half = FAILOVER_REPLICAS / 2;
    poll(Duration::from_secs(120), "the replicas spread over both engines", || {
        Ok(running(manager, name) == half && running(engine, name) == half)
    })?;
    worker.stop();
    let start = Instant::now();
    poll(Duration::from_secs(120), "every replica running on the manager's engine", || {
        Ok(running(manager, name) == FAILOVER_REPLICAS)
    })?;
    let took = start.elapsed().as_secs_f64();
    worker.start()?;
    poll(Duration::from_secs(120), "the worker back, its stale containers removed", || {
        Ok(engine.containers(true).iter().all(|c| !c.starts_with(&format!("{name}."))))
    })?;
    wait_ready(bundle, 2)?;
    run(bundle_docker(bundle, &["service", "rm", name]))?;
    poll(Duration::from_secs(120), "the service's containers removed", || {
        Ok(manager.containers(true).is_empty() && engine.containers(true).is_empty())
    })?;
    Ok(took)
}

/// `docker service update -d --image NEW_IMAGE` of `name`, stop-first, 5
/// slots at a time, no delay, no monitor window on either side (Wharf has none); the seconds
/// until `UpdateStatus` says completed (polled every 100 ms).
fn rolling_update(docker: &dyn Fn(&[&str]) -> Command, name: &str) -> Res<f64> {
    let start = Instant::now();
    run(docker(&[
        "service",
        "update",
        "-d",
        "--update-parallelism",
        "5",
        "--update-delay",
        "0s",
        "--update-monitor",
        "0s",
        "--update-order",
        "stop-first",
        "--image",
        NEW_IMAGE,
        name,
    ]))?;
    loop {
        let out = docker(&["service", "inspect", name, "--format", "{{.UpdateStatus.State}}"]).output()?;
        if String::from_utf8_lossy(&out.stdout).trim() == "completed" {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!("the update of {name} did not complete in 5 minutes").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes service `name` and waits until its containers are gone from `engine`.
fn remove(docker: &dyn Fn(&[&str]) -> Command, engine: &Dockerd, name: &str) -> Res<()> {
    run(docker(&["service", "rm", name]))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !engine.containers(true).is_empty() {
        if Instant::now() > deadline {
            return Err(format!("the containers of {name} were not removed in 2 minutes").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Creates a service of REPLICAS tasks and waits until all run; returns the seconds it took.
fn converge(docker: &dyn Fn(&[&str]) -> Command, name: &str) -> Res<f64> {
    let replicas = REPLICAS.to_string();
    let start = Instant::now();
    let mut args = vec!["service", "create", "-d", "--name", name, "--replicas", &replicas, IMAGE];
    args.extend(TASK);
    run(docker(&args))?;
    let want = format!("{REPLICAS}/{REPLICAS}");
    loop {
        let out =
            docker(&["service", "ls", "--filter", &format!("name={name}"), "--format", "{{.Replicas}}"]).output()?;
        if String::from_utf8_lossy(&out.stdout).trim() == want {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!("{name} did not reach {want} in 5 minutes").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds for `engine` to run REPLICAS containers started at once with `docker run -d`
/// (the same image and command), then removes them.
fn engine_alone(engine: &Dockerd) -> Res<f64> {
    let start = Instant::now();
    run_at_once(engine, IMAGE, REPLICAS)?;
    let took = start.elapsed().as_secs_f64();
    remove_all(engine)?;
    Ok(took)
}

/// Seconds for `engine` by itself to do what a stop-first rolling update of REPLICAS tasks,
/// 5 at a time, asks of it: REPLICAS containers run; then, 5 at a time, 5 `docker stop` at
/// once and, once stopped, 5 `docker run -d` of the new image at once.
fn engine_rolling_alone(engine: &Dockerd) -> Res<f64> {
    run_at_once(engine, IMAGE, REPLICAS)?;
    let ids = engine.docker(&["ps", "-q"]).output()?;
    let ids = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let start = Instant::now();
    for batch in ids.chunks(5) {
        let stops: Vec<_> =
            batch.iter().map(|id| engine.docker(&["stop", id.as_str()]).spawn()).collect::<Result<_, _>>()?;
        for stop in stops {
            if !stop.wait_with_output()?.status.success() {
                return Err("docker stop failed".into());
            }
        }
        run_at_once(engine, NEW_IMAGE, batch.len())?;
    }
    let took = start.elapsed().as_secs_f64();
    remove_all(engine)?;
    Ok(took)
}

/// `count` containers of `image` started with `docker run -d` at once.
fn run_at_once(engine: &Dockerd, image: &str, count: usize) -> Res<()> {
    let mut children = Vec::new();
    for _ in 0..count {
        let mut command = engine.docker(&[&["run", "-d", image][..], &TASK].concat());
        children.push(command.spawn()?);
    }
    for child in children {
        if !child.wait_with_output()?.status.success() {
            return Err("docker run failed".into());
        }
    }
    Ok(())
}

fn remove_all(engine: &Dockerd) -> Res<()> {
    let ids = engine.docker(&["ps", "-aq"]).output()?;
    let ids = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    run(engine.docker(&args))
}

/// `wharf up` with its tasks on `engine`, and a client bundle of its administrator.
fn start_wharf(dir: &Path, engine: &Dockerd) -> Res<(std::process::Child, PathBuf)> {
    let password = dir.join("admin-password");
    std::fs::write(&password, common::ADMIN_PASSWORD)?;
    let addr = format!("127.0.0.1:{}", common::free_port());
    std::fs::write(dir.join("wharf-addr"), &addr)?;
    let data = dir.join("wharf");
    let child = Command::new(wharf_binary())
        .args(["up", "--addr", &addr, "--data-dir"])
        .arg(&data)
        .arg("--admin-password-file")
        .arg(&password)
        .args(["--docker-host", &engine.host, "--heartbeat-ms", &HEARTBEAT.as_millis().to_string()])
        .env("WHARF_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let ca = data.join("pki/ca.crt");
    let config = dir.join("wharf-config.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut login = Command::new(wharf_binary());
        login.args(["login", &format!("https://{addr}"), "-u", "admin", "--password-stdin", "--ca"]).arg(&ca);
        login.env("WHARF_CONFIG", &config).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        if ca.exists() {
            let mut child = login.spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin.write_all(common::ADMIN_PASSWORD.as_bytes())?;
            }
            if child.wait()?.success() {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err("wharf up did not accept a login within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let bundle = dir.join("bundle");
    let status = Command::new(wharf_binary())
        .args(["bundle", "-o"])
        .arg(&bundle)
        .env("WHARF_CONFIG", &config)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err("wharf bundle failed".into());
    }
    // The node is ready to run tasks once its agent has described the engine.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = bundle_docker(&bundle, &["node", "ls", "--format", "{{.Status}} {{.EngineVersion}}"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if text.starts_with("Ready ") && text.len() > "Ready ".len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the node never reported its engine: {text}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((child, bundle))
}

fn bundle_docker(bundle: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg("cd \"$1\" && shift && eval \"$(<env.sh)\" && exec docker \"$@\"")
        .arg("bash")
        .arg(bundle)
        .args(args)
        .env("DOCKER_CONFIG", bundle.join(".docker"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

fn run(mut command: Command) -> Res<()> {
    let out = command.output()?;
    if !out.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// A tar of a root filesystem with busybox, for `docker import`.
fn busybox_rootfs(dir: &Path) -> Res<PathBuf> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin"))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists());
    std::fs::copy(
        busybox.ok_or("busybox is not installed (apt-get install busybox-static)")?,
        root.join("bin/busybox"),
    )?;
    let tar = dir.join("rootfs.tar");
    run({
        let mut c = Command::new("tar");
        c.arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".");
        c
    })?;
    Ok(tar)
}
