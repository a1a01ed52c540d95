//! End-to-end tests: each starts the real `wharf` binary and talks to it over HTTP, directly
//! (protocol conformance, bad input, crash safety) or through real clients (docker, skopeo,
//! podman, buildah, ctr, oras), the `docker` CLI driving services through a client bundle
//! on nodes with engines of their own (`services`), and the attacks of the security review (`security`). One test
//! binary, as the conventions ask.

mod access;
mod auth;
mod bad_input;
mod clients;
mod cluster;
mod conformance;
mod containers;
mod crash;
mod directory;
mod harness;
mod oci;
mod security;
mod services;
