//! The table functions (`cohort_retention`, `customer_value`, `lifecycle_by_period`) and what
//! they share: resolving the table argument, constant arguments, exact `as_of` bounds and
//! literals, and [`PlannedTable`], the provider that returns a planned query.
//!
//! A table function never reads its table: it resolves it in the caller's session and returns a
//! logical plan of ordinary operators (built with `LogicalPlanBuilder`, or planned from the
//! shipped SQL in `sql/functions/`), so the query runs partitioned, under the session's memory
//! limit, and spills like any other.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{ResolvedTableReference, Result, ScalarValue, TableReference, plan_err};
use datafusion::datasource::TableType;
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, lit};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::ExecutionPlan;

use crate::support::poll_once;

pub mod cohort_retention;
pub mod customer_value;
pub mod lifecycle_by_period;

/// Evaluates a constant argument of a table function to a scalar.
pub fn constant_arg(
    func: &str,
    name: &str,
    expr: &Expr,
    session: &dyn Session,
) -> Result<ScalarValue> {
    let ctx = SimplifyContext::builder()
        .with_config_options(Arc::new(session.config_options().clone()))
        .with_query_execution_start_time(session.execution_props().query_execution_start_time)
        .build();
    match ExprSimplifier::new(ctx).simplify(expr.clone())? {
        Expr::Literal(v, _) => Ok(v),
        other => plan_err!("{func}: argument '{name}' must be a constant, got {other}"),
    }
}

/// A constant string argument.
pub fn string_arg(func: &str, name: &str, expr: &Expr, session: &dyn Session) -> Result<String> {
    match constant_arg(func, name, expr, session)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(s),
        other => plan_err!(
            "{func}: argument '{name}' must be a string, got {} ({other})",
            other.data_type()
        ),
    }
}

/// Resolves a table name in the session's catalogs (the default catalog and schema unless the
/// name is qualified).
pub fn resolve_table(
    func: &str,
    name: &str,
    session: &dyn Session,
) -> Result<Arc<dyn TableProvider>> {
    let resolved = table_reference(name, session);
    let schema = session
        .catalog_list()
        .catalog(&resolved.catalog)
        .and_then(|c| c.schema(&resolved.schema));
    let Some(schema) = schema else {
        return plan_err!(
            "{func}: table '{name}' not found (no schema {}.{})",
            resolved.catalog,
            resolved.schema
        );
    };
    // Catalog look-ups are async in general; every in-memory catalog (which is where registered
    // tables live) answers at once, so poll once rather than blocking a runtime thread.
    match poll_once(func, schema.table(&resolved.table))? {
        Some(t) => Ok(t),
        None => {
            let mut names = schema.table_names();
            names.sort();
            plan_err!(
                "{func}: table '{name}' not found; tables are: {}",
                names.join(", ")
            )
        }
    }
}

/// A table name as every lifecycle table function reads it: like the SQL planner, an unquoted
/// name is case-insensitive (`'Purchases'` is `purchases`), a double-quoted part keeps its case
/// and may hold dots (`'"My.Table"'`), and `schema.table` / `catalog.schema.table` qualify it.
pub fn table_reference(name: &str, session: &dyn Session) -> ResolvedTableReference {
    let opts = &session.config_options().catalog;
    TableReference::parse_str(name).resolve(&opts.default_catalog, &opts.default_schema)
}

