//! The table functions for DataFusion Python, as SQL its own session runs.
//!
//! A lifecycle table function never reads its table: it returns a plan of ordinary operators
//! over it. Here that plan is made in a private session of this library, over an empty stand-in
//! table with the caller's table's schema and with the caller's `lifecycle.*` options, and then
//! written back as SQL (DataFusion's unparser) naming the caller's table. DataFusion Python runs
//! that SQL on its own tables, with the lifecycle functions registered through the FFI. The
//! thresholds the plan uses are explicit arguments in the SQL, so the answer is the session's.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, TableReference, plan_err};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, TableScanBuilder, TableSource};
use datafusion::prelude::{SessionConfig, SessionContext};
use lifecycle_udfs::table::PlannedTable;

/// The SQL of `function(table, args...)` over `table` (whose schema is `schema`), with the
/// `lifecycle.*` options `options`. `args` are SQL texts (literals).
pub fn table_sql(
    function: &str,
    table: &str,
    args: &[String],
    schema: SchemaRef,
    options: &[(String, String)],
) -> Result<String> {
    if !lifecycle_udfs::table_functions()
        .iter()
        .any(|(name, _, _)| *name == function)
    {
        return plan_err!("no lifecycle table function named '{function}'");
    }
    let ctx = SessionContext::new_with_config(lifecycle_udfs::with_options(SessionConfig::new()));
    lifecycle_udfs::register_all(&ctx)?;
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        for (k, v) in options {
            state.config_mut().options_mut().set(k, v)?;
        }
    }
    let stand_in: Arc<dyn TableProvider> = Arc::new(EmptyTable::new(schema));
    let reference = TableReference::parse_str(table);
    // A qualified name gets its catalog and schema in the private session too.
    let state = ctx.state();
    let options = &state.config_options().catalog;
    let resolved = reference
        .clone()
        .resolve(&options.default_catalog, &options.default_schema);
    if ctx.catalog(&resolved.catalog).is_none() {
        ctx.register_catalog(
            resolved.catalog.as_ref(),
            Arc::new(datafusion::catalog::MemoryCatalogProvider::new()),
        );
    }
    if let Some(catalog) = ctx.catalog(&resolved.catalog)
        && catalog.schema(&resolved.schema).is_none()
    {
        catalog.register_schema(
            &resolved.schema,
            Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
        )?;
    }
    ctx.register_table(reference.clone(), Arc::clone(&stand_in))?;

    let quoted = format!("'{}'", table.replace('\'', "''"));
    let call_args: Vec<&str> = std::iter::once(quoted.as_str())
        .chain(args.iter().map(String::as_str))
        .collect();
    let sql = format!("SELECT * FROM {function}({})", call_args.join(", "));
    let outer = block_on(state.create_logical_plan(&sql))?;

    let mut planned = None;
    outer.apply(|p| {
        if let LogicalPlan::TableScan(s) = p
            && let Ok(provider) = source_as_provider(&s.source)
            && let Some(t) =
                (provider.as_ref() as &dyn std::any::Any).downcast_ref::<PlannedTable>()
        {
            planned = Some(t.plan().clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let Some(planned) = planned else {
        return plan_err!("{function} did not plan a query");
    };

    // The stand-in's scans name the caller's table (under the name the plan gave them).
    let is_stand_in = |source: &Arc<dyn TableSource>| {
        source_as_provider(source).is_ok_and(|p| Arc::ptr_eq(&p, &stand_in))
    };
    let named = planned
        .transform_up(|p| match p {
            LogicalPlan::TableScan(s) if is_stand_in(&s.source) => {
                let scan = TableScanBuilder::new(reference.clone(), Arc::clone(&s.source))
                    .with_projection(s.projection.clone())
                    .with_filters(s.filters.clone())
                    .with_fetch(s.fetch)
                    .build()?;
                let plan = LogicalPlan::TableScan(scan);
                let plan = if s.table_name == reference {
                    plan
                } else {
                    LogicalPlanBuilder::from(plan)
                        .alias(s.table_name.clone())?
                        .build()?
                };
                Ok(Transformed::yes(plan))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;

    // The analyzer gives the stage functions the session's thresholds as explicit arguments.
    let analyzed = state
        .analyzer()
        .execute_and_check(named, state.config_options(), |_, _| {})?;
    Ok(datafusion::sql::unparser::plan_to_sql(&analyzed)?.to_string())
}

/// Planning a query over in-memory tables completes without waiting on anything.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}
