//! The OCI distribution-spec conformance areas (pull, push, content discovery, content
//! management) with every optional area on: sha512, subject and referrers, anonymous mount,
//! `?tag=`, upload cancel; plus resumption of an upload across a restart.
//!
//! Every area runs against five targets (the `every_target!` list at the end): one node on its
//! own disk, on S3 (moto) and on Swift, and three managers behind a balancer that sends each
//! request to the next manager in turn, on their own disks and on S3.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Wharf;
use crate::oci::*;

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.expect("error body is JSON");
    v["errors"][0]["code"].as_str().expect("errors[0].code").to_owned()
}

async fn base_endpoint_and_api_version_header(w: &Wharf) {
    let c = w.client();
    let resp = c.get(w.url("/v2/")).send().await.expect("GET /v2/");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-distribution-api-version"), "registry/2.0");
    let ca = c.get(w.url("/ca")).send().await.expect("GET /ca").text().await.expect("pem");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(ca, std::fs::read_to_string(w.ca_path()).expect("ca file"));
}

async fn pull_manifest_and_blobs_by_tag_and_digest(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let (digest, manifest) = push_image(&c, &b, "pull/test", "v1", 1).await;
    for reference in ["v1", digest.as_str()] {
        let resp = c.get(format!("{b}/v2/pull/test/manifests/{reference}")).send().await.expect("GET");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(resp.bytes().await.expect("body").as_ref(), manifest.as_slice(), "exact bytes kept");
        let resp = c.head(format!("{b}/v2/pull/test/manifests/{reference}")).send().await.expect("HEAD");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(header(&resp, "content-length"), manifest.len().to_string());
    }
    let layer = bytes(1, 2048);
    let ld = sha256(&layer);
    let resp = c.head(format!("{b}/v2/pull/test/blobs/{ld}")).send().await.expect("HEAD blob");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "2048");
    assert_eq!(header(&resp, "docker-content-digest"), ld);
    let resp = c.get(format!("{b}/v2/pull/test/blobs/{ld}")).send().await.expect("GET blob");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), layer.as_slice());
    let missing = sha256(b"missing");
    let resp = c.get(format!("{b}/v2/pull/test/blobs/{missing}")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "BLOB_UNKNOWN");
    let resp = c.get(format!("{b}/v2/pull/test/manifests/nope")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
    let resp = c.get(format!("{b}/v2/no/such/repo/manifests/v1")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");
}

async fn blob_ranges(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let data = bytes(7, 1000);
    let d = push_blob(&c, &b, "ranges", &data).await;
    let url = format!("{b}/v2/ranges/blobs/{d}");
    let resp = c.get(&url).header("range", "bytes=10-19").send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 10-19/1000");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &data[10..20]);
    let resp = c.get(&url).header("range", "bytes=-5").send().await.expect("GET");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &data[995..]);
    let resp = c.get(&url).header("range", "bytes=990-").send().await.expect("GET");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &data[990..]);
    let resp = c.get(&url).header("range", "bytes=1000-").send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "content-range"), "bytes */1000");
    // A last position before the first is an invalid range: 416, not the whole blob.
    let resp = c.get(&url).header("range", "bytes=500-0").send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "content-range"), "bytes */1000");
    assert!(resp.bytes().await.expect("body").len() < 1000, "no blob bytes with a 416");
}

