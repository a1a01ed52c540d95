//! Wharf's typed HTTPS client: one [`Client::call`] for the control API and the node routes,
//! used by the CLI, the node agent and `wharf join`. Requests and answers are the wire types
//! of `wharf-api`; an error answer is read as its [`ApiMessage`]. A call goes to the manager
//! that answered last, follows a 421 to the leader it names, waits and tries again while the
//! cluster has no leader (503, or a 421 that names none), and moves on to the next known
//! manager when one cannot be reached, all within the client's patience.
//!
//! This crate must never hold server code: it knows URLs, status codes and wire types only.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wharf_api::ApiMessage;

/// How long a call keeps trying, unless the client was given another patience.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);
/// The pause between tries while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The timeout of a streamed request: none to speak of (a followed log lasts for as long as
/// its reader reads).
const STREAM_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);
/// Redirects followed in a row before a call gives up on a manager.
const MAX_HOPS: usize = 5;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error: its status and message.
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    /// No manager could be reached, or none had a leader, within the client's patience.
    #[error("no manager answered: {0}")]
    Unreachable(String),
    /// The answer was not what the call expects.
    #[error("read the answer of {target}: {reason}")]
    Decode { target: String, reason: String },
    #[error("the HTTP client could not be built: {0}")]
    Build(#[from] reqwest::Error),
}

impl ClientError {
    /// The status of a refusal, if the server answered one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What one try of a call came to.
enum Try {
    Answer(reqwest::Response),
    /// 421: ask this manager instead.
    Redirect(String),
    /// No leader is known (503, or a 421 without one): try again after a pause.
    Wait(String),
    /// This manager cannot be reached: try the next.
    Unreachable(String),
    Refused(StatusCode, String),
}

/// A typed client of one cluster (or one node).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http` or `https`.
    scheme: String,
    /// The managers to ask (host:port), the one that answered last first.
    targets: Vec<String>,
    patience: Duration,
    bearer: Option<String>,
}

impl Client {
    /// A client over `http` that asks the managers at `base_urls` (`https://host:port`, or
    /// `http://` for a node served with `--insecure-http`).
    pub fn new(http: reqwest::Client, base_urls: &[String]) -> Client {
        let scheme = base_urls.first().and_then(|u| u.split_once("://")).map_or("https", |(s, _)| s).to_owned();
        let targets = base_urls
            .iter()
            .map(|u| u.split_once("://").map_or(u.as_str(), |(_, rest)| rest).trim_end_matches('/').to_owned())
            .collect();
        Client { http, scheme, targets, patience: DEFAULT_PATIENCE, bearer: None }
    }

