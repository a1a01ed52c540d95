//! The containers door through the real `docker` CLI with client bundles: `docker run -d`,
//! `ps`, `inspect`, `logs`, `exec`, `stop`, `wait`, `rm` on a node with its own Docker
//! Engine, and each host-reaching setting refused to Restricted Control (`--privileged`, host
//! bind mounts, host namespaces, added capabilities, exec into another user's container) and
//! honoured, on the engine, for Full Control.

use std::path::Path;
use std::time::Duration;

use crate::harness::wait_for;
use crate::services::{bundle, ok, refused, wharf};

/// What the node's own engine says of the container of task `id` (a Go template).
fn on_engine(engine: &wharf_testkit::Dockerd, id: &str, format: &str) -> Option<String> {
    let filter = format!("label=wharf.task.id={id}");
    let out = engine.docker(&["ps", "-aq", "--filter", &filter]).output().ok()?;
    let container = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if container.is_empty() {
        return None;
    }
    let out = engine.docker(&["inspect", "--format", format, &container]).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `docker ARGS` with `input` on its standard input (closed after it): what it did.
fn with_input(bundle: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = crate::services::docker(bundle, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker");
    let mut stdin = child.stdin.take().expect("its stdin");
    std::io::Write::write_all(&mut stdin, input).expect("write its input");
    drop(stdin);
    child.wait_with_output().expect("docker")
}

fn names(bundle: &Path, all: bool) -> Vec<String> {
    let mut args = vec!["ps", "--format", "{{.Names}}"];
    if all {
        args.push("-a");
    }
    ok(bundle, &args).lines().map(str::to_owned).collect()
}

#[test]
fn containers_run_through_the_docker_cli_within_their_creators_grants() {
    let crate::access::OpsNode { engine, tmp, w, admin, image, config } = crate::access::ops_node();
    let roles =
        [("full", "fullcontrol"), ("restricted", "restrictedcontrol"), ("viewer", "viewonly"), ("sched", "scheduler")];
    for (user, role) in roles {
        wharf(&config, &["user", "create", user], &format!("{user}-password-1\n"));
        wharf(&config, &["grant", "add", &format!("user:{user}"), role, "/Shared/ops"], "");
    }
    wharf(&config, &["user", "create", "outsider"], "outsider-password-1\n");
    let node = ok(&admin, &["node", "ls", "-q"]).trim().to_owned();
    ok(&admin, &["node", "update", "--label-add", "wharf.collection=/Shared", &node]);
    let user_bundle = |user: &str| {
        let dir = tmp.path().join(user);
        std::fs::create_dir_all(&dir).expect("mkdir");
        bundle(&w, &dir, user, &format!("{user}-password-1"))
    };
    let (full, restricted, viewer, outsider) =
        (user_bundle("full"), user_bundle("restricted"), user_bundle("viewer"), user_bundle("outsider"));
    let ops = "wharf.collection=/Shared/ops";

    // Full Control: a container runs on the node, is listed, says its lines, runs commands.
    let run = [
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        ops,
        "--stop-timeout",
        "1",
        &image,
        "sh",
        "-c",
        "echo hello-from-run; busybox sleep 600",
    ];
    let id = ok(&full, &run).trim().to_owned();
    assert!(!id.is_empty(), "docker run -d prints the container's id");
    wait_for(Duration::from_secs(60), "web running", || names(&full, false).contains(&"web".to_owned()).then_some(()));
    let logs = wait_for(Duration::from_secs(30), "web's line", || {
        let logs = ok(&full, &["logs", "web"]);
        logs.contains("hello-from-run").then_some(logs)
    });
    assert_eq!(logs.trim(), "hello-from-run");
    let said = ok(&full, &["exec", "web", "sh", "-c", "echo exec-$((40+2)); echo to-stderr >&2"]);
    assert_eq!(said.trim(), "exec-42", "the command's standard output");
    let out = crate::services::docker(&full, &["exec", "web", "sh", "-c", "exit 7"]).output().expect("docker exec");
    assert_eq!(out.status.code(), Some(7), "docker exec exits as the command did: {out:?}");
    let status = ok(&full, &["inspect", "--format", "{{.State.Status}} {{.Name}} {{.Config.Image}}", "web"]);
    assert_eq!(status.trim(), format!("running /web {image}"));
    assert_eq!(on_engine(&engine, &id, "{{.State.Running}}").as_deref(), Some("true"), "on the node's engine");
    let said = refused(&full, &["run", "-d", "--name", "web", "--label", ops, &image, "busybox", "sleep", "1"]);
    assert!(said.contains("already in use"), "a second container of one name: {said}");

    // Host-reaching settings: honoured for Full Control, on the engine.
    let privileged = ok(&full, &["run", "-d", "--privileged", "--label", ops, &image, "busybox", "sleep", "600"]);
    let privileged = privileged.trim();
    // It reaches the engine privileged: it runs so, or (in a sandbox that may not hand out
    // every capability) the engine fails to give it all of them.
    let outcome = wait_for(Duration::from_secs(60), "the privileged container started or refused", || {
        let state = ok(&full, &["container", "inspect", "--format", "{{.State.Status}}|{{.State.Error}}", privileged]);
        let (status, error) = state.trim().split_once('|').map(|(s, e)| (s.to_owned(), e.to_owned()))?;
        (status == "running" || !error.is_empty()).then_some((status, error))
    });
    match outcome {
        (status, _) if status == "running" => {
            assert_eq!(on_engine(&engine, privileged, "{{.HostConfig.Privileged}}").as_deref(), Some("true"));
        }
        (_, error) => assert!(error.contains("caps"), "the engine refused it for another reason: {error}"),
    }
    let hosted = ok(
        &full,
        &[
            "run",
            "-d",
            "--network",
            "host",
            "-v",
            "/etc:/host:ro",
            "--tmpfs",
            "/scratch",
            "--label",
            ops,
            &image,
            "busybox",
            "sleep",
            "600",
        ],
    );
    let seen = wait_for(Duration::from_secs(60), "the container on the host's network", || {
        on_engine(
            &engine,
            hosted.trim(),
            "{{.HostConfig.NetworkMode}} {{range .Mounts}}{{.Type}}:{{.Source}}:{{.Destination}} {{end}}",
        )
    });
    assert!(seen.starts_with("host "), "{seen}");
    assert!(seen.contains("bind:/etc:/host") && seen.contains("tmpfs::/scratch"), "its mounts: {seen}");
    // What Wharf does not carry out is refused, not dropped.
    let said = refused(&full, &["run", "-d", "--dns", "192.0.2.1", "--label", ops, &image, "true"]);
    assert!(said.contains("HostConfig.Dns is not supported"), "{said}");

    // Restricted Control: its own plain containers, and none of what reaches the node.
    let mine = ok(&restricted, &["run", "-d", "--name", "mine", "--label", ops, &image, "busybox", "sleep", "600"]);
    assert!(!mine.trim().is_empty());
    wait_for(Duration::from_secs(60), "mine running", || {
        ok(&restricted, &["ps", "--format", "{{.Names}} {{.State}}"]).contains("mine running").then_some(())
    });
    assert_eq!(ok(&restricted, &["exec", "mine", "echo", "in-mine"]).trim(), "in-mine");
    // Standard input reaches the command; closing it ends the command's input.
    let out = with_input(&restricted, &["exec", "-i", "mine", "sh", "-c", "cat; echo end"], b"typed-in\n");
    assert!(out.status.success(), "docker exec -i: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed-in\nend\n");
    // With a terminal: the raw stream of one.
    let said = ok(&restricted, &["exec", "-t", "mine", "sh", "-c", "test -t 1 && echo on-a-terminal"]);
    assert_eq!(said, "on-a-terminal\r\n", "a terminal's output");
    for (flags, operation) in [
        (&["--privileged"][..], "host.privileged"),
        (&["--device", "/dev/kmsg"], "host.privileged"),
        (&["--security-opt", "seccomp=unconfined"], "host.privileged"),
        (&["-v", "/etc:/host"], "host.bind-mount"),
        (&["--mount", "type=bind,source=/etc,target=/host"], "host.bind-mount"),
        (&["--network", "host"], "host.namespaces"),
        (&["--pid", "host"], "host.namespaces"),
        (&["--ipc", "host"], "host.namespaces"),
        (&["--uts", "host"], "host.namespaces"),
        (&["--cap-add", "NET_ADMIN"], "host.capabilities"),
        (&["--oom-score-adj", "-500"], "host.privileged"),
        // A volume whose driver options bind the node's root is a bind mount.
        (
            &[
                "--mount",
                "type=volume,source=root,target=/h,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/",
            ],
            "host.bind-mount",
        ),
    ] {
        let args = [&["run", "-d", "--label", ops][..], flags, &[image.as_str(), "busybox", "sleep", "600"]].concat();
        let said = refused(&restricted, &args);
        assert!(said.contains(operation), "restricted: docker run {flags:?} refused for {operation}: {said}");
    }
    let said = refused(&restricted, &["exec", "web", "echo", "in-web"]);
    assert!(said.contains("container.exec"), "restricted: exec into another's container: {said}");
    let said = refused(&restricted, &["exec", "--privileged", "mine", "echo", "x"]);
    assert!(said.contains("host.privileged"), "restricted: a privileged exec: {said}");
    // A creator demoted since reaches the node no more through what they made.
    wharf(&config, &["grant", "rm", "user:full", "fullcontrol", "/Shared/ops"], "");
    wharf(&config, &["grant", "add", "user:full", "restrictedcontrol", "/Shared/ops"], "");
    let said = refused(&full, &["exec", hosted.trim(), "true"]);
    assert!(said.contains("host.namespaces"), "exec into a host-network container after a demotion: {said}");
    wharf(&config, &["grant", "rm", "user:full", "restrictedcontrol", "/Shared/ops"], "");
    wharf(&config, &["grant", "add", "user:full", "fullcontrol", "/Shared/ops"], "");
    // Nothing refused was recorded.
    let listed = names(&admin, true);
    assert_eq!(listed.len(), 4, "web and two more of full's, and mine: {listed:?}");

    // View Only sees them and changes none; a user with no grant there sees none.
    assert!(names(&viewer, false).contains(&"web".to_owned()));
    let said = refused(&viewer, &["run", "-d", "--label", ops, &image, "busybox", "sleep", "1"]);
    assert!(said.contains("container.create"), "viewer: run: {said}");
    for args in [&["exec", "web", "true"][..], &["stop", "web"], &["rm", "-f", "web"]] {
        let said = refused(&viewer, args);
        assert!(said.contains("access denied"), "viewer: docker {args:?}: {said}");
    }
    assert!(names(&outsider, true).is_empty(), "outsider sees no container");
    // Scheduler: nodes only, no container.
    let sched = user_bundle("sched");
    assert!(names(&sched, true).is_empty(), "a scheduler sees no container");
    let said = refused(&sched, &["run", "-d", "--label", ops, &image, "true"]);
    assert!(said.contains("container.create"), "scheduler: run: {said}");
    let said = refused(&outsider, &["container", "inspect", "web"]);
    assert!(said.contains("No such"), "outsider: inspect: {said}");
    // Their own container goes to their private collection, on the node of /Shared.
    let own = ok(&outsider, &["run", "-d", "--name", "own", &image, "busybox", "sleep", "600"]);
    let collection = ok(&outsider, &["inspect", "--format", "{{index .Config.Labels \"wharf.collection\"}}", "own"]);
    assert_eq!(collection.trim(), "/Shared/Private/outsider");
    wait_for(Duration::from_secs(60), "own running on the node", || {
        on_engine(&engine, own.trim(), "{{.State.Running}}").filter(|r| r == "true")
    });

    // Stop, wait, remove; a removed container's name is free again.
    ok(&full, &["stop", "web"]);
    let state = ok(&full, &["ps", "-a", "--filter", "name=web", "--format", "{{.State}}"]);
    assert_eq!(state.trim(), "exited", "after docker stop");
    assert_eq!(ok(&full, &["wait", "web"]).trim(), "137", "a container stopped by its signal");
    let said = refused(&full, &["start", "web"]);
    assert!(said.contains("run a new one"), "a stopped container is not started again: {said}");
    let said = refused(&full, &["rm", hosted.trim()]);
    assert!(said.contains("Stop the container"), "a running container is removed only by force: {said}");
    // docker kill: at once, with the engine's SIGKILL; a stopped one is not running.
    ok(&full, &["kill", hosted.trim()]);
    assert_eq!(ok(&full, &["wait", hosted.trim()]).trim(), "137");
    let said = refused(&full, &["kill", hosted.trim()]);
    assert!(said.contains("is not running"), "kill of a stopped container: {said}");
    ok(&full, &["rm", hosted.trim()]);
    ok(&full, &["rm", "-f", privileged, "web"]);
    assert!(!names(&full, true).iter().any(|n| n == "web"));
    wait_for(Duration::from_secs(60), "the engine's containers removed", || {
        on_engine(&engine, &id, "{{.Id}}").is_none().then_some(())
    });
    let again = ok(&full, &["run", "-d", "--rm", "--name", "web", "--label", ops, &image, "echo", "done"]);
    // `--rm`: gone once it ended, name and all.
    wait_for(Duration::from_secs(60), "the --rm container gone", || {
        (!names(&full, true).contains(&"web".to_owned()) && on_engine(&engine, again.trim(), "{{.Id}}").is_none())
            .then_some(())
    });

    // Attached (no -d): the CLI reads the output as the container runs, and exits with its code.
    let script = "echo out-line; echo err-line >&2; exit 3";
    let args = ["run", "--rm", "--label", ops, &image, "sh", "-c", script];
    let out = crate::services::docker(&full, &args).output().expect("docker run");
    assert_eq!(out.status.code(), Some(3), "docker run exits as the container did: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-line\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err-line"), "{out:?}");
    // With -i, what the CLI reads reaches the container's standard input.
    let args = ["run", "-i", "--rm", "--label", ops, &image, "sh", "-c", "cat; echo end"];
    let out = with_input(&full, &args, b"run-input\n");
    assert!(out.status.success(), "docker run -i: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "run-input\nend\n");
    // docker attach: a running container's output from then on, and its input.
    let script = "echo before; read x; echo got-$x";
    ok(&full, &["run", "-d", "-i", "--name", "reader", "--label", ops, &image, "sh", "-c", script]);
    wait_for(Duration::from_secs(60), "reader's first line", || {
        ok(&full, &["logs", "reader"]).contains("before").then_some(())
    });
    let out = with_input(&full, &["attach", "reader"], b"hello\n");
    assert!(out.status.success(), "docker attach: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got-hello\n", "only what it wrote once attached");
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}
