//! The cluster: `lifecycle scheduler` and `lifecycle executor` are an Apache DataFusion Ballista
//! scheduler and executor with every lifecycle function, the `lifecycle.*` options and S3 object
//! storage; `--cluster df://HOST:PORT` on `sql`, `serve` and `report` plans locally and runs the
//! plan there.
//!
//! What crosses the wire and how it is made to work:
//! - Function calls travel by name. The scheduler's sessions and the executors' registry hold the
//!   built-ins and every lifecycle function; the table functions' internal aggregates
//!   (`lifecycle_cohort_customer`, ...) are resolved by name by the plan codecs below.
//! - Partial aggregate states travel as Arrow IPC between stages (every state type is an Arrow
//!   type).
//! - A table function's result ([`PlannedTable`], a planned query that is not inlined) travels
//!   as its own serialised logical plan, by [`LogicalCodec`], set on the client, the scheduler
//!   and the executors.
//! - Settings travel as key/value pairs with each job; a key no extension claims is dropped by
//!   Ballista, so the `lifecycle` extension is in every process's session configuration.
//! - Tables are Parquet listing tables: their paths must resolve the same on every process
//!   (the same local path everywhere, or object storage).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::JobId;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::{
    BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec,
};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::metrics::SchedulerMetricsCollector;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use lifecycle_udfs::LifecycleStateBuilderExt;
use lifecycle_udfs::table::PlannedTable;

use crate::storage::Stores;

mod errors;
mod security;

pub use security::NodeSecurity;

/// The scheme of a cluster address (`df://HOST:PORT`, as Ballista's own clients write it).
pub const SCHEME: &str = "df://";

/// The scheme of a cluster served over TLS (`dfs://HOST:PORT`).
pub const TLS_SCHEME: &str = "dfs://";

/// Checks a `--cluster` value: `df://HOST:PORT`, or `dfs://HOST:PORT` for TLS.
pub fn parse_cluster_url(s: &str) -> std::result::Result<String, String> {
    let (scheme, rest) = match (s.strip_prefix(SCHEME), s.strip_prefix(TLS_SCHEME)) {
        (Some(rest), _) => (SCHEME, rest),
        (None, Some(rest)) => (TLS_SCHEME, rest),
        (None, None) => {
            return Err(format!(
                "cluster address '{s}' must look like df://HOST:PORT (a lifecycle scheduler; \
                 dfs:// with TLS)"
            ));
        }
    };
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(|| format!("cluster address '{s}' has no port (df://HOST:PORT)"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "cluster address '{s}' must look like df://HOST:PORT (a lifecycle scheduler)"
        ));
    }
    Ok(format!("{scheme}{host}:{port}"))
}

/// `HOST:PORT` of a checked cluster address.
fn host_port(url: &str) -> &str {
    url.trim_start_matches(TLS_SCHEME)
        .trim_start_matches(SCHEME)
}

/// Marks a serialised [`PlannedTable`] among the table providers of a plan.
const PLANNED_TABLE: &[u8] = b"lifecycle.planned_table\0";

