use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lifecycle::generate::{GenerateOptions, Process, parse_date_us, write_parquet};
use lifecycle::output::Format;
use lifecycle::shell::{Shell, error_line};
use lifecycle::{SessionFlags, SessionOptions, build_session};

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
        #[command(flatten)]
        session: SessionFlags,
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
        #[arg(long, value_name = "N", default_value_t = lifecycle::output::DEFAULT_MAX_ROWS)]
        max_rows: usize,
        /// File holding the cluster's token (with --cluster; the same as --cluster-token-file).
        #[arg(
            long,
            value_name = "FILE",
            requires = "cluster",
            conflicts_with = "cluster_token_file"
        )]
        token_file: Option<PathBuf>,
    },
    /// Arrow Flight SQL and Postgres-protocol server: the shell's tables and functions for BI
    /// tools (ADBC, JDBC, psql, psycopg, Metabase, Grafana, DBeaver).
    Serve {
        /// Flight SQL address [default: 127.0.0.1:50051, unless only --pg-listen is given].
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Also (or only) serve the PostgreSQL wire protocol on this address, e.g. 127.0.0.1:5432.
        #[arg(long, value_name = "ADDR")]
        pg_listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        session: SessionFlags,
        /// File holding the access token: Flight SQL calls must carry `authorization: Bearer
        /// <token>`, Postgres clients give it as the password (SCRAM-SHA-256, any user name).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// TLS certificate (PEM), for both protocols; needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM); needs --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Queries running at once; more wait their turn (default: cores x 2).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_concurrent_queries: Option<u64>,
        /// Connections open at once on each listener; beyond it a client is refused (Postgres:
        /// SQLSTATE 53300, Flight SQL: RESOURCE_EXHAUSTED).
        #[arg(long, value_name = "N", default_value_t = lifecycle::server::DEFAULT_MAX_CONNECTIONS,
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        max_connections: u64,
        /// The longest statement a client may send, in bytes (longer ones are refused).
        #[arg(long, value_name = "BYTES", default_value_t = lifecycle::limits::DEFAULT_MAX_STATEMENT_BYTES as u64,
              value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
        max_statement_bytes: u64,
        /// Seconds a result may be left unread (a suspended portal, an open cursor, a client
        /// that stopped reading) before its query slot is given back to others; reading it
        /// afterwards is an error.
        #[arg(long, value_name = "SECONDS", default_value_t = lifecycle::server::DEFAULT_IDLE_RESULT_TIMEOUT.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        idle_result_timeout: u64,
    },
    /// Write synthetic purchase history (buy-till-you-die) as Parquet.
    Generate {
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
        #[arg(long, value_enum, default_value = "retail")]
        shape: lifecycle::generate::Shape,
    },
    /// Cohort, lifecycle, growth, value and funnel reports (terminal, CSV, JSON or HTML).
    Report {
        /// Which report.
        #[arg(value_enum)]
        kind: lifecycle::report::Kind,
        #[command(flatten)]
        session: SessionFlags,
        /// Period of cohorts, stages and growth.
        #[arg(long, value_enum, default_value = "month")]
        period: lifecycle::report::Period,
        /// Judge everything at this date or timestamp (default: the latest order or event).
        #[arg(long, value_name = "TS")]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: lifecycle::report::ReportFormat,
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
        #[arg(long, default_value = "7d", value_parser = lifecycle::report::parse_window)]
        window: f64,
        /// Cohort retention: bounded (active in period n; the default) or unbounded (active in
        /// period n or later) (cohort report).
        #[arg(long, value_enum)]
        mode: Option<lifecycle::report::Mode>,
        /// One cohort triangle or funnel per value of COLUMN, each customer attributed the value
        /// of its first order or event; a column of purchases / events, or of customers
        /// (cohort and funnel reports).
        #[arg(long, value_name = "COLUMN")]
        breakdown: Option<String>,
        /// File holding the cluster's token (with --cluster; the same as --cluster-token-file).
        #[arg(
            long,
            value_name = "FILE",
            requires = "cluster",
            conflicts_with = "cluster_token_file"
        )]
        token_file: Option<PathBuf>,
    },
    /// A cluster scheduler (Apache DataFusion Ballista) with every lifecycle function: clients
    /// connect with `--cluster df://HOST:PORT`, executors with `--scheduler HOST:PORT`.
    Scheduler {
        #[command(flatten)]
        args: lifecycle::cluster::SchedulerArgs,
    },
    /// A cluster executor (Apache DataFusion Ballista) with every lifecycle function.
    Executor {
        #[command(flatten)]
        args: lifecycle::cluster::ExecutorArgs,
    },
    /// Print the function reference (Markdown), generated from the functions' documentation.
    Docs,
}

