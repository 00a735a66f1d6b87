//! `lifecycle serve`: Arrow Flight SQL ([`flight`]) and the PostgreSQL wire protocol ([`pg`]) over
//! one session, sharing what bounds every client: query slots and memory ([`limits`]), result
//! streams lent their slots ([`stream`]), the settings a client may change ([`settings`]), the
//! read-only check on plans ([`read_only`]) and the delays after failed authentications
//! ([`auth_delay`]). This file starts both listeners and stops them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::common::DataFusionError;
use datafusion::prelude::SessionContext;
use tonic::transport::{Identity, Server, ServerTlsConfig};

mod auth_delay;
pub mod flight;
pub mod limits;
mod pg;
pub mod read_only;
pub mod settings;
mod stream;

use flight::auth::Authenticate;
use flight::{LifecycleFlightSql, admission, linger};
pub use flight::{decode_handle, encode_handle, number_question_marks};
use limits::QueryLimits;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Flight SQL's address.
    pub listen: Option<SocketAddr>,
    /// The Postgres protocol's address.
    pub pg_listen: Option<SocketAddr>,
    /// With a token, every call must carry `authorization: Bearer <token>` (or Basic with the
    /// token as password; the handshake with any user and the token as password returns it).
    pub token: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Queries running at once; further ones wait.
    pub max_concurrent_queries: usize,
    /// Connections open at once, on each listener; further ones are refused.
    pub max_connections: usize,
    /// The longest statement a client may send, in bytes.
    pub max_statement_bytes: usize,
    /// How long a result may be left unread before its query slot is given back.
    pub idle_result_timeout: std::time::Duration,
    /// Memory for all queries together; each query gets `memory_limit / max_concurrent_queries`.
    pub memory_limit: Option<usize>,
    /// After the shutdown signal, how long streams in flight may run to completion before they
    /// are cancelled.
    pub shutdown_grace: std::time::Duration,
}

/// How long a result may be left unread by default before its query slot is given back (a
/// suspended portal, an open cursor, a client that stopped reading).
pub const DEFAULT_IDLE_RESULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Connections a listener holds at once by default (PostgreSQL's `max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: u64 = 100;

impl Default for ServeOptions {
    /// Flight SQL on 127.0.0.1:50051, no token or TLS, the default limits.
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            pg_listen: None,
            token: None,
            tls: None,
            max_concurrent_queries: 4,
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            max_statement_bytes: crate::engine::limits::DEFAULT_MAX_STATEMENT_BYTES,
            idle_result_timeout: DEFAULT_IDLE_RESULT_TIMEOUT,
            memory_limit: None,
            shutdown_grace: std::time::Duration::from_secs(10),
        }
    }
}

/// The addresses the server listens on (the ports are known once bound, for `:0`).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub flight: Option<SocketAddr>,
    pub pg: Option<SocketAddr>,
}

/// Runs the server until `shutdown` resolves; returns the bound addresses through `bound`.
///
/// Everything that can fail (TLS files, the Postgres catalog, binding) fails before either
/// listener accepts a connection. At shutdown both listeners stop accepting, queries in flight
/// get `shutdown_grace` to finish, then the remaining connections are closed.
pub async fn serve(
    ctx: SessionContext,
    opts: ServeOptions,
    bound: Option<tokio::sync::oneshot::Sender<Bound>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> datafusion::error::Result<()> {
    let external = |e: String| DataFusionError::Execution(e);
    if opts.listen.is_none() && opts.pg_listen.is_none() {
        return Err(DataFusionError::Configuration(
            "nothing to serve: give --listen, --pg-listen or both".into(),
        ));
    }
    for addr in [opts.listen, opts.pg_listen].into_iter().flatten() {
        if opts.token.is_none() && !addr.ip().is_loopback() {
            eprintln!(
                "warning: listening on {addr} without --token-file: anyone who can reach it can query every table"
            );
        }
    }
    // Read-only whatever a statement's syntax: the catalogs refuse new tables and schemas.
    let ctx = read_only::session(&ctx);
    let limits = QueryLimits::new(
        opts.max_concurrent_queries,
        opts.memory_limit,
        opts.max_statement_bytes,
        opts.idle_result_timeout,
    );
    limits.leases.spawn_reaper();
    let pg = match opts.pg_listen {
        Some(_) => Some(pg::PgFront::new(
            &ctx,
            opts.token.as_deref(),
            opts.tls.as_ref(),
            limits.clone(),
        )?),
        None => None,
    };
    let mut builder = Server::builder();
    if let Some((cert, key)) = &opts.tls {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| external(format!("cannot read {}: {e}", p.display())))
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| external(format!("TLS configuration: {e}")))?;
    }
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| external(format!("cannot listen on {addr}: {e}")))
    };
    let flight_listener = match opts.listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let pg_listener = match opts.pg_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let addresses = Bound {
        flight: flight_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?,
        pg: pg_listener.as_ref().map(|l| l.local_addr()).transpose()?,
    };
    if let Some(a) = addresses.flight {
        eprintln!("lifecycle Flight SQL server listening on {a}");
    }
    if let Some(a) = addresses.pg {
        eprintln!("lifecycle Postgres server listening on {a}");
    }
    if let Some(tx) = bound {
        let _ = tx.send(addresses);
    }

    // One stop signal for both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        eprintln!("lifecycle server stopping: finishing queries in flight");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let grace = opts.shutdown_grace;
    let max_connections = opts.max_connections;
    let pg_task = pg.zip(pg_listener).map(|(front, listener)| {
        let limits = limits.clone();
        // Queries in flight (on either protocol) finish first, within the grace period.
        tokio::spawn(front.run(listener, max_connections, stopped(), async move {
            limits.idle(grace).await
        }))
    });

    if let Some(listener) = flight_listener {
        let service = LifecycleFlightSql::new(ctx, opts.token.clone(), limits.clone());
        let admission = admission::Admission::new(max_connections);
        let auth = Authenticate {
            token: opts.token.as_deref().map(Into::into),
            admission: admission.clone(),
            delays: Arc::default(),
        };
        let lingering = linger::Lingering::default();
        // Graceful shutdown: stop accepting, let streams in flight finish for `shutdown_grace`,
        // then cancel them (dropping the server drops their streams and so their queries).
        let stop = stopped();
        let server = builder
            .add_service(FlightServiceServer::with_interceptor(service, auth))
            .serve_with_incoming_shutdown(lingering.incoming(listener, admission), stop);
        let stop = stopped();
        tokio::select! {
            r = server => r.map_err(|e| external(format!("server error: {e}")))?,
            _ = async {
                stop.await;
                tokio::time::sleep(grace).await;
            } => eprintln!("lifecycle Flight SQL server: cancelled queries still running after {grace:?}"),
        }
        // Connections whose last responses are still on their way to the client close once the
        // client has read them (or the grace period ends).
        lingering.wait(grace).await;
    } else {
        stopped().await;
    }
    if let Some(task) = pg_task {
        let _ = task.await;
    }
    eprintln!("lifecycle server stopped");
    Ok(())
}
