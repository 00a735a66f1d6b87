//! `customer_value(table, as_of [, horizon_days])`: one row per customer with the RFM summary,
//! BG/NBD and Gamma-Gamma predictions, CLV, lifecycle stage and RFM segment. The query is the
//! shipped SQL `sql/functions/customer_value.sql`, planned with the caller's session.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Documentation;

use super::{constant_arg, planned_sql, quoted_table, require_columns, resolve_table, string_arg};
use crate::support::doc::scalar_doc;
use crate::support::template::{fill, literal};
use crate::support::time::check_temporal;

/// The SQL the function runs (a [`crate::support::template`] with @table, @as_of, @horizon_days, @months).
pub const CUSTOMER_VALUE_SQL: &str = include_str!("../../../sql/functions/customer_value.sql");

const F: &str = "customer_value";
const USAGE: &str = "customer_value(table, as_of [, horizon_days])";

pub static CUSTOMER_VALUE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "One row per customer of `table` (columns `customer_id`, `order_ts`, `amount`) with orders at or before \
         `as_of`: `customer_id, frequency, recency, t, monetary_value` (`rfm_summary` in days; rows with a NULL \
         `customer_id` are ignored, as in every lifecycle table function; `monetary_value` is DECIMAL(38, s + 4), from \
         exact sums, when `amount` is a DECIMAL of scale s, and DOUBLE otherwise), `p_alive` and \
         `expected_purchases` over the next `horizon_days` (default 365) from a BG/NBD model fitted on these \
         customers, `expected_value` per purchase from a Gamma-Gamma fit, `clv` over `horizon_days / 30` months \
         (rounded; 1% monthly discount), `stage` (`lifecycle_stage` at `as_of`), `rfm_segment` (quintile R by \
         days since the last order, F by frequency, ties by customer_id) and `models_converged`. The fits need \
         data that supports them: when a fit does not converge (for example a handful of customers, or almost \
         only one-time buyers), `models_converged` is false and the predictions that need it are NULL; a \
         prediction is never negative or infinite. A few hundred customers, some with repeat purchases, \
         are a practical minimum. Unordered (add ORDER BY). The query is \
         `sql/functions/customer_value.sql`, readable and adaptable.",
        USAGE,
        "SELECT rfm_segment, count(*) AS customers, round(avg(p_alive), 3) AS avg_p_alive, round(sum(clv), 0) AS clv\nFROM customer_value('purchases', TIMESTAMP '2025-01-01')\nGROUP BY rfm_segment ORDER BY clv DESC;",
    )
    .with_argument("table", "name of a table with customer_id, order_ts (TIMESTAMP or DATE) and amount")
    .with_argument("as_of", "constant TIMESTAMP or DATE: end of the observation period")
    .with_argument("horizon_days", "constant positive number of days to predict over (default 365)")
    .build()
});

#[derive(Debug)]
pub struct CustomerValue;

impl TableFunctionImpl for CustomerValue {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let session = args.session();
        if !(2..=3).contains(&exprs.len()) {
            return plan_err!("{F} takes 2 or 3 arguments ({USAGE}), got {}", exprs.len());
        }
        let table = string_arg(F, "table", &exprs[0], session)?;
        let as_of = constant_arg(F, "as_of", &exprs[1], session)?;
        check_temporal(F, "as_of", &as_of.data_type())?;
        if as_of.is_null() {
            return plan_err!("{F}: argument 'as_of' must not be NULL");
        }
        let horizon = match exprs.get(2) {
            None => 365.0,
            Some(e) => match constant_arg(F, "horizon_days", e, session)?
                .cast_to(&DataType::Float64)
            {
                Ok(ScalarValue::Float64(Some(h))) if h > 0.0 && h.is_finite() => h,
                _ => return plan_err!("{F}: argument 'horizon_days' must be a positive number"),
            },
        };
        let provider = resolve_table(F, &table, session)?;
        require_columns(
            F,
            &table,
            provider.as_ref(),
            &["customer_id", "order_ts", "amount"],
        )?;
        let schema = provider.schema();
        check_temporal(
            F,
            "order_ts",
            schema.field_with_name("order_ts")?.data_type(),
        )?;
        let amount = schema.field_with_name("amount")?.data_type().clone();
        if !(amount.is_numeric() || amount.is_null()) {
            return plan_err!("{F}: column 'amount' must be numeric, got {amount}");
        }
        let months = (horizon / 30.0).round().max(1.0);
        let sql = fill(
            CUSTOMER_VALUE_SQL,
            &[
                ("table", quoted_table(&table, session)),
                ("as_of", literal(&as_of)?),
                (
                    "horizon_days",
                    literal(&ScalarValue::Float64(Some(horizon)))?,
                ),
                ("months", literal(&ScalarValue::Int64(Some(months as i64)))?),
            ],
        )?;
        planned_sql(F, session, &sql)
    }
}