/// The fully qualified, quoted SQL name of a table argument (see [`table_reference`]), for the
/// shipped SQL a table function plans.
pub fn quoted_table(name: &str, session: &dyn Session) -> String {
    let r = table_reference(name, session);
    [&*r.catalog, &*r.schema, &*r.table]
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// An instant in nanoseconds since the epoch, wide enough for every DATE and timestamp.
fn instant_ns(v: &ScalarValue) -> Result<Option<i128>> {
    Ok(match v {
        ScalarValue::Date32(d) => d.map(|d| d as i128 * 86_400_000_000_000),
        ScalarValue::Date64(d) => d.map(|d| d as i128 * 1_000_000),
        ScalarValue::TimestampSecond(t, _) => t.map(|t| t as i128 * 1_000_000_000),
        ScalarValue::TimestampMillisecond(t, _) => t.map(|t| t as i128 * 1_000_000),
        ScalarValue::TimestampMicrosecond(t, _) => t.map(|t| t as i128 * 1_000),
        ScalarValue::TimestampNanosecond(t, _) => t.map(|t| t as i128),
        ScalarValue::Null => None,
        other => return plan_err!("expected a TIMESTAMP or DATE, got {}", other.data_type()),
    })
}

/// `order_ts <= as_of`, exactly, for a column of type `ts_type`: the latest value of the
/// column's own type at or before `as_of` (so no cast of either side can overflow or round), or
/// TRUE / FALSE when `as_of` is beyond the type's range (a DATE 9999-12-31 next to nanosecond
/// timestamps, which end in 2262).
pub enum AsOfBound {
    Always,
    Never,
    AtOrBefore(ScalarValue),
}

pub fn as_of_bound(ts_type: &DataType, as_of: &ScalarValue) -> Result<AsOfBound> {
    use datafusion::arrow::datatypes::TimeUnit;
    let Some(ns) = instant_ns(as_of)? else {
        return plan_err!("as_of must not be NULL");
    };
    let per: i128 = match ts_type {
        DataType::Date32 => 86_400_000_000_000,
        DataType::Date64 | DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1,
        DataType::Null => return Ok(AsOfBound::Always),
        other => return plan_err!("expected a TIMESTAMP or DATE column, got {other}"),
    };
    let bound = ns.div_euclid(per);
    let (lo, hi) = match ts_type {
        DataType::Date32 => (i32::MIN as i128, i32::MAX as i128),
        _ => (i64::MIN as i128, i64::MAX as i128),
    };
    if bound >= hi {
        return Ok(AsOfBound::Always);
    }
    if bound < lo {
        return Ok(AsOfBound::Never);
    }
    let v = match ts_type {
        DataType::Date32 => ScalarValue::Date32(Some(bound as i32)),
        _ => ScalarValue::Int64(Some(bound as i64)).cast_to(ts_type)?,
    };
    Ok(AsOfBound::AtOrBefore(v))
}

impl AsOfBound {
    /// The condition on `column` as an expression.
    pub fn expr(&self, column: Expr) -> Expr {
        match self {
            AsOfBound::Always => lit(true),
            AsOfBound::Never => lit(false),
            AsOfBound::AtOrBefore(v) => column.lt_eq(lit(v.clone())),
        }
    }

    /// The condition on `column` as SQL text.
    pub fn sql(&self, column: &str) -> Result<String> {
        crate::support::template::expr(&self.expr(datafusion::logical_expr::col(column)))
    }
}

/// Checks that the table has the named columns, naming the first missing one.
pub fn require_columns(
    func: &str,
    table: &str,
    provider: &dyn TableProvider,
    cols: &[&str],
) -> Result<()> {
    let schema = provider.schema();
    for c in cols {
        if schema.field_with_name(c).is_err() {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return plan_err!(
                "{func}: table '{table}' has no column '{c}' (it needs {}; it has {})",
                cols.join(", "),
                have.join(", ")
            );
        }
    }
    Ok(())
}

/// The result of a table function: a logical plan planned on scan, like a view, but never inlined
/// into the calling query, so the plan's own ORDER BY survives a LIMIT (it becomes a top-k) and
/// the function's output is ordered as documented.
#[derive(Debug)]
pub struct PlannedTable {
    view: ViewTable,
}

impl PlannedTable {
    pub fn new(plan: LogicalPlan) -> Self {
        Self {
            view: ViewTable::new(plan, None),
        }
    }

    /// The planned query (what a plan codec serialises for a cluster).
    pub fn plan(&self) -> &LogicalPlan {
        self.view.logical_plan()
    }
}

#[async_trait::async_trait]
impl TableProvider for PlannedTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.view.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The view is planned (and physically optimised) here, and the calling query's
        // optimiser then runs again over the result. A second join-selection pass must not meet
        // a hash join that already holds a dynamic filter (DataFusion 55 refuses to swap its
        // inputs then: "Cannot swap HashJoinExec inputs after dynamic filters have been
        // constructed", seen on tiny Parquet files with exact statistics), so the inner
        // planning leaves join dynamic filters to the outer pass, which adds them after its own
        // join selection.
        let Some(session_state) = state.as_any().downcast_ref::<SessionState>() else {
            return self.view.scan(state, projection, filters, limit).await;
        };
        // (A cloned state with its own config: rebuilding one through SessionStateBuilder with a
        // replaced config would register a fresh default catalog over the session's own.)
        let mut inner = session_state.clone();
        inner
            .config_mut()
            .options_mut()
            .optimizer
            .enable_join_dynamic_filter_pushdown = false;
        self.view.scan(&inner, projection, filters, limit).await
    }
}

