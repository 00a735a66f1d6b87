//! `cohort_retention(table, granularity [, as_of])`: the retention triangle as a table function.
//!
//! The function does not read the table: it resolves it in the session and returns a view over an
//! ordinary logical plan (two aggregates, unnest, sort), so the query runs partitioned, under the
//! session's memory limit, and spills like any other query. The table is read once:
//!
//! ```text
//! base      = table WHERE customer_id IS NOT NULL AND order_ts IS NOT NULL [AND order_ts <= as_of]
//! customers = base GROUP BY customer_id:
//!             c = lifecycle_cohort_customer(order_ts, amount, granularity)
//!                 -- {cohort, cohort_index, periods: [offset], revenue: [sum]} per customer
//! triangle  = customers (no GROUP BY): lifecycle_cohort_triangle(c, end)
//!                 -- every zero-filled row of the triangle, as one list
//! result    = unnest(triangle) ORDER BY cohort, period
//! ```
//!
//! `lifecycle_cohort_customer` is a groups accumulator over the kernel's `KeyedSums` (a flat slot
//! per customer plus a shared log, no per-customer allocation); its states are lists, so the
//! per-customer aggregate spills like any GROUP BY, and it runs in one phase after a hash
//! repartition by customer (see `single_phase`).
//! `lifecycle_cohort_triangle` adds customers into dense per-cohort cells (partial per partition,
//! merged once). `end` is as_of's period index, or NULL for the latest period with any order.
//! Both are internal: planned here, not registered as SQL functions.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Fields, Float64Type, Int64Type,
};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions_aggregate::expr_fn::first_value;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator,
    LogicalPlan, LogicalPlanBuilder, Signature, Volatility, cast, col, lit,
};
use datafusion::physical_expr::PhysicalExpr;

use super::{PlannedTable, as_of_bound, constant_arg, require_columns, resolve_table, string_arg};
use crate::period::period_start_type;
use crate::support::doc::scalar_doc;
use crate::support::time::{Granularity, TickUnit, check_temporal, periods_of, ticks_of};
use crate::support::{list_array, list_of, list_state_fields, money, row_mask};
use kernel::Mode;

mod aggregates;
pub mod kernel;

pub use aggregates::{COHORT_CUSTOMER, internal_aggregates};
pub use kernel::MAX_TRIANGLE_PERIODS;

pub static COHORT_RETENTION_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Table function: the whole retention triangle of a purchases table. One row per cohort (start of \
         the first-purchase period) and period (0, 1, ... up to the period of the latest order, or of \
         `as_of`), zero-filled, ordered by cohort then period, with columns `cohort` TIMESTAMP, `period` \
         BIGINT, `cohort_size` BIGINT, `active_customers` BIGINT, `retention` DOUBLE (active / size), `revenue` \
         (sum of the cohort's non-NULL amounts in the period), `cumulative_revenue` (periods 0 through this one: \
         the cohort's value curve) and `revenue_retention` DOUBLE (revenue in the period / revenue in period 0; \
         NULL when period 0's revenue is 0). Revenue is DECIMAL(38, s), summed exactly, when `amount` is a \
         DECIMAL of scale s, and DOUBLE otherwise. `mode` 'bounded' (the default) counts a customer active in \
         period n when it ordered in period n; 'unbounded' when it ordered in period n or any later period \
         (PostHog's \"on or after\" retention; revenue is unchanged). With a `breakdown` column, each customer is \
         attributed the value of its first order (first touch; of several first orders at one instant, the \
         smallest value), and the result has one triangle per value (NULL is a value) with a `breakdown` column \
         first, ordered by breakdown (NULL last), cohort, period; each triangle runs to its own customers' latest \
         order (or to `as_of`), so it equals the plain triangle of a table holding just those customers. The \
         table needs columns `customer_id`, `order_ts` (TIMESTAMP or DATE) and `amount`; rows with a NULL \
         customer_id or order_ts are ignored, and so are orders after `as_of`. Periods are calendar periods in \
         UTC. The optional arguments are positional, and `as_of` may be left out before `mode`: DataFusion 55 \
         rejects named arguments (`mode => 'unbounded'`) in table functions.",
        "cohort_retention(table, granularity [, as_of] [, mode [, breakdown]])",
        "SELECT cohort, period, cohort_size, round(retention * 100, 1) AS pct, cumulative_revenue\nFROM cohort_retention('purchases', 'month', 'unbounded')\nWHERE period <= 3;",
    )
    .with_argument("table", "name of a table (or view) in the session, as a string")
    .with_argument("granularity", "'day', 'week', 'month', 'quarter' or 'year'")
    .with_argument("as_of", "optional TIMESTAMP or DATE: ignore later orders and extend the triangle to it")
    .with_argument("mode", "optional 'bounded' (default) or 'unbounded'")
    .with_argument("breakdown", "optional name of a column of the table: one triangle per value of the customer's first order")
    .build()
});

