//! The node-to-node routes of the control plane, over `wharf_manager::Manager`: `POST
//! /cluster/join` (a join token and a CSR; no client certificate yet, since the joiner has
//! none), and with a node's verified certificate `POST /cluster/members` (a new manager asks
//! to be added to Raft), `GET /cluster/nodes` (the node list), `POST /cluster/heartbeat`,
//! `POST /cluster/renew`, the agent's `POST /cluster/assignments` (long poll) and `POST
//! /cluster/tasks`, and its `POST /cluster/log-requests` (long poll) and `POST
//! /cluster/logs/{id}` (a task's lines, streamed). A handler reads the caller's identity and body, makes one call and
//! maps its [`ClusterError`] ([`cluster_error`], the one mapping of the node and cluster
//! APIs).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use wharf_api::cluster::{
    AssignmentsRequest, JoinRequest, NodeTokenRequest, NodeTokenResponse, RenewRequest, TaskReports,
};
use wharf_api::logs::LogRequestsPoll;
use wharf_manager::{ClusterError, Manager};
use wharf_pki::NodeIdentity;

use crate::PeerCertificate;

pub fn cluster_router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/cluster/join", post(join))
        .route("/cluster/members", post(add_member))
        .route("/cluster/nodes", get(nodes))
        .route("/cluster/heartbeat", post(heartbeat))
        .route("/cluster/renew", post(renew))
        .route("/cluster/assignments", post(assignments))
        .route("/cluster/tasks", post(report_tasks))
        .route("/cluster/log-requests", post(log_requests))
        .route("/cluster/logs/{id}", post(send_logs))
        .route("/cluster/exec-input/{id}", get(exec_input))
        .with_state(manager)
}

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    crate::message_response(status, message)
}

/// The one mapping of a control-plane error to an answer: 421 names the leader (the caller
/// asks it instead); 503 means try again; a fault is logged here and not described.
pub(crate) fn cluster_error(e: ClusterError) -> Response {
    if let ClusterError::NotLeader { leader } = &e {
        let message = wharf_api::ApiMessage { message: e.to_string(), leader: leader.clone() };
        return crate::typed_response(StatusCode::MISDIRECTED_REQUEST, &message);
    }
    match status_of(&e) {
        Some(status) => refuse(status, &e.to_string()),
        None => refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error, see the server log"),
    }
}

/// The status of a control-plane error, shared by the node, account and Docker APIs; `None`
/// for a fault, which is logged here and answered without its details. A call that only the
/// leader answers is 503 (try again) to a client that does not follow a 421.
pub(crate) fn status_of(e: &ClusterError) -> Option<StatusCode> {
    Some(match e {
        ClusterError::NotLeader { .. } | ClusterError::NoLeader | ClusterError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ClusterError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ClusterError::Forbidden(_) => StatusCode::FORBIDDEN,
        ClusterError::NotFound(_) | ClusterError::Hidden(_) => StatusCode::NOT_FOUND,
        ClusterError::Conflict(_) => StatusCode::CONFLICT,
        ClusterError::Invalid(_) => StatusCode::BAD_REQUEST,
        ClusterError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        ClusterError::Internal(why) => {
            tracing::error!(error = %why, "a control-plane call failed");
            return None;
        }
    })
}

/// The node identity of the caller's verified certificate: 401 without a certificate, 403
/// with one that names no node.
pub(crate) fn peer_identity(req: &Request) -> Result<NodeIdentity, Box<Response>> {
    let Some(PeerCertificate(node)) = req.extensions().get::<PeerCertificate>() else {
        let message = "node-to-node calls need a node certificate (mutual TLS)";
        return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, message)));
    };
    node.as_deref()
        .cloned()
        .ok_or_else(|| Box::new(refuse(StatusCode::FORBIDDEN, "the certificate is not a node certificate")))
}

/// The JSON body of a node-to-node request (at most 64 KiB); `what` names it in refusals.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request, what: &str) -> Result<T, Response> {
    json_body_limited(req, what, 64 * 1024).await
}

/// [`json_body`] with a larger limit.
async fn json_body_limited<T: serde::de::DeserializeOwned>(
    req: Request,
    what: &str,
    limit: usize,
) -> Result<T, Response> {
    let body = crate::read_body(req.into_body(), limit)
        .await
        .map_err(|(status, why)| refuse(status, &format!("{what}: {why}")))?;
    serde_json::from_slice(&body).map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("invalid {what}: {e}")))
}

/// Answers with `result`'s value, or maps its error.
fn answer<T: serde::Serialize>(result: Result<T, ClusterError>) -> Response {
    match result {
        Ok(value) => crate::typed_response(StatusCode::OK, &value),
        Err(e) => cluster_error(e),
    }
}

async fn join(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    let source = crate::peer_ip(&req);
    let request: JoinRequest = match json_body(req, "join request").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    answer(manager.join(&source, &request).await)
}

async fn add_member(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    match peer_identity(&req) {
        Ok(identity) => answer(manager.add_member(&identity).await),
        Err(refusal) => *refusal,
    }
}

