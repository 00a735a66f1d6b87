//! Scalar functions the front ends put into plans without registering them for SQL, or register
//! beside the lifecycle functions: the Postgres listener's JSON conversion and `current_setting`.
//! They live here, below the front ends, because a cluster's processes must decode them by name
//! ([`front_end_udf`]) in plans any front end sends.

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

pub mod current_setting;
pub mod to_json;

/// A front end's function, by its name in a plan.
pub fn front_end_udf(name: &str) -> Option<Arc<ScalarUDF>> {
    match name {
        to_json::TO_JSON_NAME => Some(to_json::to_json()),
        "current_setting" => Some(Arc::new(current_setting::current_setting())),
        _ => None,
    }
}
