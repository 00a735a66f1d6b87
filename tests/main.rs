//! The one integration-test binary: sqllogictest files, SQL-equivalence checks, the merge path
//! (partitions and files), and the `lifecycle` command line.

mod cli;
mod cluster;
mod common;
mod equivalence;
mod fanout;
mod hostile;
mod layers;
mod models;
mod registration;
mod report;
mod server;
mod slt;
mod sorted_aggregate;
mod store;
