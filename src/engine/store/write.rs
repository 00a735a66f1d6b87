//! `lifecycle store sync`, `compact` and `info`: folding source files into a store as sorted runs
//! (one per bucket, one Delta commit), merging each bucket's runs, and describing a store.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::{DataFrame, SessionContext, coalesce, ident, lit};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, MetadataExt, Remove, StructType};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use url::Url;

use super::layout::{self, DEFAULT_BUCKETS, Layout, MAX_BUCKETS, SOURCES};
use super::provider::StoreFiles;
use super::sources::{self, SourceFile, Sources};
use super::{delta_error, is_delta_table, open_table, store_for, table_url};
use deltalake_core::operations::vacuum::VacuumMode;

/// What `store sync` is asked to do.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The source files: a Parquet file, directory, glob or `s3://` prefix.
    pub source: String,
    /// The store's location.
    pub store: String,
    pub key: Option<String>,
    pub order: Option<String>,
    pub buckets: Option<u32>,
    /// Build the store again from every source file (its history kept as Delta versions).
    pub rebuild: bool,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The store's version after the sync (unchanged when there was nothing new).
    pub version: i64,
    pub new_files: usize,
    pub rows: usize,
    pub runs: usize,
}

/// Names for the columns `order` defaults to, tried in turn when `--order` is not given.
const DEFAULT_ORDERS: [&str; 3] = ["order_ts", "event_ts", "ts"];

