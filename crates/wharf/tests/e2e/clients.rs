//! Real registry clients against a real `wharf up`: docker (through dockerd), skopeo, podman,
//! buildah, containerd's ctr, and the PyPI oras client. Each test fails, saying how to install
//! it, when its program is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, Options, Wharf, require, run, run_with_input, wait_for};
use crate::oci::*;

/// A busybox root filesystem as an uncompressed tar (a real, runnable layer).
pub(crate) fn busybox_layer(dir: &Path) -> Vec<u8> {
    require("tar");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists());
    let busybox = busybox.expect("busybox is not installed: run ./scripts/test (apt-get install busybox-static)");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "echo", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    let out = Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&root)
        .args(["-c", "."])
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar failed");
    out.stdout
}

/// Pushes a runnable busybox OCI image over HTTP; returns (manifest digest, manifest bytes).
async fn push_busybox(w: &Wharf, repo: &str, tag: &str, dir: &Path, arch: &str) -> (String, Vec<u8>) {
    push_busybox_image(w, repo, tag, dir, arch, json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]})).await
}

/// Pushes a busybox OCI image whose image configuration (`Cmd`, `Env`, `Healthcheck`...) is
/// `config`, over HTTP as the administrator; returns (manifest digest, manifest bytes).
pub(crate) async fn push_busybox_image(
    w: &Wharf,
    repo: &str,
    tag: &str,
    dir: &Path,
    arch: &str,
    config: serde_json::Value,
) -> (String, Vec<u8>) {
    let (c, b) = (w.client(), w.base());
    let layer = busybox_layer(dir);
    let ld = push_blob(&c, &b, repo, &layer).await;
    let config = json!({"architecture": arch, "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [ld]}});
    let config = serde_json::to_vec(&config).expect("json");
    let cd = push_blob(&c, &b, repo, &config).await;
    let manifest = image_manifest((&cd, config.len()), &[(&ld, layer.len())], json!({}));
    let resp = put_manifest(&c, &b, repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    (sha256(&manifest), manifest)
}

/// A directory holding only the node's CA as `ca.crt`, for `--cert-dir`.
pub(crate) fn cert_dir(w: &Wharf, dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(w.ca_path(), certs.join("ca.crt")).expect("copy ca");
    certs
}

/// Fails unless the Docker daemon answers.
pub(crate) fn require_docker() {
    require("docker");
    let ok = Command::new("docker").arg("info").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "the Docker daemon is not running: run ./scripts/test (it installs docker.io and starts dockerd)");
}

#[tokio::test]
async fn docker_push_pull_and_pull_by_digest() {
    require_docker();
    let w = Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let layer = busybox_layer(tmp.path());
    std::fs::write(tmp.path().join("rootfs.tar"), &layer).expect("write tar");
    let local = format!("wharf-e2e/busybox:{}", w.addr.port());
    let remote = format!("{}/e2e/docker:1", w.host());
    let docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", tmp.path().join("docker")).args(args);
        cmd
    };
    let (ok, out, err) = run_with_input(
        &mut docker(&["login", &w.host(), "-u", "admin", "--password-stdin"]),
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(ok && out.contains("Login Succeeded"), "docker login: {out} {err}");
    let config = std::fs::read_to_string(tmp.path().join("docker/config.json")).expect("docker config");
    assert!(config.contains("identitytoken"), "docker keeps a refresh token: {config}");
    assert!(!config.contains(ADMIN_PASSWORD), "docker must not keep the password: {config}");
    run(docker(&["import", tmp.path().join("rootfs.tar").to_str().expect("path"), &local])
        .arg("--change")
        .arg("CMD [\"sh\"]"));
    run(&mut docker(&["tag", &local, &remote]));
    let out = run(&mut docker(&["push", &remote]));
    let digest = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in docker push output: {out}"))
        .to_owned();
    // The registry has what docker says it pushed.
    let resp = w.client().head(w.url("/v2/e2e/docker/manifests/1")).send().await.expect("HEAD");
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    run(&mut docker(&["rmi", &local, &remote]));
    run(&mut docker(&["pull", &remote]));
    let hi = run(&mut docker(&["run", "--rm", &remote, "echo", "hello from wharf"]));
    assert_eq!(hi.trim(), "hello from wharf");
    let by_digest = format!("{}/e2e/docker@{digest}", w.host());
    run(&mut docker(&["rmi", &remote]));
    let out = run(&mut docker(&["pull", &by_digest]));
    assert!(out.contains(&digest), "pull by digest: {out}");
    run(&mut docker(&["rmi", &by_digest]));
}

#[tokio::test]
async fn skopeo_copy_inspect_list_tags_delete() {
    require("skopeo");
    let w = Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = cert_dir(&w, tmp.path());
    let certs = certs.to_str().expect("path");
    let (digest, _) = push_busybox(&w, "e2e/skopeo", "1", tmp.path(), "amd64").await;
    let host = w.host();
    let layout = format!("oci:{}/layout:1", tmp.path().display());
    let creds = w.admin_creds();
    let skopeo = || Command::new("skopeo");
    run(skopeo().args([
        "copy",
        "--preserve-digests",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &creds,
        &format!("docker://{host}/e2e/skopeo:1"),
        &layout,
    ]));
    run(skopeo().args([
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &creds,
        &layout,
        &format!("docker://{host}/e2e/skopeo-copy:2"),
    ]));
    let inspect: Value = serde_json::from_str(&run(skopeo().args([
        "inspect",
        "--cert-dir",
        certs,
        "--creds",
        &creds,
        &format!("docker://{host}/e2e/skopeo-copy:2"),
    ])))
    .expect("inspect json");
    assert_eq!(inspect["Digest"], digest.as_str(), "the copy round-tripped the exact manifest");
    assert_eq!(inspect["Architecture"], "amd64");
    run(skopeo().args([
        "copy",
        "--src-cert-dir",
        certs,
        "--dest-cert-dir",
        certs,
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        &format!("docker://{host}/e2e/skopeo:1"),
        &format!("docker://{host}/e2e/skopeo:3"),
    ]));
    let tags: Value = serde_json::from_str(&run(skopeo().args([
        "list-tags",
        "--cert-dir",
        certs,
        "--creds",
        &creds,
        &format!("docker://{host}/e2e/skopeo"),
    ])))
    .expect("list-tags json");
    assert_eq!(tags["Tags"], json!(["1", "3"]));
    run(skopeo().args([
        "delete",
        "--cert-dir",
        certs,
        "--creds",
        &creds,
        &format!("docker://{host}/e2e/skopeo-copy:2"),
    ]));
    let (ok, _, err) = run_with_input(
        skopeo().args([
            "inspect",
            "--cert-dir",
            certs,
            "--creds",
            "admin:wrong-password",
            &format!("docker://{host}/e2e/skopeo:1"),
        ]),
        "",
    );
    assert!(!ok && err.contains("invalid username or password"), "a wrong password is refused: {err}");
    let resp = w.client().get(w.url("/v2/e2e/skopeo-copy/manifests/2")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn multi_arch_index_pushed_and_pulled_whole() {
    require("skopeo");
    let w = Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = cert_dir(&w, tmp.path());
    let certs = certs.to_str().expect("path");
    let (amd, amd_bytes) = push_busybox(&w, "e2e/multi", "amd64", &tmp.path().join("a"), "amd64").await;
    let (arm, arm_bytes) = push_busybox(&w, "e2e/multi", "arm64", &tmp.path().join("b"), "arm64").await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_bytes.len(), "platform": {"architecture": "arm64", "os": "linux"}}]});
    let index = serde_json::to_vec(&index).expect("json");
    let resp = put_manifest(&w.client(), &w.base(), "e2e/multi", "all", OCI_INDEX, &index).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let host = w.host();
    let layout = format!("oci:{}/layout:all", tmp.path().display());
    let creds = w.admin_creds();
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &creds,
        &format!("docker://{host}/e2e/multi:all"),
        &layout,
    ]));
    for d in [&amd, &arm] {
        let hex = d.trim_start_matches("sha256:");
        assert!(tmp.path().join("layout/blobs/sha256").join(hex).exists(), "child {d} pulled");
    }
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &creds,
        &layout,
        &format!("docker://{host}/e2e/multi-copy:all"),
    ]));
    let resp = w.client().get(w.url("/v2/e2e/multi-copy/manifests/all")).send().await.expect("GET");
    assert_eq!(header(&resp, "docker-content-digest"), sha256(&index));
    assert_eq!(resp.bytes().await.expect("body").as_ref(), index.as_slice());
    for d in [&amd, &arm] {
        let resp = w.client().head(w.url(&format!("/v2/e2e/multi-copy/manifests/{d}"))).send().await.expect("HEAD");
        assert_eq!(resp.status(), StatusCode::OK, "child {d} pushed");
    }
}

