//! Who may make a `/v2/` request. A request is authenticated first (a registry token, Basic
//! credentials, or nobody), then checked against what its endpoint needs. Refusals carry the
//! `Bearer` challenge that sends clients to Wharf's token endpoint:
//! - no or anonymous credentials, or a token that lacks a scope its holder could get: 401
//!   `UNAUTHORIZED` (clients fetch a token for the scope in the challenge and retry);
//! - an authenticated user asking for what they may never have: 401 `DENIED` with
//!   `error="insufficient_scope"` (docker retries a 403 for 50 s; this it reports at once);
//! - a bad token or password: 401 with `error="invalid_token"`;
//! - too many failed passwords: 429 `TOOMANYREQUESTS`.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use base64::Engine;
use wharf_api::{ErrorCode, RegistryError};
use wharf_auth::{Auth, AuthError, Claims, Principal, permits};

use crate::endpoint::Endpoint;
use crate::{App, error_response, header_str};

/// What a request was granted, kept in its extensions for handlers that decide more (mounts).
#[derive(Clone)]
pub(crate) enum Grant {
    /// The node runs without accounts (`--insecure-no-auth`).
    Everything,
    /// A registry token's claims.
    Token(Principal, Arc<Claims>),
    /// Basic credentials or no credentials: the rules decide directly.
    Rules(Principal),
    /// An access token as Basic credentials: the rules, within the token's scopes.
    Scoped(Principal, Arc<Vec<String>>),
}

impl Grant {
    pub(crate) fn permits(&self, auth: Option<&Auth>, kind: &str, name: &str, action: &str) -> bool {
        match (self, auth) {
            (Grant::Everything, _) | (_, None) => true,
            (Grant::Token(_, claims), _) => permits(&claims.access, kind, name, action),
            (Grant::Rules(principal), Some(auth)) => auth.may(principal, kind, name, action),
            (Grant::Scoped(principal, scopes), Some(auth)) => {
                auth.may(principal, kind, name, action) && wharf_auth::tokens::scopes_allow(scopes, kind, name, action)
            }
        }
    }

    /// Whether the caller may pull `repo` by the rules (a token's claims name only what it
    /// asked for: the catalog asks the rules).
    pub(crate) fn may_read(&self, auth: &Auth, repo: &str) -> bool {
        match self {
            Grant::Scoped(..) => self.permits(Some(auth), "repository", repo, "pull"),
            _ => self.principal().is_none_or(|principal| auth.may(principal, "repository", repo, "pull")),
        }
    }

    pub(crate) fn is_admin(&self) -> bool {
        match self {
            Grant::Everything => true,
            Grant::Token(p, _) | Grant::Rules(p) => matches!(p, Principal::User { admin: true, .. }),
            Grant::Scoped(..) => false,
        }
    }

    /// The user name of whoever made the request, empty for anonymous requests and on a node
    /// without accounts.
    pub(crate) fn owner(&self) -> String {
        self.principal().map(|p| p.subject().to_owned()).unwrap_or_default()
    }

    fn principal(&self) -> Option<&Principal> {
        match self {
            Grant::Everything => None,
            Grant::Token(p, _) | Grant::Rules(p) | Grant::Scoped(p, _) => Some(p),
        }
    }
}

/// What an endpoint needs: an action on a resource, and the actions a challenge asks for.
struct Need {
    kind: &'static str,
    name: String,
    action: &'static str,
    challenge_actions: &'static str,
    /// A repository a challenge also asks `pull` on: the `from` of a cross-repository mount.
    /// The request itself needs only `push` on its target (without `pull` on `from` the
    /// mount becomes an ordinary upload); naming both, as distribution does, lets a client
    /// that fetches the challenged scopes mount at once.
    mount_from: Option<String>,
}

/// What a request to `endpoint` with `method` and `query` needs.
fn need(endpoint: &Endpoint, method: &Method, query: Option<&str>) -> Option<Need> {
    let repo = |name: &str, action, challenge_actions| {
        Some(Need { kind: "repository", name: name.to_owned(), action, challenge_actions, mount_from: None })
    };
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match endpoint {
        Endpoint::Base => None,
        Endpoint::Catalog => Some(Need {
            kind: "registry",
            name: "catalog".into(),
            action: "*",
            challenge_actions: "*",
            mount_from: None,
        }),
        Endpoint::Uploads { name } if *method == Method::POST => {
            let pairs = crate::query_pairs(query);
            let from = crate::query_get(&pairs, "mount").and(crate::query_get(&pairs, "from"));
            let mount_from =
                from.filter(|from| wharf_api::validate_name(from) && *from != name.as_str()).map(str::to_owned);
            Some(Need { mount_from, ..repo(name, "push", "pull,push")? })
        }
        Endpoint::Tags { name } | Endpoint::Referrers { name, .. } => repo(name, "pull", "pull"),
        Endpoint::Manifest { name, .. } | Endpoint::Blob { name, .. } if reads => repo(name, "pull", "pull"),
        Endpoint::Manifest { name, .. } | Endpoint::Blob { name, .. } if *method == Method::DELETE => {
            repo(name, "delete", "delete")
        }
        Endpoint::Manifest { name, .. }
        | Endpoint::Blob { name, .. }
        | Endpoint::Uploads { name }
        | Endpoint::Upload { name, .. } => repo(name, "push", "pull,push"),
    }
}