/// Folds the source files not yet in the store into it as one sorted run per bucket, in one
/// Delta commit (creating the store on the first run).
pub async fn sync(ctx: &SessionContext, opts: &SyncOptions) -> Result<SyncReport> {
    let (url, store, root) = location(ctx, &opts.store)?;
    let existing = if is_delta_table(ctx, &url).await? {
        Some(open_table(ctx, &url).await?)
    } else {
        None
    };
    // The store's layout and what it has folded, or nothing yet.
    let (old_layout, folded) = match &existing {
        Some(t) => {
            let snapshot = t.snapshot().map_err(delta_error)?;
            let props = layout::properties(snapshot.snapshot())?;
            let l = Layout::from_properties(&props)?.ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "'{}' is a Delta table that `lifecycle store sync` did not write; nothing written",
                    opts.store
                ))
            })?;
            let folded = match props.get(SOURCES) {
                Some(rel) => sources::read(store.as_ref(), &root, rel).await?,
                None => Sources::new(),
            };
            (Some(l), folded)
        }
        None => (None, Sources::new()),
    };
    if let Some(l) = &old_layout
        && !opts.rebuild
    {
        let differs = |what: &str, given: Option<String>, have: String| match given {
            Some(g) if g != have => Err(DataFusionError::Plan(format!(
                "store '{}' was written with --{what} {have}; this run asks for --{what} {g} \
                 (use --rebuild to lay it out again); nothing written",
                opts.store
            ))),
            _ => Ok(()),
        };
        differs("key", opts.key.clone(), l.key.clone())?;
        differs("order", opts.order.clone(), l.order.clone())?;
        differs(
            "buckets",
            opts.buckets.map(|b| b.to_string()),
            l.buckets.to_string(),
        )?;
    }

    // The source files now. A store inside its source would fold its own files next time.
    let source_is_dir = !opts.source.contains(['*', '?', '['])
        && (opts.source.ends_with('/')
            || (!opts.source.contains("://") && std::path::Path::new(&opts.source).is_dir()));
    if source_is_dir && url.as_str().starts_with(table_url(&opts.source)?.as_str()) {
        return Err(DataFusionError::Plan(format!(
            "the store '{}' is inside the source '{}': put the store elsewhere; nothing written",
            opts.store, opts.source
        )));
    }
    let listed = list_sources(ctx, &opts.source).await?;
    if let Some((inside, _)) = listed.iter().find(|(u, _)| u.starts_with(url.as_str())) {
        return Err(DataFusionError::Plan(format!(
            "the store '{}' is inside the source '{}' (it lists {inside}): put the store \
             elsewhere; nothing written",
            opts.store, opts.source
        )));
    }
    let mut new = vec![];
    if !opts.rebuild {
        for (src, was) in &folded {
            match listed.iter().find(|(u, _)| u == src) {
                None => {
                    return Err(DataFusionError::Plan(format!(
                        "source file '{src}' was folded into the store and is gone; \
                         use --rebuild to build the store from the files there now; nothing written"
                    )));
                }
                Some((_, now)) => {
                    if let Some(change) = was.change(now) {
                        return Err(DataFusionError::Plan(format!(
                            "source file '{src}' changed since it was folded into the store ({change}); \
                             use --rebuild to build the store again; nothing written"
                        )));
                    }
                }
            }
        }
    }
    for (u, f) in &listed {
        if opts.rebuild || !folded.contains_key(u) {
            new.push((u.clone(), f.clone()));
        }
    }
    let version_now = existing
        .as_ref()
        .and_then(|t| t.version())
        .map_or(-1, |v| v as i64);
    if new.is_empty() {
        return Ok(SyncReport {
            version: version_now,
            new_files: 0,
            rows: 0,
            runs: 0,
        });
    }

    // The schema every new file must have: the store's, or the first file's.
    let format = ParquetFormat::default();
    let state = ctx.state();
    let mut schema: Option<SchemaRef> = match (&existing, opts.rebuild) {
        (Some(t), false) => Some(t.snapshot().map_err(delta_error)?.snapshot().arrow_schema()),
        _ => None,
    };
    let mut metas = Vec::with_capacity(new.len());
    for (u, _) in &new {
        let lu = ListingTableUrl::parse(u)?;
        let fstore = ctx.runtime_env().object_store(&lu)?;
        let meta = fstore
            .head(
                &Path::from_url_path(
                    Url::parse(u)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?
                        .path(),
                )
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            )
            .await?;
        let s = format
            .infer_schema(&state, &fstore, std::slice::from_ref(&meta))
            .await
            .map_err(|e| {
                DataFusionError::Plan(format!(
                    "source file '{u}' is not readable Parquet: {}",
                    e.strip_backtrace()
                ))
            })?;
        let s = nullable(&s);
        match &schema {
            None => schema = Some(s),
            Some(want) => {
                if let Some(why) = schema_difference(want, &s) {
                    return Err(DataFusionError::Plan(format!(
                        "source file '{u}' has another schema than the store ({why}); nothing written"
                    )));
                }
            }
        }
        metas.push(lu);
    }
    let schema = schema.expect("at least one new file");

    // The layout: the store's, or the options with their defaults.
    let layout = match (&old_layout, opts.rebuild) {
        (Some(l), false) => l.clone(),
        _ => {
            let key = opts
                .key
                .clone()
                .unwrap_or_else(|| "customer_id".to_string());
            let order = match &opts.order {
                Some(o) => o.clone(),
                None => DEFAULT_ORDERS
                    .iter()
                    .find(|c| schema.index_of(c).is_ok())
                    .map(|c| c.to_string())
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "no --order given and the source has none of the columns {}; nothing written",
                            DEFAULT_ORDERS.join(", ")
                        ))
                    })?,
            };
            let buckets = opts.buckets.unwrap_or(DEFAULT_BUCKETS);
            if !(1..=MAX_BUCKETS).contains(&buckets) {
                return Err(DataFusionError::Plan(format!(
                    "--buckets must be 1 to {MAX_BUCKETS}, got {buckets}"
                )));
            }
            Layout {
                key,
                order,
                buckets,
            }
        }
    };
    check_columns(&schema, &layout)?;

    // Sort the new rows by (bucket, key, time), spilling beyond the memory limit, and write one
    // run per bucket.
    let config = ListingTableConfig::new_with_multi_paths(metas)
        .with_listing_options(ListingOptions::new(Arc::new(format)))
        .with_schema(Arc::clone(&schema));
    let df = ctx.read_table(Arc::new(ListingTable::try_new(config)?))?;
    let run = format!(
        "run-{:08}-{}",
        version_now + 1,
        uuid::Uuid::new_v4().simple()
    );
    let mut all = if opts.rebuild { Sources::new() } else { folded };
    all.extend(new.iter().cloned());
    let sources_rel = format!(
        "_lifecycle/sources-{:08}-{}.json",
        version_now + 1,
        uuid::Uuid::new_v4().simple()
    );
    // One attempt: the runs, the source list, the commit. A failure anywhere removes what it wrote.
    let attempt = async {
        let written = async {
            let written = write_runs(&store, &root, &layout, df, &run, true).await?;
            // The new list of folded sources, written before the commit that names it.
            sources::write(store.as_ref(), &root, &sources_rel, &all).await?;
            Ok(written)
        }
        .await;
        let (adds, rows) =
            lost_race_or(&store, &root, &opts.store, version_now + 1, written).await?;
        let mut props = layout.properties();
        props.insert(SOURCES.to_string(), sources_rel.clone());
        let runs = adds.len();
        let version = match &existing {
            None => {
                let kernel: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
                    DataFusionError::Plan(format!(
                        "the source's schema cannot be stored as a Delta table: {e}"
                    ))
                })?;
                let table = CreateBuilder::new()
                    .with_log_store(log_store(&store, &url)?)
                    .with_location(url.to_string())
                    .with_columns(kernel.fields().cloned())
                    .with_configuration(props.into_iter().map(|(k, v)| (k, Some(v))))
                    .with_raise_if_key_not_exists(false)
                    .with_save_mode(SaveMode::ErrorIfExists)
                    .with_commit_properties(CommitProperties::default().with_max_retries(0))
                    .with_actions(adds.into_iter().map(Action::Add))
                    .await
                    .map_err(|e| commit_error(&opts.store, e))?;
                table.version().map_or(0, |v| v as i64)
            }
            Some(table) => {
                let snapshot = table.snapshot().map_err(delta_error)?;
                let mut meta = snapshot.metadata().clone();
                for (k, v) in props {
                    meta = meta
                        .add_config_key(k, v)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                }
                if opts.rebuild {
                    let kernel: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
                        DataFusionError::Plan(format!(
                            "the source's schema cannot be stored as a Delta table: {e}"
                        ))
                    })?;
                    meta = meta
                        .with_schema(&kernel)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                }
                let mut actions = vec![Action::Metadata(meta)];
                if opts.rebuild {
                    actions.extend(removes(table, true)?.into_iter().map(Action::Remove));
                }
                actions.extend(adds.into_iter().map(Action::Add));
                let op = DeltaOperation::Write {
                    mode: if opts.rebuild {
                        SaveMode::Overwrite
                    } else {
                        SaveMode::Append
                    },
                    partition_by: None,
                    predicate: None,
                };
                let done = CommitBuilder::default()
                    .with_actions(actions)
                    .with_max_retries(0)
                    .build(Some(snapshot), table.log_store(), op)
                    .await
                    .map_err(|e| commit_error(&opts.store, e))?;
                done.version() as i64
            }
        };
        Ok((version, runs, rows))
    }
    .await;
    let (version, runs, rows) = match attempt {
        Ok(done) => done,
        Err(e) => {
            remove_attempt(&store, &url, &root, version_now + 1, &[&run, &sources_rel]).await;
            return Err(e);
        }
    };
    remove_orphans(&store, &url, &root, version)
        .await
        .map_err(|e| cleanup_error(&opts.store, version, e))?;
    Ok(SyncReport {
        version,
        new_files: new.len(),
        rows,
        runs,
    })
}

