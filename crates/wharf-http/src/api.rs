//! The account API: `POST /auth/login` -> `{"auth_token"}` (as UCP answers it), `POST
//! /auth/logout`, and under `/api/` (every call with `Authorization: Bearer <auth_token>`):
//! `me`, `users` (list, create, show, change password, disable/enable, delete), `sessions`
//! (list, end) and `repositories/<name>` (visibility). Errors are `{"message": "..."}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use wharf_api::NodeRole;
use wharf_api::account::{
    self, LoginRequest, LoginResponse, Me, NewPassword, NewUser, RepositoryInfo, RepositoryUpdate, SessionInfo,
    UserInfo, UserUpdate,
};
use wharf_api::cluster::RoleChange;
use wharf_auth::{Auth, AuthError, Decision, Denial, Identity, Operation};
use wharf_manager::ClusterError;
use wharf_store::{Origin, Refusal, SessionKind, UserRecord};

use crate::access::{Credentials, credentials};
use crate::{App, peer_ip, typed_response};

/// Largest JSON body the API reads.
const MAX_BODY: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/auth/token", get(crate::token::get).post(crate::token::post))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/users", get(list_users).post(create_user))
        .route("/api/users/{name}", get(show_user).patch(update_user).delete(delete_user))
        .route("/api/users/{name}/password", put(set_password))
        .route("/api/users/{name}/tokens", post(create_token))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", delete(end_session))
        .route("/api/clientbundle", get(crate::bundle::client_bundle))
        .route("/api/repositories/{*name}", get(show_repository).patch(update_repository))
        .route("/api/nodes", get(list_nodes))
        .route("/api/nodes/{id}", delete(remove_node))
        .route("/api/nodes/{id}/role", put(set_role))
        .route("/api/cluster/tokens/{role}", get(show_token).post(rotate_token))
}

/// An API failure: a status and a message.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::message_response(self.0, &self.1)
    }
}

fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let status = match &e {
            AuthError::BadCredentials | AuthError::NoSession | AuthError::Token(_) | AuthError::Directory => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuthError::Refused(Refusal::UserUnknown(_) | Refusal::SessionUnknown) => StatusCode::NOT_FOUND,
            AuthError::Refused(Refusal::UserExists(_) | Refusal::LastAdmin | Refusal::UserDisabled(_)) => {
                StatusCode::CONFLICT
            }
            AuthError::Refused(Refusal::TooManyUploads { .. }) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Refused(_) | AuthError::Store(_) | AuthError::Internal(_) => {
                tracing::error!(error = %e, "account operation failed");
                return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error, see the server log");
            }
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn auth_of(app: &App) -> Result<&Arc<Auth>, ApiError> {
    app.auth
        .as_ref()
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, "this node runs without accounts (--insecure-no-auth)"))
}

/// Runs a slow account call (an Argon2id check or hash) on a blocking thread.
async fn blocking<T: Send + 'static>(
    auth: &Arc<Auth>,
    f: impl FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    let auth = Arc::clone(auth);
    let result = tokio::task::spawn_blocking(move || f(&auth)).await;
    Ok(result.map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??)
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    if body.len() > MAX_BODY {
        return Err(api_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
    }
    serde_json::from_slice(body).map_err(|e| api_error(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

/// The caller of an `/api/` request and its session id. A session this replica does not know
/// may have been opened on another manager a moment ago: a cluster manager catches up with
/// the leader before it refuses one.
/// The caller of an `/api/` route, from its `Authorization: Bearer` session: the account
/// service, who they are, their session id, and the origin their changes are recorded with
/// (their account and address).
pub(crate) struct Caller {
    pub(crate) auth: Arc<Auth>,
    pub(crate) identity: Identity,
    pub(crate) session: String,
    pub(crate) by: Origin,
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        let auth = auth_of(app)?;
        let Credentials::Bearer(secret) = credentials(&parts.headers) else {
            return Err(api_error(
                StatusCode::UNAUTHORIZED,
                "log in first: POST /auth/login, then send Authorization: Bearer <auth_token>",
            ));
        };
        let (identity, session) = crate::current_session(app, auth, &secret, SessionKind::Api).await?;
        let by = Origin::user(&identity.name, Some(&crate::peer_ip_of(&parts.extensions)));
        Ok(Caller { auth: Arc::clone(auth), identity, session, by })
    }
}

/// Asks the one authorization decision (`wharf_auth::authorize`) whether the caller may take
/// `operation`; a refusal is 403, or 404 where the caller must not learn that a thing exists.
pub(crate) fn allow(identity: &Identity, operation: Operation<'_>) -> Result<(), ApiError> {
    match wharf_auth::authorize(&identity.principal(), &operation) {
        Decision::Allow => Ok(()),
        Decision::Deny(Denial::Forbidden(why)) => Err(api_error(StatusCode::FORBIDDEN, why)),
        Decision::Deny(Denial::Hidden(why)) => Err(api_error(StatusCode::NOT_FOUND, why)),
    }
}

/// `POST /auth/login`; the answer names the user it claimed, for the audit.
async fn login(State(app): State<Arc<App>>, req: Request) -> Response {
    let mut claimed = String::new();
    let mut response = match log_in(&app, req, &mut claimed).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(crate::audit::AuditActor(claimed));
    response
}

async fn log_in(app: &Arc<App>, req: Request, claimed: &mut String) -> ApiResult {
    let auth = Arc::clone(auth_of(app)?);
    let source = peer_ip(&req);
    let client = crate::header_str(req.headers(), axum::http::header::USER_AGENT).unwrap_or("unknown").to_owned();
    let body = crate::read_body(req.into_body(), MAX_BODY).await.map_err(|(status, why)| api_error(status, why))?;
    let login: LoginRequest = parse(&body)?;
    claimed.clone_from(&login.username);
    let identity = crate::access::check_password(app, &auth, login.username, login.password, source.clone()).await?;
    if identity.scopes.is_some() {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "an access token is for registry clients; it opens no API session",
        ));
    }
    let auth_token = auth.start_session(&identity, SessionKind::Api, &client, &source, crate::now()).await?;
    Ok(typed_response(StatusCode::OK, &LoginResponse { auth_token }))
}

