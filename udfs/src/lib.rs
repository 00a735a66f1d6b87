//! Customer-lifecycle SQL functions for Apache DataFusion.
//!
//! Register everything on a [`SessionContext`] with [`register_all`], or on a
//! [`SessionStateBuilder`] with [`LifecycleStateBuilderExt::with_lifecycle`] (for servers and
//! distributed executors that build their own state). Both install the same functions and the
//! `lifecycle.*` session options ([`LifecycleOptions`]).
//!
//! Each function family is a module with two layers: a pure kernel (`kernel` submodules: plain
//! state with update / merge / finish, no Arrow types) and a thin DataFusion adapter.

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF, WindowUDF};
use datafusion::prelude::{SessionConfig, SessionContext};

mod support;

pub mod bucket;
pub mod events;
pub mod lead;
pub mod models;
pub mod options;
pub mod period;
pub mod retention;
pub mod rfm;
pub mod segment;
pub mod sessionize;
pub mod single_phase;
pub mod stage;
pub mod table;

pub use options::LifecycleOptions;
// Time handling and the shipped-SQL templates are shared support, public for the binary's reports.
pub use support::{template, time};

/// Every scalar function.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut v = vec![
        period::period_diff_udf(),
        period::period_start_udf(),
        segment::rfm_segment_udf(),
        lead::lead_stage_udf(),
        bucket::store_bucket_udf(),
    ];
    v.extend(models::prediction_udfs());
    v
}

/// Every aggregate function.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        retention::retention_udaf(),
        stage::lifecycle_stage_udaf(),
        stage::churn_flag_udaf(),
        rfm::rfm_summary_udaf(),
        rfm::churn_risk_udaf(),
        models::bgnbd_fit_udaf(),
        models::pareto_nbd_fit_udaf(),
        models::gamma_gamma_fit_udaf(),
        events::funnel::window_funnel_udaf(),
        events::funnel::window_funnel_times_udaf(),
        lead::lead_score_udaf(),
        events::sequence::sequence_match_udaf(),
        events::sequence::sequence_count_udaf(),
        events::sequence::sequence_match_events_udaf(),
        events::next_node::sequence_next_node_udaf(),
    ]
}

/// Every window function.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![sessionize::sessionize_udwf()]
}

/// An aggregate that plans of the table functions use internally but SQL cannot name (it is not
/// registered), by its name: what a process decoding a serialised plan (a Ballista scheduler or
/// executor, through its plan codec) looks up when its function registry has no such name.
pub fn internal_aggregate(name: &str) -> Option<Arc<AggregateUDF>> {
    table::cohort_retention::internal_aggregates()
        .into_iter()
        .find(|f| f.name() == name)
        .map(Arc::new)
}

/// Every table function, with its name and documentation.
pub fn table_functions() -> Vec<(
    &'static str,
    Arc<dyn TableFunctionImpl>,
    &'static Documentation,
)> {
    vec![
        (
            "cohort_retention",
            Arc::new(table::cohort_retention::CohortRetention),
            &table::cohort_retention::COHORT_RETENTION_DOC,
        ),
        (
            "customer_value",
            Arc::new(table::customer_value::CustomerValue),
            &table::customer_value::CUSTOMER_VALUE_DOC,
        ),
        (
            "lifecycle_by_period",
            Arc::new(table::lifecycle_by_period::LifecycleByPeriod),
            &table::lifecycle_by_period::LIFECYCLE_BY_PERIOD_DOC,
        ),
    ]
}

/// Adds the `lifecycle.*` options to a session configuration (keeping values already set).
pub fn with_options(config: SessionConfig) -> SessionConfig {
    if config
        .options()
        .extensions
        .get::<LifecycleOptions>()
        .is_some()
    {
        config
    } else {
        config.with_option_extension(LifecycleOptions::default())
    }
}

/// Whether the analyzer already gives `lifecycle_stage` / `churn_flag` the session thresholds.
fn has_thresholds_rewrite(analyzer: &datafusion::optimizer::Analyzer) -> bool {
    analyzer
        .function_rewrites()
        .iter()
        .any(|r| r.name() == stage::ThresholdsRewrite.name())
}

/// Whether the physical optimizer already plans whole-input aggregates in one phase.
fn has_single_phase_rule(
    rules: &[Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>],
) -> bool {
    rules.iter().any(|r| r.name() == single_phase::RULE_NAME)
}

