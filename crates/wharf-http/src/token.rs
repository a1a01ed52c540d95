//! The token endpoint, `/auth/token`: `GET` with Basic credentials or none (docker, skopeo,
//! podman), and the OAuth2 `POST` form with the `password` and `refresh_token` grants
//! (containerd, and docker with a stored identity token). It grants the intersection of the
//! scopes asked for and the caller's rights; `offline_token=true` (GET) or
//! `access_type=offline` (POST) also returns a refresh token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use wharf_auth::{Access, Auth, AuthError, Identity};
use wharf_store::SessionKind;

use crate::access::{Credentials, check_password, credentials};
use crate::{App, json_response, peer_ip, query_get, query_pairs};

/// Largest OAuth2 form accepted.
const MAX_FORM: usize = 64 * 1024;

/// A refusal from the token endpoint.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refusal(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, code, message: message.into() }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Refusal {
        match e {
            AuthError::RateLimited => refusal(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", e.to_string()),
            AuthError::BadCredentials | AuthError::NoSession | AuthError::Token(_) | AuthError::Directory => {
                refusal(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "invalid username or password")
            }
            AuthError::Invalid(m) => refusal(StatusCode::BAD_REQUEST, "invalid_request", m),
            AuthError::Refused(_) => refusal(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string()),
            AuthError::Unavailable(_) => {
                refusal(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the cluster cannot answer now; try again")
            }
            AuthError::Store(_) | AuthError::Internal(_) => {
                tracing::error!(error = %e, "token endpoint failed");
                refusal(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error, see the server log")
            }
        }
    }
}

fn auth_of(app: &App) -> Result<&Arc<Auth>, Refusal> {
    app.auth.as_ref().ok_or_else(|| refusal(StatusCode::NOT_FOUND, "UNSUPPORTED", "this node runs without accounts"))
}

pub(crate) async fn get(State(app): State<Arc<App>>, req: Request) -> Response {
    let source = peer_ip(&req);
    let (parts, _) = req.into_parts();
    match issue_from_query(&app, &parts, source).await {
        Ok(response) => response,
        Err(r) => {
            let body = json!({"errors": [{"code": r.code, "message": r.message}]});
            with_basic_challenge(json_response(r.status, body.to_string().into_bytes()), r.status)
        }
    }
}

async fn issue_from_query(app: &App, req: &axum::http::request::Parts, source: String) -> Result<Response, Refusal> {
    let auth = auth_of(app)?;
    let query = query_pairs(req.uri.query());
    check_service(auth, query_get(&query, "service"))?;
    let scopes = query.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str());
    let requested =
        Access::parse_all(scopes).map_err(|e| refusal(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
    let identity = match credentials(&req.headers) {
        Credentials::None => None,
        Credentials::Basic(user, password) => Some(check_password(app, auth, user, password, source.clone()).await?),
        Credentials::Bearer(_) | Credentials::Unsupported => {
            return Err(refusal(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "send Basic credentials or none"));
        }
    };
    let offline = query_get(&query, "offline_token") == Some("true");
    let client = query_get(&query, "client_id").unwrap_or("unknown").to_owned();
    let refresh = match (&identity, offline) {
        // An access token gets no refresh token: that would outlive its scopes and expiry.
        (Some(identity), true) if identity.scopes.is_none() => {
            Some(start_refresh(auth, identity, client, &source).await?)
        }
        _ => None,
    };
    let response = issue(auth, identity.as_ref(), &requested, refresh)?;
    Ok(json_response(StatusCode::OK, response.to_string().into_bytes()))
}

pub(crate) async fn post(State(app): State<Arc<App>>, req: Request) -> Response {
    match issue_from_form(&app, req).await {
        Ok(response) => response,
        Err(r) => {
            let body = json!({"error": r.code, "error_description": r.message});
            json_response(r.status, body.to_string().into_bytes())
        }
    }
}

async fn issue_from_form(app: &App, req: Request) -> Result<Response, Refusal> {
    let auth = auth_of(app)?;
    let source = peer_ip(&req);
    let body = crate::read_body(req.into_body(), MAX_FORM)
        .await
        .map_err(|(status, why)| refusal(status, "invalid_request", why))?;
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| query_get(&form, k);
    check_service(auth, field("service"))?;
    let requested = Access::parse_all(field("scope"))
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string()))?;
    let client = field("client_id").unwrap_or("unknown").to_owned();
    let (identity, refresh) = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return Err(refusal(StatusCode::BAD_REQUEST, "invalid_request", "username and password are required"));
            };
            let identity = check_password(app, auth, user.to_owned(), password.to_owned(), source.clone()).await?;
            let refresh = match field("access_type") == Some("offline") && identity.scopes.is_none() {
                true => Some(start_refresh(auth, &identity, client, &source).await?),
                false => None,
            };
            (identity, refresh)
        }
        Some("refresh_token") => {
            let secret = field("refresh_token")
                .ok_or_else(|| refusal(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required"))?;
            let (identity, _) = crate::current_session(app, auth, secret, SessionKind::Refresh).await?;
            (identity, Some(secret.to_owned()))
        }
        other => {
            let message = format!("unsupported grant_type {:?}", other.unwrap_or(""));
            return Err(refusal(StatusCode::BAD_REQUEST, "unsupported_grant_type", message));
        }
    };
    let response = issue(auth, Some(&identity), &requested, refresh)?;
    Ok(json_response(StatusCode::OK, response.to_string().into_bytes()))
}

fn check_service(auth: &Auth, service: Option<&str>) -> Result<(), Refusal> {
    match service {
        Some(s) if s != auth.config().service => Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("unknown service {:?}", s.chars().take(100).collect::<String>()),
        )),
        _ => Ok(()),
    }
}

async fn start_refresh(auth: &Arc<Auth>, identity: &Identity, client: String, source: &str) -> Result<String, Refusal> {
    Ok(auth.start_session(identity, SessionKind::Refresh, &client, source, crate::now()).await?)
}

fn issue(
    auth: &Auth,
    identity: Option<&Identity>,
    requested: &[Access],
    refresh: Option<String>,
) -> Result<serde_json::Value, Refusal> {
    let now = crate::now();
    let (token, granted) = auth.issue_token(identity, requested, now)?;
    let scope: Vec<String> = granted.iter().map(Access::to_scope).collect();
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": auth.config().token_lifetime,
        "issued_at": rfc3339(now),
        "scope": scope.join(" "),
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    Ok(body)
}

fn with_basic_challenge(mut response: Response, status: StatusCode) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"wharf\""));
    }
    response
}

pub(crate) use wharf_api::docker::rfc3339;
