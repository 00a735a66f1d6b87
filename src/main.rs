use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lifecycle::generate::{GenerateOptions, Process, parse_date_us, write_parquet};
use lifecycle::output::Format;
use lifecycle::shell::{Shell, error_line};
use lifecycle::{SessionOptions, TableSpec, build_session, parse_memory_size};

#[derive(Parser)]
#[command(
    name = "lifecycle",
    version,
    about = "Customer-lifecycle analytics in SQL, on Apache DataFusion"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// SQL shell over Parquet files (the embedded sample when no --table is given).
    Sql {
        /// Register a table: NAME=PATH, PATH a Parquet file, a directory of Parquet files, or a glob.
        #[arg(long = "table", value_name = "NAME=PATH")]
        tables: Vec<TableSpec>,
        /// Run SQL (several statements separated by ';') or a backslash command, then exit.
        #[arg(short = 'c', long = "command", value_name = "SQL")]
        commands: Vec<String>,
        /// Run the SQL file, then exit (after every -c).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Bound query memory (e.g. 512M, 2G); larger sorts and aggregations spill to disk.
        #[arg(long, value_name = "SIZE", value_parser = parse_memory_size)]
        memory_limit: Option<usize>,
        /// Print row counts and elapsed time after each statement.
        #[arg(long)]
        timing: bool,
    },
    /// Write synthetic purchase history (buy-till-you-die) as Parquet.
    Generate {
        /// Number of customers.
        #[arg(long)]
        customers: u64,
        /// Output directory; writes DIR/purchases/*.parquet and DIR/customers/*.parquet.
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
    },
    /// Print the function reference (Markdown), generated from the functions' documentation.
    Docs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> datafusion::error::Result<()> {
    match cli.command {
        Command::Sql {
            tables,
            commands,
            files,
            format,
            memory_limit,
            timing,
        } => {
            let ctx = build_session(&SessionOptions {
                tables,
                memory_limit,
                target_partitions: None,
            })
            .await?;
            let mut shell = Shell::new(ctx, format);
            shell.timing = timing;
            if commands.is_empty() && files.is_empty() {
                shell.repl().await
            } else {
                shell.run_batch(&commands, &files).await
            }
        }
        Command::Generate {
            customers,
            out,
            seed,
            start,
            end,
            files,
        } => {
            let bad = |e: String| datafusion::error::DataFusionError::Configuration(e);
            let opts = GenerateOptions {
                customers,
                seed,
                start_us: parse_date_us(&start).map_err(bad)?,
                end_us: parse_date_us(&end).map_err(bad)?,
                process: Process::default(),
            };
            let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let b = indicatif::ProgressBar::new(customers);
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
            let (c, p) = write_parquet(opts, &out, files, |done| bar.set_position(done))?;
            bar.finish_and_clear();
            eprintln!("wrote {c} customers and {p} purchases to {}", out.display());
            Ok(())
        }
        Command::Docs => {
            print!("{}", lifecycle_udfs::function_docs());
            Ok(())
        }
    }
}