#[derive(Debug, Default)]
pub struct CohortRetention;

const USAGE: &str = "cohort_retention(table, granularity [, as_of] [, mode [, breakdown]])";

/// What a `cohort_retention` call asks for, beyond the table.
#[derive(Debug, Clone, Default)]
pub struct CohortOptions {
    pub as_of: Option<ScalarValue>,
    pub mode: Mode,
    pub breakdown: Option<String>,
}

impl CohortOptions {
    /// Reads the arguments after `table, granularity`: an optional temporal `as_of`, then the
    /// optional strings `mode` and `breakdown`.
    fn parse(exprs: &[Expr], session: &dyn Session) -> Result<Self> {
        const F: &str = "cohort_retention";
        let mut options = CohortOptions::default();
        let mut rest = exprs;
        if let Some(e) = rest.first() {
            let v = constant_arg(F, "as_of", e, session)?;
            if !matches!(
                v,
                ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_)
            ) {
                check_temporal(F, "as_of", &v.data_type())?;
                if v.is_null() {
                    return plan_err!("{F}: argument 'as_of' must not be NULL");
                }
                options.as_of = Some(v);
                rest = &rest[1..];
            }
        }
        if let Some(e) = rest.first() {
            let mode = string_arg(F, "mode", e, session)?;
            options.mode = mode.parse().or_else(|msg: String| {
                let hint = if options.as_of.is_none() && rest.len() == exprs.len() {
                    " (an as_of there must be a TIMESTAMP or DATE, e.g. DATE '2024-01-31')"
                } else {
                    ""
                };
                plan_err!("{F}: {msg}{hint}")
            })?;
            rest = &rest[1..];
        }
        if let Some(e) = rest.first() {
            options.breakdown = Some(string_arg(F, "breakdown", e, session)?);
            rest = &rest[1..];
        }
        if !rest.is_empty() {
            return plan_err!("{F}: an argument follows breakdown ({USAGE})");
        }
        Ok(options)
    }
}

impl TableFunctionImpl for CohortRetention {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "cohort_retention";
        let exprs = args.exprs();
        let session = args.session();
        if !(2..=5).contains(&exprs.len()) {
            return plan_err!("{F} takes 2 to 5 arguments ({USAGE}), got {}", exprs.len());
        }
        let table = string_arg(F, "table", &exprs[0], session)?;
        let granularity: Granularity = string_arg(F, "granularity", &exprs[1], session)?.parse()?;
        let options = CohortOptions::parse(&exprs[2..], session)?;
        let provider = resolve_table(F, &table, session)?;
        let mut needed = vec!["customer_id", "order_ts", "amount"];
        if let Some(b) = &options.breakdown {
            needed.push(b);
        }
        require_columns(F, &table, provider.as_ref(), &needed)?;
        let schema = provider.schema();
        let ts_type = schema.field_with_name("order_ts")?.data_type().clone();
        check_temporal(F, "order_ts", &ts_type)?;
        let amount_type = schema.field_with_name("amount")?.data_type().clone();
        if !(amount_type.is_numeric() || amount_type.is_null()) {
            return plan_err!("{F}: column 'amount' must be numeric, got {amount_type}");
        }
        let plan = cohort_plan(provider, &ts_type, &amount_type, granularity, options)?;
        Ok(Arc::new(PlannedTable::new(plan)))
    }
}

fn plan_err_ctx(e: DataFusionError) -> DataFusionError {
    e.context("planning cohort_retention")
}

/// The type revenue is summed and returned in: DECIMAL(38, s) for a DECIMAL amount of scale s
/// (exact), DOUBLE otherwise.
pub fn revenue_type(amount: &DataType) -> DataType {
    crate::support::money::amount_type(amount)
}

