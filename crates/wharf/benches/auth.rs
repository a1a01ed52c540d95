//! Access benchmark: how many registry tokens Wharf issues per second, and what auth costs on
//! manifest HEAD requests at 32 connections: one node with accounts (a registry token on every
//! request, as docker sends it) against one with `--insecure-no-auth`, same machine, same run,
//! same client (hey), alternating runs, medians.
//!
//! Run with `./scripts/bench` or `cargo bench -p wharf --bench auth`.

mod common;

use std::time::Instant;

use common::{ADMIN_PASSWORD, MANIFEST_TYPE, Res, Server, hey_head, median, start_wharf};
use sha2::{Digest as _, Sha256};

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Pushes a config blob and a manifest tagged `1` into `admin/bench`.
async fn push_manifest(server: &Server) -> Res<String> {
    let c = server.client()?;
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let cd = digest(&config);
    let url = format!("{}/v2/admin/bench/blobs/uploads/?digest={cd}", server.base);
    c.post(url).body(config.clone()).send().await?.error_for_status()?;
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{MANIFEST_TYPE}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{cd}\",\"size\":{}}},\"layers\":[]}}",
        config.len()
    );
    let url = format!("{}/v2/admin/bench/manifests/1", server.base);
    c.put(&url).header("content-type", MANIFEST_TYPE).body(manifest).send().await?.error_for_status()?;
    Ok(url)
}

/// Milliseconds of a token request whose password must be checked (Argon2id, nothing cached).
async fn cold_password_check(server: &Server, users: usize) -> Res<f64> {
    let c = server.client()?;
    let login: serde_json::Value = c
        .post(format!("{}/auth/login", server.base))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let session = login["auth_token"].as_str().ok_or("no auth_token")?;
    let plain = reqwest::Client::new();
    let mut times = Vec::new();
    for i in 0..users {
        let (name, password) = (format!("bench{i}"), format!("bench-password-{i}"));
        plain
            .post(format!("{}/api/users", server.base))
            .bearer_auth(session)
            .json(&serde_json::json!({"name": name, "password": password}))
            .send()
            .await?
            .error_for_status()?;
        let t = Instant::now();
        plain
            .get(format!("{}/auth/token?service=wharf-registry&scope=repository:{name}/x:pull", server.base))
            .basic_auth(&name, Some(&password))
            .send()
            .await?
            .error_for_status()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(times))
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("wharf-bench-auth").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let with_auth = start_wharf(tmp.path(), "auth-on", &[])?;
    let without = start_wharf(tmp.path(), "auth-off", &["--insecure-no-auth"])?;
    let url_on = runtime.block_on(push_manifest(&with_auth))?;
    let url_off = runtime.block_on(push_manifest(&without))?;

    eprintln!("manifest HEAD, alternating: auth on (registry token) / --insecure-no-auth");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let bearer = runtime.block_on(with_auth.bearer("repository:admin/bench:pull"))?;
        on.push(hey_head(&url_on, bearer.as_deref())?);
        off.push(hey_head(&url_off, None)?);
        eprintln!("  {:.0} / {:.0} req/s", on.last().unwrap_or(&0.0), off.last().unwrap_or(&0.0));
    }
    let basic_on = hey_head(&url_on, with_auth.auth.as_deref())?;

    eprintln!("token issuance");
    let token_url =
        format!("{}/auth/token?service=wharf-registry&scope=repository:admin/bench:pull,push", with_auth.base);
    let basic = format!("Authorization: {}", with_auth.auth.as_deref().unwrap_or(""));
    let get_rate = common::hey(&["-H", basic.as_str()], &token_url, 200)?;
    let refresh = runtime.block_on(async {
        let url = format!("{token_url}&offline_token=true&client_id=bench");
        let body: serde_json::Value = with_auth.client()?.get(url).send().await?.error_for_status()?.json().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(body["refresh_token"].as_str().unwrap_or("").to_owned())
    })?;
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service=wharf-registry&scope=repository%3Aadmin%2Fbench%3Apull%2Cpush&client_id=bench"
    );
    let post_url = format!("{}/auth/token", with_auth.base);
    let post_rate =
        common::hey(&["-m", "POST", "-T", "application/x-www-form-urlencoded", "-d", form.as_str()], &post_url, 200)?;
    let cold = runtime.block_on(cold_password_check(&with_auth, 5))?;

    let (on, off) = (median(on), median(off));
    println!();
    println!("| measurement | value |");
    println!("|---|---:|");
    println!("| manifest HEAD, auth on (registry token), 32 connections | {on:.0} req/s |");
    println!("| manifest HEAD, --insecure-no-auth, 32 connections | {off:.0} req/s |");
    println!("| auth overhead on manifest HEAD | {:.1}% |", 100.0 * (1.0 - on / off));
    println!("| manifest HEAD, auth on (Basic credentials, remembered), 32 connections | {basic_on:.0} req/s |");
    println!("| tokens issued per second, GET with Basic (docker, skopeo, podman) | {get_rate:.0} /s |");
    println!(
        "| tokens issued per second, POST refresh_token grant (docker with an identity token) | {post_rate:.0} /s |"
    );
    println!("| first token request of a user (Argon2id password check), median of 5 | {cold:.1} ms |");
    Ok(())
}
