//! `lifecycle generate`: synthetic purchase, customer and event history as Parquet.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use datafusion::error::{DataFusionError, Result};
use lifecycle_sample::generate::{
    AmountType, GenerateOptions, Process, Shape, parse_date_us, write_parquet,
};

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
}

pub fn run(args: Args) -> Result<()> {
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
    let (c, p, e) = write_parquet(opts, &args.out, args.files, |done| bar.set_position(done))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {c} customers, {p} purchases and {e} events to {}",
        args.out.display()
    );
    Ok(())
}
