//! [`Auth`] over a real store and a real CA-certified token key.

use std::sync::Arc;

use futures::executor::block_on;
use wharf_auth::{Access, Auth, AuthConfig, AuthError, Principal, permits};
use wharf_store::{Command, LocalProposer, Origin, Proposal, Proposer, SessionKind, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Auth,
    key: wharf_pki::TokenKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
    let ca = wharf_pki::Ca::load_or_create(&dir.path().join("pki")).expect("ca");
    let key = ca.load_or_create_token_key(&dir.path().join("pki")).expect("token key");
    let auth = Auth::new(store, &key, AuthConfig::default()).expect("auth");
    Fixture { _dir: dir, auth, key }
}

const NOW: u64 = 1_900_000_000;

impl Fixture {
    /// Hashes `password` and creates the account, as the API does.
    fn create_user(&self, name: &str, password: &str, admin: bool) -> Result<(), AuthError> {
        let hash = self.auth.hash_password(password)?;
        block_on(self.auth.create_user(name, hash, admin, &admin_at(), NOW))
    }
}

/// The administrator at 10.0.0.1: who asks for the changes in these tests.
fn admin_at() -> Origin {
    Origin::user("admin", Some("10.0.0.1"))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

#[test]
fn bootstrap_generates_a_password_once() {
    let f = fixture();
    let generated = block_on(f.auth.bootstrap_admin("admin", None, NOW)).expect("bootstrap").expect("generated");
    assert_eq!(generated.len(), 24);
    assert!(block_on(f.auth.bootstrap_admin("admin", Some("other-password"), NOW)).expect("again").is_none());
    let who = f.auth.authenticate("admin", &generated, "1.2.3.4", 0).expect("login");
    assert!(who.admin);
    let stored = &f.auth.users().expect("users")[0].1.password_hash;
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&generated));
}

#[test]
fn failed_logins_are_limited_per_pair_without_locking_the_user_out_elsewhere() {
    let f = fixture();
    block_on(f.auth.bootstrap_admin("admin", Some("right-password"), NOW)).expect("bootstrap");
    for _ in 0..10 {
        assert!(matches!(f.auth.authenticate("admin", "wrong", "10.0.0.1", 1000), Err(AuthError::BadCredentials)));
    }
    let from_the_guesser = f.auth.authenticate("admin", "right-password", "10.0.0.1", 1000);
    assert!(matches!(from_the_guesser, Err(AuthError::RateLimited)), "the guessing address is stopped");
    assert!(f.auth.authenticate("admin", "right-password", "10.0.0.2", 1000).is_ok(), "not locked out elsewhere");
    let remembered = f.auth.authenticate("admin", "right-password", "10.0.0.1", 1000);
    assert!(matches!(remembered, Err(AuthError::RateLimited)), "a remembered password tells a stopped source nothing");
    assert!(f.auth.authenticate_remembered("admin", "right-password", "10.0.0.1", 1000).is_none());
    assert!(f.auth.authenticate_remembered("admin", "right-password", "10.0.0.2", 1000).is_some());
    assert!(matches!(f.auth.authenticate("nobody", "x", "10.0.0.1", 1000), Err(AuthError::BadCredentials)));
    assert!(f.auth.authenticate("admin", "right-password", "10.0.0.1", 1000 + 6000).is_ok(), "a token flows back");
}

#[test]
fn tokens_grant_the_intersection_and_verify() {
    let f = fixture();
    block_on(f.auth.bootstrap_admin("admin", Some("right-password"), NOW)).expect("bootstrap");
    f.create_user("alice", "alice-password", false).expect("alice");
    let alice = f.auth.authenticate("alice", "alice-password", "a", 0).expect("alice");
    let ask = Access::parse_all(["repository:alice/app:pull,push repository:bob/app:pull"]).expect("scopes");
    let (token, granted) = f.auth.issue_token(Some(&alice), &ask, now()).expect("token");
    assert_eq!(granted, vec![Access::new("repository", "alice/app", &["pull", "push"])]);
    let (principal, claims) = f.auth.verify_token(&token, now()).expect("verify");
    assert_eq!(principal, alice.principal());
    assert!(permits(&claims.access, "repository", "alice/app", "push"));
    assert!(!permits(&claims.access, "repository", "bob/app", "pull"));
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.kid.as_deref(), Some(wharf_auth::token::libtrust_key_id(&f.key.spki_der).as_str()));
    assert_eq!(header.x5c.as_ref().map(Vec::len), Some(2));

    block_on(f.auth.set_disabled("alice", true, &admin_at())).expect("disable");
    assert!(f.auth.verify_token(&token, now()).is_err(), "a disabled user's token is refused");
    assert!(f.auth.authenticate("alice", "alice-password", "a", 0).is_err());
}

