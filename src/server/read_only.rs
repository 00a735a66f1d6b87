//! Read-only, decided on what a statement does rather than how it is written.
//!
//! Two layers, on both protocols:
//! - [`verify`]: every planned statement is refused if its plan (subqueries, `EXPLAIN` and
//!   `EXPLAIN ANALYZE` inputs included) creates, changes or writes anything: DDL (`CREATE`,
//!   `DROP`, `SELECT ... INTO`, which plans as `CreateMemoryTable`, views, schemas), DML (`INSERT`,
//!   `UPDATE`, `DELETE`), `COPY ... TO`, or a statement node (`SET`, `PREPARE`, transactions: the
//!   protocols answer those themselves, before planning). Whatever syntax produced the plan, the
//!   plan is what is checked.
//! - [`catalogs`]: the server's catalogs refuse to register or drop a table or a schema, so even a
//!   write that reached execution by a path the check does not see could not change what other
//!   connections read.
//!
//! The protocols' statement-level checks (the Postgres listener's AST guard, Flight SQL's
//! `SQLOptions`) stay in front as a first line with their own messages.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};

/// What the first write in `plan` is, if any (e.g. "CREATE TABLE (SELECT ... INTO)", "COPY ... TO").
pub fn first_write(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let what = match node {
            LogicalPlan::Ddl(d) => Some(match d {
                DdlStatement::CreateMemoryTable(_) => {
                    "CREATE TABLE (also SELECT ... INTO)".to_string()
                }
                DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
                DdlStatement::CreateView(_) => "CREATE VIEW".into(),
                DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA".into(),
                DdlStatement::CreateCatalog(_) => "CREATE DATABASE".into(),
                DdlStatement::CreateIndex(_) => "CREATE INDEX".into(),
                DdlStatement::DropTable(_) => "DROP TABLE".into(),
                DdlStatement::DropView(_) => "DROP VIEW".into(),
                DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA".into(),
                DdlStatement::CreateFunction(_) => "CREATE FUNCTION".into(),
                DdlStatement::DropFunction(_) => "DROP FUNCTION".into(),
            }),
            LogicalPlan::Dml(d) => Some(match &d.op {
                WriteOp::Insert(_) => "INSERT".to_string(),
                WriteOp::Delete => "DELETE".into(),
                WriteOp::Update => "UPDATE".into(),
                WriteOp::Ctas => "CREATE TABLE AS".into(),
                other => other.name().to_string(),
            }),
            LogicalPlan::Copy(_) => Some("COPY ... TO".to_string()),
            LogicalPlan::Statement(s) => Some(s.name().to_uppercase()),
            _ => None,
        };
        match what {
            Some(w) => {
                found = Some(w);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    found
}

/// The message a refused write gets on either protocol.
pub fn refusal(what: &str) -> String {
    format!(
        "read-only server: {what} is not allowed (only queries, EXPLAIN, SHOW, SET of this \
         connection's settings, transactions and cursors)"
    )
}

/// Refuses a plan that creates, changes or writes anything (see the module docs).
pub fn verify(plan: &LogicalPlan) -> std::result::Result<(), String> {
    match first_write(plan) {
        Some(what) => Err(refusal(&what)),
        None => Ok(()),
    }
}

fn refused(what: &str) -> DataFusionError {
    DataFusionError::Plan(refusal(what))
}

/// The catalogs of `list`, read-only: tables and schemas are read as before; registering or
/// dropping one is an error, and registering a catalog is ignored.
pub fn catalogs(list: Arc<dyn CatalogProviderList>) -> Arc<dyn CatalogProviderList> {
    Arc::new(ReadOnlyCatalogs(list))
}

/// `ctx` with its catalogs read-only (see [`catalogs`]): the same tables, functions and
/// settings.
pub fn session(ctx: &datafusion::prelude::SessionContext) -> datafusion::prelude::SessionContext {
    let state = ctx.state();
    let list = catalogs(state.catalog_list().clone());
    datafusion::prelude::SessionContext::new_with_state(
        datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(list)
            .build(),
    )
}

#[derive(Debug)]
struct ReadOnlyCatalogs(Arc<dyn CatalogProviderList>);

impl CatalogProviderList for ReadOnlyCatalogs {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.0.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.0
            .catalog(name)
            .map(|c| Arc::new(ReadOnlyCatalog(c)) as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
struct ReadOnlyCatalog(Arc<dyn CatalogProvider>);

impl CatalogProvider for ReadOnlyCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0
            .schema(name)
            .map(|s| Arc::new(ReadOnlySchema(s)) as Arc<dyn SchemaProvider>)
    }

    fn register_schema(
        &self,
        _name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Err(refused("CREATE SCHEMA"))
    }

    fn deregister_schema(
        &self,
        _name: &str,
        _cascade: bool,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Err(refused("DROP SCHEMA"))
    }
}

#[derive(Debug)]
struct ReadOnlySchema(Arc<dyn SchemaProvider>);

#[async_trait]
impl SchemaProvider for ReadOnlySchema {
    fn owner_name(&self) -> Option<&str> {
        self.0.owner_name()
    }

    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.0.table(name).await
    }

    async fn table_type(&self, name: &str) -> Result<Option<datafusion::logical_expr::TableType>> {
        self.0.table_type(name).await
    }

    fn register_table(
        &self,
        _name: String,
        _table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(refused("creating a table"))
    }

    fn deregister_table(&self, _name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(refused("dropping a table"))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn plan(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        ctx.state().create_logical_plan(sql).await.unwrap()
    }

    #[tokio::test]
    async fn writes_are_found_whatever_the_syntax() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1)").await.unwrap();
        for (sql, what) in [
            ("SELECT 1 AS x INTO t2", "SELECT ... INTO"),
            ("SELECT 1 AS x INTO TEMP t2", "SELECT ... INTO"),
            (
                "WITH a AS (SELECT 1 AS x) SELECT x INTO t2 FROM a",
                "SELECT ... INTO",
            ),
            ("CREATE TABLE t3 AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("INSERT INTO t VALUES (2)", "INSERT"),
            ("COPY (SELECT 1) TO '/tmp/never.parquet'", "COPY"),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (2)", "INSERT"),
            ("DROP TABLE t", "DROP TABLE"),
            ("SET datafusion.execution.batch_size = 10", "SET"),
        ] {
            let e = verify(&plan(&ctx, sql).await).unwrap_err();
            assert!(e.contains(what), "{sql}: {e}");
            assert!(e.starts_with("read-only server"), "{sql}: {e}");
        }
        for sql in [
            "SELECT 1",
            "SELECT * FROM t WHERE column1 IN (SELECT 1)",
            "EXPLAIN SELECT 1",
        ] {
            verify(&plan(&ctx, sql).await).unwrap();
        }
    }

    #[tokio::test]
    async fn read_only_catalogs_refuse_registration() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1)").await.unwrap();
        let list = catalogs(ctx.state().catalog_list().clone());
        let schema = list
            .catalog("datafusion")
            .unwrap()
            .schema("public")
            .unwrap();
        assert!(schema.table("t").await.unwrap().is_some());
        let t = schema.table("t").await.unwrap().unwrap();
        assert!(schema.register_table("u".into(), t).is_err());
        assert!(schema.deregister_table("t").is_err());
        assert!(!schema.table_exist("u"));
        assert!(schema.table_exist("t"));
    }
}
