//! Manifests: put (verifying digest, references and subject), get, delete, and the
//! referrers index built from subjects.

use wharf_api::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use wharf_api::{Descriptor, Digest, ErrorCode, ManifestInfo, RegistryError, validate_tag};
use wharf_store::{ProposeError, PutManifest, Refusal, RegistryCommand};

use crate::hashing::Hasher;
use crate::{Registry, check_name, internal, name_unknown, now, store_failure};

/// Most tags one manifest PUT may create with `?tag=`.
pub const MAX_TAGS_PER_PUT: usize = 64;

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(|e| RegistryError::new(ErrorCode::DigestInvalid, format!("invalid digest reference: {e}")))
        } else if validate_tag(s) {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(RegistryError::new(ErrorCode::TagInvalid, "invalid tag")
                .with_detail(serde_json::json!({ "tag": s.chars().take(200).collect::<String>() })))
        }
    }
}

/// What a manifest PUT stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<String>,
}

/// A manifest as served: its digest, media type and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

fn manifest_unknown(reference: &str) -> RegistryError {
    RegistryError::new(ErrorCode::ManifestUnknown, "manifest unknown to registry")
        .with_detail(serde_json::json!({ "reference": reference }))
}

fn manifest_invalid(message: String) -> RegistryError {
    RegistryError::new(ErrorCode::ManifestInvalid, message)
}

impl Registry {
    /// Stores a manifest under `reference`, plus the `?tag=` values in `extra_tags`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: Vec<u8>,
        extra_tags: &[String],
    ) -> Result<ManifestPut, RegistryError> {
        check_name(repo)?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::new(ErrorCode::SizeInvalid, "manifest too large").with_status(413));
        }
        if extra_tags.len() > MAX_TAGS_PER_PUT {
            return Err(RegistryError::new(ErrorCode::TagInvalid, "too many tags").with_status(414));
        }
        let (digest, mut tags) = match Reference::parse(reference)? {
            Reference::Digest(expected) => {
                let computed = Hasher::digest(expected.algorithm(), &bytes);
                if computed != expected {
                    return Err(RegistryError::new(
                        ErrorCode::DigestInvalid,
                        "manifest digest does not match its bytes",
                    )
                    .with_detail(
                        serde_json::json!({ "expected": expected.to_string(), "computed": computed.to_string() }),
                    ));
                }
                (expected, Vec::new())
            }
            Reference::Tag(tag) => (Hasher::digest(wharf_api::Algorithm::Sha256, &bytes), vec![tag]),
        };
        for tag in extra_tags {
            match Reference::parse(tag)? {
                Reference::Tag(t) if !tags.contains(&t) => tags.push(t),
                Reference::Tag(_) => {}
                Reference::Digest(_) => {
                    return Err(RegistryError::new(ErrorCode::TagInvalid, "invalid tag"));
                }
            }
        }
        let info = ManifestInfo::parse(&bytes, content_type).map_err(|e| manifest_invalid(e.to_string()))?;
        let subject = info.subject.as_ref().map(|s| s.digest.clone());
        let referrer_descriptor = match &subject {
            Some(_) => Some(referrer_descriptor(&info, &digest, bytes.len())?),
            None => None,
        };
        let put = PutManifest {
            repo: repo.to_owned(),
            digest: digest.clone(),
            media_type: info.media_type,
            bytes,
            blobs: info.blobs,
            manifests: info.manifests,
            tags: tags.clone(),
            subject: subject.clone(),
            referrer_descriptor,
            at: now(),
        };
        self.apply(RegistryCommand::PutManifest(Box::new(put))).await.map_err(|e| match e {
            ProposeError::Refused(Refusal::ManifestBlobUnknown(missing)) => {
                let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
                RegistryError::new(ErrorCode::ManifestBlobUnknown, "manifest references unknown blobs")
                    .with_detail(serde_json::json!({ "digests": missing }))
            }
            other => store_failure(other),
        })?;
        Ok(ManifestPut { digest, subject, tags })
    }

    /// The manifest `reference` of `repo`.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<StoredManifest, RegistryError> {
        check_name(repo)?;
        let found = match Reference::parse(reference)? {
            Reference::Digest(digest) => self.store.manifest(repo, &digest).map(|r| r.map(|record| (digest, record))),
            Reference::Tag(tag) => self.store.manifest_by_tag(repo, &tag),
        };
        match found.map_err(internal)? {
            Some((digest, record)) => Ok(StoredManifest { digest, media_type: record.media_type, bytes: record.bytes }),
            None => Err(self.unknown_in(repo, reference)?),
        }
    }

    /// NAME_UNKNOWN when the repository does not exist, else MANIFEST_UNKNOWN.
    fn unknown_in(&self, repo: &str, reference: &str) -> Result<RegistryError, RegistryError> {
        if self.store.repo_exists(repo).map_err(internal)? {
            Ok(manifest_unknown(reference))
        } else {
            Ok(name_unknown(repo))
        }
    }

    /// Deletes a manifest by digest (with its tags) or untags a tag.
    pub async fn delete_manifest(&self, repo: &str, reference: &str) -> Result<(), RegistryError> {
        check_name(repo)?;
        let command = match Reference::parse(reference)? {
            Reference::Digest(digest) => RegistryCommand::DeleteManifest { repo: repo.to_owned(), digest },
            Reference::Tag(tag) => RegistryCommand::DeleteTag { repo: repo.to_owned(), tag },
        };
        self.apply(command).await.map(|_| ()).map_err(|e| match e {
            ProposeError::Refused(Refusal::ManifestUnknown(_) | Refusal::TagUnknown(_)) => manifest_unknown(reference),
            other => store_failure(other),
        })
    }

    /// The referrers index of `subject` in `repo`, filtered by `artifact_type`.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>, RegistryError> {
        check_name(repo)?;
        let entries = self.store.referrers(repo, subject).map_err(internal)?;
        let mut manifests = Vec::with_capacity(entries.len());
        for raw in entries {
            let descriptor: serde_json::Value = serde_json::from_slice(&raw).map_err(internal)?;
            if artifact_type.is_none_or(|t| descriptor.get("artifactType").and_then(|v| v.as_str()) == Some(t)) {
                manifests.push(descriptor);
            }
        }
        let index = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        serde_json::to_vec(&index).map_err(internal)
    }
}

fn referrer_descriptor(info: &ManifestInfo, digest: &Digest, size: usize) -> Result<Vec<u8>, RegistryError> {
    let descriptor = Descriptor {
        media_type: info.media_type.clone(),
        digest: digest.clone(),
        size: size as u64,
        artifact_type: info.artifact_type.clone(),
        annotations: info.annotations.clone(),
        urls: None,
        platform: None,
    };
    serde_json::to_vec(&descriptor).map_err(internal)
}
