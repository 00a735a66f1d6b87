//! `lifecycle store sync | compact | info | vacuum`: the lifecycle store (docs/store.md).

use clap::Subcommand;
use datafusion::error::Result;

use crate::engine::config::{SessionOptions, TableSpec, parse_memory_size};
use crate::engine::session::local_context;
use crate::engine::store::write::{self, Merge, SyncOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Fold the source files not yet in the store into it (the first run builds it): one sorted
    /// run per bucket, in one Delta commit; then merge each bucket's small newest runs.
    Sync(SyncArgs),
    /// Merge each bucket's sorted runs into one sorted file.
    Compact(CommonArgs),
    /// The store's version, layout, files and runs per bucket, rows and source files folded.
    Info(CommonArgs),
    /// Delete the run files that merges, `compact` or `--rebuild` removed from the store more
    /// than --retain-hours ago (Delta's VACUUM): older versions can then no longer be read.
    Vacuum(VacuumArgs),
}

#[derive(Debug, clap::Args)]
struct VacuumArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Keep files removed less than this many hours ago, for readers of older versions (a
    /// server's running queries, another engine's time travel).
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    retain_hours: u64,
}

#[derive(Debug, clap::Args)]
struct SyncArgs {
    /// The source: NAME=PATH, PATH a Parquet file, directory, glob or s3:// prefix.
    #[arg(long = "table", value_name = "NAME=PATH")]
    table: TableSpec,
    #[command(flatten)]
    common: CommonArgs,
    /// The customer column: rows are bucketed by it and sorted by it first.
    #[arg(long)]
    key: Option<String>,
    /// The time column rows are sorted by within a customer (default: order_ts, event_ts or ts,
    /// whichever the source has).
    #[arg(long)]
    order: Option<String>,
    /// Number of hash buckets (default 32; the NULL-key rows get one more).
    #[arg(long)]
    buckets: Option<u32>,
    /// Build the store again from every source file, in a new version (for a source file that
    /// changed or disappeared, or another layout).
    #[arg(long)]
    rebuild: bool,
    /// Leave the new runs as they are. By default, after the sync each bucket's newest runs are
    /// merged while the next older run is less than 4 times their size (a day's run is merged
    /// with other recent runs, not into the whole history; a bucket keeps a few runs).
    #[arg(long)]
    no_merge: bool,
}

#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// The store: a directory or s3:// prefix.
    #[arg(long, value_name = "DIR")]
    store: String,
    /// Bound memory (e.g. 2G): the sort spills to disk beyond it.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_size)]
    memory_limit: Option<usize>,
}

fn context(common: &CommonArgs) -> Result<datafusion::prelude::SessionContext> {
    local_context(&SessionOptions {
        memory_limit: common.memory_limit,
        ..Default::default()
    })
}

pub async fn run(args: Args) -> Result<()> {
    match args.command {
        StoreCommand::Sync(a) => {
            let ctx = context(&a.common)?;
            let started = std::time::Instant::now();
            let r = write::sync(
                &ctx,
                &SyncOptions {
                    source: a.table.path.clone(),
                    store: a.common.store.clone(),
                    key: a.key,
                    order: a.order,
                    buckets: a.buckets,
                    rebuild: a.rebuild,
                },
            )
            .await?;
            if r.new_files == 0 {
                eprintln!(
                    "{}: up to date at version {} (no new source files)",
                    a.common.store, r.version
                );
            } else {
                eprintln!(
                    "{}: version {}: folded {} source file(s) of '{}', {} rows in {} run(s), {:.2} s",
                    a.common.store,
                    r.version,
                    r.new_files,
                    a.table.name,
                    r.rows,
                    r.runs,
                    started.elapsed().as_secs_f64()
                );
            }
            if !a.no_merge {
                // Also with no new files: a merge an earlier sync did not finish (killed, or
                // beaten by another writer) is done now. The sync is committed: a merge that
                // fails leaves it so (a warning, not an error); the next sync or
                // `store compact` merges.
                let started = std::time::Instant::now();
                match write::compact(&ctx, &a.common.store, Merge::Tiered).await {
                    Ok((_, 0)) => {}
                    Ok((version, merged)) => eprintln!(
                        "{}: version {version}: merged the newest runs of {merged} bucket(s), {:.2} s",
                        a.common.store,
                        started.elapsed().as_secs_f64()
                    ),
                    Err(e) => eprintln!(
                        "{}: warning: the sync is committed (version {}); merging its runs: {}",
                        a.common.store,
                        r.version,
                        crate::engine::errors::error_line(&e)
                    ),
                }
            }
        }
        StoreCommand::Compact(c) => {
            let ctx = context(&c)?;
            let started = std::time::Instant::now();
            let (version, merged) = write::compact(&ctx, &c.store, Merge::All).await?;
            if merged == 0 {
                eprintln!("{}: already compact at version {version}", c.store);
            } else {
                eprintln!(
                    "{}: version {version}: merged the runs of {merged} bucket(s), {:.2} s",
                    c.store,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        StoreCommand::Vacuum(a) => {
            let ctx = context(&a.common)?;
            let v = write::vacuum(&ctx, &a.common.store, a.retain_hours).await?;
            eprintln!(
                "{}: version {}: deleted {} file(s) removed more than {} hour(s) ago, and {} \
                 superseded source list(s)",
                a.common.store, v.version, v.runs, a.retain_hours, v.source_lists
            );
        }
        StoreCommand::Info(c) => {
            let ctx = context(&c)?;
            for (k, v) in write::info(&ctx, &c.store).await? {
                println!("{k}: {v}");
            }
        }
    }
    Ok(())
}
