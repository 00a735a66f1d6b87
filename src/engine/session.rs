//! The local session: DataFusion with the product's defaults, every lifecycle function, the
//! memory pool, and the tables (or the embedded sample) with the shipped views. A cluster session
//! (`cluster::client`) registers its tables with the same [`register_tables`].

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::config::{SessionOptions, TableSpec, product_defaults};
use super::storage::Stores;

/// A local session for `opts`: functions, options and memory pool, no tables yet.
pub fn local_context(opts: &SessionOptions) -> Result<SessionContext> {
    let mut config = product_defaults(SessionConfig::new());
    if let Some(p) = opts.target_partitions {
        config = config.with_target_partitions(p.max(1));
    }
    let config = lifecycle_udfs::with_options(config);
    let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(Stores::new());
    if let Some(limit) = opts.memory_limit {
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
    }
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(super::store::guard::StoreCoPartitioning))
        .with_physical_optimizer_rule(Arc::new(
            super::fanout_aggregate::FanoutAggregates::for_memory(opts.memory_limit),
        ))
        .with_physical_optimizer_rule(Arc::new(super::sorted_aggregate::SortedAggregates))
        .with_physical_optimizer_rule(Arc::new(super::sorted_window::SortedWindows))
        .build();
    let ctx = SessionContext::new_with_state(state);
    lifecycle_udfs::register_all(&ctx)?;
    Ok(ctx)
}

/// Registers the given tables (or the embedded sample when there are none) and the shipped views.
pub async fn register_tables(ctx: &SessionContext, tables: &[TableSpec]) -> Result<()> {
    if tables.is_empty() {
        lifecycle_sample::embedded::register(ctx)?;
    } else {
        for t in tables {
            register_parquet(ctx, &t.name, &t.path).await?;
        }
    }
    super::views::register(ctx).await
}

/// Registers a Parquet file, directory or glob as a listing table, with an error that names the
/// table and the path when it cannot be read.
pub async fn register_parquet(ctx: &SessionContext, name: &str, path: &str) -> Result<()> {
    let wrap = |e: DataFusionError| {
        DataFusionError::Plan(format!(
            "table '{name}': cannot read '{path}' as Parquet: {}",
            e.strip_backtrace()
        ))
    };
    let is_glob = path.contains(['*', '?', '[']);
    let local = std::path::Path::new(path);
    if !is_glob && !path.contains("://") && !local.exists() {
        return Err(DataFusionError::Plan(format!(
            "table '{name}': '{path}' does not exist"
        )));
    }
    // A Delta table (a lifecycle store or any other): a directory or prefix with `_delta_log/`.
    if !is_glob && (path.contains("://") || local.is_dir()) {
        let url = super::store::table_url(path)?;
        if super::store::is_delta_table(ctx, &url)
            .await
            .unwrap_or(false)
        {
            return super::store::register(ctx, name, &url).await.map_err(|e| {
                DataFusionError::Plan(format!(
                    "table '{name}': cannot read '{path}' as a Delta table: {}",
                    e.strip_backtrace()
                ))
            });
        }
    }
    if !is_glob && !path.contains("://") {
        check_parquet_files(name, local)?;
    }
    // A directory is read as every Parquet file below it; a single file whatever its extension.
    // Object storage the same way: an object, a glob, or a prefix of `.parquet` objects.
    let (url, extension) = if path.contains("://") {
        let bucket = path
            .split_once("://")
            .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or("")))
            .unwrap_or_default();
        let store_url =
            datafusion::execution::object_store::ObjectStoreUrl::parse(&bucket).map_err(wrap)?;
        let store = ctx.runtime_env().object_store(&store_url).map_err(wrap)?;
        let t = super::storage::object_table(&store, name, path).await?;
        (t.url, t.extension)
    } else if local.is_dir() {
        let dir = format!("{}/", path.trim_end_matches('/'));
        (ListingTableUrl::parse(&dir).map_err(wrap)?, ".parquet")
    } else {
        (ListingTableUrl::parse(path).map_err(wrap)?, "")
    };
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(extension);
    let state = ctx.state();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(&state)
        .await
        .map_err(wrap)?;
    let table = ListingTable::try_new(config).map_err(wrap)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Checks that a local file (or every `.parquet` file below a directory) starts with Parquet's
/// magic bytes. The size a file reports is not enough: `/proc` files report 0 bytes (and would
/// read as an empty table), and an empty or truncated file is not Parquet either.
fn check_parquet_files(name: &str, path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| {
            DataFusionError::Plan(format!(
                "table '{name}': cannot list '{}': {e}",
                path.display()
            ))
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() || p.extension().is_some_and(|x| x == "parquet") {
                check_parquet_files(name, &p)?;
            }
        }
        return Ok(());
    }
    let not_parquet = |why: String| {
        DataFusionError::Plan(format!(
            "table '{name}': '{}' is not a Parquet file ({why})",
            path.display()
        ))
    };
    let mut file =
        std::fs::File::open(path).map_err(|e| not_parquet(format!("cannot open it: {e}")))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(not_parquet(format!("cannot read it: {e}"))),
        }
    }
    match got {
        0 => Err(not_parquet("it is empty".into())),
        4 if &magic == b"PAR1" => Ok(()),
        _ => Err(not_parquet(
            "it does not start with the PAR1 magic bytes".into(),
        )),
    }
}
