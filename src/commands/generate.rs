//! `lifecycle generate`: synthetic purchase, customer and event history as Parquet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use lifecycle_sample::generate::{
    AmountType, GenerateOptions, Process, Shape, parquet_writer, parse_date_us, write_parquet,
};

use crate::engine::config::parse_memory_size;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of customers.
    #[arg(long)]
    customers: u64,
    /// Output directory; writes DIR/{customers,purchases,events}/*.parquet.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// First day of signups and purchases (YYYY-MM-DD).
    #[arg(long, default_value = "2022-01-01")]
    start: String,
    /// End of the range, exclusive (YYYY-MM-DD).
    #[arg(long, default_value = "2025-01-01")]
    end: String,
    /// Number of files per table.
    #[arg(long, default_value_t = 8)]
    files: u64,
    /// Skip the site events table (events/): with the retail shape about 45 rows per
    /// customer (most of them anonymous visitors' browsing), with dense about 6 per purchase.
    #[arg(long)]
    no_events: bool,
    /// The population: `retail` (the CDNOW fits, mostly one-time buyers, a few percent of
    /// visitors buying) or `dense` (heavy repeat buyers, about 15 purchases each).
    #[arg(long, default_value = "retail",
          value_parser = PossibleValuesParser::new(Shape::NAMES).map(|s| s.parse::<Shape>().expect("a listed shape")))]
    shape: Shape,
    /// The type of purchases.amount: `decimal` (DECIMAL(12, 2), as money is kept in real order
    /// tables) or `double` (DOUBLE, as files written before).
    #[arg(long, default_value = "decimal",
          value_parser = PossibleValuesParser::new(AmountType::NAMES).map(|s| s.parse::<AmountType>().expect("a listed type")))]
    amount_type: AmountType,
    /// How rows are laid out: `time` (the default: purchases and events in time order across
    /// and within files, customers interleaved, as order tables and event logs are exported) or
    /// `customer` (each customer's rows consecutive, customers in id order).
    #[arg(long, value_enum, default_value_t = Layout::Time)]
    layout: Layout,
    /// Memory for the time sort (`--layout time`), e.g. 2G; beyond it the sort spills to disk.
    #[arg(long, default_value = "1G", value_parser = parse_memory_size)]
    memory_limit: usize,
}

/// How `generate` lays rows out (`--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// Purchases and events ordered by time across and within files.
    Time,
    /// Each customer's rows consecutive, customers in id order.
    Customer,
}

pub async fn run(args: Args) -> Result<()> {
    let bad = |e: String| DataFusionError::Configuration(e);
    let opts = GenerateOptions {
        customers: args.customers,
        seed: args.seed,
        start_us: parse_date_us(&args.start).map_err(bad)?,
        end_us: parse_date_us(&args.end).map_err(bad)?,
        process: Process::of(args.shape),
        events: !args.no_events,
        amount: args.amount_type,
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(args.customers);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} customers ({eta} left)",
            )
            .expect("valid template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let events = opts.events;
    let (c, p, e) = match args.layout {
        Layout::Customer => {
            write_parquet(opts, &args.out, args.files, |done| bar.set_position(done))?
        }
        Layout::Time => {
            // Simulated customer by customer into a scratch directory beside the output, then
            // each table sorted by time (DataFusion's spilling sort) into the final files.
            let scratch = args.out.join(".generate-scratch");
            let _ = std::fs::remove_dir_all(&scratch);
            let counts = write_parquet(opts, &scratch, args.files, |done| bar.set_position(done))?;
            bar.finish_and_clear();
            let mut tables = vec![("purchases", counts.1, "order_ts, order_id")];
            if events {
                tables.push((
                    "events",
                    counts.2,
                    "event_ts, customer_id, session_id, event_type",
                ));
            }
            let sorted =
                time_order(&scratch, &args.out, &tables, args.files, args.memory_limit).await;
            if sorted.is_ok() {
                replace_dir(&scratch.join("customers"), &args.out.join("customers"))?;
            }
            let _ = std::fs::remove_dir_all(&scratch);
            sorted?;
            counts
        }
    };
    bar.finish_and_clear();
    eprintln!(
        "wrote {c} customers, {p} purchases and {e} events to {}",
        args.out.display()
    );
    Ok(())
}

/// Sorts each `(table, rows, order)` of `scratch` by `order` into `files` files of `out/table`,
/// split by row count, so file K holds earlier rows than file K+1. Memory is bounded by
/// `memory_limit`: the sort spills beyond it.
async fn time_order(
    scratch: &Path,
    out: &Path,
    tables: &[(&str, u64, &str)],
    files: u64,
    memory_limit: usize,
) -> Result<()> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit)))
        .build_arc()?;
    // One sorter with the whole pool (a fair pool split between partitions left each merge too
    // little to merge its spills), and a merge reservation in proportion to it.
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_sort_spill_reservation_bytes(memory_limit / 8);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for &(name, rows, order) in tables {
        let src = scratch.join(name);
        let src = src.to_str().ok_or_else(|| {
            DataFusionError::Configuration(format!("not a UTF-8 path: {}", src.display()))
        })?;
        ctx.register_parquet(name, src, ParquetReadOptions::default())
            .await?;
        let df = ctx
            .sql(&format!("SELECT * FROM {name} ORDER BY {order}"))
            .await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await?;
        // Written beside the final directory, then swapped in: a failed sort leaves no half table.
        let staged = scratch.join(format!("{name}.sorted"));
        std::fs::create_dir_all(&staged)?;
        let per_file = rows.div_ceil(files.max(1)).max(1);
        let (mut file_no, mut in_file) = (0u64, 0u64);
        let mut w = parquet_writer(&staged, file_no, Arc::clone(&schema))?;
        while let Some(batch) = stream.next().await {
            let mut batch = batch?;
            while batch.num_rows() > 0 {
                if in_file == per_file {
                    w.close()?;
                    file_no += 1;
                    in_file = 0;
                    w = parquet_writer(&staged, file_no, Arc::clone(&schema))?;
                }
                let take = (per_file - in_file).min(batch.num_rows() as u64) as usize;
                w.write(&batch.slice(0, take))?;
                in_file += take as u64;
                batch = batch.slice(take, batch.num_rows() - take);
            }
        }
        w.close()?;
        ctx.deregister_table(name)?;
        replace_dir(&staged, &out.join(name))?;
    }
    Ok(())
}

/// Moves directory `from` to `to`, replacing what was there.
fn replace_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::rename(from, to)?;
    Ok(())
}
