//! The change feed: after every commit the store publishes which domains changed, so control
//! loops and watches wake on a change instead of polling the state. A subscriber sees the
//! latest [`Changes`] (a generation per domain); it reads the state itself, as of then or
//! later, so a burst of commits costs it one wake-up.

use tokio::sync::watch;

use crate::command::Command;

/// The domains of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Repositories, blobs, manifests, tags, uploads.
    Registry,
    /// Accounts, sessions, repository settings; organizations, teams, collections, roles, grants.
    Accounts,
    /// The cluster: its id, nodes, join tokens.
    Cluster,
    /// Services, tasks, node availability, labels and descriptions.
    Orchestration,
    /// The audit log.
    Audit,
}

/// How many commits have changed each domain since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub registry: u64,
    pub accounts: u64,
    pub cluster: u64,
    pub orchestration: u64,
    pub audit: u64,
}

impl Changes {
    fn bump(&mut self, domain: Domain) {
        match domain {
            Domain::Registry => self.registry += 1,
            Domain::Accounts => self.accounts += 1,
            Domain::Cluster => self.cluster += 1,
            Domain::Orchestration => self.orchestration += 1,
            Domain::Audit => self.audit += 1,
        }
    }

    /// Every domain at once (a snapshot replaced the whole state).
    fn bump_all(&mut self) {
        for domain in [Domain::Registry, Domain::Accounts, Domain::Cluster, Domain::Orchestration, Domain::Audit] {
            self.bump(domain);
        }
    }
}

impl Command {
    /// The domain a command changes.
    pub fn domain(&self) -> Domain {
        match self {
            Command::Registry(_) => Domain::Registry,
            Command::Accounts(_) | Command::Identity(_) => Domain::Accounts,
            Command::Cluster(_) => Domain::Cluster,
            Command::Orchestration(_) => Domain::Orchestration,
            Command::Audit(_) => Domain::Audit,
        }
    }
}

/// The publishing end, held by the store.
#[derive(Debug)]
pub(crate) struct Feed {
    sender: watch::Sender<Changes>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed { sender: watch::Sender::new(Changes::default()) }
    }
}

impl Feed {
    /// Publishes that `command` was committed.
    pub(crate) fn committed(&self, command: &Command) {
        self.sender.send_modify(|changes| changes.bump(command.domain()));
    }

    /// Publishes that the whole state was replaced.
    pub(crate) fn replaced(&self) {
        self.sender.send_modify(Changes::bump_all);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Changes> {
        self.sender.subscribe()
    }
}
