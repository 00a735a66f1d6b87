//! `lifecycle scheduler` and `lifecycle executor`: the cluster's processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use datafusion::error::Result;

use crate::cluster::NodeSecurity;
use crate::cluster::executor::{ExecutorOptions, HEARTBEAT_SECONDS};
use crate::cluster::scheduler::{EXECUTOR_TIMEOUT_SECONDS, SchedulerOptions};
use crate::engine::config::parse_memory_size;

/// `--token-file` and TLS, on the scheduler and on every executor.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// File holding the cluster's token: every call to this process must carry it, and this
    /// process sends it on every call it makes. Give the scheduler, every executor and every
    /// client (`--token-file` on `sql` and `report`, `--cluster-token-file` on `serve`) the same.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// TLS certificate (PEM) this process serves with; needs --tls-key. Clients then connect
    /// with dfs://HOST:PORT.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Certificate authority (PEM) the other processes' certificates are checked against
    /// (default: --tls-cert itself, for a cluster sharing one self-signed certificate).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
}

impl From<SecurityArgs> for NodeSecurity {
    fn from(a: SecurityArgs) -> Self {
        NodeSecurity {
            token_file: a.token_file,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            tls_ca: a.tls_ca,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on for clients and executors (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:50050")]
    bind: SocketAddr,
    /// Seconds without a heartbeat after which an executor is declared dead and its work runs
    /// again elsewhere (or the query fails).
    #[arg(long, value_name = "SECONDS", default_value_t = EXECUTOR_TIMEOUT_SECONDS,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    executor_timeout: u64,
    #[command(flatten)]
    security: SecurityArgs,
}

pub async fn scheduler(args: SchedulerArgs) -> Result<()> {
    crate::cluster::scheduler::run(&SchedulerOptions {
        bind: args.bind,
        executor_timeout: args.executor_timeout,
        security: args.security.into(),
    })
    .await
}

#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with.
    #[arg(long, default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// Address of this executor's Arrow Flight service (shuffle data and results).
    #[arg(long, default_value = "127.0.0.1:50051")]
    bind: SocketAddr,
    /// Address of this executor's gRPC service (same host as --bind).
    #[arg(long, default_value = "127.0.0.1:50052")]
    grpc_bind: SocketAddr,
    /// Tasks run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    concurrent_tasks: Option<usize>,
    /// Directory for shuffle files and spills (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<String>,
    /// Bound this executor's query memory (e.g. 2G), split between its concurrent tasks; beyond
    /// it operators spill to the work directory.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_size)]
    memory_limit: Option<usize>,
    /// Seconds between heartbeats to the scheduler (well inside its --executor-timeout).
    #[arg(long, value_name = "SECONDS", default_value_t = HEARTBEAT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    heartbeat_interval: u64,
    #[command(flatten)]
    security: SecurityArgs,
}

pub async fn executor(args: ExecutorArgs) -> Result<()> {
    crate::cluster::executor::run(&ExecutorOptions {
        scheduler: args.scheduler,
        bind: args.bind,
        grpc_bind: args.grpc_bind,
        concurrent_tasks: args.concurrent_tasks,
        work_dir: args.work_dir,
        memory_limit: args.memory_limit,
        heartbeat_interval: args.heartbeat_interval,
        security: args.security.into(),
    })
    .await
}