    /// A node's client: mutual TLS with `tls` (its certificate, the cluster CA) to the managers
    /// at `addrs` (host:port).
    pub fn for_node(tls: rustls::ClientConfig, addrs: &[String], timeout: Duration) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder().use_preconfigured_tls(tls).timeout(timeout).build()?;
        let urls: Vec<String> = addrs.iter().map(|a| format!("https://{a}")).collect();
        Ok(Client::new(http, &urls))
    }

    /// The same client, trying for at most `patience` per call.
    pub fn with_patience(mut self, patience: Duration) -> Client {
        self.patience = patience;
        self
    }

    /// The same client, sending `Authorization: Bearer <token>` (an API session).
    pub fn with_bearer(mut self, token: &str) -> Client {
        self.bearer = Some(token.to_owned());
        self
    }

    /// The manager that answered last (the leader, after a redirect).
    pub fn target(&self) -> &str {
        self.targets.first().map_or("", String::as_str)
    }

    /// The base URL of [`Client::target`].
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.target())
    }

    /// Sends `body` (if any) to `path` and reads the answer as `R` (`()` for an empty one).
    pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        Ok(self.call_with_headers(method, path, body).await?.0)
    }

    /// Like [`Client::call`], with the answer's headers.
    pub async fn call_with_headers<B: Serialize + ?Sized, R: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(R, reqwest::header::HeaderMap), ClientError> {
        let response = self.send(method, path, body).await?;
        let headers = response.headers().clone();
        let target = self.target().to_owned();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode { target: target.clone(), reason: e.to_string() })?;
        let text: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        let value = serde_json::from_slice(text).map_err(|e| ClientError::Decode { target, reason: e.to_string() })?;
        Ok((value, headers))
    }

    /// `GET path`, the answer's body as bytes (a client bundle's zip).
    pub async fn get_bytes(&mut self, path: &str) -> Result<Vec<u8>, ClientError> {
        let response = self.send(Method::GET, path, None::<&()>).await?;
        let target = self.target().to_owned();
        let bytes = response.bytes().await.map_err(|e| ClientError::Decode { target, reason: e.to_string() })?;
        Ok(bytes.to_vec())
    }

    /// `POST path` with a streamed body (a task's log lines), to the manager that answered
    /// last, once: a stream cannot be sent again. No timeout but the server's: the stream
    /// lasts as long as its reader wants it.
    pub async fn post_stream(&self, path: &str, body: reqwest::Body) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base_url());
        let mut request = self.http.post(&url).timeout(STREAM_TIMEOUT).body(body);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable(format!("{}: {e}", self.target())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message: ApiMessage = response.json().await.unwrap_or_default();
        Err(ClientError::Refused { status, message: message.message })
    }

    /// `GET path` at the manager of this client, its body as it comes (a command's standard
    /// input), for as long as the manager sends it.
    pub async fn get_stream(
        &self,
        path: &str,
    ) -> Result<impl futures::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + use<>, ClientError> {
        let url = format!("{}{path}", self.base_url());
        let mut request = self.http.get(&url).timeout(STREAM_TIMEOUT);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable(format!("{}: {e}", self.target())))?;
        let status = response.status();
        if !status.is_success() {
            let message: ApiMessage = response.json().await.unwrap_or_default();
            return Err(ClientError::Refused { status, message: message.message });
        }
        Ok(response.bytes_stream())
    }

    /// Sends the request until a manager answers it, following the leader; see the module
    /// documentation.
    async fn send<B: Serialize + ?Sized>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let deadline = Instant::now() + self.patience;
        let mut failures: Vec<String> = Vec::new();
        loop {
            for index in 0..self.targets.len().max(1) {
                let Some(first) = self.targets.get(index).cloned() else { break };
                let mut target = first;
                for _ in 0..MAX_HOPS {
                    match self.try_once(&method, &target, path, body).await {
                        Try::Answer(response) => {
                            self.remember(&target);
                            return Ok(response);
                        }
                        Try::Refused(status, message) => {
                            self.remember(&target);
                            return Err(ClientError::Refused { status, message });
                        }
                        Try::Redirect(leader) => target = leader,
                        Try::Wait(why) | Try::Unreachable(why) => {
                            failures.push(why);
                            break;
                        }
                    }
                }
            }
            if Instant::now() + RETRY_PAUSE > deadline {
                failures.dedup();
                let last: Vec<String> = failures.iter().rev().take(3).cloned().collect();
                return Err(ClientError::Unreachable(if last.is_empty() {
                    "none is known".into()
                } else {
                    last.join("; ")
                }));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn try_once<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        target: &str,
        path: &str,
        body: Option<&B>,
    ) -> Try {
        let url = format!("{}://{target}{path}", self.scheme);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Try::Unreachable(format!("{target}: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            return Try::Answer(response);
        }
        let message: ApiMessage = response.json().await.unwrap_or_default();
        match status {
            StatusCode::MISDIRECTED_REQUEST => match message.leader {
                Some(leader) if leader != target => Try::Redirect(leader),
                _ => Try::Wait(format!("{target} knows no leader")),
            },
            StatusCode::SERVICE_UNAVAILABLE => Try::Wait(format!("{target}: {}", message.message)),
            _ => Try::Refused(status, message.message),
        }
    }

    /// Puts `target` first: the next call starts there.
    fn remember(&mut self, target: &str) {
        self.targets.retain(|t| t != target);
        self.targets.insert(0, target.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode as Status;
    use axum::response::IntoResponse;
    use axum::routing::get;

    use super::*;

    /// Serves `router` on a free loopback port; returns `http://addr`.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    fn json(status: Status, body: serde_json::Value) -> axum::response::Response {
        (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }

    #[tokio::test]
    async fn a_call_follows_the_leader_waits_out_an_election_and_reads_refusals() {
        let leader =
            serve(Router::new().route("/x", get(|| async { json(Status::OK, serde_json::json!({"n": 7})) }))).await;
        let leader_addr = leader.trim_start_matches("http://").to_owned();
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&tries);
        let follower = serve(Router::new().route(
            "/x",
            get(move || {
                let (n, leader) = (counted.fetch_add(1, Ordering::SeqCst), leader_addr.clone());
                async move {
                    match n {
                        0 => json(Status::SERVICE_UNAVAILABLE, serde_json::json!({"message": "electing"})),
                        1 => json(Status::MISDIRECTED_REQUEST, serde_json::json!({"message": "ask the leader"})),
                        _ => json(Status::MISDIRECTED_REQUEST, serde_json::json!({"leader": leader})),
                    }
                }
            }),
        ))
        .await;
        let down = "http://127.0.0.1:9".to_owned();
        let mut client = Client::new(reqwest::Client::new(), &[down, follower]);
        let answer: serde_json::Value = client.call(Method::GET, "/x", None::<&()>).await.expect("answer");
        assert_eq!(answer["n"], 7);
        assert_eq!(tries.load(Ordering::SeqCst), 3, "two waits, then a redirect");
        assert_eq!(client.base_url(), leader, "the next call starts at the leader");

        let refusing = serve(
            Router::new().route("/x", get(|| async { json(Status::FORBIDDEN, serde_json::json!({"message": "no"})) })),
        )
        .await;
        let mut client = Client::new(reqwest::Client::new(), &[refusing]);
        let refused = client.call::<(), serde_json::Value>(Method::GET, "/x", None).await.expect_err("refused");
        assert_eq!(refused.status(), Some(reqwest::StatusCode::FORBIDDEN));
        assert_eq!(refused.to_string(), "403 Forbidden: no");

        let mut client = Client::new(reqwest::Client::new(), &["http://127.0.0.1:9".into()])
            .with_patience(Duration::from_millis(300));
        let started = Instant::now();
        let unreachable = client.call::<(), ()>(Method::GET, "/x", None).await.expect_err("nobody");
        assert!(matches!(unreachable, ClientError::Unreachable(_)), "{unreachable}");
        assert!(started.elapsed() < Duration::from_secs(5), "the patience bounds the call");
    }
}