pub(crate) enum Credentials {
    None,
    Bearer(String),
    Basic(String, String),
    Unsupported,
}

pub(crate) fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = header_str(headers, header::AUTHORIZATION) else { return Credentials::None };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok();
        let text = decoded.and_then(|d| String::from_utf8(d).ok());
        if let Some((user, password)) = text.as_deref().and_then(|t| t.split_once(':')) {
            return Credentials::Basic(user.to_owned(), password.to_owned());
        }
    }
    Credentials::Unsupported
}

/// Checks a user name and password on a blocking thread (Argon2 is slow on purpose). A user
/// this replica does not know may have been created on another manager a moment ago, or this
/// manager may have just joined: a cluster manager catches up with the leader first (without
/// a quorum it checks against what it has).
pub(crate) async fn check_password(
    app: &App,
    auth: &Arc<Auth>,
    user: String,
    password: String,
    source: String,
) -> Result<wharf_auth::Identity, AuthError> {
    if let Some(identity) = auth.authenticate_remembered(&user, &password, &source, crate::now_ms()) {
        return Ok(identity);
    }
    if app.cluster.is_some() && matches!(auth.user_record(&user), Ok(None)) {
        let _ = crate::catch_up(app).await;
    }
    let local = Arc::clone(auth);
    let (name, secret, from) = (user.clone(), password.clone(), source.clone());
    let checked = tokio::task::spawn_blocking(move || local.authenticate(&name, &secret, &from, crate::now_ms()))
        .await
        .unwrap_or_else(|e| Err(AuthError::Internal(e.to_string())));
    match checked {
        // An account of the directory, or no account yet (made at first login when the
        // directory says so): the directory decides.
        Err(AuthError::Directory) => auth.authenticate_directory(&user, &password, &source, crate::now_ms()).await,
        Err(AuthError::BadCredentials) if matches!(auth.user_record(&user), Ok(None)) => {
            match auth.authenticate_directory(&user, &password, &source, crate::now_ms()).await {
                // A directory that is down must not tell a guesser more than a wrong password.
                Err(AuthError::Unavailable(why)) => {
                    tracing::warn!(%why, "a login could not reach the directory");
                    Err(AuthError::BadCredentials)
                }
                other => other,
            }
        }
        other => other,
    }
}

/// Authenticates and authorises a `/v2/` request; on success the request carries its [`Grant`].
pub(crate) async fn authorize(app: &App, endpoint: &Endpoint, req: &mut Request) -> Result<(), Response> {
    let Some(auth) = &app.auth else {
        req.extensions_mut().insert(Grant::Everything);
        return Ok(());
    };
    let need = need(endpoint, req.method(), req.uri().query());
    let realm = crate::token_realm(app, req);
    let challenge = |error: Option<&str>| challenge(&realm, auth, need.as_ref(), error);
    let source = crate::peer_ip(req);
    let (grant, presented) = match credentials(req.headers()) {
        Credentials::None => (Grant::Rules(Principal::Anonymous), false),
        Credentials::Bearer(token) => match auth.verify_token(&token, crate::now()) {
            Ok((principal, claims)) => (Grant::Token(principal, claims), true),
            Err(e) => return Err(refuse(ErrorCode::Unauthorized, &e.to_string(), challenge(Some("invalid_token")))),
        },
        Credentials::Basic(user, password) => match check_password(app, auth, user, password, source).await {
            Ok(identity) => match identity.scopes.clone() {
                Some(scopes) => (Grant::Scoped(identity.principal(), scopes), true),
                None => (Grant::Rules(identity.principal()), true),
            },
            Err(AuthError::RateLimited) => {
                return Err(refuse(ErrorCode::TooManyRequests, "too many failed logins; try again later", None));
            }
            Err(_) => {
                let h = challenge(Some("invalid_token"));
                return Err(refuse(ErrorCode::Unauthorized, "invalid username or password", h));
            }
        },
        Credentials::Unsupported => {
            return Err(refuse(ErrorCode::Unauthorized, "unsupported authorization scheme", challenge(None)));
        }
    };
    let allowed = match &need {
        None => presented,
        Some(n) => grant.permits(Some(auth), n.kind, &n.name, n.action),
    };
    if allowed {
        req.extensions_mut().insert(grant);
        return Ok(());
    }
    let could = match (grant.principal(), &need) {
        (Some(p @ Principal::User { .. }), Some(n)) => auth.may(p, n.kind, &n.name, n.action),
        _ => true,
    };
    if could {
        let error = presented.then_some("insufficient_scope");
        Err(refuse(ErrorCode::Unauthorized, "authentication required", challenge(error)))
    } else {
        // 401 rather than 403: docker retries a 403 on push five times with growing pauses
        // (50 s in all), while it gives up at once on a 401 whose challenge says
        // `insufficient_scope`, as distribution answers. The code says what happened.
        let denied =
            RegistryError::new(ErrorCode::Denied, "requested access to the resource is denied").with_status(401);
        Err(refuse_with(&denied, challenge(Some("insufficient_scope"))))
    }
}

