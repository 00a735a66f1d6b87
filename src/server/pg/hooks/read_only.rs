//! Read-only, first line: refuses, before anything is planned, a statement whose syntax changes
//! data, tables or the server (DDL, DML, COPY, `SELECT ... INTO`, a `WITH` that writes, a cursor or
//! prepared statement over one: SQLSTATE 25006), on the simple protocol and at Parse. The second
//! line is the plan ([`refuse_planned_writes`], [`crate::server::read_only::verify`]): whatever
//! syntax produced it, a plan that creates, changes or writes anything is refused.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement};
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use pgwire::api::ClientInfo;
use pgwire::api::results::Response;
use pgwire::error::{PgWireError, PgWireResult};

use crate::server::pg::user_error;
use crate::server::read_only;

/// The statement-level read-only check (see the module docs).
pub(in crate::server::pg) struct ReadOnly;

fn read_only_error(what: &str) -> PgWireError {
    user_error("25006", read_only::refusal(what))
}

/// Refuses anything that would change data, tables or the server (the statement-level check).
pub(in crate::server::pg) fn refuse_writes(s: &Statement) -> PgWireResult<()> {
    match s {
        Statement::Query(q) => match query_writes(q) {
            Some(what) => Err(read_only_error(what)),
            None => Ok(()),
        },
        Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
            refuse_writes(statement)
        }
        Statement::Declare { stmts } => {
            for d in stmts {
                if d.for_query
                    .as_ref()
                    .is_some_and(|q| query_writes(q).is_some())
                {
                    return Err(read_only_error(
                        "a cursor over a statement that changes data",
                    ));
                }
            }
            Ok(())
        }
        Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowFunctions { .. }
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Deallocate { .. }
        | Statement::Discard { .. } => Ok(()),
        Statement::Execute { name: Some(_), .. } => Ok(()),
        Statement::Copy { .. } => Err(read_only_error("COPY")),
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            Err(read_only_error(&words.join(" ").to_uppercase()))
        }
    }
}

/// What a query writes, if anything: a data-changing `WITH`, or `SELECT ... INTO`.
fn query_writes(q: &Query) -> Option<&'static str> {
    if let Some(w) = &q.with {
        for c in &w.cte_tables {
            if let Some(what) = query_writes(&c.query) {
                return Some(what);
            }
        }
    }
    set_expr_writes(&q.body)
}

fn set_expr_writes(e: &SetExpr) -> Option<&'static str> {
    match e {
        SetExpr::Query(q) => query_writes(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_writes(left).or_else(|| set_expr_writes(right))
        }
        SetExpr::Select(s) if s.into.is_some() => Some("SELECT ... INTO"),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Some("a WITH that changes data")
        }
        _ => None,
    }
}

/// Refuses a planned query that creates, changes or writes anything (the plan-level check).
pub(in crate::server::pg) fn refuse_planned_writes(plan: &LogicalPlan) -> PgWireResult<()> {
    read_only::verify(plan).map_err(|m| user_error("25006", m))
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refuse_writes(statement).err().map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refuse_writes(statement).err().map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Checked at Parse (above), and the plan by the connection's parser.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn parse(sql: &str) -> Statement {
        PostgresCompatibilityParser::new()
            .parse(sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_reads_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT 1",
            "SHOW TIME ZONE",
            "SET lifecycle.churn_days = 120",
            "RESET lifecycle.churn_days",
            "BEGIN",
            "COMMIT",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c",
            "CLOSE c",
        ] {
            assert!(refuse_writes(&parse(ok)).is_ok(), "{ok}");
        }
        for (bad, what) in [
            ("COPY purchases TO STDOUT", "COPY"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("INSERT INTO purchases VALUES (1)", "INSERT INTO"),
            ("DELETE FROM purchases", "DELETE FROM"),
            ("DROP TABLE purchases", "DROP TABLE"),
            ("EXPLAIN ANALYZE INSERT INTO t SELECT 1", "INSERT INTO"),
            ("PREPARE p AS DELETE FROM t", "DELETE FROM"),
            (
                "WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a",
                "WITH",
            ),
            ("SELECT 1 AS x INTO t", "SELECT ... INTO"),
            ("SELECT 1 AS x INTO TEMP t", "SELECT ... INTO"),
            ("SELECT 1 AS x INTO TABLE t", "SELECT ... INTO"),
            (
                "WITH a AS (SELECT 1 AS x) SELECT x INTO t FROM a",
                "SELECT ... INTO",
            ),
            ("(SELECT 1 AS x INTO t)", "SELECT ... INTO"),
            ("EXPLAIN ANALYZE SELECT 1 AS x INTO t", "SELECT ... INTO"),
            ("DECLARE c CURSOR FOR SELECT 1 INTO t", "cursor"),
        ] {
            let e = refuse_writes(&parse(bad)).unwrap_err();
            let PgWireError::UserError(info) = e else {
                panic!("{bad}: {e:?}")
            };
            assert_eq!(info.code, "25006", "{bad}");
            assert!(info.message.contains(what), "{bad}: {}", info.message);
        }
    }
}