/// Ballista's logical codec, plus the table functions' results ([`PlannedTable`], serialised as
/// their own logical plan) and their internal aggregates (by name).
#[derive(Debug, Default)]
pub struct LogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(PLANNED_TABLE) {
            Some(plan) => {
                let plan = logical_plan_from_bytes_with_extension_codec(plan, ctx, self)?;
                Ok(Arc::new(PlannedTable::new(plan)))
            }
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match (node.as_ref() as &dyn std::any::Any).downcast_ref::<PlannedTable>() {
            Some(planned) => {
                let plan = logical_plan_to_bytes_with_extension_codec(planned.plan(), self)?;
                buf.extend_from_slice(PLANNED_TABLE);
                buf.extend_from_slice(&plan);
                Ok(())
            }
            None => self
                .ballista
                .try_encode_table_provider(table_ref, node, buf)
                .map_err(|e| {
                    DataFusionError::Plan(format!(
                        "table '{table_ref}' cannot be sent to the cluster (only Parquet tables \
                         registered with --table can): {}",
                        e.strip_backtrace()
                    ))
                }),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match lifecycle_udfs::internal_aggregate(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udaf(name, buf),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match crate::server::front_end_udf(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }
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

/// Ballista's physical codec, plus the table functions' internal aggregates (by name).
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.ballista.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.ballista.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match lifecycle_udfs::internal_aggregate(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udaf(name, buf),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match crate::server::front_end_udf(name) {
            Some(f) => Ok(f),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }
}

/// The session configuration of every cluster process and client: Ballista's, the product's
/// defaults, the `lifecycle.*` options and the two codecs.
///
/// One DataFusion optimisation is off on a cluster: leaf-expression pushdown, which moves
/// `get_field` (`s.frequency` of a struct) into projections named `__datafusion_extracted_N`.
/// The plan it leaves does not survive DataFusion 55's plan serialisation: the aggregate over such
/// columns is named with their qualifier in the plan and without it after the round trip, and
/// the scheduler refuses the plan ("No field named bgnbd_fit(__datafusion_extracted_1, ...)").
/// Seen with `bgnbd_fit(s.frequency, s.recency, s.t)` over `rfm_summary`'s struct.
///
/// Ballista's adaptive query planner is off: with it, a UNION ALL of two single-partition stages
/// (`lifecycle_by_period` over a one-row file) sometimes read one stage twice and counted a
/// customer as `new` twice (3 runs in 6 on a 1 scheduler + 1 executor cluster; 0 in 6 without
/// it). The cluster test repeats that query.
///
/// Dynamic filters are off too: they share state between operators of one process, which a
/// plan split into stages on several executors does not have, and Ballista 55's executor,
/// resetting a received plan, rebuilds a TopK's filter with zero emitters (DataFusion asserts
/// `topk_emitter_count > 0`; `lifecycle_by_period`'s plan has a TopK). The cluster tests
/// cover both.
pub fn cluster_config() -> SessionConfig {
    let mut config = crate::session::product_defaults(SessionConfig::new_with_ballista());
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_leaf_expression_pushdown = false;
    optimizer.enable_topk_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.enable_aggregate_dynamic_filter_pushdown = false;
    optimizer.enable_dynamic_filter_pushdown = false;
    lifecycle_udfs::with_options(config)
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()))
}

/// A runtime with the product's object stores (S3 from the environment) and, on an executor,
/// its work directory for spills.
fn runtime(stores: &Arc<Stores>, work_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut b = RuntimeEnvBuilder::new().with_object_store_registry(stores.clone());
    if let Some(dir) = work_dir {
        b = b.with_temp_file_path(dir);
    }
    b.build_arc()
}

/// A lifecycle session state for `config`: DataFusion's defaults, Ballista's logical optimizer
/// rules (as Ballista's own scheduler has them) and every lifecycle function and rule.
fn lifecycle_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_lifecycle()
        .build()
}

/// Every function a plan may name: Ballista's built-ins, then DataFusion's defaults and every
/// lifecycle function.
fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    let state = lifecycle_state(SessionConfig::new(), Arc::new(RuntimeEnv::default()));
    let all = BallistaFunctionRegistry::from(&state);
    registry.scalar_functions.extend(all.scalar_functions);
    registry.aggregate_functions.extend(all.aggregate_functions);
    registry.window_functions.extend(all.window_functions);
    registry
        .higher_order_functions
        .extend(all.higher_order_functions);
    registry
}

/// How a client reaches the cluster: its address (checked with [`parse_cluster_url`]), the
/// token file and, for `dfs://`, the certificate authority to trust.
#[derive(Debug, Clone, Default)]
pub struct ClusterClient {
    pub url: String,
    pub token_file: Option<std::path::PathBuf>,
    pub ca: Option<std::path::PathBuf>,
}

/// A session on the cluster: planned here, run there. Fails at once, naming the address, when
/// no scheduler answers or it refuses this client's token.
pub async fn connect(client: &ClusterClient, stores: Arc<Stores>) -> Result<SessionContext> {
    let url = client.url.as_str();
    security::install(security::client_credential(
        url,
        client.token_file.as_deref(),
        client.ca.as_deref(),
    )?)?;
    probe_scheduler(url).await?;
    let state = lifecycle_state(cluster_config(), runtime(&stores, None)?);
    let ctx =
        SessionContext::remote_with_state(&format!("{SCHEME}{}", host_port(url)), state).await?;
    // Ballista's upgrade of the state replaces the function lists with its built-ins.
    lifecycle_udfs::register_all(&ctx)?;
    // Every query's errors as one line (see [`errors`]).
    let state = ctx.state();
    let planner = Arc::new(errors::Planner {
        inner: state.query_planner().clone(),
    });
    Ok(SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(state)
            .with_query_planner(planner)
            .build(),
    ))
}

