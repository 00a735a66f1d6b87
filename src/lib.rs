//! The `lifecycle` binary's library: one session builder and the front ends that use it.

pub mod cluster;
pub mod generate;
pub mod limits;
pub mod logging;
pub mod output;
pub mod report;
pub mod sample;
pub mod secrets;
pub mod server;
pub mod session;
pub mod shell;
pub mod storage;
pub mod views;

pub use session::{SessionFlags, SessionOptions, TableSpec, build_session, parse_memory_size};