/// Which runs of each bucket [`compact`] merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Every bucket's runs into one file (`store compact`).
    All,
    /// Each bucket's newest runs while the next older run is not much larger (after
    /// `store sync`); see [`tiered`].
    Tiered,
}

impl Merge {
    /// How many of a bucket's newest runs to merge into one, given the runs' sizes, oldest
    /// first (0 or 1: none).
    pub fn newest(&self, sizes: &[u64]) -> usize {
        match self {
            Merge::All => sizes.len(),
            Merge::Tiered => tiered(sizes),
        }
    }
}

/// A run is merged with the newer runs after it while it is less than this many times their
/// size together.
pub const MERGE_RATIO: u64 = 4;

/// Leveled merging, as log-structured stores do (ClickHouse merges its parts by size the same
/// way): the newest runs are merged while the next older run is less than [`MERGE_RATIO`]
/// times their size together. Each run is then at least 4 times the size of the next newer one,
/// so a bucket keeps a few runs (log4 of history / sync: 3 to 7 for ten years of daily syncs onto
/// 1,000 days of history), a day's run is merged with other recent rows rather than into the
/// whole history, and each row is rewritten about a dozen times over its life. Sizes are oldest
/// first; returns how many of the newest runs to merge (0: none).
pub fn tiered(sizes: &[u64]) -> usize {
    let n = sizes.len();
    if n < 2 {
        return 0;
    }
    let (mut k, mut taken) = (1, sizes[n - 1]);
    while k < n && sizes[n - 1 - k] < taken.saturating_mul(MERGE_RATIO) {
        taken = taken.saturating_add(sizes[n - 1 - k]);
        k += 1;
    }
    if k >= 2 { k } else { 0 }
}

