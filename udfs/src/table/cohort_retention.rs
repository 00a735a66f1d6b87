//! `cohort_retention(table, granularity [, as_of])`: the retention triangle as a table function.
//!
//! The function does not read the table: it resolves it in the session and returns a view over an
//! ordinary logical plan (aggregates, joins, unnest, sort), so the query runs partitioned, under
//! the session's memory limit, and spills like any other query:
//!
//! ```text
//! base    = table WHERE customer_id IS NOT NULL AND order_ts IS NOT NULL [AND order_ts <= as_of]
//! firsts  = base GROUP BY customer_id: cohort = period_start(min(order_ts))   (the one per-customer pass)
//! cells   = base JOIN firsts USING (customer_id)
//!           GROUP BY cohort, period, customer_id, then GROUP BY cohort, period
//!           GROUP BY cohort: array_agg({period, active, revenue}), latest order
//! end     = as_of, or max(latest order) OVER () across the (few) cohort rows
//! result  = unnest(lifecycle_cohort_fill(cells, period_diff(cohort, end))) ORDER BY cohort, period
//! ```
//!
//! DataFusion re-executes a subplan for every place it is used, so the plan uses each input once:
//! the table is read twice (the per-customer aggregate and the join's probe side) and aggregated by
//! customer once; the zero-filling happens per cohort, on data the size of the triangle.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{
    Column, DataFusionError, JoinType, Result, ScalarValue, exec_err, plan_err,
};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::functions_aggregate::expr_fn::{array_agg, count, max, min, sum};
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::logical_expr::WindowFunctionDefinition;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast, col, lit,
};

use super::{PlannedTable, as_of_bound, constant_arg, require_columns, resolve_table, string_arg};
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
        let plan = cohort_plan(provider, &ts_type, granularity, as_of)?;
        Ok(Arc::new(PlannedTable::new(plan)))
    }
}

fn plan_err_ctx(e: DataFusionError) -> DataFusionError {
    e.context("planning cohort_retention")
}

/// Builds the plan described in the module docs.
pub fn cohort_plan(
    provider: Arc<dyn TableProvider>,
    ts_type: &DataType,
    granularity: Granularity,
    as_of: Option<ScalarValue>,
) -> Result<LogicalPlan> {
    let g = lit(granularity.as_str());
    let diff = period_diff_udf();
    let start = period_start_udf();
    let fill = Arc::new(ScalarUDF::new_from_impl(CohortFill::default()));

    let mut filter = col("customer_id")
        .is_not_null()
        .and(col("order_ts").is_not_null());
    if let Some(a) = &as_of {
        filter = filter.and(as_of_bound(ts_type, a)?.expr(col("order_ts")));
    }
    let base = LogicalPlanBuilder::scan("t", provider_as_source(provider), None)?
        .filter(filter)?
        .project(vec![
            col("customer_id"),
            col("order_ts"),
            cast(col("amount"), DataType::Float64).alias("amount"),
        ])?
        .build()?;

    // Each customer's cohort: the one aggregation over every row by customer.
    let firsts = LogicalPlanBuilder::from(base.clone())
        .aggregate(
            vec![col("customer_id")],
            vec![min(col("order_ts")).alias("first_ts")],
        )?
        .project(vec![
            col("customer_id").alias("f_customer_id"),
            start.call(vec![g.clone(), col("first_ts")]).alias("cohort"),
        ])?
        .build()?;

    // Active customers and revenue per (cohort, period), carrying the latest order along.
    let cells = LogicalPlanBuilder::from(base)
        .join(
            firsts,
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
            col("order_ts"),
        ])?
        .aggregate(
            vec![col("cohort"), col("period"), col("customer_id")],
            vec![
                sum(col("amount")).alias("customer_revenue"),
                max(col("order_ts")).alias("c_last_ts"),
            ],
        )?
        .aggregate(
            vec![col("cohort"), col("period")],
            vec![
                count(lit(1)).alias("active"),
                sum(col("customer_revenue")).alias("rev"),
                max(col("c_last_ts")).alias("p_last_ts"),
            ],
        )?
        // One row per cohort with its observed cells; small from here on.
        .aggregate(
            vec![col("cohort")],
            vec![
                array_agg(named_struct(vec![
                    lit("period"),
                    col("period"),
                    lit("active"),
                    col("active"),
                    lit("rev"),
                    col("rev"),
                ]))
                .alias("cells"),
                max(col("p_last_ts")).alias("cohort_last_ts"),
            ],
        )?;

    // The triangle ends at the period of as_of, or of the latest order in the table.
    let with_end = match as_of {
        Some(a) => cells.project(vec![col("cohort"), col("cells"), lit(a).alias("end_ts")])?,
        None => {
            let latest = Expr::from(WindowFunction::new(
                WindowFunctionDefinition::AggregateUDF(max_udaf()),
                vec![col("cohort_last_ts")],
            ))
            .alias("end_ts");
            cells.window(vec![latest])?
        }
    };
    let filled = with_end
        .project(vec![
            col("cohort"),
            fill.call(vec![
                col("cohort"),
                col("cells"),
                diff.call(vec![g, col("cohort"), col("end_ts")]),
            ])
            .alias("row"),
        ])?
        .unnest_column("row")?;
    let field = |name: &str| get_field(col("row"), name).alias(name);
    filled
        // `cohort` is taken from the filled rows rather than the grouping column: DataFusion keeps
        // the per-cohort aggregate's key through the unnest and would then drop `period` from
        // the sort below as "determined by cohort".
        .project(vec![
            field("cohort"),
            field("period"),
            field("cohort_size"),
            field("active_customers"),
            field("retention"),
            field("revenue"),
        ])?
        .sort(vec![
            col("cohort").sort(true, false),
            col("period").sort(true, false),
        ])?
        .build()
        .map_err(plan_err_ctx)
}

