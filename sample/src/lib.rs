//! Data for trying and testing Lifecycle without data of one's own: [`generate`], synthetic
//! purchase, customer and site-event history from a buy-till-you-die process (`lifecycle
//! generate`), and [`embedded`], the sample every front end opens on when no table is given (12,000
//! generated customers and the CDNOW purchase sample of the BG/NBD paper).
//!
//! Its own crate so that the binary and the Python package share it without the Python package
//! depending on the binary's servers and cluster.

pub mod embedded;
pub mod generate;
