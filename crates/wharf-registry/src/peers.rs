//! Blobs this node has no copy of. The state records which nodes hold each blob; a registry
//! given a [`PeerBlobs`] (node-to-node reads over mutual TLS, provided by the node) reads a
//! missing blob from a holder. A whole blob is copied while it is served: the bytes go to the
//! client and into a local upload, hashed on the way; the last bytes are held back until the
//! digest checks, so a client gets the whole verified blob or an error, never wrong bytes. The
//! copy is committed and this node recorded as a holder (`AddBlobHolder`). A part (`Range`) is
//! passed through from the holder without a copy.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use wharf_api::range::ByteRange;
use wharf_api::{Digest, ErrorCode, RegistryError};
use wharf_blobstore::{BlobStore, ByteStream};
use wharf_store::{Proposer, ProposerExt, RegistryCommand};

use crate::{Hasher, Registry};

/// What [`PeerBlobs::fetch`] returns.
pub type PeerRead<'a> = Pin<Box<dyn Future<Output = Result<ByteStream, String>> + Send + 'a>>;

/// Reads blobs from the other nodes that hold them.
pub trait PeerBlobs: Send + Sync {
    /// Blob `digest` (or the part `range` of it) as the node at `addr` holds it, or why not.
    fn fetch<'a>(&'a self, addr: &'a str, digest: &'a Digest, range: Option<ByteRange>) -> PeerRead<'a>;
}

/// Chunks in flight between the copy and the client.
const IN_FLIGHT: usize = 8;

impl Registry {
    /// Blob `digest` (`size` bytes, or the part `range`) from a node that holds it, for a node
    /// that has no copy; 503 when no holder can be read.
    pub(crate) async fn read_from_holders(
        &self,
        digest: &Digest,
        size: u64,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, RegistryError> {
        let Some(peers) = &self.peers else { return Err(self.held_elsewhere(digest, false)) };
        for (node, addr) in self.holder_addrs(digest) {
            match peers.fetch(&addr, digest, range).await {
                Ok(stream) if range.is_some() => return Ok(stream),
                Ok(stream) => return Ok(self.copy_while_serving(digest, size, stream)),
                Err(why) => {
                    tracing::warn!(%digest, node, %addr, reason = %why, "reading a blob from its holder failed")
                }
            }
        }
        Err(self.held_elsewhere(digest, true))
    }

    /// The holders of `digest` other than this node that are not removed: (id, address).
    fn holder_addrs(&self, digest: &Digest) -> Vec<(u64, String)> {
        let holders = self.store.blob_holders(digest).unwrap_or_default();
        holders
            .into_iter()
            .filter(|node| Some(*node) != self.node)
            .filter_map(|node| match self.store.node(node) {
                Ok(Some(record)) if !record.removed => Some((node, record.addr)),
                _ => None,
            })
            .collect()
    }

    /// The answer for a blob that the state knows but that this node cannot serve: 503,
    /// naming the nodes that hold it, never 404 (the blob exists).
    pub(crate) fn held_elsewhere(&self, digest: &Digest, tried: bool) -> RegistryError {
        let holders = self.store.blob_holders(digest).unwrap_or_default();
        let addrs: Vec<String> = self.holder_addrs(digest).into_iter().map(|(_, addr)| addr).collect();
        let message = match (addrs.is_empty(), tried) {
            (true, _) => format!("blob {digest} is known but no reachable node holds its bytes"),
            (false, true) => format!("blob {digest} is stored on {}, which cannot be read now", addrs.join(", ")),
            (false, false) => {
                format!("blob {digest} is stored on {}, not on this manager: pull it through there", addrs.join(", "))
            }
        };
        tracing::warn!(%digest, ?holders, "a blob was asked of a node without a copy");
        RegistryError::new(ErrorCode::Unavailable, message).with_detail(serde_json::json!({ "holders": holders }))
    }

    /// Serves `remote` (blob `digest`, `size` bytes) while it is stored here, verified and
    /// recorded; the copy goes on if the client goes away.
    fn copy_while_serving(&self, digest: &Digest, size: u64, remote: ByteStream) -> ByteStream {
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
        let id = format!("copy-{}", uuid::Uuid::new_v4());
        self.copying.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone());
        let copy = Copy {
            blobs: Arc::clone(&self.blobs),
            proposer: Arc::clone(&self.proposer),
            copying: Arc::clone(&self.copying),
            node: self.node,
            digest: digest.clone(),
            size,
            id,
        };
        tokio::spawn(copy.run(remote, tx));
        Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
    }
}