fn mint(key_pem: &[u8], kid: &str, claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(key_pem).expect("key"))
        .expect("sign")
}

#[test]
fn forged_expired_and_foreign_tokens_are_refused() {
    let f = fixture();
    let kid = wharf_auth::token::libtrust_key_id(&f.key.spki_der);
    let t = now();
    let claims = |aud: &str, exp: u64| {
        serde_json::json!({"iss":"wharf","sub":"","aud":aud,"exp":exp,"nbf":t - 10,"iat":t - 10,"jti":"x",
            "access":[{"type":"repository","name":"a","actions":["pull"]}]})
    };
    let good = mint(f.key.private_pem.as_bytes(), &kid, claims("wharf-registry", t + 60));
    assert!(f.auth.verify_token(&good, t).is_ok(), "the control case verifies");
    let other = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let forged = mint(other.as_bytes(), &kid, claims("wharf-registry", t + 60));
    assert!(f.auth.verify_token(&forged, t).is_err(), "signed by another key");
    let expired = mint(f.key.private_pem.as_bytes(), &kid, claims("wharf-registry", t - 60));
    assert!(f.auth.verify_token(&expired, t).is_err(), "expired");
    let foreign = mint(f.key.private_pem.as_bytes(), &kid, claims("other-service", t + 60));
    assert!(f.auth.verify_token(&foreign, t).is_err(), "for another service");
    assert!(f.auth.verify_token(&good, t + 3600).is_err(), "a cached token still expires");
    assert!(f.auth.verify_token("not.a.token", t).is_err());
}

#[test]
fn sessions_end_on_logout_expiry_and_password_change() {
    let f = fixture();
    block_on(f.auth.bootstrap_admin("admin", Some("right-password"), NOW)).expect("bootstrap");
    let admin = f.auth.authenticate("admin", "right-password", "a", 0).expect("login");
    let s1 = block_on(f.auth.start_session(&admin, SessionKind::Api, "cli", "10.0.0.1", NOW)).expect("session");
    let (who, id) = f.auth.session(&s1, SessionKind::Api, NOW + 1).expect("live");
    assert_eq!(who, admin);
    assert!(f.auth.session(&s1, SessionKind::Refresh, NOW + 1).is_err(), "kinds do not mix");
    assert!(f.auth.session(&s1, SessionKind::Api, NOW + 13 * 3600).is_err(), "expired");
    assert_eq!(f.auth.sessions_of("admin").expect("list").len(), 1);
    block_on(f.auth.end_session(&id, &admin_at())).expect("logout");
    assert!(f.auth.session(&s1, SessionKind::Api, NOW + 1).is_err());
    let r = block_on(f.auth.start_session(&admin, SessionKind::Refresh, "docker", "10.0.0.1", NOW)).expect("refresh");
    let hash = f.auth.hash_password("a-new-password").expect("hash");
    block_on(f.auth.set_password("admin", hash, &admin_at())).expect("password");
    assert!(f.auth.session(&r, SessionKind::Refresh, NOW + 1).is_err(), "a new password ends refresh tokens");
    assert!(
        f.auth.authenticate("admin", "right-password", "a", 0).is_err(),
        "the remembered old password is forgotten"
    );
    assert!(f.auth.authenticate("admin", "a-new-password", "a", 0).is_ok());
    assert!(matches!(f.create_user("Bad Name", "long-enough", false), Err(AuthError::Invalid(_))));
    assert!(matches!(f.create_user("bob", "short", false), Err(AuthError::Invalid(_))));
}

#[test]
fn anonymous_gets_pull_on_public_repositories_only() {
    let f = fixture();
    block_on(f.auth.set_public("lib/base", true, &admin_at())).expect("public");
    let ask = Access::parse_all(["repository:lib/base:pull,push", "repository:lib/other:pull"]).expect("scopes");
    let (token, granted) = f.auth.issue_token(None, &ask, now()).expect("token");
    assert_eq!(granted, vec![Access::new("repository", "lib/base", &["pull"])]);
    let (principal, _) = f.auth.verify_token(&token, now()).expect("verify");
    assert_eq!(principal, Principal::Anonymous);
    assert!(f.auth.may(&Principal::Anonymous, "repository", "lib/base", "pull"));
    assert!(!f.auth.may(&Principal::Anonymous, "repository", "lib/base", "push"));
}

