//! [`Auth`]: accounts, sessions and tokens over the state store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};
use wharf_pki::TokenKey;
use wharf_store::{
    AccountsCommand, Command, LocalProposer, Origin, Outcome, ProposeError, Proposer, ProposerExt, Refusal,
    SessionKind, SessionRecord, SessionRecordCommand, Store, StoreError, UserRecord,
};

use crate::limiter::LoginLimiter;
use crate::policy::{self, Principal};
use crate::scope::Access;
use crate::token::{Claims, TokenError, TokenSigner, TokenVerifier};
use crate::{password, secret_id};

/// The subject prefix of a node's registry token (`node:<id>`): user names cannot hold `:`.
pub const NODE_SUBJECT: &str = "node:";

/// Names and lifetimes (seconds).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The `iss` of registry tokens.
    pub issuer: String,
    /// The registry's service name: the `aud` of its tokens.
    pub service: String,
    pub token_lifetime: u64,
    pub session_lifetime: u64,
    pub refresh_lifetime: u64,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            issuer: "wharf".to_owned(),
            service: "wharf-registry".to_owned(),
            token_lifetime: 300,
            session_lifetime: 12 * 3600,
            refresh_lifetime: 90 * 24 * 3600,
        }
    }
}

/// An authenticated, enabled account, as it was when its credentials were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub admin: bool,
    /// The account's id (never reused) and credentials epoch: registry tokens name both.
    pub id: u64,
    pub epoch: u64,
    /// The registry scopes an access token limits this caller to (`None`: a login).
    pub scopes: Option<Arc<Vec<String>>>,
}

impl Identity {
    fn of(name: &str, user: &UserRecord) -> Identity {
        Identity { name: name.to_owned(), admin: user.admin, id: user.id, epoch: user.epoch, scopes: None }
    }

    pub fn principal(&self) -> Principal {
        Principal::User { name: self.name.clone(), admin: self.admin }
    }
}

/// A session as listed to its owner (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub record: SessionRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    BadCredentials,
    #[error("too many failed attempts; try again later")]
    RateLimited,
    #[error("{0}")]
    Invalid(String),
    #[error("session is unknown or expired")]
    NoSession,
    /// The account logs in through the directory, not with a password of Wharf's.
    #[error("this account logs in through the directory")]
    Directory,
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The state refused the change (nothing was written).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The cluster cannot take writes or answer now; try again.
    #[error("the cluster cannot take writes now: {0}")]
    Unavailable(String),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> AuthError {
        ProposeError::from(e).into()
    }
}

impl From<ProposeError> for AuthError {
    fn from(e: ProposeError) -> AuthError {
        match e {
            ProposeError::Refused(refusal) => AuthError::Refused(refusal),
            ProposeError::Unavailable(why) => AuthError::Unavailable(why),
            ProposeError::Store(e) => AuthError::Store(e),
        }
    }
}

/// How long a checked password is remembered, so that clients sending Basic credentials with
/// every request do not pay for Argon2 each time.
const CREDENTIAL_TTL_MS: u64 = 5 * 60 * 1000;
const CREDENTIAL_CACHE_LIMIT: usize = 4096;

#[derive(Default)]
struct UserCache {
    generation: u64,
    users: HashMap<String, Option<UserRecord>>,
}

/// Accounts, sessions and tokens.
pub struct Auth {
    store: Arc<Store>,
    /// Where account changes are applied: the local store, or Raft in a cluster.
    proposer: Arc<dyn Proposer>,
    config: AuthConfig,
    signer: TokenSigner,
    verifier: TokenVerifier,
    limiter: LoginLimiter,
    /// Keyed by SHA-256(secret, user, password): (user, password hash then, expiry in ms).
    credentials: Mutex<HashMap<[u8; 32], (String, String, u64)>>,
    credential_secret: Vec<u8>,
    users: RwLock<UserCache>,
    passwords: password::Passwords,
    /// Grants, teams and repository access, as of the last change.
    access: crate::access::AccessControl,
    audit: crate::audit::AuditLog,
    /// The CA whose secrets key seals directory bind passwords.
    pub(crate) ca: std::sync::OnceLock<Arc<wharf_pki::Ca>>,
}

impl Auth {
    pub fn new(store: Arc<Store>, key: &TokenKey, config: AuthConfig) -> Result<Auth, AuthError> {
        let proposer = Arc::new(LocalProposer(Arc::clone(&store)));
        Auth::with_proposer(store, proposer, key, config)
    }

