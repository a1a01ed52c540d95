//! Accounts, sessions and repository settings: their commands and reads.
//!
//! Every refusal is decided before anything is written, so a refused command in a group
//! commit leaves the transaction as it found it.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use serde::{Deserialize, Serialize};

use crate::command::{Outcome, SessionRecordCommand};
use crate::records::{RepoSettings, SessionRecord, StoredRepoSettings, StoredSession, StoredUser, UserRecord};
use crate::refusal::Refusal;
use crate::store::{Store, StoreError, encode};
use crate::tables::{BUNDLES, COUNTERS, REPO_SETTINGS, SESSIONS, TOKEN_SCOPES, USER_SESSIONS, USERS};

/// A change of accounts, sessions or repository settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountsCommand {
    /// Creates an account. `password_hash` is a PHC string; the state never sees a password.
    CreateUser { name: String, password_hash: String, admin: bool, at: u64 },
    /// Replaces an account's password hash and ends every session and refresh token it holds.
    SetPassword { name: String, password_hash: String },
    /// Disables (ending every session and refresh token) or re-enables an account.
    SetUserDisabled { name: String, disabled: bool },
    /// Deletes an account and its sessions.
    DeleteUser { name: String },
    /// Records a session or refresh token. `id` is the SHA-256 of the secret the client holds,
    /// so the state never holds a usable credential.
    CreateSession(Box<SessionRecordCommand>),
    /// Ends one session or refresh token.
    DeleteSession { id: String },
    /// Ends every session and refresh token that expired at or before `now`.
    PurgeSessions { now: u64 },
    /// Makes a repository readable by anyone (anonymous pull), or private again.
    SetRepoPublic { repo: String, public: bool },
    /// Lets a repository accept manifests whose references it does not hold, or not
    /// ([`crate::RepoSettings::sparse_manifests`]).
    SetRepoSparseManifests { repo: String, allowed: bool },
    /// Records a client bundle: its certificate's serial `id` names `user` as of the account's
    /// id and credentials epoch, so a new password, a disable or a delete ends it at once.
    CreateBundle { id: String, user: String, label: String, created: u64, expires: u64 },
    /// Ends a client bundle.
    DeleteBundle { id: String },
    /// Records an access token (a session of kind `Token`, stored under the SHA-256 of its
    /// secret) and the registry scopes it is limited to.
    CreateAccessToken { id: String, session: SessionRecord, scopes: Vec<String> },
}

/// One line per command for logs: what it does and to what, never a password hash or a
/// session id.
impl std::fmt::Display for AccountsCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountsCommand::CreateUser { name, admin, .. } => write!(f, "create-user {name} admin={admin}"),
            AccountsCommand::SetPassword { name, .. } => write!(f, "set-password {name}"),
            AccountsCommand::SetUserDisabled { name, disabled } => write!(f, "set-user-disabled {name} {disabled}"),
            AccountsCommand::DeleteUser { name } => write!(f, "delete-user {name}"),
            AccountsCommand::CreateSession(create) => write!(f, "create-session for {}", create.session.user),
            AccountsCommand::DeleteSession { .. } => write!(f, "delete-session"),
            AccountsCommand::PurgeSessions { now } => write!(f, "purge-sessions before {now}"),
            AccountsCommand::SetRepoPublic { repo, public } => write!(f, "set-repo-public {repo} {public}"),
            AccountsCommand::SetRepoSparseManifests { repo, allowed } => {
                write!(f, "set-repo-sparse-manifests {repo} {allowed}")
            }
            AccountsCommand::CreateBundle { user, .. } => write!(f, "create-bundle for {user}"),
            AccountsCommand::DeleteBundle { .. } => write!(f, "delete-bundle"),
            AccountsCommand::CreateAccessToken { session, .. } => write!(f, "create-access-token for {}", session.user),
        }
    }
}