/// Merges runs of each bucket (which: `how`) into one sorted file per bucket, in one Delta
/// commit. Returns the new version and the number of buckets merged (0: nothing to do).
pub async fn compact(ctx: &SessionContext, store_path: &str, how: Merge) -> Result<(i64, usize)> {
    let (url, store, root) = location(ctx, store_path)?;
    let (table, _, layout) = open_store(ctx, &url, store_path).await?;
    let snapshot = table.snapshot().map_err(delta_error)?;
    let files = StoreFiles::of(&table, &layout)?;
    let schema = snapshot.snapshot().arrow_schema();
    let version_now = table.version().map_or(0, |v| v as i64);
    let run = format!(
        "run-{:08}-{}",
        version_now + 1,
        uuid::Uuid::new_v4().simple()
    );
    let mut adds = vec![];
    let mut merged: Vec<String> = vec![];
    for (b, runs) in files.buckets.iter().enumerate() {
        let sizes: Vec<u64> = runs.iter().map(|(_, size, _)| *size).collect();
        let newest = how.newest(&sizes);
        if newest < 2 {
            continue;
        }
        // The newest runs: the merged file (of this later version) stays the newest run.
        let runs = &runs[runs.len() - newest..];
        // The bucket's runs, each sorted, merged in order (no sort): one stream, one file.
        let group = FileGroup::new(
            runs.iter()
                .map(|(p, size, _)| PartitionedFile::new(p.clone(), *size))
                .collect(),
        );
        let merge = super::merge::runs_merged(&url, &schema, &layout, group)?;
        let stream = merge.execute(0, ctx.task_ctx());
        let written = match stream {
            Ok(stream) => write_run(&store, &root, &schema, b as i32, &run, stream, false)
                .await
                .map(|(a, _)| a),
            Err(e) => Err(e),
        };
        let a = match lost_race_or(&store, &root, store_path, version_now + 1, written).await {
            Ok(a) => a,
            Err(e) => {
                remove_attempt(&store, &url, &root, version_now + 1, &[&run]).await;
                return Err(e);
            }
        };
        adds.push(a);
        merged.extend(runs.iter().map(|(p, _, _)| p.clone()));
    }
    if merged.is_empty() {
        return Ok((version_now, 0));
    }
    let buckets = adds.len();
    let prefix = format!("{}/", root.as_ref());
    let mut actions: Vec<Action> = removes(&table, false)?
        .into_iter()
        .filter(|r| {
            merged
                .iter()
                .any(|m| m.strip_prefix(&prefix) == Some(r.path.as_str()))
        })
        .map(Action::Remove)
        .collect();
    actions.extend(adds.into_iter().map(|mut a| {
        a.data_change = false;
        Action::Add(a)
    }));
    let op = DeltaOperation::Optimize {
        predicate: None,
        target_size: 0,
    };
    let done = match CommitBuilder::default()
        .with_actions(actions)
        .with_max_retries(0)
        .build(Some(snapshot), table.log_store(), op)
        .await
    {
        Ok(done) => done,
        Err(e) => {
            remove_attempt(&store, &url, &root, version_now + 1, &[&run]).await;
            return Err(commit_error(store_path, e));
        }
    };
    let version = done.version() as i64;
    remove_orphans(&store, &url, &root, version)
        .await
        .map_err(|e| cleanup_error(store_path, version, e))?;
    Ok((version, buckets))
}

/// `store vacuum`: deletes the run files that a merge, `compact` or `--rebuild` removed from
/// the store more than `retain_hours` ago (Delta's VACUUM, "lite" mode: only files the log
/// records as removed, never a file a sync is still writing). Readers of a version older than
/// that can no longer read it. Returns the store's version after it and the files deleted.
pub async fn vacuum(ctx: &SessionContext, store_path: &str, retain_hours: u64) -> Result<Vacuumed> {
    let (url, store, root) = location(ctx, store_path)?;
    let (table, props, _) = open_store(ctx, &url, store_path).await?;
    let hours = i64::try_from(retain_hours)
        .ok()
        .filter(|h| *h <= 24 * 365 * 100)
        .ok_or_else(|| {
            DataFusionError::Plan(format!("--retain-hours {retain_hours}: at most 100 years"))
        })?;
    let (table, metrics) = table
        .vacuum()
        .with_mode(VacuumMode::Lite)
        .with_retention_period(chrono::Duration::hours(hours))
        .with_enforce_retention_duration(false)
        .await
        .map_err(|e| commit_error(store_path, e))?;
    let lists = match props.get(SOURCES) {
        Some(current) => {
            let cutoff = chrono::Utc::now() - chrono::Duration::hours(hours);
            remove_old_source_lists(&store, &root, current, cutoff).await?
        }
        None => 0,
    };
    Ok(Vacuumed {
        version: table.version().map_or(0, |v| v as i64),
        runs: metrics.files_deleted.len(),
        source_lists: lists,
    })
}

/// What `store vacuum` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vacuumed {
    /// The store's version (vacuum commits nothing of its own rows).
    pub version: i64,
    /// Run files deleted (removed by a merge, `compact` or `--rebuild` before the retention).
    pub runs: usize,
    /// Superseded source lists deleted.
    pub source_lists: usize,
}