    /// Accounts read from `store` and changed through `proposer`.
    pub fn with_proposer(
        store: Arc<Store>,
        proposer: Arc<dyn Proposer>,
        key: &TokenKey,
        config: AuthConfig,
    ) -> Result<Auth, AuthError> {
        let signer = TokenSigner::new(key, &config.issuer, &config.service, config.token_lifetime)?;
        let verifier = TokenVerifier::new(key, &config.issuer, &config.service)?;
        Ok(Auth {
            access: crate::access::AccessControl::new(Arc::clone(&store)),
            store,
            proposer,
            config,
            signer,
            verifier,
            limiter: LoginLimiter::default(),
            credentials: Mutex::new(HashMap::new()),
            credential_secret: crate::random_bytes(32),
            users: RwLock::new(UserCache::default()),
            passwords: password::Passwords::default(),
            audit: crate::audit::AuditLog::default(),
            ca: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn limiter_allows(&self, name: &str, source: &str, now_ms: u64) -> bool {
        self.limiter.allows(name, source, now_ms)
    }

    pub(crate) fn limiter_failed(&self, name: &str, source: &str, now_ms: u64) {
        self.limiter.failed(name, source, now_ms);
    }

    /// The audit entries waiting for the next flush.
    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.audit
    }

    /// Proposes `command` on behalf of `by` and waits until it is applied.
    pub(crate) async fn propose(&self, by: &Origin, command: impl Into<Command>) -> Result<Outcome, ProposeError> {
        self.apply(by, command).await
    }

    /// Proposes `command` on behalf of `by` and waits until it is applied.
    async fn apply(&self, by: &Origin, command: impl Into<Command>) -> Result<Outcome, ProposeError> {
        self.proposer.propose_by(by.clone(), command).await
    }

    /// Creates the first administrator if there are no accounts. Returns the password when it
    /// was generated (to be shown once), `None` when accounts exist or `password` was given.
    /// Hashes the password on the calling thread (once, at start-up).
    pub async fn bootstrap_admin(
        &self,
        name: &str,
        password: Option<&str>,
        now: u64,
    ) -> Result<Option<String>, AuthError> {
        if !self.store.users()?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => (p.to_owned(), false),
            None => (crate::generate_password(), true),
        };
        let hash = self.hash_password(&password)?;
        self.create_user(name, hash, true, &Origin::system(), now).await?;
        Ok(generated.then_some(password))
    }

    /// The account `name` as of the latest committed state, from memory when nothing changed.
    fn user(&self, name: &str) -> Result<Option<UserRecord>, AuthError> {
        let generation = self.store.access_generation();
        {
            let cache = self.users.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.generation == generation
                && let Some(user) = cache.users.get(name)
            {
                return Ok(user.clone());
            }
        }
        let user = self.store.user(name)?;
        let mut cache = self.users.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.generation != generation {
            cache.users.clear();
            cache.generation = generation;
        }
        if cache.users.len() < 65_536 {
            cache.users.insert(name.to_owned(), user.clone());
        }
        Ok(user)
    }

    /// The account `name`, enabled or not.
    pub fn user_record(&self, name: &str) -> Result<Option<UserRecord>, AuthError> {
        self.user(name)
    }

    /// The enabled account `name`, if there is one.
    pub fn identity(&self, name: &str) -> Result<Option<Identity>, AuthError> {
        Ok(self.user(name)?.filter(|u| !u.disabled).map(|u| Identity::of(name, &u)))
    }

    /// Checks a user name and password (slow: Argon2). Failures count against the source
    /// address, the (user, source) pair and the user (see [`LoginLimiter`]); past a limit,
    /// attempts are refused without checking.
    pub fn authenticate(&self, name: &str, password: &str, source: &str, now_ms: u64) -> Result<Identity, AuthError> {
        // The limits come first, also for a remembered password: a stopped source must not
        // learn whether a guess is right.
        if !self.limiter.allows(name, source, now_ms) {
            return Err(AuthError::RateLimited);
        }
        if password.starts_with(crate::tokens::TOKEN_PREFIX) {
            return match self.token_identity(name, password, now_ms / 1000)? {
                Some(identity) => Ok(identity),
                None => {
                    self.limiter.failed(name, source, now_ms);
                    Err(AuthError::BadCredentials)
                }
            };
        }
        let cache_key = self.credential_key(name, password);
        if let Some(identity) = self.remembered(&cache_key, now_ms)? {
            return Ok(identity);
        }
        let user = if password.len() <= password::MAX_PASSWORD { self.user(name)? } else { None };
        if user.as_ref().is_some_and(|u| u.password_hash == crate::directory::EXTERNAL_PASSWORD) {
            return Err(AuthError::Directory);
        }
        let hash = user.as_ref().map_or(password::DUMMY_HASH, |u| u.password_hash.as_str());
        let matches = self.passwords.verify(hash, password);
        match user {
            Some(user) if matches && !user.disabled => {
                let mut cache = self.credentials.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if cache.len() >= CREDENTIAL_CACHE_LIMIT {
                    cache.retain(|_, (_, _, expires)| *expires > now_ms);
                    if cache.len() >= CREDENTIAL_CACHE_LIMIT {
                        cache.clear();
                    }
                }
                cache.insert(cache_key, (name.to_owned(), user.password_hash.clone(), now_ms + CREDENTIAL_TTL_MS));
                Ok(Identity::of(name, &user))
            }
            _ => {
                self.limiter.failed(name, source, now_ms);
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// The identity of recently checked credentials, without touching the password hash:
    /// cheap enough to call on the async request path before [`Auth::authenticate`]. `None`
    /// also when `source` is stopped by the limits (then `authenticate` says so).
    pub fn authenticate_remembered(&self, name: &str, password: &str, source: &str, now_ms: u64) -> Option<Identity> {
        if !self.limiter.allows(name, source, now_ms) {
            return None;
        }
        self.remembered(&self.credential_key(name, password), now_ms).ok().flatten()
    }

    fn credential_key(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&self.credential_secret);
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// A recently checked credential, still valid if the account's password did not change and
    /// it was not disabled since.
    fn remembered(&self, key: &[u8; 32], now_ms: u64) -> Result<Option<Identity>, AuthError> {
        let entry = self.credentials.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned();
        let Some((name, hash, expires)) = entry else { return Ok(None) };
        if expires <= now_ms {
            return Ok(None);
        }
        Ok(self.user(&name)?.filter(|u| !u.disabled && u.password_hash == hash).map(|u| Identity::of(&name, &u)))
    }

    /// Starts a session (or a refresh token) for `identity`, who logged in from `source`;
    /// returns the secret the client keeps.
    pub async fn start_session(
        &self,
        identity: &Identity,
        kind: SessionKind,
        client: &str,
        source: &str,
        now: u64,
    ) -> Result<String, AuthError> {
        let secret = crate::new_secret();
        let lifetime = match kind {
            SessionKind::Api => self.config.session_lifetime,
            SessionKind::Refresh => self.config.refresh_lifetime,
            SessionKind::Token => {
                return Err(AuthError::Invalid("access tokens are made with create_access_token".into()));
            }
        };
        let session = SessionRecord {
            user: identity.name.clone(),
            kind,
            created: now,
            expires: now + lifetime,
            client: client.chars().take(100).collect(),
        };
        let command =
            AccountsCommand::CreateSession(Box::new(SessionRecordCommand { id: secret_id(&secret), session }));
        self.apply(&Origin::user(&identity.name, Some(source)), command).await?;
        Ok(secret)
    }

    /// The account and session id behind a session secret of `kind`, if it is live at `now`.
    pub fn session(&self, secret: &str, kind: SessionKind, now: u64) -> Result<(Identity, String), AuthError> {
        let id = secret_id(secret);
        let Some(record) = self.store.session(&id)? else { return Err(AuthError::NoSession) };
        if record.kind != kind || record.expires <= now {
            return Err(AuthError::NoSession);
        }
        let identity = self.identity(&record.user)?.ok_or(AuthError::NoSession)?;
        Ok((identity, id))
    }

    /// Ends the session `id`, on behalf of `by`.
    pub async fn end_session(&self, id: &str, by: &Origin) -> Result<(), AuthError> {
        self.apply(by, AccountsCommand::DeleteSession { id: id.to_owned() }).await?;
        Ok(())
    }

    /// The sessions and refresh tokens of `name`.
    pub fn sessions_of(&self, name: &str) -> Result<Vec<SessionInfo>, AuthError> {
        Ok(self.store.sessions_of(name)?.into_iter().map(|(id, record)| SessionInfo { id, record }).collect())
    }

    /// Removes expired sessions and refresh tokens.
    pub async fn purge_sessions(&self, now: u64) -> Result<usize, AuthError> {
        match self.apply(&Origin::system(), AccountsCommand::PurgeSessions { now }).await? {
            wharf_store::Outcome::SessionsEnded { count } => Ok(count),
            _ => Ok(0),
        }
    }

    /// Whether `repo` is public.
    pub fn is_public(&self, repo: &str) -> bool {
        self.store.repo_settings(repo).map(|s| s.public).unwrap_or(false)
    }

    /// The settings of `repo` (defaults when none were set).
    pub fn repo_settings(&self, repo: &str) -> Result<wharf_store::RepoSettings, AuthError> {
        Ok(self.store.repo_settings(repo)?)
    }

    /// A registry token for `identity` (anonymous when `None`) granting what it asked for and
    /// may have. The token names the account's id and credentials epoch as `identity` holds
    /// them, so it ends when they change.
    pub fn issue_token(
        &self,
        identity: Option<&Identity>,
        requested: &[Access],
        now: u64,
    ) -> Result<(String, Vec<Access>), AuthError> {
        let principal = identity.map_or(Principal::Anonymous, Identity::principal);
        let view = self.access.view()?;
        let who = view.identity(principal.subject(), matches!(principal, Principal::User { admin: true, .. }));
        let mut granted = policy::grant(
            &principal,
            requested,
            |repo| self.is_public(repo),
            |repo| view.model.repository_level(&who, repo),
        );
        if let Some(scopes) = identity.and_then(|i| i.scopes.as_ref()) {
            granted = crate::tokens::limit(granted, scopes);
        }
        let subject = identity.map(|i| (i.name.as_str(), i.id, i.epoch));
        let token = self.signer.sign(subject, granted.clone(), now)?;
        Ok((token, granted))
    }

    /// A registry token for node `node` pulling `repositories` (which the control plane
    /// checked are its tasks' images): its subject is `node:<id>`, which no account can be
    /// named, and its grant is exactly that pull.
    pub fn issue_node_token(&self, node: u64, repositories: &[String], now: u64) -> Result<String, AuthError> {
        let access = repositories
            .iter()
            .map(|repo| Access { kind: "repository".into(), name: repo.clone(), actions: vec!["pull".into()] })
            .collect();
        let subject = format!("{NODE_SUBJECT}{node}");
        Ok(self.signer.sign(Some((subject.as_str(), 0, 0)), access, now)?)
    }

    /// The principal and claims of a registry token. A user's token is refused once the
    /// account is disabled or deleted, once its credentials changed after the token was issued
    /// (a new password, disabled and enabled again), and for any other account of the same name.
    pub fn verify_token(&self, token: &str, now: u64) -> Result<(Principal, Arc<Claims>), AuthError> {
        let claims = self.verifier.verify(token, now)?;
        // A node's token carries its grant and nothing else: it acts as no account.
        if claims.sub.is_empty() || claims.sub.starts_with(NODE_SUBJECT) {
            return Ok((Principal::Anonymous, claims));
        }
        match self.identity(&claims.sub)? {
            Some(identity) if identity.id == claims.uid && identity.epoch == claims.epoch => {
                Ok((identity.principal(), claims))
            }
            Some(_) => Err(AuthError::Token(TokenError::Invalid(
                "the token's user changed their credentials since it was issued".into(),
            ))),
            None => Err(AuthError::Token(TokenError::Invalid("the token's user is disabled or deleted".into()))),
        }
    }

    /// Whether `principal` may ever take `action` on resource `kind:name` (with a token that
    /// asks for it).
    pub fn may(&self, principal: &Principal, kind: &str, name: &str, action: &str) -> bool {
        let public = kind == "repository" && self.is_public(name);
        if policy::allowed_actions(principal, kind, name, public).iter().any(|a| *a == action || *a == "*") {
            return true;
        }
        kind == "repository" && self.repository_level(principal, name).is_some_and(|l| l.actions().contains(&action))
    }

    /// What repository grants give `principal` on `repo` (nothing to anonymous callers).
    pub fn repository_level(&self, principal: &Principal, repo: &str) -> Option<crate::rbac::RepoLevel> {
        let Principal::User { name, admin } = principal else { return None };
        let view = self.access.view().ok()?;
        view.model.repository_level(&view.identity(name, *admin), repo)
    }

    /// The access model as of now.
    pub fn access_view(&self) -> Result<Arc<crate::access::AccessView>, AuthError> {
        Ok(self.access.view()?)
    }

    /// Checks a new password against the rules and hashes it (slow on purpose: Argon2id; run
    /// it on a blocking thread). What [`Auth::create_user`] and [`Auth::set_password`] take.
    pub fn hash_password(&self, password: &str) -> Result<PasswordHash, AuthError> {
        password::check_password_rules(password).map_err(AuthError::Invalid)?;
        Ok(PasswordHash(self.passwords.hash(password).map_err(AuthError::Internal)?))
    }

    /// Creates an account with a password hashed by [`Auth::hash_password`], on behalf of `by`.
    pub async fn create_user(
        &self,
        name: &str,
        password: PasswordHash,
        admin: bool,
        by: &Origin,
        now: u64,
    ) -> Result<(), AuthError> {
        if !password::valid_user_name(name) {
            return Err(AuthError::Invalid(
                "user names are 1-64 lowercase letters and digits, separated by single '.', '_' or '-'".into(),
            ));
        }
        self.apply(
            by,
            AccountsCommand::CreateUser { name: name.to_owned(), password_hash: password.0, admin, at: now },
        )
        .await?;
        Ok(())
    }

    /// Creates a service account: it has no password (no login, no API session, no bundle)
    /// and reaches the registry with access tokens only.
    pub async fn create_service_account(&self, name: &str, by: &Origin, now: u64) -> Result<(), AuthError> {
        if !password::valid_user_name(name) {
            return Err(AuthError::Invalid(
                "user names are 1-64 lowercase letters and digits, separated by single '.', '_' or '-'".into(),
            ));
        }
        let password_hash = crate::tokens::SERVICE_ACCOUNT_PASSWORD.to_owned();
        self.apply(by, AccountsCommand::CreateUser { name: name.to_owned(), password_hash, admin: false, at: now })
            .await?;
        Ok(())
    }

    /// Sets a new password, hashed by [`Auth::hash_password`], and ends the account's sessions
    /// and refresh tokens; on behalf of `by`.
    pub async fn set_password(&self, name: &str, password: PasswordHash, by: &Origin) -> Result<(), AuthError> {
        self.apply(by, AccountsCommand::SetPassword { name: name.to_owned(), password_hash: password.0 }).await?;
        Ok(())
    }

    /// Disables or enables an account (a disable ends its sessions), on behalf of `by`.
    pub async fn set_disabled(&self, name: &str, disabled: bool, by: &Origin) -> Result<(), AuthError> {
        self.apply(by, AccountsCommand::SetUserDisabled { name: name.to_owned(), disabled }).await?;
        Ok(())
    }

    /// Deletes an account and its sessions, on behalf of `by`.
    pub async fn delete_user(&self, name: &str, by: &Origin) -> Result<(), AuthError> {
        self.apply(by, AccountsCommand::DeleteUser { name: name.to_owned() }).await?;
        Ok(())
    }

    pub fn users(&self) -> Result<Vec<(String, UserRecord)>, AuthError> {
        Ok(self.store.users()?)
    }

    /// Makes `repo` public (anyone may pull) or private, on behalf of `by`.
    pub async fn set_public(&self, repo: &str, public: bool, by: &Origin) -> Result<(), AuthError> {
        self.apply(by, AccountsCommand::SetRepoPublic { repo: repo.to_owned(), public }).await?;
        Ok(())
    }

    /// Lets `repo` accept manifests whose references it does not hold, or not (on behalf of
    /// `by`).
    pub async fn set_sparse_manifests(&self, repo: &str, allowed: bool, by: &Origin) -> Result<(), AuthError> {
        self.apply(by, AccountsCommand::SetRepoSparseManifests { repo: repo.to_owned(), allowed }).await?;
        Ok(())
    }
}

/// A new password that passed the rules, as an Argon2id PHC string: made only by
/// [`Auth::hash_password`], so no account gets an unchecked or unhashed password.
#[derive(Debug, Clone)]
pub struct PasswordHash(String);

/// Seconds since the Unix epoch, for the times commands carry.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
