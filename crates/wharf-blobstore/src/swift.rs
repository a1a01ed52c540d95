//! The OpenStack Swift driver: blobs in a container every manager shares.
//!
//! Layout under the configured prefix:
//! - `segments/<id>/<start, 20 digits>-<random>`: one immutable segment per append of upload
//!   `id` (an append longer than the segment size becomes several), each recorded in the
//!   [`UploadLedger`] once written, so an upload continues through any manager and nothing
//!   half-written is part of it;
//! - `blobs/<algorithm>/<first two hex digits>/<hex>`: a committed blob, a static large object
//!   (SLO) whose manifest lists its upload's segments where they are, so that committing moves
//!   no byte, whatever the size; `segments/<id>/committed` then marks those segments as a blob's
//!   (the sweep of uploads without a session leaves them alone, deleting the blob removes them).
//!   An empty blob is a plain object; an upload of more segments than a manifest may list is
//!   streamed into parts `<blob name>.parts/<n>` under a manifest of its own.
//!
//! Authentication is TempAuth (v1) or Keystone v3
//! with a password; the token is fetched again when Swift answers 401. Requests without a
//! streamed body are retried with exponential backoff for the configured time; what still fails
//! is [`BlobError::Unavailable`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use tokio::sync::RwLock;
use wharf_api::Digest;
use wharf_api::range::ByteRange;

use crate::ledger::{Segment, UploadLedger, segments_len};
use crate::{BlobError, BlobStore, ByteStream, Observer};

/// How a Swift client gets a token and its storage URL.
#[derive(Clone)]
pub enum SwiftAuth {
    /// TempAuth and other v1 auth: `GET url` with `X-Auth-User` and `X-Auth-Key`.
    V1 { url: String, user: String, key: String },
    /// Keystone v3 with a password, scoped to a project; the storage URL is the catalog's
    /// public `object-store` endpoint (in `region`, when given).
    V3 {
        url: String,
        user: String,
        user_domain: String,
        password: String,
        project: String,
        project_domain: String,
        region: Option<String>,
    },
}

/// Where and how to reach the container. Secrets stay out of `Debug`.
#[derive(Clone)]
pub struct SwiftConfig {
    pub auth: SwiftAuth,
    pub container: String,
    /// Name prefix under which Wharf keeps its objects (empty: the container's root).
    pub prefix: String,
    /// Failing requests are retried with exponential backoff for at most this long.
    pub retry_for: Duration,
    /// One request's timeout (a streamed segment's included).
    pub request_timeout: Duration,
    /// Largest object written; longer appends and blobs are split (Swift's limit is 5 GiB).
    pub segment_size: u64,
}

impl std::fmt::Debug for SwiftConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, url) = match &self.auth {
            SwiftAuth::V1 { url, .. } => ("v1", url),
            SwiftAuth::V3 { url, .. } => ("v3", url),
        };
        f.debug_struct("SwiftConfig")
            .field("auth", &kind)
            .field("auth_url", url)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Most segments one SLO manifest lists (Swift's default `max_manifest_segments`).
const MAX_MANIFEST_SEGMENTS: usize = 1000;
/// The marker of an upload whose segments became a blob.
const COMMITTED: &str = "committed";

/// A storage URL and the token that opens it.
#[derive(Clone)]
struct Session {
    storage_url: String,
    token: String,
}

/// Blobs in a Swift container; uploads recorded in `ledger`.
pub struct SwiftBlobStore {
    inner: Arc<Inner>,
}

/// The client itself, shared with the streams it returns.
struct Inner {
    config: SwiftConfig,
    http: reqwest::Client,
    session: RwLock<Option<Session>>,
    ledger: Arc<dyn UploadLedger>,
}

impl std::fmt::Debug for SwiftBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwiftBlobStore({:?})", self.inner.config)
    }
}

fn unavailable(what: &str, why: impl std::fmt::Display) -> BlobError {
    BlobError::Unavailable(format!("object storage: {what}: {why}"))
}

/// What one request is: a method, an object name (or none: the container), a query, headers,
/// and a body that can be sent again on a retry.
struct Call<'a> {
    method: Method,
    object: Option<&'a str>,
    query: &'a str,
    headers: Vec<(&'static str, String)>,
    body: Option<Bytes>,
}

