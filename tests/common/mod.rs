//! Helpers shared by the integration tests.

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use lifecycle::{SessionOptions, TableSpec, build_session};

/// A lifecycle session (all functions and options) with the given partitions and tables; with no
/// tables, the embedded sample.
pub async fn session(partitions: usize, tables: &[(&str, &str)]) -> SessionContext {
    build_session(&SessionOptions {
        tables: tables
            .iter()
            .map(|(n, p)| TableSpec {
                name: n.to_string(),
                path: p.to_string(),
            })
            .collect(),
        memory_limit: None,
        target_partitions: Some(partitions),
    })
    .await
    .expect("session")
}

/// Formats a float the way the .slt files write numbers: integers without a fraction, others
/// rounded to 10 decimals with trailing zeros dropped.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.10}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Rows of batches as strings (NULL for nulls), floats normalised with [`format_float`].
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = vec![];
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formatter"))
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| {
                        if c.is_null(r) {
                            return "NULL".to_string();
                        }
                        match c.data_type() {
                            DataType::Float64 => format_float(
                                c.as_any()
                                    .downcast_ref::<datafusion::arrow::array::Float64Array>()
                                    .expect("f64")
                                    .value(r),
                            ),
                            _ => f.value(r).to_string(),
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Runs a query and returns its rows as strings.
pub async fn query(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&batches)
}
