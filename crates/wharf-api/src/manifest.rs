//! Manifests as the registry sees them: what they reference, what they are about (`subject`),
//! and what type of artifact they describe. The registry stores the exact bytes it received;
//! this module only reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Largest manifest accepted (the spec asks registries to accept at least 4 MB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Layer media types that clients never push (their `urls` point elsewhere), so a manifest
/// may reference them without the blob being present.
const NON_DISTRIBUTABLE: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// The union of the fields of image manifests and indexes that the registry looks at.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What a manifest says, as far as storage and the referrers API care.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestInfo {
    pub media_type: String,
    /// Blobs that must exist in the repository (config and distributable layers).
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository (children of an index).
    pub manifests: Vec<Digest>,
    pub subject: Option<Descriptor>,
    /// The artifact type the referrers API reports: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("unsupported manifest schemaVersion {0:?}, expected 2")]
    SchemaVersion(Option<i64>),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("{0} manifest lacks its {1} field")]
    MissingField(&'static str, &'static str),
}

fn is_manifest_type(t: &str) -> bool {
    matches!(t, DOCKER_MANIFEST_V2 | DOCKER_MANIFEST_LIST | OCI_MANIFEST | OCI_INDEX)
}

fn is_index_type(t: &str) -> bool {
    matches!(t, DOCKER_MANIFEST_LIST | OCI_INDEX)
}

impl ManifestInfo {
    /// Reads a manifest's bytes as sent with `content_type` (the request's Content-Type).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestInfo, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion(raw.schema_version));
        }
        let header =
            content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()).filter(|c| is_manifest_type(c));
        let media_type = match (&raw.media_type, header) {
            (Some(body), Some(header)) if body != &header => {
                return Err(ManifestError::MediaTypeMismatch { body: body.clone(), header });
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) => header,
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) => OCI_MANIFEST.to_owned(),
        };
        if !is_manifest_type(&media_type) {
            return Err(ManifestError::MediaType(media_type));
        }
        if is_index_type(&media_type) {
            let children = raw.manifests.ok_or(ManifestError::MissingField("index", "manifests"))?;
            Ok(ManifestInfo {
                media_type,
                blobs: Vec::new(),
                manifests: children.into_iter().map(|d| d.digest).collect(),
                artifact_type: raw.artifact_type,
                subject: raw.subject,
                annotations: raw.annotations,
            })
        } else {
            let config = raw.config.ok_or(ManifestError::MissingField("image", "config"))?;
            let layers = raw.layers.ok_or(ManifestError::MissingField("image", "layers"))?;
            let artifact_type = raw.artifact_type.or_else(|| Some(config.media_type.clone()));
            let mut blobs = vec![config.digest];
            blobs.extend(
                layers.into_iter().filter(|l| !NON_DISTRIBUTABLE.contains(&l.media_type.as_str())).map(|l| l.digest),
            );
            Ok(ManifestInfo {
                media_type,
                blobs,
                manifests: Vec::new(),
                artifact_type,
                subject: raw.subject,
                annotations: raw.annotations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_refs_and_artifact_type() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/x.cfg","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}},
                      {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","size":3}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}}}}"#,
            d('a'),
            d('b'),
            d('c'),
            d('e')
        );
        let info = ManifestInfo::parse(m.as_bytes(), Some(OCI_MANIFEST)).expect("valid");
        assert_eq!(info.blobs.len(), 2, "non-distributable layer is not required");
        assert_eq!(info.artifact_type.as_deref(), Some("application/x.cfg"));
        assert_eq!(info.subject.expect("subject").digest.to_string(), d('e'));
    }

    #[test]
    fn index_children() {
        let m = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}]}}"#,
            d('f')
        );
        let info = ManifestInfo::parse(m.as_bytes(), None).expect("valid");
        assert_eq!(info.media_type, OCI_INDEX);
        assert_eq!(info.manifests.len(), 1);
    }

    #[test]
    fn refusals() {
        assert!(matches!(ManifestInfo::parse(b"{", None), Err(ManifestError::Json(_))));
        assert!(matches!(ManifestInfo::parse(b"{\"schemaVersion\":1}", None), Err(ManifestError::SchemaVersion(_))));
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            ManifestInfo::parse(m.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let m = r#"{"schemaVersion":2,"mediaType":"text/plain","layers":[]}"#;
        assert!(matches!(ManifestInfo::parse(m.as_bytes(), None), Err(ManifestError::MediaType(_))));
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#);
        assert!(matches!(ManifestInfo::parse(m.as_bytes(), None), Err(ManifestError::MissingField(..))));
        let m = r#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(matches!(ManifestInfo::parse(m.as_bytes(), None), Err(ManifestError::Json(_))));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), ct in "\\PC{0,40}") {
            let _ = ManifestInfo::parse(&bytes, Some(&ct));
        }

        #[test]
        fn parse_never_panics_on_jsonish(s in "\\{\"schemaVersion\":2,\"(mediaType|config|layers|manifests|subject)\":[\\[\\]{}\"a-z:0-9,]{0,80}\\}") {
            let _ = ManifestInfo::parse(s.as_bytes(), None);
        }
    }
}
