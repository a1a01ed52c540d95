//! What the benchmarks share: starting Wharf, running hey, medians.

#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The administrator's password of the nodes the benchmarks start.
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// A server under test.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub base: String,
    /// The `Authorization` value of the administrator (Basic), when the server has accounts.
    pub auth: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// A client that sends the administrator's credentials, if any.
    pub fn client(&self) -> Res<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = &self.auth {
            headers.insert(reqwest::header::AUTHORIZATION, auth.parse()?);
        }
        Ok(reqwest::Client::builder().pool_max_idle_per_host(64).default_headers(headers).build()?)
    }

    /// A fresh registry token for `scope` (what docker sends), when the server has accounts.
    pub async fn bearer(&self, scope: &str) -> Res<Option<String>> {
        if self.auth.is_none() {
            return Ok(None);
        }
        let url = format!("{}/auth/token?service=wharf-registry&scope={scope}", self.base);
        let body: serde_json::Value = self.client()?.get(url).send().await?.error_for_status()?.json().await?;
        let token = body["token"].as_str().ok_or("no token")?;
        Ok(Some(format!("Bearer {token}")))
    }
}

/// The `wharf` binary the benchmarks run: this build's, or `WHARF_BENCH_BIN` (to measure
/// another build, an earlier commit's say, with the same clients).
pub fn wharf_binary() -> std::ffi::OsString {
    std::env::var_os("WHARF_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_wharf").into())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(5123)
}

/// Starts `wharf up --insecure-http` on a free port with `extra` flags; with accounts unless
/// `extra` holds `--insecure-no-auth`.
pub fn start_wharf(dir: &Path, name: &'static str, extra: &[&str]) -> Res<Server> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data)?;
    let password_file = dir.join(format!("{name}-admin-password"));
    std::fs::write(&password_file, ADMIN_PASSWORD)?;
    let mut child = Command::new(wharf_binary())
        .args(["up", "--insecure-http", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--admin-password-file")
        .arg(&password_file)
        .args(extra)
        .env("WHARF_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().ok_or("wharf exited before listening")??;
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let auth = (!extra.contains(&"--insecure-no-auth")).then(|| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}")))
    });
    Ok(Server { name, child, base, auth })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Runs hey for 4 s at 32 connections with `args` before the URL; returns requests/s, failing
/// if any answer was not `expect_status`.
pub fn hey(args: &[&str], url: &str, expect_status: u16) -> Res<f64> {
    let out = Command::new("hey")
        .args(["-z", "4s", "-c", "32"])
        .args(args)
        .arg(url)
        .output()
        .map_err(|e| format!("run hey (apt-get install hey): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with('[')).collect();
    let expected = format!("[{expect_status}]");
    if codes.is_empty() || codes.iter().any(|l| !l.trim_start().starts_with(&expected)) {
        return Err(format!("hey saw unexpected answers on {url}: {codes:?}").into());
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in hey output: {text}").into())
}

/// The media type manifest requests ask for.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Manifest HEAD requests per second at 32 connections, measured with hey (wrk cannot do
/// HEAD), with an `Authorization` value when given.
pub fn hey_head(url: &str, authorization: Option<&str>) -> Res<f64> {
    let accept = format!("Accept: {MANIFEST_TYPE}");
    let mut args = vec!["-m", "HEAD", "-H", accept.as_str()];
    let header = authorization.map(|a| format!("Authorization: {a}"));
    if let Some(h) = &header {
        args.extend(["-H", h.as_str()]);
    }
    hey(&args, url, 200)
}

/// The `q` quantile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len().saturating_sub(1))]
}

/// Busy CPU time of the whole machine so far (every core; user, system, interrupts), in
/// seconds, from /proc/stat.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let busy: f64 = ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / 100.0
}

/// GET requests per second at 32 connections, measured with wrk (which speaks TLS with a
/// proper server name: hey sends the port in it), with an `Authorization` value when given;
/// an error answer fails the measurement.
pub fn wrk_get(url: &str, dir: &Path, authorization: Option<&str>) -> Res<f64> {
    let script = dir.join("get.lua");
    let mut lua = format!("wrk.method = \"GET\"\nwrk.headers[\"Accept\"] = \"{MANIFEST_TYPE}\"\n");
    if let Some(authorization) = authorization {
        lua.push_str(&format!("wrk.headers[\"Authorization\"] = \"{authorization}\"\n"));
    }
    std::fs::write(&script, lua)?;
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d4s", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .map_err(|e| format!("run wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors on {url}: {text}").into());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output: {text}").into())
}
