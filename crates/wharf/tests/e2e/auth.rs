//! Access control end to end: the field report's `docker login` sequence with `wharf trust`,
//! the security table of refused credentials, the account API and CLI, public repositories,
//! and certificate renewal without a restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::clients::{busybox_layer, require_docker};
use crate::harness::{ADMIN_PASSWORD, Options, Wharf, require, run, run_with_input, wait_for};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// A line added to /etc/hosts for the life of a test.
struct HostsEntry(String);

impl HostsEntry {
    fn add(line: &str) -> HostsEntry {
        let hosts = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
        std::fs::write("/etc/hosts", format!("{}\n{line}\n", hosts.trim_end())).expect("write /etc/hosts");
        HostsEntry(line.to_owned())
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let kept: Vec<&str> = hosts.lines().filter(|l| *l != self.0).collect();
            let _ = std::fs::write("/etc/hosts", format!("{}\n", kept.join("\n")));
        }
    }
}

/// The certs.d folders `wharf trust` writes for one registry, removed when the test ends.
struct TrustedCa(Vec<PathBuf>);

impl TrustedCa {
    fn for_host(host: &str) -> TrustedCa {
        let dirs = ["docker", "containers", "containerd"];
        TrustedCa(dirs.iter().map(|d| Path::new("/etc").join(d).join("certs.d").join(host)).collect())
    }
}

impl Drop for TrustedCa {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test]
async fn field_report_sequence_trust_then_docker_login_push_pull() {
    require_docker();
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = format!("wharf-e2e-{}.test", std::process::id());
    let _hosts = HostsEntry::add(&format!("::1 {name}"));
    let log = tmp.path().join("wharf.log");
    let w = Wharf::start_with(Options {
        tls: true,
        addr: Some("[::1]:0".into()),
        sans: vec![name.clone()],
        log: Some((log.clone(), "debug".into())),
        ..Options::default()
    });
    let host = format!("{name}:{}", w.addr.port());
    let trusted = TrustedCa::for_host(&host);
    let docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", tmp.path().join("docker")).args(args);
        cmd
    };
    let login = |user: &str, password: &str| {
        run_with_input(&mut docker(&["login", &host, "-u", user, "--password-stdin"]), &format!("{password}\n"))
    };
    // Before trusting the CA: the field report's x509 error (dockerd may need a moment to see
    // the new /etc/hosts line).
    let (ok, _, err) = wait_for(Duration::from_secs(30), "dockerd to resolve the test host name", || {
        let attempt = login("admin", ADMIN_PASSWORD);
        (!attempt.2.contains("no such host")).then_some(attempt)
    });
    assert!(!ok && err.contains("x509"), "docker login before trust must fail on the certificate: {err}");

    let fingerprint = w.printed("CA fingerprint (SHA-256):").expect("the banner prints the fingerprint");
    assert!(w.printed("trust it:").is_some_and(|l| l.contains(&fingerprint)), "the banner says how to trust");
    assert!(w.printed("log in:").is_some_and(|l| l.contains("docker login")), "the banner says how to log in");
    let url = format!("https://{host}");
    let wrong = vec!["AB"; 32].join(":");
    let (ok, _, err) = run_with_input(Command::new(WHARF).args(["trust", &url, "--fingerprint", &wrong]), "");
    assert!(!ok && err.contains("fingerprint mismatch"), "a wrong fingerprint is refused: {err}");
    assert!(!trusted.0[0].exists(), "nothing was installed after a mismatch");
    let (ok, _, err) = run_with_input(Command::new(WHARF).args(["trust", &url]), "");
    assert!(!ok && err.contains(&fingerprint), "without a fingerprint it shows it and refuses: {err}");
    run(Command::new(WHARF).args(["trust", &url, "--fingerprint", &fingerprint]));
    let ca = std::fs::read_to_string(w.ca_path()).expect("ca");
    for dir in &trusted.0 {
        assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).expect("installed"), ca, "{}", dir.display());
    }

    let (ok, out, err) = login("admin", ADMIN_PASSWORD);
    assert!(ok && out.contains("Login Succeeded"), "docker login after trust, no daemon restart: {out} {err}");
    let config = std::fs::read_to_string(tmp.path().join("docker/config.json")).expect("docker config");
    let config: Value = serde_json::from_str(&config).expect("json");
    let entry = &config["auths"][&host];
    let identity_token = entry["identitytoken"].as_str().expect("docker stored an identity token").to_owned();
    assert!(!config.to_string().contains(ADMIN_PASSWORD), "docker must not store the password: {config}");

    // Accounts through the CLI, which talks to the API with the CA that `wharf trust` installed.
    let cli = |args: &[&str], input: &str| {
        let mut cmd = Command::new(WHARF);
        cmd.env("WHARF_CONFIG", tmp.path().join("wharf.json")).args(args);
        run_with_input(&mut cmd, input)
    };
    let (ok, out, err) = cli(&["login", &url, "-u", "admin", "--password-stdin"], &format!("{ADMIN_PASSWORD}\n"));
    assert!(ok, "wharf login: {out} {err}");
    let (ok, _, err) = cli(&["user", "create", "alice"], "alice-password\n");
    assert!(ok, "wharf user create: {err}");
    let (ok, out, _) = cli(&["user", "ls"], "");
    assert!(ok && out.contains("alice"), "wharf user ls: {out}");

    // docker push and pull as the administrator, then as alice in her namespace only.
    std::fs::write(tmp.path().join("rootfs.tar"), busybox_layer(tmp.path())).expect("tar");
    let local = format!("wharf-e2e/trust:{}", w.addr.port());
    run(&mut docker(&["import", tmp.path().join("rootfs.tar").to_str().expect("path"), &local]));
    let admin_image = format!("{host}/admin/app:1");
    run(&mut docker(&["tag", &local, &admin_image]));
    run(&mut docker(&["push", &admin_image]));
    run(&mut docker(&["rmi", &admin_image]));
    run(&mut docker(&["pull", &admin_image]));
    run(&mut docker(&["logout", &host]));
    let (ok, out, err) = login("alice", "alice-password");
    assert!(ok && out.contains("Login Succeeded"), "alice logs in: {out} {err}");
    let alice_image = format!("{host}/alice/app:1");
    run(&mut docker(&["tag", &local, &alice_image]));
    run(&mut docker(&["push", &alice_image]));
    let (ok, _, err) = run_with_input(&mut docker(&["push", &admin_image]), "");
    assert!(!ok && err.contains("denied"), "alice may not push into admin's namespace: {err}");
    run(&mut docker(&["rmi", &local, &admin_image, &alice_image]));

    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("request"), "debug logging was on: {}", log.len());
    for secret in [ADMIN_PASSWORD, "alice-password", identity_token.as_str()] {
        assert!(!log.contains(secret), "the log must never hold a password or token");
    }
}

