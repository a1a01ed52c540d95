//! `GET /api/clientbundle` (as UCP serves it): a zip with a new user certificate for the
//! caller (`cert.pem`, `key.pem`, `cert.pub`), the cluster CA (`ca.pem`), the scripts that
//! point the `docker` CLI at the cluster with TLS verification (`env.sh`, `env.ps1`,
//! `env.cmd`), and what `docker context import` reads (`meta.json`, `tls/docker/*.pem`).
//! The `docker` CLI imports a zip only when it holds nothing else, so `?format=context`
//! serves those files alone (a bundle like the other, of its own certificate).

use std::io::Write;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::api::{ApiError, Caller};

pub(crate) async fn client_bundle(
    State(app): State<Arc<App>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(manager) = &app.cluster else {
        return Err(ApiError(StatusCode::NOT_FOUND, "client bundles are made by cluster managers".into()));
    };
    let query = crate::query_pairs(req.uri().query());
    let context_only = match crate::query_get(&query, "format") {
        None | Some("ucp") => false,
        Some("context") => true,
        Some(other) => {
            let why = format!("unknown bundle format {other:?}: \"ucp\" (the default) or \"context\"");
            return Err(ApiError(StatusCode::BAD_REQUEST, why));
        }
    };
    let host = crate::token_realm(&app, &req);
    let host = host.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches("/auth/token");
    let label = crate::header_str(req.headers(), header::USER_AGENT).unwrap_or("client bundle").to_owned();
    let user = caller.identity.name.clone();
    let (key, id) = manager.issue_bundle(&user, &label, caller.by.clone()).await.map_err(|e| match e {
        wharf_manager::ClusterError::Forbidden(why) => ApiError(StatusCode::FORBIDDEN, why),
        other => ApiError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    })?;
    let public = wharf_pki::public_key_pem(&key.cert_pem)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut files = files(manager.ca.cert_pem(), &key.cert_pem, &key.key_pem, &public, host, &user);
    if context_only {
        files.retain(|(name, ..)| is_context_file(name));
    }
    let zip =
        zip_of(&files).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("building the bundle: {e}")))?;
    tracing::info!(user, bundle = id, "client bundle issued");
    let mut response = (StatusCode::OK, zip).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"ucp-bundle-{user}.zip\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Whether `docker context import` takes a file of that name.
fn is_context_file(name: &str) -> bool {
    name == "meta.json" || name.starts_with("tls/")
}

/// The bundle's files, by name; the key is the only secret.
fn files(ca: &str, cert: &str, key: &str, public: &str, host: &str, user: &str) -> Vec<(String, String, u32)> {
    let docker_host = format!("tcp://{host}");
    let env_sh = format!(
        "export DOCKER_TLS_VERIFY=1\nexport COMPOSE_TLS_VERSION=TLSv1_2\nexport DOCKER_CERT_PATH=\"$PWD\"\nexport DOCKER_HOST={docker_host}\n"
    );
    let env_ps1 = format!(
        "$env:DOCKER_TLS_VERIFY = \"1\"\n$env:COMPOSE_TLS_VERSION = \"TLSv1_2\"\n$env:DOCKER_CERT_PATH = Split-Path -Parent $MyInvocation.MyCommand.Path\n$env:DOCKER_HOST = \"{docker_host}\"\n"
    );
    let env_cmd = format!(
        "@echo off\r\nset DOCKER_TLS_VERIFY=1\r\nset COMPOSE_TLS_VERSION=TLSv1_2\r\nset DOCKER_CERT_PATH=%~dp0\r\nset DOCKER_HOST={docker_host}\r\n"
    );
    let meta = serde_json::json!({
        "Name": format!("wharf-{user}"),
        "Metadata": {"Description": format!("Wharf cluster at {host} as {user}")},
        "Endpoints": {"docker": {"Host": docker_host, "SkipTLSVerify": false}},
    });
    vec![
        ("ca.pem".into(), ca.into(), 0o644),
        ("cert.pem".into(), cert.into(), 0o644),
        ("key.pem".into(), key.into(), 0o600),
        ("cert.pub".into(), public.into(), 0o644),
        ("env.sh".into(), env_sh, 0o644),
        ("env.ps1".into(), env_ps1, 0o644),
        ("env.cmd".into(), env_cmd, 0o644),
        ("meta.json".into(), meta.to_string(), 0o644),
        ("tls/docker/ca.pem".into(), ca.into(), 0o644),
        ("tls/docker/cert.pem".into(), cert.into(), 0o644),
        ("tls/docker/key.pem".into(), key.into(), 0o600),
    ]
}

fn zip_of(files: &[(String, String, u32)]) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content, mode) in files {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        zip.start_file(name.as_str(), options)?;
        zip.write_all(content.as_bytes())?;
    }
    Ok(zip.finish()?.into_inner())
}
