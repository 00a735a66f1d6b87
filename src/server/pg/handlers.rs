//! The query handlers: simple and extended protocol, each statement under a query slot, rows that
//! stop when the connection's interrupt fires, and the parser that checks statements first.

use super::*;

/// `datafusion-postgres`'s query handling, within the server's limits.
pub(super) struct PgQueries {
    pub(super) sessions: Arc<Sessions>,
    pub(super) parser: Arc<PgParser>,
    pub(super) limits: QueryLimits,
    pub(super) interrupt: Arc<Interrupt>,
    pub(super) running: Arc<Running>,
    /// This connection's key in `running`, once known (pgwire assigns it at startup).
    pub(super) key: std::sync::OnceLock<BackendKey>,
}

impl Drop for PgQueries {
    fn drop(&mut self) {
        if let (Some(key), Ok(mut map)) = (self.key.get(), self.running.by_key.lock()) {
            map.remove(key);
        }
    }
}

/// How many of a simple-protocol message's statements start a query, each of which takes a
/// slot (1 when the message does not parse: the parser that runs it reports the error).
pub(super) fn statement_count(query: &str) -> usize {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser as SqlParser;
    match SqlParser::parse_sql(&PostgreSqlDialect {}, query) {
        Ok(statements) => statements.iter().filter(|s| needs_slot(s)).count(),
        Err(_) => 1,
    }
}

/// Whether a statement starts a query (and so takes a slot). Reading a cursor does not: the
/// cursor holds its slot already. Settings, transactions and closing things do not either.
pub(super) fn needs_slot(statement: &Statement) -> bool {
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

pub(super) fn size_check(sql: &str, max: usize) -> PgWireResult<()> {
    crate::engine::limits::check_statement_size(sql, max).map_err(|m| user_error("54000", m))
}

pub(super) fn depth_check(sql: &str) -> PgWireResult<()> {
    crate::engine::limits::check_expression_depth(sql)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
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
        lease: &Option<Arc<crate::server::stream::Lease>>,
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
pub(super) struct Interruptible {
    pub(super) inner: Option<pgwire::api::results::SendableRowStream>,
    pub(super) stop: std::pin::Pin<Box<dyn std::future::Future<Output = Stop> + Send>>,
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
                    .get_or_insert_with(hooks::queries::CurrentLease::default);
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
                    .get_or_insert_with(hooks::queries::CurrentLease::default);
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
pub(super) struct PgParser {
    pub(super) sessions: Arc<Sessions>,
    pub(super) max_statement_bytes: usize,
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
                hooks::read_only::refuse_planned_writes(&plan)?;
                let plan = json::with_json_columns(plan).map_err(api)?;
                Ok(Some((text, Some((statement, plan)))))
            }
            Some((text, Some((statement @ Statement::Explain { .. }, plan)))) => {
                hooks::read_only::refuse_planned_writes(&plan)?;
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
