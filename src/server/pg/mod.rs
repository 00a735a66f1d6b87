//! `lifecycle serve --pg-listen`: the PostgreSQL wire protocol, for psql, BI tools and drivers.
//!
//! Built on `datafusion-postgres` (its `DfSessionService` plans and encodes, its hooks answer
//! cursors, transactions and the Postgres `SET`/`SHOW` variables) and `datafusion-pg-catalog`
//! (`pg_catalog`, so psql's `\dt` and `\d`, DBeaver, Metabase and Grafana can browse). What this
//! file adds, through the crate's handler traits:
//!
//! - a session per connection: each connection gets its own copy of the server session's state
//!   (the same tables, by reference, and the same functions), so `SET lifecycle.churn_days = 120`
//!   or `SET TIME ZONE` changes that connection only. The crate's own `SET` fallback would change
//!   the shared session; here it only ever sees the connection's copy, and `lifecycle.*` and
//!   `datafusion.*` settings are applied (or refused) by [`Guard`] before it runs.
//! - read-only: statements other than queries, `EXPLAIN`, `SHOW`, `SET`, transactions and cursors
//!   are refused with SQLSTATE 25006 before they are planned (COPY and DDL and DML included,
//!   also inside `WITH`, `EXPLAIN` and `PREPARE`).
//! - the server's limits: every query holds one of the server's query permits (shared with Flight
//!   SQL) while its rows stream, runs in a memory pool of its share of `--memory-limit`, and is
//!   logged as one line when it ends; expressions too deep to plan are refused first.
//! - authentication: with `--token-file`, SCRAM-SHA-256 with the token as the password (any user
//!   name); the crate's default accepts everyone.
//! - TLS that fails to load is a startup error (the crate's `serve` logs a warning and serves
//!   plaintext instead).
//! - errors as one line with a SQLSTATE that says what went wrong (the crate sends XX000 for
//!   every DataFusion error).

use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
};
use datafusion::common::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;

use super::QueryLimits;
use super::stream::Tracked;
use crate::shell::error_line;

mod connection;
mod guard;

/// The statement a prepared statement or portal holds (`datafusion-postgres`'s).
type PgStatement = (String, Option<(Statement, LogicalPlan)>);

/// SCRAM's iteration count (RFC 7677's minimum and PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

/// The Postgres front end: the server session with `pg_catalog`, and what every connection
/// shares (limits, credentials, TLS, the connections a cancel request may name).
pub(super) struct PgFront {
    sessions: Arc<Sessions>,
    limits: QueryLimits,
    scram: Option<Arc<TokenSource>>,
    tls: Option<TlsAcceptor>,
    running: Arc<Running>,
    cancel: Arc<PgCancel>,
    errors: Arc<PgErrors>,
    auth_delays: crate::server::auth_delay::AuthDelays,
}

/// Why a running query stops early.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Stop {
    /// A cancel request (psql's Ctrl-C) named this connection.
    Cancel,
    /// The client closed its connection.
    Gone,
    /// The connection's `statement_timeout` passed.
    Timeout,
}

/// One connection's interrupt: what stops its running query's rows.
pub(super) struct Interrupt {
    tx: tokio::sync::watch::Sender<Option<Stop>>,
}

impl Interrupt {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: tokio::sync::watch::channel(None).0,
        })
    }

    fn fire(&self, why: Stop) {
        self.tx.send_if_modified(|s| {
            // A gone client stays gone; a cancel only stops the query running now.
            if *s == Some(Stop::Gone) {
                return false;
            }
            *s = Some(why);
            true
        });
    }

    /// A new query starts: an earlier cancel does not apply to it.
    fn start(&self) {
        self.tx.send_if_modified(|s| {
            if *s == Some(Stop::Cancel) {
                *s = None;
                return true;
            }
            false
        });
    }

    /// Resolves when the running query is to stop, with why.
    fn stopped(&self) -> impl std::future::Future<Output = Stop> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            match rx.wait_for(|s| s.is_some()).await {
                Ok(s) => s.unwrap_or(Stop::Gone),
                Err(_) => Stop::Gone,
            }
        }
    }
}

