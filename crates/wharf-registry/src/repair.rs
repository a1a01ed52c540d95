//! Keeping every blob on enough managers' disks after the cluster changes: a repair pass (run
//! by the leader) forgets holders that are no longer managers and has managers without a copy
//! copy under-replicated blobs from a holder; a scrub pass (run by every manager over its own
//! copies) re-reads and re-hashes them, and deletes and un-records a copy that is missing or
//! corrupt, for the next repair to replace. Neither runs on shared storage, where the storage
//! keeps the copies.

use futures::StreamExt;
use wharf_api::{Digest, RegistryError};
use wharf_store::{NodeRecord, RegistryCommand};

use crate::{Hasher, Registry, internal, store_failure};

/// Blobs read from the state at a time.
const PAGE: usize = 1000;

/// What one repair pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairPass {
    /// Blobs looked at.
    pub checked: usize,
    /// Copies made (and recorded).
    pub copied: usize,
    /// Holder records dropped because the node is no manager any more.
    pub dropped: usize,
    /// Blobs still on fewer managers than they should be after the pass (a copy failed, or
    /// too few managers were ready).
    pub short: usize,
    /// Blobs no manager holds: their bytes are gone.
    pub lost: usize,
}

/// What one scrub pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrubPass {
    /// Copies of this node re-read and verified.
    pub verified: usize,
    /// Copies missing or corrupt: deleted and no longer recorded as held here when another
    /// node holds the blob, kept (and logged) when this one was the only copy.
    pub bad: usize,
}

impl Registry {
    /// One pass over every blob (on a node's own disks; nothing to do on shared storage):
    /// holders that are no longer managers are forgotten, and a blob on fewer than
    /// `min(copies, managers)` managers is copied from a holder to managers without a copy
    /// (ready ones first) until it is on enough, each copy recorded once it is durable and
    /// verified there. Meant for the leader; passes on two managers at once only waste copies.
    pub async fn repair_copies(&self) -> Result<RepairPass, RegistryError> {
        let mut pass = RepairPass::default();
        let Some(peers) = self.peers.as_ref().filter(|_| !self.blobs.shared()) else { return Ok(pass) };
        let managers: Vec<(u64, NodeRecord)> = self
            .store
            .nodes()
            .map_err(internal)?
            .into_iter()
            .filter(|(_, n)| !n.removed && n.role == "manager")
            .collect();
        let target = (self.copies as usize).min(managers.len());
        let mut after: Option<String> = None;
        loop {
            let page = self.store.blobs_with_holders(after.as_deref(), PAGE).map_err(internal)?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for blob in page {
                pass.checked += 1;
                let Ok(digest) = blob.digest.parse::<Digest>() else { continue };
                let is_manager = |id: &u64| managers.iter().any(|(m, _)| m == id);
                for gone in blob.holders.iter().filter(|id| !is_manager(id)) {
                    let forget = RegistryCommand::RemoveBlobHolder { digest: digest.clone(), node: *gone };
                    self.apply(forget).await.map_err(store_failure)?;
                    pass.dropped += 1;
                }
                let mut held: Vec<u64> = blob.holders.iter().copied().filter(is_manager).collect();
                if held.is_empty() {
                    tracing::error!(%digest, "no manager holds this blob's bytes any more");
                    pass.lost += 1;
                    continue;
                }
                if held.len() >= target {
                    continue;
                }
                // Read from a holder that sends heartbeats if there is one.
                let ready = |id: &u64| managers.iter().any(|(m, n)| m == id && n.state == "ready");
                let source = held.iter().copied().find(ready).unwrap_or(held[0]);
                let mut candidates: Vec<&(u64, NodeRecord)> =
                    managers.iter().filter(|(id, _)| !held.contains(id)).collect();
                candidates.sort_by_key(|(id, n)| (n.state != "ready", *id));
                for (id, node) in candidates {
                    if held.len() >= target {
                        break;
                    }
                    match peers.request_copy(&node.addr, &digest, blob.size, Some(source)).await {
                        Ok(()) => {
                            let record = RegistryCommand::AddBlobHolder { digest: digest.clone(), node: *id };
                            self.apply(record).await.map_err(store_failure)?;
                            held.push(*id);
                            pass.copied += 1;
                        }
                        Err(why) => {
                            tracing::warn!(%digest, node = id, reason = %why, "a repair copy failed; the next pass tries again");
                        }
                    }
                }
                if held.len() < target {
                    pass.short += 1;
                }
            }
        }
        if pass.copied + pass.dropped + pass.short + pass.lost > 0 {
            tracing::info!(?pass, "blob repair pass");
        }
        Ok(pass)
    }

    /// Re-reads and re-hashes every blob this node is recorded as holding (nothing to do on
    /// shared storage or off a cluster node). A copy that is missing, of the wrong size or whose
    /// bytes do not hash to its digest is deleted, and this node removed from its holders, so
    /// that no read is served from it and the repair copies the blob again. `pause_per_mib`
    /// spaces the reads out, to keep the pass in the background.
    pub async fn scrub_own_copies(&self, pause_per_mib: std::time::Duration) -> Result<ScrubPass, RegistryError> {
        let mut pass = ScrubPass::default();
        let Some(here) = self.node.filter(|_| !self.blobs.shared()) else { return Ok(pass) };
        let mut after: Option<String> = None;
        loop {
            let page = self.store.blobs_with_holders(after.as_deref(), PAGE).map_err(internal)?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for blob in page.into_iter().filter(|b| b.holders.contains(&here)) {
                let Ok(digest) = blob.digest.parse::<Digest>() else { continue };
                if self.copy_is_sound(&digest, blob.size).await? {
                    pass.verified += 1;
                } else if blob.holders.iter().all(|h| *h == here) {
                    // The only copy: keeping it loses nothing more (a client checks the digest
                    // of what it pulls), and an administrator can still look at it.
                    tracing::error!(%digest, "the only copy of a blob is missing or corrupt");
                    pass.bad += 1;
                } else {
                    tracing::error!(%digest, "this node's copy of a blob is missing or corrupt: deleted, to be copied again");
                    let _ = self.blobs.delete(&digest).await;
                    let forget = RegistryCommand::RemoveBlobHolder { digest, node: here };
                    self.apply(forget).await.map_err(store_failure)?;
                    pass.bad += 1;
                }
                if !pause_per_mib.is_zero() {
                    tokio::time::sleep(pause_per_mib.mul_f64(blob.size as f64 / f64::from(1 << 20))).await;
                }
            }
        }
        Ok(pass)
    }

    /// Whether this node's copy of `digest` is there, `size` bytes long and hashes to it.
    async fn copy_is_sound(&self, digest: &Digest, size: u64) -> Result<bool, RegistryError> {
        let mut stream = match self.blobs.get(digest, None).await {
            Ok(stream) => stream,
            Err(wharf_blobstore::BlobError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(crate::blob_error(e)),
        };
        let mut hasher = Hasher::new(digest.algorithm());
        let mut seen = 0u64;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return Ok(false) };
            seen += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(seen == size && &hasher.finish() == digest)
    }
}
