//! What every command and process shares, below the front ends and the cluster: the session's
//! configuration ([`config`]) and the local session ([`session`]), object storage ([`storage`]),
//! the shipped views, the statement limits, secrets, errors as one line, the process's stop
//! signals, and the functions front ends add to plans ([`functions`]). Nothing here imports from
//! the front ends, the cluster or the commands.

pub mod config;
pub mod errors;
pub mod fanout_aggregate;
pub mod functions;
pub mod limits;
pub mod logging;
pub mod secrets;
pub mod session;
pub mod signals;
pub mod sorted_aggregate;
pub mod sorted_input;
pub mod sorted_window;
pub mod storage;
pub mod store;
pub mod views;
