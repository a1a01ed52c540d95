//! Service and task logs (swarmkit's `manager/logbroker`). The lines live in the engines of
//! the tasks' nodes, which a manager cannot reach: every agent long-polls each manager for
//! log requests ([`Manager::log_requests`]), and answers one by sending that task's lines to
//! the manager that asked ([`Manager::attach_logs`]), which hands them to the caller's
//! [`LogSubscription`]. Nothing passes through Raft or another manager; nothing is kept once
//! the caller is gone. A node that does not take its request within [`ATTACH_WITHIN`] (down,
//! or its agent not polling this manager yet) is left out of the answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use wharf_api::cluster::TaskBlueprint;
use wharf_api::logs::{LogContext, LogOptions, LogRequest, LogRequests};
use wharf_pki::NodeIdentity;
use wharf_store::{TaskRecord, TaskState};

use crate::services::Caller;
use crate::{ClusterError, Manager};

/// How long a node has to start sending the lines it was asked for.
pub const ATTACH_WITHIN: Duration = Duration::from_secs(10);
/// How many lines wait for a slow reader before the sending agent is held back.
const QUEUED_LINES: usize = 1024;

/// One line of a task: its stream and the engine's payload (`timestamp message`).
#[derive(Debug)]
pub struct LogLine {
    pub context: Arc<LogContext>,
    pub stream: u8,
    pub payload: Vec<u8>,
}

/// The lines of the tasks a caller asked for, as their nodes send them; ends when every
/// node has sent all it had (never, when following, until the caller drops it).
pub struct LogSubscription {
    pub lines: mpsc::Receiver<LogLine>,
    /// The service's containers have a TTY: their lines are one raw stream, not framed.
    pub tty: bool,
}

/// Where one task's lines go, once its node sends them.
pub struct LogSink {
    pub context: Arc<LogContext>,
    lines: mpsc::Sender<LogLine>,
}

impl LogSink {
    /// Hands one line on, waiting while the caller is behind; `false` once the caller is gone.
    pub async fn send(&self, stream: u8, payload: Vec<u8>) -> bool {
        let line = LogLine { context: Arc::clone(&self.context), stream, payload };
        self.lines.send(line).await.is_ok()
    }

    /// Resolves once the caller stopped reading (its lines would go nowhere).
    pub async fn closed(&self) {
        self.lines.closed().await;
    }
}

/// The log requests of this manager, waiting for their nodes (in memory only).
#[derive(Clone)]
pub struct LogBroker {
    inner: Arc<Mutex<Broker>>,
    /// How long a node has to take a request ([`ATTACH_WITHIN`]).
    attach_within: Duration,
}

impl Default for LogBroker {
    fn default() -> LogBroker {
        LogBroker::new(ATTACH_WITHIN)
    }
}

#[derive(Default)]
struct Broker {
    queues: HashMap<u64, NodeQueue>,
    waiting: HashMap<String, Waiting>,
}

#[derive(Default)]
struct NodeQueue {
    requests: Vec<LogRequest>,
    wake: Arc<Notify>,
}

struct Waiting {
    node: u64,
    sink: LogSink,
}

impl LogBroker {
    pub fn new(attach_within: Duration) -> LogBroker {
        LogBroker { inner: Arc::default(), attach_within }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `request` for `node`, its lines to go to `lines`; forgotten after
    /// `attach_within` unless the node took it.
    pub(crate) fn ask(
        &self,
        node: u64,
        (request, context): (LogRequest, Arc<LogContext>),
        lines: mpsc::Sender<LogLine>,
    ) {
        let sink = LogSink { context, lines };
        let id = request.id.clone();
        {
            let mut broker = self.lock();
            broker.waiting.insert(id.clone(), Waiting { node, sink });
            let queue = broker.queues.entry(node).or_default();
            queue.requests.push(request);
            queue.wake.notify_waiters();
        }
        let broker = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(broker.attach_within).await;
            let mut inner = broker.lock();
            if inner.waiting.remove(&id).is_some()
                && let Some(queue) = inner.queues.get_mut(&node)
            {
                queue.requests.retain(|r| r.id != id);
            }
        });
    }

    /// The requests waiting for `node`, as soon as there are some or after `wait`.
    async fn take(&self, node: u64, wait: Duration) -> Vec<LogRequest> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let wake = {
                let mut broker = self.lock();
                let queue = broker.queues.entry(node).or_default();
                if !queue.requests.is_empty() {
                    return std::mem::take(&mut queue.requests);
                }
                Arc::clone(&queue.wake)
            };
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.lock().queues.get(&node).is_some_and(|q| q.requests.is_empty()) {
                continue;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => return Vec::new(),
            }
        }
    }

    /// The sink of request `id`, if `node` was asked it and the caller still waits.
    fn attach(&self, node: u64, id: &str) -> Option<LogSink> {
        let mut broker = self.lock();
        match broker.waiting.get(id) {
            Some(waiting) if waiting.node == node => {}
            _ => return None,
        }
        let waiting = broker.waiting.remove(id)?;
        (!waiting.sink.lines.is_closed()).then_some(waiting.sink)
    }
}

