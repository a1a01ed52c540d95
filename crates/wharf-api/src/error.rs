//! The registry's error codes and their one mapping to HTTP statuses. Every failure the
//! registry reports goes through [`RegistryError`], so a client always gets the OCI JSON body
//! `{"errors":[{"code","message","detail"}]}` with the status that belongs to the code.

use serde::Serialize;

/// OCI distribution error codes, plus the ones distribution added that clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    TagInvalid,
    PaginationNumberInvalid,
    Unavailable,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The status a code is answered with unless the error says otherwise.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => 404,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::PaginationNumberInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Unknown => 500,
        }
    }
}

/// One registry error: a code, a message for people, optional detail for programs, and the
/// HTTP status (the code's own unless a protocol rule asks for another, such as 413).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RegistryError {
    pub code: ErrorCode,
    pub status: u16,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RegistryError {
        RegistryError { code, status: code.status(), message: message.into(), detail: None }
    }

    pub fn with_status(mut self, status: u16) -> RegistryError {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> RegistryError {
        self.detail = Some(detail);
        self
    }

    /// A server-side failure (storage, state store). The message is kept generic for the
    /// client; the caller logs the cause.
    pub fn internal() -> RegistryError {
        RegistryError::new(ErrorCode::Unknown, "internal error, see the server log")
    }

    /// The JSON body every error response carries.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            errors: [Entry<'a>; 1],
        }
        #[derive(Serialize)]
        struct Entry<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a serde_json::Value>,
        }
        let body =
            Body { errors: [Entry { code: self.code.as_str(), message: &self.message, detail: self.detail.as_ref() }] };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[{\"code\":\"UNKNOWN\"}]}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = RegistryError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
            .with_detail(serde_json::json!({"digest": "sha256:x"}));
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).expect("json");
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"]["digest"], "sha256:x");
        assert_eq!(e.status, 404);
        assert_eq!(RegistryError::new(ErrorCode::SizeInvalid, "x").with_status(413).status, 413);
    }
}
