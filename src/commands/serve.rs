//! `lifecycle serve`: Arrow Flight SQL and the Postgres protocol over one session.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};

use super::{SessionFlags, build_session};
use crate::engine::config::SessionOptions;
use crate::engine::limits::DEFAULT_MAX_STATEMENT_BYTES;
use crate::engine::secrets::read_token_file;
use crate::server::{DEFAULT_IDLE_RESULT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flight SQL address [default: 127.0.0.1:50051, unless only --pg-listen is given].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Also (or only) serve the PostgreSQL wire protocol on this address, e.g. 127.0.0.1:5432.
    #[arg(long, value_name = "ADDR")]
    pg_listen: Option<SocketAddr>,
    #[command(flatten)]
    session: SessionFlags,
    /// File holding the access token: Flight SQL calls must carry `authorization: Bearer
    /// <token>`, Postgres clients give it as the password (SCRAM-SHA-256, any user name).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// TLS certificate (PEM), for both protocols; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Queries running at once; more wait their turn (default: cores x 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_concurrent_queries: Option<u64>,
    /// Connections open at once on each listener; beyond it a client is refused (Postgres:
    /// SQLSTATE 53300, Flight SQL: RESOURCE_EXHAUSTED).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_connections: u64,
    /// The longest statement a client may send, in bytes (longer ones are refused).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_STATEMENT_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    max_statement_bytes: u64,
    /// Seconds a result may be left unread (a suspended portal, an open cursor, a client
    /// that stopped reading) before its query slot is given back to others; reading it
    /// afterwards is an error.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_IDLE_RESULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_result_timeout: u64,
}

pub async fn run(args: Args) -> Result<()> {
    let token = args
        .token_file
        .as_deref()
        .map(read_token_file)
        .transpose()?;
    let session = args.session;
    // The cluster's token is never the one the server's clients know: with it they could
    // submit plans to the scheduler themselves, past the server's read-only limits.
    if let (Some(client), Some(cluster_file)) = (&token, &session.cluster_token_file)
        && read_token_file(cluster_file)? == *client
    {
        return Err(DataFusionError::Configuration(
            "--cluster-token-file holds the same token as --token-file: the cluster's \
             token must be one the server's clients do not know (they could otherwise \
             submit plans to the cluster directly, past the server's limits)"
                .into(),
        ));
    }
    // The server bounds memory per query (see ServeOptions::memory_limit).
    let ctx = build_session(&SessionOptions {
        memory_limit: None,
        ..session.options()
    })
    .await?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 50051));
    let opts = ServeOptions {
        listen: args
            .listen
            .or(args.pg_listen.is_none().then_some(default_listen)),
        pg_listen: args.pg_listen,
        token,
        tls: args.tls_cert.zip(args.tls_key),
        max_concurrent_queries: args
            .max_concurrent_queries
            .map_or(cores * 2, |n| n as usize),
        max_connections: args.max_connections as usize,
        max_statement_bytes: args.max_statement_bytes as usize,
        idle_result_timeout: Duration::from_secs(args.idle_result_timeout),
        memory_limit: session.memory_limit,
        shutdown_grace: Duration::from_secs(10),
    };
    crate::server::serve(ctx, opts, None, crate::engine::signals::shutdown_signal()).await
}
