//! Helpers shared by the integration tests.

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
        cluster: None,
    })
    .await
    .expect("session")
}

pub use lifecycle_testkit::rows;

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

/// The plan of `sql` as text (EXPLAIN's rows, one line each).
pub async fn explain(ctx: &SessionContext, sql: &str) -> String {
    query(ctx, &format!("EXPLAIN {sql}"))
        .await
        .iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Generated data of the dense shape (about 11 purchases per customer, many per period, from
/// 2022-01-01 to 2024-07-01, with events) in `files` files per table: it exercises every
/// per-customer path more than the retail default does.
pub fn generate_dense(dir: &std::path::Path, customers: u64, files: u64, seed: u64) {
    use lifecycle_sample::generate::{
        AmountType, GenerateOptions, Process, parse_date_us, write_parquet,
    };
    write_parquet(
        GenerateOptions {
            customers,
            seed,
            start_us: parse_date_us("2022-01-01").unwrap(),
            end_us: parse_date_us("2024-07-01").unwrap(),
            process: Process::dense(),
            events: true,
            amount: AmountType::Decimal,
        },
        dir,
        files,
        |_| {},
    )
    .expect("generate");
}
