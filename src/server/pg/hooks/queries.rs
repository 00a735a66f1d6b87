//! Queries and cursors of the simple protocol, planned here (rather than by datafusion-postgres)
//! so columns without a Postgres type become JSON text, as in the extended protocol's parser, and
//! so every plan is checked as read-only before it runs; `DECLARE ... CURSOR` keeps its query (and
//! its slot) as a portal that `FETCH` reads and `CLOSE` ends.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;

use super::read_only::refuse_planned_writes;
use crate::server::pg::{api, json, unread_error, user_error};

/// Plans and runs queries and cursors (see the module docs).
pub(in crate::server::pg) struct Queries {
    /// The server's slots and leases (a cursor keeps its statement's slot while it is open).
    pub(in crate::server::pg) limits: crate::server::limits::QueryLimits,
}

/// Portals (bound statements and cursors) a connection may keep open at once.
pub(in crate::server::pg) const MAX_PORTALS: usize = 64;

/// The slots of the simple-protocol message being run on a connection (put there by the
/// connection's query handler, taken by a `DECLARE` for its cursor, which keeps them while it
/// is open: a cursor's query runs, and holds memory, until it is closed).
#[derive(Default)]
pub(in crate::server::pg) struct CurrentLease(
    std::sync::Mutex<Option<Arc<crate::server::stream::Lease>>>,
);

impl CurrentLease {
    pub(in crate::server::pg) fn set(&self, lease: Option<Arc<crate::server::stream::Lease>>) {
        if let Ok(mut current) = self.0.lock() {
            *current = lease;
        }
    }

    fn get(&self) -> Option<Arc<crate::server::stream::Lease>> {
        self.0.lock().ok()?.clone()
    }
}

impl Queries {
    /// A query of the simple protocol, planned here (rather than by `datafusion-postgres`) so
    /// columns without a Postgres type become JSON text, as in the extended protocol's parser,
    /// and so its plan is checked before it runs.
    async fn query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let plan = ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement.clone(),
            )))
            .await
            .map_err(api)?;
        refuse_planned_writes(&plan)?;
        let plan = json::with_json_columns(plan).map_err(api)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(api)?;
        let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        Ok(Response::Query(
            encode_dataframe(df, &Format::UnifiedText, Some(format)).await?,
        ))
    }

    /// `DECLARE name CURSOR FOR query`: the query planned and checked like any other, started,
    /// and kept (with its slot) as a portal that `FETCH` reads and `CLOSE` ends.
    async fn declare(
        &self,
        stmts: &[datafusion::sql::sqlparser::ast::Declare],
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        use datafusion::sql::sqlparser::ast::DeclareType;
        use pgwire::api::portal::Portal;
        use pgwire::api::stmt::StoredStatement;
        for declare in stmts {
            if declare.declare_type != Some(DeclareType::Cursor) {
                return Err(user_error(
                    "42601",
                    format!("unsupported DECLARE type: {:?}", declare.declare_type),
                ));
            }
            let name = declare
                .names
                .first()
                .map(|n| n.value.clone())
                .ok_or_else(|| user_error("42601", "cursor name is required".into()))?;
            let query = declare
                .for_query
                .as_ref()
                .ok_or_else(|| user_error("42601", "DECLARE CURSOR requires a FOR query".into()))?;
            let (open, _) = client.portal_store().portals_weight();
            if open >= MAX_PORTALS {
                return Err(user_error(
                    "54000",
                    format!(
                        "this connection has {open} cursors and portals open, the most it may \
                         keep: CLOSE some first"
                    ),
                ));
            }
            let lease = match client
                .session_extensions()
                .get::<CurrentLease>()
                .and_then(|c| c.get())
            {
                Some(lease) => lease,
                None => self
                    .limits
                    .lease(1)
                    .await
                    .ok_or_else(|| user_error("57P01", "the server is shutting down".into()))?,
            };
            let statement = Statement::Query(query.clone());
            let plan = ctx
                .state()
                .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                    statement,
                )))
                .await
                .map_err(api)?;
            refuse_planned_writes(&plan)?;
            let plan = json::with_json_columns(plan).map_err(api)?;
            let df = ctx.execute_logical_plan(plan).await.map_err(api)?;
            let mut response = encode_dataframe(df, &Format::UnifiedText, None).await?;
            let rows =
                std::mem::replace(&mut response.data_rows, Box::pin(futures::stream::empty()));
            let sql = query.to_string();
            response.data_rows = Box::pin(crate::server::stream::Tracked::new(
                rows,
                lease,
                &self.limits.leases,
                unread_error,
                "pg",
                client.socket_addr().to_string(),
                &sql,
            ));
            let stored = Arc::new(StoredStatement::new(name.clone(), (sql, None), vec![]));
            let portal = Portal::new_cursor(name, stored);
            portal.start(response).await;
            pgwire::api::store::PortalStore::put_portal(client.portal_store(), Arc::new(portal));
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}

#[async_trait]
impl QueryHook for Queries {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Query(_) | Statement::Explain { .. } => {
                Some(self.query(statement, ctx, client).await)
            }
            Statement::Declare { stmts } => Some(self.declare(stmts, ctx, client).await),
            _ => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // The extended protocol's queries are planned (and checked) by the connection's parser.
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Declare { stmts } => Some(self.declare(stmts, ctx, client).await),
            _ => None,
        }
    }
}
