//! `/v2/` paths parsed into a closed set of endpoints. Repository names contain slashes, so
//! the path is read from its end: the last segments say which endpoint it is, and everything
//! before them is the name (validated later by the registry).

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Base,
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    Uploads { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

impl Endpoint {
    pub(crate) fn parse(path: &str) -> Option<Endpoint> {
        let rest = match path {
            "/v2" | "/v2/" => return Some(Endpoint::Base),
            _ => path.strip_prefix("/v2/")?,
        };
        if rest == "_catalog" {
            return Some(Endpoint::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name = |k: usize| segs[..n - k].join("/");
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let id = segs[n - 1];
            return Some(if id.is_empty() {
                Endpoint::Uploads { name: name(3) }
            } else {
                Endpoint::Upload { name: name(3), id: id.to_owned() }
            });
        }
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Some(Endpoint::Tags { name: name(2) });
        }
        if n < 2 || segs[n - 1].is_empty() {
            return None;
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Some(Endpoint::Uploads { name: name(2) });
        }
        let last = segs[n - 1].to_owned();
        match segs[n - 2] {
            "manifests" => Some(Endpoint::Manifest { name: name(2), reference: last }),
            "blobs" => Some(Endpoint::Blob { name: name(2), digest: last }),
            "referrers" => Some(Endpoint::Referrers { name: name(2), digest: last }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint::*;
    use super::*;

    #[test]
    fn parses_every_family() {
        let s = String::from;
        assert_eq!(Endpoint::parse("/v2/"), Some(Base));
        assert_eq!(Endpoint::parse("/v2/_catalog"), Some(Catalog));
        assert_eq!(Endpoint::parse("/v2/a/b/tags/list"), Some(Tags { name: s("a/b") }));
        assert_eq!(Endpoint::parse("/v2/a/manifests/v1"), Some(Manifest { name: s("a"), reference: s("v1") }));
        assert_eq!(Endpoint::parse("/v2/x/blobs/sha256:ab"), Some(Blob { name: s("x"), digest: s("sha256:ab") }));
        assert_eq!(Endpoint::parse("/v2/x/y/blobs/uploads/"), Some(Uploads { name: s("x/y") }));
        assert_eq!(Endpoint::parse("/v2/x/blobs/uploads"), Some(Uploads { name: s("x") }));
        assert_eq!(Endpoint::parse("/v2/x/blobs/uploads/abc"), Some(Upload { name: s("x"), id: s("abc") }));
        assert_eq!(
            Endpoint::parse("/v2/r/referrers/sha256:1"),
            Some(Referrers { name: s("r"), digest: s("sha256:1") })
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        let s = String::from;
        assert_eq!(
            Endpoint::parse("/v2/blobs/manifests/manifests/t"),
            Some(Manifest { name: s("blobs/manifests"), reference: s("t") })
        );
        assert_eq!(Endpoint::parse("/v2/x/blobs/blobs/uploads/"), Some(Uploads { name: s("x/blobs") }));
    }

    #[test]
    fn rejects_unknown_paths() {
        for p in ["/", "/v1/", "/v2/a", "/v2/a/manifests/", "/v2/a/other/b", "/v3/a/manifests/b"] {
            assert_eq!(Endpoint::parse(p), None, "{p}");
        }
    }
}
