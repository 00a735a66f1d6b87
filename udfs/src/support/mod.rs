//! What the function families share, one concern per file: argument checks ([`args`]), the
//! generic accumulator parts ([`accumulator`]), per-group logs ([`group_log`]), list-shaped states
//! ([`lists`]) and exact money ([`money`]). Everything is re-exported here, so a family imports
//! `crate::support::{...}`.

pub mod accumulator;
pub mod args;
pub mod group_log;
pub mod lists;
pub mod money;

pub use accumulator::*;
pub(crate) use accumulator::{grouped_accumulators, money_accumulators};
pub use args::*;
pub use group_log::*;
pub use lists::*;