/// mimalloc instead of the system allocator: DataFusion's aggregations and the lifecycle
/// aggregates allocate and free vectors of megabytes per batch and per emit; glibc returns such
/// blocks to the kernel (mmap) and every reuse faults fresh zeroed pages in again. Measured
/// effect: see the README's performance section.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc asks for them (`madvise(MADV_HUGEPAGE)`)
/// on its large regions, and where the system honours the request (THP `madvise` mode, the
/// default of many distributions) every first touch zeroes 2 MiB, again after each purge: the
/// kernel's page zeroing was 30-50% of a GROUP BY's profile. Disabling them (what
/// `MIMALLOC_ALLOW_THP=0` does) cut system time 3-4x and wall time 25-45% on the per-customer
/// queries (README, Performance). Best effort: an error leaves the system default.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag
    // of the calling process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    lifecycle::logging::init_with_default(match cli.command {
        Command::Scheduler { .. } => "warn,lifecycle::cluster=info",
        _ => "",
    });
    // Queries are planned and executed on the runtime's workers and on the thread driving the
    // shell or server; each gets a stack that every expression the depth limit allows fits in
    // (lifecycle::limits), instead of the 2 MiB that a deep expression overflows.
    let stack = lifecycle::limits::THREAD_STACK_BYTES;
    let driver = std::thread::Builder::new()
        .name("lifecycle-main".into())
        .stack_size(stack)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(stack)
                .build()
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            runtime.block_on(run(cli))
        });
    let result = match driver.map(|t| t.join()) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => return ExitCode::from(101),
        Err(e) => Err(datafusion::error::DataFusionError::External(Box::new(e))),
    };
    match result {
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
            mut session,
            commands,
            files,
            format,
            timing,
            max_rows,
            token_file,
        } => {
            session.cluster_token_file = session.cluster_token_file.or(token_file);
            let ctx = build_session(&session.options()).await?;
            let mut shell = Shell::new(ctx, format);
            shell.timing = timing;
            shell.max_rows = (max_rows > 0).then_some(max_rows);
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
            no_events,
            shape,
        } => {
            let bad = |e: String| datafusion::error::DataFusionError::Configuration(e);
            let opts = GenerateOptions {
                customers,
                seed,
                start_us: parse_date_us(&start).map_err(bad)?,
                end_us: parse_date_us(&end).map_err(bad)?,
                process: Process::of(shape),
                events: !no_events,
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
            let (c, p, e) = write_parquet(opts, &out, files, |done| bar.set_position(done))?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {c} customers, {p} purchases and {e} events to {}",
                out.display()
            );
            Ok(())
        }
        Command::Serve {
            listen,
            pg_listen,
            session,
            token_file,
            tls_cert,
            tls_key,
            max_concurrent_queries,
            max_connections,
            max_statement_bytes,
            idle_result_timeout,
        } => {
            let token = token_file
                .as_deref()
                .map(lifecycle::secrets::read_token_file)
                .transpose()?;
            // The cluster's token is never the one the server's clients know: with it they could
            // submit plans to the scheduler themselves, past the server's read-only limits.
            if let (Some(client), Some(cluster_file)) = (&token, &session.cluster_token_file)
                && lifecycle::secrets::read_token_file(cluster_file)? == *client
            {
                return Err(datafusion::error::DataFusionError::Configuration(
                    "--cluster-token-file holds the same token as --token-file: the cluster's \
                     token must be one the server's clients do not know (they could otherwise \
                     submit plans to the cluster directly, past the server's limits)"
                        .into(),
                ));
            }
            // The server bounds memory per query (see ServeOptions::memory_limit).
            let ctx = build_session(&SessionOptions {
                memory_limit: None,
                ..session.options()
            })
            .await?;
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            let default_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 50051));
            let opts = lifecycle::server::ServeOptions {
                listen: listen.or(pg_listen.is_none().then_some(default_listen)),
                pg_listen,
                token,
                tls: tls_cert.zip(tls_key),
                max_concurrent_queries: max_concurrent_queries.map_or(cores * 2, |n| n as usize),
                max_connections: max_connections as usize,
                max_statement_bytes: max_statement_bytes as usize,
                idle_result_timeout: std::time::Duration::from_secs(idle_result_timeout),
                memory_limit: session.memory_limit,
                shutdown_grace: std::time::Duration::from_secs(10),
            };
            lifecycle::server::serve(ctx, opts, None, lifecycle::server::shutdown_signal()).await
        }
        Command::Report {
            kind,
            session,
            period,
            as_of,
            format,
            out,
            steps,
            window,
            mode,
            breakdown,
            token_file,
        } => {
            let mut session = session;
            session.cluster_token_file = session.cluster_token_file.or(token_file);
            let ctx = build_session(&session.options()).await?;
            let opts = lifecycle::report::ReportOptions {
                kind,
                period,
                as_of,
                format,
                out,
                steps: steps
                    .into_iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                window_seconds: window,
                mode,
                breakdown,
            };
            lifecycle::report::run(&ctx, &opts).await
        }
        Command::Scheduler { args } => lifecycle::cluster::run_scheduler(&args).await,
        Command::Executor { args } => lifecycle::cluster::run_executor(&args).await,
        Command::Docs => {
            print!("{}", lifecycle_udfs::function_docs());
            Ok(())
        }
    }
}
