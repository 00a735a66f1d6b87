//! Runs every `tests/slt/*.slt` file against a lifecycle session, with `target_partitions` 1 and 4
//! (4 exercises partial aggregation and the merge path).

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::{rows, session};

struct Db {
    ctx: SessionContext,
}

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error(lifecycle::shell::error_line(&e))
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let df = self.ctx.sql(sql).await?;
        let is_statement = df.schema().fields().is_empty()
            || matches!(
                sql.split_whitespace()
                    .next()
                    .map(|w| w.to_ascii_uppercase())
                    .as_deref(),
                Some("CREATE" | "SET" | "DROP" | "INSERT")
            );
        let batches = df.collect().await?;
        if is_statement {
            return Ok(DBOutput::StatementComplete(0));
        }
        let rows = rows(&batches);
        let width = rows.first().map(|r| r.len()).unwrap_or(0);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "lifecycle"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

async fn run_all(partitions: usize) {
    let mut failures = vec![];
    for file in slt_files() {
        let mut runner = sqllogictest::Runner::new(move || async move {
            Ok::<_, Error>(Db {
                ctx: session(partitions, &[]).await,
            })
        });
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!(
                "{} (target_partitions {partitions}):\n{e}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_one_partition() {
    run_all(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_four_partitions() {
    run_all(4).await;
}
