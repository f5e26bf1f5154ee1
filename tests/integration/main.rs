//! The integration tests, one test binary: each module below is one area,
//! tested against the real `gren-registry` binary (started by the harness in
//! `common/`). One binary compiles the harness once instead of once a file,
//! and its tests run in parallel threads across areas, so no test may change
//! the test process itself (environment, working directory, umask, signal
//! handlers): whatever a test needs differently goes to the child it starts.
//!
//! `cargo test --test integration` runs them all, `cargo test --test
//! integration packages::` one area, and a full name one test.

mod common;

mod admin;
mod backup;
mod cdn;
mod cli_help;
mod client;
mod client_messages;
mod client_registry;
mod concurrency;
mod connection_log;
mod crash;
mod data_dir;
mod docs_examples;
mod faults;
mod full_disk;
mod fuzz_regressions;
mod git;
mod git_limits;
mod http_hazards;
mod identity;
mod live_admin;
mod login;
mod many_connections;
mod migration;
mod nginx_proxy;
mod packages;
mod printed_commands;
mod slow_clients;
mod tokens;
mod varnish;