impl<'a> Call<'a> {
    fn new(method: Method, object: Option<&'a str>) -> Call<'a> {
        Call { method, object, query: "", headers: Vec::new(), body: None }
    }
}

/// Percent-encodes an object name for a URL path (slashes kept).
fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl SwiftBlobStore {
    /// A store over the container `config` names. Makes no request (see
    /// [`SwiftBlobStore::check`]).
    pub fn new(config: SwiftConfig, ledger: Arc<dyn UploadLedger>) -> Result<SwiftBlobStore, BlobError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| unavailable("making the HTTP client", e))?;
        Ok(SwiftBlobStore { inner: Arc::new(Inner { config, http, session: RwLock::new(None), ledger }) })
    }

    /// Authenticates and creates the container if it is missing, so that wrong credentials or
    /// an unreachable Swift are reported at start.
    pub async fn check(&self) -> Result<(), BlobError> {
        self.inner.check().await
    }
}

impl Inner {
    async fn check(&self) -> Result<(), BlobError> {
        let response = self.call(Call::new(Method::PUT, None)).await?;
        if !response.status().is_success() {
            return Err(unavailable("creating the container", response.status()));
        }
        Ok(())
    }

    fn name(&self, rest: &str) -> String {
        let prefix = self.config.prefix.trim_matches('/');
        if prefix.is_empty() { rest.to_owned() } else { format!("{prefix}/{rest}") }
    }

