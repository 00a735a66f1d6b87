//! `lifecycle sql`: the shell, batch or interactive.

use std::path::PathBuf;

use datafusion::error::Result;

use super::ClientSessionFlags;
use crate::shell::Shell;
use crate::shell::output::{DEFAULT_MAX_ROWS, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    session: ClientSessionFlags,
    /// Run SQL (several statements separated by ';') or a backslash command, then exit.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the SQL file, then exit (after every -c).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Print row counts and elapsed time after each statement.
    #[arg(long)]
    timing: bool,
    /// Rows the table format shows at most (0: all); csv, json and ndjson stream every row.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ROWS)]
    max_rows: usize,
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.session.build().await?;
    let mut shell = Shell::new(ctx, args.format);
    shell.timing = args.timing;
    shell.max_rows = (args.max_rows > 0).then_some(args.max_rows);
    if args.commands.is_empty() && args.files.is_empty() {
        shell.repl().await
    } else {
        shell.run_batch(&args.commands, &args.files).await
    }
}
