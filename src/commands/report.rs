//! `lifecycle report`: cohort, lifecycle, growth, value and funnel reports.

use std::path::PathBuf;

use datafusion::error::Result;

use super::ClientSessionFlags;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::report::{
    Mode, Period, ReportFormat, ReportKind, ReportOptions, kind_names, parse_window,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which report.
    #[arg(value_parser = PossibleValuesParser::new(kind_names())
        .map(|name| crate::report::kind(&name).expect("a listed kind")))]
    kind: &'static dyn ReportKind,
    #[command(flatten)]
    session: ClientSessionFlags,
    /// Period of cohorts, stages and growth.
    #[arg(long, value_enum, default_value = "month")]
    period: Period,
    /// Judge everything at this date or timestamp (default: the latest order or event).
    #[arg(long, value_name = "TS")]
    as_of: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Funnel steps: event types in order (funnel report).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "visit,view,cart,checkout,purchase"
    )]
    steps: Vec<String>,
    /// Funnel window: 7d, 12h, 30m or seconds (funnel report).
    #[arg(long, default_value = "7d", value_parser = parse_window)]
    window: f64,
    /// Cohort retention: bounded (active in period n; the default) or unbounded (active in
    /// period n or later) (cohort report).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// One cohort triangle or funnel per value of COLUMN, each customer attributed the value
    /// of its first order or event; a column of purchases / events, or of customers
    /// (cohort and funnel reports).
    #[arg(long, value_name = "COLUMN")]
    breakdown: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.session.build().await?;
    let opts = ReportOptions {
        kind: args.kind,
        period: args.period,
        as_of: args.as_of,
        format: args.format,
        out: args.out,
        steps: args
            .steps
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        window_seconds: args.window,
        mode: args.mode,
        breakdown: args.breakdown,
    };
    crate::report::run(&ctx, &opts).await
}
