//! `wharf trust URL [--fingerprint SHA256]`: fetches a node's CA from `/ca`, checks it against
//! the fingerprint the node printed at start, and installs it where Docker Engine, containerd,
//! podman, skopeo and buildah look for a registry's CA. They read those folders on every
//! connection, so no daemon restart is needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Args)]
pub struct TrustArgs {
    /// The node's URL, e.g. https://registry.example.com:5000
    url: String,
    /// The CA's SHA-256 fingerprint, as `wharf up` printed it (colons and case do not matter).
    #[arg(long)]
    fingerprint: Option<String>,
    /// Trust the CA without a fingerprint to check (trust on first use).
    #[arg(long)]
    yes: bool,
    /// Where the certs.d folders are (for tests); `/etc` by default.
    #[arg(long, default_value = "/etc", hide = true)]
    etc: PathBuf,
}

/// `host:port` as Docker names a registry's certs.d folder (the port is left out for 443).
pub fn registry_host(url: &reqwest::Url) -> anyhow::Result<String> {
    let host = url.host_str().context("the URL has no host")?;
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    Ok(match url.port_or_known_default() {
        Some(443) | None => host,
        Some(port) => format!("{host}:{port}"),
    })
}

fn normalize(fingerprint: &str) -> String {
    fingerprint.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_ascii_uppercase()
}

pub async fn run(args: TrustArgs) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("invalid URL {}", args.url))?;
    if url.scheme() != "https" {
        bail!("{} is not an https:// URL: there is no certificate to trust", args.url);
    }
    // The CA is not trusted yet, so this one request does not verify the server; the
    // fingerprint check below is what makes the result trustworthy.
    let unverified = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build()?;
    let ca_url = url.join("/ca")?;
    let response = unverified.get(ca_url.clone()).send().await.with_context(|| format!("fetch {ca_url}"))?;
    if !response.status().is_success() {
        bail!("{ca_url} answered {}", response.status());
    }
    let pem = response.text().await?;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).context("the node's /ca is not a PEM certificate")?;
    let actual = wharf_pki::fingerprint(&der);
    match (&args.fingerprint, args.yes) {
        (Some(expected), _) if normalize(expected) != normalize(&actual) => bail!(
            "fingerprint mismatch: the CA at {ca_url} has fingerprint {actual}, not {expected}; nothing was installed"
        ),
        (Some(_), _) | (None, true) => {}
        (None, false) => bail!(
            "the CA at {ca_url} has fingerprint {actual}. Compare it with the one `wharf up` printed, then run again \
             with --fingerprint {actual}"
        ),
    }
    // The CA must be what the node's TLS certificate chains to.
    let cert = reqwest::Certificate::from_pem(pem.as_bytes())?;
    let verified = reqwest::Client::builder().tls_certs_only([cert]).build()?;
    verified
        .get(ca_url.clone())
        .send()
        .await
        .with_context(|| format!("{url} does not present a certificate from this CA"))?;

    let host = registry_host(&url)?;
    for dir in ["docker/certs.d", "containers/certs.d", "containerd/certs.d"] {
        let path = args.etc.join(dir).join(&host).join("ca.crt");
        install(&path, pem.as_bytes())?;
        println!("installed {}", path.display());
    }
    println!("Wharf's CA ({actual}) is trusted for {host} by docker, podman, skopeo, buildah and containerd.");
    Ok(())
}

/// Writes `path` through a temporary file and a rename, readable by everyone.
fn install(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("no parent folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(".ca.crt.tmp");
    std::fs::write(&tmp, data).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("install {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_names_follow_docker() {
        let host = |u: &str| registry_host(&reqwest::Url::parse(u).expect("url")).expect("host");
        assert_eq!(host("https://reg.test:5000"), "reg.test:5000");
        assert_eq!(host("https://reg.test"), "reg.test");
        assert_eq!(host("https://[::1]:5000"), "[::1]:5000");
        assert_eq!(normalize("ab:CD:0f"), "ABCD0F");
    }
}
