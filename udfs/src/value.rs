//! `customer_value(table, as_of [, horizon_days])`: one row per customer with the RFM summary,
//! BG/NBD and Gamma-Gamma predictions, CLV, lifecycle stage and RFM segment. The query is the
//! shipped SQL `sql/functions/customer_value.sql`, planned with the caller's session.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::Documentation;

use crate::cohort::{PlannedTable, constant_arg, require_columns, resolve_table, string_arg};
use crate::common::poll_once;
use crate::doc::scalar_doc;
use crate::time::{Granularity, TickUnit, check_temporal, civil_from_days, ticks_of};

/// The SQL the function runs, with `{{table}}`, `{{as_of}}`, `{{horizon_days}}` and `{{months}}`.
pub const CUSTOMER_VALUE_SQL: &str = include_str!("../../sql/functions/customer_value.sql");

const F: &str = "customer_value";
const USAGE: &str = "customer_value(table, as_of [, horizon_days])";

pub static CUSTOMER_VALUE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "One row per customer of `table` (columns `customer_id`, `order_ts`, `amount`) with orders at or before \
         `as_of`: `customer_id, frequency, recency, t, monetary_value` (`rfm_summary` in days), `p_alive` and \
         `expected_purchases` over the next `horizon_days` (default 365) from a BG/NBD model fitted on these \
         customers, `expected_value` per purchase from a Gamma-Gamma fit, `clv` over `horizon_days / 30` months \
         (rounded; 1% monthly discount), `stage` (`lifecycle_stage` at `as_of`) and `rfm_segment` (quintile R by \
         days since the last order, F by frequency, ties by customer_id). Unordered (add ORDER BY). The query is \
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

/// A SQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A constant instant as a SQL timestamp literal with nanoseconds (UTC).
fn timestamp_literal(v: &ScalarValue) -> Result<String> {
    let unit = TickUnit {
        unit: TimeUnit::Nanosecond,
    };
    let array = v.to_array()?;
    let (ticks, _) = ticks_of(&array, unit)?;
    let ns = ticks[0];
    let day = ns.div_euclid(unit.per_day());
    let rest = ns.rem_euclid(unit.per_day());
    let (y, m, d) = civil_from_days(day);
    let secs = rest / 1_000_000_000;
    Ok(format!(
        "TIMESTAMP '{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:09}'",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rest % 1_000_000_000
    ))
}

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
        let sql = CUSTOMER_VALUE_SQL
            .replace("{{table}}", &quote_ident(&table))
            .replace("{{as_of}}", &timestamp_literal(&as_of)?)
            .replace("{{horizon_days}}", &format!("{horizon:?}"))
            .replace("{{months}}", &format!("{months:.0}"));
        planned_sql(F, session, &sql)
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

/// The SQL `lifecycle_by_period` runs, with `{{table}}`, `{{granularity}}`, `{{as_of_filter}}`,
/// `{{last_period}}` and `{{step}}`.
pub const LIFECYCLE_BY_PERIOD_SQL: &str =
    include_str!("../../sql/functions/lifecycle_by_period.sql");

pub static LIFECYCLE_BY_PERIOD_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "PostHog's lifecycle on purchases, per period: for each customer, the distinct periods with at least one \
         order; in each, the customer is `new` (its first period), `returning` (it also ordered in the previous \
         period) or `resurrecting` (otherwise), and it is `dormant` in the single period right after each active \
         period in which it has no order. Output `period` (UTC period start, TIMESTAMP), `status`, `customers` \
         (dormant counts are positive; charts draw them negative), ordered by period then status, with every \
         period from the first order to `as_of` (or the last order) and all four statuses present (0 when none). \
         Orders after `as_of` are ignored. The table needs `customer_id` and `order_ts`; the query is \
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
        check_temporal(
            G,
            "order_ts",
            provider.schema().field_with_name("order_ts")?.data_type(),
        )?;
        let (filter, last) = match exprs.get(2) {
            Some(e) => {
                let v = constant_arg(G, "as_of", e, session)?;
                check_temporal(G, "as_of", &v.data_type())?;
                if v.is_null() {
                    return plan_err!("{G}: argument 'as_of' must not be NULL");
                }
                let lit = timestamp_literal(&v)?;
                (
                    format!("AND order_ts <= {lit}"),
                    format!("CAST(period_start('{granularity}', {lit}) AS TIMESTAMP)"),
                )
            }
            None => (String::new(), "max(period)".to_string()),
        };
        let step = match granularity {
            Granularity::Day => "1 day",
            Granularity::Week => "7 days",
            Granularity::Month => "1 month",
            Granularity::Quarter => "3 months",
            Granularity::Year => "1 year",
        };
        let sql = LIFECYCLE_BY_PERIOD_SQL
            .replace("{{table}}", &quote_ident(&table))
            .replace("{{granularity}}", &granularity.to_string())
            .replace("{{as_of_filter}}", &filter)
            .replace("{{last_period}}", &last)
            .replace("{{step}}", step);
        planned_sql(G, session, &sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(quote_ident("purchases"), "\"purchases\"");
        assert_eq!(quote_ident("s.t\"x"), "\"s\".\"t\"\"x\"");
        let v = ScalarValue::TimestampMicrosecond(Some(1_735_689_600_000_001), None);
        assert_eq!(
            timestamp_literal(&v).unwrap(),
            "TIMESTAMP '2025-01-01 00:00:00.000001000'"
        );
        let d = ScalarValue::Date32(Some(-1));
        assert_eq!(
            timestamp_literal(&d).unwrap(),
            "TIMESTAMP '1969-12-31 00:00:00.000000000'"
        );
    }
}
