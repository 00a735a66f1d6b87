//! The one session builder every front end (shell, server, reports) calls: memory pool, options,
//! functions, tables and the embedded sample.

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::sample;

/// A `NAME=PATH` table to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub path: String,
}

impl std::str::FromStr for TableSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PATH, got '{s}'"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "table name '{name}' must be letters, digits and underscores"
            ));
        }
        if path.trim().is_empty() {
            return Err(format!("table '{name}' has an empty path"));
        }
        Ok(TableSpec {
            name: name.to_string(),
            path: path.trim().to_string(),
        })
    }
}

/// Parses a memory size such as `512M`, `2G`, `1.5GiB` or `1000000` (bytes).
pub fn parse_memory_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid memory size '{s}': expected e.g. 512M or 2G"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "invalid memory size '{s}': unknown unit '{other}' (use K, M, G or T)"
            ));
        }
    };
    let bytes = n * mult;
    if bytes.is_nan() || bytes < 1.0 || bytes > usize::MAX as f64 {
        return Err(format!("invalid memory size '{s}'"));
    }
    Ok(bytes as usize)
}

/// The session flags every command that runs queries shares (`sql`, `serve`, `report`),
/// flattened into each, so a new one (`--cluster`, object-store options) is added once.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SessionFlags {
    /// Register a table: NAME=PATH, PATH a Parquet file, a directory of Parquet files, or a glob
    /// (the embedded sample when none is given).
    #[arg(long = "table", value_name = "NAME=PATH")]
    pub tables: Vec<TableSpec>,
    /// Bound query memory (e.g. 512M, 2G): sorts, joins and aggregations spill to disk beyond it
    /// (`serve` splits it between concurrent queries).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_size)]
    pub memory_limit: Option<usize>,
    /// Run queries on a cluster (`lifecycle scheduler` at df://HOST:PORT, dfs:// with TLS):
    /// planned here, executed by its executors. Needs --table, with paths every executor can
    /// read.
    #[arg(long, value_name = "df://HOST:PORT", value_parser = crate::cluster::parse_cluster_url)]
    pub cluster: Option<String>,
    /// File holding the cluster's token (what its scheduler and executors were started with).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_token_file: Option<std::path::PathBuf>,
    /// The certificate (or its authority, PEM) a dfs:// cluster serves with.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_ca: Option<std::path::PathBuf>,
}

impl SessionFlags {
    /// The session these flags describe (with the memory limit as one pool).
    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            tables: self.tables.clone(),
            memory_limit: self.memory_limit,
            target_partitions: None,
            cluster: self
                .cluster
                .as_ref()
                .map(|url| crate::cluster::ClusterClient {
                    url: url.clone(),
                    token_file: self.cluster_token_file.clone(),
                    ca: self.cluster_ca.clone(),
                }),
        }
    }
}

/// What a session is built from.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub tables: Vec<TableSpec>,
    /// Upper bound on query memory in bytes; operators that can spill do so beyond it.
    pub memory_limit: Option<usize>,
    /// Overrides `datafusion.execution.target_partitions` (default: number of cores).
    pub target_partitions: Option<usize>,
    /// A cluster to run queries on.
    pub cluster: Option<crate::cluster::ClusterClient>,
}

/// The product's settings on top of a session configuration (a local session's and every
/// cluster process's).
pub fn product_defaults(mut config: SessionConfig) -> SessionConfig {
    // Skip a grouped aggregate's partial phase when its first 100,000 rows hold more than 0.3
    // groups per row (DataFusion's default: 0.8). Customer-level GROUP BYs over real purchase
    // history (mostly one-time buyers) reduce by 2-3x in the partial phase, which then costs
    // more than it saves: `count(*), sum(amount) GROUP BY customer_id` over 20.4M purchases of
    // 7.5M customers went from 0.88-1.11 s to 0.73-0.84 s, lifecycle_stage from 1.31-1.53 s to
    // 1.10-1.20 s; on 21.8M purchases of 1.5M heavy buyers (0.07 groups per row) nothing
    // changes. `SET datafusion.execution.skip_partial_aggregation_probe_ratio_threshold` overrides it.
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 0.3;
    config.with_information_schema(true)
}

/// Builds a session: functions, options, memory pool, and the given tables (or the embedded
/// sample when none are given). With a cluster, the session plans here and runs its queries
/// there.
pub async fn build_session(opts: &SessionOptions) -> Result<SessionContext> {
    let stores = crate::storage::Stores::new();
    let ctx = match &opts.cluster {
        Some(client) => {
            let url = &client.url;
            if opts.tables.is_empty() {
                return Err(DataFusionError::Configuration(format!(
                    "--cluster {url} needs --table NAME=PATH: the embedded sample lives only in \
                     this process (PATH must be readable by every executor: the same local path \
                     on each, or s3://)"
                )));
            }
            let ctx = crate::cluster::connect(client, stores).await?;
            if let Some(p) = opts.target_partitions {
                ctx.state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .execution
                    .target_partitions = p.max(1);
            }
            ctx
        }
        None => {
            let mut config = product_defaults(SessionConfig::new());
            if let Some(p) = opts.target_partitions {
                config = config.with_target_partitions(p.max(1));
            }
            let config = lifecycle_udfs::with_options(config);
            let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(stores);
            if let Some(limit) = opts.memory_limit {
                runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
            }
            let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
            lifecycle_udfs::register_all(&ctx)?;
            ctx
        }
    };
    if opts.tables.is_empty() {
        sample::register(&ctx)?;
    } else {
        for t in &opts.tables {
            register_parquet(&ctx, &t.name, &t.path).await?;
        }
    }
    crate::views::register(&ctx).await?;
    Ok(ctx)
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
        let t = crate::storage::object_table(&store, name, path).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_memory_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_memory_size("1000").unwrap(), 1000);
        assert!(parse_memory_size("lots").is_err());
        assert!(parse_memory_size("5X").is_err());
        assert!(parse_memory_size("0").is_err());
    }

    #[test]
    fn table_specs() {
        let t: TableSpec = "p=/data/x.parquet".parse().unwrap();
        assert_eq!(t.name, "p");
        assert_eq!(t.path, "/data/x.parquet");
        assert!("nopath".parse::<TableSpec>().is_err());
        assert!("bad name=x".parse::<TableSpec>().is_err());
    }
}
