//! `lifecycle executor`: Ballista's executor with every lifecycle function, the codecs, object
//! storage and its work directory for shuffle files and spills.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionConfig;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::{NodeSecurity, ballista_err, cluster_config, function_registry, runtime, security};
use crate::engine::config::host_port;
use crate::engine::storage::Stores;

/// Seconds between an executor's heartbeats (well inside the scheduler's executor timeout).
pub const HEARTBEAT_SECONDS: u64 = 5;

/// How an executor runs (`lifecycle executor`).
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler to register with (HOST:PORT).
    pub scheduler: String,
    /// Address of this executor's Arrow Flight service (shuffle data and results).
    pub bind: SocketAddr,
    /// Address of this executor's gRPC service (same host as `bind`).
    pub grpc_bind: SocketAddr,
    /// Tasks run at once (default: the number of cores).
    pub concurrent_tasks: Option<usize>,
    /// Directory for shuffle files and spills (default: a new temporary directory).
    pub work_dir: Option<String>,
    /// This executor's query memory, split between its concurrent tasks.
    pub memory_limit: Option<usize>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_interval: u64,
    pub security: NodeSecurity,
}

/// Runs an executor until Ctrl-C, SIGTERM or the scheduler stops it.
pub async fn run(args: &ExecutorOptions) -> Result<()> {
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
