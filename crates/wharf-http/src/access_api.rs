//! The access API: organizations and their teams (`/api/orgs`, `/api/orgs/{org}/teams`,
//! members), collections (`/api/collections`), roles (`/api/roles`), grants (`/api/grants`)
//! and the default role (`/api/settings/access`). Reads are open to every signed-in user (a
//! user's grant list is their own unless they are an administrator); changes need an
//! administrator. Errors are `{"message": "..."}`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use wharf_api::identity::{AccessSettings, GrantInfo, NewCollection, NewName, NewRole, RepoAccessInfo, TeamMembers};
use wharf_auth::{AuthError, Operation};
use wharf_store::Refusal;

use crate::api::{ApiError, Caller, allow, parse};
use crate::{App, typed_response};

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/orgs", get(list_orgs).post(create_org))
        .route("/api/orgs/{org}", axum::routing::delete(delete_org))
        .route("/api/orgs/{org}/teams", get(list_teams).post(create_team))
        .route("/api/orgs/{org}/teams/{team}", axum::routing::delete(delete_team))
        .route("/api/orgs/{org}/teams/{team}/members", put(set_members))
        .route("/api/orgs/{org}/teams/{team}/members/{user}", put(add_member).delete(remove_member))
        .route("/api/collections", get(list_collections).post(create_collection).delete(delete_collection))
        .route("/api/roles", get(list_roles).post(create_role))
        .route("/api/roles/{name}", axum::routing::delete(delete_role))
        .route("/api/grants", get(list_grants).post(grant).delete(revoke))
        .route("/api/settings/access", get(show_settings).put(change_settings))
        .route("/api/repository-access", get(list_repo_access).put(set_repo_access))
        .route("/api/audit", get(audit_log))
        .route("/api/directory", get(show_directory).put(set_directory))
        .route("/api/directory/test", axum::routing::post(test_directory))
        .route("/api/directory/sync", axum::routing::post(sync_directory))
}

type ApiResult = Result<Response, ApiError>;

/// The refusals of these calls: what does not exist is 404, what exists or is still named
/// is 409, the rest as the account API maps them.
fn refused(e: AuthError) -> ApiError {
    match &e {
        AuthError::Refused(Refusal::ObjectUnknown { .. }) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
        AuthError::Refused(Refusal::NameTaken { .. } | Refusal::Held { .. }) => {
            ApiError(StatusCode::CONFLICT, e.to_string())
        }
        AuthError::Refused(Refusal::Invalid(_)) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
        _ => e.into(),
    }
}

fn done() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_orgs(Caller { auth, identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ShowAccess { others: false })?;
    Ok(typed_response(StatusCode::OK, &auth.orgs().map_err(refused)?))
}

async fn create_org(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let NewName { name } = parse(&body)?;
    auth.create_org(&name, &by).await.map_err(refused)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn delete_org(Caller { auth, identity, by, .. }: Caller, Path(org): Path<String>) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    auth.delete_org(&org, &by).await.map_err(refused)?;
    done()
}

async fn list_teams(Caller { auth, identity, .. }: Caller, Path(org): Path<String>) -> ApiResult {
    allow(&identity, Operation::ShowAccess { others: false })?;
    Ok(typed_response(StatusCode::OK, &auth.teams(&org).map_err(refused)?))
}

async fn create_team(Caller { auth, identity, by, .. }: Caller, Path(org): Path<String>, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let NewName { name } = parse(&body)?;
    auth.create_team(&org, &name, &by).await.map_err(refused)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn delete_team(
    Caller { auth, identity, by, .. }: Caller,
    Path((org, team)): Path<(String, String)>,
) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    auth.delete_team(&org, &team, &by).await.map_err(refused)?;
    done()
}

async fn set_members(
    Caller { auth, identity, by, .. }: Caller,
    Path((org, team)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let TeamMembers { members } = parse(&body)?;
    let members: BTreeSet<String> = members.into_iter().collect();
    auth.set_team_members(&org, &team, members, &by).await.map_err(refused)?;
    done()
}

async fn add_member(
    Caller { auth, identity, by, .. }: Caller,
    Path((org, team, user)): Path<(String, String, String)>,
) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    auth.add_team_member(&org, &team, &user, &by).await.map_err(refused)?;
    done()
}

async fn remove_member(
    Caller { auth, identity, by, .. }: Caller,
    Path((org, team, user)): Path<(String, String, String)>,
) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    auth.remove_team_member(&org, &team, &user, &by).await.map_err(refused)?;
    done()
}

async fn list_collections(Caller { auth, identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ShowAccess { others: false })?;
    Ok(typed_response(StatusCode::OK, &auth.collections().map_err(refused)?))
}

async fn create_collection(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let NewCollection { path } = parse(&body)?;
    auth.create_collection(&path, &by).await.map_err(refused)?;
    Ok(StatusCode::CREATED.into_response())
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

async fn delete_collection(Caller { auth, identity, by, .. }: Caller, Query(q): Query<PathQuery>) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    auth.delete_collection(&q.path, &by).await.map_err(refused)?;
    done()
}

async fn list_roles(Caller { auth, identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ShowAccess { others: false })?;
    Ok(typed_response(StatusCode::OK, &auth.roles().map_err(refused)?))
}