/// The connections by the (process id, secret key) pgwire gave each at startup, for cancel
/// requests (which arrive on a connection of their own).
#[derive(Default)]
struct Running {
    by_key: std::sync::Mutex<std::collections::HashMap<BackendKey, Arc<Interrupt>>>,
}

/// A connection's process id and secret key (what a cancel request names).
type BackendKey = (i32, Vec<u8>);

impl PgFront {
    pub(super) fn new(
        ctx: &SessionContext,
        token: Option<&str>,
        tls: Option<&(PathBuf, PathBuf)>,
        limits: QueryLimits,
    ) -> datafusion::error::Result<Self> {
        let running: Arc<Running> = Arc::default();
        Ok(Self {
            sessions: Arc::new(Sessions::new(pg_session(ctx)?, limits.clone())),
            limits: limits.clone(),
            scram: token.map(|t| Arc::new(TokenSource::new(t))),
            tls: tls.map(|(c, k)| tls_acceptor(c, k)).transpose()?,
            cancel: Arc::new(PgCancel {
                running: running.clone(),
            }),
            running,
            errors: Arc::new(PgErrors { limits }),
            auth_delays: Default::default(),
        })
    }

    /// The startup handler of one connection (its SCRAM exchange has state of its own).
    fn startup(&self, _peer: SocketAddr) -> Arc<PgStartup> {
        let auth = match &self.scram {
            None => Auth::Open(Open),
            Some(source) => Auth::Scram(Box::new(
                SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                    .with_scram({
                        let mut scram = ScramAuth::new(source.clone());
                        scram.set_iterations(SCRAM_ITERATIONS);
                        scram
                    }),
            )),
        };
        Arc::new(PgStartup {
            require_tls: self.tls.is_some(),
            auth,
        })
    }

    /// The handlers of one authenticated connection: no session of its own (see [`Sessions`]).
    fn connection(
        &self,
        interrupt: Arc<Interrupt>,
    ) -> datafusion::error::Result<Arc<PgConnection>> {
        Ok(Arc::new(PgConnection {
            queries: Arc::new(PgQueries {
                sessions: self.sessions.clone(),
                parser: Arc::new(PgParser {
                    sessions: self.sessions.clone(),
                    max_statement_bytes: self.limits.max_statement_bytes,
                }),
                limits: self.limits.clone(),
                interrupt,
                running: self.running.clone(),
                key: std::sync::OnceLock::new(),
            }),
            cancel: self.cancel.clone(),
            startup: self.startup(SocketAddr::from(([0, 0, 0, 0], 0))),
            errors: self.errors.clone(),
        }))
    }
}

/// The sessions statements run in. A connection keeps no session of its own: its settings
/// (what its `SET`s changed, a few lines of text in pgwire's per-connection metadata) and its
/// cursors and prepared statements (pgwire's portal store) are all it holds, and each statement
/// runs in a session built from the server's for it, with those settings checked again and a
/// memory pool of the query's share. An idle connection costs its socket buffers, whatever it
/// ran before (a session copy per connection cost 565 KiB).
pub(super) struct Sessions {
    base: SessionContext,
    /// The server's configuration (what a connection's settings are checked against).
    server_config: Arc<datafusion::common::config::ConfigOptions>,
    hooks: Vec<Arc<dyn QueryHook>>,
    limits: QueryLimits,
    /// datafusion-postgres's parser over the server's session, for what depends on a parsed
    /// statement only (its parameter types and result columns).
    template: Arc<Parser>,
}

