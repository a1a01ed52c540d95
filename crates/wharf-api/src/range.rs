//! Byte ranges: the upload `Content-Range` (`start-end`, inclusive, no unit) and the
//! blob `Range` request header (`bytes=start-end`, `bytes=start-`, `bytes=-suffix`).

/// An inclusive byte range `[start, end]` of an upload chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

/// Parses an upload `Content-Range` value. Distribution clients send `start-end`; some send
/// `bytes start-end/total` or `bytes=start-end`, which are accepted too.
pub fn parse_content_range(value: &str) -> Option<ChunkRange> {
    let v = value.trim();
    let v = v.strip_prefix("bytes=").or_else(|| v.strip_prefix("bytes ")).unwrap_or(v);
    let v = v.split_once('/').map_or(v, |(range, _total)| range);
    let (start, end) = v.split_once('-')?;
    let start: u64 = parse_u64(start)?;
    let end: u64 = parse_u64(end)?;
    (end >= start).then_some(ChunkRange { start, end })
}

/// A satisfiable byte range of a blob: `offset` and `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

/// What a `Range` header means for a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// The header is absent or not a single `bytes` range we understand: send it all
    /// (RFC 9110 lets a server ignore a Range it does not support).
    Full,
    Partial(ByteRange),
    /// Well formed but outside the blob, or its last position before its first: 416 with
    /// `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Interprets a `Range` request header against a blob of `size` bytes.
pub fn parse_range_header(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = match (first.trim(), last.trim()) {
        ("", "") => return RangeRequest::Full,
        ("", suffix) => {
            let Some(n) = parse_u64(suffix) else {
                return RangeRequest::Full;
            };
            if n == 0 || size == 0 {
                return RangeRequest::Unsatisfiable;
            }
            (size.saturating_sub(n), size - 1)
        }
        (s, e) => {
            let Some(start) = parse_u64(s) else {
                return RangeRequest::Full;
            };
            let end = if e.is_empty() {
                u64::MAX
            } else {
                match parse_u64(e) {
                    Some(end) if end >= start => end,
                    // `bytes=500-0`: well formed, but a last position before the first is an
                    // invalid range (RFC 9110 §14.1.1), which distribution also answers 416.
                    Some(_) => return RangeRequest::Unsatisfiable,
                    None => return RangeRequest::Full,
                }
            };
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            (start, end.min(size - 1))
        }
    };
    RangeRequest::Partial(ByteRange { offset: start, len: end - start + 1 })
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("0-99"), Some(ChunkRange { start: 0, end: 99 }));
        assert_eq!(parse_content_range("bytes=5-9"), Some(ChunkRange { start: 5, end: 9 }));
        assert_eq!(parse_content_range("bytes 5-9/100"), Some(ChunkRange { start: 5, end: 9 }));
        for bad in ["", "-", "9-5", "a-b", "1-", "-1", "+1-2", "0-99999999999999999999999"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn range_header() {
        let p = |offset, len| RangeRequest::Partial(ByteRange { offset, len });
        assert_eq!(parse_range_header(None, 10), RangeRequest::Full);
        assert_eq!(parse_range_header(Some("bytes=0-4"), 10), p(0, 5));
        assert_eq!(parse_range_header(Some("bytes=5-"), 10), p(5, 5));
        assert_eq!(parse_range_header(Some("bytes=-3"), 10), p(7, 3));
        assert_eq!(parse_range_header(Some("bytes=8-100"), 10), p(8, 2));
        assert_eq!(parse_range_header(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range_header(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range_header(Some("bytes=5-2"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range_header(Some("bytes=500-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range_header(Some("bytes=a-2"), 10), RangeRequest::Full);
        assert_eq!(parse_range_header(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse_range_header(Some("bytes=0-1,3-4"), 10), RangeRequest::Full);
    }

    proptest::proptest! {
        #[test]
        fn range_parsers_never_panic(s in "\\PC{0,64}", size in 0u64..1_000_000) {
            let _ = parse_content_range(&s);
            if let RangeRequest::Partial(r) = parse_range_header(Some(&s), size) {
                proptest::prop_assert!(r.len >= 1 && r.offset + r.len <= size);
            }
        }

        #[test]
        fn satisfiable_ranges_stay_inside(a in 0u64..2000, b in 0u64..2000, size in 1u64..1000) {
            let (s, e) = (a.min(b), a.max(b));
            match parse_range_header(Some(&format!("bytes={s}-{e}")), size) {
                RangeRequest::Partial(r) => proptest::prop_assert!(r.offset == s && r.offset + r.len <= size),
                RangeRequest::Unsatisfiable => proptest::prop_assert!(s >= size),
                RangeRequest::Full => proptest::prop_assert!(false, "valid range ignored"),
            }
        }
    }
}