/// Registers every lifecycle function, the `lifecycle.*` options and the
/// [`single_phase::SinglePhaseAggregates`] physical optimizer rule on a context.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        if options.extensions.get::<LifecycleOptions>().is_none() {
            options.extensions.insert(LifecycleOptions::default());
        }
    }
    {
        use datafusion::execution::FunctionRegistry;
        let state = ctx.state_ref();
        let mut state = state.write();
        if !has_thresholds_rewrite(state.analyzer()) {
            state.register_function_rewrite(Arc::new(stage::ThresholdsRewrite))?;
        }
    }
    {
        // A physical optimizer rule can only be added while building a state: rebuild this
        // one from itself (same catalogs, functions, config and runtime) with the rule added.
        let state = ctx.state_ref();
        let mut state = state.write();
        if !has_single_phase_rule(state.physical_optimizers()) {
            *state = SessionStateBuilder::new_from_existing(state.clone())
                .with_physical_optimizer_rule(Arc::new(single_phase::SinglePhaseAggregates))
                .build();
        }
    }
    for f in scalar_functions() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in aggregate_functions() {
        ctx.register_udaf(f.as_ref().clone());
    }
    for f in window_functions() {
        ctx.register_udwf(f.as_ref().clone());
    }
    for (name, f, _) in table_functions() {
        ctx.register_udtf(name, f);
    }
    Ok(())
}

/// Registers the lifecycle functions while building a [`datafusion::execution::SessionState`].
pub trait LifecycleStateBuilderExt {
    fn with_lifecycle(self) -> Self;
}

impl LifecycleStateBuilderExt for SessionStateBuilder {
    fn with_lifecycle(mut self) -> Self {
        let config = self.config().take().unwrap_or_default();
        *self.config() = Some(with_options(config));
        let mut scalars = self.scalar_functions().take().unwrap_or_default();
        scalars.extend(scalar_functions());
        let mut aggregates = self.aggregate_functions().take().unwrap_or_default();
        aggregates.extend(aggregate_functions());
        let mut windows = self.window_functions().take().unwrap_or_default();
        windows.extend(window_functions());
        let mut analyzer = self.analyzer().take().unwrap_or_default();
        if !has_thresholds_rewrite(&analyzer) {
            analyzer.add_function_rewrite(Arc::new(stage::ThresholdsRewrite));
        }
        *self.analyzer() = Some(analyzer);
        let mut tables = self.table_functions().take().unwrap_or_default();
        for (name, f, _) in table_functions() {
            tables.insert(
                name.to_string(),
                Arc::new(datafusion::catalog::TableFunction::new(name.to_string(), f)),
            );
        }
        let with_rule = self
            .physical_optimizer_rules()
            .as_ref()
            .is_some_and(|r| has_single_phase_rule(r));
        let builder = self
            .with_scalar_functions(scalars)
            .with_aggregate_functions(aggregates)
            .with_window_functions(windows)
            .with_table_functions(tables);
        if with_rule {
            builder
        } else {
            builder.with_physical_optimizer_rule(Arc::new(single_phase::SinglePhaseAggregates))
        }
    }
}

/// The function reference as Markdown, generated from each function's own documentation (the
/// "Function reference" section of docs/functions.md is this text).
pub fn function_docs() -> String {
    let mut entries: Vec<(String, &'static str, Documentation)> = vec![];
    for f in scalar_functions() {
        if let Some(d) = f.documentation() {
            entries.push((f.name().to_string(), "scalar", d.clone()));
        }
    }
    for f in aggregate_functions() {
        if let Some(d) = f.documentation() {
            entries.push((f.name().to_string(), "aggregate", d.clone()));
        }
    }
    for f in window_functions() {
        if let Some(d) = f.documentation() {
            entries.push((f.name().to_string(), "window", d.clone()));
        }
    }
    for (name, _, d) in table_functions() {
        entries.push((name.to_string(), "table function", d.clone()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (name, kind, d) in entries {
        out.push_str(&format!(
            "### `{name}` ({kind})\n\n`{}`\n\n{}\n\n",
            d.syntax_example, d.description
        ));
        if let Some(args) = &d.arguments {
            for (a, desc) in args {
                out.push_str(&format!("- `{a}`: {desc}\n"));
            }
            out.push('\n');
        }
        if let Some(ex) = &d.sql_example {
            out.push_str(ex);
            out.push_str("\n\n");
        }
    }
    out
}
