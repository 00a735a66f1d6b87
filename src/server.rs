//! `lifecycle serve`: an Arrow Flight SQL server over the same session as the shell.
//!
//! - Tickets and prepared-statement handles are self-contained (they carry the SQL, and the bound
//!   parameters as Arrow IPC), so a client may redeem them on any connection, at any time.
//! - Read-only: every statement is verified with DataFusion's `SQLOptions` (no DDL, no DML, no
//!   `SET`/transactions), so clients can read registered tables and nothing else.
//! - Results stream batch by batch; a guard around each result stream releases the query's
//!   concurrency permit and logs one line when the stream ends or the client goes away.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult, Nullable,
    ProstMessageExt, Searchable, SqlInfo, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use base64::Engine;
use base64::prelude::BASE64_STANDARD_NO_PAD;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, ParamValues, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataValue;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::shell::error_line;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// With a token, every call must carry `authorization: Bearer <token>` (or Basic with the
    /// token as password; the handshake with any user and the token as password returns it).
    pub token: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Queries running at once; further ones wait.
    pub max_concurrent_queries: usize,
    /// Memory for all queries together; each query gets `memory_limit / max_concurrent_queries`.
    pub memory_limit: Option<usize>,
    /// After the shutdown signal, how long streams in flight may run to completion before they
    /// are cancelled.
    pub shutdown_grace: std::time::Duration,
}

/// The Flight SQL service.
#[derive(Clone)]
pub struct LifecycleFlightSql {
    ctx: SessionContext,
    token: Option<Arc<str>>,
    permits: Arc<Semaphore>,
    /// Each query's own memory budget (`--memory-limit` / `--max-concurrent-queries`), so one
    /// query over its share fails alone instead of starving the others.
    query_memory: Option<usize>,
    /// What an out-of-memory error adds: that the pool it names is the query's share.
    memory_share: Arc<Option<String>>,
}

fn status(e: DataFusionError) -> Status {
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

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

const HANDLE_MAGIC: &[u8; 4] = b"LCP1";

/// A prepared statement handle: magic, SQL length, SQL, then the bound parameters as an Arrow
/// IPC stream (absent until parameters are bound).
pub fn encode_handle(sql: &str, params: Option<&RecordBatch>) -> Result<Vec<u8>, Status> {
    let mut out = Vec::with_capacity(8 + sql.len());
    out.extend_from_slice(HANDLE_MAGIC);
    out.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    out.extend_from_slice(sql.as_bytes());
    if let Some(batch) = params {
        let mut w = StreamWriter::try_new(&mut out, &batch.schema())
            .map_err(|e| Status::internal(e.to_string()))?;
        w.write(batch)
            .map_err(|e| Status::internal(e.to_string()))?;
        w.finish().map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(out)
}

pub fn decode_handle(handle: &[u8]) -> Result<(String, Option<RecordBatch>), Status> {
    let bad = || Status::invalid_argument("invalid prepared statement handle");
    if handle.len() < 8 || &handle[..4] != HANDLE_MAGIC {
        return Err(bad());
    }
    let len = u32::from_le_bytes(handle[4..8].try_into().map_err(|_| bad())?) as usize;
    let sql = handle.get(8..8 + len).ok_or_else(bad)?;
    let sql = std::str::from_utf8(sql).map_err(|_| bad())?.to_string();
    let rest = &handle[8 + len..];
    let params = if rest.is_empty() {
        None
    } else {
        let mut r =
            datafusion::arrow::ipc::reader::StreamReader::try_new(rest, None).map_err(|_| bad())?;
        r.next().transpose().map_err(|_| bad())?
    };
    Ok((sql, params))
}

/// The first row of a parameter batch as positional parameter values (`$1`, `$2`, ...).
fn param_values(batch: &RecordBatch) -> Result<ParamValues, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters, got {}",
            batch.num_rows()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<datafusion::error::Result<Vec<_>>>()
        .map_err(status)?;
    Ok(ParamValues::List(
        values.into_iter().map(Into::into).collect(),
    ))
}

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Lifecycle");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierCase, 1i32); // case insensitive
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 3i32); // case sensitive
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, 1i32); // nulls sorted high? DataFusion: NULLS LAST for ASC
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.build().expect("valid SqlInfo")
});

static XDBC_INFO: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let mut add = |name: &str, t: XdbcDataType, prefix: Option<&str>| {
        b.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type: t,
            column_size: None,
            literal_prefix: prefix.map(Into::into),
            literal_suffix: prefix.map(|_| "'".into()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(t, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: None,
            fixed_prec_scale: false,
            auto_increment: None,
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: t,
            datetime_subcode: None,
            num_prec_radix: None,
            interval_precision: None,
        })
    };
    add("BOOLEAN", XdbcDataType::XdbcBit, None);
    add("INTEGER", XdbcDataType::XdbcInteger, None);
    add("BIGINT", XdbcDataType::XdbcBigint, None);
    add("DOUBLE", XdbcDataType::XdbcDouble, None);
    add("VARCHAR", XdbcDataType::XdbcVarchar, Some("'"));
    add("DATE", XdbcDataType::XdbcDate, Some("DATE '"));
    add(
        "TIMESTAMP",
        XdbcDataType::XdbcTimestamp,
        Some("TIMESTAMP '"),
    );
    b.build().expect("valid XdbcTypeInfo")
});