/// Plans a shipped SQL text (placeholders already substituted) with the caller's session, as the
/// result of a table function.
pub fn planned_sql(func: &str, session: &dyn Session, sql: &str) -> Result<Arc<dyn TableProvider>> {
    let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
        return plan_err!("{func} needs a DataFusion SessionState to plan its query");
    };
    let plan = poll_once(func, state.create_logical_plan(sql))?;
    Ok(Arc::new(PlannedTable::new(plan)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::prelude::SessionContext;

    /// Every constant instant renders as SQL that plans back to the same value and type.
    #[test]
    fn instants_round_trip_every_type_and_year() {
        let ctx = SessionContext::new();
        let values = [
            ScalarValue::Date32(Some(-135_140)),  // 1600-01-01
            ScalarValue::Date32(Some(2_932_896)), // 9999-12-31
            ScalarValue::Date64(Some(-11_676_096_000_000)),
            ScalarValue::TimestampSecond(Some(253_402_300_799), None),
            ScalarValue::TimestampMillisecond(Some(-1), Some("UTC".into())),
            ScalarValue::TimestampMicrosecond(Some(-11_676_096_000_000_000), Some("+05:30".into())),
            ScalarValue::TimestampNanosecond(Some(i64::MAX), None),
        ];
        for v in values {
            let sql = format!("SELECT {}", crate::support::template::instant(&v).unwrap());
            assert_eq!(block_on(&ctx, &sql), v, "{sql}");
        }
    }

    /// Runs a constant query to its one value. Such a plan spawns no tasks, so polling it on
    /// this thread needs no async runtime (this crate has none).
    fn block_on(ctx: &SessionContext, sql: &str) -> ScalarValue {
        let mut fut = std::pin::pin!(async {
            let batches = ctx.sql(sql).await?.collect().await?;
            ScalarValue::try_from_array(batches[0].column(0), 0)
        });
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v.unwrap();
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn as_of_bounds_are_exact_in_the_column_type() {
        let ns = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let d32 = DataType::Date32;
        let bound = |t: &DataType, v: ScalarValue| match as_of_bound(t, &v).unwrap() {
            AsOfBound::Always => "always".to_string(),
            AsOfBound::Never => "never".to_string(),
            AsOfBound::AtOrBefore(b) => format!("{b:?}"),
        };
        // DATEs beyond the nanosecond range: every / no order is at or before them.
        assert_eq!(bound(&ns, ScalarValue::Date32(Some(2_932_896))), "always");
        assert_eq!(bound(&ns, ScalarValue::Date32(Some(-135_140))), "never");
        // A timestamp with a time of day against a DATE column: the day it falls in.
        assert_eq!(
            bound(
                &d32,
                ScalarValue::TimestampSecond(Some(86_400 + 3_600), None)
            ),
            "Date32(\"1970-01-02\")"
        );
        // Before the epoch, floor (not truncation toward zero).
        assert_eq!(
            bound(&d32, ScalarValue::TimestampSecond(Some(-1), None)),
            "Date32(\"1969-12-31\")"
        );
        assert_eq!(
            bound(
                &DataType::Timestamp(TimeUnit::Second, None),
                ScalarValue::TimestampMillisecond(Some(-1), None)
            ),
            "TimestampSecond(-1, None)"
        );
        assert_eq!(
            bound(&ns, ScalarValue::TimestampMicrosecond(Some(5), None)),
            "TimestampNanosecond(5000, None)"
        );
    }
}
