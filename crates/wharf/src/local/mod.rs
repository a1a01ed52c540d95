//! Commands that run on this machine: start a node (`up`, `init`, `join`, `recover`) or change
//! this machine's trust (`trust`).

pub mod cluster;
pub mod trust;
pub mod up;
