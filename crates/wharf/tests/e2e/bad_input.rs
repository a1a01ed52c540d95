//! Malformed requests, each with the status and error code it must get. After the table the
//! content pushed beforehand must still be intact: bad input never damages stored data.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{Wharf, base64_encode};
use crate::oci::*;

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
}

fn case(what: &'static str, method: Method, path: String, status: u16, code: Option<&'static str>) -> Case {
    Case { what, method, path, headers: Vec::new(), body: Vec::new(), status, code }
}

impl Case {
    fn body(mut self, body: Vec<u8>) -> Case {
        self.body = body;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
}

#[tokio::test]
async fn malformed_requests_get_protocol_errors_and_lose_nothing() {
    let w = Wharf::start();
    let (c, b) = (w.client(), w.base());
    let (digest, manifest) = push_image(&c, &b, "bad/target", "v1", 21).await;
    let layer = bytes(21, 2048);
    let layer_digest = sha256(&layer);
    let upload = start_upload(&c, &b, "bad/target").await;
    let upload_path = upload.trim_start_matches(&b).to_owned();
    let good_digest = sha256(b"x");
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let long_name = format!("a/{}", "b".repeat(300));
    let invalid_json = b"{not json".to_vec();
    let wrong_media = br#"{"schemaVersion":2,"mediaType":"application/x-unknown","layers":[]}"#.to_vec();
    let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec();

    use Method as M;
    let cases = vec![
        case("uppercase name", M::GET, "/v2/Bad/manifests/v1".into(), 400, Some("NAME_INVALID")),
        case("double slash name", M::GET, "/v2/a//b/tags/list".into(), 400, Some("NAME_INVALID")),
        case("dot-dot name", M::GET, "/v2/a..b/manifests/v1".into(), 400, Some("NAME_INVALID")),
        case("encoded traversal", M::GET, "/v2/%2e%2e/blobs/uploads/".into(), 404, Some("UNSUPPORTED")),
        case("name too long", M::POST, format!("/v2/{long_name}/blobs/uploads/"), 400, Some("NAME_INVALID")),
        case("bad tag", M::PUT, "/v2/bad/target/manifests/-bad".into(), 400, Some("TAG_INVALID")),
        case("tag too long", M::GET, format!("/v2/bad/target/manifests/{}", "t".repeat(129)), 400, Some("TAG_INVALID")),
        case("bad digest algorithm", M::GET, "/v2/bad/target/blobs/md5:abcd".into(), 400, Some("DIGEST_INVALID")),
        case("short digest", M::HEAD, "/v2/bad/target/blobs/sha256:abc".into(), 400, None),
        case(
            "uppercase digest",
            M::GET,
            format!("/v2/bad/target/blobs/sha256:{}", "A".repeat(64)),
            400,
            Some("DIGEST_INVALID"),
        ),
        case(
            "digest traversal",
            M::GET,
            "/v2/bad/target/blobs/sha256:..%2f..%2fetc".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        case(
            "manifest digest mismatch",
            M::PUT,
            format!("/v2/bad/target/manifests/{good_digest}"),
            400,
            Some("DIGEST_INVALID"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone()),
        case("manifest not json", M::PUT, "/v2/bad/target/manifests/broken".into(), 400, Some("MANIFEST_INVALID"))
            .header("content-type", OCI_MANIFEST)
            .body(invalid_json),
        case(
            "manifest unknown media type",
            M::PUT,
            "/v2/bad/target/manifests/odd".into(),
            400,
            Some("MANIFEST_INVALID"),
        )
        .body(wrong_media),
        case("schema 1 manifest", M::PUT, "/v2/bad/target/manifests/old".into(), 400, Some("MANIFEST_INVALID"))
            .header("content-type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
            .body(schema1),
        case("oversized manifest", M::PUT, "/v2/bad/target/manifests/huge".into(), 413, Some("SIZE_INVALID"))
            .header("content-type", OCI_MANIFEST)
            .body(huge),
        case(
            "blob digest mismatch",
            M::POST,
            format!("/v2/bad/target/blobs/uploads/?digest={good_digest}"),
            400,
            Some("DIGEST_INVALID"),
        )
        .body(b"not x".to_vec()),
        case(
            "bad digest on single POST",
            M::POST,
            "/v2/bad/target/blobs/uploads/?digest=sha256:zz".into(),
            400,
            Some("DIGEST_INVALID"),
        )
        .body(b"x".to_vec()),
        case(
            "bad mount digest",
            M::POST,
            "/v2/bad/target/blobs/uploads/?mount=nope&from=bad/target".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        case(
            "unknown digest algorithm for upload",
            M::POST,
            "/v2/bad/target/blobs/uploads/?digest-algorithm=md5".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        case(
            "unknown upload id",
            M::PATCH,
            "/v2/bad/target/blobs/uploads/00000000-0000-4000-8000-000000000000".into(),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        )
        .body(b"abc".to_vec()),
        case(
            "upload id traversal",
            M::GET,
            "/v2/bad/target/blobs/uploads/..%2F..%2Fstate.redb".into(),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
        case(
            "upload of another repo",
            M::GET,
            upload_path.replace("bad/target", "bad/other"),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
        case("out of order chunk", M::PATCH, upload_path.clone(), 416, Some("RANGE_INVALID"))
            .header("content-range", "10-19")
            .body(vec![0; 10]),
        case("malformed content-range", M::PATCH, upload_path.clone(), 416, Some("RANGE_INVALID"))
            .header("content-range", "abc")
            .body(vec![0; 10]),
        case("inverted content-range", M::PATCH, upload_path.clone(), 416, Some("RANGE_INVALID"))
            .header("content-range", "9-0")
            .body(vec![0; 10]),
        case("PUT without digest", M::PUT, upload_path.clone(), 400, Some("DIGEST_INVALID")),
        case(
            "PUT with wrong digest",
            M::PUT,
            format!("{upload_path}?digest={good_digest}"),
            400,
            Some("DIGEST_INVALID"),
        ),
        case("range past the end", M::GET, format!("/v2/bad/target/blobs/{layer_digest}"), 416, None)
            .header("range", "bytes=5000-6000"),
        case(
            "pagination not a number",
            M::GET,
            "/v2/bad/target/tags/list?n=abc".into(),
            400,
            Some("PAGINATION_NUMBER_INVALID"),
        ),
        case("pagination negative", M::GET, "/v2/_catalog?n=-1".into(), 400, Some("PAGINATION_NUMBER_INVALID")),
        case("pagination too large", M::GET, "/v2/_catalog?n=1000000".into(), 400, Some("PAGINATION_NUMBER_INVALID")),
        case("unknown endpoint", M::GET, "/v2/bad/target/unknown/x".into(), 404, Some("UNSUPPORTED")),
        case("wrong method", M::PATCH, "/v2/bad/target/manifests/v1".into(), 405, Some("UNSUPPORTED")),
        case(
            "delete unknown manifest",
            M::DELETE,
            format!("/v2/bad/target/manifests/{good_digest}"),
            404,
            Some("MANIFEST_UNKNOWN"),
        ),
        case("referrers bad digest", M::GET, "/v2/bad/target/referrers/latest".into(), 400, Some("DIGEST_INVALID")),
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let mut req = c.request(case.method.clone(), format!("{b}{}", case.path)).body(case.body.clone());
        for (k, v) in &case.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{}: {e:?}", case.what));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let code =
            serde_json::from_str::<Value>(&text).ok().and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned));
        let code_ok = match case.code {
            Some(expected) => code.as_deref() == Some(expected),
            None => true,
        };
        if status != case.status || !code_ok || status >= 500 {
            failures
                .push(format!("{}: got {status} {code:?}, want {} {:?} ({text})", case.what, case.status, case.code));
        }
    }
    assert!(failures.is_empty(), "bad-input table failures:\n{}", failures.join("\n"));

    // HTTP clients normalise `..` away, so send a traversal attempt on a raw socket.
    let basic = base64_encode(w.admin_creds().as_bytes());
    let raw = raw_request(
        &w,
        &format!(
            "GET /v2/../../etc/manifests/passwd HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(raw.starts_with("HTTP/1.1 400"), "raw traversal: {raw}");
    assert!(raw.contains("NAME_INVALID"), "raw traversal: {raw}");

    // Everything stored before is still there, byte for byte.
    let resp = c.get(format!("{b}/v2/bad/target/manifests/v1")).send().await.expect("GET");
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), manifest.as_slice());
    let got = get_bytes(&c, &format!("{b}/v2/bad/target/blobs/{layer_digest}")).await;
    assert_eq!(got.as_ref(), layer.as_slice());
    // The upload that took refused chunks is still usable from offset 0.
    let resp = c.get(&upload).send().await.expect("status");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-0");
    let data = bytes(22, 64);
    let resp = c.put(format!("{upload}?digest={}", sha256(&data))).body(data).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(!w.data_dir.join("../state.redb").exists() && !w.data_dir.join("../etc").exists());
}

fn raw_request(w: &Wharf, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(w.addr).expect("connect");
    stream.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}
