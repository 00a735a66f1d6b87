//! `cohort_retention(table, granularity [, as_of])`: the retention triangle as a table function.
//!
//! The function does not read the table: it resolves it in the session and returns a view over an
//! ordinary logical plan (aggregates, joins, unnest, sort), so the query runs partitioned, under
//! the session's memory limit, and spills like any other query:
//!
//! ```text
//! base      = table WHERE customer_id IS NOT NULL AND order_ts IS NOT NULL [AND order_ts <= as_of]
//! firsts    = base GROUP BY customer_id: min(order_ts), max(order_ts) -> cohort = period_start(first)
//! activity  = base JOIN firsts USING (customer_id): cohort, period_diff(cohort, order_ts)
//! cells     = activity GROUP BY cohort, period, customer_id, then GROUP BY cohort, period
//! grid      = firsts GROUP BY cohort: cohort_size, unnest(0 ..= period_diff(cohort, end))
//! result    = grid LEFT JOIN cells, zero-filled, ORDER BY cohort, period
//! ```

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{
    Column, DataFusionError, JoinType, Result, ScalarValue, TableReference, exec_err, plan_err,
};
use datafusion::datasource::TableType;
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast, col, lit,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::ExecutionPlan;

use crate::doc::scalar_doc;
use crate::period::{period_diff_udf, period_start_udf};
use crate::time::{Granularity, check_temporal};

pub static COHORT_RETENTION_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Table function: the whole retention triangle of a purchases table. One row per cohort (start of \
         the first-purchase period) and period (0, 1, ... up to the period of the latest order, or of \
         `as_of`), zero-filled, ordered by cohort then period, with columns `cohort` TIMESTAMP, `period` \
         BIGINT, `cohort_size` BIGINT, `active_customers` BIGINT, `retention` DOUBLE (active / size) and \
         `revenue` DOUBLE (sum of the cohort's non-NULL amounts in the period). The table needs columns \
         `customer_id`, `order_ts` (TIMESTAMP or DATE) and `amount`; rows with a NULL customer_id or \
         order_ts are ignored, and so are orders after `as_of`. Periods are calendar periods in UTC.",
        "cohort_retention(table, granularity [, as_of])",
        "SELECT cohort, period, cohort_size, round(retention * 100, 1) AS pct\nFROM cohort_retention('purchases', 'month')\nWHERE period <= 3;",
    )
    .with_argument("table", "name of a table (or view) in the session, as a string")
    .with_argument("granularity", "'day', 'week', 'month', 'quarter' or 'year'")
    .with_argument("as_of", "optional TIMESTAMP or DATE: ignore later orders and extend the triangle to it")
    .build()
});

#[derive(Debug, Default)]
pub struct CohortRetention;

const USAGE: &str = "cohort_retention(table, granularity [, as_of])";

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
    let reference = TableReference::parse_str(name);
    let opts = &session.config_options().catalog;
    let resolved = reference
        .clone()
        .resolve(&opts.default_catalog, &opts.default_schema);
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
    let mut fut = std::pin::pin!(schema.table(&resolved.table));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(Some(t))) => Ok(t),
        Poll::Ready(Ok(None)) => {
            let mut names = schema.table_names();
            names.sort();
            plan_err!(
                "{func}: table '{name}' not found; tables are: {}",
                names.join(", ")
            )
        }
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => plan_err!(
            "{func}: table '{name}' is in a catalog that resolves tables asynchronously, which is not supported"
        ),
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

impl TableFunctionImpl for CohortRetention {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "cohort_retention";
        let exprs = args.exprs();
        let session = args.session();
        if !(2..=3).contains(&exprs.len()) {
            return plan_err!("{F} takes 2 or 3 arguments ({USAGE}), got {}", exprs.len());
        }
        let table = string_arg(F, "table", &exprs[0], session)?;
        let granularity: Granularity = string_arg(F, "granularity", &exprs[1], session)?.parse()?;
        let as_of = match exprs.get(2) {
            Some(e) => {
                let v = constant_arg(F, "as_of", e, session)?;
                check_temporal(F, "as_of", &v.data_type())?;
                if v.is_null() {
                    return plan_err!("{F}: argument 'as_of' must not be NULL");
                }
                Some(v)
            }
            None => None,
        };
        let provider = resolve_table(F, &table, session)?;
        require_columns(
            F,
            &table,
            provider.as_ref(),
            &["customer_id", "order_ts", "amount"],
        )?;
        let schema = provider.schema();
        let ts_type = schema.field_with_name("order_ts")?.data_type().clone();
        check_temporal(F, "order_ts", &ts_type)?;
        let amount_type = schema.field_with_name("amount")?.data_type().clone();
        if !(amount_type.is_numeric() || amount_type.is_null()) {
            return plan_err!("{F}: column 'amount' must be numeric, got {amount_type}");
        }
        let plan = cohort_plan(provider, granularity, as_of)?;
        Ok(Arc::new(PlannedTable::new(plan)))
    }
}

fn plan_err_ctx(e: DataFusionError) -> DataFusionError {
    e.context("planning cohort_retention")
}

