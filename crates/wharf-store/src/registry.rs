//! The registry's domain of the state: repositories, blobs and their links, manifests, tags,
//! referrers and upload sessions. Its commands and how they apply (refusals decided before
//! anything is written); the reads are `Store`'s methods in `store.rs`.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use wharf_api::{Algorithm, Digest};

use crate::command::{Outcome, PutManifest};
use crate::records::{ManifestRecord, StoredManifest, StoredUpload, UploadRecord};
use crate::refusal::Refusal;
use crate::store::{StoreError, encode};
use crate::tables::*;

/// A change of the registry's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegistryCommand {
    /// Opens upload session `id` for `repo`.
    StartUpload { id: String, repo: String, algorithm: Algorithm, at: u64 },
    /// Opens upload session `id` for `repo` on behalf of `owner` (a user name), refused when
    /// `owner` has `limit` sessions open already (0: no limit). Supersedes
    /// [`RegistryCommand::StartUpload`], which is kept so that older logs still apply.
    StartOwnedUpload { id: String, repo: String, algorithm: Algorithm, at: u64, owner: String, limit: u32 },
    /// Closes upload session `id` without a blob.
    CancelUpload { id: String },
    /// Closes upload session `id`: its bytes are now blob `digest`, linked into the session's repository.
    CommitUpload { id: String, digest: Digest, size: u64 },
    /// Links an existing blob into `repo` (cross-repository mount).
    LinkBlob { repo: String, digest: Digest, size: u64 },
    /// Removes `repo`'s link to a blob.
    UnlinkBlob { repo: String, digest: Digest },
    /// Stores a manifest, tags it, and indexes it as a referrer of its subject.
    PutManifest(Box<PutManifest>),
    /// Deletes a manifest and every tag that points at it.
    DeleteManifest { repo: String, digest: Digest },
    /// Removes one tag.
    DeleteTag { repo: String, tag: String },
    /// [`RegistryCommand::CommitUpload`] by a cluster node: `holders` (that node, and the nodes
    /// it copied the blob to before acknowledging it) now hold a verified copy on their disks,
    /// recorded in the blob's holders. Supersedes `CommitUpload`, which is kept so that older
    /// logs still apply (and for a registry that is no cluster node).
    CommitUploadOn { id: String, digest: Digest, size: u64, holders: Vec<u64> },
    /// Node `node` now holds a verified copy of blob `digest` too (a copy made from another
    /// holder). Refused for a blob the state does not know.
    AddBlobHolder { digest: Digest, node: u64 },
    /// Upload `id`, in shared storage, now also holds the `len` bytes of object `key` from
    /// `start`. Refused unless the upload holds exactly `start` bytes, so that of two
    /// managers appending at once only one extends it.
    AddUploadSegment { id: String, start: u64, len: u64, key: String },
    /// Node `node` no longer holds a usable copy of blob `digest` (the node was removed, or its
    /// copy was found corrupt and deleted). Removing a holder the state does not record is no
    /// error.
    RemoveBlobHolder { digest: Digest, node: u64 },
}

/// One line per command for logs: what it does and to what, never a password hash or a
/// session id.
impl std::fmt::Display for RegistryCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryCommand::StartUpload { repo, .. } => write!(f, "start-upload {repo}"),
            RegistryCommand::CancelUpload { .. } => write!(f, "cancel-upload"),
            RegistryCommand::CommitUpload { digest, .. } => write!(f, "commit-upload {digest}"),
            RegistryCommand::LinkBlob { repo, digest, .. } => write!(f, "link-blob {repo}@{digest}"),
            RegistryCommand::UnlinkBlob { repo, digest } => write!(f, "unlink-blob {repo}@{digest}"),
            RegistryCommand::PutManifest(put) => write!(f, "put-manifest {}@{}", put.repo, put.digest),
            RegistryCommand::DeleteManifest { repo, digest } => write!(f, "delete-manifest {repo}@{digest}"),
            RegistryCommand::DeleteTag { repo, tag } => write!(f, "delete-tag {repo}:{tag}"),
            RegistryCommand::StartOwnedUpload { repo, owner, .. } => write!(f, "start-upload {repo} by {owner}"),
            RegistryCommand::CommitUploadOn { digest, holders, .. } => {
                write!(f, "commit-upload {digest} on nodes {holders:?}")
            }
            RegistryCommand::AddBlobHolder { digest, node } => write!(f, "add-blob-holder {digest} node {node}"),
            RegistryCommand::AddUploadSegment { start, len, .. } => write!(f, "add-upload-segment {start}+{len}"),
            RegistryCommand::RemoveBlobHolder { digest, node } => write!(f, "remove-blob-holder {digest} node {node}"),
        }
    }
}