async fn create_role(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let role: NewRole = parse(&body)?;
    auth.create_role(role, &by).await.map_err(refused)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn delete_role(Caller { auth, identity, by, .. }: Caller, Path(name): Path<String>) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    auth.delete_role(&name, &by).await.map_err(refused)?;
    done()
}

#[derive(Deserialize)]
struct GrantsQuery {
    /// `all` (administrators): every grant; otherwise the caller's own.
    #[serde(default)]
    scope: Option<String>,
}

async fn list_grants(Caller { auth, identity, .. }: Caller, Query(q): Query<GrantsQuery>) -> ApiResult {
    let all = q.scope.as_deref() == Some("all");
    allow(&identity, Operation::ShowAccess { others: all })?;
    let grants = auth.grants((!all).then_some(identity.name.as_str())).map_err(refused)?;
    Ok(typed_response(StatusCode::OK, &grants))
}

async fn grant(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let grant: GrantInfo = parse(&body)?;
    auth.grant(grant, &by).await.map_err(refused)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn revoke(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let grant: GrantInfo = parse(&body)?;
    auth.revoke(grant, &by).await.map_err(refused)?;
    done()
}

#[derive(Deserialize)]
struct RepoQuery {
    #[serde(default)]
    repo: Option<String>,
}

/// The access entries of a repository (those who may change it see them), or every entry
/// (administrators).
async fn list_repo_access(Caller { auth, identity, .. }: Caller, Query(q): Query<RepoQuery>) -> ApiResult {
    match &q.repo {
        Some(repo) => {
            let level = auth.repository_level(&identity.principal(), repo);
            allow(&identity, Operation::ChangeRepository { repo, level })?;
        }
        None => allow(&identity, Operation::ChangeAccess)?,
    }
    Ok(typed_response(StatusCode::OK, &auth.repo_access(q.repo.as_deref()).map_err(refused)?))
}

/// Sets a subject's level on a repository: its namespace's owner, an admin of it, or an
/// administrator.
async fn set_repo_access(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    let access: RepoAccessInfo = parse(&body)?;
    let level = auth.repository_level(&identity.principal(), &access.repo);
    allow(&identity, Operation::ChangeRepository { repo: &access.repo, level })?;
    auth.set_repo_access(access, &by).await.map_err(refused)?;
    done()
}

async fn show_settings(Caller { auth, identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ShowAccess { others: false })?;
    Ok(typed_response(StatusCode::OK, &auth.access_settings().map_err(refused)?))
}

async fn change_settings(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let settings: AccessSettings = parse(&body)?;
    auth.set_default_role(&settings.default_role, &by).await.map_err(refused)?;
    done()
}

#[derive(Deserialize)]
struct AuditParams {
    actor: Option<String>,
    door: Option<String>,
    outcome: Option<String>,
    /// Milliseconds since the Unix epoch.
    since: Option<u64>,
    until: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/audit`: the newest entries that match, oldest first (administrators).
async fn audit_log(Caller { auth, identity, .. }: Caller, Query(q): Query<AuditParams>) -> ApiResult {
    allow(&identity, Operation::ShowAudit)?;
    let query = wharf_store::AuditQuery {
        actor: q.actor,
        door: q.door,
        outcome: q.outcome,
        since_ms: q.since,
        until_ms: q.until,
        limit: q.limit.unwrap_or(1000).clamp(1, 10_000),
    };
    let entries: Vec<wharf_api::account::AuditEntry> = auth
        .audit_entries(&query)
        .map_err(refused)?
        .into_iter()
        .map(|r| wharf_api::account::AuditEntry {
            at_ms: r.at_ms,
            actor: r.actor,
            source: r.source,
            door: r.door,
            method: r.method,
            path: r.path,
            status: r.status,
            outcome: r.outcome,
        })
        .collect();
    Ok(typed_response(StatusCode::OK, &entries))
}

/// `GET /api/directory`: the configuration, without bind passwords (administrators).
async fn show_directory(Caller { auth, identity, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    match auth.show_directory().map_err(refused)? {
        Some(config) => Ok(typed_response(StatusCode::OK, &config)),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no directory is configured".into())),
    }
}

/// `PUT /api/directory`: the bind passwords are sealed before they are proposed.
async fn set_directory(Caller { auth, identity, by, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let config: wharf_api::identity::DirectoryConfig = parse(&body)?;
    auth.set_directory(config, &by).await.map_err(refused)?;
    done()
}

/// `POST /api/directory/test`: what the directory says of a login (changes nothing).
async fn test_directory(Caller { auth, identity, .. }: Caller, body: Bytes) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let login: wharf_api::identity::DirectoryLogin = parse(&body)?;
    let found = auth.test_directory(&login.username, &login.password).await.map_err(refused)?;
    Ok(typed_response(StatusCode::OK, &found))
}

/// `POST /api/directory/sync`: a sync now.
async fn sync_directory(Caller { auth, identity, by, .. }: Caller) -> ApiResult {
    allow(&identity, Operation::ChangeAccess)?;
    let summary = auth.sync_directory(&by).await.map_err(refused)?;
    Ok(typed_response(StatusCode::OK, &summary))
}
