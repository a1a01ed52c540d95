//! The agent's half of service logs: a long poll at every manager for the log requests it
//! holds for this node (a caller's `docker service logs` reaches whichever manager it likes,
//! and that manager cannot reach the engine), and for each request the task's lines read
//! from the engine and streamed to the manager that asked, framed as the engine frames them,
//! for as long as that manager reads them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use tokio::sync::watch;
use tokio::task::JoinSet;
use wharf_api::logs::{LogRequest, LogRequests, LogRequestsPoll, encode_frame};

use crate::executor::{ExecError, Executor, LogLines};
use crate::session::Connect;

/// How long a poll for log requests waits.
const POLL_WAIT: Duration = Duration::from_secs(25);

/// Polls every manager in `managers` (as the list changes) for log requests and answers them.
pub(crate) async fn serve_log_requests<E: Executor + ?Sized + 'static>(
    mut managers: watch::Receiver<Vec<String>>,
    connect: Connect,
    executor: Arc<E>,
) {
    // Dropped with this future, which aborts every poll.
    let mut polls: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let list = managers.borrow_and_update().clone();
        polls.retain(|addr, poll| {
            let keep = list.contains(addr);
            if !keep {
                poll.abort();
            }
            keep
        });
        for addr in list {
            if let std::collections::hash_map::Entry::Vacant(entry) = polls.entry(addr) {
                let addr = entry.key().clone();
                entry.insert(tasks.spawn(poll(addr, Arc::clone(&connect), Arc::clone(&executor))));
            }
        }
        while tasks.try_join_next().is_some() {}
        if managers.changed().await.is_err() {
            return;
        }
    }
}

/// One manager's log requests, for as long as it is in the list.
async fn poll<E: Executor + ?Sized + 'static>(addr: String, connect: Connect, executor: Arc<E>) {
    let mut failures = 0u32;
    let mut senders = JoinSet::new();
    let request = LogRequestsPoll { wait_ms: POLL_WAIT.as_millis() as u64 };
    // One client (and its connection) for as long as it works: a poll every 25 s per manager
    // makes no new TLS handshake.
    let mut kept: Option<wharf_client::Client> = None;
    loop {
        while senders.try_join_next().is_some() {}
        if kept.is_none() {
            kept = connect(std::slice::from_ref(&addr));
        }
        let answer = match kept.as_mut() {
            Some(client) => client
                .call::<_, LogRequests>(Method::POST, "/cluster/log-requests", Some(&request))
                .await
                .map_err(|e| e.to_string()),
            None => Err("no client of the manager".to_owned()),
        };
        match (answer, &kept) {
            (Ok(answer), Some(client)) => {
                failures = 0;
                for request in answer.requests {
                    senders.spawn(send(client.clone(), Arc::clone(&executor), request));
                }
            }
            (Ok(_), None) => {}
            (Err(e), _) => {
                kept = None;
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(manager = addr, error = %e, failures, "polling for log requests failed");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Streams the lines `request` asks for to the manager `client` asked last. A task whose
/// container is gone sends none: the manager ends that task's part of the answer.
async fn send<E: Executor + ?Sized>(client: wharf_client::Client, executor: Arc<E>, request: LogRequest) {
    let exit = |code: i64| Ok((wharf_api::logs::EXIT, wharf_api::logs::exit_payload(code).to_vec()));
    let lines = match &request.exec {
        // The container's standard input, until the caller closes it; then an exit frame.
        None if request.attach_stdin => {
            let input = input(&client, &request).await.unwrap_or_else(|| futures::stream::empty().boxed());
            let code = match executor.attach_stdin(&request.task_id, input).await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::info!(task = request.task_id, error = %e, "a container's standard input could not be attached");
                    126
                }
            };
            futures::stream::iter([exit(code)]).boxed()
        }
        // A command to run in the task's container: its output, then its exit code; one that
        // could not start says why on its standard error and ends as the engine's would (126).
        Some(spec) => match executor.exec(&request.task_id, spec, input(&client, &request).await).await {
            Ok(output) => output,
            Err(e) => {
                tracing::info!(task = request.task_id, error = %e, "a command could not run in a task's container");
                let said = (wharf_api::logs::STDERR, format!("{e}\n").into_bytes());
                let exit = (wharf_api::logs::EXIT, wharf_api::logs::exit_payload(126).to_vec());
                futures::stream::iter([Ok(said), Ok(exit)]).boxed()
            }
        },
        // The container's output as the engine attaches to it.
        None if request.attach_output => match executor.attach_output(&request.task_id, request.replay).await {
            Ok(output) => output,
            Err(e) => {
                tracing::info!(task = request.task_id, error = %e, "no output of a task's container");
                futures::stream::empty().boxed()
            }
        },
        None => match executor.logs(&request.task_id, &request.options).await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::info!(task = request.task_id, error = %e, "no log lines for a task");
                futures::stream::empty().boxed()
            }
        },
    };
    let path = format!("/cluster/logs/{}", request.id);
    if let Err(e) = client.post_stream(&path, reqwest::Body::wrap_stream(framed(lines, KEEP_ALIVE))).await {
        // A caller that stopped reading (410) is the usual end of a followed log.
        if e.status() != Some(reqwest::StatusCode::GONE) {
            tracing::debug!(task = request.task_id, error = %e, "sending a task's log lines ended");
        }
    }
}

