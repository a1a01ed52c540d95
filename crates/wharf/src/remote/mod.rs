//! Commands that call a node's API as a client, like any other: `login`, `logout`, `user`,
//! `repo`, `token`, `node`, and the access commands (`org`, `team`, `collection`, `role`,
//! `grant`).

pub mod access;
pub mod account;