/// Whether `command` changes who may do what.
pub(crate) fn changes_access(command: &AccountsCommand) -> bool {
    matches!(
        command,
        AccountsCommand::CreateUser { .. }
            | AccountsCommand::SetPassword { .. }
            | AccountsCommand::SetUserDisabled { .. }
            | AccountsCommand::DeleteUser { .. }
            | AccountsCommand::DeleteSession { .. }
            | AccountsCommand::PurgeSessions { .. }
            | AccountsCommand::SetRepoPublic { .. }
            | AccountsCommand::CreateBundle { .. }
            | AccountsCommand::DeleteBundle { .. }
            | AccountsCommand::CreateAccessToken { .. }
    )
}

pub(crate) fn apply(txn: &WriteTransaction, command: &AccountsCommand) -> Result<Outcome, StoreError> {
    match command {
        AccountsCommand::CreateUser { name, password_hash, admin, at } => {
            if read_user(txn, name)?.is_some() {
                return Err(Refusal::UserExists(name.clone()).into());
            }
            let id = next_user_id(txn)?;
            let record = UserRecord {
                id,
                password_hash: password_hash.clone(),
                admin: *admin,
                disabled: false,
                created: *at,
                epoch: 0,
            };
            write_user(txn, name, record)?;
            Ok(Outcome::Done)
        }
        AccountsCommand::SetPassword { name, password_hash } => {
            let mut user = read_user(txn, name)?.ok_or_else(|| Refusal::UserUnknown(name.clone()))?;
            user.password_hash = password_hash.clone();
            user.epoch += 1;
            write_user(txn, name, user)?;
            let count = end_sessions_of(txn, name)?;
            Ok(Outcome::SessionsEnded { count })
        }
        AccountsCommand::SetUserDisabled { name, disabled } => {
            let mut user = read_user(txn, name)?.ok_or_else(|| Refusal::UserUnknown(name.clone()))?;
            if *disabled && user.admin && !user.disabled && enabled_admins(txn)? <= 1 {
                return Err(Refusal::LastAdmin.into());
            }
            user.disabled = *disabled;
            user.epoch += 1;
            write_user(txn, name, user)?;
            let count = if *disabled { end_sessions_of(txn, name)? } else { 0 };
            Ok(Outcome::SessionsEnded { count })
        }
        AccountsCommand::DeleteUser { name } => {
            let user = read_user(txn, name)?.ok_or_else(|| Refusal::UserUnknown(name.clone()))?;
            if user.admin && !user.disabled && enabled_admins(txn)? <= 1 {
                return Err(Refusal::LastAdmin.into());
            }
            txn.open_table(USERS)?.remove(name.as_str())?;
            crate::identity::forget_user(txn, name)?;
            let count = end_sessions_of(txn, name)?;
            Ok(Outcome::SessionsEnded { count })
        }
        AccountsCommand::CreateSession(create) => create_session(txn, &create.id, &create.session),
        AccountsCommand::CreateAccessToken { id, session, scopes } => {
            create_session(txn, id, session)?;
            txn.open_table(TOKEN_SCOPES)?.insert(id.as_str(), encode(scopes)?.as_slice())?;
            Ok(Outcome::Done)
        }
        AccountsCommand::DeleteSession { id } => {
            let raw = txn.open_table(SESSIONS)?.remove(id.as_str())?.map(|v| v.value().to_vec());
            let raw = raw.ok_or(Refusal::SessionUnknown)?;
            let StoredSession::V1(session) = postcard::from_bytes(&raw)?;
            txn.open_table(USER_SESSIONS)?.remove((session.user.as_str(), id.as_str()))?;
            txn.open_table(TOKEN_SCOPES)?.remove(id.as_str())?;
            Ok(Outcome::SessionsEnded { count: 1 })
        }
        AccountsCommand::PurgeSessions { now } => purge_sessions(txn, *now),
        AccountsCommand::CreateBundle { id, user, label, created, expires } => {
            let account = read_user(txn, user)?.ok_or_else(|| Refusal::UserUnknown(user.clone()))?;
            if account.disabled {
                return Err(Refusal::UserDisabled(user.clone()).into());
            }
            let record = BundleRecord {
                user: user.clone(),
                user_id: account.id,
                epoch: account.epoch,
                label: label.clone(),
                created: *created,
                expires: *expires,
            };
            txn.open_table(BUNDLES)?.insert(id.as_str(), encode(&StoredBundle::V1(record))?.as_slice())?;
            Ok(Outcome::Done)
        }
        AccountsCommand::DeleteBundle { id } => {
            if txn.open_table(BUNDLES)?.remove(id.as_str())?.is_none() {
                return Err(Refusal::SessionUnknown.into());
            }
            Ok(Outcome::Done)
        }
        AccountsCommand::SetRepoPublic { repo, public } => {
            change_repo_settings(txn, repo, |settings| settings.public = *public)
        }
        AccountsCommand::SetRepoSparseManifests { repo, allowed } => {
            change_repo_settings(txn, repo, |settings| settings.sparse_manifests = *allowed)
        }
    }
}

