//! What the function families share, one concern per file: argument checks ([`args`]), the
//! generic accumulator parts ([`accumulator`]), per-group logs ([`group_log`]), list-shaped states
//! ([`lists`]), exact money ([`money`]), time ([`time`]: ticks, calendar periods), the shipped-SQL
//! templates ([`template`]) and the functions' documentation builders ([`doc`]). The first five
//! are re-exported here, so a family imports `crate::support::{...}`; time, templates and docs
//! are imported by path (`crate::support::time::...`).

pub mod accumulator;
pub mod args;
pub(crate) mod doc;
pub mod group_log;
pub mod lists;
pub mod money;
pub mod template;
pub mod time;

pub use accumulator::*;
pub(crate) use accumulator::{grouped_accumulators, money_accumulators};
pub use args::*;
pub use group_log::*;
pub use lists::*;