impl Sessions {
    fn new(base: SessionContext, limits: QueryLimits) -> Self {
        let server_config = Arc::new(base.state().config_options().as_ref().clone());
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(guard::Guard {
                server: server_config.clone(),
                limits: limits.clone(),
            }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let template = ExtendedQueryHandler::query_parser(&DfSessionService::new_with_hooks(
            Arc::new(base.clone()),
            hooks.clone(),
        ));
        Self {
            base,
            server_config,
            hooks,
            limits,
            template,
        }
    }

    /// datafusion-postgres's service over a session for one statement of `client`'s: the
    /// server's session with the connection's settings and a memory pool of one query's share.
    fn service<C: ClientInfo + ?Sized>(&self, client: &C) -> PgWireResult<DfSessionService> {
        let mut state = self.base.state();
        let settings = guard::connection_settings(client.metadata());
        if !settings.is_empty() {
            let config = state.config_mut().options_mut();
            for (name, value) in &settings {
                crate::server::settings::apply(config, &self.server_config, name, Some(value))
                    .map_err(|e| user_error(e.sqlstate(), e.message().to_string()))?;
            }
        }
        let state = self.limits.state(state).map_err(api)?;
        Ok(DfSessionService::new_with_hooks(
            Arc::new(SessionContext::new_with_state(state)),
            self.hooks.clone(),
        ))
    }
}

/// The server session as Postgres clients see it: the same tables (the schemas are shared, not
/// copied) in a catalog list of its own with `pg_catalog` added, so the Flight SQL listing and
/// the server session stay as they were.
fn pg_session(ctx: &SessionContext) -> datafusion::error::Result<SessionContext> {
    let state = ctx.state();
    let shared = state.catalog_list().clone();
    let list = Arc::new(MemoryCatalogProviderList::new());
    for name in shared.catalog_names() {
        let Some(catalog) = shared.catalog(&name) else {
            continue;
        };
        let copy = Arc::new(MemoryCatalogProvider::new());
        for s in catalog.schema_names() {
            if let Some(schema) = catalog.schema(&s) {
                copy.register_schema(&s, schema)?;
            }
        }
        list.register_catalog(name, copy);
    }
    let default_catalog = state.config_options().catalog.default_catalog.clone();
    let planner = Arc::new(CatalogsHere {
        session: state.query_planner().clone(),
    });
    let state = SessionStateBuilder::new_from_existing(state)
        .with_catalog_list(list)
        .with_query_planner(planner)
        .build();
    let pg = SessionContext::new_with_state(state);
    setup_pg_catalog(&pg, &default_catalog, EmptyContextProvider).map_err(|e| *e)?;
    pg.register_udf(super::pg_functions::current_setting());
    // Then nothing a connection runs can register or drop a table or schema.
    Ok(super::read_only::session(&pg))
}

/// Plans that read anything but Parquet tables (`pg_catalog`, `information_schema`, in-memory
/// tables) run in this process; the rest as the server session plans them. On a `--cluster`
/// session this keeps psql's and BI tools' catalog queries local (the catalog tables exist only
/// here, and the cluster can only read tables registered with `--table`); on a local session both
/// are the same planner.
#[derive(Debug)]
struct CatalogsHere {
    session: Arc<dyn datafusion::execution::context::QueryPlanner + Send + Sync>,
}

#[async_trait]
impl datafusion::execution::context::QueryPlanner for CatalogsHere {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::common::tree_node::TreeNode;
        use datafusion::physical_planner::PhysicalPlanner;
        let local = plan.exists(|node| {
            Ok(match node {
                LogicalPlan::TableScan(scan) => {
                    datafusion::datasource::source_as_provider(&scan.source).map_or(true, |p| {
                        (p.as_ref() as &dyn std::any::Any)
                            .downcast_ref::<datafusion::datasource::listing::ListingTable>()
                            .is_none()
                    })
                }
                _ => false,
            })
        })?;
        if local {
            datafusion::physical_planner::DefaultPhysicalPlanner::default()
                .create_physical_plan(plan, session)
                .await
        } else {
            self.session.create_physical_plan(plan, session).await
        }
    }
}