/// One platform's worth of an index, copied by skopeo with `--multi-arch index-only` (the index
/// alone, its digest kept): refused with MANIFEST_BLOB_UNKNOWN by default, accepted once the
/// repository allows sparse manifests, and served with the same digest; its children stay absent.
#[tokio::test]
async fn a_sparse_index_is_refused_until_its_repository_allows_it() {
    require("skopeo");
    let w = Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = cert_dir(&w, tmp.path());
    let certs = certs.to_str().expect("path");
    let (amd, amd_bytes) = push_busybox(&w, "e2e/full", "amd64", &tmp.path().join("a"), "amd64").await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": {"architecture": "amd64", "os": "linux"}}]});
    let index = serde_json::to_vec(&index).expect("json");
    let resp = put_manifest(&w.client(), &w.base(), "e2e/full", "all", OCI_INDEX, &index).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (host, creds) = (w.host(), w.admin_creds());
    let copy_index_only = || {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--multi-arch", "index-only", "--src-cert-dir", certs, "--dest-cert-dir", certs])
            .args(["--src-creds", &creds, "--dest-creds", &creds])
            .arg(format!("docker://{host}/e2e/full:all"))
            .arg(format!("docker://{host}/e2e/sparse:all"));
        cmd
    };
    let (ok, _, err) = run_with_input(&mut copy_index_only(), "");
    let refused = err.to_lowercase().contains("manifest blob unknown") || err.contains("MANIFEST_BLOB_UNKNOWN");
    assert!(!ok && refused, "refused by default with MANIFEST_BLOB_UNKNOWN: {err}");

    let session = crate::auth::api_login(&w, "admin", ADMIN_PASSWORD).await;
    let resp = w
        .anonymous_client()
        .patch(w.url("/api/repositories/e2e/sparse"))
        .bearer_auth(&session)
        .json(&json!({"sparse_manifests": true}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), StatusCode::OK);
    let shown: Value = resp.json().await.expect("json");
    assert_eq!((shown["sparse_manifests"].as_bool(), shown["public"].as_bool()), (Some(true), Some(false)));

    run(&mut copy_index_only());
    let resp = w.client().get(w.url("/v2/e2e/sparse/manifests/all")).send().await.expect("GET");
    assert_eq!(header(&resp, "docker-content-digest"), sha256(&index), "the index digest is kept");
    let child = w.client().head(w.url(&format!("/v2/e2e/sparse/manifests/{amd}"))).send().await.expect("HEAD");
    assert_eq!(child.status(), StatusCode::NOT_FOUND, "the child was not copied");
    let elsewhere = put_manifest(&w.client(), &w.base(), "e2e/other", "all", OCI_INDEX, &index).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST, "other repositories still refuse it");
}

