//! `lifecycle scheduler`: Ballista's scheduler with the lifecycle session, its gRPC service
//! served here (every call checked for the cluster's token before it is decoded, TLS with a
//! certificate), and a query planner that refuses tables whose files this process cannot see.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::SessionConfigExt;
use ballista_core::JobId;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::metrics::SchedulerMetricsCollector;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use super::codec::{LogicalCodec, PhysicalCodec};
use super::{NodeSecurity, ballista_err, cluster_config, lifecycle_state, runtime, security};
use crate::engine::config::{SCHEME, TLS_SCHEME};
use crate::engine::storage::Stores;

/// Seconds without a heartbeat after which the scheduler declares an executor dead.
pub const EXECUTOR_TIMEOUT_SECONDS: u64 = 30;

/// How a scheduler runs (`lifecycle scheduler`).
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on for clients and executors (port 0: any free port).
    pub bind: SocketAddr,
    /// Seconds without a heartbeat after which an executor is declared dead.
    pub executor_timeout: u64,
    pub security: NodeSecurity,
}

/// The scheduler's query planner: DataFusion's, after checking that every Parquet table's
/// local files are visible to this process. The scheduler lists a table's files to plan its
/// scan, and a path that exists only on the client lists as no files: an empty table, a wrong
/// answer with no error. (Object storage needs no check: listing it fails loudly.)
#[derive(Debug, Default)]
struct VisibleTablesPlanner;

#[async_trait::async_trait]
impl datafusion::execution::context::QueryPlanner for VisibleTablesPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        use datafusion::physical_planner::PhysicalPlanner;
        let mut checked = Ok(());
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
                && let Err(e) = check_local_paths(&scan.table_name, provider.as_ref())
            {
                checked = Err(e);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        checked?;
        datafusion::physical_planner::DefaultPhysicalPlanner::default()
            .create_physical_plan(plan, session)
            .await
    }
}