/// A TLS acceptor from PEM files; any problem is an error (never a plaintext fallback).
fn tls_acceptor(cert: &Path, key: &Path) -> datafusion::error::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, p: &Path, e: String| {
        DataFusionError::Configuration(format!("cannot load TLS {what} '{}': {e}", p.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate and key", cert, e.to_string()))?;
    // PostgreSQL 17's direct TLS negotiation requires the ALPN protocol name.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The token as every user's password, salted once per server start (SCRAM never sends it).
#[derive(Debug)]
struct TokenSource {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl TokenSource {
    fn new(token: &str) -> Self {
        // 16 unpredictable bytes: std's hasher keys come from the operating system's randomness.
        let mut salt = Vec::with_capacity(16);
        for _ in 0..2 {
            let h = std::collections::hash_map::RandomState::new().build_hasher();
            salt.extend_from_slice(&h.finish().to_le_bytes());
        }
        let salted = gen_salted_password(token, &salt, SCRAM_ITERATIONS);
        Self { salt, salted }
    }
}

#[async_trait]
impl AuthSource for TokenSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// No authentication (no `--token-file`).
struct Open;

impl NoopStartupHandler for Open {}

/// Startup: TLS first when the server has a certificate (as Flight SQL, which serves TLS only),
/// then the password when it has a token.
struct PgStartup {
    require_tls: bool,
    auth: Auth,
}

enum Auth {
    Open(Open),
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for PgStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls
            && !client.is_secure()
            && matches!(message, PgWireFrontendMessage::Startup(_))
        {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server accepts TLS connections only: connect with sslmode=require".into(),
            ))));
        }
        match &self.auth {
            Auth::Open(h) => h.on_startup(client, message).await,
            Auth::Scram(h) => h.on_startup(client, message).await,
        }
    }
}

/// One connection's handlers.
struct PgConnection {
    queries: Arc<PgQueries>,
    startup: Arc<PgStartup>,
    errors: Arc<PgErrors>,
    cancel: Arc<PgCancel>,
}

/// Cancel requests: the connection they name stops its running query (SQLSTATE 57014).
struct PgCancel {
    running: Arc<Running>,
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for PgCancel {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let found = self
            .running
            .by_key
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        if let Some(interrupt) = found {
            interrupt.fire(Stop::Cancel);
        }
    }
}

impl PgWireServerHandlers for PgConnection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// `datafusion-postgres`'s query handling, within the server's limits.
struct PgQueries {
    sessions: Arc<Sessions>,
    parser: Arc<PgParser>,
    limits: QueryLimits,
    interrupt: Arc<Interrupt>,
    running: Arc<Running>,
    /// This connection's key in `running`, once known (pgwire assigns it at startup).
    key: std::sync::OnceLock<BackendKey>,
}

impl Drop for PgQueries {
    fn drop(&mut self) {
        if let (Some(key), Ok(mut map)) = (self.key.get(), self.running.by_key.lock()) {
            map.remove(key);
        }
    }
}

/// The error a result ends with when it was left unread and its slot given back.
fn unread_error(idle: std::time::Duration) -> PgWireError {
    user_error(
        "57014",
        format!(
            "canceling statement: its result was left unread for {} s and its slot given back \
             (--idle-result-timeout)",
            idle.as_secs()
        ),
    )
}

/// How many of a simple-protocol message's statements start a query, each of which takes a
/// slot (1 when the message does not parse: the parser that runs it reports the error).
fn statement_count(query: &str) -> usize {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser as SqlParser;
    match SqlParser::parse_sql(&PostgreSqlDialect {}, query) {
        Ok(statements) => statements.iter().filter(|s| needs_slot(s)).count(),
        Err(_) => 1,
    }
}

/// Whether a statement starts a query (and so takes a slot). Reading a cursor does not: the
/// cursor holds its slot already. Settings, transactions and closing things do not either.
fn needs_slot(statement: &Statement) -> bool {
    !matches!(
        statement,
        Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
    )
}

/// The error a stopped query ends with (SQLSTATE 57014, as PostgreSQL's).
fn stop_error(why: Stop) -> PgWireError {
    let message = match why {
        Stop::Cancel => "canceling statement due to user request",
        Stop::Gone => "canceling statement: the client disconnected",
        Stop::Timeout => "canceling statement due to statement timeout",
    };
    user_error("57014", message.into())
}

