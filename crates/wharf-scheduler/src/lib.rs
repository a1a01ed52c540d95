//! Wharf's task scheduler: placement, and nothing else. Nodes (their description and the load
//! already on them) and pending tasks come in; one [`Decision`] per task comes out, either the
//! node it goes to or a reason it cannot be placed, because a refusal without a reason is a
//! support ticket nobody can answer.
//!
//! The model is moby/swarmkit's scheduler: a pipeline of filters (ready and active, resources,
//! platform, constraints, host ports) decides which nodes may take a task; the placement
//! preferences (spread over `node.labels.*` / `engine.labels.*`) and the load of each node then
//! decide which of them does. Identical tasks of one service are placed as a batch, so the
//! filters run once per batch and node, and each placement is a few ordered-set operations.
//!
//! This crate must never know about I/O, async runtimes, the state store, Raft or HTTP: the
//! manager reads the store, calls [`schedule`] and writes the decisions back. That keeps the
//! scheduler a pure function that tests and property checks can drive directly.

mod constraint;
mod filter;
mod load;
mod model;
mod scheduler;
mod spread;
#[cfg(test)]
mod testutil;
mod tree;

pub use constraint::{Constraint, ConstraintError, ConstraintKey, Operator};
pub use model::{Availability, Decision, Node, NodeId, Platform, Protocol, Resources, Role, Task};
pub use scheduler::schedule;
pub use spread::Spread;