/// A containers.conf that lets podman and buildah run here (see test-environment.md).
fn containers_conf(dir: &Path) -> PathBuf {
    let path = dir.join("containers.conf");
    std::fs::write(
        &path,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
         [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
    )
    .expect("write containers.conf");
    path
}

/// A command builder for podman or buildah with private storage under `dir`.
fn containers_tool(program: &'static str, dir: &Path) -> impl Fn(&[&str]) -> Command {
    let conf = containers_conf(dir);
    std::fs::write(dir.join("auth.json"), "{\"auths\": {}}").expect("write auth.json");
    let dir = dir.to_path_buf();
    move |args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.env("CONTAINERS_CONF", &conf)
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args(args);
        cmd
    }
}

#[tokio::test]
async fn podman_pull_run_and_push() {
    require("podman");
    let w = Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = cert_dir(&w, tmp.path());
    push_busybox(&w, "e2e/podman", "1", tmp.path(), "amd64").await;
    let podman = containers_tool("podman", tmp.path());
    let image = format!("{}/e2e/podman:1", w.host());
    let certs = certs.to_str().expect("path");
    let (ok, out, err) = run_with_input(
        &mut podman(&["login", "--cert-dir", certs, "-u", "admin", "--password-stdin", &w.host()]),
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(ok && out.contains("Login Succeeded"), "podman login: {out} {err}");
    run(&mut podman(&["pull", "--cert-dir", certs, &image]));
    let out = run(&mut podman(&["run", "--rm", "--network", "none", &image, "echo", "podman ran it"]));
    assert_eq!(out.trim(), "podman ran it");
    let pushed = format!("{}/e2e/podman-pushed:2", w.host());
    run(&mut podman(&["tag", &image, &pushed]));
    run(&mut podman(&["push", "--cert-dir", certs, &pushed]));
    let resp = w.client().get(w.url("/v2/e2e/podman-pushed/manifests/2")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    run(&mut podman(&["rmi", "-a", "-f"]));
}

#[tokio::test]
async fn buildah_builds_from_and_pushes_to_wharf() {
    require("buildah");
    let w = Wharf::start_tls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = cert_dir(&w, tmp.path());
    let certs = certs.to_str().expect("path");
    push_busybox(&w, "e2e/buildah-base", "1", tmp.path(), "amd64").await;
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("hello.txt"), "built by buildah\n").expect("write");
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {}/e2e/buildah-base:1\nCOPY hello.txt /hello.txt\n", w.host()),
    )
    .expect("write");
    let buildah = containers_tool("buildah", tmp.path());
    let built = format!("{}/e2e/buildah-built:1", w.host());
    let creds = w.admin_creds();
    run(buildah(&["bud", "--cert-dir", certs, "--creds", &creds, "--isolation", "chroot", "-t", &built]).arg(&ctx));
    run(&mut buildah(&["push", "--cert-dir", certs, "--creds", &creds, &built]));
    let resp = w.client().get(w.url("/v2/e2e/buildah-built/manifests/1")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let manifest: Value = resp.json().await.expect("json");
    assert_eq!(manifest["layers"].as_array().expect("layers").len(), 2, "base layer plus the COPY layer");
    run(&mut buildah(&["rmi", "-a", "-f"]));
}

/// Starts a private containerd in `dir`; returns it and its socket.
fn start_containerd(dir: &Path) -> (std::process::Child, PathBuf) {
    require("containerd");
    require("ctr");
    std::fs::create_dir_all(dir).expect("mkdir");
    let sock = dir.join("containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
        d = dir.display(),
        s = sock.display()
    );
    std::fs::write(dir.join("config.toml"), config).expect("write config");
    let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start containerd");
    let ctr_ok =
        || Command::new("ctr").arg("--address").arg(&sock).arg("version").output().ok().filter(|o| o.status.success());
    wait_for(Duration::from_secs(30), "containerd to answer", ctr_ok);
    (child, sock)
}

#[tokio::test]
async fn containerd_ctr_pull_run_and_push() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("wharf.log");
    let w = Wharf::start_with(Options {
        tls: true,
        log: Some((log.clone(), "wharf_http=debug".into())),
        ..Options::default()
    });
    let (mut containerd, sock) = start_containerd(&tmp.path().join("ctrd"));
    push_busybox(&w, "e2e/ctr", "1", tmp.path(), "amd64").await;
    // containerd speaks plain HTTP to 127.x unless hosts.toml says otherwise.
    let hosts = tmp.path().join("hosts").join(w.host());
    std::fs::create_dir_all(&hosts).expect("mkdir");
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"https://{h}\"\n[host.\"https://{h}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = \"{ca}\"\n",
            h = w.host(),
            ca = w.ca_path().display()
        ),
    )
    .expect("write hosts.toml");
    let hosts_dir = tmp.path().join("hosts");
    let ctr = |args: &[&str]| {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&sock).args(args);
        cmd
    };
    let image = format!("{}/e2e/ctr:1", w.host());
    let hd = hosts_dir.to_str().expect("path");
    // With --user, containerd fetches tokens with the OAuth2 password grant (POST).
    let creds = w.admin_creds();
    let (ok, _, err) = run_with_input(&mut ctr(&["images", "pull", "--hosts-dir", hd, &image]), "");
    assert!(!ok, "an anonymous pull of a private repository is refused: {err}");
    run(&mut ctr(&["images", "pull", "--hosts-dir", hd, "--user", &creds, &image]));
    let container = format!("wharf-e2e-{}", w.addr.port());
    let out = run(&mut ctr(&["run", "--rm", &image, &container, "echo", "ctr ran it"]));
    assert_eq!(out.trim(), "ctr ran it");
    let pushed = format!("{}/e2e/ctr-pushed:2", w.host());
    run(&mut ctr(&["images", "tag", &image, &pushed]));
    run(&mut ctr(&["images", "push", "--hosts-dir", hd, "--user", &creds, &pushed]));
    let resp = w.client().get(w.url("/v2/e2e/ctr-pushed/manifests/2")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.lines().any(|l| l.contains("POST") && l.contains("/auth/token") && l.contains("200")),
        "containerd took its tokens with the OAuth2 POST form"
    );
    let _ = containerd.kill();
    let _ = containerd.wait();
}