/// A result stream that holds the query's permit and logs one line when it ends or is dropped.
struct Tracked {
    inner: Pin<Box<dyn Stream<Item = Result<RecordBatch, FlightError>> + Send>>,
    _permit: OwnedSemaphorePermit,
    client: String,
    sql: String,
    started: Instant,
    rows: usize,
    outcome: &'static str,
}

impl Stream for Tracked {
    type Item = Result<RecordBatch, FlightError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let p = self.inner.as_mut().poll_next(cx);
        match &p {
            Poll::Ready(Some(Ok(b))) => self.rows += b.num_rows(),
            Poll::Ready(Some(Err(_))) => self.outcome = "error",
            Poll::Ready(None) if self.outcome == "cancelled" => self.outcome = "ok",
            _ => {}
        }
        p
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        eprintln!(
            "query client={} rows={} duration={:.3}s outcome={} sql={:?}",
            self.client,
            self.rows,
            self.started.elapsed().as_secs_f64(),
            self.outcome,
            self.sql
        );
    }
}

fn first_chars(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(100).collect()
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

impl LifecycleFlightSql {
    pub fn new(
        ctx: SessionContext,
        token: Option<String>,
        max_concurrent_queries: usize,
        memory_limit: Option<usize>,
    ) -> Self {
        let slots = max_concurrent_queries.max(1);
        let query_memory = memory_limit.map(|m| (m / slots).max(1));
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        let memory_share = memory_limit.zip(query_memory).map(|(m, q)| {
            format!(
                "each query may use {:.1} MiB: --memory-limit {:.1} MiB divided by \
                 --max-concurrent-queries {slots}",
                mib(q),
                mib(m)
            )
        });
        Self {
            ctx,
            token: token.map(Into::into),
            permits: Arc::new(Semaphore::new(slots)),
            query_memory,
            memory_share: Arc::new(memory_share),
        }
    }

    /// The state a query runs with: the session's, with the query's own memory pool when the
    /// server has a memory limit (spill files, caches and object stores stay shared).
    fn query_state(&self) -> Result<SessionState, Status> {
        let base = self.ctx.state();
        let Some(bytes) = self.query_memory else {
            return Ok(base);
        };
        let runtime = RuntimeEnvBuilder::from_runtime_env(base.runtime_env())
            .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
            .build_arc()
            .map_err(status)?;
        Ok(SessionStateBuilder::new_from_existing(base)
            .with_runtime_env(runtime)
            .build())
    }

    /// Plans SQL read-only, with parameters bound when given.
    async fn plan(&self, sql: &str, params: Option<&RecordBatch>) -> Result<LogicalPlan, Status> {
        crate::limits::check_expression_depth(sql).map_err(status)?;
        let state = self.ctx.state();
        let plan = state.create_logical_plan(sql).await.map_err(status)?;
        read_only().verify_plan(&plan).map_err(|e| {
            Status::permission_denied(format!(
                "read-only server: only queries are allowed ({})",
                error_line(&e)
            ))
        })?;
        match params {
            Some(p) => plan.with_param_values(param_values(p)?).map_err(status),
            None => Ok(plan),
        }
    }

    /// Executes a plan as a Flight data stream, holding a concurrency permit while it runs.
    async fn execute<T>(
        &self,
        plan: LogicalPlan,
        sql: &str,
        request: &Request<T>,
    ) -> Result<Response<DoGetStream>, Status> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("server is shutting down"))?;
        let df = DataFrame::new(self.query_state()?, plan);
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let share = self.memory_share.clone();
        let explain = move |e: DataFusionError| {
            let st = status(e);
            match (&*share, st.code()) {
                (Some(note), tonic::Code::ResourceExhausted) => {
                    Status::resource_exhausted(format!("{} ({note})", st.message()))
                }
                _ => st,
            }
        };
        let stream: SendableRecordBatchStream =
            df.execute_stream().await.map_err(explain.clone())?;
        let tracked = Tracked {
            inner: Box::pin(stream.map_err(move |e| FlightError::from(explain(e)))),
            _permit: permit,
            client: request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            sql: first_chars(sql),
            started: Instant::now(),
            rows: 0,
            outcome: "cancelled",
        };
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

/// Equality of two secrets in time that depends on their lengths only, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether request metadata carries the token: `authorization: Bearer <token>`, or Basic with the
/// token as the password (any user).
fn authorized(token: &str, metadata: &tonic::metadata::MetadataMap) -> bool {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(t) = header.strip_prefix("Bearer ") {
        return constant_time_eq(t.as_bytes(), token.as_bytes());
    }
    basic_credentials(header)
        .is_some_and(|(_, pass)| constant_time_eq(pass.as_bytes(), token.as_bytes()))
}

/// Checks the token on every call before the call's message is even decoded (a tonic
/// interceptor runs on the request headers): without valid credentials, every method,
/// `list_actions` and a garbage ticket included, answers Unauthenticated and nothing else.
#[derive(Clone)]
struct Authenticate {
    token: Option<Arc<str>>,
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match &self.token {
            Some(token) if !authorized(token, request.metadata()) => Err(Status::unauthenticated(
                "missing or invalid credentials: send 'authorization: Bearer <token>'",
            )),
            _ => Ok(request),
        }
    }
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    // Padding is optional: Go clients (ADBC's Flight SQL driver) send unpadded base64.
    let decoded = BASE64_STANDARD_NO_PAD
        .decode(encoded.trim().trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
        TableType::Base => "TABLE",
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
        let plan = self.plan(&query.query, None).await?;
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
        let plan = self.plan(&sql, None).await?;
        self.execute(plan, &sql, &request).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (sql, params) = decode_handle(&cmd.prepared_statement_handle)?;
        let plan = self.plan(&sql, params.as_ref()).await?;
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
        let plan = self.plan(&sql, params.as_ref()).await?;
        self.execute(plan, &sql, &request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let plan = self.plan(&query.query, None).await?;
        let dataset: Schema = plan.schema().as_arrow().clone();
        let param_types = plan.get_parameter_types().map_err(status)?;
        let mut names: Vec<&String> = param_types.keys().collect();
        names.sort_by_key(|n| {
            n.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let fields: Vec<datafusion::arrow::datatypes::Field> = names
            .iter()
            .map(|n| {
                let t = param_types[*n]
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
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request.into_inner().map_err(FlightError::from),
            )
            .try_collect()
            .await
            .map_err(Status::from)?;
        let params = match batches.as_slice() {
            [] => None,
            [b] => Some(b.clone()),
            _ => {
                return Err(Status::invalid_argument(
                    "bind exactly one row of parameters in one batch",
                ));
            }
        };
        if let Some(p) = &params {
            // Fail early on a bad binding rather than at execution.
            self.plan(&sql, Some(p)).await?;
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
}

/// Runs the server until `shutdown` resolves; returns the bound address through `bound`.
pub async fn serve(
    ctx: SessionContext,
    opts: ServeOptions,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> datafusion::error::Result<()> {
    let external = |e: String| DataFusionError::Execution(e);
    if opts.token.is_none() && !opts.listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on {} without --token-file: anyone who can reach it can query every table",
            opts.listen
        );
    }
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
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| external(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener.local_addr()?;
    eprintln!("lifecycle Flight SQL server listening on {addr}");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let service = LifecycleFlightSql::new(
        ctx,
        opts.token.clone(),
        opts.max_concurrent_queries,
        opts.memory_limit,
    );
    let auth = Authenticate {
        token: opts.token.as_deref().map(Into::into),
    };
    let lingering = crate::linger::Lingering::default();
    // Graceful shutdown: stop accepting, let streams in flight finish for `shutdown_grace`, then
    // cancel them (dropping the server drops their streams and so their queries).
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = builder
        .add_service(FlightServiceServer::with_interceptor(service, auth))
        .serve_with_incoming_shutdown(lingering.incoming(listener), async move {
            shutdown.await;
            eprintln!("lifecycle Flight SQL server stopping: finishing queries in flight");
            let _ = stopping_tx.send(());
        });
    let grace = opts.shutdown_grace;
    tokio::select! {
        r = server => r.map_err(|e| external(format!("server error: {e}")))?,
        _ = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => eprintln!("lifecycle Flight SQL server: cancelled queries still running after {grace:?}"),
    }
    // Connections whose last responses are still on their way to the client close once the
    // client has read them (or the grace period ends).
    lingering.wait(grace).await;
    eprintln!("lifecycle Flight SQL server stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn handles_round_trip() {
        let h = encode_handle("SELECT $1", None).unwrap();
        assert_eq!(decode_handle(&h).unwrap(), ("SELECT $1".to_string(), None));
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![7])) as _),
            ("b", Arc::new(StringArray::from(vec!["x"])) as _),
        ])
        .unwrap();
        let h = encode_handle("SELECT $1, $2", Some(&batch)).unwrap();
        let (sql, params) = decode_handle(&h).unwrap();
        assert_eq!(sql, "SELECT $1, $2");
        assert_eq!(params.unwrap(), batch);
        assert!(decode_handle(b"garbage").is_err());
    }

    #[test]
    fn basic_auth() {
        use base64::prelude::BASE64_STANDARD;
        let h = format!("Basic {}", BASE64_STANDARD.encode("user:s3cret"));
        assert_eq!(
            basic_credentials(&h),
            Some(("user".into(), "s3cret".into()))
        );
        // Unpadded, as Go's base64.RawStdEncoding (ADBC) sends it.
        let h = format!("Basic {}", BASE64_STANDARD_NO_PAD.encode("user:s3cret"));
        assert_eq!(
            basic_credentials(&h),
            Some(("user".into(), "s3cret".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
    }
}
