//! Upload sessions: monolithic, chunked and streamed uploads, status, cancel and resume.
//!
//! Bytes are hashed as they pass to the blob store. The running hash of each session is kept
//! in memory with the offset it covers; when it is missing or stale (after a restart, or after
//! a failed append) it is rebuilt from the bytes already stored, so an upload can always be
//! resumed. A per-session async lock serialises requests on the same session.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use wharf_api::{Algorithm, Digest, ErrorCode, RegistryError};
use wharf_blobstore::{ByteStream, Observer};
use wharf_store::{ProposeError, Refusal, RegistryCommand, UploadRecord};

use crate::hashing::Hasher;
use crate::{Registry, blob_error, check_name, internal, now, store_failure};

/// Where an upload session continues (see [`Registry::upload_home`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadHome {
    Here,
    /// On the manager at this address, whose disk holds the bytes.
    At(String),
    /// On a node that is gone.
    Gone,
}

/// The running hash of a session and the number of bytes it covers.
pub(crate) struct HashState {
    offset: u64,
    hasher: Hasher,
}

pub(crate) type SessionLock = Arc<tokio::sync::Mutex<Option<HashState>>>;

fn upload_unknown() -> RegistryError {
    RegistryError::new(ErrorCode::BlobUploadUnknown, "blob upload unknown to registry")
}

impl Registry {
    /// Opens an upload session in `repo` for `owner` (a user name; empty when the node runs
    /// without accounts); returns its id. A new session holds no bytes. Refused with 429
    /// `TOOMANYREQUESTS` when the owner has the limit of sessions open.
    pub async fn start_upload(&self, repo: &str, algorithm: Algorithm, owner: &str) -> Result<String, RegistryError> {
        check_name(repo)?;
        let id = self.new_upload_id();
        // The session is recorded before its bytes exist, so an upload in the blob store
        // without a session is always garbage (see `purge_stale_uploads`).
        let command = RegistryCommand::StartOwnedUpload {
            id: id.clone(),
            repo: repo.to_owned(),
            algorithm,
            at: now(),
            owner: owner.to_owned(),
            limit: self.upload_limit,
        };
        self.apply(command).await.map_err(store_failure)?;
        if let Err(e) = self.blobs.create_upload(&id).await {
            let _ = self.apply(RegistryCommand::CancelUpload { id }).await;
            return Err(blob_error(e));
        }
        Ok(id)
    }

    /// The id of a new upload session. A cluster node whose uploads live on its own disk names
    /// itself in the id (`n<node>-<uuid>`), so that any manager knows where to send the rest
    /// of the upload ([`Registry::upload_home`]).
    fn new_upload_id(&self) -> String {
        let uuid = uuid::Uuid::new_v4();
        match self.node {
            Some(node) if self.peers.is_some() && !self.blobs.shared() => format!("n{node}-{uuid}"),
            _ => uuid.to_string(),
        }
    }

    /// Where upload `id` continues: here, on another manager whose disk holds its bytes (its
    /// address), or nowhere (that node was removed: the client starts the blob again).
    pub fn upload_home(&self, id: &str) -> UploadHome {
        let Some(here) = self.node.filter(|_| self.peers.is_some() && !self.blobs.shared()) else {
            return UploadHome::Here;
        };
        let Some(node) = id.strip_prefix('n').and_then(|rest| rest.split_once('-')).and_then(|(n, _)| n.parse().ok())
        else {
            return UploadHome::Here;
        };
        if node == here {
            return UploadHome::Here;
        }
        match self.store.node(node) {
            Ok(Some(record)) if !record.removed && record.role == "manager" => UploadHome::At(record.addr),
            _ => UploadHome::Gone,
        }
    }

    /// A whole blob in one request (POST with `digest`): start, append, verify, commit.
    pub async fn monolithic_upload(
        &self,
        repo: &str,
        digest: &Digest,
        body: ByteStream,
        owner: &str,
    ) -> Result<u64, RegistryError> {
        let id = self.start_upload(repo, digest.algorithm(), owner).await?;
        let result = self.finish_upload(repo, &id, digest, Some((None, body))).await;
        if result.is_err() {
            // Nothing of a failed single-request upload can be resumed by the client.
            let _ = self.cancel_upload(repo, &id).await;
        }
        result
    }

