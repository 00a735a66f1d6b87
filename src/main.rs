//! The `lifecycle` command: the command enum, and the process set-up every command shares (the
//! allocator, transparent huge pages off, logging, a runtime whose threads have deep stacks).
//! Each command lives in `lifecycle::commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lifecycle::commands;
use lifecycle::engine::errors::error_line;

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
    Sql(commands::sql::Args),
    /// Arrow Flight SQL and Postgres-protocol server: the shell's tables and functions for BI
    /// tools (ADBC, JDBC, psql, psycopg, Metabase, Grafana, DBeaver).
    Serve(commands::serve::Args),
    /// Write synthetic purchase history (buy-till-you-die) as Parquet.
    Generate(commands::generate::Args),
    /// The lifecycle store: history kept as a Delta table bucketed by customer and sorted by
    /// time (`store sync`, `store compact`, `store info`).
    Store(commands::store::Args),
    /// Cohort, lifecycle, growth, value and funnel reports (terminal, CSV, JSON or HTML).
    Report(commands::report::Args),
    /// A cluster scheduler (Apache DataFusion Ballista) with every lifecycle function: clients
    /// connect with `--cluster df://HOST:PORT`, executors with `--scheduler HOST:PORT`.
    Scheduler(commands::cluster::SchedulerArgs),
    /// A cluster executor (Apache DataFusion Ballista) with every lifecycle function.
    Executor(commands::cluster::ExecutorArgs),
    /// Print the function reference (Markdown), generated from the functions' documentation.
    Docs,
}

/// mimalloc instead of the system allocator: DataFusion's aggregations and the lifecycle
/// aggregates allocate and free vectors of megabytes per batch and per emit; glibc returns such
/// blocks to the kernel (mmap) and every reuse faults fresh zeroed pages in again. Measured
/// effect: see docs/performance.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc asks for them (`madvise(MADV_HUGEPAGE)`)
/// on its large regions, and where the system honours the request (THP `madvise` mode, the
/// default of many distributions) every first touch zeroes 2 MiB, again after each purge: the
/// kernel's page zeroing was 30-50% of a GROUP BY's profile. Disabling them (what
/// `MIMALLOC_ALLOW_THP=0` does) cut system time 3-4x and wall time 25-45% on the per-customer
/// queries (docs/performance.md). Best effort: an error leaves the system default.
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
    lifecycle::engine::logging::init_with_default(match cli.command {
        Command::Scheduler(_) => "warn,lifecycle::cluster=info",
        _ => "",
    });
    // TLS: ring for every client and server of the process, including delta-rs's HTTP client
    // (built without a provider of its own; see third_party/README.md). Fails only if one is set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Queries are planned and executed on the runtime's workers and on the thread driving the
    // shell or server; each gets a stack that every expression the depth limit allows fits in
    // (lifecycle::limits), instead of the 2 MiB that a deep expression overflows.
    let stack = lifecycle::engine::limits::THREAD_STACK_BYTES;
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
        Command::Sql(args) => commands::sql::run(args).await,
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Generate(args) => commands::generate::run(args).await,
        Command::Report(args) => commands::report::run(args).await,
        Command::Store(args) => commands::store::run(args).await,
        Command::Scheduler(args) => commands::cluster::scheduler(args).await,
        Command::Executor(args) => commands::cluster::executor(args).await,
        Command::Docs => commands::docs::run(),
    }
}
