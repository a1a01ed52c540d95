//! Roles, collections and grants through the real `docker` CLI with client bundles and through
//! `wharf`: the authorization matrix of the built-in roles on the Docker-compatible API, and
//! the access API itself.

use std::path::{Path, PathBuf};

use crate::harness::{ADMIN_PASSWORD, require};
use crate::services::{bundle, login, ok, one_node, push_image, refused, wharf};

/// What a role may do with the objects of a collection, as the matrix expects it.
#[derive(Clone, Copy, Debug)]
struct Expect {
    view: bool,
    change: bool,
    bind_mount: bool,
}

const NONE: Expect = Expect { view: false, change: false, bind_mount: false };
const VIEW: Expect = Expect { view: true, change: false, bind_mount: false };
const RESTRICTED: Expect = Expect { view: true, change: true, bind_mount: false };
const FULL: Expect = Expect { view: true, change: true, bind_mount: true };

/// Runs `docker ARGS` with `bundle`, expecting success when `allowed`, else a refusal whose
/// message holds one of `refusals`; returns what it printed.
fn expect(bundle: &Path, allowed: bool, args: &[&str], refusals: &[&str]) -> String {
    if allowed {
        return ok(bundle, args);
    }
    let said = refused(bundle, args);
    assert!(
        refusals.iter().any(|r| said.contains(r)),
        "docker {args:?} as {}: refused, but not with {refusals:?}: {said}",
        bundle.display()
    );
    said
}

/// One node with its own engine, an image in its registry, the administrator's bundle and
/// `wharf` configuration, and the collection `/Shared/ops`.
pub(crate) struct OpsNode {
    pub engine: wharf_testkit::Dockerd,
    pub tmp: tempfile::TempDir,
    pub w: crate::harness::Wharf,
    pub admin: PathBuf,
    pub image: String,
    pub config: PathBuf,
}

pub(crate) fn ops_node() -> OpsNode {
    crate::clients::require_docker();
    require("bash");
    let (engine, tmp, w, admin) = one_node();
    let image = format!("{}/admin/busybox:1", w.host());
    push_image(&w.host(), tmp.path(), &image);
    let config = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    wharf(&config, &["collection", "create", "/Shared/ops"], "");
    OpsNode { engine, tmp, w, admin, image, config }
}

