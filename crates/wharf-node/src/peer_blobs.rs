//! How a manager reads a blob it has no copy of from a manager that holds it: `GET
//! /cluster/blobs/{digest}` over mutual TLS with this node's certificate (the holder checks
//! that the caller is a manager of the cluster), as `wharf_registry::PeerBlobs`.

use std::time::Duration;

use futures::TryStreamExt;
use wharf_api::Digest;
use wharf_api::range::ByteRange;
use wharf_registry::{PeerBlobs, PeerCopy, PeerRead};

/// Node-to-node blob reads with this node's identity.
pub struct NodePeerBlobs {
    client: reqwest::Client,
    /// For copy requests, which answer only once the whole blob is durable on the other node.
    patient: reqwest::Client,
}

/// How long a copy request may take: a base, plus the time to move the blob at a rate any
/// link between managers should reach. A manager that stopped answering (a partition leaves
/// pooled connections silent) costs at most that, and the next manager is asked.
fn copy_timeout(size: u64) -> Duration {
    const BASE: Duration = Duration::from_secs(5);
    const RATE: f64 = 16.0 * 1024.0 * 1024.0;
    BASE + Duration::from_secs_f64(size as f64 / RATE)
}

/// A client for requests a manager sends on to another as itself (an upload's next chunk):
/// this node's certificate, leaving from `source` if given; HTTP/1.1, with a deadline between
/// two reads rather than for a whole upload.
pub(crate) fn node_client(
    tls: rustls::ClientConfig,
    source: Option<std::net::IpAddr>,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(source)
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(90))
        .http1_only()
        .build()
}

impl NodePeerBlobs {
    /// Reads with `tls` (this node's renewing client configuration), leaving from `source` if
    /// given.
    pub fn new(tls: rustls::ClientConfig, source: Option<std::net::IpAddr>) -> Result<NodePeerBlobs, reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .local_address(source)
            .connect_timeout(Duration::from_secs(2))
            // Between two chunks, not for the whole blob: a large blob takes as long as it takes.
            .read_timeout(Duration::from_secs(30))
            // One blob per connection, in large reads: HTTP/2's framing and flow control cost
            // more CPU for a bulk copy than they save.
            .http1_only()
            .build()?;
        let patient = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .local_address(source)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(NodePeerBlobs { client, patient })
    }
}

impl PeerBlobs for NodePeerBlobs {
    fn fetch<'a>(&'a self, addr: &'a str, digest: &'a Digest, range: Option<ByteRange>) -> PeerRead<'a> {
        Box::pin(async move {
            let mut request = self.client.get(format!("https://{addr}/cluster/blobs/{digest}"));
            if let Some(r) = range {
                request = request.header("range", format!("bytes={}-{}", r.offset, r.offset + r.len - 1));
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let expected = if range.is_some() { reqwest::StatusCode::PARTIAL_CONTENT } else { reqwest::StatusCode::OK };
            if status != expected {
                let body = response.text().await.unwrap_or_default();
                return Err(format!("{status}: {}", body.chars().take(200).collect::<String>()));
            }
            let stream = response.bytes_stream().map_err(std::io::Error::other);
            Ok(Box::pin(stream) as wharf_blobstore::ByteStream)
        })
    }

    fn request_copy<'a>(&'a self, addr: &'a str, digest: &'a Digest, size: u64, from: Option<u64>) -> PeerCopy<'a> {
        Box::pin(async move {
            let url = format!("https://{addr}/cluster/blobs/{digest}/copy");
            let body = wharf_api::cluster::BlobCopyRequest { size, from };
            let request = self.patient.post(url).timeout(copy_timeout(size)).json(&body);
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if status != reqwest::StatusCode::NO_CONTENT {
                let body = response.text().await.unwrap_or_default();
                return Err(format!("{status}: {}", body.chars().take(200).collect::<String>()));
            }
            Ok(())
        })
    }
}