    /// The number of bytes upload `id` holds.
    pub async fn upload_status(&self, repo: &str, id: &str) -> Result<u64, RegistryError> {
        let (_, lock) = self.session(repo, id).await?;
        let _guard = lock.lock().await;
        self.blobs.upload_size(id).await.map_err(blob_error)
    }

    /// Appends a chunk. `start`, from `Content-Range`, must equal the bytes received so far.
    pub async fn patch_upload(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let (record, lock) = self.session(repo, id).await?;
        let mut state = lock.lock().await;
        self.append_locked(id, &mut state, record.algorithm, start, body).await
    }

    /// Appends an optional last chunk (with the start its `Content-Range` gave, if any),
    /// verifies `digest` and makes the blob visible in `repo`.
    pub async fn finish_upload(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<u64, RegistryError> {
        let (record, lock) = self.session(repo, id).await?;
        let mut state = lock.lock().await;
        if let Some((start, body)) = last_chunk {
            self.append_locked(id, &mut state, record.algorithm, start, body).await?;
        }
        let offset = self.blobs.upload_size(id).await.map_err(blob_error)?;
        let computed = self.hasher_at(id, state.take(), offset, digest.algorithm()).await?.finish();
        if &computed != digest {
            return Err(RegistryError::new(ErrorCode::DigestInvalid, "provided digest did not match uploaded content")
                .with_detail(serde_json::json!({ "expected": digest.to_string(), "computed": computed.to_string() })));
        }
        let size = self.blobs.commit(id, digest).await.map_err(blob_error)?;
        let command = match self.node {
            // In shared storage every manager reads the blob where it is: no holders, no copies.
            Some(node) if !self.blobs.shared() => {
                // Durable on enough nodes before the state knows it (and the client hears it).
                let mut holders = vec![node];
                holders.extend(self.copy_to_other_managers(digest, size).await?);
                RegistryCommand::CommitUploadOn { id: id.to_owned(), digest: digest.clone(), size, holders }
            }
            _ => RegistryCommand::CommitUpload { id: id.to_owned(), digest: digest.clone(), size },
        };
        let id = id.to_owned();
        self.apply(command).await.map_err(|e| match e {
            ProposeError::Refused(Refusal::UploadUnknown(_)) => upload_unknown(),
            other => store_failure(other),
        })?;
        self.forget_session(&id);
        Ok(size)
    }

    /// Cancels upload `id` and discards its bytes.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<(), RegistryError> {
        let (_, lock) = self.session(repo, id).await?;
        let _guard = lock.lock().await;
        self.apply(RegistryCommand::CancelUpload { id: id.to_owned() }).await.map_err(|e| match e {
            ProposeError::Refused(Refusal::UploadUnknown(_)) => upload_unknown(),
            other => store_failure(other),
        })?;
        self.blobs.abort(id).await.map_err(blob_error)?;
        self.forget_session(id);
        Ok(())
    }

