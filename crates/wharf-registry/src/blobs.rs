//! Blob reads, existence checks, mounts and deletes, always through the repository's link.

use wharf_api::range::{RangeRequest, parse_range_header};
use wharf_api::{Digest, ErrorCode, RegistryError, validate_name};
use wharf_blobstore::{BlobError, ByteStream};
use wharf_store::{ProposeError, Refusal, RegistryCommand};

use crate::{Registry, blob_error, check_name, internal, store_failure};

/// An opened blob: its size, the part requested, and the bytes (none when unsatisfiable).
pub struct BlobRead {
    pub size: u64,
    pub range: RangeRequest,
    pub body: Option<ByteStream>,
}

pub(crate) fn blob_unknown(digest: &Digest) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
        .with_detail(serde_json::json!({ "digest": digest.to_string() }))
}

impl Registry {
    /// The size of blob `digest` in `repo`.
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64, RegistryError> {
        check_name(repo)?;
        self.store.blob_link(repo, digest).map_err(internal)?.ok_or_else(|| blob_unknown(digest))
    }

    /// Opens blob `digest` of `repo` for the given `Range` header.
    pub async fn open_blob(
        &self,
        repo: &str,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> Result<BlobRead, RegistryError> {
        let size = self.blob_size(repo, digest)?;
        let range = parse_range_header(range_header, size);
        let wanted = match range {
            RangeRequest::Unsatisfiable => return Ok(BlobRead { size, range, body: None }),
            RangeRequest::Full => None,
            RangeRequest::Partial(r) => Some(r),
        };
        let body = match self.blobs.get(digest, wanted).await {
            Err(BlobError::NotFound(_)) => self.read_from_holders(digest, size, wanted).await?,
            read => read.map_err(blob_error)?,
        };
        Ok(BlobRead { size, range, body: Some(body) })
    }

    /// Opens blob `digest` only if this node holds its bytes, whichever repository links it
    /// (what another node reads from a holder, see [`crate::PeerBlobs`]): never read from
    /// another node in turn.
    pub async fn open_own_blob(&self, digest: &Digest, range_header: Option<&str>) -> Result<BlobRead, RegistryError> {
        let Some(size) = self.blobs.stat(digest).await.map_err(blob_error)? else {
            return Err(blob_unknown(digest));
        };
        let range = parse_range_header(range_header, size);
        let wanted = match range {
            RangeRequest::Unsatisfiable => return Ok(BlobRead { size, range, body: None }),
            RangeRequest::Full => None,
            RangeRequest::Partial(r) => Some(r),
        };
        let body = self.blobs.get(digest, wanted).await.map_err(blob_error)?;
        Ok(BlobRead { size, range, body: Some(body) })
    }

    /// Links blob `digest` into `repo` if `from` (or, without `from`, any repository) has it.
    /// Returns whether it was mounted; if not, the client uploads it instead.
    pub async fn mount(&self, repo: &str, digest: &Digest, from: Option<&str>) -> Result<bool, RegistryError> {
        check_name(repo)?;
        let size = match from {
            Some(from) if validate_name(from) => self.store.blob_link(from, digest),
            Some(_) => return Ok(false),
            None => self.store.blob_size(digest),
        }
        .map_err(internal)?;
        let Some(size) = size else { return Ok(false) };
        // The bytes must be readable: here, or (in a cluster) on a node that holds them.
        let here = self.blobs.stat(digest).await.map_err(blob_error)?.is_some();
        let elsewhere = || self.peers.is_some() && !self.store.blob_holders(digest).unwrap_or_default().is_empty();
        if !here && !elsewhere() {
            return Ok(false);
        }
        self.apply(RegistryCommand::LinkBlob { repo: repo.to_owned(), digest: digest.clone(), size })
            .await
            .map_err(internal)?;
        Ok(true)
    }

    /// Removes blob `digest` from `repo`. The bytes stay until garbage collection, since other
    /// repositories may link the same blob.
    pub async fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<(), RegistryError> {
        check_name(repo)?;
        let command = RegistryCommand::UnlinkBlob { repo: repo.to_owned(), digest: digest.clone() };
        self.apply(command).await.map(|_| ()).map_err(|e| match e {
            ProposeError::Refused(Refusal::BlobUnknown(d)) => blob_unknown(&d),
            other => store_failure(other),
        })
    }
}