/// What a refused `/v2/` request must look like.
struct Refusal {
    status: u16,
    code: &'static str,
    /// Fragments the `WWW-Authenticate` header must contain.
    challenge: &'static [&'static str],
}

async fn expect(what: &str, resp: reqwest::Response, want: &Refusal, failures: &mut Vec<String>) {
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["errors"][0]["code"].as_str().unwrap_or("").to_owned();
    let challenge_ok = want.challenge.iter().all(|f| challenge.contains(f));
    if status != want.status || code != want.code || !challenge_ok {
        failures.push(format!(
            "{what}: got {status} {code} [{challenge}], want {} {} {:?}",
            want.status, want.code, want.challenge
        ));
    }
}

/// Gets a token from the token endpoint with GET (and Basic credentials when given).
pub(crate) async fn token(w: &Wharf, creds: Option<(&str, &str)>, query: &str) -> (StatusCode, Value) {
    let mut req = w.anonymous_client().get(w.url(&format!("/auth/token?service=wharf-registry&{query}")));
    if let Some((user, password)) = creds {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await.expect("token request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn access_token(w: &Wharf, creds: Option<(&str, &str)>, query: &str) -> String {
    let (status, body) = token(w, creds, query).await;
    assert_eq!(status, StatusCode::OK, "token for {query}: {body}");
    body["token"].as_str().expect("token").to_owned()
}

/// An API session of `user`.
pub(crate) async fn api_login(w: &Wharf, user: &str, password: &str) -> String {
    let resp = w
        .anonymous_client()
        .post(w.url("/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK, "login of {user}");
    resp.json::<Value>().await.expect("json")["auth_token"].as_str().expect("auth_token").to_owned()
}

pub(crate) async fn create_user(w: &Wharf, session: &str, name: &str, password: &str) {
    let resp = w
        .anonymous_client()
        .post(w.url("/api/users"))
        .bearer_auth(session)
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .expect("create user");
    assert_eq!(resp.status(), StatusCode::CREATED, "create {name}");
}

/// The claims of a token, read without checking its signature.
pub(crate) fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&raw).expect("json claims")
}

/// A token for alice signed with `key_pem`, with the given kid, audience and expiry; `like` is
/// a real token of hers, whose account id and credentials epoch it copies.
fn mint(key_pem: &[u8], kid: &str, aud: &str, exp: u64, access: Value, like: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let real = claims_of(like);
    let claims = json!({"iss": "wharf", "sub": "alice", "aud": aud, "exp": exp, "nbf": now - 60, "iat": now - 60,
        "jti": "forged", "access": access, "uid": real["uid"], "epoch": real["epoch"]});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(key_pem).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test]
async fn security_table_refuses_every_bad_credential_with_the_right_challenge() {
    let w = Wharf::start_tls();
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    create_user(&w, &admin, "alice", "alice-password").await;
    create_user(&w, &admin, "bob", "bob-password").await;
    let alice = Some(("alice", "alice-password"));
    let push_scope = "scope=repository:alice/app:pull,push";
    let push = access_token(&w, alice, &format!("{push_scope}&offline_token=true&client_id=test")).await;
    let (_, with_refresh) = token(&w, alice, &format!("{push_scope}&offline_token=true&client_id=test")).await;
    let refresh = with_refresh["refresh_token"].as_str().expect("refresh token").to_owned();
    let pull_only = access_token(&w, alice, "scope=repository:alice/app:pull").await;
    let into_bob = access_token(&w, alice, "scope=repository:bob/app:pull,push").await;
    let anonymous = access_token(&w, None, push_scope).await;
    let c = w.anonymous_client();
    let uploads = |repo: &str| w.url(&format!("/v2/{repo}/blobs/uploads/"));

    // The control: alice's push token pushes into her namespace.
    let resp = c.post(uploads("alice/app")).bearer_auth(&push).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "the control case must pass");

    let key = std::fs::read(w.data_dir.join("pki/token.key")).expect("token key");
    let kid = jsonwebtoken::decode_header(&push).expect("header").kid.expect("kid");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let access = json!([{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]);
    let other_key = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let forged = mint(other_key.as_bytes(), &kid, "wharf-registry", now + 300, access.clone(), &push);
    let expired = mint(&key, &kid, "wharf-registry", now - 120, access.clone(), &push);
    let foreign = mint(&key, &kid, "another-registry", now + 300, access.clone(), &push);
    assert_eq!(
        c.post(uploads("alice/app"))
            .bearer_auth(mint(&key, &kid, "wharf-registry", now + 300, access, &push))
            .send()
            .await
            .expect("POST")
            .status(),
        StatusCode::ACCEPTED,
        "a token minted with the real key is the control for the minted cases"
    );

    let invalid = Refusal {
        status: 401,
        code: "UNAUTHORIZED",
        challenge: &["Bearer realm=\"https://", "/auth/token\"", "error=\"invalid_token\""],
    };
    let insufficient = Refusal {
        status: 401,
        code: "UNAUTHORIZED",
        challenge: &[
            "service=\"wharf-registry\"",
            "scope=\"repository:alice/app:pull,push\"",
            "error=\"insufficient_scope\"",
        ],
    };
    let mut failures = Vec::new();
    for (what, token) in
        [("forged token (other key)", &forged), ("expired token", &expired), ("token for another service", &foreign)]
    {
        let resp = c.post(uploads("alice/app")).bearer_auth(token).send().await.expect("POST");
        expect(what, resp, &invalid, &mut failures).await;
    }
    let resp = c.post(uploads("alice/app")).bearer_auth(&pull_only).send().await.expect("POST");
    expect("pull token used to push", resp, &insufficient, &mut failures).await;
    let resp = c.get(w.url("/v2/alice/other/tags/list")).bearer_auth(&push).send().await.expect("GET");
    let other_repo = Refusal {
        status: 401,
        code: "UNAUTHORIZED",
        challenge: &["scope=\"repository:alice/other:pull\"", "insufficient_scope"],
    };
    expect("token for repository A used on B", resp, &other_repo, &mut failures).await;
    let resp = c.post(uploads("bob/app")).bearer_auth(&into_bob).send().await.expect("POST");
    let denied = Refusal {
        status: 401,
        code: "DENIED",
        challenge: &["scope=\"repository:bob/app:pull,push\"", "error=\"insufficient_scope\""],
    };
    expect("user pushing into another user's namespace", resp, &denied, &mut failures).await;
    let anonymous_push =
        Refusal { status: 401, code: "UNAUTHORIZED", challenge: &["scope=\"repository:alice/app:pull,push\""] };
    let resp = c.post(uploads("alice/app")).send().await.expect("POST");
    expect("anonymous push without a token", resp, &anonymous_push, &mut failures).await;
    let resp = c.post(uploads("alice/app")).bearer_auth(&anonymous).send().await.expect("POST");
    expect("anonymous push with an anonymous token", resp, &anonymous_push, &mut failures).await;
    let resp = c.get(w.url("/v2/")).basic_auth("alice", Some("wrong-password")).send().await.expect("GET");
    expect("wrong password on /v2/", resp, &invalid, &mut failures).await;
    let resp = c.get(w.url("/v2/_catalog")).bearer_auth(&push).send().await.expect("GET");
    // A user may list the catalog (it shows what they may pull): a token without the scope
    // is sent back for one that has it.
    let catalog = Refusal { status: 401, code: "UNAUTHORIZED", challenge: &["scope=\"registry:catalog:*\""] };
    expect("catalog with a token that lacks its scope", resp, &catalog, &mut failures).await;
    let resp = c.get(w.url("/v2/")).send().await.expect("GET");
    let base =
        Refusal { status: 401, code: "UNAUTHORIZED", challenge: &["Bearer realm=", "service=\"wharf-registry\""] };
    expect("anonymous /v2/", resp, &base, &mut failures).await;
    assert!(failures.is_empty(), "security table failures:\n{}", failures.join("\n"));

    let (status, _) = token(&w, Some(("alice", "wrong-password")), push_scope).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong password at the token endpoint");
    let form =
        [("grant_type", "password"), ("username", "alice"), ("password", "wrong"), ("service", "wharf-registry")];
    let resp = c.post(w.url("/auth/token")).form(&form).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "wrong password in the OAuth2 form");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "wharf-registry"),
        ("scope", push_scope.trim_start_matches("scope=")),
    ];
    let resp = c.post(w.url("/auth/token")).form(&form).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::OK, "the refresh token works before alice is disabled");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["scope"], "repository:alice/app:pull,push");

    // Disabling alice ends her old access token and her refresh token at once.
    let resp = c
        .patch(w.url("/api/users/alice"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = c.post(uploads("alice/app")).bearer_auth(&push).send().await.expect("POST");
    let mut failures = Vec::new();
    expect("a disabled user's old token", resp, &invalid, &mut failures).await;
    assert!(failures.is_empty(), "{failures:?}");
    let resp = c.post(w.url("/auth/token")).form(&form).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "a disabled user's refresh token");
    let (status, _) = token(&w, alice, push_scope).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a disabled user's password");

    // Repeated wrong passwords stop this user from this source for a while, even with the
    // right password (from elsewhere it still works: see the security tests). This source
    // already failed a few times above, so the stop may come early.
    let (status, _) = token(&w, Some(("bob", "not-bobs-password")), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut failures_before_lock = 1;
    loop {
        let (status, _) = token(&w, Some(("bob", "not-bobs-password")), "").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        failures_before_lock += 1;
        assert!(failures_before_lock <= 10, "no lock after 10 wrong passwords");
    }
    let (status, body) = token(&w, Some(("bob", "bob-password")), "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "rate limited: {body}");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
}

#[tokio::test]
async fn account_api_sessions_users_and_errors() {
    let w = Wharf::start_tls();
    let c = w.anonymous_client();
    let resp = c
        .post(w.url("/auth/login"))
        .json(&json!({"username": "admin", "password": "nope"}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.json::<Value>().await.expect("json")["message"].is_string());
    let resp = c.post(w.url("/auth/login")).body("{not json").send().await.expect("login");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = c.post(w.url("/auth/login")).body(vec![b' '; 70_000]).send().await.expect("login");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    let me: Value = c.get(w.url("/api/me")).bearer_auth(&admin).send().await.expect("me").json().await.expect("json");
    assert_eq!(me, json!({"name": "admin", "admin": true}));
    assert_eq!(c.get(w.url("/api/me")).send().await.expect("me").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.get(w.url("/api/me")).bearer_auth("forged").send().await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );

    create_user(&w, &admin, "carol", "carol-password").await;
    let post = |body: Value| c.post(w.url("/api/users")).bearer_auth(&admin).json(&body).send();
    assert_eq!(
        post(json!({"name": "carol", "password": "another-one"})).await.expect("dup").status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        post(json!({"name": "Carol!", "password": "another-one"})).await.expect("bad").status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"name": "dave", "password": "short"})).await.expect("short").status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(post(json!({"password": "no-name-here"})).await.expect("no name").status(), StatusCode::BAD_REQUEST);

    let carol = api_login(&w, "carol", "carol-password").await;
    assert_eq!(
        c.get(w.url("/api/users")).bearer_auth(&carol).send().await.expect("ls").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get(w.url("/api/users/admin")).bearer_auth(&carol).send().await.expect("show").status(),
        StatusCode::FORBIDDEN
    );
    let users: Value =
        c.get(w.url("/api/users")).bearer_auth(&admin).send().await.expect("ls").json().await.expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(2));
    let resp = c
        .put(w.url("/api/users/carol/password"))
        .bearer_auth(&carol)
        .json(&json!({"password": "carol-new-password"}))
        .send()
        .await
        .expect("pw");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "changing one's own password needs the old one");
    let body = json!({"password": "carol-new-password", "old_password": "carol-password"});
    let resp = c.put(w.url("/api/users/carol/password")).bearer_auth(&carol).json(&body).send().await.expect("pw");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(w.url("/api/me")).bearer_auth(&carol).send().await.expect("me").status(),
        StatusCode::UNAUTHORIZED,
        "a new password ends sessions"
    );
    let carol = api_login(&w, "carol", "carol-new-password").await;

    let second = api_login(&w, "admin", ADMIN_PASSWORD).await;
    let sessions: Value =
        c.get(w.url("/api/sessions")).bearer_auth(&admin).send().await.expect("ls").json().await.expect("json");
    let sessions = sessions.as_array().expect("array");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(!sessions.iter().any(|s| s.to_string().contains(&admin)), "the list never shows secrets");
    let other = sessions.iter().find(|s| s["current"] == false).expect("the other session")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        c.delete(w.url(&format!("/api/sessions/{other}"))).bearer_auth(&carol).send().await.expect("rm").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(w.url(&format!("/api/sessions/{other}"))).bearer_auth(&admin).send().await.expect("rm").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(w.url("/api/me")).bearer_auth(&second).send().await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );

    let resp = c.delete(w.url("/api/users/admin")).bearer_auth(&admin).send().await.expect("rm");
    assert_eq!(resp.status(), StatusCode::CONFLICT, "the last administrator stays");
    assert_eq!(
        c.delete(w.url("/api/users/nobody")).bearer_auth(&admin).send().await.expect("rm").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(w.url("/api/users/carol")).bearer_auth(&admin).send().await.expect("rm").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(w.url("/api/me")).bearer_auth(&carol).send().await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.post(w.url("/auth/logout")).bearer_auth(&admin).send().await.expect("logout").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(w.url("/api/me")).bearer_auth(&admin).send().await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn public_repositories_are_pullable_anonymously() {
    let w = Wharf::start_tls();
    let (layer, config) = (crate::oci::bytes(1, 100), b"{}".to_vec());
    let repo = "library/base";
    let ld = crate::oci::push_blob(&w.client(), &w.base(), repo, &layer).await;
    let cd = crate::oci::push_blob(&w.client(), &w.base(), repo, &config).await;
    let manifest = crate::oci::image_manifest((&cd, config.len()), &[(&ld, layer.len())], json!({}));
    let resp = crate::oci::put_manifest(&w.client(), &w.base(), repo, "1", crate::oci::OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let c = w.anonymous_client();
    let manifest_url = w.url(&format!("/v2/{repo}/manifests/1"));
    assert_eq!(c.get(&manifest_url).send().await.expect("GET").status(), StatusCode::UNAUTHORIZED, "private at first");
    let anonymous = access_token(&w, None, &format!("scope=repository:{repo}:pull")).await;
    assert_eq!(
        c.get(&manifest_url).bearer_auth(&anonymous).send().await.expect("GET").status(),
        StatusCode::UNAUTHORIZED
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let cli = |args: &[&str], input: &str| {
        let mut cmd = Command::new(WHARF);
        cmd.env("WHARF_CONFIG", tmp.path().join("wharf.json")).args(args);
        run_with_input(&mut cmd, input)
    };
    let ca = w.ca_path();
    let (ok, _, err) = cli(
        &["login", &w.base(), "-u", "admin", "--password-stdin", "--ca", ca.to_str().expect("path")],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(ok, "wharf login: {err}");
    let (ok, _, err) = cli(&["repo", "public", repo], "");
    assert!(ok, "wharf repo public: {err}");
    let (ok, out, err) = cli(&["repo", "sparse-manifests", repo, "on"], "");
    assert!(ok && out.contains("public; sparse manifests accepted"), "one setting keeps the other: {out} {err}");
    let (ok, out, err) = cli(&["repo", "sparse-manifests", repo, "off"], "");
    assert!(ok && out.contains("public; sparse manifests refused"), "wharf repo sparse-manifests off: {out} {err}");
    let (ok, out, err) = cli(&["repo", "show", repo], "");
    assert!(ok && out.contains(&format!("{repo}: public; sparse manifests refused")), "wharf repo show: {out} {err}");

    let anonymous = access_token(&w, None, &format!("scope=repository:{repo}:pull,push")).await;
    let resp = c.get(&manifest_url).bearer_auth(&anonymous).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK, "anonymous pull with a token");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), manifest.as_slice());
    assert_eq!(
        c.get(&manifest_url).send().await.expect("GET").status(),
        StatusCode::OK,
        "anonymous pull without a token"
    );
    let resp = c.post(w.url(&format!("/v2/{repo}/blobs/uploads/"))).bearer_auth(&anonymous).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "anonymous push stays refused");
    let (ok, _, err) = cli(&["logout"], "");
    assert!(ok, "wharf logout: {err}");
    let (ok, _, _) = cli(&["repo", "private", repo], "");
    assert!(!ok, "logged out");
}