/// Connects to the scheduler and makes one call, so that a wrong address, a missing or wrong
/// token and a TLS mismatch are one clear error before any query.
async fn probe_scheduler(url: &str) -> Result<()> {
    use ballista_core::serde::protobuf::GetJobStatusParams;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    let unreachable = |why: String| {
        DataFusionError::Configuration(format!(
            "cannot reach the cluster's scheduler at {url}: {why}"
        ))
    };
    let endpoint = ballista_core::utils::create_grpc_client_endpoint(
        format!("http://{}", host_port(url)),
        None,
    )
    .map_err(|e| unreachable(e.to_string()))?
    .connect_timeout(std::time::Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(transport_reason(&e)))?;
    let mut scheduler = SchedulerGrpcClient::new(ballista_core::auth::authenticated(channel));
    let probe = GetJobStatusParams {
        job_id: "lifecycle-connection-check".into(),
    };
    match scheduler.get_job_status(probe).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            Err(DataFusionError::Configuration(format!(
                "the cluster's scheduler at {url} refused this client: it needs the cluster's \
                 token (--token-file FILE, on serve --cluster-token-file FILE)"
            )))
        }
        // An answer about the (unknown) job comes from a scheduler that let the call in;
        // anything else is a transport failure (plaintext to a TLS scheduler ends as an HTTP/2
        // protocol error, for one).
        Err(s) if s.code() == tonic::Code::Internal && s.message().contains("lifecycle-") => Ok(()),
        Err(s) => {
            let why = match std::error::Error::source(&s) {
                Some(inner) => transport_reason(inner),
                None => s.message().to_string(),
            };
            let hint = if url.starts_with(TLS_SCHEME) {
                ""
            } else {
                " (a scheduler started with --tls-cert is reached at dfs://)"
            };
            Err(unreachable(format!("{why}{hint}")))
        }
    }
}

/// The innermost reason of a transport error ("Connection refused", "invalid peer
/// certificate", ...), not tonic's "transport error" wrapping.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &(dyn std::error::Error + 'static) = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// Seconds without a heartbeat after which the scheduler declares an executor dead.
pub const EXECUTOR_TIMEOUT_SECONDS: u64 = 30;

/// Seconds between an executor's heartbeats (well inside [`EXECUTOR_TIMEOUT_SECONDS`]).
pub const HEARTBEAT_SECONDS: u64 = 5;

/// `lifecycle scheduler`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on for clients and executors (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,
    /// Seconds without a heartbeat after which an executor is declared dead and its work runs
    /// again elsewhere (or the query fails).
    #[arg(long, value_name = "SECONDS", default_value_t = EXECUTOR_TIMEOUT_SECONDS,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub executor_timeout: u64,
    #[command(flatten)]
    pub security: NodeSecurity,
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

fn ballista_err(e: ballista_core::error::BallistaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Runs a scheduler until Ctrl-C or SIGTERM.
pub async fn run_scheduler(args: &SchedulerArgs) -> Result<()> {
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
        .serve_with_incoming_shutdown(incoming, crate::server::shutdown_signal())
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    eprintln!("lifecycle scheduler stopped");
    Ok(())
}

/// `lifecycle executor`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub scheduler: String,
    /// Address of this executor's Arrow Flight service (shuffle data and results).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub bind: SocketAddr,
    /// Address of this executor's gRPC service (same host as --bind).
    #[arg(long, default_value = "127.0.0.1:50052")]
    pub grpc_bind: SocketAddr,
    /// Tasks run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub concurrent_tasks: Option<usize>,
    /// Directory for shuffle files and spills (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<String>,
    /// Bound this executor's query memory (e.g. 2G), split between its concurrent tasks; beyond
    /// it operators spill to the work directory.
    #[arg(long, value_name = "SIZE", value_parser = crate::session::parse_memory_size)]
    pub memory_limit: Option<usize>,
    /// Seconds between heartbeats to the scheduler (well inside its --executor-timeout).
    #[arg(long, value_name = "SECONDS", default_value_t = HEARTBEAT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub heartbeat_interval: u64,
    #[command(flatten)]
    pub security: NodeSecurity,
}