/// The repository whose tags `command` may change.
pub(crate) fn tags_changed(command: &RegistryCommand) -> Option<&str> {
    match command {
        RegistryCommand::PutManifest(put) if !put.tags.is_empty() => Some(&put.repo),
        RegistryCommand::DeleteManifest { repo, .. } | RegistryCommand::DeleteTag { repo, .. } => Some(repo),
        _ => None,
    }
}

pub(crate) fn apply(txn: &WriteTransaction, command: &RegistryCommand) -> Result<Outcome, StoreError> {
    match command {
        RegistryCommand::StartUpload { id, repo, algorithm, at } => {
            let record = UploadRecord { repo: repo.clone(), algorithm: *algorithm, started: *at, owner: String::new() };
            start_upload(txn, id, record, 0)
        }
        RegistryCommand::StartOwnedUpload { id, repo, algorithm, at, owner, limit } => {
            let record = UploadRecord { repo: repo.clone(), algorithm: *algorithm, started: *at, owner: owner.clone() };
            start_upload(txn, id, record, *limit)
        }
        RegistryCommand::CancelUpload { id } => {
            take_upload(txn, id)?;
            Ok(Outcome::Done)
        }
        RegistryCommand::CommitUpload { id, digest, size } => {
            let upload = take_upload(txn, id)?;
            link_blob(txn, &upload.repo, digest, *size, upload.started)?;
            Ok(Outcome::UploadCommitted { repo: upload.repo })
        }
        RegistryCommand::CommitUploadOn { id, digest, size, holders } => {
            let upload = take_upload(txn, id)?;
            link_blob(txn, &upload.repo, digest, *size, upload.started)?;
            let mut table = txn.open_table(BLOB_HOLDERS)?;
            for node in holders {
                table.insert((digest.to_string().as_str(), *node), ())?;
            }
            Ok(Outcome::UploadCommitted { repo: upload.repo })
        }
        RegistryCommand::AddBlobHolder { digest, node } => {
            let key = digest.to_string();
            if txn.open_table(BLOBS)?.get(key.as_str())?.is_none() {
                return Err(Refusal::BlobUnknown(digest.clone()).into());
            }
            txn.open_table(BLOB_HOLDERS)?.insert((key.as_str(), *node), ())?;
            Ok(Outcome::Done)
        }
        RegistryCommand::RemoveBlobHolder { digest, node } => {
            txn.open_table(BLOB_HOLDERS)?.remove((digest.to_string().as_str(), *node))?;
            Ok(Outcome::Done)
        }
        RegistryCommand::AddUploadSegment { id, start, len, key } => {
            if txn.open_table(UPLOADS)?.get(id.as_str())?.is_none() {
                return Err(Refusal::UploadUnknown(id.clone()).into());
            }
            let mut segments = txn.open_table(UPLOAD_SEGMENTS)?;
            let actual = match segments.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?.next_back() {
                Some(row) => {
                    let (k, v) = row?;
                    k.value().1 + v.value().1
                }
                None => 0,
            };
            if actual != *start {
                return Err(Refusal::UploadOffset { id: id.clone(), actual }.into());
            }
            segments.insert((id.as_str(), *start), (key.as_str(), *len))?;
            Ok(Outcome::Done)
        }
        RegistryCommand::LinkBlob { repo, digest, size } => {
            link_blob(txn, repo, digest, *size, 0)?;
            Ok(Outcome::Done)
        }
        RegistryCommand::UnlinkBlob { repo, digest } => {
            let removed = txn.open_table(BLOB_LINKS)?.remove((repo.as_str(), digest.to_string().as_str()))?.is_some();
            if removed { Ok(Outcome::Done) } else { Err(Refusal::BlobUnknown(digest.clone()).into()) }
        }
        RegistryCommand::PutManifest(put) => put_manifest(txn, put),
        RegistryCommand::DeleteManifest { repo, digest } => delete_manifest(txn, repo, digest),
        RegistryCommand::DeleteTag { repo, tag } => {
            let removed = txn.open_table(TAGS)?.remove((repo.as_str(), tag.as_str()))?.is_some();
            if removed { Ok(Outcome::Done) } else { Err(Refusal::TagUnknown(tag.clone()).into()) }
        }
    }
}

/// Records upload `id`, refused when its owner has `limit` (if not 0) open already.
fn start_upload(txn: &WriteTransaction, id: &str, record: UploadRecord, limit: u32) -> Result<Outcome, StoreError> {
    if !record.owner.is_empty() {
        let mut owned = txn.open_table(OWNER_UPLOADS)?;
        if limit > 0 {
            let open =
                owned.range((record.owner.as_str(), "")..)?.take(limit as usize).try_fold(0u32, |n, entry| {
                    let (key, _) = entry?;
                    Ok::<u32, StoreError>(n + u32::from(key.value().0 == record.owner))
                })?;
            if open >= limit {
                return Err(Refusal::TooManyUploads { owner: record.owner.clone(), limit }.into());
            }
        }
        owned.insert((record.owner.as_str(), id), ())?;
    }
    txn.open_table(UPLOADS)?.insert(id, encode(&StoredUpload::V2(record))?.as_slice())?;
    Ok(Outcome::Done)
}