async fn logout(Caller { auth, session, by, .. }: Caller) -> ApiResult {
    auth.end_session(&session, &by).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(Caller { identity, .. }: Caller) -> ApiResult {
    Ok(typed_response(StatusCode::OK, &Me { name: identity.name, admin: identity.admin }))
}

fn user_info(name: &str, user: &UserRecord) -> UserInfo {
    UserInfo { name: name.to_owned(), admin: user.admin, disabled: user.disabled, created: user.created }
}

async fn list_users(Caller { auth, identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ListUsers)?;
    let users: Vec<UserInfo> = auth.users()?.iter().map(|(name, user)| user_info(name, user)).collect();
    Ok(typed_response(StatusCode::OK, &users))
}

async fn create_user(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::CreateUser)?;
    let new: NewUser = parse(&body)?;
    if new.service_account {
        if new.admin || !new.password.is_empty() {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "a service account has no password and is no administrator",
            ));
        }
        auth.create_service_account(&new.name, &by, crate::now()).await?;
        return show(&auth, &new.name, StatusCode::CREATED);
    }
    let password = new.password.clone();
    let hash = blocking(&auth, move |auth| auth.hash_password(&password)).await?;
    auth.create_user(&new.name, hash, new.admin, &by, crate::now()).await?;
    let name = new.name;
    tracing::info!(user = %name, by = %identity.name, "user created");
    show(&auth, &name, StatusCode::CREATED)
}

fn show(auth: &Auth, name: &str, status: StatusCode) -> ApiResult {
    let user = auth.user_record(name)?.ok_or_else(|| api_error(StatusCode::NOT_FOUND, "no such user"))?;
    Ok(typed_response(status, &user_info(name, &user)))
}

async fn show_user(Caller { auth, identity, .. }: Caller, Path(name): Path<String>) -> ApiResult {
    allow(&identity, Operation::ShowUser { name: &name })?;
    show(&auth, &name, StatusCode::OK)
}

async fn update_user(Caller { auth, identity, by, .. }: Caller, Path(name): Path<String>, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeUser { name: &name })?;
    let update: UserUpdate = parse(&body)?;
    if let Some(disabled) = update.disabled {
        auth.set_disabled(&name, disabled, &by).await?;
        tracing::info!(user = %name, disabled, by = %identity.name, "user updated");
    }
    show(&auth, &name, StatusCode::OK)
}