fn shutting_down() -> PgWireError {
    user_error("57P01", "the server is shutting down".into())
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

fn api(e: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

fn size_check(sql: &str, max: usize) -> PgWireResult<()> {
    crate::limits::check_statement_size(sql, max).map_err(|m| user_error("54000", m))
}

fn depth_check(sql: &str) -> PgWireResult<()> {
    crate::limits::check_expression_depth(sql).map_err(|e| PgWireError::ApiError(Box::new(e)))
}

impl PgQueries {
    /// Before each request: this connection is known to cancel requests, and an earlier cancel
    /// does not stop the new query.
    fn begin<C: ClientInfo>(&self, client: &C) -> Option<tokio::time::Instant> {
        self.key.get_or_init(|| {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes().to_vec());
            if let Ok(mut map) = self.running.by_key.lock() {
                map.insert(key.clone(), self.interrupt.clone());
            }
            key
        });
        self.interrupt.start();
        // datafusion-postgres keeps `SET statement_timeout` in the connection's metadata; it
        // bounds the whole query here, rows included.
        client
            .metadata()
            .get("statement_timeout_ms")
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(|ms| tokio::time::Instant::now() + std::time::Duration::from_millis(ms))
    }

    /// Runs a query's planning and start (waiting for its slot included) until it is done, or
    /// until the connection's interrupt fires (a cancel request, the client hanging up) or its
    /// `statement_timeout` passes: then the work is dropped and the query ends with 57014.
    async fn interruptible<T>(
        &self,
        deadline: Option<tokio::time::Instant>,
        work: impl std::future::Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        let stopped = self.interrupt.stopped();
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = work => r,
            why = stopped => Err(stop_error(why)),
            _ = timeout => Err(stop_error(Stop::Timeout)),
        }
    }

    /// The response with its rows guarded: the permit is held and the query logged until they
    /// end, and a cancel request or a hang-up stops them.
    fn track(
        &self,
        response: Response,
        lease: &Option<Arc<super::stream::Lease>>,
        client: SocketAddr,
        sql: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Response {
        match response {
            Response::Query(mut q) => {
                let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
                // A statement without a slot of its own (a cursor's FETCH: its rows come from
                // the cursor, which holds one) is not tracked again.
                let rows: pgwire::api::results::SendableRowStream = match lease {
                    Some(lease) => Box::pin(Tracked::new(
                        rows,
                        lease.clone(),
                        &self.limits.leases,
                        unread_error,
                        "pg",
                        client.to_string(),
                        sql,
                    )),
                    None => rows,
                };
                let interrupted = self.interrupt.stopped();
                q.data_rows = Box::pin(Interruptible {
                    inner: Some(rows),
                    stop: Box::pin(async move {
                        match deadline {
                            None => interrupted.await,
                            Some(at) => tokio::select! {
                                why = interrupted => why,
                                _ = tokio::time::sleep_until(at) => Stop::Timeout,
                            },
                        }
                    }),
                });
                Response::Query(q)
            }
            other => other,
        }
    }
}

/// Rows that end with "canceling statement" when the connection's interrupt fires; the query
/// (and its slot) is dropped at once.
struct Interruptible {
    inner: Option<pgwire::api::results::SendableRowStream>,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = Stop> + Send>>,
}

impl futures::Stream for Interruptible {
    type Item = PgWireResult<pgwire::messages::data::DataRow>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let next = inner.as_mut().poll_next(cx);
        if next.is_ready() {
            return next;
        }
        if let Poll::Ready(why) = self.stop.as_mut().poll(cx) {
            self.inner = None;
            return Poll::Ready(Some(Err(stop_error(why))));
        }
        Poll::Pending
    }
}

#[async_trait]
impl SimpleQueryHandler for PgQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        size_check(query, self.limits.max_statement_bytes)?;
        depth_check(query)?;
        // Every statement of the message starts at once (datafusion-postgres starts each one's
        // stream before the first row is sent), so the message takes a slot per statement.
        let statements = statement_count(query);
        if statements > self.limits.slots() {
            return Err(user_error(
                "54000",
                format!(
                    "{statements} statements in one message: this server runs at most {} at \
                     once (--max-concurrent-queries); send them one by one",
                    self.limits.slots()
                ),
            ));
        }
        let deadline = self.begin(client);
        let (permit, responses) = self
            .interruptible(deadline, async {
                let lease = match statements {
                    0 => None,
                    n => Some(self.limits.lease(n).await.ok_or_else(shutting_down)?),
                };
                let service = self.sessions.service(client)?;
                // A DECLARE among the statements keeps these slots for its cursor.
                let current = client
                    .session_extensions()
                    .get_or_insert_with(guard::CurrentLease::default);
                current.set(lease.clone());
                let responses = SimpleQueryHandler::do_query(&service, client, query).await;
                current.set(None);
                Ok((lease, responses?))
            })
            .await?;
        let peer = client.socket_addr();
        Ok(responses
            .into_iter()
            .map(|r| self.track(r, &permit, peer, query, deadline))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgQueries {
    type Statement = PgStatement;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = self.begin(client);
        let slot = match &portal.statement.statement.1 {
            Some((statement, _)) => needs_slot(statement),
            None => false,
        };
        let (permit, response) = self
            .interruptible(deadline, async {
                let permit = match slot {
                    true => Some(self.limits.lease(1).await.ok_or_else(shutting_down)?),
                    false => None,
                };
                let service = self.sessions.service(client)?;
                // A DECLARE keeps this slot for its cursor.
                let current = client
                    .session_extensions()
                    .get_or_insert_with(guard::CurrentLease::default);
                current.set(permit.clone());
                let response =
                    ExtendedQueryHandler::do_query(&service, client, portal, max_rows).await;
                current.set(None);
                Ok((permit, response?))
            })
            .await?;
        Ok(self.track(
            response,
            &permit,
            client.socket_addr(),
            &portal.statement.statement.0,
            deadline,
        ))
    }
}