/// Builds the plan described in the module docs.
pub fn cohort_plan(
    provider: Arc<dyn TableProvider>,
    granularity: Granularity,
    as_of: Option<ScalarValue>,
) -> Result<LogicalPlan> {
    let g = lit(granularity.as_str());
    let diff = period_diff_udf();
    let start = period_start_udf();
    let range = Arc::new(ScalarUDF::new_from_impl(PeriodRange::default()));

    let mut filter = col("customer_id")
        .is_not_null()
        .and(col("order_ts").is_not_null());
    if let Some(a) = &as_of {
        filter = filter.and(col("order_ts").lt_eq(lit(a.clone())));
    }
    let base = LogicalPlanBuilder::scan("t", provider_as_source(provider), None)?
        .filter(filter)?
        .project(vec![
            col("customer_id"),
            col("order_ts"),
            cast(col("amount"), DataType::Float64).alias("amount"),
        ])?
        .build()?;

    let firsts = LogicalPlanBuilder::from(base.clone())
        .aggregate(
            vec![col("customer_id")],
            vec![
                min(col("order_ts")).alias("first_ts"),
                max(col("order_ts")).alias("last_ts"),
            ],
        )?
        .project(vec![
            col("customer_id").alias("f_customer_id"),
            start.call(vec![g.clone(), col("first_ts")]).alias("cohort"),
            col("last_ts"),
        ])?
        .build()?;

    let cells = LogicalPlanBuilder::from(base)
        .join(
            firsts.clone(),
            JoinType::Inner,
            (
                vec![Column::from_name("customer_id")],
                vec![Column::from_name("f_customer_id")],
            ),
            None,
        )?
        .project(vec![
            col("customer_id"),
            col("cohort"),
            diff.call(vec![g.clone(), col("cohort"), col("order_ts")])
                .alias("period"),
            col("amount"),
        ])?
        .aggregate(
            vec![col("cohort"), col("period"), col("customer_id")],
            vec![sum(col("amount")).alias("customer_revenue")],
        )?
        .aggregate(
            vec![col("cohort"), col("period")],
            vec![
                count(lit(1)).alias("active"),
                sum(col("customer_revenue")).alias("rev"),
            ],
        )?
        .project(vec![
            col("cohort").alias("c_cohort"),
            col("period").alias("c_period"),
            col("active"),
            col("rev"),
        ])?
        .build()?;

    // The triangle ends at the period of as_of, or of the latest order in the table.
    let sizes = LogicalPlanBuilder::from(firsts.clone())
        .aggregate(
            vec![col("cohort")],
            vec![count(lit(1)).alias("cohort_size")],
        )?
        .build()?;
    let with_end = match as_of {
        Some(a) => LogicalPlanBuilder::from(sizes).project(vec![
            col("cohort"),
            col("cohort_size"),
            lit(a).alias("end_ts"),
        ])?,
        None => {
            let end = LogicalPlanBuilder::from(firsts)
                .aggregate(
                    Vec::<Expr>::new(),
                    vec![max(col("last_ts")).alias("end_ts")],
                )?
                .build()?;
            LogicalPlanBuilder::from(sizes).cross_join(end)?
        }
    };
    let grid = with_end
        .project(vec![
            col("cohort"),
            col("cohort_size"),
            range
                .call(vec![diff.call(vec![g, col("cohort"), col("end_ts")])])
                .alias("period"),
        ])?
        .unnest_column("period")?
        .build()?;

    let active = datafusion::functions::expr_fn::coalesce(vec![col("active"), lit(0i64)]);
    LogicalPlanBuilder::from(grid)
        .join(
            cells,
            JoinType::Left,
            (
                vec![Column::from_name("cohort"), Column::from_name("period")],
                vec![Column::from_name("c_cohort"), Column::from_name("c_period")],
            ),
            None,
        )?
        .project(vec![
            col("cohort"),
            col("period"),
            col("cohort_size"),
            active.clone().alias("active_customers"),
            (cast(active, DataType::Float64) / cast(col("cohort_size"), DataType::Float64))
                .alias("retention"),
            datafusion::functions::expr_fn::coalesce(vec![col("rev"), lit(0.0f64)])
                .alias("revenue"),
        ])?
        .sort(vec![
            col("cohort").sort(true, false),
            col("period").sort(true, false),
        ])?
        .build()
        .map_err(plan_err_ctx)
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
        self.view.scan(state, projection, filters, limit).await
    }
}

/// Internal: `n -> [0, 1, ..., n]` (empty for negative n), the periods of one cohort's row.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodRange {
    signature: Signature,
}

impl Default for PeriodRange {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PeriodRange {
    fn name(&self) -> &str {
        "lifecycle_period_range"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Int64,
            false,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.args[0].to_array(args.number_rows)?;
        let n = n.as_primitive::<Int64Type>();
        let mut lengths = Vec::with_capacity(n.len());
        let mut values = Vec::new();
        for v in n.iter() {
            let len = match v {
                Some(v) if v >= 0 => {
                    if v > 1_000_000 {
                        return exec_err!(
                            "cohort_retention: {v} periods is more than the 1,000,000 supported; use a coarser granularity"
                        );
                    }
                    v as usize + 1
                }
                _ => 0,
            };
            values.extend(0..len as i64);
            lengths.push(len);
        }
        let out: ArrayRef = Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Int64, false)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(Int64Array::from(values)),
            None,
        ));
        Ok(ColumnarValue::Array(out))
    }
}