/// The Python interpreter of the test virtualenv that holds oras.
fn oras_python() -> PathBuf {
    let venv = std::env::var_os("WHARF_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wharf-test-venv")))
        .expect("HOME or WHARF_TEST_VENV");
    let python = venv.join("bin/python");
    let ok = Command::new(&python).args(["-c", "import oras.client"]).output().map(|o| o.status.success());
    assert!(
        ok.unwrap_or(false),
        "the oras Python client is not installed in {}: run ./scripts/test (it makes the venv and pip-installs oras)",
        venv.display()
    );
    python
}

const ORAS_SCRIPT: &str = r#"
import json, os, sys
import oras.client, oras.oci
host, workdir, subject_digest, subject_size, password = sys.argv[1:6]
os.chdir(workdir)
with open("art.txt", "w") as f:
    f.write("an artifact pushed by oras\n")
c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
c.login(username="admin", password=password, hostname=host)
c.push(target=f"{host}/e2e/oras:v1", files=["art.txt"])
print("TAGS", json.dumps(c.get_tags(f"{host}/e2e/oras")))
os.makedirs("out", exist_ok=True)
files = c.pull(target=f"{host}/e2e/oras:v1", outdir="out")
print("PULLED", open(os.path.join("out", "art.txt")).read().strip())
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest=subject_digest, size=int(subject_size))
with open("sig.txt", "w") as f:
    f.write("a signature\n")
