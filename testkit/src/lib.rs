//! Test support shared by the SQL tests of `lifecycle-udfs` and of the binary (a dev-dependency
//! of both, never shipped): rows as strings the way `.slt` files write them, and the sqllogictest
//! runner over a lifecycle session.

use std::future::Future;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

/// Formats a float the way the .slt files write numbers: integers without a fraction, others
/// rounded to 10 decimals with trailing zeros dropped.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.10}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Rows of batches as strings (NULL for nulls), floats normalised with [`format_float`].
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = vec![];
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formatter"))
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| {
                        if c.is_null(r) {
                            return "NULL".to_string();
                        }
                        match c.data_type() {
                            DataType::Float64 => format_float(
                                c.as_any()
                                    .downcast_ref::<datafusion::arrow::array::Float64Array>()
                                    .expect("f64")
                                    .value(r),
                            ),
                            _ => f.value(r).to_string(),
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// One line for an error (no backtrace, no nested wrapping).
fn error_line(e: &DataFusionError) -> String {
    e.strip_backtrace()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

struct Db {
    ctx: SessionContext,
}

#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error(error_line(&e))
    }
}

#[async_trait::async_trait]
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

/// The `.slt` files of a directory, sorted.
pub fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("slt directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Runs every `.slt` file of `dir`, each against a fresh session from `session(partitions)`,
/// and fails with every file's first error.
pub async fn run_slt<F, Fut>(dir: &Path, partitions: usize, session: F)
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SessionContext> + Send,
{
    let mut failures = vec![];
    for file in slt_files(dir) {
        let session = session.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let session = session.clone();
            async move {
                Ok::<_, Error>(Db {
                    ctx: session(partitions).await,
                })
            }
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
