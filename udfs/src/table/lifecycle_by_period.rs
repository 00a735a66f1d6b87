//! `lifecycle_by_period(table, granularity [, as_of])`: PostHog's lifecycle (new, returning,
//! resurrecting, dormant customers) per period. The query is the shipped SQL
//! `sql/functions/lifecycle_by_period.sql`, planned with the caller's session.

use std::sync::{Arc, LazyLock};

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::Documentation;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::arrow_cast;
use datafusion::logical_expr::lit;

use super::{
    as_of_bound, constant_arg, planned_sql, quoted_table, require_columns, resolve_table,
    string_arg,
};
use crate::support::doc::scalar_doc;
use crate::support::template::{expr, fill, literal};
use crate::support::time::{Granularity, check_temporal};

/// The SQL `lifecycle_by_period` runs (a [`crate::support::template`] with @table, @granularity,
/// @as_of_filter, @last_period and @step).
pub const LIFECYCLE_BY_PERIOD_SQL: &str =
    include_str!("../../../sql/functions/lifecycle_by_period.sql");

pub static LIFECYCLE_BY_PERIOD_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "PostHog's lifecycle on purchases, per period: for each customer, the distinct periods with at least one \
         order; in each, the customer is `new` (its first period), `returning` (it also ordered in the previous \
         period) or `resurrecting` (otherwise), and it is `dormant` in the single period right after each active \
         period in which it has no order. Output `period` (UTC period start, TIMESTAMP), `status`, `customers` \
         (dormant counts are positive; charts draw them negative), ordered by period then status, with every \
         period from the first order to `as_of` (or the last order) and all four statuses present (0 when none). \
         Orders after `as_of` and rows with a NULL `customer_id` or `order_ts` are ignored. `period` is a \
         TIMESTAMP in microseconds (it holds every DATE). The table needs `customer_id` and `order_ts`; the query is \
         `sql/functions/lifecycle_by_period.sql`.",
        "lifecycle_by_period(table, granularity [, as_of])",
        "SELECT period, status, customers FROM lifecycle_by_period('purchases', 'quarter', TIMESTAMP '2024-12-31')\nWHERE period >= TIMESTAMP '2024-07-01' ORDER BY period, status;",
    )
    .with_argument("table", "name of a table with customer_id and order_ts (TIMESTAMP or DATE)")
    .with_argument("granularity", "'day', 'week' (ISO, Monday), 'month', 'quarter' or 'year'")
    .with_argument("as_of", "optional constant TIMESTAMP or DATE: last period shown; later orders ignored")
    .build()
});

#[derive(Debug)]
pub struct LifecycleByPeriod;

impl TableFunctionImpl for LifecycleByPeriod {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const G: &str = "lifecycle_by_period";
        let exprs = args.exprs();
        let session = args.session();
        if !(2..=3).contains(&exprs.len()) {
            return plan_err!(
                "{G} takes 2 or 3 arguments (table, granularity [, as_of]), got {}",
                exprs.len()
            );
        }
        let table = string_arg(G, "table", &exprs[0], session)?;
        let granularity: Granularity = string_arg(G, "granularity", &exprs[1], session)?.parse()?;
        let provider = resolve_table(G, &table, session)?;
        require_columns(G, &table, provider.as_ref(), &["customer_id", "order_ts"])?;
        let schema = provider.schema();
        let ts_type = schema.field_with_name("order_ts")?.data_type();
        check_temporal(G, "order_ts", ts_type)?;
        let (filter, last) = match exprs.get(2) {
            Some(e) => {
                let v = constant_arg(G, "as_of", e, session)?;
                check_temporal(G, "as_of", &v.data_type())?;
                if v.is_null() {
                    return plan_err!("{G}: argument 'as_of' must not be NULL");
                }
                let period = crate::period::period_start_udf()
                    .call(vec![lit(granularity.as_str()), lit(v.clone())]);
                (
                    as_of_bound(ts_type, &v)?.sql("order_ts")?,
                    // arrow_cast, not CAST: SQL's TIMESTAMP is nanoseconds, which end in 2262.
                    expr(&arrow_cast(
                        period,
                        lit(DataType::Timestamp(TimeUnit::Microsecond, None).to_string()),
                    ))?,
                )
            }
            None => ("TRUE".to_string(), "NULL".to_string()),
        };
        let step = match granularity {
            Granularity::Day => "1 day",
            Granularity::Week => "7 days",
            Granularity::Month => "1 month",
            Granularity::Quarter => "3 months",
            Granularity::Year => "1 year",
        };
        let sql = fill(
            LIFECYCLE_BY_PERIOD_SQL,
            &[
                ("table", quoted_table(&table, session)),
                (
                    "granularity",
                    literal(&ScalarValue::from(granularity.as_str()))?,
                ),
                ("as_of_filter", filter),
                ("last_period", last),
                // A period length from the granularity (not user text).
                ("step", format!("INTERVAL '{step}'")),
            ],
        )?;
        planned_sql(G, session, &sql)
    }
}