fn change_repo_settings(
    txn: &WriteTransaction,
    repo: &str,
    change: impl FnOnce(&mut RepoSettings),
) -> Result<Outcome, StoreError> {
    let mut settings = repo_settings_in(txn, repo)?;
    change(&mut settings);
    let stored = encode(&StoredRepoSettings::V2(settings))?;
    txn.open_table(REPO_SETTINGS)?.insert(repo, stored.as_slice())?;
    Ok(Outcome::Done)
}

/// The settings of `repo` as a command being applied sees them (defaults when none were set).
pub(crate) fn repo_settings_in(txn: &WriteTransaction, repo: &str) -> Result<RepoSettings, StoreError> {
    let table = txn.open_table(REPO_SETTINGS)?;
    let Some(raw) = table.get(repo)? else { return Ok(RepoSettings::default()) };
    Ok(postcard::from_bytes::<StoredRepoSettings>(raw.value())?.into_current())
}

/// The id the next account gets: ids start at 1 and are never given twice.
fn next_user_id(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut counters = txn.open_table(COUNTERS)?;
    let id = counters.get("next_user_id")?.map_or(1, |v| v.value());
    counters.insert("next_user_id", id + 1)?;
    Ok(id)
}

fn decode_user(raw: &[u8]) -> Result<UserRecord, StoreError> {
    Ok(postcard::from_bytes::<StoredUser>(raw)?.into_current())
}

fn read_user(txn: &WriteTransaction, name: &str) -> Result<Option<UserRecord>, StoreError> {
    let table = txn.open_table(USERS)?;
    let Some(raw) = table.get(name)? else { return Ok(None) };
    Ok(Some(decode_user(raw.value())?))
}

fn write_user(txn: &WriteTransaction, name: &str, user: UserRecord) -> Result<(), StoreError> {
    let stored = encode(&StoredUser::V2(user))?;
    txn.open_table(USERS)?.insert(name, stored.as_slice())?;
    Ok(())
}

fn enabled_admins(txn: &WriteTransaction) -> Result<usize, StoreError> {
    let table = txn.open_table(USERS)?;
    let mut count = 0;
    for entry in table.iter()? {
        let (_, raw) = entry?;
        let user = decode_user(raw.value())?;
        if user.admin && !user.disabled {
            count += 1;
        }
    }
    Ok(count)
}

fn create_session(txn: &WriteTransaction, id: &str, session: &SessionRecord) -> Result<Outcome, StoreError> {
    match read_user(txn, &session.user)? {
        None => return Err(Refusal::UserUnknown(session.user.clone()).into()),
        Some(user) if user.disabled => return Err(Refusal::UserDisabled(session.user.clone()).into()),
        Some(_) => {}
    }
    let stored = encode(&StoredSession::V1(session.clone()))?;
    txn.open_table(SESSIONS)?.insert(id, stored.as_slice())?;
    txn.open_table(USER_SESSIONS)?.insert((session.user.as_str(), id), ())?;
    Ok(Outcome::Done)
}

fn end_sessions_of(txn: &WriteTransaction, user: &str) -> Result<usize, StoreError> {
    let mut index = txn.open_table(USER_SESSIONS)?;
    let mut ids = Vec::new();
    for entry in index.range((user, "")..)? {
        let (key, _) = entry?;
        let (u, id) = key.value();
        if u != user {
            break;
        }
        ids.push(id.to_owned());
    }
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut scopes = txn.open_table(TOKEN_SCOPES)?;
    for id in &ids {
        sessions.remove(id.as_str())?;
        index.remove((user, id.as_str()))?;
        scopes.remove(id.as_str())?;
    }
    Ok(ids.len())
}

