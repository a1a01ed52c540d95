//! The node agent's task half (swarmkit's `agent/`): a session with the managers that
//! long-polls for the complete set of this node's tasks ([`TaskAgent`]) and for the log
//! requests of every manager (`logs`), the reconciliation of
//! that set with the containers the node runs ([`reconcile::plan`], pure), and the
//! [`Executor`] that carries it out on the node's Docker Engine ([`DockerExecutor`], through
//! bollard) or in memory for tests ([`FakeExecutor`]).
//!
//! This crate never schedules and never writes desired state: it observes and reports.
//! It touches only containers labelled with this cluster and node. The secrets and configs of
//! its tasks are files on a tmpfs (`files`), bind-mounted into their containers.

mod docker;
mod executor;
mod fake;
mod files;
mod logs;
pub mod reconcile;
mod session;

pub use docker::DockerExecutor;
pub use executor::{ContainerView, ExecError, Executor, LogLines, RunRequest, Started, labels};
pub use fake::FakeExecutor;
pub use session::{Connect, TaskAgent, TaskAgentConfig};