#[test]
fn each_built_in_role_allows_exactly_its_operations_through_the_docker_cli() {
    let OpsNode { engine, tmp, w, admin, image, config } = ops_node();

    // The administrator builds the tree: /Shared/ops, a team, users, grants.
    wharf(&config, &["org", "create", "acme"], "");
    wharf(&config, &["team", "create", "acme", "ops"], "");
    let users = ["viewer", "restricted", "full", "scheduler", "nobody", "teamed"];
    for user in users {
        wharf(&config, &["user", "create", user], &format!("{user}-password-1\n"));
    }
    wharf(&config, &["team", "add", "acme", "ops", "teamed"], "");
    for (subject, role) in [
        ("user:viewer", "viewonly"),
        ("user:restricted", "restrictedcontrol"),
        ("user:full", "fullcontrol"),
        ("user:scheduler", "scheduler"),
        ("user:nobody", "none"),
        ("team:acme/ops", "fullcontrol"),
    ] {
        wharf(&config, &["grant", "add", subject, role, "/Shared/ops"], "");
    }
    let listed = wharf(&config, &["grant", "ls", "--all"], "");
    assert_eq!(listed.lines().count(), 6, "{listed}");
    assert!(listed.contains("team:acme/ops\tfullcontrol\t/Shared/ops"), "{listed}");

    // The one node is a manager (/System): users may run nothing there until it is in /Shared.
    let label = "wharf.collection=/Shared";
    let node = ok(&admin, &["node", "ls", "-q"]).trim().to_owned();
    ok(&admin, &["node", "update", "--label-add", label, &node]);
    let ops = "wharf.collection=/Shared/ops";
    ok(&admin, &["service", "create", "-d", "--name", "web", "--label", ops, &image, "busybox", "sleep", "600"]);
    let token_file = tmp.path().join("token.txt");
    std::fs::write(&token_file, "s3cret-value").expect("write the secret");
    ok(&admin, &["secret", "create", "--label", ops, "token", token_file.to_str().expect("path")]);
    let admin_only = ok(&admin, &["service", "create", "-d", "--name", "adm", &image, "busybox", "sleep", "600"]);
    assert!(!admin_only.is_empty());
    let inspected =
        ok(&admin, &["service", "inspect", "adm", "--format", "{{index .Spec.Labels \"wharf.collection\"}}"]);
    assert_eq!(inspected.trim(), "/", "an administrator's objects go to the root unless labelled");

    let matrix = [
        ("viewer", VIEW),
        ("restricted", RESTRICTED),
        ("full", FULL),
        ("scheduler", NONE),
        ("nobody", NONE),
        ("teamed", FULL),
    ];
    for (user, expected) in matrix {
        let dir = tmp.path().join(user);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let b: PathBuf = bundle(&w, &dir, user, &format!("{user}-password-1"));
        let hidden = ["not found", "No such", "no such"];
        let denied = ["access denied"];
        let blocked: Vec<&str> = hidden.iter().chain(denied.iter()).copied().collect();

        // Viewing.
        let listed = ok(&b, &["service", "ls", "--format", "{{.Name}}"]);
        assert_eq!(listed.lines().any(|l| l == "web"), expected.view, "{user}: service ls shows web: {listed}");
        assert!(!listed.lines().any(|l| l == "adm"), "{user} sees the administrator's service at the root");
        expect(&b, expected.view, &["service", "inspect", "web"], &hidden);
        expect(&b, expected.view, &["service", "ps", "web"], &hidden);
        let secrets = ok(&b, &["secret", "ls", "--format", "{{.Name}}"]);
        assert_eq!(secrets.lines().any(|l| l == "token"), expected.view, "{user}: secret ls: {secrets}");

        // Changing what exists, creating in the collection, using its secret.
        expect(&b, expected.change, &["service", "update", "-d", "--env-add", &format!("BY={user}"), "web"], &blocked);
        let mine = format!("{user}-svc");
        let create = ["service", "create", "-d", "--name", &mine, "--label", ops, "--secret", "token"];
        expect(&b, expected.change, &[&create[..], &[image.as_str(), "busybox", "sleep", "600"]].concat(), &blocked);
        // Outside its collection nobody but the administrator creates anything.
        let elsewhere = ["service", "create", "-d", "--name", "x", "--label", "wharf.collection=/System"];
        let said = refused(&b, &[&elsewhere[..], &[image.as_str(), "busybox", "true"]].concat());
        assert!(said.contains("access denied"), "{user} created in /System: {said}");

        // A host bind mount: Full Control only (Restricted Control withholds it).
        let bind_name = format!("{user}-bind");
        let bind = [
            "service",
            "create",
            "-d",
            "--name",
            &bind_name,
            "--label",
            ops,
            "--mount",
            "type=bind,source=/etc,target=/host",
        ];
        let said =
            expect(&b, expected.bind_mount, &[&bind[..], &[image.as_str(), "busybox", "true"]].concat(), &blocked);
        if expected.change && !expected.bind_mount {
            assert!(said.contains("host.bind-mount"), "{user}: bind mount refused for the right reason: {said}");
        }
        if expected.bind_mount {
            ok(&b, &["service", "rm", &bind_name]);
        }

        // Added kernel capabilities: Full Control only; they reach the engine.
        let cap_name = format!("{user}-cap");
        let cap = ["service", "create", "-d", "--name", &cap_name, "--label", ops, "--cap-add", "NET_ADMIN"];
        let sleeper = [image.as_str(), "busybox", "sleep", "600"];
        let said = expect(&b, expected.bind_mount, &[&cap[..], &sleeper].concat(), &blocked);
        if expected.change && !expected.bind_mount {
            assert!(said.contains("host.capabilities"), "{user}: cap-add refused for the right reason: {said}");
        }
        if expected.bind_mount {
            let filter = format!("label=wharf.service.name={cap_name}");
            let added =
                crate::harness::wait_for(std::time::Duration::from_secs(60), "the task with its capability", || {
                    let out = engine.docker(&["ps", "-q", "--filter", &filter]).output().ok()?;
                    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    let inspect =
                        engine.docker(&["inspect", "--format", "{{.HostConfig.CapAdd}}", &id]).output().ok()?;
                    (!id.is_empty()).then(|| String::from_utf8_lossy(&inspect.stdout).into_owned())
                });
            assert!(added.contains("NET_ADMIN"), "{user}: the container's added capabilities: {added}");
            ok(&b, &["service", "rm", &cap_name]);
        }

        // Nodes: every user may view the workers' collection (/Shared) and change no node.
        let nodes = ok(&b, &["node", "ls", "-q"]);
        assert_eq!(nodes.trim(), node, "{user}: node ls");
        let said = refused(&b, &["node", "update", "--availability", "drain", &node]);
        assert!(said.contains("access denied"), "{user}: node update: {said}");

        // Their own service runs on the node of /Shared; they remove it.
        if expected.change {
            expect(&b, true, &["service", "rm", &mine], &[]);
        }
        // The administrator's service: removed only by those who may change it (put back after).
        if expected.change {
            ok(&b, &["service", "rm", "web"]);
            ok(
                &admin,
                &["service", "create", "-d", "--name", "web", "--label", ops, &image, "busybox", "sleep", "600"],
            );
        } else {
            expect(&b, false, &["service", "rm", "web"], &blocked);
        }
    }

    // A service of a user's private collection runs on the node of /Shared, not on /System's.
    let dir = tmp.path().join("viewer-own");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let viewer = bundle(&w, &dir, "viewer", "viewer-password-1");
    ok(&viewer, &["service", "create", "--name", "own", &image, "busybox", "sleep", "600"]);
    let own = ok(&viewer, &["service", "inspect", "own", "--format", "{{index .Spec.Labels \"wharf.collection\"}}"]);
    assert_eq!(own.trim(), "/Shared/Private/viewer");
    ok(&admin, &["node", "update", "--label-rm", "wharf.collection", &node]);
    ok(&viewer, &["service", "update", "-d", "--force", "own"]);
    crate::harness::wait_for(std::time::Duration::from_secs(60), "the new task unplaceable on /System's node", || {
        let out = ok(&viewer, &["service", "ps", "own", "--no-trunc", "--format", "{{.Error}}"]);
        out.contains("outside the service's collection").then_some(())
    });

    // The access API: users read, only administrators change.
    let viewer_config = login(&w.base(), &w.ca_path(), &dir, "viewer", "viewer-password-1");
    let mine = wharf(&viewer_config, &["grant", "ls"], "");
    assert_eq!(mine.trim(), "user:viewer\tviewonly\t/Shared/ops");
    for args in [
        &["grant", "add", "user:viewer", "fullcontrol", "/"][..],
        &["collection", "create", "/Shared/mine"],
        &["org", "create", "mine"],
        &["role", "create", "mine", "service.view"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_CONFIG", &viewer_config)
            .output()
            .expect("wharf");
        assert!(!out.status.success(), "viewer: wharf {args:?} was allowed");
        assert!(String::from_utf8_lossy(&out.stderr).contains("administrator"), "wharf {args:?}: {out:?}");
    }
    // A custom role: exactly its permissions.
    wharf(&config, &["role", "create", "updater", "service.view", "service.update"], "");
    wharf(&config, &["grant", "add", "user:nobody", "updater", "/Shared/ops"], "");
    let dir = tmp.path().join("nobody-again");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let nobody = bundle(&w, &dir, "nobody", "nobody-password-1");
    ok(&nobody, &["service", "update", "-d", "--env-add", "BY=updater", "web"]);
    let said = refused(&nobody, &["service", "rm", "web"]);
    assert!(said.contains("service.remove"), "the custom role removed a service: {said}");
    // Revoking takes it back at once.
    wharf(&config, &["grant", "rm", "user:nobody", "updater", "/Shared/ops"], "");
    refused(&nobody, &["service", "inspect", "web"]);
    let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(w.host()));
}

