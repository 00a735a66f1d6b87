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
//!   `datafusion.*` settings are applied (or refused) by the settings hook before it runs.
//! - read-only: statements other than queries, `EXPLAIN`, `SHOW`, `SET`, transactions and cursors
//!   are refused with SQLSTATE 25006 before they are planned (COPY and DDL and DML included,
//!   also inside `WITH`, `EXPLAIN` and `PREPARE`), and every plan is checked again.
//! - statement hooks, one file each under `hooks/` (read-only, settings, queries and cursors),
//!   listed in order in `hooks::hooks`.
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

use crate::engine::errors::error_line;
use crate::server::limits::QueryLimits;
use crate::server::stream::Tracked;

mod auth;
mod connection;
mod errors;
mod handlers;
mod hooks;
mod json;

use auth::{Auth, Open, PgStartup, SCRAM_ITERATIONS, TokenSource, tls_acceptor};
use errors::{PgErrors, api, shutting_down, stop_error, unread_error, user_error};
use handlers::{PgParser, PgQueries};

/// The statement a prepared statement or portal holds (`datafusion-postgres`'s).
type PgStatement = (String, Option<(Statement, LogicalPlan)>);

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
        let hooks = hooks::hooks(server_config.clone(), limits.clone());
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
        let settings = hooks::settings::connection_settings(client.metadata());
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
    pg.register_udf(crate::engine::functions::current_setting::current_setting());
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