/// The request for the lines of task `task_id` on `node`, and where they come from.
fn request(service_id: &str, task_id: String, node: u64, options: &LogOptions) -> (LogRequest, Arc<LogContext>) {
    let context =
        Arc::new(LogContext { node_id: node.to_string(), service_id: service_id.to_owned(), task_id: task_id.clone() });
    (
        LogRequest { id: crate::control::new_object_id(), task_id, options: options.clone(), ..LogRequest::default() },
        context,
    )
}

/// For a followed service: asks the node of every task that starts running after the
/// subscription for its lines, until the caller stops reading.
async fn ask_new_tasks(
    store: Arc<wharf_store::Store>,
    mut feed: tokio::sync::watch::Receiver<wharf_store::Changes>,
    broker: LogBroker,
    service_id: String,
    mut asked: HashSet<String>,
    options: LogOptions,
    lines: mpsc::Sender<LogLine>,
) {
    loop {
        feed.borrow_and_update();
        if let Ok(tasks) = store.service_tasks(&service_id) {
            for (task_id, task) in tasks {
                let Some(node) = task.node else { continue };
                if task.status.state < TaskState::Running || asked.contains(&task_id) {
                    continue;
                }
                asked.insert(task_id.clone());
                broker.ask(node, request(&service_id, task_id, node, &options), lines.clone());
            }
        }
        tokio::select! {
            changed = feed.changed() => if changed.is_err() { return },
            () = lines.closed() => return,
        }
    }
}

/// What a caller asks the logs of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Service(String),
    Task(String),
    /// A container made with `docker run` (by id or name).
    Container(String),
}

impl Manager {
    /// Asks the nodes of the tasks `target` names for their lines; the caller must see the
    /// service. Tasks never placed have no lines and are left out.
    pub fn subscribe_logs(
        &self,
        caller: &Caller,
        target: &LogTarget,
        options: &LogOptions,
    ) -> Result<LogSubscription, ClusterError> {
        // Subscribed before the tasks are read: a task that starts in between is not missed.
        let feed = self.store.subscribe();
        let following = options.follow && matches!(target, LogTarget::Service(_));
        let (service_id, tasks, tty): (String, Vec<(String, TaskRecord)>, bool) = match target {
            LogTarget::Service(id_or_name) => {
                let access = self.access(caller)?;
                let (id, record) = self.find_service(&access, id_or_name, wharf_auth::rbac::Permission::ServiceView)?;
                // As the CLI decides: by the service's spec now.
                let tty = crate::orchestrator::parse_spec(&record).is_some_and(|s| s.task_template.container_spec.tty);
                (id.clone(), self.store.service_tasks(&id)?, tty)
            }
            LogTarget::Task(id) => {
                self.inspect_task(caller, id)?;
                let task =
                    self.store.task(id)?.ok_or_else(|| ClusterError::NotFound(format!("task {id} not found")))?;
                let tty =
                    serde_json::from_str::<TaskBlueprint>(&task.template).is_ok_and(|b| b.spec.container_spec.tty);
                (task.service_id.clone(), vec![(id.clone(), task)], tty)
            }
            LogTarget::Container(key) => {
                let (id, task, tty) = self.container_for_logs(caller, key)?;
                (String::new(), vec![(id, task)], tty)
            }
        };
        let (lines, receiver) = mpsc::channel(QUEUED_LINES);
        let mut asked = HashSet::new();
        for (task_id, task) in tasks {
            let Some(node) = task.node else { continue };
            // A node that is down or gone cannot answer: not waited for.
            if !self.store.node(node)?.is_some_and(|n| !n.removed && n.state != "down") {
                continue;
            }
            // Followed, a task that has no container yet is asked once it runs.
            if following && task.status.state < TaskState::Running {
                continue;
            }
            asked.insert(task_id.clone());
            self.logs.ask(node, request(&service_id, task_id, node, options), lines.clone());
        }
        // Following a service: the tasks that start from now on are asked too, from their start.
        if following {
            let from_start = LogOptions { follow: true, tail: None, since: 0, until: options.until };
            let store = self.store.clone();
            tokio::spawn(ask_new_tasks(store, feed, self.logs.clone(), service_id, asked, from_start, lines));
        }
        Ok(LogSubscription { lines: receiver, tty })
    }