/// A fresh registry token of `user`, after checking `password`.
fn token_of(f: &Fixture, user: &str, password: &str) -> String {
    let identity = f.auth.authenticate(user, password, "a", 0).expect("login");
    let ask = Access::parse_all([format!("repository:{user}/app:pull,push,delete").as_str()]).expect("scope");
    f.auth.issue_token(Some(&identity), &ask, now()).expect("token").0
}

#[test]
fn a_token_ends_when_its_user_changes_credentials_is_disabled_or_is_replaced() {
    let f = fixture();
    block_on(f.auth.bootstrap_admin("admin", Some("right-password"), NOW)).expect("bootstrap");
    f.create_user("alice", "alice-password", false).expect("alice");
    let before = token_of(&f, "alice", "alice-password");
    assert!(f.auth.verify_token(&before, now()).is_ok(), "the control case verifies");
    let hash = f.auth.hash_password("alice-new-password").expect("hash");
    block_on(f.auth.set_password("alice", hash, &admin_at())).expect("password");
    assert!(f.auth.verify_token(&before, now()).is_err(), "refused after a password change");

    let second = token_of(&f, "alice", "alice-new-password");
    assert!(f.auth.verify_token(&second, now()).is_ok());
    block_on(f.auth.set_disabled("alice", true, &admin_at())).expect("disable");
    assert!(f.auth.verify_token(&second, now()).is_err(), "refused while disabled");
    block_on(f.auth.set_disabled("alice", false, &admin_at())).expect("enable");
    assert!(f.auth.verify_token(&second, now()).is_err(), "still refused after re-enabling");
    let third = token_of(&f, "alice", "alice-new-password");
    assert!(f.auth.verify_token(&third, now()).is_ok(), "a token issued after re-enabling works");

    block_on(f.auth.delete_user("alice", &admin_at())).expect("delete");
    f.create_user("alice", "alice-new-password", false).expect("another alice, same password");
    assert!(f.auth.verify_token(&third, now()).is_err(), "refused for another account of the same name");
    let fourth = token_of(&f, "alice", "alice-new-password");
    assert!(f.auth.verify_token(&fourth, now()).is_ok());
}

/// Applies to a local store and keeps who asked for each command, as a replicated log does.
struct Recording {
    local: LocalProposer,
    log: std::sync::Mutex<Vec<(Origin, String)>>,
}

impl Proposer for Recording {
    fn propose_command(&self, origin: Origin, command: Command) -> Proposal<'_> {
        self.log.lock().expect("log").push((origin.clone(), command.to_string()));
        self.local.propose_command(origin, command)
    }
}

#[test]
fn every_account_change_records_who_asked_and_from_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
    let ca = wharf_pki::Ca::load_or_create(&dir.path().join("pki")).expect("ca");
    let key = ca.load_or_create_token_key(&dir.path().join("pki")).expect("token key");
    let recording = Arc::new(Recording { local: LocalProposer(Arc::clone(&store)), log: Default::default() });
    let proposer: Arc<dyn Proposer> = Arc::clone(&recording) as Arc<dyn Proposer>;
    let auth = Auth::with_proposer(store, proposer, &key, AuthConfig::default()).expect("auth");

    block_on(auth.bootstrap_admin("admin", Some("right-password"), NOW)).expect("bootstrap");
    let alice = Origin::user("alice", Some("10.0.0.7"));
    let hash = auth.hash_password("alice-password").expect("hash");
    block_on(auth.create_user("alice", hash, false, &admin_at(), NOW)).expect("alice");
    let identity = auth.identity("alice").expect("read").expect("alice exists");
    let secret = block_on(auth.start_session(&identity, SessionKind::Api, "cli", "10.0.0.7", NOW)).expect("login");
    let (_, id) = auth.session(&secret, SessionKind::Api, NOW).expect("live");
    block_on(auth.end_session(&id, &alice)).expect("logout");
    block_on(auth.set_public("lib/base", true, &admin_at())).expect("public");
    block_on(auth.set_disabled("alice", true, &admin_at())).expect("disable");
    block_on(auth.purge_sessions(NOW + 1)).expect("purge");

    let log = recording.log.lock().expect("log");
    let who: Vec<&Origin> = log.iter().map(|(origin, _)| origin).collect();
    let system = Origin::system();
    assert_eq!(who, vec![&system, &admin_at(), &alice, &alice, &admin_at(), &admin_at(), &system], "{log:?}");
    let shown = log.iter().any(|(_, command)| command.contains("$argon2") || command.contains(&secret));
    assert!(!shown, "what a log shows of a command holds no password hash or session secret: {log:?}");
}