fn purge_sessions(txn: &WriteTransaction, now: u64) -> Result<Outcome, StoreError> {
    let mut expired = Vec::new();
    {
        let sessions = txn.open_table(SESSIONS)?;
        for entry in sessions.iter()? {
            let (key, raw) = entry?;
            let StoredSession::V1(session) = postcard::from_bytes(raw.value())?;
            if session.expires <= now {
                expired.push((key.value().to_owned(), session.user));
            }
        }
    }
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut index = txn.open_table(USER_SESSIONS)?;
    let mut scopes = txn.open_table(TOKEN_SCOPES)?;
    for (id, user) in &expired {
        sessions.remove(id.as_str())?;
        index.remove((user.as_str(), id.as_str()))?;
        scopes.remove(id.as_str())?;
    }
    Ok(Outcome::SessionsEnded { count: expired.len() })
}

impl Store {
    /// The account `name`.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USERS)?;
        let Some(raw) = table.get(name)? else { return Ok(None) };
        Ok(Some(decode_user(raw.value())?))
    }

    /// Every account, by name.
    pub fn users(&self) -> Result<Vec<(String, UserRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, raw) = entry?;
            out.push((key.value().to_owned(), decode_user(raw.value())?));
        }
        Ok(out)
    }

    /// The session stored under `id` (the SHA-256 of its secret, hex).
    /// The registry scopes access token `id` is limited to (`None`: no such token).
    pub fn token_scopes(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOKEN_SCOPES)?;
        let raw = table.get(id)?.map(|v| v.value().to_vec());
        Ok(raw.map(|raw| postcard::from_bytes(&raw)).transpose()?)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let Some(raw) = table.get(id)? else { return Ok(None) };
        let StoredSession::V1(session) = postcard::from_bytes(raw.value())?;
        Ok(Some(session))
    }

    /// The sessions and refresh tokens of `user`, with their ids.
    pub fn sessions_of(&self, user: &str) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(USER_SESSIONS)?;
        let sessions = txn.open_table(SESSIONS)?;
        let mut out = Vec::new();
        for entry in index.range((user, "")..)? {
            let (key, _) = entry?;
            let (u, id) = key.value();
            if u != user {
                break;
            }
            if let Some(raw) = sessions.get(id)? {
                let StoredSession::V1(session) = postcard::from_bytes(raw.value())?;
                out.push((id.to_owned(), session));
            }
        }
        Ok(out)
    }

    /// The settings of `repo` (defaults when none were set).
    pub fn repo_settings(&self, repo: &str) -> Result<RepoSettings, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REPO_SETTINGS)?;
        let Some(raw) = table.get(repo)? else { return Ok(RepoSettings::default()) };
        Ok(postcard::from_bytes::<StoredRepoSettings>(raw.value())?.into_current())
    }
}

/// A client bundle: whose it is, and the account's id and credentials epoch when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    pub user: String,
    pub user_id: u64,
    pub epoch: u64,
    pub label: String,
    pub created: u64,
    pub expires: u64,
}

#[derive(Serialize, Deserialize)]
enum StoredBundle {
    V1(BundleRecord),
}

impl Store {
    /// The client bundle whose certificate has serial `id`.
    pub fn bundle(&self, id: &str) -> Result<Option<BundleRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BUNDLES)?;
        let Some(raw) = table.get(id)? else { return Ok(None) };
        let StoredBundle::V1(record) = postcard::from_bytes(raw.value())?;
        Ok(Some(record))
    }

    /// Every client bundle, by id.
    pub fn bundles(&self) -> Result<Vec<(String, BundleRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BUNDLES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            let StoredBundle::V1(record) = postcard::from_bytes(raw.value())?;
            out.push((id.value().to_owned(), record));
        }
        Ok(out)
    }
}
