//! One way to fill the SQL the product ships (`sql/functions/` for the table functions,
//! `sql/reports/` for the reports).
//!
//! A template is runnable SQL: an analyst can read it and run it in the shell as it is. Each
//! parameter is a default value followed by a marker, `'month' /* @period */`, and filling
//! replaces the default (a quoted literal, optionally after TIMESTAMP / DATE / INTERVAL, a
//! number, or a word: an identifier, TRUE, NULL) in front of every such marker. A list
//! parameter is the text between `/* @name */` and `/* @end_name */`.
//!
//! Values are rendered by DataFusion, never pasted in: a constant through the SQL unparser
//! ([`literal`]), an expression likewise ([`expr`]), DATEs and timestamps exactly as their
//! integer ticks cast to their own type (any unit, zone and year, see [`instant`]), and a table
//! name resolved and quoted by the table functions themselves.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use datafusion::sql::unparser::expr_to_sql;

/// A constant as SQL text that plans back to the same value and type.
pub fn literal(v: &ScalarValue) -> Result<String> {
    if is_instant(&v.data_type()) {
        return instant(v);
    }
    Ok(expr_to_sql(&Expr::Literal(v.clone(), None))?.to_string())
}

/// An expression as SQL text (DataFusion's unparser; DATE and timestamp literals as [`instant`]).
/// A cast to a timestamp unparses as `CAST(.. AS TIMESTAMP)`, which SQL reads as nanoseconds:
/// cast with `arrow_cast` to keep another unit.
pub fn expr(e: &Expr) -> Result<String> {
    let e = e.clone().transform(|e| match e {
        Expr::Literal(v, _) if is_instant(&v.data_type()) && !v.is_null() => {
            let int = instant_int(&v.data_type());
            let ticks = v.cast_to(&int)?;
            Ok(Transformed::yes(
                datafusion::functions::core::expr_fn::arrow_cast(
                    datafusion::logical_expr::cast(Expr::Literal(ticks, None), int),
                    datafusion::logical_expr::lit(v.data_type().to_string()),
                ),
            ))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(expr_to_sql(&e.data)?.to_string())
}

fn is_instant(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    )
}

fn instant_int(t: &DataType) -> DataType {
    if *t == DataType::Date32 {
        DataType::Int32
    } else {
        DataType::Int64
    }
}

/// A constant DATE or timestamp as SQL text that plans back to the same value and type (any
/// unit, any time zone, any year): `arrow_cast` of its integer ticks. (DataFusion's own
/// `TIMESTAMP '...'` literal is in nanoseconds, which end in 2262.)
pub fn instant(v: &ScalarValue) -> Result<String> {
    let t = v.data_type();
    if !is_instant(&t) {
        return plan_err!("expected a TIMESTAMP or DATE, got {t}");
    }
    let int = instant_int(&t);
    let ticks = v.cast_to(&int)?;
    if ticks.is_null() {
        return plan_err!("expected a non-NULL TIMESTAMP or DATE");
    }
    let sql_int = if int == DataType::Int32 {
        "INT"
    } else {
        "BIGINT"
    };
    Ok(format!(
        "arrow_cast(CAST({ticks} AS {sql_int}), {})",
        literal(&ScalarValue::Utf8(Some(t.to_string())))?
    ))
}

/// Fills every `/* @name */` parameter of `sql` with its rendered value. A name the template
/// does not have is an error (the template and its caller drifted apart).
pub fn fill(sql: &str, params: &[(&str, String)]) -> Result<String> {
    let mut out = sql.to_string();
    for (name, value) in params {
        let marker = format!("/* @{name} */");
        if !out.contains(&marker) {
            return plan_err!("the SQL template has no parameter @{name}");
        }
        let end = format!("/* @end_{name} */");
        out = if out.contains(&end) {
            replace_range(&out, &marker, &end, value)
        } else {
            replace_defaults(&out, &marker, value)
        };
    }
    Ok(out)
}

/// Replaces the default value just before each `marker` with `value`.
fn replace_defaults(sql: &str, marker: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(pos) = rest.find(marker) {
        let before = rest[..pos].trim_end();
        out.push_str(&before[..default_start(before)]);
        out.push_str(value);
        out.push(' ');
        out.push_str(marker);
        rest = &rest[pos + marker.len()..];
    }
    out.push_str(rest);
    out
}

/// Where the default value that `before` ends with starts.
fn default_start(before: &str) -> usize {
    let b = before.as_bytes();
    if b.last() == Some(&b'\'') {
        let open = before[..b.len() - 1].rfind('\'').unwrap_or(0);
        let head = before[..open].trim_end();
        for kw in ["TIMESTAMP", "DATE", "INTERVAL"] {
            if head.to_ascii_uppercase().ends_with(kw) {
                return head.len() - kw.len();
            }
        }
        return open;
    }
    // A number, or a word (an identifier, possibly qualified and quoted, TRUE, NULL).
    before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '"')))
        .map_or(0, |i| i + 1)
}

/// Replaces the text between `open` and `close`.
fn replace_range(sql: &str, open: &str, close: &str, value: &str) -> String {
    match (sql.find(open), sql.find(close)) {
        (Some(a), Some(b)) if a < b => format!("{}{open} {value} {}", &sql[..a], &sql[b..]),
        _ => sql.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn defaults_are_replaced_in_front_of_their_markers() {
        let sql = "SELECT f(purchases /* @table */, 'month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */) \
                   + INTERVAL '1 month' /* @step */ + 604800 /* @window */ WHERE TRUE /* @filter */ \
                   AND x IN (/* @steps */ 1, 2 /* @end_steps */) AND y = 'month' /* @period */";
        let got = fill(
            sql,
            &[
                ("table", "\"datafusion\".\"public\".\"t\"".into()),
                ("period", literal(&ScalarValue::from("it's")).unwrap()),
                (
                    "as_of",
                    literal(&ScalarValue::Date32(Some(-135_140))).unwrap(),
                ),
                ("step", "INTERVAL '7 days'".into()),
                (
                    "window",
                    literal(&ScalarValue::Float64(Some(3600.0))).unwrap(),
                ),
                ("filter", expr(&col("a").lt_eq(lit(5i64))).unwrap()),
                ("steps", "3".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            "SELECT f(\"datafusion\".\"public\".\"t\" /* @table */, 'it''s' /* @period */, \
             arrow_cast(CAST(-135140 AS INT), 'Date32') /* @as_of */) \
             + INTERVAL '7 days' /* @step */ + 3600.0 /* @window */ WHERE (a <= 5) /* @filter */ \
             AND x IN (/* @steps */ 3 /* @end_steps */) AND y = 'it''s' /* @period */"
        );
        assert!(fill(sql, &[("nope", "1".into())]).is_err());
    }
}