/// Runs an executor until Ctrl-C, SIGTERM or the scheduler stops it.
pub async fn run_executor(args: &ExecutorArgs) -> Result<()> {
    security::install(args.security.credential()?)?;
    let (scheduler_host, scheduler_port) = host_port(&args.scheduler)
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            DataFusionError::Configuration(format!(
                "--scheduler '{}' must be HOST:PORT",
                args.scheduler
            ))
        })?;
    if args.bind.ip() != args.grpc_bind.ip() {
        return Err(DataFusionError::Configuration(format!(
            "--bind {} and --grpc-bind {} must share a host (Ballista's executor binds both on one)",
            args.bind, args.grpc_bind
        )));
    }
    if let Some(dir) = &args.work_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            DataFusionError::Configuration(format!("cannot create --work-dir {dir}: {e}"))
        })?;
    }
    let stores = Stores::new();
    let work_dir = args.work_dir.clone();
    let host = args.bind.ip().to_string();
    let config = ExecutorProcessConfig {
        bind_host: host.clone(),
        external_host: Some(host),
        port: args.bind.port(),
        grpc_port: args.grpc_bind.port(),
        scheduler_host,
        scheduler_port,
        vcores: args.concurrent_tasks.unwrap_or(0),
        work_dir: args.work_dir.clone(),
        memory_pool_size: args.memory_limit.map(|m| m as u64),
        executor_heartbeat_interval_seconds: args.heartbeat_interval,
        override_function_registry: Some(Arc::new(function_registry())),
        override_config_producer: Some(Arc::new(cluster_config)),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| {
            runtime(&stores, work_dir.as_deref())
        })),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..Default::default()
    };
    eprintln!(
        "lifecycle executor on {} (gRPC {}), scheduler {}:{}",
        args.bind, args.grpc_bind, config.scheduler_host, config.scheduler_port
    );
    let scheduler = format!("{}:{}", config.scheduler_host, config.scheduler_port);
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| match e {
            ballista_core::error::BallistaError::GrpcConnectionError(why) => {
                DataFusionError::Configuration(format!(
                    "cannot reach the scheduler at {scheduler}: {why}"
                ))
            }
            other => ballista_err(other),
        })
}

/// An in-process cluster (Ballista's standalone mode: a scheduler and an executor on this
/// process's runtime) with the lifecycle session, for tests.
pub async fn standalone(parallelism: usize) -> Result<SessionContext> {
    let config = cluster_config().with_ballista_standalone_parallelism(parallelism);
    let state = lifecycle_state(config, runtime(&Stores::new(), None)?);
    let ctx = SessionContext::standalone_with_state(state).await?;
    lifecycle_udfs::register_all(&ctx)?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        assert_eq!(parse_cluster_url("df://h:1").unwrap(), "df://h:1");
        assert_eq!(
            parse_cluster_url("df://10.0.0.1:50050/").unwrap(),
            "df://10.0.0.1:50050"
        );
        assert!(parse_cluster_url("http://h:1").is_err());
        assert!(parse_cluster_url("df://h").is_err());
        assert!(parse_cluster_url("df://:1").is_err());
        assert!(parse_cluster_url("df://h:x").is_err());
    }

    #[test]
    fn the_registry_has_the_built_ins_and_every_lifecycle_function() {
        use datafusion::execution::FunctionRegistry;
        let r = function_registry();
        for f in lifecycle_udfs::aggregate_functions() {
            assert!(r.udaf(f.name()).is_ok(), "{}", f.name());
        }
        for f in lifecycle_udfs::scalar_functions() {
            assert!(r.udf(f.name()).is_ok(), "{}", f.name());
        }
        for f in lifecycle_udfs::window_functions() {
            assert!(r.udwf(f.name()).is_ok(), "{}", f.name());
        }
        assert!(r.udf("abs").is_ok());
        assert!(r.udf("array_length").is_ok());
        assert!(r.udaf("count").is_ok());
    }
}
