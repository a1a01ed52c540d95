//! The audit of every door: after each response, a state-changing call (any method but GET,
//! HEAD and OPTIONS), a refused one (403, 401 to a caller who presented credentials, or a
//! "not found" that hides what the caller may not see) and a
//! password login are recorded with `wharf_auth::AuditLog`: who (the client bundle's user,
//! the account of the Basic credentials, registry token or API session, or the name a login
//! claimed), the door, the method and path (never the query or the body, so never a password
//! or a secret), the status and the outcome, the time and the source address. Node-to-node
//! calls (`/raft/`, `/cluster/` but joins) are not audited: they are the cluster's own.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use wharf_store::{AuditRecord, SessionKind};

use crate::access::{Credentials, credentials};
use crate::{App, PeerUser};

/// The account a handler learned and the middleware cannot (the user name a login's body
/// claims), put into the response's extensions.
#[derive(Debug, Clone)]
pub(crate) struct AuditActor(pub(crate) String);

/// A refusal the answer does not show (an object the caller may not see is "not found"), put
/// into the response's extensions: recorded as `denied`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditDenied;

/// Which door a path belongs to, or `None` when it is not audited.
fn door(path: &str) -> Option<&'static str> {
    if path == "/v2" || path.starts_with("/v2/") {
        Some("registry")
    } else if path.starts_with("/auth/") {
        Some("auth")
    } else if path.starts_with("/api/") {
        Some("api")
    } else if path == "/cluster/join" {
        Some("cluster")
    } else if path.starts_with("/raft/") || path.starts_with("/cluster/") || path == "/ca" {
        None
    } else {
        Some("docker")
    }
}

/// Records the call if it is audited.
pub(crate) async fn audit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(auth) = app.auth.clone() else { return next.run(req).await };
    let path = req.uri().path().to_owned();
    let Some(door) = door(&path) else { return next.run(req).await };
    let method = req.method().clone();
    let presented = req.headers().contains_key(header::AUTHORIZATION) || req.extensions().get::<PeerUser>().is_some();
    let creds = credentials(req.headers());
    let basic = matches!(creds, Credentials::Basic(..));
    // What the entry needs later, kept cheaply: most calls are not audited.
    let peer = req.extensions().get::<crate::PeerAddr>().copied();
    let bundle_user = req.extensions().get::<PeerUser>().map(|u| u.0.user.clone());
    let response = next.run(req).await;
    let status = response.status();
    // Waiting for a container and sizing a terminal are posts that change nothing.
    let reads = door == "docker" && (path.ends_with("/wait") || path.ends_with("/resize"));
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) && !reads;
    let hidden = response.extensions().get::<AuditDenied>().is_some();
    let refused = hidden || status == StatusCode::FORBIDDEN || (status == StatusCode::UNAUTHORIZED && presented);
    if !(changes || refused || (door == "auth" && basic)) {
        return response;
    }
    let actor = match response.extensions().get::<AuditActor>() {
        Some(AuditActor(name)) => name.clone(),
        None => bundle_user.unwrap_or_else(|| actor_of(&auth, creds)),
    };
    // A name a caller claimed (a login's, a Basic user's) is theirs to choose: it reaches the
    // log line and the state only printable and bounded.
    let actor = printable(&actor);
    let outcome = match status.as_u16() {
        _ if hidden => "denied",
        401 | 403 => "denied",
        s if s < 400 => "ok",
        _ => "failed",
    };
    auth.audit().record(AuditRecord {
        at_ms: crate::now_ms(),
        actor,
        source: peer.map_or_else(|| "unknown".to_owned(), |p| p.0.ip().to_string()),
        door: door.into(),
        method: method.as_str().into(),
        path: path.chars().take(512).collect(),
        status: status.as_u16(),
        outcome: outcome.into(),
    });
    response
}

/// `name` with control characters escaped (a newline cannot forge a log line), at most 128
/// characters.
fn printable(name: &str) -> String {
    name.chars()
        .take(128)
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect()
}

/// The account credentials name: a Basic user name as given, a registry token's subject, an
/// API session's account; empty when none holds.
fn actor_of(auth: &wharf_auth::Auth, creds: Credentials) -> String {
    match creds {
        Credentials::Basic(user, _) => user,
        Credentials::Bearer(secret) if secret.matches('.').count() == 2 => {
            auth.verify_token(&secret, crate::now()).map(|(_, claims)| claims.sub.clone()).unwrap_or_default()
        }
        Credentials::Bearer(secret) => {
            auth.session(&secret, SessionKind::Api, crate::now()).map(|(identity, _)| identity.name).unwrap_or_default()
        }
        Credentials::None | Credentials::Unsupported => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_name_cannot_forge_a_log_line() {
        assert_eq!(printable("eve\nwharf::audit admin"), "eve\\nwharf::audit admin");
        assert_eq!(printable(&"x".repeat(300)).len(), 128);
        assert_eq!(printable("alice"), "alice");
    }

    #[test]
    fn doors_by_path() {
        assert_eq!(door("/v2/a/b/blobs/uploads/"), Some("registry"));
        assert_eq!(door("/auth/token"), Some("auth"));
        assert_eq!(door("/api/users"), Some("api"));
        assert_eq!(door("/v1.41/services/create"), Some("docker"));
        assert_eq!(door("/services/x/update"), Some("docker"));
        assert_eq!(door("/cluster/join"), Some("cluster"));
        assert_eq!(door("/cluster/heartbeat"), None);
        assert_eq!(door("/raft/append"), None);
        assert_eq!(door("/ca"), None);
    }
}