/// The serial number of the certificate the node presents now.
fn served_serial(w: &Wharf) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial",
            w.addr
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The names (subject alternative names) of the certificate the node presents now.
fn served_names(w: &Wharf) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
            w.addr
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn server_certificate_renews_without_a_restart() {
    require("openssl");
    let w = Wharf::start_with(Options {
        tls: true,
        sans: vec!["registry.test".into()],
        extra: vec!["--node-cert-validity".into(), "10".into()],
        ..Options::default()
    });
    assert!(served_names(&w).contains("DNS:registry.test"), "the first certificate has --san");
    let first = served_serial(&w);
    assert!(first.starts_with("serial="), "openssl read the certificate: {first:?}");
    let renewed = wait_for(Duration::from_secs(30), "a renewed certificate", || {
        let now = served_serial(&w);
        (now.starts_with("serial=") && now != first).then_some(now)
    });
    assert_ne!(renewed, first);
    assert!(served_names(&w).contains("DNS:registry.test"), "the renewed certificate keeps --san");
    let resp = w.client().get(w.url("/v2/")).send().await.expect("a verified request after renewal");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_auth_requests_get_clear_errors() {
    let w = Wharf::start_tls();
    let c = w.anonymous_client();
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    let token = |q: &str| c.get(w.url(&format!("/auth/token?{q}")));
    let form = |body: &str| {
        c.post(w.url("/auth/token")).header("content-type", "application/x-www-form-urlencoded").body(body.to_owned())
    };
    // (what, request, expected status)
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("scope without actions", token("service=wharf-registry&scope=repository:a"), 400),
        ("scope with a quote", token("service=wharf-registry&scope=repository:a:pu%22ll"), 400),
        ("unknown service", token("service=other&scope=repository:a:pull"), 400),
        ("Basic that is not base64", token("service=wharf-registry").header("authorization", "Basic !!!"), 401),
        ("Basic without a colon", token("service=wharf-registry").header("authorization", "Basic YWJj"), 401),
        ("unknown scheme", token("service=wharf-registry").header("authorization", "Negotiate abc"), 401),
        ("unknown user", token("service=wharf-registry").basic_auth("nobody", Some("whatever-pw")), 401),
        ("form without grant_type", form("service=wharf-registry"), 400),
        ("unsupported grant", form("grant_type=authorization_code&code=x"), 400),
        ("password grant without password", form("grant_type=password&username=admin"), 400),
        ("refresh grant without token", form("grant_type=refresh_token"), 400),
        ("refresh grant with a forged token", form("grant_type=refresh_token&refresh_token=forged"), 401),
        ("form with a bad scope", form("grant_type=password&username=admin&password=x&scope=nonsense"), 400),
        ("oversized form", form(&"a".repeat(70_000)), 413),
        ("login with a wrong type", c.post(w.url("/auth/login")).json(&json!({"username": 1, "password": []})), 400),
        ("user with a wrong type", c.post(w.url("/api/users")).bearer_auth(&admin).json(&json!({"name": 5})), 400),
        ("patch with junk", c.patch(w.url("/api/users/admin")).bearer_auth(&admin).body("junk"), 400),
        (
            "visibility of a bad name",
            c.patch(w.url("/api/repositories/UPPER/Case")).bearer_auth(&admin).json(&json!({"public": true})),
            400,
        ),
        ("session id that does not exist", c.delete(w.url("/api/sessions/0000")).bearer_auth(&admin), 404),
        ("Bearer that is not a session", c.get(w.url("/api/users")).bearer_auth("x.y.z"), 401),
        ("registry token on the API", c.get(w.url("/api/users")).header("authorization", "Basic YWRtaW46eA=="), 401),
    ];
    let mut failures = Vec::new();
    for (what, request, want) in cases {
        let resp = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let explained =
            body["message"].is_string() || body["error"].is_string() || body["errors"][0]["code"].is_string();
        if status != want || !explained {
            failures.push(format!("{what}: got {status} {body}, want {want} with an explanation"));
        }
    }
    assert!(failures.is_empty(), "auth bad-input failures:\n{}", failures.join("\n"));
    // Nothing above changed the accounts or broke the administrator's session.
    let users: Value =
        c.get(w.url("/api/users")).bearer_auth(&admin).send().await.expect("ls").json().await.expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(1));
}

