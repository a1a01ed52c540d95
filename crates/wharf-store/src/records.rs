//! Values stored in the tables. Each is wrapped in a versioned enum on disk.

use serde::{Deserialize, Serialize};
use wharf_api::{Algorithm, Digest};

/// A manifest as stored: the exact bytes and what the registry needs to serve them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub subject: Option<Digest>,
    pub created: u64,
}

/// An open upload session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repo: String,
    pub algorithm: Algorithm,
    pub started: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredManifest {
    V1(ManifestRecord),
}

#[derive(Serialize, Deserialize)]
pub(crate) enum StoredUpload {
    V1(UploadRecord),
}