c.push(target=f"{host}/e2e/oras:sig", files=["sig.txt"], subject=subject,
       manifest_config="config.json:application/vnd.example.signature")
print("SUBJECT_PUSHED")
"#;

#[tokio::test]
async fn oras_push_pull_and_referrers() {
    let python = oras_python();
    let w = Wharf::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (subject, subject_bytes) = push_busybox(&w, "e2e/oras", "base", tmp.path(), "amd64").await;
    std::fs::write(tmp.path().join("config.json"), "{}").expect("write");
    let out = run(Command::new(&python)
        .args(["-c", ORAS_SCRIPT])
        .arg(w.host())
        .arg(tmp.path())
        .arg(&subject)
        .arg(subject_bytes.len().to_string())
        .arg(ADMIN_PASSWORD));
    assert!(out.contains("PULLED an artifact pushed by oras"), "oras output: {out}");
    let tags_line = out.lines().find(|l| l.starts_with("TAGS ")).expect("tags line");
    let tags: Value = serde_json::from_str(&tags_line[5..]).expect("tags json");
    assert_eq!(tags, json!(["base", "v1"]));
    assert!(out.contains("SUBJECT_PUSHED"), "oras output: {out}");
    let v: Value = w
        .client()
        .get(w.url(&format!("/v2/e2e/oras/referrers/{subject}")))
        .send()
        .await
        .expect("GET referrers")
        .json()
        .await
        .expect("json");
    let referrers = v["manifests"].as_array().expect("manifests");
    assert_eq!(referrers.len(), 1, "the artifact pushed with a subject is a referrer: {v}");
    assert_eq!(referrers[0]["artifactType"], "application/vnd.example.signature");
    let sig = w.client().head(w.url("/v2/e2e/oras/manifests/sig")).send().await.expect("HEAD");
    assert_eq!(referrers[0]["digest"], header(&sig, "docker-content-digest").as_str());
}