/// Removes upload `id`'s record (and its owner's count of it); returns the record.
fn take_upload(txn: &WriteTransaction, id: &str) -> Result<UploadRecord, StoreError> {
    let raw = txn.open_table(UPLOADS)?.remove(id)?.map(|v| v.value().to_vec());
    let raw = raw.ok_or_else(|| Refusal::UploadUnknown(id.to_owned()))?;
    let upload = postcard::from_bytes::<StoredUpload>(&raw)?.into_current();
    if !upload.owner.is_empty() {
        txn.open_table(OWNER_UPLOADS)?.remove((upload.owner.as_str(), id))?;
    }
    let mut segments = txn.open_table(UPLOAD_SEGMENTS)?;
    let starts: Vec<u64> =
        segments.range((id, 0)..=(id, u64::MAX))?.map(|row| row.map(|(k, _)| k.value().1)).collect::<Result<_, _>>()?;
    for start in starts {
        segments.remove((id, start))?;
    }
    Ok(upload)
}

fn ensure_repo(txn: &WriteTransaction, repo: &str, at: u64) -> Result<(), StoreError> {
    let mut repos = txn.open_table(REPOS)?;
    if repos.get(repo)?.is_none() {
        repos.insert(repo, at)?;
    }
    Ok(())
}

fn link_blob(txn: &WriteTransaction, repo: &str, digest: &Digest, size: u64, at: u64) -> Result<(), StoreError> {
    let key = digest.to_string();
    txn.open_table(BLOBS)?.insert(key.as_str(), size)?;
    txn.open_table(BLOB_LINKS)?.insert((repo, key.as_str()), size)?;
    ensure_repo(txn, repo, at)
}

fn put_manifest(txn: &WriteTransaction, put: &PutManifest) -> Result<Outcome, StoreError> {
    let repo = put.repo.as_str();
    let mut missing = Vec::new();
    {
        let links = txn.open_table(BLOB_LINKS)?;
        for blob in &put.blobs {
            if links.get((repo, blob.to_string().as_str()))?.is_none() {
                missing.push(blob.clone());
            }
        }
        let manifests = txn.open_table(MANIFESTS)?;
        for child in &put.manifests {
            if manifests.get((repo, child.to_string().as_str()))?.is_none() {
                missing.push(child.clone());
            }
        }
    }
    if !missing.is_empty() && !crate::accounts::repo_settings_in(txn, repo)?.sparse_manifests {
        return Err(Refusal::ManifestBlobUnknown(missing).into());
    }
    let digest = put.digest.to_string();
    let record = StoredManifest::V1(ManifestRecord {
        media_type: put.media_type.clone(),
        bytes: put.bytes.clone(),
        subject: put.subject.clone(),
        created: put.at,
    });
    txn.open_table(MANIFESTS)?.insert((repo, digest.as_str()), encode(&record)?.as_slice())?;
    let mut tags = txn.open_table(TAGS)?;
    for tag in &put.tags {
        tags.insert((repo, tag.as_str()), digest.as_str())?;
    }
    if let (Some(subject), Some(descriptor)) = (&put.subject, &put.referrer_descriptor) {
        let subject = subject.to_string();
        txn.open_table(REFERRERS)?.insert((repo, subject.as_str(), digest.as_str()), descriptor.as_slice())?;
    }
    ensure_repo(txn, repo, put.at)?;
    Ok(Outcome::Done)
}

fn delete_manifest(txn: &WriteTransaction, repo: &str, digest: &Digest) -> Result<Outcome, StoreError> {
    let key = digest.to_string();
    let raw = txn.open_table(MANIFESTS)?.remove((repo, key.as_str()))?.map(|v| v.value().to_vec());
    let raw = raw.ok_or_else(|| Refusal::ManifestUnknown(digest.clone()))?;
    let StoredManifest::V1(record) = postcard::from_bytes(&raw)?;
    if let Some(subject) = record.subject {
        let subject = subject.to_string();
        txn.open_table(REFERRERS)?.remove((repo, subject.as_str(), key.as_str()))?;
    }
    let mut tags = txn.open_table(TAGS)?;
    let mut removed = Vec::new();
    for entry in tags.range((repo, "")..)? {
        let (k, v) = entry?;
        let (r, tag) = k.value();
        if r != repo {
            break;
        }
        if v.value() == key {
            removed.push(tag.to_owned());
        }
    }
    for tag in &removed {
        tags.remove((repo, tag.as_str()))?;
    }
    Ok(Outcome::ManifestDeleted { tags: removed })
}