/// `datafusion-postgres`'s parser, after the statement-size and expression-depth limits, and
/// with every planned query checked to be read-only.
struct PgParser {
    sessions: Arc<Sessions>,
    max_statement_bytes: usize,
}

#[async_trait]
impl QueryParser for PgParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        size_check(sql, self.max_statement_bytes)?;
        depth_check(sql)?;
        let service = self.sessions.service(client)?;
        let parser = ExtendedQueryHandler::query_parser(&service);
        match parser.parse_sql(client, sql, types).await? {
            Some((text, Some((statement @ Statement::Query(_), plan)))) => {
                guard::refuse_planned_writes(&plan)?;
                let plan = super::json::with_json_columns(plan).map_err(api)?;
                Ok(Some((text, Some((statement, plan)))))
            }
            Some((text, Some((statement @ Statement::Explain { .. }, plan)))) => {
                guard::refuse_planned_writes(&plan)?;
                Ok(Some((text, Some((statement, plan)))))
            }
            other => Ok(other),
        }
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.sessions.template.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.sessions
            .template
            .get_result_schema(stmt, column_format)
    }
}

/// Errors as one line with a SQLSTATE for what went wrong.
struct PgErrors {
    limits: QueryLimits,
}

impl ErrorHandler for PgErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(_) = error {
            // PostgreSQL's wording, with the user of the startup message (SCRAM's own user
            // field is empty: libpq sends the name at startup only).
            let user = client.metadata().get("user").cloned().unwrap_or_default();
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!("password authentication failed for user \"{user}\""),
            )));
            return;
        }
        let PgWireError::ApiError(inner) = error else {
            return;
        };
        let (code, message) = if let Some(e) = inner.downcast_ref::<DataFusionError>() {
            let code = sqlstate(e);
            let mut message = error_line(e);
            if code == "53200"
                && let Some(note) = self.limits.memory_note()
            {
                message = format!("{message} ({note})");
            }
            (code, message)
        } else if let Some(e) =
            inner.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>()
        {
            ("42601", e.to_string())
        } else {
            ("XX000", inner.to_string())
        };
        *error = user_error(code, message);
    }
}

/// The SQLSTATE of a DataFusion error.
fn sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(m) if m.contains("table") && m.contains("not found") => "42P01",
        DataFusionError::Plan(m) if m.contains("function") => "42883",
        DataFusionError::Plan(_) => "42000",
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => "22000",
        _ => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_stops_the_running_query_only_and_a_hang_up_stays() {
        use futures::FutureExt;
        let i = Interrupt::new();
        let running = i.stopped();
        i.fire(Stop::Cancel);
        assert_eq!(running.await, Stop::Cancel);
        // The next query starts afresh: the earlier cancel does not stop it.
        i.start();
        assert!(i.stopped().now_or_never().is_none());
        let running = i.stopped();
        i.fire(Stop::Gone);
        assert_eq!(running.await, Stop::Gone);
        // A cancel after a hang-up does not hide it, and a new start does not clear it.
        i.fire(Stop::Cancel);
        i.start();
        assert_eq!(i.stopped().await, Stop::Gone);
    }
}