/// `wharf up` keeping its blobs in a real OpenStack Swift (TempAuth): docker pushes an image,
/// Wharf restarts (the data directory recorded the storage), docker pulls and runs it, and the
/// blobs are in the container as static large objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_push_and_pull_through_wharf_on_swift() {
    require_docker();
    let swift = wharf_testkit::Swift::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("swift-credentials");
    let lines = format!("user = {}\nkey = {}\n", wharf_testkit::SWIFT_USER, wharf_testkit::SWIFT_KEY);
    std::fs::write(&credentials, lines).expect("write");
    let storage = format!("swift://e2e/registry?auth={}&retry=5", swift.auth_url());
    let credentials = credentials.to_str().expect("path").to_owned();
    let extra = vec!["--storage".to_owned(), storage, "--storage-credentials".to_owned(), credentials];
    let mut w = Wharf::start_with(Options { tls: true, extra, ..Options::default() });
    let layer = busybox_layer(tmp.path());
    std::fs::write(tmp.path().join("rootfs.tar"), &layer).expect("write tar");
    let local = format!("wharf-e2e/swift:{}", w.addr.port());
    let remote = format!("{}/e2e/swift:1", w.host());
    let docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", tmp.path().join("docker")).args(args);
        cmd
    };
    let login = |w: &Wharf| {
        let (ok, out, err) = run_with_input(
            &mut docker(&["login", &w.host(), "-u", "admin", "--password-stdin"]),
            &format!("{ADMIN_PASSWORD}\n"),
        );
        assert!(ok, "docker login: {out} {err}");
    };
    login(&w);
    run(docker(&["import", tmp.path().join("rootfs.tar").to_str().expect("path"), &local])
        .arg("--change")
        .arg("CMD [\"sh\"]"));
    run(&mut docker(&["tag", &local, &remote]));
    run(&mut docker(&["push", &remote]));
    run(&mut docker(&["rmi", &local, &remote]));
    let stored = swift.list("e2e", "registry/blobs/");
    assert!(stored.len() >= 2, "the layer and the config are in the container: {stored:?}");
    assert!(!w.data_dir.join("blobs").exists(), "nothing is kept on the node's disk");

    w.restart();
    login(&w);
    let remote = format!("{}/e2e/swift:1", w.host());
    run(&mut docker(&["pull", &remote]));
    let hi = run(&mut docker(&["run", "--rm", &remote, "echo", "hello from swift"]));
    assert_eq!(hi.trim(), "hello from swift");
    run(&mut docker(&["rmi", &remote]));
    let recorded = std::fs::read_to_string(w.data_dir.join("storage")).expect("the storage record");
    assert!(recorded.starts_with("swift://e2e/registry?auth=") && !recorded.contains("testing"), "{recorded}");
}

/// Swift stops in the middle of a chunked push and comes back: the chunk sent while it was
/// down fails with 503 `UNAVAILABLE` after the retries and leaves the upload where it was; the
/// same chunk sent again once Swift is back continues it, the push completes, and the blob
/// reads back whole. Nothing of the failed chunk is part of the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_interrupted_by_swift_stopping_fails_cleanly_and_completes_after() {
    let mut swift = wharf_testkit::Swift::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("swift-credentials");
    let lines = format!("user = {}\nkey = {}\n", wharf_testkit::SWIFT_USER, wharf_testkit::SWIFT_KEY);
    std::fs::write(&credentials, lines).expect("write");
    let storage = format!("swift://faults/registry?auth={}&retry=2", swift.auth_url());
    let extra =
        vec!["--storage".to_owned(), storage, "--storage-credentials".to_owned(), credentials.display().to_string()];
    let w = Wharf::start_with(Options { tls: true, extra, ..Options::default() });
    let (c, b) = (w.client(), w.base());
    let data = bytes(91, 3 * 1024 * 1024 + 7);
    let (first, second) = data.split_at(1024 * 1024);
    let location = start_upload(&c, &b, "faults/app").await;
    let patch = |from: usize, chunk: &[u8]| {
        c.patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{}", from + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
    };
    let resp = patch(0, first).await.expect("PATCH 1");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    swift.stop_proxy();
    let resp = patch(first.len(), second).await.expect("PATCH 2");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.expect("an error body");
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    let status = c.get(&location).send().await.expect("upload status");
    assert_eq!(header(&status, "range"), format!("0-{}", first.len() - 1), "the upload is where it was");

    swift.start_proxy();
    let resp = patch(first.len(), second).await.expect("PATCH 2 again");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let digest = sha256(&data);
    let resp = c.put(format!("{location}{}digest={digest}", join(&location))).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got =
        c.get(format!("{b}/v2/faults/app/blobs/{digest}")).send().await.expect("GET").bytes().await.expect("body");
    assert!(got[..] == data[..], "the blob reads back whole");
}