/// Builds the plan described in the module docs.
pub fn cohort_plan(
    provider: Arc<dyn TableProvider>,
    ts_type: &DataType,
    amount_type: &DataType,
    granularity: Granularity,
    options: CohortOptions,
) -> Result<LogicalPlan> {
    let mut filter = col("customer_id")
        .is_not_null()
        .and(col("order_ts").is_not_null());
    let end = match &options.as_of {
        Some(a) => {
            filter = filter.and(as_of_bound(ts_type, a)?.expr(col("order_ts")));
            lit(period_index_of(granularity, a)?)
        }
        None => lit(ScalarValue::Int64(None)),
    };
    let mode = lit(match options.mode {
        Mode::Bounded => "bounded",
        Mode::Unbounded => "unbounded",
    });
    let [customer, triangle] = internal_aggregates();
    let field = |name: &str| get_field(col("r"), name).alias(name);
    let mut columns = vec![
        col("customer_id"),
        col("order_ts"),
        cast(col("amount"), revenue_type(amount_type)).alias("amount"),
    ];
    let mut per_customer = vec![
        customer
            .call(vec![
                col("order_ts"),
                col("amount"),
                lit(granularity.as_str()),
            ])
            .alias("c"),
    ];
    // With a breakdown: the value of each customer's first order (ties: the smallest value).
    let by = match &options.breakdown {
        Some(b) => {
            columns.push(Expr::Column(Column::from_name(b)).alias("breakdown"));
            per_customer.push(
                first_value(
                    col("breakdown"),
                    vec![
                        col("order_ts").sort(true, false),
                        col("breakdown").sort(true, false),
                    ],
                )
                .alias("breakdown"),
            );
            vec![col("breakdown")]
        }
        None => vec![],
    };
    let mut out = by.clone();
    out.extend([
        field("cohort"),
        field("period"),
        field("cohort_size"),
        field("active_customers"),
        field("retention"),
        field("revenue"),
        field("cumulative_revenue"),
        field("revenue_retention"),
    ]);
    let mut order: Vec<_> = by.iter().map(|b| b.clone().sort(true, false)).collect();
    order.extend([
        col("cohort").sort(true, false),
        col("period").sort(true, false),
    ]);
    // The triangle is grouped by `k` and carries the breakdown value out as an aggregate:
    // DataFusion 55's Unnest keeps its input's functional dependencies, so with the group key
    // itself in the output it would take every row of a breakdown's triangle for one row and
    // drop the cohort and period sort keys (`ORDER BY k, x` over `unnest` of a grouped
    // aggregate returns unsorted x). Projecting `k` away drops the dependency.
    let (group_by, mut triangle_aggs) = match &options.breakdown {
        Some(_) => (
            vec![col("breakdown").alias("k")],
            vec![first_value(col("breakdown"), vec![]).alias("breakdown")],
        ),
        None => (vec![], vec![]),
    };
    triangle_aggs.push(triangle.call(vec![col("c"), end, mode]).alias("row"));
    let mut with_row = by.clone();
    with_row.push(col("row"));
    let mut with_r = by.clone();
    with_r.push(col("row").alias("r"));
    LogicalPlanBuilder::scan("t", provider_as_source(provider), None)?
        .filter(filter)?
        .project(columns)?
        .aggregate(vec![col("customer_id")], per_customer)?
        .alias("customers")?
        .aggregate(group_by, triangle_aggs)?
        // (Projections around the unnest, as the SQL planner makes them: the shape DataFusion's
        // unparser writes back as `SELECT UNNEST(row) AS r`, which the Python package runs.)
        .alias("triangle")?
        .project(with_row)?
        .unnest_column("row")?
        .project(with_r)?
        .project(out)?
        .sort(order)?
        .build()
        .map_err(plan_err_ctx)
}

/// The period index of a constant instant.
fn period_index_of(granularity: Granularity, v: &ScalarValue) -> Result<i64> {
    let array = v.to_array()?;
    let unit = TickUnit::common(&[array.data_type()])?;
    let (ticks, _) = ticks_of(&array, unit)?;
    Ok(granularity.period_index(unit.day_of(ticks[0])))
}
