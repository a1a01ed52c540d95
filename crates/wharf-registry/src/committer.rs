//! Group commit: one thread applies state-store commands, taking every command that queued up
//! while the previous commit was being made durable into the next transaction. Under
//! concurrent pushes this turns many fsyncs into one, and a single request still commits at
//! once. Results come back in the order the commands were queued, each as if applied alone.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use tokio::sync::oneshot;
use wharf_store::{Command, Outcome, Proposal, ProposeError, Proposer, Store};

/// Most commands in one transaction.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<Outcome, ProposeError>>;

/// Applies commands to a local store with group commit.
pub struct Committer {
    queue: Sender<(Command, Reply)>,
}

impl Committer {
    /// Starts the commit thread over `store`.
    pub fn start(store: Arc<Store>) -> std::io::Result<Committer> {
        let (queue, rx) = channel();
        std::thread::Builder::new().name("wharf-commit".into()).spawn(move || run(&store, &rx))?;
        Ok(Committer { queue })
    }

    pub(crate) async fn apply(&self, command: Command) -> Result<Outcome, ProposeError> {
        let (reply, result) = oneshot::channel();
        let stopped = || ProposeError::Unavailable("the commit thread stopped".into());
        self.queue.send((command, reply)).map_err(|_| stopped())?;
        result.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl Proposer for Committer {
    fn propose_command(&self, _origin: wharf_store::Origin, command: Command) -> Proposal<'_> {
        Box::pin(self.apply(command))
    }
}

/// Commits batches until every sender is gone.
fn run(store: &Store, rx: &Receiver<(Command, Reply)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
        for (reply, result) in replies.into_iter().zip(store.apply_batch(&commands)) {
            let _ = reply.send(result.map_err(ProposeError::from));
        }
    }
}
