//! The `lifecycle` binary's library, in layers, each importing only from the ones below it:
//!
//! - [`commands`]: the command line, one file per command (its arguments and its `run`), and
//!   [`build_session`], the one place a session is made.
//! - front ends: [`shell`] (`lifecycle sql`), [`server`] (`lifecycle serve`: Flight SQL and
//!   Postgres), [`report`] (`lifecycle report`), and [`cluster`] (Ballista's scheduler, executor
//!   and client).
//! - [`engine`]: what they all share: the session's configuration and the local session, object
//!   storage, views, limits, secrets, errors, signals and the front ends' plan functions.
//!
//! Below the library: `lifecycle-udfs` (every SQL function) and `lifecycle-sample` (the generator
//! and the embedded sample).

pub mod cluster;
pub mod commands;
pub mod engine;
pub mod report;
pub mod server;
pub mod shell;

pub use commands::{SessionFlags, build_session};
pub use engine::config::{SessionOptions, TableSpec, parse_memory_size};