    fn blob_name(&self, digest: &Digest) -> String {
        let hex = digest.hex();
        self.name(&format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2.min(hex.len())]))
    }

    fn url(&self, session: &Session, object: Option<&str>, query: &str) -> String {
        let mut url = format!("{}/{}", session.storage_url.trim_end_matches('/'), encode_name(&self.config.container));
        if let Some(object) = object {
            url.push('/');
            url.push_str(&encode_name(object));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The current session, authenticating if there is none (or if `stale` is the one held).
    async fn session(&self, stale: Option<&str>) -> Result<Session, BlobError> {
        if let Some(session) = self.session.read().await.as_ref()
            && Some(session.token.as_str()) != stale
        {
            return Ok(session.clone());
        }
        let mut held = self.session.write().await;
        if let Some(session) = held.as_ref()
            && Some(session.token.as_str()) != stale
        {
            return Ok(session.clone());
        }
        let session = self.authenticate().await?;
        *held = Some(session.clone());
        Ok(session)
    }

    async fn authenticate(&self) -> Result<Session, BlobError> {
        let timeout = self.config.request_timeout;
        match &self.config.auth {
            SwiftAuth::V1 { url, user, key } => {
                let response = self
                    .http
                    .get(url)
                    .header("X-Auth-User", user)
                    .header("X-Auth-Key", key)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| unavailable("authenticating", e))?;
                if !response.status().is_success() {
                    return Err(unavailable(
                        "authenticating",
                        format!("the auth service answered {}", response.status()),
                    ));
                }
                let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                match (header("x-storage-url"), header("x-auth-token")) {
                    (Some(storage_url), Some(token)) => Ok(Session { storage_url, token }),
                    _ => Err(unavailable("authenticating", "no X-Storage-Url or X-Auth-Token in the answer")),
                }
            }
            SwiftAuth::V3 { url, user, user_domain, password, project, project_domain, region } => {
                let body = serde_json::json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": user, "domain": {"name": user_domain}, "password": password}}},
                    "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}});
                let response = self
                    .http
                    .post(format!("{}/auth/tokens", url.trim_end_matches('/')))
                    .json(&body)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| unavailable("authenticating", e))?;
                if !response.status().is_success() {
                    return Err(unavailable("authenticating", format!("Keystone answered {}", response.status())));
                }
                let token = response.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let token = token.ok_or_else(|| unavailable("authenticating", "no X-Subject-Token in the answer"))?;
                let answer: serde_json::Value =
                    response.json().await.map_err(|e| unavailable("reading Keystone's answer", e))?;
                let storage_url = object_store_endpoint(&answer, region.as_deref())
                    .ok_or_else(|| unavailable("authenticating", "the catalog has no public object-store endpoint"))?;
                Ok(Session { storage_url, token })
            }
        }
    }

    /// Sends `call`, authenticating first and again after a 401, retrying connection errors,
    /// timeouts, 5xx and 429 with exponential backoff for the configured time.
    async fn call(&self, call: Call<'_>) -> Result<reqwest::Response, BlobError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut stale: Option<String> = None;
        loop {
            let session = match self.session(stale.as_deref()).await {
                Ok(session) => session,
                Err(e) if started.elapsed() + backoff < self.config.retry_for => {
                    tracing::debug!(error = %e, "swift authentication failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut request = self
                .http
                .request(call.method.clone(), self.url(&session, call.object, call.query))
                .header("X-Auth-Token", &session.token)
                .timeout(self.config.request_timeout);
            for (name, value) in &call.headers {
                request = request.header(*name, value);
            }
            if let Some(body) = &call.body {
                request = request.header("Content-Length", body.len()).body(body.clone());
            } else if call.method == Method::PUT {
                request = request.header("Content-Length", "0");
            }
            let why = match request.send().await {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && stale.is_none() => {
                    stale = Some(session.token);
                    continue;
                }
                Ok(response)
                    if response.status().is_server_error() || response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("Swift answered {}", response.status())
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    return Err(unavailable("a request", "Swift refused the credentials (401)"));
                }
                Ok(response) => return Ok(response),
                Err(e) => e.to_string(),
            };
            if started.elapsed() + backoff >= self.config.retry_for {
                return Err(unavailable("a request", why));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Streams `data` into object `name` with one PUT (chunked), calling `observe` on each chunk
    /// and stopping after `limit` bytes; returns how many it wrote, whether the body ended, and
    /// the body's error. Not retried: the body cannot be sent twice.
    async fn put_streamed(
        &self,
        name: &str,
        data: &mut ByteStream,
        carry: &mut Option<Bytes>,
        limit: u64,
        observe: &mut Observer,
    ) -> Result<(u64, bool, Option<std::io::Error>), BlobError> {
        let session = self.session(None).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
        let request = self
            .http
            .put(self.url(&session, Some(name), ""))
            .header("X-Auth-Token", &session.token)
            .timeout(self.config.request_timeout)
            .body(body)
            .send();
        let feed = async {
            let mut written = 0u64;
            let mut ended = false;
            let mut body_error = None;
            while written < limit {
                let chunk = match carry.take() {
                    Some(chunk) => chunk,
                    None => match data.next().await {
                        Some(Ok(chunk)) => chunk,
                        Some(Err(e)) => {
                            body_error = Some(e);
                            break;
                        }
                        None => {
                            ended = true;
                            break;
                        }
                    },
                };
                let room = usize::try_from(limit - written).unwrap_or(usize::MAX);
                let chunk = if chunk.len() > room {
                    *carry = Some(chunk.slice(room..));
                    chunk.slice(..room)
                } else {
                    chunk
                };
                observe(&chunk);
                written += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            drop(tx);
            (written, ended, body_error)
        };
        let (sent, (written, ended, body_error)) = tokio::join!(request, feed);
        let response = sent.map_err(|e| unavailable("writing a segment", e))?;
        if !response.status().is_success() {
            return Err(unavailable("writing a segment", format!("Swift answered {}", response.status())));
        }
        Ok((written, ended, body_error))
    }

    /// The names of the objects whose names start with `prefix` (all pages).
    async fn list(&self, prefix: &str, delimiter: bool) -> Result<Vec<serde_json::Value>, BlobError> {
        let mut entries = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = format!("format=json&limit=10000&prefix={}", encode_name(prefix));
            if delimiter {
                query.push_str("&delimiter=/");
            }
            if !marker.is_empty() {
                query.push_str(&format!("&marker={}", encode_name(&marker)));
            }
            let mut call = Call::new(Method::GET, None);
            call.query = &query;
            let response = self.call(call).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(unavailable("listing", "the container does not exist"));
            }
            if !response.status().is_success() {
                return Err(unavailable("listing", response.status()));
            }
            let page: Vec<serde_json::Value> = response.json().await.map_err(|e| unavailable("listing", e))?;
            let Some(last) = page.last() else { break };
            marker = last["name"].as_str().or_else(|| last["subdir"].as_str()).unwrap_or_default().to_owned();
            let done = page.len() < 10_000;
            entries.extend(page);
            if done || marker.is_empty() {
                break;
            }
        }
        Ok(entries)
    }

    async fn delete_object(&self, name: &str, query: &str) -> Result<(), BlobError> {
        let mut call = Call::new(Method::DELETE, Some(name));
        call.query = query;
        let response = self.call(call).await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(unavailable("deleting", response.status()))
        }
    }

    async fn head(&self, name: &str) -> Result<Option<reqwest::header::HeaderMap>, BlobError> {
        let response = self.call(Call::new(Method::HEAD, Some(name))).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(response.headers().clone())),
            s => Err(unavailable("reading an object's size", s)),
        }
    }

    /// Streams object `name` (whole, or from `range`).
    async fn get_object(&self, name: &str, range: Option<ByteRange>) -> Result<Option<ByteStream>, BlobError> {
        let mut call = Call::new(Method::GET, Some(name));
        if let Some(r) = range {
            call.headers.push(("Range", format!("bytes={}-{}", r.offset, r.offset + r.len - 1)));
        }
        let response = self.call(call).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(response.bytes_stream().map_err(std::io::Error::other).boxed())),
            s => Err(unavailable("reading an object", s)),
        }
    }

    fn read_segments(self: &Arc<Inner>, segments: Vec<Segment>) -> ByteStream {
        let me = Arc::clone(self);
        futures::stream::iter(segments)
            .then(move |segment| {
                let me = Arc::clone(&me);
                async move {
                    match me.get_object(&segment.key, None).await {
                        Ok(Some(stream)) => Ok(stream),
                        Ok(None) => Err(std::io::Error::other(format!("segment {} is missing", segment.key))),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    }
                }
            })
            .try_flatten()
            .boxed()
    }

    async fn remove_upload_objects(&self, id: &str) -> Result<(), BlobError> {
        for entry in self.list(&self.name(&format!("segments/{id}/")), false).await? {
            if let Some(name) = entry["name"].as_str() {
                self.delete_object(name, "").await?;
            }
        }
        Ok(())
    }

    /// Makes blob `target` a static large object over `segments` where they are, after marking
    /// upload `id`'s segments as a blob's.
    async fn link_segments(&self, id: &str, segments: &[Segment], target: &str) -> Result<(), BlobError> {
        self.put_small(&self.name(&format!("segments/{id}/{COMMITTED}")), "", Bytes::new()).await?;
        let manifest: Vec<serde_json::Value> = segments
            .iter()
            .map(|s| serde_json::json!({"path": format!("/{}/{}", self.config.container, s.key), "size_bytes": s.len}))
            .collect();
        let body = serde_json::to_vec(&manifest).map_err(|e| unavailable("an SLO manifest", e))?;
        self.put_small(target, "multipart-manifest=put", Bytes::from(body)).await
    }

    /// Writes a small object whose body can be sent again.
    async fn put_small(&self, name: &str, query: &str, body: Bytes) -> Result<(), BlobError> {
        let mut call = Call::new(Method::PUT, Some(name));
        call.query = query;
        call.body = Some(body);
        let response = self.call(call).await?;
        if response.status().is_success() { Ok(()) } else { Err(unavailable("writing an object", response.status())) }
    }

    /// Streams the upload's segments into blob `target`: one object, or parts of at most the
    /// segment size under `<target>.parts/` tied together by an SLO manifest.
    async fn concatenate(self: &Arc<Inner>, segments: Vec<Segment>, size: u64, target: &str) -> Result<(), BlobError> {
        let mut bytes: ByteStream = Box::pin(self.read_segments(segments));
        let mut carry = None;
        let mut ignore: Observer = Box::new(|_| {});
        if size <= self.config.segment_size {
            self.put_streamed(target, &mut bytes, &mut carry, u64::MAX, &mut ignore).await?;
            return Ok(());
        }
        let mut manifest = Vec::new();
        let mut n = 0u32;
        loop {
            let part = format!("{target}.parts/{n:08}");
            let (len, ended, error) =
                self.put_streamed(&part, &mut bytes, &mut carry, self.config.segment_size, &mut ignore).await?;
            if let Some(e) = error {
                return Err(unavailable("reading the segments", e));
            }
            if len > 0 {
                manifest
                    .push(serde_json::json!({"path": format!("/{}/{part}", self.config.container), "size_bytes": len}));
            }
            n += 1;
            if ended || (carry.is_none() && len < self.config.segment_size) {
                break;
            }
        }
        let body = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| unavailable("an SLO manifest", e))?);
        self.put_small(target, "multipart-manifest=put", body).await
    }
}