/// The standard input a caller sends to the command `request` runs, if they send one: the
/// body of `GET /cluster/exec-input/{id}` at the manager that asked (a command that cannot get
/// it reads an empty input).
async fn input(client: &wharf_client::Client, request: &LogRequest) -> Option<crate::executor::Input> {
    if !request.attach_stdin && !request.exec.as_ref().is_some_and(|e| e.stdin) {
        return None;
    }
    let path = format!("/cluster/exec-input/{}", request.id);
    match client.get_stream(&path).await {
        Ok(body) => Some(
            body.take_while(|chunk| futures::future::ready(chunk.is_ok()))
                .filter_map(|chunk| async move { chunk.ok().map(|c| c.to_vec()) })
                .boxed(),
        ),
        Err(e) => {
            tracing::info!(error = %e, "a command's standard input could not be read");
            Some(futures::stream::empty().boxed())
        }
    }
}

/// How often a quiet task's stream sends an empty frame, so that the manager's guard against
/// stalled request bodies (a minute) does not end a followed log.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The lines as frames, with an empty frame after every `keep_alive` without a line.
fn framed(
    lines: LogLines,
    keep_alive: Duration,
) -> impl futures::Stream<Item = Result<Vec<u8>, ExecError>> + Send + 'static {
    let frame = |stream: u8, payload: &[u8]| {
        let mut frame = Vec::with_capacity(payload.len() + wharf_api::logs::HEADER);
        encode_frame(&mut frame, stream, payload);
        frame
    };
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    futures::stream::unfold((lines, tick), move |(mut lines, mut tick)| async move {
        let item = tokio::select! {
            line = lines.next() => match line? {
                Ok((stream, payload)) => {
                    tick.reset();
                    Ok(frame(stream, &payload))
                }
                Err(e) => Err(e),
            },
            _ = tick.tick() => Ok(frame(wharf_api::logs::STDOUT, &[])),
        };
        Some((item, (lines, tick)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_stream_sends_keep_alives_and_ends_with_its_lines() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<(u8, Vec<u8>), ExecError>>();
        let mut frames = Box::pin(framed(rx.boxed(), Duration::from_millis(30)));
        let keep_alive = frames.next().await.expect("a frame").expect("no error");
        assert_eq!(keep_alive, [1, 0, 0, 0, 0, 0, 0, 0], "an empty frame when nothing was said");
        tx.unbounded_send(Ok((2, b"ts oops\n".to_vec()))).expect("send");
        let line = frames.next().await.expect("a frame").expect("no error");
        assert_eq!(&line[..8], &[2, 0, 0, 0, 0, 0, 0, 8]);
        drop(tx);
        assert!(frames.next().await.is_none(), "the frames end with the lines");
    }
}