/// Refuses a table whose local files this process cannot see (see [`VisibleTablesPlanner`]).
fn check_local_paths(table_ref: &TableReference, table: &dyn TableProvider) -> Result<()> {
    let Some(listing) = (table as &dyn std::any::Any)
        .downcast_ref::<datafusion::datasource::listing::ListingTable>()
    else {
        return Ok(());
    };
    let extension = listing.options().file_extension.clone();
    for url in listing.table_paths() {
        if url.scheme() != "file" {
            continue;
        }
        let Ok(path) = url.get_url().to_file_path() else {
            continue;
        };
        let seen = match std::fs::metadata(&path) {
            Err(e) => Err(e.to_string()),
            Ok(m) if m.is_dir() => match has_file(&path, &extension) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("no {extension} files in it")),
                Err(e) => Err(e.to_string()),
            },
            Ok(_) => Ok(()),
        };
        if let Err(why) = seen {
            return Err(DataFusionError::Plan(format!(
                "the cluster's scheduler cannot read table '{table_ref}' at '{}': {why} (a \
                 --cluster table's path must be the same on the client, the scheduler and every \
                 executor: a shared file system, or object storage)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Whether a directory holds a file with the extension, looking at most [`MAX_DEPTH`] levels
/// down and [`MAX_ENTRIES`] entries in all, without following symbolic links to directories (a
/// loop such as `/proc/self/root` would otherwise never end).
fn has_file(dir: &std::path::Path, extension: &str) -> std::io::Result<bool> {
    const MAX_DEPTH: usize = 16;
    const MAX_ENTRIES: usize = 100_000;
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            seen += 1;
            if seen > MAX_ENTRIES {
                // Visible, and too large to look through here: the scan will list it.
                return Ok(true);
            }
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    pending.push((path, depth + 1));
                }
            } else if path.to_string_lossy().ends_with(extension) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One log line per finished, failed or cancelled job (Ballista's metrics hook).
struct JobLog;

impl SchedulerMetricsCollector for JobLog {
    fn record_submitted(&self, _job: &JobId, _queued_at: u64, _submitted_at: u64) {}

    fn record_completed(&self, job: &JobId, queued_at: u64, completed_at: u64) {
        log::info!(
            "job {job} finished in {} ms",
            completed_at.saturating_sub(queued_at)
        );
    }

    fn record_failed(&self, job: &JobId, queued_at: u64, failed_at: u64) {
        log::warn!(
            "job {job} failed after {} ms",
            failed_at.saturating_sub(queued_at)
        );
    }

    fn record_cancelled(&self, job: &JobId) {
        log::info!("job {job} cancelled");
    }

    fn set_pending_tasks_queue_size(&self, _value: u64) {}

    fn gather_metrics(&self) -> ballista_core::error::Result<Option<(Vec<u8>, String)>> {
        Ok(None)
    }
}

/// Runs a scheduler until Ctrl-C or SIGTERM.
pub async fn run(args: &SchedulerOptions) -> Result<()> {
    security::install(args.security.credential()?)?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| {
            DataFusionError::Configuration(format!("cannot listen on {}: {e}", args.bind))
        })?;
    let local = listener.local_addr()?;
    let stores = Stores::new();
    let builder_stores = stores.clone();
    let mut config = SchedulerConfig {
        bind_host: local.ip().to_string(),
        external_host: local.ip().to_string(),
        bind_port: local.port(),
        // An executor that stops heartbeating is declared dead after 30 s (Ballista's default:
        // 180 s), so a query whose executor died is retried elsewhere, or fails, in under a
        // minute rather than appearing to hang.
        executor_timeout_seconds: args.executor_timeout,
        expire_dead_executor_interval_seconds: (args.executor_timeout / 6).clamp(1, 5),
        no_executors_grace_period_seconds: args.executor_timeout,
        ..Default::default()
    }
    .with_override_config_producer(Arc::new(cluster_config))
    .with_override_session_builder(Arc::new(move |config: SessionConfig| {
        // Every job is planned by the static planner, whatever the client set: the adaptive
        // one has read a stage twice (see [`cluster_config`]).
        let config = config.with_ballista_adaptive_query_planner(false);
        let state = lifecycle_state(config, runtime(&builder_stores, None)?);
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_query_planner(Arc::new(VisibleTablesPlanner))
            .build())
    }));
    // One pair of codecs: the server's, and the same in the config for anything that reads it.
    let logical: Arc<LogicalCodec> = Arc::default();
    let physical: Arc<PhysicalCodec> = Arc::default();
    config.override_logical_codec = Some(logical.clone());
    config.override_physical_codec = Some(physical.clone());
    config.validate().map_err(ballista_err)?;
    let grpc_max_encoding = config.grpc_server_max_encoding_message_size as usize;
    let grpc_max_decoding = config.grpc_server_max_decoding_message_size as usize;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_err)?;
    let codec = BallistaCodec::new(logical, physical);
    let config = Arc::new(config);
    let mut scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = SchedulerServer::new(
        config.scheduler_endpoint(),
        cluster,
        codec,
        config,
        Arc::new(JobLog),
    );
    scheduler.init().await.map_err(ballista_err)?;
    // The scheduler's gRPC service, served here rather than by Ballista's
    // `start_grpc_service_with_listener` so that every call is checked for the cluster's token
    // before it is decoded, and served over TLS with a certificate. (Ballista's REST API and
    // Flight proxy are not served.)
    let service = SchedulerGrpcServer::new(scheduler)
        .max_encoding_message_size(grpc_max_encoding)
        .max_decoding_message_size(grpc_max_decoding);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = ballista_core::auth::server_tls() {
        server = server.tls_config(tls).map_err(|e| {
            DataFusionError::Configuration(format!("scheduler TLS configuration: {e}"))
        })?;
    }
    let scheme = if ballista_core::auth::server_tls().is_some() {
        TLS_SCHEME
    } else {
        SCHEME
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    eprintln!("lifecycle scheduler listening on {scheme}{local}");
    server
        .add_service(ballista_core::auth::checked(service))
        .serve_with_incoming_shutdown(incoming, crate::engine::signals::shutdown_signal())
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    eprintln!("lifecycle scheduler stopped");
    Ok(())
}