/// One copy of a blob from a holder, made while it is served.
struct Copy {
    blobs: Arc<dyn BlobStore>,
    proposer: Arc<dyn Proposer>,
    copying: Arc<Mutex<std::collections::HashSet<String>>>,
    node: Option<u64>,
    digest: Digest,
    size: u64,
    id: String,
}

impl Copy {
    async fn run(self, remote: ByteStream, tx: mpsc::Sender<std::io::Result<Bytes>>) {
        let verified = self.store(remote, &tx).await;
        self.copying.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
        match verified {
            Ok(last) => {
                let _ = tx.send(Ok(last)).await;
                tracing::info!(digest = %self.digest, "copied a blob from its holder");
            }
            Err(why) => {
                tracing::warn!(digest = %self.digest, reason = %why, "copying a blob from its holder failed");
                let _ = self.blobs.abort(&self.id).await;
                let _ = tx.send(Err(std::io::Error::other(why))).await;
            }
        }
    }

    /// Stores `remote` as upload `id`, passing every chunk but the last to `tx` as it goes;
    /// checks size and digest, commits the blob and records this node as a holder. Returns
    /// the last chunk, which the client may have only now.
    async fn store(&self, remote: ByteStream, tx: &mpsc::Sender<std::io::Result<Bytes>>) -> Result<Bytes, String> {
        self.blobs.create_upload(&self.id).await.map_err(|e| e.to_string())?;
        let held = Arc::new(Mutex::new(None::<Bytes>));
        let hasher = Arc::new(Mutex::new(Hasher::new(self.digest.algorithm())));
        let forward = {
            let (held, tx) = (Arc::clone(&held), tx.clone());
            remote.then(move |item| {
                let (held, tx) = (Arc::clone(&held), tx.clone());
                async move {
                    if let Ok(chunk) = &item {
                        let previous = held.lock().unwrap_or_else(PoisonError::into_inner).replace(chunk.clone());
                        if let Some(previous) = previous {
                            // A client that went away does not stop the copy.
                            let _ = tx.send(Ok(previous)).await;
                        }
                    }
                    item
                }
            })
        };
        let observe = {
            let hasher = Arc::clone(&hasher);
            Box::new(move |data: &[u8]| hasher.lock().unwrap_or_else(PoisonError::into_inner).update(data))
        };
        let stored = self.blobs.append(&self.id, 0, Box::pin(forward), observe).await.map_err(|e| e.to_string())?;
        if stored != self.size {
            return Err(format!("the holder sent {stored} bytes, the blob has {}", self.size));
        }
        let hasher = std::mem::replace(
            &mut *hasher.lock().unwrap_or_else(PoisonError::into_inner),
            Hasher::new(self.digest.algorithm()),
        );
        let computed = hasher.finish();
        if computed != self.digest {
            return Err(format!("the holder sent bytes of digest {computed}"));
        }
        self.blobs.commit(&self.id, &self.digest).await.map_err(|e| e.to_string())?;
        if let Some(node) = self.node {
            let record = RegistryCommand::AddBlobHolder { digest: self.digest.clone(), node };
            if let Err(e) = self.proposer.propose(record).await {
                // The copy is on disk and verified; the next read finds it here all the same.
                tracing::warn!(digest = %self.digest, error = %e, "recording this node as a holder failed");
            }
        }
        let last = held.lock().unwrap_or_else(PoisonError::into_inner).take();
        Ok(last.unwrap_or_default())
    }
}
