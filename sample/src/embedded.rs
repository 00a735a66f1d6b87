//! The embedded sample: 12,000 customers over three years (2022-01-01 to 2024-12-31), generated
//! deterministically at start-up by the same buy-till-you-die process as `lifecycle generate`,
//! and registered as in-memory tables `purchases` and `customers`; plus `cdnow`, the CDNOW
//! purchase sample of the BG/NBD paper (2,357 customers, 1997-1998), embedded from
//! `sample/data/cdnow/CDNOW_sample.txt`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::MemTable;
use datafusion::error::DataFusionError;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

use crate::generate::{
    AmountType, GenerateOptions, Process, customers_schema, events_schema, generate_batches,
    parse_date_us, purchases_schema,
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
        events: true,
        amount: AmountType::Decimal,
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

/// The sample's tables as batches: `purchases`, `events`, `cdnow` and `customers`, each with its
/// schema (what `register` registers, and what the Python package hands to DataFusion Python).
pub fn tables() -> Result<Vec<(&'static str, SchemaRef, Vec<RecordBatch>)>> {
    let t = generate_batches(sample_options(), 1_000)?;
    let cdnow = parse_cdnow(CDNOW_TEXT)?;
    Ok(vec![
        (
            "purchases",
            purchases_schema(AmountType::Decimal),
            t.purchases,
        ),
        ("events", events_schema(), t.events),
        ("cdnow", cdnow.schema(), vec![cdnow]),
        ("customers", customers_schema(), t.customers),
    ])
}

/// Registers the sample's tables (see [`tables`]), spread over the session's partitions.
pub fn register(ctx: &SessionContext) -> Result<()> {
    let n = ctx.copied_config().target_partitions().max(1);
    for (name, schema, batches) in tables()? {
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(schema, partitions(batches, n))?),
        )?;
    }
    Ok(())
}

/// The CDNOW sample as shipped by its authors (whitespace-separated: master id, customer id,
/// YYYYMMDD, CDs, dollars).
pub const CDNOW_TEXT: &str = include_str!("../data/cdnow/CDNOW_sample.txt");

/// Parses the CDNOW text into a batch: customer_id, order_ts (midnight UTC), cds, amount.
pub fn parse_cdnow(text: &str) -> Result<RecordBatch> {
    let (mut id, mut ts, mut cds, mut amount) = (vec![], vec![], vec![], vec![]);
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad =
            || DataFusionError::Execution(format!("CDNOW line {}: cannot parse '{line}'", n + 1));
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return Err(bad());
        }
        let date = f[2];
        if date.len() != 8 {
            return Err(bad());
        }
        let iso = format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]);
        id.push(f[1].parse::<i64>().map_err(|_| bad())?);
        ts.push(parse_date_us(&iso).map_err(|_| bad())?);
        cds.push(f[3].parse::<i32>().map_err(|_| bad())?);
        amount.push(f[4].parse::<f64>().map_err(|_| bad())?);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new(
            "order_ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("cds", DataType::Int32, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(id)) as ArrayRef,
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(Int32Array::from(cds)),
            Arc::new(Float64Array::from(amount)),
        ],
    )?)
}
