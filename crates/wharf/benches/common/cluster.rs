//! Starting a cluster of real `wharf` managers for the benchmarks.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Res;

pub const PASSWORD: &str = "cluster-bench-password";

pub struct Node {
    child: Option<Child>,
    args: Vec<String>,
    pub addr: String,
}

impl Node {
    pub fn start(&mut self) -> Res<()> {
        let mut child = Command::new(super::wharf_binary())
            .args(&self.args)
            .env("WHARF_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().ok_or("wharf exited before listening")??;
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `wharf init` on the first address and joins managers on the others (free ports);
/// returns the nodes, a client that trusts the cluster CA, and an administrator session.
pub async fn start_cluster(dir: &Path, ips: &[&str]) -> Res<(Vec<Node>, reqwest::Client, String)> {
    let port = |ip: &str| std::net::TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()).map(|a| a.port());
    let addrs: Vec<String> = ips.iter().map(|ip| port(ip).map(|p| format!("{ip}:{p}"))).collect::<Result<_, _>>()?;
    let password_file = dir.join("password");
    std::fs::write(&password_file, PASSWORD)?;
    let data = |n: usize| dir.join(format!("node{n}")).to_string_lossy().into_owned();
    let init = ["init", "--advertise", &addrs[0], "--data-dir", &data(1), "--admin-password-file"];
    let mut args: Vec<String> = init.iter().map(|s| (*s).to_owned()).collect();
    args.push(password_file.to_string_lossy().into_owned());
    let mut first = Node { child: None, args, addr: addrs[0].clone() };
    first.start()?;
    let ca = std::fs::read(dir.join("node1/pki/ca.crt"))?;
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()?;
    let login: serde_json::Value = c
        .post(format!("https://{}/auth/login", addrs[0]))
        .json(&serde_json::json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let session = login["auth_token"].as_str().ok_or("login")?.to_owned();
    let token: serde_json::Value = c
        .get(format!("https://{}/api/cluster/tokens/manager", addrs[0]))
        .bearer_auth(&session)
        .send()
        .await?
        .json()
        .await?;
    let token = token["token"].as_str().ok_or("token")?.to_owned();
    let token_file = dir.join("manager-token");
    std::fs::write(&token_file, &token)?;
    let token_file = token_file.to_string_lossy().into_owned();
    let mut nodes = vec![first];
    for (i, addr) in addrs.iter().enumerate().skip(1) {
        let join = ["join", "--token-file", &token_file, &addrs[0], "--advertise", addr, "--data-dir", &data(i + 1)];
        let mut node = Node { child: None, args: join.iter().map(|s| (*s).to_owned()).collect(), addr: addr.clone() };
        node.start()?;
        nodes.push(node);
    }
    Ok((nodes, c, session))
}
