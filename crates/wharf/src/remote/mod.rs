//! Commands that call a node's API as a client, like any other: `login`, `logout`, `user`,
//! `repo`, `token`, `node`.

pub mod account;