/// `skopeo ARGS` as `user`; whether it succeeded, and what it said.
fn skopeo(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("skopeo").args(args).output().expect("skopeo");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `skopeo copy` from `source` (read as `from`) to `target` (written as `to`).
fn copy(certs: &str, from: &str, to: &str, source: &str, target: &str) -> (bool, String) {
    let certs = ["--src-cert-dir", certs, "--dest-cert-dir", certs];
    skopeo(&[&["copy"][..], &certs, &["--src-creds", from, "--dest-creds", to, source, target]].concat())
}

#[tokio::test]
async fn teams_reach_repositories_by_their_level_through_skopeo_and_the_catalog_shows_only_what_one_may_pull() {
    require("skopeo");
    let w = crate::harness::Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = crate::clients::cert_dir(&w, tmp.path());
    let certs = certs.to_str().expect("path");
    let config_json = serde_json::json!({"Cmd": ["sh"]});
    for (repo, dir) in [("acme/web", "image-1"), ("admin/private", "image-2")] {
        let dir = tmp.path().join(dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        crate::clients::push_busybox_image(&w, repo, "1", &dir, "amd64", config_json.clone()).await;
    }
    let config = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    wharf(&config, &["org", "create", "acme"], "");
    for (team, members) in [("dev", "dan"), ("qa", "quinn"), ("rel", "rita")] {
        wharf(&config, &["team", "create", "acme", team], "");
        wharf(&config, &["user", "create", members], &format!("{members}-password-1\n"));
        wharf(&config, &["team", "add", "acme", team, members], "");
    }
    wharf(&config, &["user", "create", "olga"], "olga-password-1\n");
    wharf(&config, &["repo", "access", "acme/web", "team:acme/dev", "read-write"], "");
    wharf(&config, &["repo", "access", "acme/*", "team:acme/qa", "read"], "");
    wharf(&config, &["repo", "access", "acme/*", "team:acme/rel", "admin"], "");
    let listed = wharf(&config, &["repo", "access-ls", "acme/web"], "");
    assert_eq!(listed.lines().count(), 3, "{listed}");

    let host = w.host();
    let source = format!("docker://{host}/acme/web:1");
    let target = |tag: &str| format!("docker://{host}/acme/web:{tag}");
    let creds = |user: &str| format!("{user}:{user}-password-1");
    // (user, may pull, may push, may delete)
    for (user, pull, push, delete) in [
        ("dan", true, true, false),
        ("quinn", true, false, false),
        ("rita", true, true, true),
        ("olga", false, false, false),
    ] {
        let (pulled, said) = skopeo(&["inspect", "--cert-dir", certs, "--creds", &creds(user), &source]);
        assert_eq!(pulled, pull, "{user} pulls acme/web: {said}");
        let tag = format!("{user}-copy");
        let (pushed, said) = copy(certs, &w.admin_creds(), &creds(user), &source, &target(&tag));
        assert_eq!(pushed, push, "{user} pushes acme/web: {said}");
        if pushed {
            let (deleted, said) = skopeo(&["delete", "--cert-dir", certs, "--creds", &creds(user), &target(&tag)]);
            assert_eq!(deleted, delete, "{user} deletes from acme/web: {said}");
        }
        // The catalog shows what the user may pull, and nothing else.
        let catalog = w
            .anonymous_client()
            .get(w.url("/v2/_catalog"))
            .basic_auth(user, Some(format!("{user}-password-1")))
            .send()
            .await
            .expect("catalog");
        assert_eq!(catalog.status(), 200, "{user}: catalog");
        let body: serde_json::Value = catalog.json().await.expect("catalog json");
        let expected: Vec<&str> = if pull { vec!["acme/web"] } else { vec![] };
        assert_eq!(body["repositories"], serde_json::json!(expected), "{user}: catalog");
    }
    // Rita's delete removed the manifest the tags share: the administrator puts one back.
    let private = format!("docker://{host}/admin/private:1");
    let (copied, said) = copy(certs, &w.admin_creds(), &w.admin_creds(), &private, &source);
    assert!(copied, "{said}");
    // Only the namespace owner, a repository admin or an administrator gives access.
    let dan = login(&w.base(), &w.ca_path(), &tmp.path().join("dan"), "dan", "dan-password-1");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["repo", "access", "acme/web", "user:olga", "read"])
        .env("WHARF_CONFIG", &dan)
        .output()
        .expect("wharf");
    assert!(!out.status.success(), "a read-write member gave access: {out:?}");
    let rita = login(&w.base(), &w.ca_path(), &tmp.path().join("rita"), "rita", "rita-password-1");
    wharf(&rita, &["repo", "access", "acme/web", "user:olga", "read"], "");
    let (pulled, said) = skopeo(&["inspect", "--cert-dir", certs, "--creds", &creds("olga"), &source]);
    assert!(pulled, "olga pulls once a repository admin let her: {said}");
    // Leaving the team ends the team's access at the next token.
    wharf(&config, &["team", "remove", "acme", "qa", "quinn"], "");
    let (pulled, _) = skopeo(&["inspect", "--cert-dir", certs, "--creds", &creds("quinn"), &source]);
    assert!(!pulled, "quinn pulls after leaving the team");
}

/// Everything `wharf audit ARGS` prints (as the user of `config`), once `done` holds (within
/// a minute: entries are recorded about once a second).
fn audit_until(config: &Path, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = wharf(config, &[&["audit", "--limit", "1000"][..], args].concat(), "");
        if done(&out) {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "the audit log never held what was expected:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_audit_log_records_who_did_what_at_every_door_and_never_a_password_or_a_secret() {
    require("docker");
    require("curl");
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("wharf.log");
    let extra = vec!["--docker-host".to_owned(), "none".into()];
    let options = crate::harness::Options {
        tls: true,
        extra,
        log: Some((log.clone(), "warn,wharf=info".into())),
        ..Default::default()
    };
    let w = crate::harness::Wharf::start_with(options);
    let config = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    let admin = bundle(&w, &tmp.path().join("admin"), "admin", ADMIN_PASSWORD);
    let (password, secret) = ("eve-password-1", "audit-secret-value-42");

    // The account API, a failed login, the Docker API (allowed and refused), the registry.
    wharf(&config, &["user", "create", "eve"], &format!("{password}\n"));
    let wrong = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(w.ca_path())
        .args(["-d", r#"{"username":"eve","password":"not-her-password"}"#])
        .arg(w.url("/auth/login"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&wrong.stdout), "401");
    // A claimed name with a newline cannot forge a line of the log.
    let forged = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(w.ca_path())
        .args(["-d", r#"{"username":"x\nFORGED wharf::audit actor=admin","password":"p"}"#])
        .arg(w.url("/auth/login"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&forged.stdout), "401");
    let file = tmp.path().join("secret.txt");
    std::fs::write(&file, secret).expect("write");
    ok(&admin, &["secret", "create", "db-password", file.to_str().expect("path")]);
    let eve = bundle(&w, &tmp.path().join("eve"), "eve", password);
    let denied =
        refused(&eve, &["service", "create", "-d", "--name", "x", "--label", "wharf.collection=/System", "busybox"]);
    assert!(denied.contains("access denied"), "{denied}");
    // A secret she may not see is "not found" to her, and a refusal to the audit.
    let hidden = refused(&eve, &["secret", "inspect", "db-password"]);
    assert!(hidden.contains("not found"), "{hidden}");
    let push = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--cacert"])
        .arg(w.ca_path())
        .args(["-u", &format!("eve:{password}")])
        .arg(w.url("/v2/admin/app/blobs/uploads/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&push.stdout), "401", "eve pushing into the administrator's namespace");
    let layer = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--cacert"])
        .arg(w.ca_path())
        .args(["-u", &w.admin_creds()])
        .arg(w.url("/v2/admin/app/blobs/uploads/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&layer.stdout), "202");

    let expected = [
        ("admin", "api", "POST /api/users", "201", "ok"),
        ("eve", "auth", "POST /auth/login", "401", "denied"),
        ("admin", "docker", "/secrets/create", "201", "ok"),
        ("eve", "docker", "/services/create", "403", "denied"),
        ("eve", "docker", "GET /v1.41/secrets/db-password", "404", "denied"),
        ("eve", "registry", "POST /v2/admin/app/blobs/uploads/", "401", "denied"),
        ("admin", "registry", "POST /v2/admin/app/blobs/uploads/", "202", "ok"),
    ];
    let has = |out: &str, (actor, door, what, status, outcome): (&str, &str, &str, &str, &str)| {
        out.lines().any(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.len() == 7 && f[1] == actor && f[3] == door && f[4].contains(what) && f[5] == status && f[6] == outcome
        })
    };
    let out = audit_until(&config, &[], |out| expected.iter().all(|e| has(out, *e)));
    assert!(out.lines().all(|l| l.split('\t').nth(2).is_some_and(|s| s == "127.0.0.1")), "sources: {out}");
    // Filters.
    let mine = audit_until(&config, &["--actor", "eve", "--denied"], |out| !out.is_empty());
    assert!(mine.lines().all(|l| l.contains("\teve\t") && l.ends_with("\tdenied")), "{mine}");
    assert_eq!(mine.lines().count(), 4, "{mine}");
    let docker = wharf(&config, &["audit", "--door", "docker"], "");
    assert!(docker.lines().all(|l| l.split('\t').nth(3) == Some("docker")), "{docker}");
    // Only administrators read it.
    let eve_config = login(&w.base(), &w.ca_path(), &tmp.path().join("eve-cli"), "eve", password);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["audit"])
        .env("WHARF_CONFIG", &eve_config)
        .output()
        .expect("wharf");
    assert!(!out.status.success(), "eve read the audit log");
    // The structured log lines, and no password or secret anywhere: the log, the answers, the state.
    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(logged.contains("x\\nFORGED"), "the claimed name, escaped, in the log");
    assert!(!logged.lines().any(|l| l.starts_with("FORGED")), "a forged log line");
    assert!(logged.contains("wharf::audit") && logged.contains("/auth/login"), "no audit lines in the log");
    for needle in [password, secret, "not-her-password"] {
        assert!(!logged.contains(needle), "{needle} in the log");
        assert!(!out_all(&config).contains(needle), "{needle} in the audit log");
        assert!(
            !crate::services::files_holding(&w.data_dir, needle.as_bytes()).iter().any(|_| true),
            "{needle} on disk"
        );
    }
}

/// The whole audit log as `wharf audit` prints it.
fn out_all(config: &Path) -> String {
    wharf(config, &["audit", "--limit", "10000"], "")
}

#[tokio::test]
async fn a_service_accounts_token_is_a_registry_password_within_its_scopes_and_nothing_more() {
    require("skopeo");
    let w = crate::harness::Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = crate::clients::cert_dir(&w, tmp.path());
    let certs = certs.to_str().expect("path");
    for (repo, dir) in [("acme/app", "image-1"), ("other/app", "image-2")] {
        let dir = tmp.path().join(dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        crate::clients::push_busybox_image(&w, repo, "1", &dir, "amd64", serde_json::json!({"Cmd": ["sh"]})).await;
    }
    let admin = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    wharf(&admin, &["user", "create", "ci", "--service-account"], "");
    wharf(&admin, &["repo", "access", "acme/*", "user:ci", "read-write"], "");
    wharf(&admin, &["repo", "access", "other/*", "user:ci", "read-write"], "");
    let token = wharf(
        &admin,
        &["user", "token", "ci", "--label", "pipeline", "--scope", "repository:acme/*:pull,push", "--days", "7"],
        "",
    );
    let token = token.trim().to_owned();
    assert!(token.starts_with("wharf_at_"), "{token}");
    let host = w.host();
    let creds = format!("ci:{token}");
    let inspect = |repo: &str, creds: &str| {
        skopeo(&["inspect", "--cert-dir", certs, "--creds", creds, &format!("docker://{host}/{repo}:1")])
    };

    // Within its scopes: pull and push; outside them, nothing, though the account could.
    assert!(inspect("acme/app", &creds).0, "pull within the scope");
    let (pushed, said) =
        copy(certs, &creds, &creds, &format!("docker://{host}/acme/app:1"), &format!("docker://{host}/acme/app:2"));
    assert!(pushed, "push within the scope: {said}");
    assert!(!inspect("other/app", &creds).0, "pull outside the scope");
    let direct = w
        .anonymous_client()
        .get(w.url("/v2/other/app/tags/list"))
        .basic_auth("ci", Some(&token))
        .send()
        .await
        .expect("tags");
    assert_eq!(direct.status(), 401, "Basic with the token outside its scope");
    let token_answer: serde_json::Value = w
        .anonymous_client()
        .get(w.url("/auth/token?service=wharf-registry&offline_token=true&client_id=ci&scope=repository:acme/app:pull,push,delete"))
        .basic_auth("ci", Some(&token))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    assert!(token_answer.get("refresh_token").is_none(), "an access token gets no refresh token: {token_answer}");
    // No password, no API session, no bundle.
    assert!(!inspect("acme/app", "ci:").0, "a service account has no password");
    assert!(!inspect("acme/app", &format!("admin:{token}")).0, "ci's token under another account's name");
    let login_answer = w
        .anonymous_client()
        .post(w.url("/auth/login"))
        .json(&serde_json::json!({"username": "ci", "password": token}))
        .send()
        .await
        .expect("login");
    assert_eq!(login_answer.status(), 403, "an API session from an access token");
    // Disabling the account ends it at once, and for good.
    wharf(&admin, &["user", "disable", "ci"], "");
    assert!(!inspect("acme/app", &creds).0, "the token of a disabled account");
    wharf(&admin, &["user", "enable", "ci"], "");
    assert!(!inspect("acme/app", &creds).0, "disabling ended the token for good");
    // Bad requests for a token are refused with a reason.
    for bad in [
        &["user", "token", "ci", "--label", "x", "--scope", "registry:catalog:*"][..],
        &["user", "token", "ci", "--label", "x", "--scope", "repository:acme/*:pull", "--days", "0"],
        &["user", "token", "ci", "--label", "x", "--scope", "repository:acme/*:own"],
    ] {
        let (ok, _, said) = crate::services::try_wharf(&admin, bad, "");
        assert!(!ok && said.contains("400"), "wharf {bad:?}: {said}");
    }
}
