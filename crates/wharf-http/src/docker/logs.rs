//! `GET /services/{id}/logs` and `GET /tasks/{id}/logs`: the lines the tasks' nodes send
//! ([`wharf_manager::Manager::subscribe_logs`]), written as the engine writes them: a
//! multiplexed stream (a raw one for a TTY service), each line `[timestamp ][details ]message`
//! with the `com.docker.swarm.*` details the CLI turns into `name.slot.task@node`.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use wharf_api::logs::{self, LogOptions};
use wharf_manager::{Caller, LogSubscription, LogTarget, Manager};

use super::{Answer, docker_error, message_response};

/// Streams the lines of `target` as the query asks (`stdout`, `stderr`, `follow`, `tail`,
/// `since`, `until`, `timestamps`, `details`).
pub(super) fn answer(manager: &Manager, caller: &Caller, target: &LogTarget, query: &[(String, String)]) -> Answer {
    let flag = |key: &str| crate::query_get(query, key).is_some_and(|v| v == "1" || v == "true");
    let (stdout, stderr) = (flag("stdout"), flag("stderr"));
    if !stdout && !stderr {
        return Err(message_response(StatusCode::BAD_REQUEST, "Bad parameters: you must choose at least one stream"));
    }
    let options = LogOptions::parse(
        crate::query_get(query, "follow"),
        crate::query_get(query, "tail"),
        crate::query_get(query, "since"),
        crate::query_get(query, "until"),
    )
    .map_err(|e| message_response(StatusCode::BAD_REQUEST, &e))?;
    let subscription = manager.subscribe_logs(caller, target, &options).map_err(docker_error)?;
    let format = Format { stdout, stderr, timestamps: flag("timestamps"), details: flag("details") };
    let tty = subscription.tty;
    // A followed log ends when this manager stops serving (the CLI sees the end of it).
    let lines = futures::StreamExt::take_until(lines(subscription, format), manager.stopping.stopped());
    let mut response = Response::new(Body::from_stream(lines));
    let kind = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}

#[derive(Clone, Copy)]
struct Format {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    details: bool,
}

/// The subscription's lines as response bytes, a frame (or, for a TTY, the bare line) each.
fn lines(
    subscription: LogSubscription,
    format: Format,
) -> impl futures::Stream<Item = Result<Vec<u8>, Infallible>> + Send + 'static {
    let tty = subscription.tty;
    futures::stream::unfold(subscription.lines, move |mut lines| async move {
        loop {
            let line = lines.recv().await?;
            let wanted = match line.stream {
                logs::STDERR => format.stderr,
                logs::STDOUT => format.stdout,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let (timestamp, message) = logs::split_timestamp(&line.payload);
            let text = logs::format_line(timestamp, message, &line.context, format.timestamps, format.details);
            let bytes = if tty {
                text
            } else {
                let mut framed = Vec::with_capacity(text.len() + logs::HEADER);
                logs::encode_frame(&mut framed, line.stream, &text);
                framed
            };
            return Some((Ok(bytes), lines));
        }
    })
}
