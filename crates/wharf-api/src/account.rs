//! The account API's wire contracts (`/auth/login`, `/api/me`, `/api/users`, `/api/sessions`,
//! `/api/repositories`), shared by the server and the CLI.

use serde::{Deserialize, Serialize};

/// `POST /auth/login` (the shape UCP answers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub auth_token: String,
}

/// `GET /api/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    pub admin: bool,
}

/// An account as the API shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub created: u64,
}

/// `POST /api/users`. A service account has no password (it logs in with access tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub service_account: bool,
}

/// `POST /api/users/{name}/tokens`: an access token limited to `scopes`
/// (`repository:NAME-OR-NAMESPACE/*:pull,push,delete`), valid `days`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAccessToken {
    pub name: String,
    pub scopes: Vec<String>,
    pub days: u64,
}

/// The answer: the token, shown once.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessTokenCreated {
    pub token: String,
    pub expires: u64,
}

/// `PATCH /api/users/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserUpdate {
    pub disabled: Option<bool>,
}

/// `PUT /api/users/{name}/password` (`old_password` when users change their own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewPassword {
    pub password: String,
    pub old_password: Option<String>,
}

/// What a session is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKind {
    /// An API session from `POST /auth/login`.
    #[serde(rename = "api")]
    Api,
    /// A registry refresh token (docker's identity token).
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// A client bundle's certificate (`GET /api/clientbundle`).
    #[serde(rename = "client_bundle")]
    ClientBundle,
    /// An access token (`POST /api/users/{name}/tokens`), named by its `client`.
    #[serde(rename = "access_token")]
    AccessToken,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Api => "api",
            SessionKind::RefreshToken => "refresh_token",
            SessionKind::ClientBundle => "client_bundle",
            SessionKind::AccessToken => "access_token",
        }
    }
}

/// One item of `GET /api/sessions` (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub kind: SessionKind,
    pub client: String,
    pub created: u64,
    pub expires: u64,
    /// Whether it is the session the request came with.
    pub current: bool,
}

/// `GET|PATCH /api/repositories/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryInfo {
    pub name: String,
    pub public: bool,
    /// Whether manifests whose layers, config or child manifests are not in the repository
    /// are accepted ("sparse"); off by default.
    #[serde(default)]
    pub sparse_manifests: bool,
}

/// `PATCH /api/repositories/{name}`: the settings to change (at least one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepositoryUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_manifests: Option<bool>,
}

/// The body of every error of the account, node and cluster APIs. `leader` is set on a 421:
/// the address of the manager that can answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApiMessage {
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

impl ApiMessage {
    pub fn new(message: impl Into<String>) -> ApiMessage {
        ApiMessage { message: message.into(), leader: None }
    }
}

/// One audited call (`GET /api/audit`): who, from where, through which door (`registry`,
/// `docker`, `api`, `auth`, `cluster`), what (method and path, never a body or query), when
/// (milliseconds since the Unix epoch), and how it ended (`ok`, `denied`, `failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    pub actor: String,
    pub source: String,
    pub door: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub outcome: String,
}
