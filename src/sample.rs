//! The embedded sample: 12,000 customers over three years (2022-01-01 to 2024-12-31), generated
//! deterministically at start-up by the same buy-till-you-die process as `lifecycle generate`,
//! and registered as in-memory tables `purchases` and `customers`.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

use crate::generate::{
    GenerateOptions, Process, customers_schema, generate_batches, parse_date_us, purchases_schema,
};

pub const SAMPLE_CUSTOMERS: u64 = 12_000;
pub const SAMPLE_SEED: u64 = 42;
pub const SAMPLE_START: &str = "2022-01-01";
pub const SAMPLE_END: &str = "2025-01-01";

pub fn sample_options() -> GenerateOptions {
    GenerateOptions {
        customers: SAMPLE_CUSTOMERS,
        seed: SAMPLE_SEED,
        start_us: parse_date_us(SAMPLE_START).expect("valid date"),
        end_us: parse_date_us(SAMPLE_END).expect("valid date"),
        process: Process::default(),
    }
}

/// Spreads batches over `n` partitions, round robin.
fn partitions(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let mut parts = vec![vec![]; n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    parts
}

/// Registers the sample's `purchases` and `customers` tables.
pub fn register(ctx: &SessionContext) -> Result<()> {
    let (customers, purchases) = generate_batches(sample_options(), 1_000)?;
    let n = ctx.copied_config().target_partitions().max(1);
    ctx.register_table(
        "purchases",
        Arc::new(MemTable::try_new(
            purchases_schema(),
            partitions(purchases, n),
        )?),
    )?;
    ctx.register_table(
        "customers",
        Arc::new(MemTable::try_new(
            customers_schema(),
            partitions(customers, n),
        )?),
    )?;
    Ok(())
}
