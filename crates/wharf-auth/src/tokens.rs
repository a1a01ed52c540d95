//! Access tokens: credentials for CI and other programs, of a service account (an account
//! with no password of its own) or of any user. A token is used as a password by registry
//! clients (`docker login -u ci --password-stdin`), is limited to the registry scopes it was
//! made with (`repository:acme/*:pull,push`: a repository or a namespace's, and actions),
//! expires (at most a year), and opens no API session and no client bundle. It is listed and
//! revoked as a session (`wharf user sessions`, `wharf user revoke`), and ends with its
//! account's disabling, deletion or new password, as sessions do.

use std::sync::Arc;

use wharf_store::{AccountsCommand, Origin, SessionKind, SessionRecord};

use crate::rbac::repo_matches;
use crate::scope::Access;
use crate::service::{Auth, AuthError, Identity};

/// What every access token starts with (so that a password check knows one at once).
pub const TOKEN_PREFIX: &str = "wharf_at_";
/// The password hash of a service account: no password matches it; it has tokens only.
pub const SERVICE_ACCOUNT_PASSWORD: &str = "!service";
const MAX_DAYS: u64 = 366;

/// Whether scope pattern `limit` (`kind:pattern:actions`, `pattern` a name or `NS/*`) allows
/// `action` on `kind:name`.
fn limit_allows(limit: &Access, kind: &str, name: &str, action: &str) -> bool {
    limit.kind == kind && repo_matches(&limit.name, name) && limit.actions.iter().any(|a| a == action || a == "*")
}

/// Whether `scopes` let a token's holder take `action` on `kind:name`.
pub fn scopes_allow(scopes: &[String], kind: &str, name: &str, action: &str) -> bool {
    scopes.iter().filter_map(|s| Access::parse(s).ok()).any(|limit| limit_allows(&limit, kind, name, action))
}

/// `granted`, cut down to what `scopes` allow.
pub fn limit(granted: Vec<Access>, scopes: &[String]) -> Vec<Access> {
    granted
        .into_iter()
        .filter_map(|mut access| {
            access.actions.retain(|a| scopes_allow(scopes, &access.kind, &access.name, a));
            (!access.actions.is_empty()).then_some(access)
        })
        .collect()
}

impl Auth {
    /// Makes an access token for `user`, limited to `scopes`, valid `days`; returns the secret
    /// (shown once: the state keeps its SHA-256).
    pub async fn create_access_token(
        &self,
        user: &str,
        name: &str,
        scopes: Vec<String>,
        days: u64,
        by: &Origin,
        now: u64,
    ) -> Result<String, AuthError> {
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(AuthError::Invalid(format!("a token lasts 1 to {MAX_DAYS} days")));
        }
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid("a token needs a name of 1 to 64 printable characters".into()));
        }
        if scopes.is_empty() {
            return Err(AuthError::Invalid(
                "a token needs at least one scope, e.g. repository:acme/*:pull,push".into(),
            ));
        }
        for scope in &scopes {
            let access = Access::parse(scope).map_err(|e| AuthError::Invalid(e.to_string()))?;
            let known = ["pull", "push", "delete", "*"];
            if access.kind != "repository" || access.actions.iter().any(|a| !known.contains(&a.as_str())) {
                return Err(AuthError::Invalid(format!(
                    "scope {scope:?}: repository:NAME-OR-NAMESPACE/*:pull,push,delete"
                )));
            }
        }
        let secret = format!("{TOKEN_PREFIX}{}", crate::new_secret());
        let session = SessionRecord {
            user: user.to_owned(),
            kind: SessionKind::Token,
            created: now,
            expires: now + days * 86_400,
            client: name.to_owned(),
        };
        let command = AccountsCommand::CreateAccessToken { id: crate::secret_id(&secret), session, scopes };
        self.propose(by, command).await?;
        Ok(secret)
    }

    /// The identity an access token gives `name`, limited to its scopes (`None`: no such live
    /// token of theirs).
    pub(crate) fn token_identity(&self, name: &str, secret: &str, now: u64) -> Result<Option<Identity>, AuthError> {
        let id = crate::secret_id(secret);
        let Some(record) = self.store().session(&id)? else { return Ok(None) };
        if record.kind != SessionKind::Token || record.user != name || record.expires <= now {
            return Ok(None);
        }
        let Some(mut identity) = self.identity(name)? else { return Ok(None) };
        let scopes = self.store().token_scopes(&id)?.unwrap_or_default();
        identity.scopes = Some(Arc::new(scopes));
        Ok(Some(identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reaches_only_its_repositories_and_actions() {
        let scopes = vec!["repository:acme/*:pull,push".to_owned(), "repository:lib/base:pull".to_owned()];
        assert!(scopes_allow(&scopes, "repository", "acme/web", "push"));
        assert!(!scopes_allow(&scopes, "repository", "acme/web", "delete"));
        assert!(!scopes_allow(&scopes, "repository", "acmeco/web", "pull"));
        assert!(scopes_allow(&scopes, "repository", "lib/base", "pull"));
        assert!(!scopes_allow(&scopes, "repository", "lib/base", "push"));
        assert!(!scopes_allow(&scopes, "registry", "catalog", "*"));
        let granted = vec![
            Access::new("repository", "acme/web", &["pull", "push", "delete"]),
            Access::new("repository", "other/x", &["pull"]),
        ];
        assert_eq!(limit(granted, &scopes), vec![Access::new("repository", "acme/web", &["pull", "push"])]);
    }
}