fn refuse(code: ErrorCode, message: &str, challenge: Option<String>) -> Response {
    refuse_with(&RegistryError::new(code, message), challenge)
}

fn refuse_with(error: &RegistryError, challenge: Option<String>) -> Response {
    let mut response = error_response(error);
    if let Some(value) = challenge.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The `WWW-Authenticate` value sending a client to this node's token endpoint.
fn challenge(realm: &str, auth: &Auth, need: Option<&Need>, error: Option<&str>) -> Option<String> {
    let mut value = format!("Bearer realm=\"{realm}\",service=\"{}\"", auth.config().service);
    if let Some(n) = need.filter(|n| n.kind == "registry" || wharf_api::validate_name(&n.name)) {
        let also = n.mount_from.as_ref().map(|from| format!(" repository:{from}:pull")).unwrap_or_default();
        value.push_str(&format!(",scope=\"{}:{}:{}{also}\"", n.kind, n.name, n.challenge_actions));
    }
    if let Some(e) = error {
        value.push_str(&format!(",error=\"{e}\""));
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need_of(path: &str, method: Method) -> Option<(String, String, &'static str)> {
        let endpoint = Endpoint::parse(path).expect("endpoint");
        need(&endpoint, &method, None).map(|n| (n.kind.to_owned(), n.name, n.action))
    }

    #[test]
    fn a_mount_challenge_names_pull_on_its_source_too() {
        let endpoint = Endpoint::parse("/v2/b/app/blobs/uploads/").expect("endpoint");
        let mount = need(&endpoint, &Method::POST, Some("mount=sha256:1&from=a/app")).expect("need");
        assert_eq!((mount.name.as_str(), mount.action, mount.mount_from.as_deref()), ("b/app", "push", Some("a/app")));
        for query in
            [None, Some("from=a/app"), Some("mount=sha256:1&from=Bad..Name"), Some("mount=sha256:1&from=b/app")]
        {
            assert_eq!(need(&endpoint, &Method::POST, query).expect("need").mount_from, None, "{query:?}");
        }
    }

    #[test]
    fn endpoints_need_the_actions_distribution_asks_for() {
        let s = |k: &str, n: &str, a: &'static str| Some((k.to_owned(), n.to_owned(), a));
        assert_eq!(need_of("/v2/", Method::GET), None);
        assert_eq!(need_of("/v2/_catalog", Method::GET), s("registry", "catalog", "*"));
        assert_eq!(need_of("/v2/a/b/tags/list", Method::GET), s("repository", "a/b", "pull"));
        assert_eq!(need_of("/v2/a/manifests/1", Method::HEAD), s("repository", "a", "pull"));
        assert_eq!(need_of("/v2/a/manifests/1", Method::PUT), s("repository", "a", "push"));
        assert_eq!(need_of("/v2/a/manifests/1", Method::DELETE), s("repository", "a", "delete"));
        assert_eq!(need_of("/v2/a/blobs/sha256:1", Method::GET), s("repository", "a", "pull"));
        assert_eq!(need_of("/v2/a/blobs/sha256:1", Method::DELETE), s("repository", "a", "delete"));
        assert_eq!(need_of("/v2/a/blobs/uploads/", Method::POST), s("repository", "a", "push"));
        assert_eq!(need_of("/v2/a/blobs/uploads/x", Method::GET), s("repository", "a", "push"));
        assert_eq!(need_of("/v2/a/referrers/sha256:1", Method::GET), s("repository", "a", "pull"));
    }

    #[test]
    fn authorization_headers_parse() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("value"));
            h
        };
        assert!(matches!(credentials(&HeaderMap::new()), Credentials::None));
        assert!(matches!(credentials(&headers("Bearer abc")), Credentials::Bearer(t) if t == "abc"));
        assert!(matches!(credentials(&headers("basic YTpiOmM=")), Credentials::Basic(u, p) if u == "a" && p == "b:c"));
        assert!(matches!(credentials(&headers("Basic !!!")), Credentials::Unsupported));
        assert!(matches!(credentials(&headers("Basic YWJj")), Credentials::Unsupported), "no colon");
        assert!(matches!(credentials(&headers("Digest x")), Credentials::Unsupported));
    }
}
