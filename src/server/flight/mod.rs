//! Arrow Flight SQL: the service (planning, execution and the Flight SQL handlers).
//!
//! - Tickets and prepared-statement handles are self-contained (they carry the SQL, and the bound
//!   parameters as Arrow IPC), so a client may redeem them on any connection, at any time.
//! - Read-only: every statement is verified with DataFusion's `SQLOptions` (no DDL, no DML, no
//!   `SET`/transactions) and its plan by [`crate::server::read_only`], so clients can read
//!   registered tables and nothing else.
//! - Results stream batch by batch; a guard around each result stream releases the query's
//!   slot and logs one line when the stream ends or the client goes away.
//!
//! Files: `auth` checks tokens (and `admission` counts connections), `handles` encodes
//! prepared-statement handles, `metadata` answers the catalog calls' fixed data, `placeholders`
//! numbers `?` marks, `session` keeps session options, `linger` closes connections gracefully.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, SessionState};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::limits::QueryLimits;
use super::read_only;
use super::stream::{DoGetStream, Tracked};
use crate::engine::errors::error_line;

pub(super) mod admission;
pub(super) mod auth;
mod handles;
pub(super) mod linger;
mod metadata;
mod placeholders;
mod session;

use auth::authorized;
use handles::param_values;
pub use handles::{decode_handle, encode_handle};
use metadata::{SQL_INFO, XDBC_INFO, table_type_name};
pub use placeholders::number_question_marks;
use session as flight_session;

/// The Flight SQL service.
#[derive(Clone)]
pub struct LifecycleFlightSql {
    ctx: SessionContext,
    /// The server's settings, which a client's session options are checked against.
    server_config: Arc<datafusion::common::config::ConfigOptions>,
    token: Option<Arc<str>>,
    limits: QueryLimits,
}

pub(super) fn status(e: DataFusionError) -> Status {
    let line = error_line(&e);
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(line),
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(line),
        _ => Status::internal(line),
    }
}

