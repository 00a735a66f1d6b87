//! The command line: one file per command, each its clap arguments and its `run`, calling the
//! engine, a front end or the cluster. What several commands share is here: the session flags
//! and [`build_session`], the one place a session is made, locally or on a cluster.

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use crate::engine::config::{
    ClusterClient, SessionOptions, TableSpec, parse_cluster_url, parse_memory_size,
};
use crate::engine::session::{local_context, register_tables};

pub mod cluster;
pub mod docs;
pub mod generate;
pub mod report;
pub mod serve;
pub mod sql;
pub mod store;

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
    #[arg(long, value_name = "df://HOST:PORT", value_parser = parse_cluster_url)]
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
            cluster: self.cluster.as_ref().map(|url| ClusterClient {
                url: url.clone(),
                token_file: self.cluster_token_file.clone(),
                ca: self.cluster_ca.clone(),
            }),
        }
    }
}

/// The session flags of the query clients (`sql`, `report`): [`SessionFlags`] and `--token-file`,
/// their short name for `--cluster-token-file` (`serve` has a `--token-file` of its own).
#[derive(Debug, clap::Args)]
pub struct ClientSessionFlags {
    #[command(flatten)]
    session: SessionFlags,
    /// File holding the cluster's token (with --cluster; the same as --cluster-token-file).
    #[arg(
        long,
        value_name = "FILE",
        requires = "cluster",
        conflicts_with = "cluster_token_file"
    )]
    token_file: Option<std::path::PathBuf>,
}

impl ClientSessionFlags {
    /// The session these flags describe, built.
    pub async fn build(self) -> Result<SessionContext> {
        let mut session = self.session;
        session.cluster_token_file = session.cluster_token_file.or(self.token_file);
        build_session(&session.options()).await
    }
}

/// Builds a session: functions, options, memory pool, and the given tables (or the embedded
/// sample when none are given). With a cluster, the session plans here and runs its queries
/// there.
pub async fn build_session(opts: &SessionOptions) -> Result<SessionContext> {
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
            let ctx =
                crate::cluster::connect(client, crate::engine::storage::Stores::new()).await?;
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
        None => local_context(opts)?,
    };
    register_tables(&ctx, &opts.tables).await?;
    Ok(ctx)
}