async fn push_monolithic_single_post_and_post_put(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let data = bytes(2, 5000);
    let d = sha256(&data);
    let resp = c
        .post(format!("{b}/v2/push/mono/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "location"), format!("/v2/push/mono/blobs/{d}"));
    assert_eq!(header(&resp, "docker-content-digest"), d);
    let resp = c.get(absolute(&b, &format!("/v2/push/mono/blobs/{d}"))).send().await.expect("GET");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), data.as_slice());
    // POST then PUT with the whole body, and a wrong digest, which must not create a blob.
    let location = start_upload(&c, &b, "push/mono").await;
    let wrong = sha256(b"other bytes");
    let resp =
        c.put(format!("{location}{}digest={wrong}", join(&location))).body(data.clone()).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    let resp = c.head(format!("{b}/v2/push/mono/blobs/{wrong}")).send().await.expect("HEAD");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c
        .post(format!("{b}/v2/push/mono/blobs/uploads/?digest={wrong}"))
        .body(data.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
}

async fn push_chunked_in_order_out_of_order_and_streamed(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let data = bytes(3, 10_000);
    let d = sha256(&data);
    let location = start_upload(&c, &b, "push/chunked").await;
    let resp = c
        .patch(&location)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-3999")
        .header("content-length", "4000")
        .body(data[..4000].to_vec())
        .send()
        .await
        .expect("PATCH 1");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-3999");
    let location = absolute(&b, &header(&resp, "location"));
    // A chunk that does not start where the upload ends is refused with 416 and changes nothing.
    let resp = c
        .patch(&location)
        .header("content-range", "5000-5999")
        .body(data[5000..6000].to_vec())
        .send()
        .await
        .expect("PATCH out of order");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let resp = c.get(&location).send().await.expect("status");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-3999");
    // A streamed chunk, without Content-Range, as docker and containerd send.
    let resp = c.patch(&location).body(data[4000..9000].to_vec()).send().await.expect("PATCH streamed");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-8999");
    // The closing PUT may carry the last chunk with its Content-Range.
    let put = format!("{location}{}digest={d}", join(&location));
    let resp = c.put(&put).header("content-range", "8000-8999").body(data[9000..].to_vec()).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "a last chunk at the wrong offset");
    let resp = c.put(&put).header("content-range", "9000-9999").body(data[9000..].to_vec()).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = get_bytes(&c, &format!("{b}/v2/push/chunked/blobs/{d}")).await;
    assert_eq!(got.as_ref(), data.as_slice());
    // The finished session is gone.
    let resp = c.get(&location).send().await.expect("status");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_UNKNOWN");
}

async fn upload_cancel(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let location = start_upload(&c, &b, "push/cancel").await;
    c.patch(&location).body(vec![1u8; 100]).send().await.expect("PATCH");
    let resp = c.delete(&location).send().await.expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c.get(&location).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_UNKNOWN");
    let resp = c.delete(&location).send().await.expect("DELETE again");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

async fn cross_repository_mount_with_and_without_from(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let data = bytes(4, 3000);
    let d = push_blob(&c, &b, "mount/source", &data).await;
    let resp =
        c.post(format!("{b}/v2/mount/target/blobs/uploads/?mount={d}&from=mount/source")).send().await.expect("mount");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "location"), format!("/v2/mount/target/blobs/{d}"));
    assert_eq!(header(&resp, "docker-content-digest"), d);
    let resp = c.post(format!("{b}/v2/mount/anon/blobs/uploads/?mount={d}")).send().await.expect("anonymous mount");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = get_bytes(&c, &format!("{b}/v2/mount/anon/blobs/{d}")).await;
    assert_eq!(got.as_ref(), data.as_slice());
    // Mounting from a repository that lacks the blob opens an upload session instead.
    let missing = sha256(b"not there");
    let resp = c
        .post(format!("{b}/v2/mount/target/blobs/uploads/?mount={missing}&from=mount/source"))
        .send()
        .await
        .expect("mount");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(header(&resp, "location").starts_with("/v2/mount/target/blobs/uploads/"));
}

async fn sha512_blobs_and_manifests(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let data = bytes(5, 4096);
    let d = sha512(&data);
    let resp =
        c.post(format!("{b}/v2/sha512/blobs/uploads/?digest={d}")).body(data.clone()).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = c.post(format!("{b}/v2/sha512/blobs/uploads/?digest-algorithm=sha512")).send().await.expect("POST");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = absolute(&b, &header(&resp, "location"));
    let other = bytes(6, 100);
    let d2 = sha512(&other);
    let resp =
        c.put(format!("{location}{}digest={d2}", join(&location))).body(other.clone()).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = push_blob(&c, &b, "sha512", config).await;
    let manifest = image_manifest((&cd, config.len()), &[(&d, data.len()), (&d2, other.len())], json!({}));
    let md = sha512(&manifest);
    let resp = put_manifest(&c, &b, "sha512", &md, OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), md);
    let resp = c.get(format!("{b}/v2/sha512/manifests/{md}")).send().await.expect("GET");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), manifest.as_slice());
    let got = get_bytes(&c, &format!("{b}/v2/sha512/blobs/{d}")).await;
    assert_eq!(got.as_ref(), data.as_slice());
}