/// `GET /cluster/nodes`: the node list for any current node of this cluster, worker or
/// manager (`wharf node ls --data-dir` on that node's machine).
async fn nodes(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    answer(manager.peer(&identity).and_then(|_| manager.node_list()))
}

async fn heartbeat(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    match peer_identity(&req) {
        Ok(identity) => answer(manager.heartbeat(&identity).await),
        Err(refusal) => *refusal,
    }
}

async fn renew(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    // The node is checked before its body is read, as before: a stranger learns nothing more.
    if let Err(e) = manager.peer(&identity) {
        return cluster_error(e);
    }
    let request: RenewRequest = match json_body(req, "renewal request").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    answer(manager.renew(&identity, &request).await)
}

/// `POST /cluster/assignments`: the calling node's long poll for its tasks.
async fn assignments(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    if let Err(e) = manager.peer(&identity) {
        return cluster_error(e);
    }
    let request: AssignmentsRequest = match json_body(req, "assignments request").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    answer(manager.assignments(&identity, request).await)
}

/// `POST /cluster/tasks`: what the calling node observed of its tasks.
async fn report_tasks(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    if let Err(e) = manager.peer(&identity) {
        return cluster_error(e);
    }
    let reports: TaskReports = match json_body_limited(req, "task reports", 4 << 20).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    answer(manager.report_tasks(&identity, reports).await)
}

/// `POST /cluster/log-requests`: the calling node's long poll for the log lines managers ask.
async fn log_requests(State(manager): State<Arc<Manager>>, req: Request) -> Response {
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    let poll: LogRequestsPoll = match json_body(req, "log requests poll").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    answer(manager.log_requests(&identity, std::time::Duration::from_millis(poll.wait_ms)).await)
}

/// `POST /cluster/logs/{id}`: the calling node sends the lines of a task it was asked for,
/// as the engine's multiplexed stream, for as long as the caller reads them.
async fn send_logs(State(manager): State<Arc<Manager>>, Path(id): Path<String>, req: Request) -> Response {
    use futures::StreamExt;
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    let sink = match manager.attach_logs(&identity, &id) {
        Ok(sink) => sink,
        Err(e) => return cluster_error(e),
    };
    // Ends when this manager stops serving, like the caller's answer.
    let mut body = std::pin::pin!(req.into_body().into_data_stream().take_until(manager.stopping.stopped()));
    let mut frames = wharf_api::logs::FrameReader::default();
    let gone = || refuse(StatusCode::GONE, "the caller stopped reading these lines");
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            // A quiet task: the caller may leave between two keep-alives.
            () = sink.closed() => return gone(),
        };
        let Some(chunk) = chunk else { break };
        let Ok(chunk) = chunk else {
            // The node went away: the caller has what arrived.
            return crate::empty(StatusCode::OK, &[]);
        };
        frames.push(&chunk);
        loop {
            match frames.next_frame() {
                // A keep-alive of a quiet task: nothing to hand on.
                Ok(Some((_, payload))) if payload.is_empty() => {}
                Ok(Some((stream, payload))) => {
                    if !sink.send(stream, payload).await {
                        return gone();
                    }
                }
                Ok(None) => break,
                Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
    }
    match frames.finish() {
        Ok(()) => crate::empty(StatusCode::OK, &[]),
        Err(e) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `GET /cluster/exec-input/{id}`: the standard input a caller sends to a command the calling
/// node runs (`docker exec -i`), as it comes; it ends when the caller closes it.
async fn exec_input(State(manager): State<Arc<Manager>>, Path(id): Path<String>, req: Request) -> Response {
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    let input = match manager.exec_input(&identity, &id) {
        Ok(input) => input,
        Err(e) => return cluster_error(e),
    };
    let chunks = futures::stream::unfold(input, |mut input| async move {
        let chunk = input.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), input))
    });
    let chunks = futures::StreamExt::take_until(chunks, manager.stopping.stopped());
    Response::new(axum::body::Body::from_stream(chunks))
}

/// `POST /cluster/registry-token`: a token for the calling node to pull its tasks' images.
pub(crate) async fn registry_token(State(app): State<Arc<crate::App>>, req: Request) -> Response {
    let (Some(manager), Some(auth)) = (&app.cluster, &app.auth) else {
        return refuse(StatusCode::NOT_FOUND, "this node is not a cluster manager");
    };
    let identity = match peer_identity(&req) {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    if let Err(e) = manager.peer(&identity) {
        return cluster_error(e);
    }
    let request: NodeTokenRequest = match json_body(req, "token request").await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    if let Err(e) = manager.check_node_pulls(&identity, &request.repositories) {
        return cluster_error(e);
    }
    match auth.issue_node_token(identity.node_id, &request.repositories, crate::now()) {
        Ok(token) => crate::typed_response(StatusCode::OK, &NodeTokenResponse { token }),
        Err(e) => {
            tracing::error!(error = %e, "signing a node's registry token failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error, see the server log")
        }
    }
}