/// The most periods a triangle may span (its earliest cohort to its end): a triangle of P
/// periods has up to P (P + 1) / 2 rows, so 5,000 periods (13 years of days) is 12.5M rows.
pub const MAX_TRIANGLE_PERIODS: i64 = 5_000;

fn fill_fields(cohort: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("cohort", cohort.clone(), false),
        Field::new("period", DataType::Int64, false),
        Field::new("cohort_size", DataType::Int64, false),
        Field::new("active_customers", DataType::Int64, false),
        Field::new("retention", DataType::Float64, false),
        Field::new("revenue", DataType::Float64, false),
    ])
}

/// Internal: one cohort's observed cells `[{period, active, rev}]` and its last period ->
/// every row of its triangle, periods `0 ..= last` zero-filled, with the cohort size (the
/// active customers of period 0, which every member of the cohort is by definition).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CohortFill {
    signature: Signature,
}

impl Default for CohortFill {
    fn default() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CohortFill {
    fn name(&self) -> &str {
        "lifecycle_cohort_fill"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(fill_fields(&arg_types[0])),
            false,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let cohorts = args.args[0].to_array(args.number_rows)?;
        let cells = args.args[1].to_array(args.number_rows)?;
        let cells = cells.as_list::<i32>();
        let last = args.args[2].to_array(args.number_rows)?;
        let last = last.as_primitive::<Int64Type>();
        let mut cohort_of_row: Vec<u32> = vec![];
        let (mut lengths, mut period, mut size, mut active, mut retention, mut revenue) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut cohort_active = vec![];
        let mut cohort_rev = vec![];
        for row in 0..cells.len() {
            let n = match last.is_valid(row).then(|| last.value(row)) {
                Some(v) if v >= 0 => {
                    if v >= MAX_TRIANGLE_PERIODS {
                        return exec_err!(
                            "cohort_retention: the triangle would span {} periods (cohort {} to the end), \
                             more than the {MAX_TRIANGLE_PERIODS} a triangle may have (up to {} rows); use a \
                             coarser granularity, an earlier as_of, or filter the table",
                            v + 1,
                            datafusion::arrow::util::display::ArrayFormatter::try_new(
                                cohorts.as_ref(),
                                &Default::default()
                            )?
                            .value(row),
                            MAX_TRIANGLE_PERIODS * (MAX_TRIANGLE_PERIODS + 1) / 2
                        );
                    }
                    v as usize + 1
                }
                _ => 0,
            };
            cohort_active.clear();
            cohort_active.resize(n, 0i64);
            cohort_rev.clear();
            cohort_rev.resize(n, 0f64);
            if cells.is_valid(row) {
                let s = cells.value(row);
                let s = s.as_struct();
                let p = s.column(0).as_primitive::<Int64Type>();
                let a = s.column(1).as_primitive::<Int64Type>();
                let r = s.column(2).as_primitive::<Float64Type>();
                for i in 0..s.len() {
                    let k = p.value(i);
                    if (0..n as i64).contains(&k) {
                        cohort_active[k as usize] = a.value(i);
                        cohort_rev[k as usize] = if r.is_valid(i) { r.value(i) } else { 0.0 };
                    }
                }
            }
            let cohort_size = cohort_active.first().copied().unwrap_or(0);
            for k in 0..n {
                cohort_of_row.push(row as u32);
                period.push(k as i64);
                size.push(cohort_size);
                active.push(cohort_active[k]);
                retention.push(if cohort_size > 0 {
                    cohort_active[k] as f64 / cohort_size as f64
                } else {
                    0.0
                });
                revenue.push(cohort_rev[k]);
            }
            lengths.push(n);
        }
        let fields = fill_fields(cohorts.data_type());
        let cohort = take(&cohorts, &UInt32Array::from(cohort_of_row), None)?;
        let rows = StructArray::new(
            fields.clone(),
            vec![
                cohort,
                Arc::new(Int64Array::from(period)) as ArrayRef,
                Arc::new(Int64Array::from(size)),
                Arc::new(Int64Array::from(active)),
                Arc::new(Float64Array::from(retention)),
                Arc::new(Float64Array::from(revenue)),
            ],
            None,
        );
        let out: ArrayRef = Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Struct(fields), false)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(rows),
            None,
        ));
        Ok(ColumnarValue::Array(out))
    }
}