/// Deletes the source lists older than `current` (the one the latest version names) last
/// written before `cutoff`: each sync writes the whole list anew, and only a sync reads it, from
/// the version it starts at. Lists written for `current`'s version or later (a sync under way)
/// stay whatever their age.
async fn remove_old_source_lists(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    current: &str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<usize> {
    let name = current.rsplit('/').next().unwrap_or(current);
    let Some(current_version) = intended_version(name) else {
        return Ok(0);
    };
    let dir = sources::child(root, "_lifecycle");
    let mut list = store.list(Some(&dir));
    let mut old = vec![];
    while let Some(meta) = list.next().await {
        let meta = meta?;
        let is_old = meta.location.filename().is_some_and(|n| {
            n.starts_with("sources-")
                && n.ends_with(".json")
                && intended_version(n).is_some_and(|v| v < current_version)
        });
        if is_old && meta.last_modified < cutoff {
            old.push(meta.location);
        }
    }
    let mut removed = 0;
    for path in old {
        match store.delete(&path).await {
            Ok(()) => removed += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

/// `store info`: one line per fact.
pub async fn info(ctx: &SessionContext, store_path: &str) -> Result<Vec<(String, String)>> {
    let (url, store, root) = location(ctx, store_path)?;
    let (table, props, layout) = open_store(ctx, &url, store_path).await?;
    let files = StoreFiles::of(&table, &layout)?;
    let folded = match props.get(SOURCES) {
        Some(rel) => sources::read(store.as_ref(), &root, rel).await?.len(),
        None => 0,
    };
    let runs: Vec<usize> = files.buckets.iter().map(Vec::len).collect();
    let hist = |f: &dyn Fn(usize) -> bool| runs.iter().filter(|r| f(**r)).count();
    Ok(vec![
        ("store".into(), url.to_string()),
        ("version".into(), table.version().unwrap_or(0).to_string()),
        ("key".into(), layout.key.clone()),
        ("order".into(), layout.order.clone()),
        (
            "buckets".into(),
            format!(
                "{} (+1 for NULL keys), hash {}",
                layout.buckets,
                layout::HASH_NAME
            ),
        ),
        ("files".into(), runs.iter().sum::<usize>().to_string()),
        (
            "runs per bucket".into(),
            format!(
                "max {}, buckets with 0: {}, 1: {}, more: {}{}",
                runs.iter().max().copied().unwrap_or(0),
                hist(&|r| r == 0),
                hist(&|r| r == 1),
                hist(&|r| r > 1),
                if runs.iter().any(|r| *r > super::provider::MAX_MERGED_RUNS) {
                    format!(
                        " (over {}: read without order until `store compact`)",
                        super::provider::MAX_MERGED_RUNS
                    )
                } else {
                    String::new()
                }
            ),
        ),
        (
            "rows".into(),
            files.rows().map_or("unknown".into(), |r| r.to_string()),
        ),
        ("source files folded".into(), folded.to_string()),
    ])
}

/// Opens a store, with an error when `url` is not one.
async fn open_store(
    ctx: &SessionContext,
    url: &Url,
    path: &str,
) -> Result<(DeltaTable, HashMap<String, String>, Layout)> {
    if !is_delta_table(ctx, url).await? {
        return Err(DataFusionError::Plan(format!(
            "'{path}' is not a lifecycle store (no _delta_log/); `lifecycle store sync` makes one"
        )));
    }
    let table = open_table(ctx, url).await?;
    let props = layout::properties(table.snapshot().map_err(delta_error)?.snapshot())?;
    let Some(layout) = Layout::from_properties(&props)? else {
        return Err(DataFusionError::Plan(format!(
            "'{path}' is a Delta table that `lifecycle store sync` did not write"
        )));
    };
    Ok((table, props, layout))
}

/// A store's URL, its object store and its root path there.
fn location(ctx: &SessionContext, path: &str) -> Result<(Url, Arc<dyn ObjectStore>, Path)> {
    let url = table_url(path)?;
    let store = store_for(ctx, &url)?;
    let root =
        Path::from_url_path(url.path()).map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok((url, store, root))
}

/// Remove actions for every file of the table's current version.
/// Remove actions for every file of `table`'s version; `data_change` false for a compaction
/// (the rows stay, rewritten: Delta readers of changes skip it), true for a rebuild.
fn removes(table: &DeltaTable, data_change: bool) -> Result<Vec<Remove>> {
    let snapshot = table.snapshot().map_err(delta_error)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            let mut r = f.remove_action(data_change);
            r.deletion_timestamp = Some(now);
            r
        })
        .collect())
}

/// A log store over `store` for the table at `url`.
fn log_store(
    store: &Arc<dyn ObjectStore>,
    url: &Url,
) -> Result<deltalake_core::logstore::LogStoreRef> {
    super::register_s3_log_store();
    DeltaTableBuilder::from_url(url.clone())
        .map_err(delta_error)?
        .with_storage_backend(Arc::clone(store), url.clone())
        .build_storage()
        .map_err(delta_error)
}

/// A commit that lost to another writer, or failed, as one clear error.
fn commit_error(store: &str, e: deltalake_core::DeltaTableError) -> DataFusionError {
    // delta-rs's variants for "someone else committed this version first" (every commit here is
    // made with no retries: a sync's rows and source list are only right on the version it read).
    let debug = format!("{e:?}");
    let lost = [
        "VersionAlreadyExists",
        "CommitConflict",
        "MaxCommitAttempts",
        "TableAlreadyExists",
    ]
    .iter()
    .any(|v| debug.contains(v));
    if lost {
        DataFusionError::Execution(format!(
            "store '{store}': another sync or compact committed first ({e}); nothing of this run \
             was committed: run it again"
        ))
    } else {
        DataFusionError::Execution(format!("store '{store}': commit failed: {e}"))
    }
}

/// The files `source` names (a file, directory, glob or object-store prefix), by URL, listed from
/// the object store itself (not DataFusion's listing cache: a long-lived session must see the
/// files there now).
async fn list_sources(ctx: &SessionContext, source: &str) -> Result<Vec<(String, SourceFile)>> {
    // A local directory without its trailing slash is still a directory.
    let source = if !source.contains("://")
        && !source.contains(['*', '?', '['])
        && std::path::Path::new(source).is_dir()
    {
        format!("{}/", source.trim_end_matches('/'))
    } else {
        source.to_string()
    };
    let lu = ListingTableUrl::parse(&source)?;
    let store = ctx.runtime_env().object_store(&lu)?;
    let base = lu.object_store();
    let mut out = vec![];
    let collection = source.ends_with('/') || lu.get_glob().is_some();
    if collection {
        let mut list = store.list(Some(lu.prefix()));
        while let Some(meta) = list.next().await {
            let meta = meta?;
            if meta.location.as_ref().ends_with(".parquet") && lu.contains(&meta.location, false) {
                out.push((
                    format!("{}{}", base.as_str(), meta.location.as_ref()),
                    SourceFile::of(&meta),
                ));
            }
        }
    } else {
        match store.head(lu.prefix()).await {
            Ok(meta) => out.push((
                format!("{}{}", base.as_str(), meta.location.as_ref()),
                SourceFile::of(&meta),
            )),
            // An object-store prefix written without its slash.
            Err(object_store::Error::NotFound { .. }) => {
                return Box::pin(list_sources(ctx, &format!("{source}/"))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if out.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "no Parquet files at '{source}'; nothing written"
        )));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `schema` with every field nullable (a store takes any later file's nulls).
fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// How `got` differs from `want` (names and types, in order), if it does.
fn schema_difference(want: &Schema, got: &Schema) -> Option<String> {
    let show = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = want.fields().len() == got.fields().len()
        && want
            .fields()
            .iter()
            .zip(got.fields())
            .all(|(a, b)| a.name() == b.name() && same_type(a.data_type(), b.data_type()));
    (!same).then(|| format!("expected ({}), found ({})", show(want), show(got)))
}

/// Whether two column types hold the same values: string and binary types in any of Arrow's
/// layouts (DataFusion reads Parquet strings as `Utf8View`, a Delta schema gives `Utf8`).
fn same_type(a: &DataType, b: &DataType) -> bool {
    use DataType::*;
    let norm = |t: &DataType| match t {
        Utf8 | LargeUtf8 | Utf8View => Utf8,
        Binary | LargeBinary | BinaryView => Binary,
        t => t.clone(),
    };
    norm(a) == norm(b)
}

/// Checks the key and time columns exist with types the store can bucket and sort.
fn check_columns(schema: &Schema, layout: &Layout) -> Result<()> {
    let field = |name: &str, what: &str| {
        schema.field_with_name(name).map_err(|_| {
            DataFusionError::Plan(format!(
                "the source has no {what} column '{name}' (columns: {}); nothing written",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    let key = field(&layout.key, "key")?;
    if !lifecycle_udfs::bucket::supported_key(key.data_type()) {
        return Err(DataFusionError::Plan(format!(
            "key column '{}' is {}: a store buckets integer, DATE or string keys; nothing written",
            layout.key,
            key.data_type()
        )));
    }
    let order = field(&layout.order, "order")?;
    let t = order.data_type();
    if !(matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    ) || t.is_integer())
    {
        return Err(DataFusionError::Plan(format!(
            "order column '{}' is {t}: a store orders by a timestamp, date or integer; nothing written",
            layout.order
        )));
    }
    Ok(())
}

/// The bucket column sync adds to the rows it sorts.
const BUCKET_COL: &str = "__lifecycle_store_bucket";

/// Sorts `df` by (bucket, key, time) and writes one file per bucket it has rows for, named
/// `bNNNNN/RUN.parquet`. Returns the Add actions and the number of rows.
async fn write_runs(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    layout: &Layout,
    df: DataFrame,
    run: &str,
    data_change: bool,
) -> Result<(Vec<Add>, usize)> {
    let n = layout.buckets as i64;
    let bucket = coalesce(vec![
        lifecycle_udfs::bucket::store_bucket_udf().call(vec![ident(&layout.key), lit(n)]),
        lit(n as i32),
    ]);
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let df = df.with_column(BUCKET_COL, bucket)?.sort(vec![
        ident(BUCKET_COL).sort(true, false),
        ident(&layout.key).sort(true, false),
        ident(&layout.order).sort(true, false),
    ])?;
    let mut stream = df.execute_stream().await?;
    let mut adds = vec![];
    let mut total = 0usize;
    let mut current: Option<(i32, RunWriter)> = None;
    let ncols = schema.fields().len();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let buckets = batch.column(ncols).as_primitive::<Int32Type>().clone();
        let data = RecordBatch::try_new(Arc::clone(&schema), batch.columns()[..ncols].to_vec())?;
        let mut i = 0;
        while i < batch.num_rows() {
            let b = buckets.value(i);
            let mut j = i + 1;
            while j < batch.num_rows() && buckets.value(j) == b {
                j += 1;
            }
            if current.as_ref().is_none_or(|c| c.0 != b) {
                if let Some((_, w)) = current.take() {
                    adds.push(w.finish(store, data_change).await?);
                }
                current = Some((b, RunWriter::open(store, root, &schema, b, run)?));
            }
            let (_, w) = current.as_mut().expect("a writer is open");
            w.write(&data.slice(i, j - i)).await?;
            total += j - i;
            i = j;
        }
    }
    if let Some((_, w)) = current.take() {
        adds.push(w.finish(store, data_change).await?);
    }
    Ok((adds, total))
}

/// Writes `stream` (bucket `bucket`'s rows, already in order) as the bucket's file of `run`.
async fn write_run(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    schema: &SchemaRef,
    bucket: i32,
    run: &str,
    mut stream: datafusion::execution::SendableRecordBatchStream,
    data_change: bool,
) -> Result<(Add, usize)> {
    let mut w = RunWriter::open(store, root, schema, bucket, run)?;
    let mut total = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        total += batch.num_rows();
        w.write(&batch).await?;
    }
    Ok((w.finish(store, data_change).await?, total))
}

/// One run file being written: `bNNNNN/RUN.parquet`, row groups of up to 256Ki rows (a bucket
/// of several runs is read through one reader per run at once, each holding a row group),
/// compressed with LZ4 (`LZ4_RAW`), as ClickHouse's MergeTree is by default: every question
/// reads the whole store, and decompression was the largest single cost with ZSTD
/// (lifecycle_stage on 108.8M rows 1.53 s with ZSTD level 1, 1.03 s with LZ4; files 1.3 GB ->
/// 1.8 GB; uncompressed 0.83 s, 2.2 GB).
struct RunWriter {
    path: Path,
    rel: String,
    writer: AsyncArrowWriter<BufWriter>,
    rows: usize,
}

impl RunWriter {
    fn open(
        store: &Arc<dyn ObjectStore>,
        root: &Path,
        schema: &SchemaRef,
        bucket: i32,
        run: &str,
    ) -> Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_max_row_group_row_count(Some(1 << 18))
            .build();
        let rel = format!("{}/{run}.parquet", Layout::bucket_dir(bucket as usize));
        let path = sources::child(root, &rel);
        let writer = AsyncArrowWriter::try_new(
            BufWriter::new(Arc::clone(store), path.clone()),
            Arc::clone(schema),
            Some(props),
        )?;
        Ok(Self {
            path,
            rel,
            writer,
            rows: 0,
        })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).await?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Closes the file and describes it as a Delta Add action.
    async fn finish(self, store: &Arc<dyn ObjectStore>, data_change: bool) -> Result<Add> {
        self.writer.close().await?;
        let meta = store.head(&self.path).await?;
        Ok(Add {
            path: self.rel,
            partition_values: HashMap::new(),
            size: meta.size as i64,
            modification_time: meta.last_modified.timestamp_millis(),
            data_change,
            stats: Some(serde_json::json!({ "numRecords": self.rows }).to_string()),
            ..Default::default()
        })
    }
}

/// `written` (a run's files, written for version `intended`), or, when writing them failed
/// because another sync or compact committed `intended` first (its clean-up removes the files of
/// attempts that can no longer commit, this one's included), the error that says so.
async fn lost_race_or<T>(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    name: &str,
    intended: i64,
    written: Result<T>,
) -> Result<T> {
    let Err(e) = written else {
        return written;
    };
    let log = sources::child(root, &format!("_delta_log/{intended:020}.json"));
    match store.head(&log).await {
        Ok(_) => Err(DataFusionError::Execution(format!(
            "store '{name}': another sync or compact committed first (version {intended}, while \
             this run was writing its files: {}); nothing of this run was committed: run it again",
            e.strip_backtrace()
        ))),
        Err(_) => Err(e),
    }
}

/// Removes what a failed attempt at version `intended` wrote (files whose names start with one of
/// `names`), best effort: the next sync or compact removes anything left. When version
/// `intended` exists (another writer's, or this attempt's own commit reported as failed after it
/// landed), only the files that commit does not name go.
async fn remove_attempt(
    store: &Arc<dyn ObjectStore>,
    store_url: &Url,
    root: &Path,
    intended: i64,
    names: &[&str],
) {
    let log = sources::child(root, &format!("_delta_log/{intended:020}.json"));
    if store.head(&log).await.is_ok() {
        let _ = remove_orphans(store, store_url, root, intended).await;
        return;
    }
    let names: Vec<&str> = names
        .iter()
        .map(|n| n.rsplit('/').next().unwrap_or(n))
        .collect();
    let ours = |file: &str| names.iter().any(|n| file.starts_with(n));
    let mut doomed = vec![];
    let mut list = store.list(Some(root));
    while let Some(Ok(meta)) = list.next().await {
        if meta.location.filename().is_some_and(ours) {
            doomed.push(meta.location);
        }
    }
    for path in doomed {
        let _ = store.delete(&path).await;
    }
    if let Some(dir) = local_dir(store_url) {
        for path in staging_files(&dir) {
            if path.file_name().and_then(|n| n.to_str()).is_some_and(ours) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// A failure to remove other attempts' files after this run committed `version`: the rows are
/// in; the next sync or compact removes what is left.
fn cleanup_error(name: &str, version: i64, e: DataFusionError) -> DataFusionError {
    DataFusionError::Execution(format!(
        "store '{name}': version {version} is committed, but removing the files of failed \
         attempts failed: {}; the next sync or compact removes them",
        e.strip_backtrace()
    ))
}

/// The version a run or source-list file was written for, from its name
/// (`run-VVVVVVVV-ID.parquet`, `sources-VVVVVVVV-ID.json`).
fn intended_version(name: &str) -> Option<i64> {
    let rest = name
        .strip_prefix("run-")
        .or_else(|| name.strip_prefix("sources-"))?;
    rest.split('-').next()?.parse().ok()
}

/// Removes the files of interrupted or losing attempts, after a commit at `committed`: a file
/// written for version `V <= committed` that version `V`'s commit does not name was never
/// committed and never will be (version `V` exists). Files of attempts still running are written
/// for a later version and left alone; a commit file that cannot be read keeps its candidates.
async fn remove_orphans(
    store: &Arc<dyn ObjectStore>,
    store_url: &Url,
    root: &Path,
    committed: i64,
) -> Result<usize> {
    let mut commits: HashMap<i64, Option<String>> = HashMap::new();
    let mut list = store.list(Some(root));
    let mut removed = 0;
    let mut candidates = vec![];
    while let Some(meta) = list.next().await {
        let meta = meta?;
        let Some(name) = meta.location.filename() else {
            continue;
        };
        if let Some(v) = intended_version(name)
            && v <= committed
        {
            candidates.push((meta.location.clone(), name.to_string(), v));
        }
    }
    // On a local file system, object_store writes a file as `NAME#N` and renames it when complete,
    // and leaves such staging files out of its listings: a process killed mid-write leaves one.
    // Its writer lost (version V is committed), so it goes whatever V's commit names.
    if let Some(dir) = local_dir(store_url) {
        for path in staging_files(&dir) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if intended_version(name).is_some_and(|v| v <= committed) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    for (path, name, v) in candidates {
        if let std::collections::hash_map::Entry::Vacant(e) = commits.entry(v) {
            let log = sources::child(root, &format!("_delta_log/{v:020}.json"));
            let text = match store.get(&log).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                Err(_) => None,
            };
            e.insert(text);
        }
        if let Some(Some(text)) = commits.get(&v)
            && !text.contains(&name)
        {
            match store.delete(&path).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(removed)
}

/// The directory of a `file://` store URL.
fn local_dir(url: &Url) -> Option<std::path::PathBuf> {
    (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
}

/// Files named `NAME#N` (object_store's local staging files) in a store's bucket directories and
/// `_lifecycle/`.
fn staging_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir()
            && (Layout::bucket_of_path(&name).is_some() || name == "_lifecycle")
            && let Ok(files) = std::fs::read_dir(&p)
        {
            out.extend(files.flatten().map(|f| f.path()).filter(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains('#'))
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::tiered;

    #[test]
    fn the_newest_runs_merge_while_the_older_one_is_not_much_larger() {
        assert_eq!(tiered(&[]), 0);
        assert_eq!(tiered(&[100]), 0);
        // A small sync onto a large history: nothing to merge.
        assert_eq!(tiered(&[100, 1]), 0);
        assert_eq!(tiered(&[100, 20, 1]), 0);
        // Similar sizes: merged; the cascade goes on while each older run is < 4x the taken.
        assert_eq!(tiered(&[100, 1, 1]), 2);
        assert_eq!(tiered(&[100, 5, 1, 1]), 3);
        assert_eq!(tiered(&[10, 5, 1, 1]), 4);
        assert_eq!(tiered(&[40, 40]), 2);
        // Exactly 4 times: not merged.
        assert_eq!(tiered(&[8, 2]), 0);
    }

    /// Daily syncs of 1 onto a history of `history`: (most runs ever, rows rewritten per row
    /// added).
    fn daily(history: u64, days: u64) -> (usize, f64) {
        let (mut runs, mut rewritten, mut most) = (vec![history], 0u64, 1);
        for _ in 0..days {
            runs.push(1);
            let k = tiered(&runs);
            if k >= 2 {
                let merged: u64 = runs.drain(runs.len() - k..).sum();
                rewritten += merged;
                runs.push(merged);
            }
            // Afterwards each run is at least 4 times the next newer one.
            for w in runs.windows(2) {
                assert!(w[0] >= 4 * w[1], "{runs:?}");
            }
            most = most.max(runs.len());
        }
        assert_eq!(runs.iter().sum::<u64>(), history + days);
        (most, rewritten as f64 / days as f64)
    }

    #[test]
    fn daily_syncs_keep_a_few_runs_and_rewrite_each_row_a_few_times() {
        for (history, days) in [(1000, 365), (100, 3650), (10_000, 3650)] {
            let (most, per_row) = daily(history, days);
            assert!(most <= 8, "{history} + {days} days: {most} runs");
            assert!(
                per_row < 16.0,
                "{history} + {days} days: {per_row} rewrites per row"
            );
        }
    }
}
