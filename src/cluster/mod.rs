//! The cluster: `lifecycle scheduler` and `lifecycle executor` are an Apache DataFusion Ballista
//! scheduler and executor with every lifecycle function, the `lifecycle.*` options and S3 object
//! storage; `--cluster df://HOST:PORT` on `sql`, `serve` and `report` plans locally and runs the
//! plan there.
//!
//! What crosses the wire and how it is made to work:
//! - Function calls travel by name. The scheduler's sessions and the executors' registry hold the
//!   built-ins and every lifecycle function; the table functions' internal aggregates
//!   (`lifecycle_cohort_customer`, ...) are resolved by name by the plan codecs below.
//! - Partial aggregate states travel as Arrow IPC between stages (every state type is an Arrow
//!   type).
//! - A table function's result ([`PlannedTable`], a planned query that is not inlined) travels
//!   as its own serialised logical plan, by [`LogicalCodec`], set on the client, the scheduler
//!   and the executors.
//! - Settings travel as key/value pairs with each job; a key no extension claims is dropped by
//!   Ballista, so the `lifecycle` extension is in every process's session configuration.
//! - Tables are Parquet listing tables: their paths must resolve the same on every process
//!   (the same local path everywhere, or object storage).

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use lifecycle_udfs::LifecycleStateBuilderExt;

use crate::engine::config::product_defaults;
use crate::engine::storage::Stores;

pub mod client;
pub mod codec;
mod errors;
pub mod executor;
pub mod scheduler;
mod security;

pub use client::connect;
pub use security::NodeSecurity;

use codec::{LogicalCodec, PhysicalCodec};

/// The session configuration of every cluster process and client: Ballista's, the product's
/// defaults, the `lifecycle.*` options and the two codecs.
///
/// One DataFusion optimisation is off on a cluster: leaf-expression pushdown, which moves
/// `get_field` (`s.frequency` of a struct) into projections named `__datafusion_extracted_N`.
/// The plan it leaves does not survive DataFusion 55's plan serialisation: the aggregate over such
/// columns is named with their qualifier in the plan and without it after the round trip, and
/// the scheduler refuses the plan ("No field named bgnbd_fit(__datafusion_extracted_1, ...)").
/// Seen with `bgnbd_fit(s.frequency, s.recency, s.t)` over `rfm_summary`'s struct.
///
/// Ballista's adaptive query planner is off: with it, a UNION ALL of two single-partition stages
/// (`lifecycle_by_period` over a one-row file) sometimes read one stage twice and counted a
/// customer as `new` twice (3 runs in 6 on a 1 scheduler + 1 executor cluster; 0 in 6 without
/// it). The cluster test repeats that query.
///
/// Dynamic filters are off too: they share state between operators of one process, which a
/// plan split into stages on several executors does not have, and Ballista 55's executor,
/// resetting a received plan, rebuilds a TopK's filter with zero emitters (DataFusion asserts
/// `topk_emitter_count > 0`; `lifecycle_by_period`'s plan has a TopK). The cluster tests
/// cover both.
pub fn cluster_config() -> SessionConfig {
    let mut config = product_defaults(SessionConfig::new_with_ballista());
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_leaf_expression_pushdown = false;
    optimizer.enable_topk_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.enable_aggregate_dynamic_filter_pushdown = false;
    optimizer.enable_dynamic_filter_pushdown = false;
    lifecycle_udfs::with_options(config)
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()))
}

/// A runtime with the product's object stores (S3 from the environment) and, on an executor,
/// its work directory for spills.
pub(crate) fn runtime(stores: &Arc<Stores>, work_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut b = RuntimeEnvBuilder::new().with_object_store_registry(stores.clone());
    if let Some(dir) = work_dir {
        b = b.with_temp_file_path(dir);
    }
    b.build_arc()
}

/// A lifecycle session state for `config`: DataFusion's defaults, Ballista's logical optimizer
/// rules (as Ballista's own scheduler has them) and every lifecycle function and rule.
pub(crate) fn lifecycle_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_physical_optimizer_rule(Arc::new(crate::engine::store::guard::StoreCoPartitioning))
        .with_lifecycle()
        .build()
}

/// Every function a plan may name: Ballista's built-ins, then DataFusion's defaults and every
/// lifecycle function.
pub(crate) fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    let state = lifecycle_state(SessionConfig::new(), Arc::new(RuntimeEnv::default()));
    let all = BallistaFunctionRegistry::from(&state);
    registry.scalar_functions.extend(all.scalar_functions);
    registry.aggregate_functions.extend(all.aggregate_functions);
    registry.window_functions.extend(all.window_functions);
    registry
        .higher_order_functions
        .extend(all.higher_order_functions);
    registry
}

pub(crate) fn ballista_err(e: ballista_core::error::BallistaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// An in-process cluster (Ballista's standalone mode: a scheduler and an executor on this
/// process's runtime) with the lifecycle session, for tests.
pub async fn standalone(parallelism: usize) -> Result<SessionContext> {
    let config = cluster_config().with_ballista_standalone_parallelism(parallelism);
    let state = lifecycle_state(config, runtime(&Stores::new(), None)?);
    let ctx = SessionContext::standalone_with_state(state).await?;
    client::client_session(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_has_the_built_ins_and_every_lifecycle_function() {
        use datafusion::execution::FunctionRegistry;
        let r = function_registry();
        for f in lifecycle_udfs::aggregate_functions() {
            assert!(r.udaf(f.name()).is_ok(), "{}", f.name());
        }
        for f in lifecycle_udfs::scalar_functions() {
            assert!(r.udf(f.name()).is_ok(), "{}", f.name());
        }
        for f in lifecycle_udfs::window_functions() {
            assert!(r.udwf(f.name()).is_ok(), "{}", f.name());
        }
        assert!(r.udf("abs").is_ok());
        assert!(r.udf("array_length").is_ok());
        assert!(r.udaf("count").is_ok());
    }
}
