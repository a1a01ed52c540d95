//! Blobs this node has no copy of. The state records which nodes hold each blob; a registry
//! given a [`PeerBlobs`] (node-to-node reads over mutual TLS, provided by the node) reads a
//! missing blob from a holder. A whole blob is copied while it is served: the bytes go to the
//! client and into a local upload, hashed on the way; the last bytes are held back until the
//! digest checks, so a client gets the whole verified blob or an error, never wrong bytes. The
//! copy is committed and this node recorded as a holder (`AddBlobHolder`). A part (`Range`) is
//! passed through from the holder without a copy. Before a push is acknowledged, the node that
//! took it has other managers copy the blob from it until it is on `min(copies, managers)`
//! nodes (`copy_to_other_managers`, `copy_from`), and records them all with the commit. The
//! repair pass (`repair.rs`) uses the same copy request, naming a holder to copy from.

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

/// What [`PeerBlobs::request_copy`] returns.
pub type PeerCopy<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Reads blobs from the other nodes that hold them, and has them copy blobs from this one.
pub trait PeerBlobs: Send + Sync {
    /// Blob `digest` (or the part `range` of it) as the node at `addr` holds it, or why not.
    fn fetch<'a>(&'a self, addr: &'a str, digest: &'a Digest, range: Option<ByteRange>) -> PeerRead<'a>;

    /// Asks the node at `addr` to copy blob `digest` (`size` bytes) from node `from` (none:
    /// this node) and make it durable there ([`Registry::copy_from`] on that node); returns
    /// once it is.
    fn request_copy<'a>(&'a self, addr: &'a str, digest: &'a Digest, size: u64, from: Option<u64>) -> PeerCopy<'a>;
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
        let holders = self.store.blob_holders(digest).unwrap_or_default();
        let Some(peers) = &self.peers else { return Err(self.held_elsewhere(digest, &holders, false)) };
        for (node, addr) in self.holder_addrs(&holders) {
            match peers.fetch(&addr, digest, range).await {
                Ok(stream) if range.is_some() => return Ok(stream),
                Ok(stream) => return Ok(self.copy_while_serving(digest, size, stream)),
                Err(why) => {
                    tracing::warn!(%digest, node, %addr, reason = %why, "reading a blob from its holder failed")
                }
            }
        }
        Err(self.held_elsewhere(digest, &holders, true))
    }

    /// Those of `holders` other than this node that are not removed: (id, address).
    fn holder_addrs(&self, holders: &[u64]) -> Vec<(u64, String)> {
        holders
            .iter()
            .copied()
            .filter(|node| Some(*node) != self.node)
            .filter_map(|node| match self.store.node(node) {
                Ok(Some(record)) if !record.removed => Some((node, record.addr)),
                _ => None,
            })
            .collect()
    }

    /// The answer for a blob that the state knows but that this node cannot serve: 503,
    /// naming the nodes that hold it, never 404 (the blob exists).
    fn held_elsewhere(&self, digest: &Digest, holders: &[u64], tried: bool) -> RegistryError {
        let addrs: Vec<String> = self.holder_addrs(holders).into_iter().map(|(_, addr)| addr).collect();
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
        tokio::spawn(self.copy(digest, size, self.node).run(remote, tx));
        Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
    }

    /// A copy of blob `digest` to make here; `record` is the node to record as a holder once
    /// it is durable (none: the node that asked for it records it).
    fn copy(&self, digest: &Digest, size: u64, record: Option<u64>) -> Copy {
        let id = format!("copy-{}", uuid::Uuid::new_v4());
        self.copying.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone());
        Copy {
            blobs: Arc::clone(&self.blobs),
            proposer: Arc::clone(&self.proposer),
            copying: Arc::clone(&self.copying),
            record,
            digest: digest.clone(),
            size,
            id,
        }
    }

    /// Copies blob `digest` (`size` bytes) from the node at `addr`, which has just stored it
    /// and asks for a second copy before it acknowledges the push; returns once the copy is
    /// durable and verified here. That node records the holders. Nothing to do when this
    /// node has the blob already.
    pub async fn copy_from(&self, addr: &str, digest: &Digest, size: u64) -> Result<(), RegistryError> {
        if self.blobs.stat(digest).await.map_err(crate::blob_error)?.is_some() {
            return Ok(());
        }
        let unavailable = |why: String| RegistryError::new(ErrorCode::Unavailable, why);
        let Some(peers) = &self.peers else { return Err(unavailable("this node reads no other node".into())) };
        let remote =
            peers.fetch(addr, digest, None).await.map_err(|why| unavailable(format!("read from {addr}: {why}")))?;
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        self.copy(digest, size, None).finish(remote, &tx).await.map(|_| ()).map_err(unavailable)
    }

    /// The address of node `id` if the state records it as a manager that was not removed.
    pub fn manager_addr(&self, id: u64) -> Option<String> {
        match self.store.node(id) {
            Ok(Some(record)) if !record.removed && record.role == "manager" => Some(record.addr),
            _ => None,
        }
    }

    /// Before a push on a cluster node is acknowledged: copies blob `digest` to other managers
    /// until it is on `min(copies, managers)` nodes; returns the nodes that now hold a copy
    /// besides this one. 503 when too few managers could take one (the push is then not
    /// acknowledged, and the state does not know the blob).
    pub(crate) async fn copy_to_other_managers(&self, digest: &Digest, size: u64) -> Result<Vec<u64>, RegistryError> {
        let (Some(peers), Some(here)) = (&self.peers, self.node) else { return Ok(Vec::new()) };
        let wanted = self.copies.saturating_sub(1) as usize;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let mut others: Vec<(u64, wharf_store::NodeRecord)> = self
            .store
            .nodes()
            .map_err(crate::internal)?
            .into_iter()
            .filter(|(id, n)| *id != here && !n.removed && n.role == "manager")
            .collect();
        // Managers that send heartbeats first.
        others.sort_by_key(|(id, n)| (n.state != "ready", *id));
        let need = wanted.min(others.len());
        let mut copied = Vec::new();
        for (id, node) in others {
            if copied.len() == need {
                break;
            }
            match peers.request_copy(&node.addr, digest, size, None).await {
                Ok(()) => copied.push(id),
                Err(why) => {
                    tracing::warn!(%digest, node = id, addr = %node.addr, reason = %why, "copying a blob to another manager failed")
                }
            }
        }
        if copied.len() < need {
            let message = format!(
                "the blob could be copied to {} of the {need} other managers it must be on before the push is acknowledged; try again",
                copied.len()
            );
            return Err(RegistryError::new(ErrorCode::Unavailable, message));
        }
        Ok(copied)
    }
}

