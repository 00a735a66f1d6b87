//! The customer-base models ("buy till you die"): BG/NBD, Pareto/NBD and Gamma-Gamma fits,
//! predictions and CLV, with the likelihoods of the Python `lifetimes` package.
//!
//! - [`special`]: lnΓ, ψ and the Gaussian hypergeometric function (pure numerics);
//! - [`optimize`]: BFGS with a backtracking line search (pure numerics);
//! - [`btyd`]: the models' kernels — likelihoods, fits over collapsed rows, predictions;
//! - [`sql`]: the SQL adapters — fit aggregates returning a parameter struct, prediction scalars.

pub mod btyd;
pub mod optimize;
pub mod special;
pub mod sql;

pub use sql::{Model, bgnbd_fit_udaf, gamma_gamma_fit_udaf, pareto_nbd_fit_udaf, prediction_udfs};