    /// Cancels upload sessions started `max_age_secs` or more ago and frees their bytes, and
    /// removes stored uploads that have no session (left by a crash between a cancel or a
    /// failed start and the removal of the bytes). Sessions with a request in progress are left
    /// alone. Returns how many uploads were removed.
    pub async fn purge_stale_uploads(&self, max_age_secs: u64) -> Result<usize, RegistryError> {
        let mut purged = 0;
        let stored = self.blobs.list_uploads().await.map_err(blob_error)?;
        // Every session is recorded before its first byte is stored: after catching up, an
        // upload listed above that has no session is garbage, even in storage other managers
        // write to.
        self.proposer.catch_up().await.map_err(store_failure)?;
        for id in stored {
            let copying = self.copying.lock().unwrap_or_else(PoisonError::into_inner).contains(&id);
            if !copying && self.store.upload(&id).map_err(internal)?.is_none() {
                self.blobs.abort(&id).await.map_err(blob_error)?;
                purged += 1;
            }
        }
        let stale = self.store.uploads_started_by(now().saturating_sub(max_age_secs)).map_err(internal)?;
        for id in stale {
            let lock = {
                let mut sessions = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
                Arc::clone(sessions.entry(id.clone()).or_default())
            };
            let Ok(_guard) = lock.try_lock() else { continue };
            match self.apply(RegistryCommand::CancelUpload { id: id.clone() }).await {
                Ok(_) | Err(ProposeError::Refused(Refusal::UploadUnknown(_))) => {}
                Err(e) => return Err(internal(e)),
            }
            self.blobs.abort(&id).await.map_err(blob_error)?;
            self.forget_session(&id);
            purged += 1;
        }
        Ok(purged)
    }

    /// The session's record (which must belong to `repo`) and its lock. A session this
    /// replica does not know may have been opened through another manager a moment ago: the
    /// replica catches up with the leader before it calls the session unknown.
    async fn session(&self, repo: &str, id: &str) -> Result<(UploadRecord, SessionLock), RegistryError> {
        check_name(repo)?;
        let mut record = self.store.upload(id).map_err(internal)?;
        if record.is_none() {
            self.proposer.catch_up().await.map_err(store_failure)?;
            record = self.store.upload(id).map_err(internal)?;
        }
        let record = record.ok_or_else(upload_unknown)?;
        if record.repo != repo {
            return Err(upload_unknown());
        }
        let mut sessions = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((record, Arc::clone(sessions.entry(id.to_owned()).or_default())))
    }

    fn forget_session(&self, id: &str) {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    async fn append_locked(
        &self,
        id: &str,
        state: &mut Option<HashState>,
        algorithm: Algorithm,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let offset = self.blobs.upload_size(id).await.map_err(blob_error)?;
        if let Some(start) = start
            && start != offset
        {
            return Err(RegistryError::new(
                ErrorCode::RangeInvalid,
                format!("chunk starts at {start}, upload holds {offset} bytes"),
            ));
        }
        let algorithm = state.as_ref().map_or(algorithm, |s| s.hasher.algorithm());
        let hasher = Arc::new(Mutex::new(self.hasher_at(id, state.take(), offset, algorithm).await?));
        // The blob store calls the observer from its write pipeline, so hashing overlaps
        // receiving and writing.
        let feed = Arc::clone(&hasher);
        let observe: Observer =
            Box::new(move |bytes| feed.lock().unwrap_or_else(PoisonError::into_inner).update(bytes));
        let new_offset = self.blobs.append(id, offset, body, observe).await.map_err(blob_error)?;
        // The observer, and with it the other handle, is dropped once append returns.
        if let Ok(hasher) = Arc::try_unwrap(hasher) {
            let hasher = hasher.into_inner().unwrap_or_else(PoisonError::into_inner);
            *state = Some(HashState { offset: new_offset, hasher });
        }
        Ok(new_offset)
    }

    /// A hasher covering the first `offset` bytes of upload `id`: the cached one when it fits,
    /// else one rebuilt from the stored bytes.
    async fn hasher_at(
        &self,
        id: &str,
        cached: Option<HashState>,
        offset: u64,
        algorithm: Algorithm,
    ) -> Result<Hasher, RegistryError> {
        if let Some(state) = cached
            && state.offset == offset
            && state.hasher.algorithm() == algorithm
        {
            return Ok(state.hasher);
        }
        let mut hasher = Hasher::new(algorithm);
        let mut stored = self.blobs.read_upload(id).await.map_err(blob_error)?;
        let mut seen = 0u64;
        while let Some(chunk) = stored.next().await {
            let chunk = chunk.map_err(internal)?;
            seen += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if seen != offset {
            return Err(internal(format!("upload {id} changed while it was rehashed: {seen} != {offset}")));
        }
        Ok(hasher)
    }
}