async fn manifest_references_must_exist(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let config = b"{}";
    let cd = push_blob(&c, &b, "refs", config).await;
    let absent = sha256(b"absent layer");
    let manifest = image_manifest((&cd, 2), &[(&absent, 12)], json!({}));
    let resp = put_manifest(&c, &b, "refs", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");
    // A blob of another repository does not count.
    let other = push_blob(&c, &b, "refs-other", b"layer in another repo").await;
    let manifest = image_manifest((&cd, 2), &[(&other, 21)], json!({}));
    let resp = put_manifest(&c, &b, "refs", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");
    // An index whose child manifest is missing is refused too.
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"no manifest"), "size": 11}]});
    let resp = put_manifest(&c, &b, "refs", "idx", OCI_INDEX, index.to_string().as_bytes()).await;
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");
    let resp = c.get(format!("{b}/v2/refs/manifests/v1")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nothing was stored");
}

async fn docker_schema2_and_manifest_list(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let cd = push_blob(&c, &b, "docker/list", config).await;
    let layer = bytes(8, 500);
    let ld = push_blob(&c, &b, "docker/list", &layer).await;
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": 500}]});
    let mb = serde_json::to_vec(&m).expect("json");
    let md = sha256(&mb);
    let resp =
        put_manifest(&c, &b, "docker/list", &md, "application/vnd.docker.distribution.manifest.v2+json", &mb).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let list = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": md, "size": mb.len(),
                       "platform": {"architecture": "arm64", "os": "linux"}}]});
    let lb = serde_json::to_vec(&list).expect("json");
    let resp =
        put_manifest(&c, &b, "docker/list", "multi", "application/vnd.docker.distribution.manifest.list.v2+json", &lb)
            .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = c.get(format!("{b}/v2/docker/list/manifests/multi")).send().await.expect("GET");
    assert_eq!(header(&resp, "content-type"), "application/vnd.docker.distribution.manifest.list.v2+json");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), lb.as_slice());
}

