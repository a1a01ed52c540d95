//! Accounts, sessions and repository settings: their commands and reads.
//!
//! Every refusal is decided before anything is written, so a refused command in a group
//! commit leaves the transaction as it found it.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::command::{Command, Outcome};
use crate::records::{RepoSettings, SessionRecord, StoredRepoSettings, StoredSession, StoredUser, UserRecord};
use crate::store::{Store, StoreError, encode};
use crate::tables::{COUNTERS, REPO_SETTINGS, SESSIONS, USER_SESSIONS, USERS};

/// Whether `command` changes who may do what.
pub(crate) fn changes_access(command: &Command) -> bool {
    matches!(
        command,
        Command::CreateUser { .. }
            | Command::SetPassword { .. }
            | Command::SetUserDisabled { .. }
            | Command::DeleteUser { .. }
            | Command::DeleteSession { .. }
            | Command::PurgeSessions { .. }
            | Command::SetRepoPublic { .. }
    )
}

pub(crate) fn apply(txn: &WriteTransaction, command: &Command) -> Result<Outcome, StoreError> {
    match command {
        Command::CreateUser { name, password_hash, admin, at } => {
            if read_user(txn, name)?.is_some() {
                return Err(StoreError::UserExists(name.clone()));
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
        Command::SetPassword { name, password_hash } => {
            let mut user = read_user(txn, name)?.ok_or_else(|| StoreError::UserUnknown(name.clone()))?;
            user.password_hash = password_hash.clone();
            user.epoch += 1;
            write_user(txn, name, user)?;
            let count = end_sessions_of(txn, name)?;
            Ok(Outcome::SessionsEnded { count })
        }
        Command::SetUserDisabled { name, disabled } => {
            let mut user = read_user(txn, name)?.ok_or_else(|| StoreError::UserUnknown(name.clone()))?;
            if *disabled && user.admin && !user.disabled && enabled_admins(txn)? <= 1 {
                return Err(StoreError::LastAdmin);
            }
            user.disabled = *disabled;
            user.epoch += 1;
            write_user(txn, name, user)?;
            let count = if *disabled { end_sessions_of(txn, name)? } else { 0 };
            Ok(Outcome::SessionsEnded { count })
        }
        Command::DeleteUser { name } => {
            let user = read_user(txn, name)?.ok_or_else(|| StoreError::UserUnknown(name.clone()))?;
            if user.admin && !user.disabled && enabled_admins(txn)? <= 1 {
                return Err(StoreError::LastAdmin);
            }
            txn.open_table(USERS)?.remove(name.as_str())?;
            let count = end_sessions_of(txn, name)?;
            Ok(Outcome::SessionsEnded { count })
        }
        Command::CreateSession(create) => {
            let session = &create.session;
            match read_user(txn, &session.user)? {
                None => return Err(StoreError::UserUnknown(session.user.clone())),
                Some(user) if user.disabled => return Err(StoreError::UserDisabled(session.user.clone())),
                Some(_) => {}
            }
            let stored = encode(&StoredSession::V1(session.clone()))?;
            txn.open_table(SESSIONS)?.insert(create.id.as_str(), stored.as_slice())?;
            txn.open_table(USER_SESSIONS)?.insert((session.user.as_str(), create.id.as_str()), ())?;
            Ok(Outcome::Done)
        }
        Command::DeleteSession { id } => {
            let raw = txn.open_table(SESSIONS)?.remove(id.as_str())?.map(|v| v.value().to_vec());
            let raw = raw.ok_or(StoreError::SessionUnknown)?;
            let StoredSession::V1(session) = postcard::from_bytes(&raw)?;
            txn.open_table(USER_SESSIONS)?.remove((session.user.as_str(), id.as_str()))?;
            Ok(Outcome::SessionsEnded { count: 1 })
        }
        Command::PurgeSessions { now } => purge_sessions(txn, *now),
        Command::SetRepoPublic { repo, public } => {
            let stored = encode(&StoredRepoSettings::V1(RepoSettings { public: *public }))?;
            txn.open_table(REPO_SETTINGS)?.insert(repo.as_str(), stored.as_slice())?;
            Ok(Outcome::Done)
        }
        _ => unreachable!("accounts::apply called with a registry command"),
    }
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
    for id in &ids {
        sessions.remove(id.as_str())?;
        index.remove((user, id.as_str()))?;
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
    for (id, user) in &expired {
        sessions.remove(id.as_str())?;
        index.remove((user.as_str(), id.as_str()))?;
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
        let StoredRepoSettings::V1(settings) = postcard::from_bytes(raw.value())?;
        Ok(settings)
    }
}
