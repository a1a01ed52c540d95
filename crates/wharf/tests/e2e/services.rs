//! Services through the stock `docker` CLI and a client bundle, on nodes that each have a
//! Docker Engine of their own (`wharf_testkit::Dockerd`): the agents pull the image from
//! Wharf's registry with their node's identity and run the tasks on their engine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wharf_testkit::Dockerd;

use crate::clients::{busybox_layer, require_docker};
use crate::harness::{ADMIN_PASSWORD, Options, Wharf, require, wait_for};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// A `docker` command run the way a user runs it with a bundle: `cd` into it and
/// `eval "$(<env.sh)"`.
pub(crate) fn docker(bundle: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg("cd \"$1\" && shift && eval \"$(<env.sh)\" && exec docker \"$@\"")
        .arg("bash")
        .arg(bundle)
        .args(args)
        .env("DOCKER_CONFIG", bundle.join(".docker"))
        .stdin(Stdio::null());
    command
}

/// Runs `docker` with the bundle; its standard output, or a panic with what it said.
pub(crate) fn ok(bundle: &Path, args: &[&str]) -> String {
    let out = docker(bundle, args).output().expect("run docker");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "docker {args:?} failed: {stdout}{stderr}");
    stdout.into_owned()
}

/// Runs `docker` with the bundle expecting a refusal; what it said.
pub(crate) fn refused(bundle: &Path, args: &[&str]) -> String {
    let out = docker(bundle, args).output().expect("run docker");
    assert!(!out.status.success(), "docker {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Logs in as `user` with `wharf login` and fetches a bundle with `wharf bundle`.
pub(crate) fn bundle(w: &Wharf, dir: &Path, user: &str, password: &str) -> PathBuf {
    bundle_from(&w.base(), &w.ca_path(), dir, user, password)
}

/// `wharf login` as `user` to the manager at `base` (`https://host:port`), whose CA is at
/// `ca`; the client configuration it wrote (for `WHARF_CONFIG`).
pub(crate) fn login(base: &str, ca: &Path, dir: &Path, user: &str, password: &str) -> PathBuf {
    let tag = base.rsplit(':').next().unwrap_or("0");
    let config = dir.join(format!("{user}-{tag}-config.json"));
    let mut login = Command::new(WHARF)
        .args(["login", base, "-u", user, "--password-stdin", "--ca"])
        .arg(ca)
        .env("WHARF_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("wharf login");
    login.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    assert!(login.wait().expect("wait").success(), "wharf login as {user} failed");
    config
}

/// [`bundle`] from the manager at `base` (`https://host:port`), whose CA is at `ca`.
pub(crate) fn bundle_from(base: &str, ca: &Path, dir: &Path, user: &str, password: &str) -> PathBuf {
    let tag = base.rsplit(':').next().unwrap_or("0");
    let config = login(base, ca, dir, user, password);
    let out = dir.join(format!("{user}-{tag}-bundle"));
    let status = Command::new(WHARF).args(["bundle", "-o"]).arg(&out).env("WHARF_CONFIG", &config).status();
    assert!(status.expect("wharf bundle").success(), "wharf bundle failed");
    for file in ["ca.pem", "cert.pem", "key.pem", "cert.pub", "env.sh", "env.ps1", "env.cmd", "context.zip"] {
        assert!(out.join(file).is_file(), "the bundle has no {file}");
    }
    out
}

/// Pushes a busybox image to the cluster's registry through the machine's default engine.
pub(crate) fn push_image(registry: &str, dir: &Path, image: &str) {
    std::fs::write(dir.join("rootfs.tar"), busybox_layer(dir)).expect("write the layer");
    let config = dir.join("push-config");
    let docker = |args: &[&str]| {
        let out = Command::new("docker").env("DOCKER_CONFIG", &config).args(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    docker(&["import", dir.join("rootfs.tar").to_str().expect("path"), image]);
    docker_login(&config, registry);
    docker(&["push", image]);
    docker(&["rmi", image]);
}

/// `docker login` to `registry` as the administrator, through the machine's engine, into the
/// client configuration at `config`.
fn docker_login(config: &Path, registry: &str) {
    let mut login = Command::new("docker")
        .env("DOCKER_CONFIG", config)
        .args(["login", registry, "-u", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker login");
    login.stdin.take().expect("stdin").write_all(ADMIN_PASSWORD.as_bytes()).expect("password");
    assert!(login.wait().expect("wait").success(), "docker login to {registry} failed");
}

/// A node process, killed when dropped (also when a test fails).
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker (`wharf join` with the worker token) whose tasks run on `engine`.
fn join_worker(w: &Wharf, dir: &Path, engine: &Dockerd) -> Node {
    let token = wait_for(Duration::from_secs(10), "the worker token", || w.printed("worker token:"));
    let token_file = dir.join("worker.token");
    std::fs::write(&token_file, token).expect("write the token");
    let advertise = format!("127.0.0.1:{}", wharf_testkit::free_port());
    let mut child = Command::new(WHARF)
        .args(["join", "--token-file"])
        .arg(&token_file)
        .args([w.host().as_str(), "--advertise", &advertise, "--data-dir"])
        .arg(dir.join("worker"))
        .args(["--docker-host", &engine.host])
        .env("WHARF_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the worker");
    let mut stdout = child.stdout.take().expect("stdout");
    let child = Node(child);
    let mut seen = String::new();
    let mut byte = [0u8; 1];
    while !seen.contains(" is up") {
        assert!(stdout.read(&mut byte).expect("read") == 1, "the worker stopped: {seen}");
        seen.push(byte[0] as char);
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    child
}

/// Does busybox httpd answer `GET /` on 127.0.0.1:`port` (with any HTTP status: the image's
/// folder has no index page)?
fn answers(port: u16) -> bool {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port));
    let Ok(mut stream) = stream.inspect_err(|e| eprintln!("connecting to {port}: {e}")) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    if let Err(e) = stream.read_to_string(&mut answer) {
        eprintln!("reading from {port}: {e} ({answer:?})");
    }
    answer.starts_with("HTTP/1.0 ") || answer.starts_with("HTTP/1.1 ")
}

/// The host ports `docker service ps` shows for the running tasks of `service`.
fn running_ports(bundle: &Path, service: &str) -> Vec<u16> {
    let out = ok(
        bundle,
        &["service", "ps", service, "--filter", "desired-state=running", "--format", "{{.CurrentState}}|{{.Ports}}"],
    );
    out.lines()
        .filter(|l| l.starts_with("Running"))
        .filter_map(|l| l.split_once("*:")?.1.split_once("->")?.0.parse().ok())
        .collect()
}

fn wharf_containers(engine: &Dockerd, prefix: &str) -> usize {
    engine.containers(false).iter().filter(|n| n.starts_with(prefix)).count()
}

#[test]
fn the_docker_cli_runs_services_on_nodes_with_engines_of_their_own() {
    require_docker();
    require("bash");
    let (e1, e2) = (Dockerd::start(), Dockerd::start());
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = vec!["--docker-host".to_owned(), e1.host.clone(), "--heartbeat-ms".into(), "1000".into()];
    let w = Wharf::start_with(Options { tls: true, extra, ..Options::default() });
    let worker = join_worker(&w, tmp.path(), &e2);
    let admin = bundle(&w, tmp.path(), "admin", ADMIN_PASSWORD);

    assert!(ok(&admin, &["version"]).contains("Wharf"), "docker version names the server");
    let info = ok(&admin, &["info"]);
    assert!(info.contains("Swarm: active") && info.contains("Is Manager: true"), "docker info: {info}");
    let nodes = wait_for(Duration::from_secs(60), "both nodes ready with their engines", || {
        let out = ok(&admin, &["node", "ls", "--format", "{{.ID}} {{.Status}} {{.EngineVersion}} {{.ManagerStatus}}"]);
        let ready: Vec<String> =
            out.lines().filter(|l| l.contains(" Ready ") && !l.ends_with("Ready ")).map(str::to_owned).collect();
        (ready.len() == 2).then_some(ready)
    });
    let worker_id =
        nodes.iter().find(|l| !l.contains("Leader")).and_then(|l| l.split_whitespace().next()).expect("the worker");

    let image = format!("{}/admin/web:1", w.host());
    push_image(&w.host(), tmp.path(), &image);
    // Attached: the CLI polls until the four tasks run (the `_up-to-date` filter, the nodes).
    let httpd = ["busybox", "httpd", "-f", "-p", "80", "-h", "/bin"];
    let mut create = vec!["service", "create", "--name", "web", "--replicas", "4", "-p", "mode=host,target=80", &image];
    create.extend(httpd);
    ok(&admin, &create);
    let ports = running_ports(&admin, "web");
    assert_eq!(ports.len(), 4, "four running tasks with a published port each");
    for port in &ports {
        wait_for(Duration::from_secs(20), &format!("the task published on port {port} to answer"), || {
            answers(*port).then_some(())
        });
    }
    let (on1, on2) = (wharf_containers(&e1, "web."), wharf_containers(&e2, "web."));
    assert_eq!((on1 + on2, on1.min(on2)), (4, 2), "the tasks run on both engines, spread evenly");
    assert!(ok(&admin, &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"]).contains("web 4/4"));
    assert_eq!(
        ok(&admin, &["service", "inspect", "web", "--format", "{{.Spec.Mode.Replicated.Replicas}}"]).trim(),
        "4"
    );

    ok(&admin, &["service", "scale", "web=2"]);
    wait_for(Duration::from_secs(60), "two tasks of web left running", || {
        (wharf_containers(&e1, "web.") + wharf_containers(&e2, "web.") == 2).then_some(())
    });

    // An update of the task template replaces the tasks (attached: the CLI waits until the
    // tasks of the new spec run).
    // A rolling update, one slot at a time with a 2 s pause after each new task runs.
    ok(
        &admin,
        &["service", "update", "--update-parallelism", "1", "--update-delay", "2s", "--env-add", "COLOR=blue", "web"],
    );
    // The old containers stop within their grace period (httpd ignores SIGTERM as PID 1).
    wait_for(Duration::from_secs(60), "two tasks of web, both of the new spec", || {
        let envs = running_env(&[&e1, &e2], "web");
        (envs.len() == 2 && envs.iter().all(|env| env.contains("COLOR=blue"))).then_some(())
    });
    update_reaches(&admin, "web", "completed");
    let ids = ok(&admin, &["service", "ps", "web", "-q", "--no-trunc", "--filter", "desired-state=running"]);
    let mut created: Vec<String> = ids
        .split_whitespace()
        .map(|id| ok(&admin, &["inspect", "--type", "task", "--format", "{{.CreatedAt.Unix}}", id]).trim().to_owned())
        .collect();
    created.sort();
    let times: Vec<i64> = created.iter().map(|t| t.parse().expect("a Unix time")).collect();
    assert!(
        times.len() == 2 && times[1] - times[0] >= 2,
        "the second slot waited for the first and the delay: {times:?}"
    );
    // Rolled back: the spec before the update, and tasks of it.
    ok(&admin, &["service", "rollback", "web"]);
    wait_for(Duration::from_secs(60), "two tasks of web, both of the spec before the update", || {
        let envs = running_env(&[&e1, &e2], "web");
        (envs.len() == 2 && envs.iter().all(|env| !env.contains("COLOR=blue"))).then_some(())
    });

    service_logs(&admin, &image);
    images_of_another_registry(&w, &admin, tmp.path(), [&e1, &e2]);

    ok(
        &admin,
        &["service", "create", "-d", "--name", "everywhere", "--mode", "global", &image, "busybox", "sleep", "600"],
    );
    wait_for(Duration::from_secs(60), "the global service on both nodes", || {
        (wharf_containers(&e1, "everywhere.") == 1 && wharf_containers(&e2, "everywhere.") == 1).then_some(())
    });

    ok(
        &admin,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "nowhere",
            "--constraint",
            "node.labels.zone==mars",
            &image,
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_for(Duration::from_secs(30), "the reason a task cannot be placed", || {
        let out = ok(&admin, &["service", "ps", "nowhere", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]);
        (out.contains("Pending") && out.contains("no suitable node (scheduling constraints not satisfied on 2 nodes)"))
            .then_some(())
    });
    // A node that gets the label takes the task.
    ok(&admin, &["node", "update", "--label-add", "zone=mars", worker_id]);
    assert!(ok(&admin, &["node", "inspect", worker_id, "--format", "{{.Spec.Labels}}"]).contains("zone:mars"));
    wait_for(Duration::from_secs(30), "the pending task placed on the labelled worker", || {
        (wharf_containers(&e2, "nowhere.") == 1).then_some(())
    });
    // The only manager cannot be demoted.
    let manager_id = nodes.iter().find(|l| l.contains("Leader")).and_then(|l| l.split_whitespace().next());
    let said = refused(&admin, &["node", "update", "--role", "worker", manager_id.expect("the manager")]);
    assert!(said.contains("at least one manager"), "demoting the last manager: {said}");

    ok(&admin, &["node", "update", "--availability", "drain", worker_id]);
    wait_for(Duration::from_secs(60), "the drained worker's tasks moved to the manager", || {
        let moved = wharf_containers(&e2, "web.") == 0 && wharf_containers(&e2, "everywhere.") == 0;
        (moved && wharf_containers(&e1, "web.") == 2).then_some(())
    });
    assert!(ok(&admin, &["node", "ls"]).contains("Drain"));

    // A user without grants sees and changes only what they created (their private
    // collection); nodes of /Shared are theirs to view, not to change.
    let client = w.client();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let created = runtime.block_on(
        client
            .post(w.url("/api/users"))
            .bearer_auth(admin_session(&w, &runtime))
            .body(r#"{"name":"bob","password":"bob-password-1"}"#)
            .send(),
    );
    assert!(created.expect("create bob").status().is_success(), "creating bob");
    let bob = bundle(&w, tmp.path(), "bob", "bob-password-1");
    let hidden = |said: String| said.contains("not found") || said.contains("No such") || said.contains("no such");
    assert!(hidden(refused(&bob, &["service", "inspect", "web"])));
    assert!(!ok(&bob, &["service", "ls"]).contains("web"));
    assert!(hidden(refused(&bob, &["service", "rm", "web"])));
    assert!(hidden(refused(&bob, &["service", "logs", "talker"])));
    let said = refused(&bob, &["node", "update", "--availability", "active", worker_id]);
    assert!(said.contains("access denied: bob may not node.update in collection /Shared"), "{said}");
    let nodes = ok(&bob, &["node", "ls", "-q"]);
    assert_eq!(nodes.trim(), worker_id, "bob sees the worker (/Shared), not the manager (/System)");

    // As a context: `docker context import` of the context.zip `wharf bundle` wrote, and of
    // `GET /api/clientbundle?format=context`.
    let session = admin_session(&w, &runtime);
    let zip = runtime.block_on(async {
        let response = client.get(w.url("/api/clientbundle?format=context")).bearer_auth(session).send().await;
        response.expect("GET /api/clientbundle").bytes().await.expect("the zip")
    });
    let (zip_path, contexts) = (tmp.path().join("context.zip"), tmp.path().join("contexts"));
    std::fs::write(&zip_path, &zip).expect("write the zip");
    let context = |args: &[&str]| {
        let out = Command::new("docker").env("DOCKER_CONFIG", &contexts).args(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let written = admin.join("context.zip");
    for (name, zip) in [("wharf-bundle", written.as_path()), ("wharf-api", zip_path.as_path())] {
        context(&["context", "import", name, zip.to_str().expect("path")]);
        assert!(context(&["--context", name, "node", "ls"]).contains("Leader"), "node ls in context {name}");
    }

    ok(&admin, &["service", "rm", "web", "everywhere", "nowhere", "talker"]);
    wait_for(Duration::from_secs(60), "every task's container removed from both engines", || {
        (e1.containers(true).is_empty() && e2.containers(true).is_empty()).then_some(())
    });
    // A removed node is gone from the list (and its certificate is refused from now on).
    ok(&admin, &["node", "rm", worker_id]);
    let listed = ok(&admin, &["node", "ls", "--format", "{{.ID}}"]);
    assert!(!listed.lines().any(|id| id.trim_end_matches(" *").trim() == worker_id), "node ls: {listed}");
    drop(worker);
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// The environment of each running container of `service` on `engines`.
fn running_env(engines: &[&Dockerd], service: &str) -> Vec<String> {
    let mut envs = Vec::new();
    for engine in engines {
        let filter = format!("label=wharf.service.name={service}");
        let ids = engine.docker(&["ps", "-q", "--filter", &filter]).output().expect("docker ps");
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let env = engine.docker(&["inspect", "--format", "{{.Config.Env}}", id]).output().expect("inspect");
            envs.push(String::from_utf8_lossy(&env.stdout).trim().to_owned());
        }
    }
    envs
}

/// `docker service logs` of a two-task service that writes to stdout and stderr, then ticks:
/// all lines with the task and node they come from, `--tail`, `--timestamps`, `--since`, the
/// logs of one task, and `--follow` receiving new lines from both tasks and the lines of a
/// task that starts while it follows.
fn service_logs(admin: &Path, image: &str) {
    let script = "echo line-one; echo oops >&2; echo line-two; while true; do sleep 1; echo tick; done";
    ok(admin, &["service", "create", "--name", "talker", "--replicas", "2", image, "busybox", "sh", "-c", script]);
    let all = wait_for(Duration::from_secs(30), "both tasks' lines in docker service logs", || {
        let out = docker(admin, &["service", "logs", "talker"]).output().expect("docker service logs");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "docker service logs: {stderr}");
        let done = stdout.matches("| line-two").count() == 2 && stderr.matches("| oops").count() == 2;
        done.then(|| stdout.into_owned())
    });
    for slot in ["talker.1.", "talker.2."] {
        let line = all.lines().find(|l| l.starts_with(slot) && l.ends_with("| line-one"));
        assert!(line.is_some_and(|l| l.contains('@')), "a line of {slot} names its task and node: {all}");
    }
    let tail = ok(admin, &["service", "logs", "--tail", "1", "talker"]);
    assert_eq!(tail.lines().count(), 2, "one line per task: {tail}");
    assert!(!tail.contains("line-one"), "only the last line of each task: {tail}");
    let stamped = ok(admin, &["service", "logs", "--timestamps", "--tail", "1", "talker"]);
    assert!(stamped.lines().all(|l| l.starts_with("20") && l.contains("Z talker.")), "timestamps: {stamped}");
    let none = ok(admin, &["service", "logs", "--since", "2099-01-01T00:00:00Z", "talker"]);
    assert!(none.trim().is_empty(), "nothing since a time to come: {none}");
    let ps = ok(admin, &["service", "ps", "talker", "-q", "--no-trunc", "--filter", "desired-state=running"]);
    let task = ps.lines().next().expect("a task of talker");
    let one = ok(admin, &["service", "logs", task]);
    assert_eq!(one.matches("| line-one").count(), 1, "one task's lines: {one}");
    assert!(one.lines().all(|l| l.contains(&task[..12])), "lines of that task only: {one}");

    // Followed, from now on: new lines of both tasks arrive while the CLI waits.
    let mut follow = docker(admin, &["service", "logs", "-f", "--tail", "0", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker service logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if seen_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut ticked = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ticked.len() < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = seen.recv_timeout(left).expect("new lines of both tasks while following");
        assert!(line.ends_with("| tick"), "only new lines when following from now: {line}");
        ticked.insert(line.split('.').nth(1).unwrap_or_default().to_owned());
    }
    // A task that starts while the service is followed is followed too, from its first line.
    ok(admin, &["service", "scale", "talker=3"]);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now()) + Duration::from_secs(30);
        let line = seen.recv_timeout(left).expect("the lines of the task that started while following");
        if line.starts_with("talker.3.") && line.ends_with("| line-one") {
            break;
        }
    }
    assert!(follow.try_wait().expect("try_wait").is_none(), "following goes on until stopped");
    let _ = follow.kill();
    let _ = follow.wait();
}

/// An image of another registry that needs a login (a second Wharf, plain HTTP on loopback,
/// which engines take without TLS): without `--with-registry-auth` its tasks are rejected
/// with the pull's error; with it they run on both engines, and the credentials are in no
/// answer and nowhere in clear in the manager's data directory.
fn images_of_another_registry(w: &Wharf, admin: &Path, tmp: &Path, engines: [&Dockerd; 2]) {
    let other = Wharf::start();
    let image = format!("{}/admin/private:1", other.host());
    let dir = tmp.join("other-registry");
    std::fs::create_dir_all(&dir).expect("dir");
    push_image(&other.host(), &dir, &image);

    ok(admin, &["service", "create", "-d", "--name", "denied", &image, "busybox", "sleep", "600"]);
    wait_for(Duration::from_secs(60), "the task without credentials rejected with the pull's error", || {
        let out = ok(admin, &["service", "ps", "denied", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]);
        (out.contains("Rejected") && out.contains("No such image")).then_some(())
    });
    ok(admin, &["service", "rm", "denied"]);

    // `docker login` as a user runs it, into the bundle's client configuration.
    docker_login(&admin.join(".docker"), &other.host());
    let create = ["service", "create", "--with-registry-auth", "--name", "private", "--replicas", "2"];
    ok(admin, &[&create[..], &[image.as_str(), "busybox", "sleep", "600"]].concat());
    let running = engines.iter().map(|e| wharf_containers(e, "private.")).sum::<usize>();
    assert_eq!(running, 2, "both tasks run with the credentials sent along");
    for args in [&["service", "inspect", "private"][..], &["service", "ps", "private", "--no-trunc"][..]] {
        assert!(!ok(admin, args).contains(ADMIN_PASSWORD), "docker {args:?} shows the credentials");
    }
    assert!(!directory_holds(&w.data_dir, ADMIN_PASSWORD.as_bytes()), "the credentials in clear on disk");
    ok(admin, &["service", "rm", "private"]);
}

/// Whether a file under `dir` contains `needle`.
fn directory_holds(dir: &Path, needle: &[u8]) -> bool {
    !files_holding(dir, needle).is_empty()
}

/// The files under `dir` whose bytes hold `needle`.
pub(crate) fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

/// A secret and a config reach the container of a task that uses them, as files with the
/// owner and mode asked, from a tmpfs of its node only; the secret's value is in no file of
/// either node's data directory, in no log line and in no answer; a secret in use cannot be
/// removed, and its files go with the task.
#[test]
fn a_secret_reaches_only_the_tasks_that_use_it_and_is_never_stored_logged_or_shown_in_clear() {
    require_docker();
    let (e1, e2) = (Dockerd::start(), Dockerd::start());
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("manager.log");
    let extra = vec!["--docker-host".to_owned(), e1.host.clone(), "--heartbeat-ms".into(), "1000".into()];
    let options = Options { tls: true, extra, log: Some((log.clone(), "debug".into())), ..Options::default() };
    let w = Wharf::start_with(options);
    let worker = join_worker(&w, tmp.path(), &e2);
    let admin = bundle(&w, tmp.path(), "admin", ADMIN_PASSWORD);
    wait_for(Duration::from_secs(60), "both nodes ready with their engines", || {
        let out = ok(&admin, &["node", "ls", "--format", "{{.Status}} {{.EngineVersion}}"]);
        (out.lines().filter(|l| l.starts_with("Ready ") && l.len() > "Ready ".len()).count() == 2).then_some(())
    });
    let image = format!("{}/admin/reader:1", w.host());
    push_image(&w.host(), tmp.path(), &image);

    let value = format!("s3cret-{}-{}", std::process::id(), w.addr.port());
    std::fs::write(tmp.path().join("pw.txt"), &value).expect("write");
    std::fs::write(tmp.path().join("app.conf"), "color=blue\n").expect("write");
    ok(&admin, &["secret", "create", "--label", "env=test", "pw", tmp.path().join("pw.txt").to_str().expect("path")]);
    ok(&admin, &["config", "create", "app.conf", tmp.path().join("app.conf").to_str().expect("path")]);
    let again = refused(&admin, &["secret", "create", "pw", tmp.path().join("pw.txt").to_str().expect("path")]);
    assert!(again.contains("already exists"), "a second secret named pw: {again}");
    assert!(ok(&admin, &["secret", "ls", "--format", "{{.Name}}"]).lines().any(|l| l == "pw"));
    let shown = ok(&admin, &["config", "inspect", "app.conf", "--format", "{{printf \"%s\" .Spec.Data}}"]);
    assert_eq!(shown, "color=blue\n\n", "a config's data is shown");

    // On the manager's node only: the worker runs no task using it.
    let script = "busybox md5sum /run/secrets/db_pw; busybox ls -ln /run/secrets/db_pw; busybox cat /etc/app.conf; \
                  busybox sleep 600";
    let uses = [
        "--constraint",
        "node.role==manager",
        "--secret",
        "source=pw,target=db_pw,uid=1000,gid=1000,mode=0400",
        "--config",
        "source=app.conf,target=/etc/app.conf",
    ];
    shell_service(&admin, "reader", &uses, &image, script);
    let digest = md5_of(&tmp.path().join("pw.txt"));
    let logs = logs_saying(&admin, "reader", "color=blue");
    assert!(logs.contains(&format!("{digest}  /run/secrets/db_pw")), "the secret's value arrived: {logs}");
    let listed = logs.lines().find(|l| l.starts_with('-') && l.ends_with("/run/secrets/db_pw")).expect("ls -ln");
    let fields: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!((fields[0], fields[2], fields[3]), ("-r--------", "1000", "1000"), "owned and permitted as asked");

    // Its files: on the manager's node's tmpfs, none on the worker's.
    let shm = Path::new("/dev/shm/wharf-task-files");
    let holding = files_holding(shm, value.as_bytes());
    assert_eq!(holding.len(), 1, "one file holds the value: {holding:?}");
    let node_of = |path: &Path| path.parent()?.parent()?.file_name().map(|n| n.to_string_lossy().into_owned());
    assert_eq!(node_of(&holding[0]).as_deref(), Some("1"), "on node 1 (the manager): {holding:?}");
    // Nowhere in clear: data directories (the state, the Raft log, snapshots), log lines,
    // answers.
    for dir in [w.data_dir.clone(), tmp.path().join("worker")] {
        assert!(!directory_holds(&dir, value.as_bytes()), "{} holds the value", dir.display());
    }
    assert!(std::fs::metadata(&log).is_ok_and(|m| m.len() > 0), "the manager logged");
    assert!(!directory_holds(&log, value.as_bytes()), "the manager logged the value");
    let task = ok(&admin, &["service", "ps", "reader", "-q", "--no-trunc"]);
    for answer in [
        ok(&admin, &["secret", "inspect", "pw"]),
        ok(&admin, &["secret", "ls"]),
        ok(&admin, &["service", "inspect", "reader"]),
        ok(&admin, &["inspect", "--type", "task", task.trim()]),
    ] {
        assert!(!answer.contains(&value), "an answer shows the value: {answer}");
    }
    assert!(ok(&admin, &["secret", "inspect", "pw"]).contains("\"env\": \"test\""), "its labels are shown");

    // Another user neither sees the secret nor removes it nor gives it to a service of theirs,
    // by name through the CLI or by its id straight to the API.
    let config = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    wharf(&config, &["user", "create", "dave"], "dave-password-1\n");
    let dave_dir = tmp.path().join("dave");
    std::fs::create_dir_all(&dave_dir).expect("mkdir");
    let dave = bundle(&w, &dave_dir, "dave", "dave-password-1");
    assert!(!ok(&dave, &["secret", "ls"]).contains("pw"), "another user lists the secret");
    assert!(refused(&dave, &["secret", "inspect", "pw"]).contains("not found"));
    assert!(refused(&dave, &["secret", "rm", "pw"]).contains("not found"));
    let stolen = refused(&dave, &["service", "create", "--secret", "pw", &image, "busybox", "true"]);
    assert!(stolen.contains("pw"), "a service of another user using the secret: {stolen}");
    let id = ok(&admin, &["secret", "inspect", "pw", "--format", "{{.ID}}"]);
    let spec = format!(
        r#"{{"Name":"steal","TaskTemplate":{{"ContainerSpec":{{"Image":"{image}","Secrets":[{{"SecretID":"{}","SecretName":"pw","File":{{"Name":"pw"}}}}]}}}}}}"#,
        id.trim()
    );
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "--cacert"])
        .arg(dave.join("ca.pem"))
        .arg("--cert")
        .arg(dave.join("cert.pem"))
        .arg("--key")
        .arg(dave.join("key.pem"))
        .args(["-H", "content-type: application/json", "-d", &spec])
        .arg(format!("{}/v1.41/services/create", w.base()))
        .output()
        .expect("curl");
    let (status, said) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(status, "400", "a service of another user naming the secret's id: {said}");
    assert!(said.contains("not found"), "{said}");
    assert!(!ok(&admin, &["service", "ls", "--format", "{{.Name}}"]).contains("steal"));

    // In use: not removed. Once its service is gone, its files go and it can be removed.
    let in_use = refused(&admin, &["secret", "rm", "pw"]);
    assert!(in_use.contains("is in use by the following service: reader"), "secret rm while in use: {in_use}");
    ok(&admin, &["service", "rm", "reader"]);
    wait_for(Duration::from_secs(60), "the task's files removed with it", || {
        (files_holding(shm, value.as_bytes()).is_empty() && e1.containers(true).is_empty()).then_some(())
    });
    ok(&admin, &["secret", "rm", "pw"]);
    ok(&admin, &["config", "rm", "app.conf"]);
    assert_eq!(ok(&admin, &["secret", "ls", "-q"]).trim(), "");
    let unknown = refused(&admin, &["service", "create", "--secret", "pw", &image, "busybox", "true"]);
    assert!(unknown.contains("pw"), "a service using an unknown secret: {unknown}");
    drop(worker);
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// One `wharf up` node whose tasks run on an engine of its own, ready; the administrator's
/// bundle, in a temporary directory.
pub(crate) fn one_node() -> (Dockerd, tempfile::TempDir, Wharf, PathBuf) {
    let engine = Dockerd::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = vec!["--docker-host".to_owned(), engine.host.clone(), "--heartbeat-ms".into(), "1000".into()];
    let w = Wharf::start_with(Options { tls: true, extra, ..Options::default() });
    let admin = bundle(&w, tmp.path(), "admin", ADMIN_PASSWORD);
    wait_for(Duration::from_secs(60), "the node ready with its engine", || {
        let out = ok(&admin, &["node", "ls", "--format", "{{.Status}} {{.EngineVersion}}"]);
        out.lines().any(|l| l.starts_with("Ready ") && l.len() > "Ready ".len()).then_some(())
    });
    (engine, tmp, w, admin)
}

#[test]
fn a_task_runs_once_its_health_check_passes_and_fails_when_it_does_not() {
    require_docker();
    require("bash");
    let (engine, tmp, w, admin) = one_node();
    let image = format!("{}/admin/health:1", w.host());
    push_image(&w.host(), tmp.path(), &image);
    let status = |service: &str| {
        let filter = format!("label=wharf.service.name={service}");
        let out = engine.docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Status}}"]).output();
        String::from_utf8_lossy(&out.expect("docker ps").stdout).into_owned()
    };

    // Attached: the CLI waits until the task runs, which it does once its check passed.
    let fine = ["--name", "fine", "--health-cmd", "true", "--health-interval", "1s"];
    ok(&admin, &[&["service", "create"][..], &fine, &[image.as_str(), "busybox", "sleep", "600"]].concat());
    assert!(status("fine").contains("(healthy)"), "running, and healthy: {}", status("fine"));
    let state = ok(&admin, &["service", "ps", "fine", "--format", "{{.CurrentState}}"]);
    assert!(state.starts_with("Running"), "service ps: {state}");

    // A check that fails: the task fails with the reason, its container is stopped.
    let sick = ["-d", "--name", "sick", "--health-cmd", "exit 1", "--health-interval", "1s", "--health-retries", "1"];
    ok(&admin, &[&["service", "create"][..], &sick, &[image.as_str(), "busybox", "sleep", "600"]].concat());
    wait_for(Duration::from_secs(60), "the unhealthy task failed, its container stopped", || {
        let out = ok(&admin, &["service", "ps", "sick", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]);
        let failed = out.lines().any(|l| l.starts_with("Failed") && l.contains("unhealthy container"));
        (failed && status("sick").contains("Exited")).then_some(())
    });
    // What Wharf does not carry out yet is refused, not ignored.
    let sysctl = ["service", "create", "--name", "m", "--sysctl", "net.core.somaxconn=1024", image.as_str(), "busybox"];
    let said = refused(&admin, &sysctl);
    assert!(said.contains("(--sysctl) is not supported by Wharf yet"), "service create --sysctl: {said}");
    ok(&admin, &["service", "rm", "fine", "sick"]);
    wait_for(Duration::from_secs(60), "the containers removed", || engine.containers(true).is_empty().then_some(()));
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// The MD5 digest of a file, in hex, as `md5sum` prints it.
fn md5_of(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_owned()
}

/// `docker service create --name NAME FLAGS IMAGE busybox sh -c SCRIPT`, attached.
fn shell_service(admin: &Path, name: &str, flags: &[&str], image: &str, script: &str) {
    ok(admin, &[&["service", "create", "--name", name][..], flags, &[image, "busybox", "sh", "-c", script]].concat());
}

/// What `docker service logs --raw SERVICE` says, once it says `needle` (within a minute).
fn logs_saying(admin: &Path, service: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = docker(admin, &["service", "logs", "--raw", service]).output().expect("logs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if text.contains(needle) {
            return text;
        }
        let tasks = ok(admin, &["service", "ps", service, "--no-trunc"]);
        assert!(std::time::Instant::now() < deadline, "{service} never said {needle}: {text}\n{tasks}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The running containers of `service` on `engine`: (id, address on the engine's bridge).
fn serving(engine: &Dockerd, service: &str) -> Vec<(String, String)> {
    let filter = format!("label=wharf.service.name={service}");
    let format = "{{.ID}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}";
    let ids = engine.docker(&["ps", "-q", "--filter", &filter]).output().expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect", "--format", format];
    args.extend(ids.iter().map(String::as_str));
    let out = engine.docker(&args).output().expect("docker inspect");
    let mut found: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(id, ip)| (id.to_owned(), ip.to_owned())))
        .filter(|(_, ip)| !ip.is_empty())
        .collect();
    found.sort();
    found
}

/// Whether an HTTP server answers at `addr` (within 5 s: this machine is busy), or why not.
fn answer_at(addr: &str) -> Result<(), String> {
    let addr = addr.parse::<std::net::SocketAddr>().map_err(|e| e.to_string())?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("{addr}: connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("{addr}: write: {e}"))?;
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    if answer.starts_with("HTTP/1.") { Ok(()) } else { Err(format!("{addr}: answered {answer:?} ({read:?})")) }
}

fn answers_at(addr: &str) -> bool {
    answer_at(addr).is_ok()
}

/// `UpdateStatus.State|UpdateStatus.Message` of `service`, once its state starts with `state`.
fn update_reaches(admin: &Path, service: &str, state: &str) -> String {
    let format = "{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}";
    wait_for(Duration::from_secs(120), &format!("the update of {service} {state}"), || {
        let out = ok(admin, &["service", "inspect", service, "--format", format]);
        out.starts_with(&format!("{state}|")).then(|| out.trim().to_owned())
    })
}

/// The health check of a new image fails: the update (start-first) rolls back by itself, and
/// the old tasks answer every request sent to them meanwhile; with `pause` as the failure
/// action it stops after its first slot, and the next update (to a sound image) completes.
#[test]
fn an_update_whose_health_check_fails_rolls_back_by_itself_while_the_old_tasks_serve() {
    require("docker");
    let (engine, tmp, w, admin) = one_node();
    // Version 1 serves; version 2 is the same files with a health check that always fails.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sick_check = serde_json::json!({"Test": ["CMD", "busybox", "false"], "Interval": 1_000_000_000u64,
        "Timeout": 1_000_000_000u64, "Retries": 1});
    for (tag, config) in [
        ("1", serde_json::json!({"Env": ["PATH=/bin"]})),
        ("2", serde_json::json!({"Env": ["PATH=/bin"], "Healthcheck": sick_check})),
    ] {
        let dir = tmp.path().join(format!("image{tag}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        runtime.block_on(crate::clients::push_busybox_image(&w, "admin/web", tag, &dir, "amd64", config));
    }
    let (v1, v2) = (format!("{}/admin/web:1", w.host()), format!("{}/admin/web:2", w.host()));
    let create = [
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "2",
        "--update-order",
        "start-first",
        "--update-failure-action",
        "rollback",
        "--rollback-monitor",
        "1s",
        &v1,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
    ];
    ok(&admin, &create);
    let old = wait_for(Duration::from_secs(60), "two tasks of web serving", || {
        let found = serving(&engine, "web");
        (found.len() == 2 && found.iter().all(|(_, ip)| answers_at(&format!("{ip}:8080")))).then_some(found)
    });

    // Every 50 ms, a request to each old task, for as long as the update lasts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addrs: Vec<String> = old.iter().map(|(_, ip)| format!("{ip}:8080")).collect();
    let client = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut served, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for addr in &addrs {
                    match answer_at(addr) {
                        Ok(()) => served += 1,
                        Err(e) => failed.push(e),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (served, failed)
        })
    };
    ok(&admin, &["service", "update", "-d", "--image", &v2, "web"]);
    let status = update_reaches(&admin, "web", "rollback_completed");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, failed) = client.join().expect("the client thread");
    if !failed.is_empty() {
        let ps = ok(
            &admin,
            &[
                "service",
                "ps",
                "web",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Name}} {{.Image}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
            ],
        );
        let ps = format!("{ps}\n{}", ok(&admin, &["service", "inspect", "web"]));
        let all = engine.docker(&["ps", "-a", "--no-trunc"]).output().expect("docker ps");
        panic!(
            "requests to the old tasks failed during the update: {failed:?} ({served} served)\n{ps}\n{}",
            String::from_utf8_lossy(&all.stdout)
        );
    }
    assert!(served >= 20, "the old tasks were asked throughout the update ({served} answers)");
    // (Swarm's message once it is done, as the failing task's is while it runs.)
    assert_eq!(status, "rollback_completed|rollback completed");
    // The old containers never stopped; the new task failed its check; the spec is version 1.
    // (The failed one stops within its grace period: httpd ignores SIGTERM as PID 1.)
    wait_for(Duration::from_secs(30), "the same two containers serving, and only they", || {
        (serving(&engine, "web") == old).then_some(())
    });
    let ps = ok(&admin, &["service", "ps", "web", "--no-trunc", "--format", "{{.Image}} {{.CurrentState}} {{.Error}}"]);
    assert!(ps.lines().any(|l| l.contains("/admin/web:2") && l.contains("unhealthy container")), "service ps: {ps}");
    let image = ok(&admin, &["service", "inspect", "web", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
    assert!(image.contains("/admin/web:1"), "rolled back to version 1: {image}");

    // Failure action pause, stop-first: the first slot's old task stops and its new one fails;
    // the update pauses there, the other slot's old task still serving.
    let pause = ["service", "update", "-d", "--update-failure-action", "pause", "--update-order", "stop-first"];
    ok(&admin, &[&pause[..], &["--image", &v2, "web"]].concat());
    let status = update_reaches(&admin, "web", "paused");
    assert!(status.contains("update paused due to failure or early termination of task"), "{status}");
    // (The failed slot's new task restarts as its restart policy says, and fails again.)
    let left: Vec<_> = serving(&engine, "web").into_iter().filter(|c| old.contains(c)).collect();
    assert_eq!(left.len(), 1, "one old task serves on: {left:?} of {old:?}");
    // The next update, to a sound image, rolls through and completes.
    ok(&admin, &["service", "update", "-d", "--image", &v1, "--env-add", "FIXED=1", "web"]);
    update_reaches(&admin, "web", "completed");
    wait_for(Duration::from_secs(30), "two new tasks serving, and only they", || {
        let now = serving(&engine, "web");
        (now.len() == 2 && now.iter().all(|c| !old.contains(c))).then_some(())
    });
    ok(&admin, &["service", "rm", "web"]);
    wait_for(Duration::from_secs(60), "the containers removed", || engine.containers(true).is_empty().then_some(()));
}

/// A named volume (created on the task's node, kept when the task is replaced), a tmpfs and a
/// read-only bind mount, with the usual `--mount` syntax.
#[test]
fn a_task_keeps_its_named_volume_across_replacements_and_gets_its_tmpfs_and_read_only_bind() {
    require_docker();
    let (engine, tmp, w, admin) = one_node();
    let image = format!("{}/admin/mounts:1", w.host());
    push_image(&w.host(), tmp.path(), &image);
    let site = tmp.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), "from the node\n").expect("write");
    let bind = format!("type=bind,source={},target=/site,readonly", site.display());
    let script = "echo run >> /data/runs; echo runs=$(busybox wc -l < /data/runs); busybox cat /site/index.html; \
                  busybox grep -q ' /scratch tmpfs ' /proc/mounts && echo scratch=tmpfs; \
                  (echo x > /site/written) 2>/dev/null || echo site=read-only; busybox sleep 600";
    let mounts = [
        "--mount",
        "type=volume,source=keeper-data,target=/data",
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1048576",
        "--mount",
        &bind,
    ];
    shell_service(&admin, "keeper", &mounts, &image, script);
    let said = |runs: &str| logs_saying(&admin, "keeper", runs);
    let first = said("runs=1");
    for line in ["from the node", "scratch=tmpfs", "site=read-only"] {
        assert!(first.contains(line), "{line:?} in {first}");
    }
    assert!(!site.join("written").exists(), "the bind mount is read-only");
    let volumes = engine.docker(&["volume", "ls", "--format", "{{.Name}}"]).output().expect("volume ls");
    assert!(String::from_utf8_lossy(&volumes.stdout).lines().any(|v| v == "keeper-data"), "made on the node");
    // A new task (forced) finds what the first one wrote.
    ok(&admin, &["service", "update", "-d", "--force", "keeper"]);
    said("runs=2");
    ok(&admin, &["service", "rm", "keeper"]);
    wait_for(Duration::from_secs(60), "the containers removed", || engine.containers(true).is_empty().then_some(()));
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// A cluster network: the tasks of two services on it reach each other by service name on a
/// node, through a bridge the node's agent makes on its engine and removes once unused; a
/// network in use cannot be removed, and what a bridge per node cannot honour is refused.
#[test]
fn services_on_a_cluster_network_reach_each_other_by_name() {
    require_docker();
    let (engine, tmp, w, admin) = one_node();
    let image = format!("{}/admin/net:1", w.host());
    push_image(&w.host(), tmp.path(), &image);
    let bridge = refused(&admin, &["network", "create", "backend"]);
    assert!(bridge.contains("-d overlay"), "a bridge network: {bridge}");
    let subnet = refused(&admin, &["network", "create", "-d", "overlay", "--subnet", "10.9.0.0/24", "backend"]);
    assert!(subnet.contains("not supported by Wharf yet"), "a subnet: {subnet}");
    ok(&admin, &["network", "create", "-d", "overlay", "backend"]);
    let listed = ok(&admin, &["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"]);
    assert!(listed.lines().any(|l| l == "backend overlay swarm"), "network ls: {listed}");

    let db = "busybox mkdir -p /www && echo hello-from-db > /www/index.html && busybox httpd -f -p 80 -h /www";
    shell_service(&admin, "db", &["--network", "backend"], &image, db);
    let client = "until busybox wget -q -O- http://db/; do busybox sleep 1; done; busybox sleep 600";
    shell_service(&admin, "client", &["--network", "backend"], &image, client);
    logs_saying(&admin, "client", "hello-from-db");
    let on_engine = engine.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).output().expect("ls");
    assert!(String::from_utf8_lossy(&on_engine.stdout).lines().any(|l| l == "backend bridge"), "a bridge on the node");

    let in_use = refused(&admin, &["network", "rm", "backend"]);
    assert!(in_use.contains("is in use by the following service"), "network rm while in use: {in_use}");
    ok(&admin, &["service", "rm", "db", "client"]);
    wait_for(Duration::from_secs(60), "the containers and the node's bridge removed", || {
        let out = engine.docker(&["network", "ls", "--format", "{{.Name}}"]).output().expect("ls");
        let gone = !String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "backend");
        (gone && engine.containers(true).is_empty()).then_some(())
    });
    ok(&admin, &["network", "rm", "backend"]);
    assert!(!ok(&admin, &["network", "ls", "-q"]).contains(|c: char| c.is_alphanumeric()), "no network left");
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// A compose file with a web service, a cache it reaches by name, a secret, a config and a
/// volume: `docker stack deploy` makes them all (labelled with the stack), `stack ls`,
/// `services` and `ps` show them, a second deploy of a changed file replaces only what changed,
/// and `stack rm` removes every part.
#[test]
fn a_stack_deploys_updates_only_what_changed_and_is_removed_with_the_docker_cli() {
    require_docker();
    let (engine, tmp, w, admin) = one_node();
    let image = format!("{}/admin/stack:1", w.host());
    push_image(&w.host(), tmp.path(), &image);
    let dir = tmp.path().join("stack");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("pw.txt"), "stack-s3cret").expect("write");
    std::fs::write(dir.join("app.conf"), "greeting=hello\n").expect("write");
    // (`$$`: compose's escape of a `$` it should not interpolate.)
    let compose = |color: &str| {
        let web = "until got=$$(busybox wget -q -O- http://cache/); do busybox sleep 1; done; \
                   echo got=$$got color=$$COLOR; busybox md5sum /run/secrets/pw; \
                   busybox cat /etc/app.conf; busybox sleep 600";
        let cache = "echo cache-up > /data/index.html && busybox httpd -f -p 80 -h /data";
        format!(
            r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["busybox", "sh", "-c", "{web}"]
    environment:
      COLOR: {color}
    secrets: [pw]
    configs:
      - source: conf
        target: /etc/app.conf
  cache:
    image: {image}
    command: ["busybox", "sh", "-c", "{cache}"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
secrets:
  pw:
    file: {pw}
configs:
  conf:
    file: {conf}
"#,
            pw = dir.join("pw.txt").display(),
            conf = dir.join("app.conf").display(),
        )
    };
    let file = dir.join("compose.yml");
    std::fs::write(&file, compose("blue")).expect("write");
    let deploy = ["stack", "deploy", "--detach", "-c", file.to_str().expect("path"), "app"];
    ok(&admin, &deploy);
    // The config's line is the last the task prints before it sleeps: wait for it, so that
    // the secret's digest printed just before it is in the log too.
    let said = logs_saying(&admin, "app_web", "greeting=hello");
    assert!(said.contains("got=cache-up color=blue"), "the web task reached the cache: {said}");
    let digest = md5_of(&dir.join("pw.txt"));
    assert!(said.contains(&digest) && said.contains("greeting=hello"), "the secret and the config: {said}");
    let stacks = ok(&admin, &["stack", "ls", "--format", "{{.Name}} {{.Services}}"]);
    assert!(stacks.lines().any(|l| l == "app 2"), "stack ls: {stacks}");
    let services = ok(&admin, &["stack", "services", "app", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = services.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["app_cache", "app_web"]);
    let ps = ok(&admin, &["stack", "ps", "app", "--format", "{{.Name}} {{.CurrentState}}"]);
    assert!(ps.lines().filter(|l| l.contains(" Running")).count() == 2, "stack ps: {ps}");
    let labelled = |kind: &str| ok(&admin, &[kind, "ls", "--filter", "label=com.docker.stack.namespace=app", "-q"]);
    for kind in ["network", "secret", "config"] {
        assert_eq!(labelled(kind).lines().count(), 1, "the stack's {kind}");
    }
    let volumes = engine.docker(&["volume", "ls", "--format", "{{.Name}}"]).output().expect("volume ls");
    assert!(String::from_utf8_lossy(&volumes.stdout).lines().any(|v| v == "app_data"), "the stack's volume");

    // A changed file: the web service's tasks are replaced, the cache's are not.
    let running = |service: &str| ok(&admin, &["service", "ps", service, "-q", "--filter", "desired-state=running"]);
    let (web_before, cache_before) = (running("app_web"), running("app_cache"));
    std::fs::write(&file, compose("green")).expect("write");
    ok(&admin, &deploy);
    logs_saying(&admin, "app_web", "got=cache-up color=green");
    wait_for(Duration::from_secs(60), "the old web task replaced", || {
        let now = running("app_web");
        (now.lines().count() == 1 && now != web_before).then_some(())
    });
    assert_eq!(running("app_cache"), cache_before, "the unchanged service keeps its task");

    ok(&admin, &["stack", "rm", "app"]);
    wait_for(Duration::from_secs(60), "every part of the stack removed", || {
        let left = ["service", "network", "secret", "config"].iter().map(|kind| labelled(kind)).collect::<String>();
        (left.trim().is_empty() && engine.containers(true).is_empty()).then_some(())
    });
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// `wharf ARGS` with the client configuration `config`, `input` on its standard input; its
/// standard output, or a panic with what it said.
pub(crate) fn wharf(config: &Path, args: &[&str], input: &str) -> String {
    let (succeeded, stdout, stderr) = try_wharf(config, args, input);
    assert!(succeeded, "wharf {args:?} failed: {stdout}{stderr}");
    stdout
}

/// `wharf ARGS` as the user of `config`, `input` on standard input: (success, stdout, stderr).
pub(crate) fn try_wharf(config: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(WHARF)
        .args(args)
        .env("WHARF_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("input");
    let out = child.wait_with_output().expect("wait");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_bundle_ends_with_its_revocation_a_new_password_a_disable_and_a_delete() {
    require_docker();
    require("bash");
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = Wharf::start_with(Options { tls: true, ..Options::default() });
    let admin = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    wharf(&admin, &["user", "create", "carol"], "carol-password-1\n");
    // Each bundle in a folder of its own; the refusal the CLI prints names what happened.
    let mut n = 0;
    let mut fresh = |password: &str| {
        n += 1;
        let dir = tmp.path().join(format!("carol-{n}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let bundle = bundle(&w, &dir, "carol", password);
        // A user without grants sees no node (the manager is in /System), and no service yet.
        assert_eq!(ok(&bundle, &["service", "ls", "-q"]), "", "a new bundle works");
        (bundle, dir.join(format!("carol-{}-config.json", w.addr.port())))
    };
    let ended = |bundle: &Path, why: &str| {
        let said = refused(bundle, &["service", "ls"]);
        assert!(said.contains("this client bundle is not valid"), "a bundle after {why}: {said}");
    };

    // Revoked by its user, by the start of its id as `wharf user sessions` lists it.
    let (first, carol) = fresh("carol-password-1");
    let sessions = wharf(&carol, &["user", "sessions"], "");
    let id = sessions
        .lines()
        .find(|l| l.contains("client_bundle"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the bundle among the sessions")
        .trim_end_matches('*')
        .to_owned();
    let (second, _) = fresh("carol-password-1");
    assert!(wharf(&carol, &["user", "revoke", &id], "").contains("client_bundle"));
    ended(&first, "its revocation");
    ok(&second, &["node", "ls"]);

    // A new password ends every bundle of the user.
    wharf(&admin, &["user", "passwd", "carol"], "carol-password-2\n");
    ended(&second, "a new password");

    // Disabled: ended, and enabling the user again does not bring it back.
    let (third, _) = fresh("carol-password-2");
    wharf(&admin, &["user", "disable", "carol"], "");
    ended(&third, "a disable");
    wharf(&admin, &["user", "enable", "carol"], "");
    ended(&third, "a disable and an enable");

    // Deleted.
    let (fourth, _) = fresh("carol-password-2");
    wharf(&admin, &["user", "rm", "carol"], "");
    ended(&fourth, "a delete");
}

/// An API session of the administrator (`POST /auth/login`).
fn admin_session(w: &Wharf, runtime: &tokio::runtime::Runtime) -> String {
    #[derive(serde::Deserialize)]
    struct Login {
        auth_token: String,
    }
    let body = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD});
    let response = runtime.block_on(w.anonymous_client().post(w.url("/auth/login")).json(&body).send()).expect("login");
    runtime.block_on(response.json::<Login>()).expect("login answer").auth_token
}

/// A node process started with `args`, its standard output kept; returns once it says it is up.
fn start_node(args: &[String]) -> (Node, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::BufRead;
    let mut child =
        Command::new(WHARF).args(args).env("WHARF_LOG", "warn").stdout(Stdio::piped()).spawn().expect("spawn a node");
    let stdout = child.stdout.take().expect("stdout");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            kept.lock().expect("lock").push(line);
        }
    });
    let node = Node(child);
    wait_for(Duration::from_secs(60), &format!("wharf {args:?} to be up"), || {
        lines.lock().expect("lock").iter().any(|l| l.contains(" is up")).then_some(())
    });
    (node, lines)
}

/// The running containers of `service` on `engines`, by slot label: one slot never runs twice.
fn running_slots(engines: &[&Dockerd], service: &str) -> Vec<String> {
    let mut slots = Vec::new();
    for engine in engines {
        let filter = format!("label=wharf.service.name={service}");
        let out = engine.docker(&["ps", "--filter", &filter, "--format", "{{.Label \"wharf.task.slot\"}}"]).output();
        slots.extend(String::from_utf8_lossy(&out.expect("docker ps").stdout).lines().map(str::to_owned));
    }
    slots.sort();
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(unique, slots, "a slot of {service} runs twice");
    slots
}

/// `docker node ls` through `bundle`: (id, hostname-less status, manager status) of each node.
fn node_states(bundle: &Path) -> Vec<(String, String, String)> {
    let out = docker(bundle, &["node", "ls", "--format", "{{.ID}}|{{.Status}}|{{.ManagerStatus}}|{{.EngineVersion}}"])
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('|');
            let (id, status, manager, engine) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let status = if status == "Ready" && engine.is_empty() { "Ready (no engine yet)" } else { status };
            Some((id.trim_end_matches(" *").trim().to_owned(), status.to_owned(), manager.to_owned()))
        })
        .collect()
}

#[test]
fn tasks_survive_a_killed_worker_and_a_killed_leader_and_no_slot_runs_twice() {
    require_docker();
    require("bash");
    let engines: Vec<Dockerd> = (0..5).map(|_| Dockerd::start()).collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let password = tmp.path().join("admin-password");
    std::fs::write(&password, format!("{ADMIN_PASSWORD}\n")).expect("password");
    let addrs: Vec<String> = (0..5).map(|_| format!("127.0.0.1:{}", wharf_testkit::free_port())).collect();
    let node_args = |n: usize, first: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = first.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--advertise".into(), addrs[n].clone(), "--data-dir".into()]);
        args.push(tmp.path().join(format!("node{n}")).to_str().expect("path").to_owned());
        args.extend(["--docker-host".into(), engines[n].host.clone(), "--heartbeat-ms".into(), "1000".into()]);
        args
    };
    let mut init = node_args(0, &["init"]);
    init.extend(["--admin-password-file".into(), password.to_str().expect("path").into()]);
    let (first, lines) = start_node(&init);
    let token = |role: &str| {
        let token = wait_for(Duration::from_secs(10), "the join tokens", || {
            let lines = lines.lock().expect("lock");
            lines.iter().find_map(|l| l.trim().strip_prefix(&format!("{role} token:")).map(|t| t.trim().to_owned()))
        });
        let file = tmp.path().join(format!("{role}.token"));
        std::fs::write(&file, token).expect("token file");
        file.to_str().expect("path").to_owned()
    };
    let (manager_token, worker_token) = (token("manager"), token("worker"));
    let mut nodes: Vec<Option<Node>> = vec![Some(first)];
    let join = |n: usize| {
        let token = if n < 3 { &manager_token } else { &worker_token };
        start_node(&node_args(n, &["join", "--token-file", token, &addrs[0]])).0
    };
    for n in 1..5 {
        nodes.push(Some(join(n)));
    }
    let ca = tmp.path().join("node0/pki/ca.crt");
    let bundles: Vec<PathBuf> = (0..3)
        .map(|n| bundle_from(&format!("https://{}", addrs[n]), &ca, tmp.path(), "admin", ADMIN_PASSWORD))
        .collect();
    wait_for(Duration::from_secs(90), "five ready nodes with their engines", || {
        let states = node_states(&bundles[1]);
        (states.len() == 5 && states.iter().all(|(_, s, _)| s == "Ready")).then_some(())
    });

    // The image on every engine first (a global service), so a task placed anywhere can start
    // whichever manager is gone.
    let image = format!("{}/admin/web:1", addrs[0]);
    push_image(&addrs[0], tmp.path(), &image);
    ok(
        &bundles[1],
        &["service", "create", "--name", "everywhere", "--mode", "global", &image, "busybox", "sleep", "600"],
    );
    ok(&bundles[1], &["service", "create", "--name", "web", "--replicas", "3", &image, "busybox", "sleep", "600"]);
    let all: Vec<&Dockerd> = engines.iter().collect();
    assert_eq!(running_slots(&all, "web").len(), 3);

    // A worker's agent killed: once it is down, its tasks run elsewhere.
    let victim = (3..5).find(|n| !running_slots(&[&engines[*n]], "web").is_empty()).unwrap_or(3);
    nodes[victim] = None;
    let others: Vec<&Dockerd> = engines.iter().enumerate().filter(|(n, _)| *n != victim).map(|(_, e)| e).collect();
    wait_for(Duration::from_secs(60), "the killed worker's tasks running elsewhere", || {
        (running_slots(&others, "web").len() == 3).then_some(())
    });
    // Started again, it removes what it ran for the slots now elsewhere.
    nodes[victim] = Some(join(victim));
    wait_for(Duration::from_secs(60), "the stale containers removed", || {
        let stale = engines[victim].containers(true).iter().filter(|c| c.starts_with("web.")).count();
        (stale == 0).then_some(())
    });
    assert_eq!(running_slots(&all, "web").len(), 3);

    // The leader killed: the tasks keep running, a new leader takes over the control loops.
    let states = node_states(&bundles[1]);
    let leader_id = states.iter().find(|(_, _, m)| m == "Leader").map(|(id, _, _)| id.clone()).expect("a leader");
    let leader: usize = leader_id.parse::<usize>().expect("a node id") - 1;
    assert!(leader < 3, "the leader is a manager");
    nodes[leader] = None;
    let survivor = bundles[if leader == 1 { 2 } else { 1 }].clone();
    let live: Vec<&Dockerd> = engines.iter().enumerate().filter(|(n, _)| *n != leader).map(|(_, e)| e).collect();
    wait_for(Duration::from_secs(60), "a new leader", || {
        let states = node_states(&survivor);
        states.iter().any(|(id, _, m)| m == "Leader" && *id != leader_id).then_some(())
    });
    ok(&survivor, &["service", "scale", "web=4"]);
    wait_for(Duration::from_secs(60), "four tasks of web running on the live nodes", || {
        (running_slots(&live, "web").len() == 4).then_some(())
    });
    ok(&survivor, &["service", "rm", "web", "everywhere"]);
    wait_for(Duration::from_secs(60), "the tasks removed", || {
        live.iter().all(|e| e.containers(false).is_empty()).then_some(())
    });
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(&addrs[0]));
}
