//! The containers door: `docker run` (attached or `-d`), `ps`, `inspect`, `logs`, `stop`,
//! `wait`, `rm` and `exec` through a client bundle, each one call on the manager
//! ([`wharf_manager::containers`]). The output of `attach` and `exec start` comes on the
//! connection the CLI hijacks (a `101` to `Upgrade: tcp`, then the engine's multiplexed
//! stream, or the raw one for a TTY), or as a streamed body to a client that did not ask to
//! upgrade; what the caller sends on a hijacked connection is the standard input of the
//! command or container (`docker exec -i`, `docker run -i`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use wharf_api::containers::{ContainerCreate, ExecCreate, ExecStart};
use wharf_api::logs::encode_frame;
use wharf_manager::{Caller, ExecOutput, LogTarget, Manager};

use super::{Answer, docker_error, empty, filters, json_body, message_response, ok, typed};

const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
const RAW: &str = "application/vnd.docker.raw-stream";

fn flag(query: &[(String, String)], key: &str) -> bool {
    crate::query_get(query, key).is_some_and(|v| v == "1" || v == "true" || v == "True")
}

/// `GET /containers/json` and `POST /containers/create`.
pub(super) async fn containers(manager: &Manager, caller: &Caller, create: bool, req: Request) -> Answer {
    let query = crate::query_pairs(req.uri().query());
    match (create, req.method().clone()) {
        (false, Method::GET) => {
            let filters = filters(&query)?;
            let mut listed = manager.list_containers(caller, flag(&query, "all"), &filters).map_err(docker_error)?;
            // `-n N` and `-l` (the newest first).
            if let Some(limit) = query_i64(&query, "limit")?.filter(|l| *l > 0) {
                listed.truncate(limit as usize);
            }
            ok(&listed)
        }
        (true, Method::POST) => {
            let name = crate::query_get(&query, "name").map(str::to_owned);
            let raw: serde_json::Value = json_body(req).await?;
            if let Some(why) = wharf_api::containers::unsupported_in_create(&raw) {
                return Err(message_response(StatusCode::BAD_REQUEST, &why));
            }
            let body: ContainerCreate = serde_json::from_value(raw).map_err(|e| {
                message_response(StatusCode::BAD_REQUEST, &format!("invalid container configuration: {e}"))
            })?;
            let created = manager.create_container(caller, name.as_deref(), body).await.map_err(docker_error)?;
            typed(StatusCode::CREATED, &created)
        }
        (_, method) => Err(not_allowed(&method)),
    }
}

/// `GET /containers/{id}/json` and `DELETE /containers/{id}`.
pub(super) async fn container(manager: &Manager, caller: &Caller, id: &str, req: Request) -> Answer {
    let query = crate::query_pairs(req.uri().query());
    match *req.method() {
        Method::GET => ok(&manager.inspect_container(caller, id).map_err(docker_error)?),
        Method::DELETE => {
            manager.remove_container(caller, id, flag(&query, "force")).await.map_err(docker_error)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ref method => Err(not_allowed(method)),
    }
}

/// `/containers/{id}/{operation}`.
pub(super) async fn operation(manager: &Arc<Manager>, caller: &Caller, id: &str, op: &str, mut req: Request) -> Answer {
    let query = crate::query_pairs(req.uri().query());
    let method = req.method().clone();
    match (op, method) {
        ("start", Method::POST) => {
            let started = manager.start_container(caller, id).await.map_err(docker_error)?;
            Ok(empty(if started { StatusCode::NO_CONTENT } else { StatusCode::NOT_MODIFIED }))
        }
        ("stop", Method::POST) => {
            let grace = query_i64(&query, "t")?;
            let stopped = manager.stop_container(caller, id, grace).await.map_err(docker_error)?;
            Ok(empty(if stopped { StatusCode::NO_CONTENT } else { StatusCode::NOT_MODIFIED }))
        }
        // `docker kill`: a stop without a grace period, so the engine's SIGKILL.
        ("kill", Method::POST) => {
            let signal = crate::query_get(&query, "signal").unwrap_or("");
            if !matches!(signal, "" | "KILL" | "SIGKILL" | "9") {
                return Err(message_response(
                    StatusCode::BAD_REQUEST,
                    &format!("docker kill --signal {signal} is not supported by Wharf yet: only KILL is"),
                ));
            }
            if !manager.stop_container(caller, id, Some(0)).await.map_err(docker_error)? {
                return Err(message_response(StatusCode::CONFLICT, &format!("Container {id} is not running")));
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        // The size of a container's terminal is the engine's default.
        ("resize", Method::POST) => {
            manager.inspect_container(caller, id).map_err(docker_error)?;
            Ok(empty(StatusCode::OK))
        }
        ("wait", Method::POST) => {
            // The head goes at once (the CLI starts the container only once it has it), the
            // exit code when the container ended.
            let id = manager.container_to_wait_for(caller, id).map_err(docker_error)?;
            let manager = Arc::clone(manager);
            let body = futures::stream::once(async move {
                let answer = match manager.wait_container(&id).await {
                    Ok(answer) => serde_json::to_vec(&answer).unwrap_or_default(),
                    Err(e) => {
                        serde_json::to_vec(&serde_json::json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}))
                            .unwrap_or_default()
                    }
                };
                Ok::<_, std::convert::Infallible>(answer)
            });
            let mut response = Response::new(Body::from_stream(body));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(response)
        }
        ("logs", Method::GET) => super::logs::answer(manager, caller, &LogTarget::Container(id.to_owned()), &query),
        ("exec", Method::POST) => {
            let exec: ExecCreate = json_body(req).await?;
            typed(StatusCode::CREATED, &manager.create_exec(caller, id, exec).map_err(docker_error)?)
        }
        ("attach", Method::POST) => {
            let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
            let mut output = manager
                .attach_container(caller, id, flag(&query, "stdin"), flag(&query, "logs"))
                .map_err(docker_error)?;
            // Only the streams the caller attached (`docker run -a stdout`).
            output.output = only(output.output, flag(&query, "stdout"), flag(&query, "stderr"));
            Ok(hijacked(manager, upgrade, output))
        }
        (op, Method::POST | Method::GET) => Err(message_response(
            StatusCode::NOT_IMPLEMENTED,
            &format!("docker {op} is not supported by Wharf for containers (run, ps, inspect, logs, stop, rm, exec)"),
        )),
        (_, method) => Err(not_allowed(&method)),
    }
}

/// `POST /exec/{id}/start` and `GET /exec/{id}/json`.
pub(super) async fn exec(manager: &Manager, caller: &Caller, id: &str, op: &str, mut req: Request) -> Answer {
    match (op, req.method().clone()) {
        ("json", Method::GET) => ok(&manager.inspect_exec(caller, id).map_err(docker_error)?),
        ("start", Method::POST) => {
            let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
            let start: ExecStart = json_body(req).await?;
            let output = manager.start_exec(caller, id).map_err(docker_error)?;
            if start.detach {
                // The manager drains the output; the command runs on.
                return Ok(empty(StatusCode::OK));
            }
            Ok(hijacked(manager, upgrade, output))
        }
        // The size of a command's terminal is the engine's default.
        ("resize", Method::POST) => {
            manager.resize_exec(caller, id).map_err(docker_error)?;
            Ok(empty(StatusCode::OK))
        }
        (_, method) if op == "json" || op == "start" || op == "resize" => Err(not_allowed(&method)),
        (op, _) => Err(message_response(StatusCode::NOT_FOUND, &format!("exec {op} is no Docker API call"))),
    }
}

/// The output of the streams asked for.
fn only(
    mut output: tokio::sync::mpsc::Receiver<(u8, Vec<u8>)>,
    stdout: bool,
    stderr: bool,
) -> tokio::sync::mpsc::Receiver<(u8, Vec<u8>)> {
    if stdout && stderr {
        return output;
    }
    let (to, from) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some((stream, payload)) = output.recv().await {
            let wanted = if stream == wharf_api::logs::STDERR { stderr } else { stdout };
            if wanted && to.send((stream, payload)).await.is_err() {
                return;
            }
        }
    });
    from
}

