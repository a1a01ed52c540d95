//! LDAP against a real slapd (memberof overlay) started by the test: a directory configured
//! through `wharf directory`, over LDAPS and StartTLS with the directory's CA, a test login,
//! a first login that makes the account, a sync that maps a group to a team, a user removed
//! upstream losing every way in at the next sync (sessions, client bundle, `docker login`
//! identity token), and the directory stopped (a clear error; the administrator still logs in).

use std::path::Path;

use wharf_testkit::{LDAP_ADMIN_DN, LDAP_ADMIN_PASSWORD, LDAP_BASE, Slapd};

use crate::harness::{ADMIN_PASSWORD, Options, Wharf, require};
use crate::services::{bundle, login, ok, refused, try_wharf, wharf};

/// `wharf login` as `user`: whether it succeeded, and what it said.
fn try_login(w: &Wharf, dir: &Path, user: &str, password: &str) -> (bool, String) {
    let config = dir.join(format!("{user}-try-config.json"));
    let (ok, _, said) = try_wharf(
        &config,
        &["login", &w.base(), "-u", user, "--password-stdin", "--ca", w.ca_path().to_str().expect("path")],
        &format!("{password}\n"),
    );
    (ok, said)
}

/// The directory configuration: one server at `url`, `starttls` or not, groups by memberOf,
/// accounts made at first login, group `devs` mapped to team acme/devs.
fn config(dir: &Path, slapd: &Slapd, url: &str, starttls: bool) -> std::path::PathBuf {
    let config = serde_json::json!({
        "servers": [{
            "url": url,
            "starttls": starttls,
            "ca_pem": slapd.ca_pem(),
            "bind_dn": LDAP_ADMIN_DN,
            "user_base": format!("ou=people,{LDAP_BASE}"),
            "user_filter": "(objectClass=inetOrgPerson)",
            "username_attr": "uid",
            "membership": "memberOf",
        }],
        "jit": true,
        "sync_interval_secs": 0,
        "team_mappings": [{"group_dn": Slapd::group_dn("devs"), "org": "acme", "team": "devs"}],
    });
    let path = dir.join(format!("directory-{starttls}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write the configuration");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_users_log_in_follow_their_groups_and_lose_every_access_once_gone_upstream() {
    require("docker");
    let mut slapd = Slapd::start();
    slapd.add_user("alice", "alice-ldap-pw-1");
    slapd.add_user("bob", "bob-ldap-pw-1");
    slapd.add_group("devs", &["alice", "bob"]);
    slapd.add_group("admins", &["alice", "bob"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = Wharf::start_with(Options {
        tls: true,
        extra: vec!["--docker-host".into(), "none".into()],
        ..Options::default()
    });
    let admin = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    let password_file = tmp.path().join("bind-password");
    std::fs::write(&password_file, format!("{LDAP_ADMIN_PASSWORD}\n")).expect("write");

    // Over LDAPS with the directory's CA.
    let ldaps = config(tmp.path(), &slapd, &slapd.tls_url(), false);
    let pw = password_file.to_str().expect("path");
    wharf(&admin, &["directory", "set", ldaps.to_str().expect("path"), "--bind-password-file", pw], "");
    let shown = wharf(&admin, &["directory", "show"], "");
    assert!(shown.contains(&slapd.tls_url()) && !shown.contains(LDAP_ADMIN_PASSWORD), "{shown}");
    let tested = wharf(&admin, &["directory", "test", "alice"], "alice-ldap-pw-1\n");
    assert!(tested.contains(&Slapd::user_dn("alice")), "{tested}");
    assert!(tested.contains(&Slapd::group_dn("devs")) && tested.contains(&Slapd::group_dn("admins")), "{tested}");
    let (passed, _, said) = try_wharf(&admin, &["directory", "test", "alice"], "wrong\n");
    assert!(!passed && said.contains("invalid username or password"), "{said}");

    // Over StartTLS (the bind password kept: the same server and bind DN).
    let starttls = config(tmp.path(), &slapd, &slapd.url(), true);
    wharf(&admin, &["directory", "set", starttls.to_str().expect("path")], "");
    assert!(wharf(&admin, &["directory", "test", "bob"], "bob-ldap-pw-1\n").contains(&Slapd::user_dn("bob")));

    // A first login makes the account; a wrong password is refused; no local password works.
    let (logged_in, said) = try_login(&w, tmp.path(), "alice", "wrong-password");
    assert!(!logged_in, "a wrong LDAP password: {said}");
    // An empty password would be an anonymous bind; a wildcard would match anyone.
    let empty = w
        .anonymous_client()
        .post(w.url("/auth/login"))
        .json(&serde_json::json!({"username": "alice", "password": ""}))
        .send()
        .await
        .expect("login");
    assert_eq!(empty.status(), 401, "an empty LDAP password");
    assert!(!try_login(&w, tmp.path(), "*", "alice-ldap-pw-1").0, "a wildcard user name");
    let (passed, _, _) = try_wharf(&admin, &["directory", "test", "al*"], "alice-ldap-pw-1\n");
    assert!(!passed, "a wildcard in a test login");
    let alice_config = login(&w.base(), &w.ca_path(), &tmp.path().join("alice"), "alice", "alice-ldap-pw-1");
    assert!(wharf(&admin, &["user", "ls"], "").contains("alice"), "made at first login");

    // A sync maps the group to the team (bob has no account yet: he logs in first).
    let synced = wharf(&admin, &["directory", "sync"], "");
    assert!(synced.contains("Synced 2 directory users") && synced.contains("acme/devs"), "{synced}");
    assert_eq!(wharf(&admin, &["team", "ls", "acme"], "").trim(), "acme/devs\talice");
    wharf(&admin, &["collection", "create", "/Shared/devs"], "");
    wharf(&admin, &["grant", "add", "team:acme/devs", "viewonly", "/Shared/devs"], "");
    assert!(wharf(&alice_config, &["grant", "ls"], "").contains("team:acme/devs\tviewonly\t/Shared/devs"));

    // Alice's ways in: a client bundle, a refresh token (docker login's identity token).
    let alice_bundle = bundle(&w, &tmp.path().join("alice-bundle"), "alice", "alice-ldap-pw-1");
    ok(&alice_bundle, &["service", "ls"]);
    let c = w.anonymous_client();
    let token = c
        .get(w.url(
            "/auth/token?service=wharf-registry&offline_token=true&client_id=test&scope=repository:alice/app:pull",
        ))
        .basic_auth("alice", Some("alice-ldap-pw-1"))
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), 200, "a docker login of an LDAP user");
    let body: serde_json::Value = token.json().await.expect("json");
    let refresh = body["refresh_token"].as_str().expect("a refresh token").to_owned();
    let refreshed = |refresh: String| {
        let refresh = refresh.clone();
        let form =
            [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("service", "wharf-registry")];
        c.post(w.url("/auth/token")).form(&form).send()
    };
    assert_eq!(refreshed(refresh.clone()).await.expect("refresh").status(), 200);

    // Gone upstream: the next sync disables her, and every way in ends at once.
    slapd.delete_user("alice", &["devs", "admins"]);
    let synced = wharf(&admin, &["directory", "sync"], "");
    assert!(synced.contains("disabled alice"), "{synced}");
    assert_eq!(wharf(&admin, &["team", "ls", "acme"], "").trim(), "acme/devs", "she left the team too");
    let said = refused(&alice_bundle, &["service", "ls"]);
    assert!(said.contains("this client bundle is not valid"), "her bundle: {said}");
    assert_eq!(refreshed(refresh).await.expect("refresh").status(), 401, "her identity token");
    let (still, _, _) = try_wharf(&alice_config, &["grant", "ls"], "");
    assert!(!still, "her API session");
    assert!(!try_login(&w, tmp.path(), "alice", "alice-ldap-pw-1").0, "her login");

    // The directory stopped: a clear error; the administrator still logs in; bob is refused.
    slapd.stop();
    let (passed, _, said) = try_wharf(&admin, &["directory", "test", "bob"], "bob-ldap-pw-1\n");
    assert!(!passed && said.contains("unreachable"), "the directory down: {said}");
    let (passed, _, said) = try_wharf(&admin, &["directory", "sync"], "");
    assert!(!passed && said.contains("unreachable"), "a sync with the directory down: {said}");
    assert!(try_login(&w, tmp.path(), "admin", ADMIN_PASSWORD).0, "the administrator logs in without the directory");
    let (logged_in, said) = try_login(&w, tmp.path(), "bob", "bob-ldap-pw-1");
    assert!(!logged_in && said.contains("invalid username or password"), "bob with the directory down: {said}");
}

/// Active Directory: a real Samba AD DC started by the test, users by `sAMAccountName`, and a
/// group of a group (AD's in-chain rule) mapped to a team.
#[test]
fn active_directory_users_log_in_and_a_nested_group_reaches_its_team() {
    use wharf_testkit::{AD_ADMIN, AD_ADMIN_PASSWORD, AD_BASE, SambaAd};
    let ad = SambaAd::start();
    ad.tool(&["user", "create", "carol", "Carol!Passw0rd1", "--given-name=Carol", "--surname=AD"]);
    ad.tool(&["user", "create", "dave", "Dave!Passw0rd1", "--given-name=Dave", "--surname=AD"]);
    ad.tool(&["group", "add", "ops-leads"]);
    ad.tool(&["group", "add", "registry-admins"]);
    ad.tool(&["group", "addmembers", "ops-leads", "carol"]);
    ad.tool(&["group", "addmembers", "registry-admins", "ops-leads"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = Wharf::start_with(Options {
        tls: true,
        extra: vec!["--docker-host".into(), "none".into()],
        ..Options::default()
    });
    let admin = login(&w.base(), &w.ca_path(), tmp.path(), "admin", ADMIN_PASSWORD);
    let config = serde_json::json!({
        "servers": [{
            "url": ad.url(),
            "bind_dn": AD_ADMIN,
            "user_base": format!("CN=Users,{AD_BASE}"),
            "user_filter": "(&(objectClass=user)(objectCategory=person))",
            "username_attr": "sAMAccountName",
            "membership": "nested",
        }],
        "jit": true,
        "sync_interval_secs": 0,
        "team_mappings": [{"group_dn": SambaAd::dn("registry-admins"), "org": "corp", "team": "registry"}],
    });
    let file = tmp.path().join("ad.json");
    std::fs::write(&file, serde_json::to_vec(&config).expect("json")).expect("write");
    let password = tmp.path().join("ad-password");
    std::fs::write(&password, AD_ADMIN_PASSWORD).expect("write");
    let set =
        ["directory", "set", file.to_str().expect("path"), "--bind-password-file", password.to_str().expect("path")];
    wharf(&admin, &set, "");

    // The nested group shows in a test login, and a first login makes the account.
    let tested = wharf(&admin, &["directory", "test", "carol"], "Carol!Passw0rd1\n");
    assert!(tested.contains(&SambaAd::dn("Carol AD")), "{tested}");
    assert!(tested.contains(&SambaAd::dn("registry-admins")), "the group of her group: {tested}");
    assert!(!try_login(&w, tmp.path(), "carol", "wrong-Passw0rd").0, "a wrong AD password");
    login(&w.base(), &w.ca_path(), &tmp.path().join("carol"), "carol", "Carol!Passw0rd1");
    login(&w.base(), &w.ca_path(), &tmp.path().join("dave"), "dave", "Dave!Passw0rd1");
    let synced = wharf(&admin, &["directory", "sync"], "");
    assert!(synced.contains("corp/registry"), "{synced}");
    assert_eq!(wharf(&admin, &["team", "ls", "corp"], "").trim(), "corp/registry\tcarol", "through ops-leads");

    // Out of the inner group: out of the team; deleted upstream: disabled.
    ad.tool(&["group", "removemembers", "ops-leads", "carol"]);
    wharf(&admin, &["directory", "sync"], "");
    assert_eq!(wharf(&admin, &["team", "ls", "corp"], "").trim(), "corp/registry");
    ad.tool(&["user", "delete", "carol"]);
    let synced = wharf(&admin, &["directory", "sync"], "");
    assert!(synced.contains("disabled carol"), "{synced}");
    assert!(!try_login(&w, tmp.path(), "carol", "Carol!Passw0rd1").0, "carol after her deletion");
    login(&w.base(), &w.ca_path(), &tmp.path().join("dave-again"), "dave", "Dave!Passw0rd1");
}