/// A plan's parameters in order: `$1`, `$2`, ... (what `?` marks are numbered to).
fn parameter_names(plan: &LogicalPlan) -> Result<Vec<String>, Status> {
    let mut names: Vec<String> = plan
        .get_parameter_types()
        .map_err(status)?
        .into_keys()
        .collect();
    names.sort_by_key(|n| {
        n.trim_start_matches('$')
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    Ok(names)
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl LifecycleFlightSql {
    pub fn new(ctx: SessionContext, token: Option<String>, limits: QueryLimits) -> Self {
        Self {
            server_config: Arc::new(ctx.state().config_options().as_ref().clone()),
            ctx,
            token: token.map(Into::into),
            limits,
        }
    }

    /// The session a call runs in: the server's, with the settings of the client's session
    /// (its cookie; see [`flight_session`]), checked again.
    fn state(&self, metadata: &tonic::metadata::MetadataMap) -> Result<SessionState, Status> {
        let session =
            flight_session::Session::from_metadata(metadata).map_err(Status::invalid_argument)?;
        let mut state = self.ctx.state();
        match session.apply(&self.server_config) {
            Ok(Some(config)) => *state.config_mut().options_mut() = config,
            Ok(None) => {}
            Err(e) => {
                return Err(Status::invalid_argument(format!(
                    "this session's settings no longer fit the server: {} (set it again, or close \
                     the session)",
                    e.message()
                )));
            }
        }
        Ok(state)
    }

    /// Plans SQL read-only, its parameters (`$1`, `$2`, ... or `?`) left unbound: what a
    /// prepared statement's schemas are described from.
    async fn plan_unbound(&self, sql: &str, state: &SessionState) -> Result<LogicalPlan, Status> {
        crate::engine::limits::check_statement_size(sql, self.limits.max_statement_bytes)
            .map_err(Status::invalid_argument)?;
        // Planning holds a query slot too (a client could otherwise plan many statements at
        // once, outside the slots); a client that goes away drops it with the call.
        let _slot = self
            .limits
            .permit()
            .await
            .ok_or_else(|| Status::unavailable("server is shutting down"))?;
        crate::engine::limits::check_expression_depth(sql).map_err(status)?;
        let sql = number_question_marks(sql).map_err(status)?;
        let plan = state.create_logical_plan(&sql).await.map_err(status)?;
        read_only().verify_plan(&plan).map_err(|e| {
            Status::permission_denied(format!(
                "read-only server: only queries are allowed ({})",
                error_line(&e)
            ))
        })?;
        read_only::verify(&plan).map_err(Status::permission_denied)?;
        Ok(plan)
    }

    /// Plans SQL read-only with its parameters bound, ready to run: a statement with parameters
    /// and no values for them is refused here, with the parameters it has.
    async fn plan(
        &self,
        sql: &str,
        params: Option<&RecordBatch>,
        state: &SessionState,
    ) -> Result<LogicalPlan, Status> {
        let plan = self.plan_unbound(sql, state).await?;
        match params {
            Some(p) => {
                let names = parameter_names(&plan)?;
                if p.num_columns() != names.len() {
                    return Err(Status::invalid_argument(format!(
                        "the statement has {} parameter{} and {} value{} were bound",
                        names.len(),
                        if names.len() == 1 { "" } else { "s" },
                        p.num_columns(),
                        if p.num_columns() == 1 { "" } else { "s" },
                    )));
                }
                plan.with_param_values(param_values(p)?).map_err(status)
            }
            None => {
                let names = parameter_names(&plan)?;
                if names.is_empty() {
                    Ok(plan)
                } else {
                    Err(Status::invalid_argument(format!(
                        "the statement has parameters ({}) and no values were bound: prepare it \
                         and bind one row of values",
                        names.join(", ")
                    )))
                }
            }
        }
    }

    /// Executes a plan as a Flight data stream, holding a concurrency permit while it runs.
    async fn execute<T>(
        &self,
        plan: LogicalPlan,
        sql: &str,
        request: &Request<T>,
        state: SessionState,
    ) -> Result<Response<DoGetStream>, Status> {
        let lease = self
            .limits
            .lease(1)
            .await
            .ok_or_else(|| Status::unavailable("server is shutting down"))?;
        let state = self.limits.state(state).map_err(status)?;
        let df = DataFrame::new(state, plan);
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let limits = self.limits.clone();
        let explain = move |e: DataFusionError| {
            let st = status(e);
            match (limits.memory_note(), st.code()) {
                (Some(note), tonic::Code::ResourceExhausted) => {
                    Status::resource_exhausted(format!("{} ({note})", st.message()))
                }
                _ => st,
            }
        };
        let stream: SendableRecordBatchStream =
            df.execute_stream().await.map_err(explain.clone())?;
        let client = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into());
        let tracked = Tracked::new(
            Box::pin(stream.map_err(move |e| FlightError::from(explain(e)))),
            lease,
            &self.limits.leases,
            |idle| {
                FlightError::Tonic(Box::new(Status::deadline_exceeded(format!(
                    "the result was left unread for {} s: its query slot was given back",
                    idle.as_secs()
                ))))
            },
            "flight",
            client,
            sql,
        );
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(tracked)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

    fn info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket {
            ticket: ticket.into(),
        });
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor))
    }

    /// A one-batch metadata result (catalogs, tables, SqlInfo, ...) as a Flight stream.
    fn batch_stream(
        schema: SchemaRef,
        batch: Result<RecordBatch, impl std::fmt::Display>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { Ok(batch) }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    /// FlightInfo for a metadata command: its result schema, and the command itself as ticket.
    fn describe(
        &self,
        request: Request<FlightDescriptor>,
        schema: SchemaRef,
        ticket: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(Response::new(Self::info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    /// Every (catalog, schema, table, provider) of the session.
    async fn tables(
        &self,
    ) -> Result<Vec<(String, String, String, Arc<dyn TableProvider>)>, Status> {
        let mut out = vec![];
        let catalogs = self.ctx.state().catalog_list().clone();
        for c in catalogs.catalog_names() {
            let Some(catalog) = catalogs.catalog(&c) else {
                continue;
            };
            for s in catalog.schema_names() {
                let Some(schema) = catalog.schema(&s) else {
                    continue;
                };
                for t in schema.table_names() {
                    if let Some(p) = schema.table(&t).await.map_err(status)? {
                        out.push((c.clone(), s.clone(), t, p));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl FlightSqlService for LifecycleFlightSql {
    type FlightService = LifecycleFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let token = match &self.token {
            None => String::new(),
            Some(token) => {
                // The interceptor has checked it already; checked again so the handshake never
                // hands the token out on its own.
                if !authorized(token, request.metadata()) {
                    return Err(Status::unauthenticated("invalid credentials"));
                }
                token.to_string()
            }
        };
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let stream = futures::stream::iter(vec![Ok(response)]);
        let mut resp: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream));
        if !token.is_empty() {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("token is not a valid header value"))?;
            resp.metadata_mut().insert("authorization", value);
        }
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let state = self.state(request.metadata())?;
        let plan = self.plan(&query.query, None, &state).await?;
        let schema = plan.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let info = Self::info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("invalid statement ticket"))?;
        let state = self.state(request.metadata())?;
        let plan = self.plan(&sql, None, &state).await?;
        self.execute(plan, &sql, &request, state).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (sql, params) = decode_handle(&cmd.prepared_statement_handle)?;
        let state = self.state(request.metadata())?;
        let plan = self.plan(&sql, params.as_ref(), &state).await?;
        let schema = plan.schema().as_arrow().clone();
        let info = Self::info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (sql, params) = decode_handle(&cmd.prepared_statement_handle)?;
        let state = self.state(request.metadata())?;
        let plan = self.plan(&sql, params.as_ref(), &state).await?;
        self.execute(plan, &sql, &request, state).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let state = self.state(request.metadata())?;
        let plan = self.plan_unbound(&query.query, &state).await?;
        let dataset: Schema = plan.schema().as_arrow().clone();
        let param_types = plan.get_parameter_types().map_err(status)?;
        let fields: Vec<datafusion::arrow::datatypes::Field> = parameter_names(&plan)?
            .iter()
            .map(|n| {
                let t = param_types[n]
                    .as_ref()
                    .cloned()
                    .unwrap_or(datafusion::arrow::datatypes::DataType::Null);
                datafusion::arrow::datatypes::Field::new(n.as_str(), t, true)
            })
            .collect();
        let to_ipc = |s: &Schema| -> Result<prost::bytes::Bytes, Status> {
            let IpcMessage(bytes) = SchemaAsIpc::new(s, &IpcWriteOptions::default())
                .try_into()
                .map_err(|e: datafusion::arrow::error::ArrowError| {
                    Status::internal(e.to_string())
                })?;
            Ok(bytes)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: encode_handle(&query.query, None)?.into(),
            dataset_schema: to_ipc(&dataset)?,
            parameter_schema: to_ipc(&Schema::new(fields))?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let (sql, _) = decode_handle(&cmd.prepared_statement_handle)?;
        let state = self.state(request.metadata())?;
        // One batch of one row; reading stops at a second batch (a client streaming batches
        // would otherwise be buffered without bound).
        let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let params = batches.try_next().await.map_err(Status::from)?;
        if batches.try_next().await.map_err(Status::from)?.is_some() {
            return Err(Status::invalid_argument(
                "bind exactly one row of parameters in one batch",
            ));
        }
        if let Some(p) = &params {
            // Fail early on a bad binding rather than at execution.
            self.plan(&sql, Some(p), &state).await?;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(encode_handle(&sql, params.as_ref())?.into()),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles are self-contained: nothing is held on the server.
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.describe(request, query.into_builder().schema(), ticket)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        for c in self.ctx.catalog_names() {
            b.append(c);
        }
        Self::batch_stream(b.schema(), b.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.describe(request, query.into_builder().schema(), ticket)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        let catalogs = self.ctx.state().catalog_list().clone();
        for c in catalogs.catalog_names() {
            if let Some(catalog) = catalogs.catalog(&c) {
                for s in catalog.schema_names() {
                    b.append(&c, s);
                }
            }
        }
        Self::batch_stream(b.schema(), b.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.describe(request, query.into_builder().schema(), ticket)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        for (c, s, t, p) in self.tables().await? {
            b.append(&c, &s, &t, table_type_name(p.table_type()), &p.schema())
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Self::batch_stream(b.schema(), b.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.describe(request, query.into_builder().schema(), ticket)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        let mut seen = HashSet::new();
        for name in ["TABLE", "VIEW", "LOCAL TEMPORARY"] {
            if seen.insert(name) {
                b.append(name);
            }
        }
        Self::batch_stream(b.schema(), b.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.describe(request, query.into_builder(&SQL_INFO).schema(), ticket)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let b = query.into_builder(&SQL_INFO);
        Self::batch_stream(b.schema(), b.build())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.describe(request, query.into_builder(&XDBC_INFO).schema(), ticket)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let b = query.into_builder(&XDBC_INFO);
        Self::batch_stream(b.schema(), b.build())
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "unsupported ticket: {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}

    /// Flight's session actions (see [`flight_session`]); nothing else.
    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>,
        Status,
    > {
        use flight_session::{CLOSE, GET, SET, Session};
        let session = Session::from_metadata(request.metadata());
        let action = request.into_inner();
        // Closing always works, even a session this server can no longer read.
        let mut session = match (action.r#type.as_str(), session) {
            (CLOSE, _) => Session::default(),
            (_, s) => s.map_err(Status::invalid_argument)?,
        };
        let (body, cookie) = match action.r#type.as_str() {
            SET => {
                let wanted = flight_session::SetSessionOptionsRequest::decode(action.body)
                    .map_err(|e| {
                        Status::invalid_argument(format!("invalid SetSessionOptionsRequest: {e}"))
                    })?;
                if wanted.session_options.len() > flight_session::MAX_OPTIONS_PER_REQUEST {
                    return Err(Status::invalid_argument(format!(
                        "{} session options in one request: at most {} at once",
                        wanted.session_options.len(),
                        flight_session::MAX_OPTIONS_PER_REQUEST
                    )));
                }
                let errors = session.set(&self.server_config, wanted.session_options);
                let result = flight_session::SetSessionOptionsResult { errors };
                (result.encode_to_vec(), session.set_cookie())
            }
            GET => {
                let result = flight_session::GetSessionOptionsResult {
                    session_options: session.options(&self.server_config),
                };
                (result.encode_to_vec(), session.set_cookie())
            }
            CLOSE => {
                let result = flight_session::CloseSessionResult {
                    status: flight_session::CLOSED,
                };
                (result.encode_to_vec(), Session::clear_cookie())
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action '{other}' (this server's actions: CreatePreparedStatement, \
                     ClosePreparedStatement, {SET}, {GET}, {CLOSE})"
                )));
            }
        };
        let result = arrow_flight::Result { body: body.into() };
        let stream: <Self as arrow_flight::flight_service_server::FlightService>::DoActionStream =
            Box::pin(futures::stream::iter(vec![Ok(result)]));
        let mut response = Response::new(stream);
        let value = cookie
            .parse()
            .map_err(|_| Status::internal("the session cookie is not a valid header"))?;
        response.metadata_mut().insert("set-cookie", value);
        Ok(response)
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(arrow_flight::ActionType {
                r#type: name.into(),
                description: description.into(),
            })
        };
        Some(vec![
            action(
                flight_session::SET,
                "Set this session's settings (lifecycle.* and some datafusion.*, each within the \
                 server's range); the session is kept in the arrow_flight_session_id cookie",
            ),
            action(flight_session::GET, "This session's settings"),
            action(
                flight_session::CLOSE,
                "End this session: back to the server's settings",
            ),
        ])
    }
}