    /// An agent's long poll: the log requests for the calling node.
    pub async fn log_requests(&self, identity: &NodeIdentity, wait: Duration) -> Result<LogRequests, ClusterError> {
        self.known_peer(identity)?;
        let requests = tokio::select! {
            requests = self.logs.take(identity.node_id, wait.min(crate::LONGEST_POLL)) => requests,
            // This manager stops serving: nothing for it any more.
            () = self.stopping.stopped() => Vec::new(),
        };
        Ok(LogRequests { requests })
    }

    /// Where the calling node sends the lines of request `id`.
    pub fn attach_logs(&self, identity: &NodeIdentity, id: &str) -> Result<LogSink, ClusterError> {
        self.known_peer(identity)?;
        self.logs
            .attach(identity.node_id, id)
            .ok_or_else(|| ClusterError::NotFound(format!("no log request {id} waits for this node")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(id: &str) -> LogRequest {
        LogRequest {
            id: id.into(),
            task_id: format!("task-{id}"),
            options: LogOptions::default(),
            ..LogRequest::default()
        }
    }

    fn asked(id: &str, task: &str) -> (LogRequest, Arc<LogContext>) {
        let context = Arc::new(LogContext { node_id: "1".into(), service_id: "s".into(), task_id: task.into() });
        (wire(id), context)
    }

    #[tokio::test]
    async fn a_waiting_poll_is_woken_by_a_request_and_only_its_node_may_send_the_lines() {
        let broker = LogBroker::default();
        let poll = tokio::spawn({
            let broker = broker.clone();
            async move { broker.take(7, Duration::from_secs(20)).await }
        });
        tokio::task::yield_now().await;
        let (lines, mut receiver) = mpsc::channel(4);
        broker.ask(7, asked("a", "ta"), lines.clone());
        drop(lines);
        let taken = tokio::time::timeout(Duration::from_secs(5), poll).await.expect("woken").expect("joined");
        assert_eq!(taken, vec![wire("a")]);
        assert!(broker.attach(8, "a").is_none(), "another node took the request");
        let sink = broker.attach(7, "a").expect("the node's own request");
        assert!(broker.attach(7, "a").is_none(), "a request is taken once");
        assert!(sink.send(1, b"ts hello".to_vec()).await);
        drop(sink);
        let line = receiver.recv().await.expect("the line");
        assert_eq!((line.stream, line.payload.as_slice(), line.context.task_id.as_str()), (1, &b"ts hello"[..], "ta"));
        assert!(receiver.recv().await.is_none(), "the lines end when every sink is gone");
    }

    #[tokio::test]
    async fn a_poll_with_nothing_to_take_ends_after_its_wait() {
        let broker = LogBroker::default();
        assert!(broker.take(1, Duration::from_millis(50)).await.is_empty());
    }

    #[tokio::test]
    async fn a_request_no_node_takes_is_forgotten_and_the_caller_sees_the_end() {
        let broker = LogBroker::new(Duration::from_millis(50));
        let (lines, mut receiver) = mpsc::channel(4);
        broker.ask(3, asked("b", "tb"), lines.clone());
        drop(lines);
        let ended = tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await;
        assert!(ended.expect("the end within the wait").is_none());
        assert!(broker.attach(3, "b").is_none());
        assert!(broker.take(3, Duration::from_millis(1)).await.is_empty());
    }

    #[tokio::test]
    async fn a_caller_gone_before_the_node_came_refuses_the_lines() {
        let broker = LogBroker::default();
        let (lines, receiver) = mpsc::channel(4);
        broker.ask(3, asked("c", "tc"), lines.clone());
        drop((lines, receiver));
        assert!(broker.attach(3, "c").is_none());
    }
}