/// The public object-store endpoint of a Keystone v3 token answer (in `region`, if given).
fn object_store_endpoint(answer: &serde_json::Value, region: Option<&str>) -> Option<String> {
    let catalog = answer["token"]["catalog"].as_array()?;
    let service = catalog.iter().find(|s| s["type"] == "object-store")?;
    let endpoints = service["endpoints"].as_array()?;
    endpoints
        .iter()
        .filter(|e| e["interface"] == "public")
        .find(|e| region.is_none_or(|r| e["region"] == r || e["region_id"] == r))
        .and_then(|e| e["url"].as_str())
        .map(str::to_owned)
}

/// A stream over a tokio channel's receiver.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[async_trait::async_trait]
impl BlobStore for SwiftBlobStore {
    fn shared(&self) -> bool {
        true
    }

    async fn create_upload(&self, id: &str) -> Result<(), BlobError> {
        self.inner.ledger.open(id).await
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        Ok(segments_len(&self.inner.ledger.segments(id).await?))
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        mut data: ByteStream,
        mut observe: Observer,
    ) -> Result<u64, BlobError> {
        let actual = self.upload_size(id).await?;
        if actual != offset {
            return Err(BlobError::OffsetMismatch { id: id.to_owned(), actual, requested: offset });
        }
        let mut at = offset;
        let mut carry = None;
        loop {
            let name = self.inner.name(&format!("segments/{id}/{at:020}-{}", uuid::Uuid::new_v4().simple()));
            let (len, ended, body_error) = self
                .inner
                .put_streamed(&name, &mut data, &mut carry, self.inner.config.segment_size, &mut observe)
                .await?;
            if len > 0 {
                let segment = Segment { start: at, len, key: name.clone() };
                if let Err(e) = self.inner.ledger.add_segment(id, segment).await {
                    let _ = self.inner.delete_object(&name, "").await;
                    return Err(e);
                }
                at += len;
            } else {
                let _ = self.inner.delete_object(&name, "").await;
            }
            if let Some(e) = body_error {
                return Err(BlobError::Body(e));
            }
            if ended || len == 0 {
                return Ok(at);
            }
        }
    }