async fn tag_parameter_on_manifest_put(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let (_, manifest) = push_image(&c, &b, "tagparam", "base", 9).await;
    let d = sha256(&manifest);
    let resp = c
        .put(format!("{b}/v2/tagparam/manifests/{d}?tag=one&tag=two"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tags: Vec<&str> = resp.headers().get_all("oci-tag").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(tags, vec!["one", "two"]);
    for tag in ["one", "two"] {
        let resp = c.head(format!("{b}/v2/tagparam/manifests/{tag}")).send().await.expect("HEAD");
        assert_eq!(header(&resp, "docker-content-digest"), d);
    }
}

async fn tags_list_and_catalog_pagination(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let (d, manifest) = push_image(&c, &b, "pages/a", "t0", 10).await;
    for t in ["t3", "t1", "t2", "t4"] {
        let resp = put_manifest(&c, &b, "pages/a", t, OCI_MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let _ = d;
    let resp = c.get(format!("{b}/v2/pages/a/tags/list")).send().await.expect("GET");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, json!({"name": "pages/a", "tags": ["t0", "t1", "t2", "t3", "t4"]}));
    let resp = c.get(format!("{b}/v2/pages/a/tags/list?n=2")).send().await.expect("GET");
    assert_eq!(header(&resp, "link"), "</v2/pages/a/tags/list?n=2&last=t1>; rel=\"next\"");
    assert_eq!(resp.json::<Value>().await.expect("json")["tags"], json!(["t0", "t1"]));
    let resp = c.get(format!("{b}/v2/pages/a/tags/list?n=2&last=t3")).send().await.expect("GET");
    assert_eq!(header(&resp, "link"), "");
    assert_eq!(resp.json::<Value>().await.expect("json")["tags"], json!(["t4"]));
    let resp = c.get(format!("{b}/v2/pages/a/tags/list?n=0")).send().await.expect("GET");
    assert_eq!(header(&resp, "link"), "");
    assert_eq!(resp.json::<Value>().await.expect("json")["tags"], json!([]));
    let resp = c.get(format!("{b}/v2/pages/unknown/tags/list")).send().await.expect("GET");
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");
    push_blob(&c, &b, "pages/b", b"x").await;
    push_blob(&c, &b, "pages/c", b"x").await;
    let resp = c.get(format!("{b}/v2/_catalog?n=2")).send().await.expect("GET");
    assert_eq!(header(&resp, "link"), "</v2/_catalog?n=2&last=pages%2Fb>; rel=\"next\"");
    assert_eq!(resp.json::<Value>().await.expect("json")["repositories"], json!(["pages/a", "pages/b"]));
    let resp = c.get(format!("{b}/v2/_catalog?n=2&last=pages/b")).send().await.expect("GET");
    assert_eq!(resp.json::<Value>().await.expect("json")["repositories"], json!(["pages/c"]));
}

async fn referrers_with_subject_and_artifact_type_filter(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let (subject, subject_bytes) = push_image(&c, &b, "refer", "v1", 11).await;
    let empty = push_blob(&c, &b, "refer", b"{}").await;
    let sig = push_blob(&c, &b, "refer", b"signature bytes").await;
    let mut artifact_digests = Vec::new();
    for (i, artifact_type) in ["application/vnd.example.sig", "application/vnd.example.sbom"].iter().enumerate() {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 15}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()},
            "annotations": {"org.example.n": i.to_string()}});
        let mb = serde_json::to_vec(&m).expect("json");
        let md = sha256(&mb);
        let resp = put_manifest(&c, &b, "refer", &md, OCI_MANIFEST, &mb).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), subject);
        artifact_digests.push((md, mb.len()));
    }
    let resp = c.get(format!("{b}/v2/refer/referrers/{subject}")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), OCI_INDEX);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["mediaType"], OCI_INDEX);
    let listed = v["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 2);
    for (d, size) in &artifact_digests {
        let entry = listed.iter().find(|e| e["digest"] == d.as_str()).expect("listed");
        assert_eq!(entry["size"], *size);
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
    }
    let resp = c
        .get(format!("{b}/v2/refer/referrers/{subject}?artifactType=application/vnd.example.sbom"))
        .send()
        .await
        .expect("GET");
    assert_eq!(header(&resp, "oci-filters-applied"), "artifactType");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["manifests"].as_array().expect("manifests").len(), 1);
    assert_eq!(v["manifests"][0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(v["manifests"][0]["annotations"]["org.example.n"], "1");
    // A subject that does not exist yet is accepted, and an unknown subject has an empty index.
    let ghost = sha256(b"ghost subject");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2}, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": ghost, "size": 1}});
    let mb = serde_json::to_vec(&m).expect("json");
    let resp = put_manifest(&c, &b, "refer", &sha256(&mb), OCI_MANIFEST, &mb).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value =
        c.get(format!("{b}/v2/refer/referrers/{ghost}")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(v["manifests"].as_array().expect("manifests").len(), 1);
    let nobody = sha256(b"nobody refers to me");
    let resp = c.get(format!("{b}/v2/refer/referrers/{nobody}")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.expect("json")["manifests"], json!([]));
    let resp = c.get(format!("{b}/v2/refer/referrers/sha256:bad")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

async fn content_management_deletes(w: &Wharf) {
    let (c, b) = (w.client(), w.base());
    let (d, manifest) = push_image(&c, &b, "manage", "v1", 12).await;
    put_manifest(&c, &b, "manage", "v2", OCI_MANIFEST, &manifest).await;
    // Deleting a tag untags only.
    let resp = c.delete(format!("{b}/v2/manage/manifests/v2")).send().await.expect("DELETE tag");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(c.get(format!("{b}/v2/manage/manifests/v2")).send().await.expect("GET").status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get(format!("{b}/v2/manage/manifests/{d}")).send().await.expect("GET").status(), StatusCode::OK);
    // Deleting by digest removes the manifest and its remaining tags.
    let resp = c.delete(format!("{b}/v2/manage/manifests/{d}")).send().await.expect("DELETE manifest");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.get(format!("{b}/v2/manage/manifests/{d}")).send().await.expect("GET").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.get(format!("{b}/v2/manage/manifests/v1")).send().await.expect("GET").status(), StatusCode::NOT_FOUND);
    let v: Value = c.get(format!("{b}/v2/manage/tags/list")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(v["tags"], json!([]));
    let resp = c.delete(format!("{b}/v2/manage/manifests/{d}")).send().await.expect("DELETE again");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
    // Blob delete.
    let layer = sha256(&bytes(12, 2048));
    let resp = c.delete(format!("{b}/v2/manage/blobs/{layer}")).send().await.expect("DELETE blob");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = c.get(format!("{b}/v2/manage/blobs/{layer}")).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.delete(format!("{b}/v2/manage/blobs/{layer}")).send().await.expect("DELETE again");
    assert_eq!(error_code(resp).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn upload_resumes_after_restart() {
    let mut w = Wharf::start();
    let (c, b) = (w.client(), w.base());
    let data = bytes(13, 300_000);
    let d = sha256(&data);
    let location = start_upload(&c, &b, "resume").await;
    let resp = c.patch(&location).body(data[..120_000].to_vec()).send().await.expect("PATCH");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    w.restart();
    let c = w.client();
    let resp = c.get(&location).send().await.expect("status after restart");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-119999");
    let resp = c
        .patch(&location)
        .header("content-range", "120000-299999")
        .body(data[120_000..].to_vec())
        .send()
        .await
        .expect("PATCH rest");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = c.put(format!("{location}{}digest={d}", join(&location))).send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = get_bytes(&c, &format!("{b}/v2/resume/blobs/{d}")).await;
    assert!(got.as_ref() == data.as_slice(), "resumed blob is byte-identical");
}

#[tokio::test]
async fn clean_shutdown_on_sigterm_keeps_everything() {
    let mut w = Wharf::start();
    let (c, b) = (w.client(), w.base());
    let (d, manifest) = push_image(&c, &b, "stop", "v1", 14).await;
    let status = w.terminate();
    assert!(status.success(), "wharf exits 0 on SIGTERM, got {status}");
    w.restart();
    let resp = w.client().get(format!("{}/v2/stop/manifests/v1", w.base())).send().await.expect("GET");
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), manifest.as_slice());
}

/// Runs each area against every target, one test per area and target.
macro_rules! every_target {
    ($($area:ident),* $(,)?) => {
        mod one_node {
            use crate::harness::Wharf;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $area() {
                super::$area(&Wharf::start_tls()).await;
            })*
        }
        mod one_node_s3 {
            use crate::harness::{Storage, Wharf};
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $area() {
                super::$area(&Wharf::start_on(Storage::s3())).await;
            })*
        }
        mod one_node_swift {
            use crate::harness::{Storage, Wharf};
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $area() {
                super::$area(&Wharf::start_on(Storage::swift())).await;
            })*
        }
        mod three_managers_round_robin {
            use crate::harness::{Storage, Wharf};
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $area() {
                let w = Wharf::cluster(Storage::Filesystem);
                super::$area(&w).await;
                let served = w.served();
                assert!(served.iter().sum::<usize>() < 3 || served.iter().all(|n| *n > 0), "every manager took requests: {served:?}");
            })*
        }
        mod three_managers_round_robin_s3 {
            use crate::harness::{Storage, Wharf};
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $area() {
                let w = Wharf::cluster(Storage::s3());
                super::$area(&w).await;
                let served = w.served();
                assert!(served.iter().sum::<usize>() < 3 || served.iter().all(|n| *n > 0), "every manager took requests: {served:?}");
            })*
        }
    };
}

every_target!(
    base_endpoint_and_api_version_header,
    pull_manifest_and_blobs_by_tag_and_digest,
    blob_ranges,
    push_monolithic_single_post_and_post_put,
    push_chunked_in_order_out_of_order_and_streamed,
    upload_cancel,
    cross_repository_mount_with_and_without_from,
    sha512_blobs_and_manifests,
    manifest_references_must_exist,
    docker_schema2_and_manifest_list,
    tag_parameter_on_manifest_put,
    tags_list_and_catalog_pagination,
    referrers_with_subject_and_artifact_type_filter,
    content_management_deletes,
);