fn wants_upgrade(req: &Request) -> bool {
    req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The answer that carries `output`: a `101` and the output on the upgraded connection, or a
/// streamed body for a client that did not ask to upgrade.
fn hijacked(manager: &Manager, upgrade: Option<hyper::upgrade::OnUpgrade>, output: ExecOutput) -> Response {
    let kind = if output.tty { RAW } else { MULTIPLEXED };
    let stopped = manager.stopping.stopped();
    match upgrade {
        Some(upgrade) => {
            tokio::spawn(async move {
                let upgraded = match upgrade.await {
                    Ok(upgraded) => TokioIo::new(upgraded),
                    Err(e) => return tracing::debug!(error = %e, "a hijacked connection was not upgraded"),
                };
                let (reader, writer) = tokio::io::split(upgraded);
                if let Some(input) = output.input.clone() {
                    tokio::spawn(read_input(reader, input));
                }
                write_output(writer, output, stopped).await;
            });
            let mut response = empty(StatusCode::SWITCHING_PROTOCOLS);
            let headers = response.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            response
        }
        None => {
            let bytes = futures::StreamExt::map(stream(output), Ok::<_, std::convert::Infallible>);
            let bytes = futures::StreamExt::take_until(bytes, stopped);
            let mut response = Response::new(Body::from_stream(bytes));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            response
        }
    }
}

/// The command's output as the engine writes it: frames, or bare bytes for a TTY.
fn stream(output: ExecOutput) -> impl futures::Stream<Item = Vec<u8>> + Send + 'static {
    let tty = output.tty;
    // The caller's side holds the input (a body-streamed answer has none: it closes at once).
    drop(output.input);
    futures::stream::unfold(output.output, move |mut from| async move {
        let (stream, payload) = from.recv().await?;
        if tty {
            return Some((payload, from));
        }
        let mut frame = Vec::with_capacity(payload.len() + wharf_api::logs::HEADER);
        encode_frame(&mut frame, stream, &payload);
        Some((frame, from))
    })
}

/// What the caller sends on the hijacked connection, to the command's standard input, until
/// they close their side (the command's input closes then).
async fn read_input(mut reader: impl tokio::io::AsyncRead + Unpin, input: tokio::sync::mpsc::Sender<Vec<u8>>) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if input.send(buffer[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes the output on the hijacked connection, then closes it (the CLI reads to the end,
/// then asks for the exit code).
async fn write_output(
    mut io: impl tokio::io::AsyncWrite + Unpin,
    output: ExecOutput,
    stopped: impl std::future::Future<Output = ()>,
) {
    let bytes = stream(output);
    tokio::pin!(bytes, stopped);
    loop {
        let next = tokio::select! {
            next = futures::StreamExt::next(&mut bytes) => next,
            () = &mut stopped => None,
        };
        let Some(chunk) = next else { break };
        if io.write_all(&chunk).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.shutdown().await;
}

fn query_i64(query: &[(String, String)], key: &str) -> Result<Option<i64>, Response> {
    match crate::query_get(query, key) {
        None | Some("") => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| message_response(StatusCode::BAD_REQUEST, &format!("invalid {key} {raw:?}"))),
    }
}

fn not_allowed(method: &Method) -> Response {
    message_response(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed here"))
}