    async fn read_upload(&self, id: &str) -> Result<ByteStream, BlobError> {
        Ok(self.inner.read_segments(self.inner.ledger.segments(id).await?))
    }

    async fn commit(&self, id: &str, digest: &Digest) -> Result<u64, BlobError> {
        let segments = self.inner.ledger.segments(id).await?;
        let size = segments_len(&segments);
        let target = self.inner.blob_name(digest);
        let linked = if self.inner.head(&target).await?.is_some() {
            false
        } else if segments.is_empty() {
            self.inner.put_small(&target, "", Bytes::new()).await?;
            false
        } else if segments.len() <= MAX_MANIFEST_SEGMENTS {
            self.inner.link_segments(id, &segments, &target).await?;
            true
        } else {
            self.inner.concatenate(segments, size, &target).await?;
            false
        };
        if !linked && let Err(e) = self.inner.remove_upload_objects(id).await {
            tracing::warn!(error = %e, "the segments of a committed upload stay until the next sweep");
        }
        self.inner.ledger.close(id).await?;
        Ok(size)
    }

    async fn abort(&self, id: &str) -> Result<(), BlobError> {
        self.inner.remove_upload_objects(id).await?;
        self.inner.ledger.close(id).await
    }

    async fn list_uploads(&self) -> Result<Vec<String>, BlobError> {
        let prefix = self.inner.name("segments/");
        let entries = self.inner.list(&prefix, true).await?;
        let mut uploads = Vec::new();
        for id in entries.iter().filter_map(|e| e["subdir"].as_str()).filter_map(|s| s.strip_prefix(&prefix)) {
            let id = id.trim_end_matches('/');
            // The segments of a committed blob are no upload's.
            if self.inner.head(&format!("{prefix}{id}/{COMMITTED}")).await?.is_none() {
                uploads.push(id.to_owned());
            }
        }
        Ok(uploads)
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        let Some(headers) = self.inner.head(&self.inner.blob_name(digest)).await? else { return Ok(None) };
        let size = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        size.map(Some).ok_or_else(|| unavailable("reading a blob's size", "no Content-Length"))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, BlobError> {
        self.inner
            .get_object(&self.inner.blob_name(digest), range)
            .await?
            .ok_or_else(|| BlobError::NotFound(digest.clone()))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let name = self.inner.blob_name(digest);
        let Some(headers) = self.inner.head(&name).await? else { return Ok(false) };
        let large = headers.get("x-static-large-object").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        if !large {
            self.inner.delete_object(&name, "").await?;
            return Ok(true);
        }
        // The uploads whose segments the manifest lists lose their marker with the segments.
        let mut call = Call::new(Method::GET, Some(&name));
        call.query = "multipart-manifest=get";
        let response = self.inner.call(call).await?;
        if !response.status().is_success() {
            return Err(unavailable("reading an SLO manifest", response.status()));
        }
        let manifest: Vec<serde_json::Value> =
            response.json().await.map_err(|e| unavailable("reading an SLO manifest", e))?;
        let segments = format!("/{}/{}", self.inner.config.container, self.inner.name("segments/"));
        let mut uploads: Vec<String> = manifest
            .iter()
            .filter_map(|part| {
                part["name"].as_str()?.strip_prefix(&segments)?.split_once('/').map(|(id, _)| id.to_owned())
            })
            .collect();
        uploads.dedup();
        self.inner.delete_object(&name, "multipart-manifest=delete").await?;
        for id in uploads {
            self.inner.delete_object(&self.inner.name(&format!("segments/{id}/{COMMITTED}")), "").await?;
        }
        Ok(true)
    }
}