/// A cross-repository mount asked without credentials is challenged for pull on its source as
/// well as push on its target, as distribution does; a token for exactly the challenged scopes
/// mounts the blob (201) instead of opening an upload (202).
#[tokio::test]
async fn a_mount_challenge_names_its_source_and_a_token_for_it_mounts() {
    let w = Wharf::start();
    let admin = api_login(&w, "admin", ADMIN_PASSWORD).await;
    create_user(&w, &admin, "alice", "alice-password").await;
    let alice = Some(("alice", "alice-password"));
    let as_alice = |req: reqwest::RequestBuilder| req.basic_auth("alice", Some("alice-password"));
    let data = crate::oci::bytes(11, 4096);
    let digest = crate::oci::sha256(&data);
    let c = w.anonymous_client();
    let pushed = as_alice(c.post(w.url(&format!("/v2/alice/src/blobs/uploads/?digest={digest}"))))
        .body(data)
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), StatusCode::CREATED, "the blob to mount is in alice/src");

    let mount = w.url(&format!("/v2/alice/dst/blobs/uploads/?mount={digest}&from=alice/src"));
    let resp = c.post(&mount).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let scope = challenge.split("scope=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("");
    assert_eq!(scope, "repository:alice/dst:pull,push repository:alice/src:pull", "{challenge}");

    // A client asks for the challenged scopes (one `scope` parameter, space separated).
    let token = access_token(&w, alice, &format!("scope={}", scope.replace(' ', "%20"))).await;
    let resp = c.post(&mount).bearer_auth(&token).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED, "mounted with the challenged scopes");
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(location.ends_with(&format!("/v2/alice/dst/blobs/{digest}")), "{location}");
    let head = c.head(w.url(&format!("/v2/alice/dst/blobs/{digest}"))).bearer_auth(&token).send().await;
    assert_eq!(head.expect("HEAD").status(), StatusCode::OK, "the blob is in alice/dst now");

    // The control: without pull on the source, the same request opens an ordinary upload.
    let target_only = access_token(&w, alice, "scope=repository:alice/other:pull,push").await;
    let other = w.url(&format!("/v2/alice/other/blobs/uploads/?mount={digest}&from=alice/src"));
    let resp = c.post(&other).bearer_auth(&target_only).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "no mount without pull on the source");
}