/// One copy of a blob from a holder, made while it is served.
struct Copy {
    blobs: Arc<dyn BlobStore>,
    proposer: Arc<dyn Proposer>,
    copying: Arc<Mutex<std::collections::HashSet<String>>>,
    /// The node to record as a holder once the copy is durable.
    record: Option<u64>,
    digest: Digest,
    size: u64,
    id: String,
}

impl Copy {
    /// Makes the copy, sending the bytes to `tx` as they come (the last chunk once verified)
    /// and ending it with an error if the copy fails.
    async fn run(self, remote: ByteStream, tx: mpsc::Sender<std::io::Result<Bytes>>) {
        match self.finish(remote, &tx).await {
            Ok(last) => {
                let _ = tx.send(Ok(last)).await;
            }
            Err(why) => {
                let _ = tx.send(Err(std::io::Error::other(why))).await;
            }
        }
    }

    /// [`Copy::store`], then forgets the upload, or removes it after a failure.
    async fn finish(self, remote: ByteStream, tx: &mpsc::Sender<std::io::Result<Bytes>>) -> Result<Bytes, String> {
        let stored = self.store(remote, tx).await;
        match &stored {
            Ok(_) => tracing::info!(digest = %self.digest, "copied a blob from another node"),
            Err(why) => {
                tracing::warn!(digest = %self.digest, reason = %why, "copying a blob from another node failed");
                let _ = self.blobs.abort(&self.id).await;
            }
        }
        self.copying.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
        stored
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
        if let Some(node) = self.record {
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