async fn delete_user(Caller { auth, identity, by, .. }: Caller, Path(name): Path<String>) -> ApiResult {
    allow(&identity, Operation::DeleteUser { name: &name })?;
    auth.delete_user(&name, &by).await?;
    tracing::info!(user = %name, by = %identity.name, "user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_password(Caller { auth, identity, by, .. }: Caller, Path(name): Path<String>, req: Request) -> ApiResult {
    allow(&identity, Operation::SetPassword { name: &name })?;
    let source = peer_ip(&req);
    let body = crate::read_body(req.into_body(), MAX_BODY).await.map_err(|(status, why)| api_error(status, why))?;
    let change: NewPassword = parse(&body)?;
    let needs_old = !identity.admin;
    let target = name.clone();
    let hash = blocking(&auth, move |auth| {
        if needs_old {
            let old =
                change.old_password.as_deref().ok_or_else(|| AuthError::Invalid("old_password is required".into()))?;
            auth.authenticate(&target, old, &source, crate::now_ms())?;
        }
        auth.hash_password(&change.password)
    })
    .await?;
    auth.set_password(&name, hash, &by).await?;
    tracing::info!(user = %name, by = %identity.name, "password changed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct SessionQuery {
    user: Option<String>,
}

async fn list_sessions(
    State(app): State<Arc<App>>,
    Caller { auth, identity, session: current, .. }: Caller,
    Query(q): Query<SessionQuery>,
) -> ApiResult {
    let user = q.user.unwrap_or_else(|| identity.name.clone());
    allow(&identity, Operation::ListSessions { user: &user })?;
    let sessions: Vec<SessionInfo> = auth
        .sessions_of(&user)?
        .into_iter()
        .map(|s| SessionInfo {
            kind: match s.record.kind {
                SessionKind::Api => account::SessionKind::Api,
                SessionKind::Refresh => account::SessionKind::RefreshToken,
                SessionKind::Token => account::SessionKind::AccessToken,
            },
            current: s.id == current,
            id: s.id,
            client: s.record.client,
            created: s.record.created,
            expires: s.record.expires,
        })
        .collect::<Vec<_>>();
    let mut sessions = sessions;
    if let Some(manager) = &app.cluster {
        let bundles =
            manager.bundles(Some(&user)).map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        sessions.extend(bundles.into_iter().map(|b| SessionInfo {
            id: b.id,
            kind: account::SessionKind::ClientBundle,
            client: b.label,
            created: b.created,
            expires: b.expires,
            current: false,
        }));
    }
    Ok(typed_response(StatusCode::OK, &sessions))
}

async fn end_session(
    State(app): State<Arc<App>>,
    Caller { auth, identity, by, .. }: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    if let Some(manager) = &app.cluster
        && manager
            .bundles(None)
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .iter()
            .any(|b| b.id == id)
    {
        let caller = wharf_manager::Caller { name: identity.name.clone(), admin: identity.admin, origin: by };
        manager.revoke_bundle(&id, &caller).await.map_err(|e| match e {
            ClusterError::NotFound(why) | ClusterError::Hidden(why) => api_error(StatusCode::NOT_FOUND, why),
            other => api_error(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        })?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let owned = auth.sessions_of(&identity.name)?.iter().any(|s| s.id == id);
    allow(&identity, Operation::EndSession { owned })?;
    auth.end_session(&id, &by).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn show_repository(Caller { auth, identity, .. }: Caller, Path(name): Path<String>) -> ApiResult {
    let settings = auth.repo_settings(&name)?;
    let level = auth.repository_level(&identity.principal(), &name);
    allow(&identity, Operation::ShowRepository { repo: &name, public: settings.public, level })?;
    let info = RepositoryInfo { name, public: settings.public, sparse_manifests: settings.sparse_manifests };
    Ok(typed_response(StatusCode::OK, &info))
}

async fn update_repository(
    Caller { auth, identity, by, .. }: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    if !wharf_api::validate_name(&name) {
        return Err(api_error(StatusCode::BAD_REQUEST, "invalid repository name"));
    }
    let level = auth.repository_level(&identity.principal(), &name);
    allow(&identity, Operation::ChangeRepository { repo: &name, level })?;
    let update: RepositoryUpdate = parse(&body)?;
    if update.public.is_none() && update.sparse_manifests.is_none() {
        return Err(api_error(StatusCode::BAD_REQUEST, "nothing to change: give public or sparse_manifests"));
    }
    if let Some(public) = update.public {
        auth.set_public(&name, public, &by).await?;
        tracing::info!(repository = %name, public, by = %identity.name, "repository visibility changed");
    }
    if let Some(allowed) = update.sparse_manifests {
        auth.set_sparse_manifests(&name, allowed, &by).await?;
        tracing::info!(repository = %name, sparse_manifests = allowed, by = %identity.name, "repository setting changed");
    }
    let settings = auth.repo_settings(&name)?;
    let info = RepositoryInfo { name, public: settings.public, sparse_manifests: settings.sparse_manifests };
    Ok(typed_response(StatusCode::OK, &info))
}

fn cluster_of(app: &App) -> Result<&Arc<wharf_manager::Manager>, ApiError> {
    app.cluster.as_ref().ok_or_else(|| api_error(StatusCode::NOT_FOUND, "this node is not part of a cluster"))
}

/// The answer of a control-plane call: its value, or its error mapped once
/// (`cluster_api::cluster_error`: a 421 names the leader).
fn cluster_answer<T: serde::Serialize>(result: Result<T, ClusterError>) -> ApiResult {
    Ok(match result {
        Ok(value) => typed_response(StatusCode::OK, &value),
        Err(e) => crate::cluster_api::cluster_error(e),
    })
}

async fn list_nodes(State(app): State<Arc<App>>, Caller { identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ListNodes)?;
    let manager = cluster_of(&app)?;
    // `wharf node ls` should be current: catch up with the leader first. Without a quorum the
    // local replica still answers, marked as possibly stale.
    let stale = crate::catch_up(&app).await.err();
    let mut response = cluster_answer(manager.node_list())?;
    if let Some(why) = stale {
        let why = format!("this manager's replica may be stale: {}", why.message).replace(['\r', '\n'], " ");
        if let Ok(value) = axum::http::HeaderValue::from_str(&why) {
            response.headers_mut().insert(crate::STALE_HEADER, value);
        }
    }
    Ok(response)
}

fn parse_role(role: &str) -> Result<NodeRole, ApiError> {
    NodeRole::parse(role).ok_or_else(|| api_error(StatusCode::NOT_FOUND, "roles are manager and worker"))
}

/// Shows a role's join token.
async fn show_token(
    State(app): State<Arc<App>>,
    Caller { identity, .. }: Caller,
    Path(role): Path<String>,
) -> ApiResult {
    allow(&identity, Operation::ShowJoinToken)?;
    let role = parse_role(&role)?;
    cluster_answer(cluster_of(&app)?.show_join_token(role))
}

/// Replaces a role's join token: the old one stops working at once.
async fn rotate_token(
    State(app): State<Arc<App>>,
    Caller { identity, by, .. }: Caller,
    Path(role): Path<String>,
) -> ApiResult {
    allow(&identity, Operation::RotateJoinToken)?;
    let role = parse_role(&role)?;
    let rotated = cluster_of(&app)?.rotate_join_token(role, by).await;
    if rotated.is_ok() {
        tracing::info!(role = role.as_str(), by = %identity.name, "join token rotated");
    }
    cluster_answer(rotated)
}

/// Removes a node (on the leader, for a manager: elsewhere the answer names the leader).
async fn remove_node(
    State(app): State<Arc<App>>,
    Caller { identity, by, .. }: Caller,
    Path(id): Path<u64>,
) -> ApiResult {
    allow(&identity, Operation::ChangeNodes)?;
    match cluster_of(&app)?.remove_node(id, by).await {
        Ok(()) => {
            tracing::info!(node_id = id, by = %identity.name, "node removed");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Ok(crate::cluster_api::cluster_error(e)),
    }
}

/// Promotes a worker or demotes a manager (see `wharf_manager::Manager::set_role`).
async fn set_role(
    State(app): State<Arc<App>>,
    Caller { identity, by, .. }: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult {
    allow(&identity, Operation::ChangeNodes)?;
    let change: RoleChange = parse(&body)?;
    let changed = cluster_of(&app)?.set_role(id, change.role, by).await;
    if changed.is_ok() {
        tracing::info!(node_id = id, role = change.role.as_str(), by = %identity.name, "node role set");
    }
    cluster_answer(changed)
}

/// `POST /api/users/{name}/tokens`: the user or an administrator makes an access token.
async fn create_token(Caller { auth, identity, by, .. }: Caller, Path(name): Path<String>, body: Bytes) -> ApiResult {
    allow(&identity, Operation::SetPassword { name: &name })?;
    let request: account::NewAccessToken = parse(&body)?;
    if auth.user_record(&name)?.is_none() {
        return Err(api_error(StatusCode::NOT_FOUND, format!("user {name} is unknown")));
    }
    let now = crate::now();
    let token = auth.create_access_token(&name, &request.name, request.scopes, request.days, &by, now).await?;
    let created = account::AccessTokenCreated { token, expires: now + request.days * 86_400 };
    Ok(typed_response(StatusCode::CREATED, &created))
}
