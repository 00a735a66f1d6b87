//! `lifecycle sql`: the SQL shell. Batch mode (`-c`, `-f`) stops at the first error with a non-zero
//! exit code; the REPL prints the error and carries on. Fed from a pipe or a file instead of a
//! terminal, the REPL also runs a last statement that has no ';', and exits non-zero when any
//! statement failed or the input is not UTF-8 text (as sqlite3 does), so scripts notice.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::dialect_from_str;

mod command;
mod lexing;
pub mod output;
mod repl;

pub use command::{Command, help};
use lexing::{is_blank_sql, statement_complete};
use output::{Format, write_stream};

use crate::engine::errors::error_line;

pub struct Shell {
    pub ctx: SessionContext,
    pub format: Format,
    pub timing: bool,
    /// Rows the `table` format shows at most (None: all).
    pub max_rows: Option<usize>,
}

/// What a command asks the caller to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Quit,
}

impl Shell {
    pub fn new(ctx: SessionContext, format: Format) -> Self {
        Self {
            ctx,
            format,
            timing: false,
            max_rows: Some(output::DEFAULT_MAX_ROWS),
        }
    }

    /// Runs every statement of `sql` in order, writing results to `out`.
    pub async fn run_sql(&mut self, sql: &str, out: &mut dyn Write) -> Result<()> {
        let dialect_name = self
            .ctx
            .copied_config()
            .options()
            .sql_parser
            .dialect
            .to_string();
        let dialect = dialect_from_str(&dialect_name).ok_or_else(|| {
            DataFusionError::Configuration(format!("unknown SQL dialect {dialect_name}"))
        })?;
        crate::engine::limits::check_expression_depth(sql)?;
        let statements = DFParser::parse_sql_with_dialect(sql, dialect.as_ref())?;
        for statement in statements {
            let started = Instant::now();
            // Each statement sees the effects (SET, CREATE VIEW, ...) of the ones before it.
            let state = self.ctx.state();
            let plan = state.statement_to_plan(statement).await?;
            let df = self.ctx.execute_logical_plan(plan).await?;
            let stream = df.execute_stream().await?;
            // SET, CREATE VIEW and other statements without a result print nothing (psql and
            // datafusion-cli print no empty frame either).
            if stream.schema().fields().is_empty() {
                let mut stream = stream;
                while let Some(b) = futures::StreamExt::next(&mut stream).await {
                    b?;
                }
                continue;
            }
            let rows = write_stream(stream, self.format, self.max_rows, out).await?;
            if self.timing {
                eprintln!(
                    "{rows} row{} in {:.3}s",
                    if rows == 1 { "" } else { "s" },
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    /// Runs a backslash command.
    pub async fn run_command(&mut self, line: &str, out: &mut dyn Write) -> Result<Next> {
        match line.parse::<Command>()? {
            Command::Quit => return Ok(Next::Quit),
            Command::Help => writeln!(out, "{}", help())?,
            Command::ListTables => {
                self.run_sql(
                    "SELECT table_schema AS schema, table_name AS name, table_type AS type \
                     FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' ORDER BY 1, 2",
                    out,
                )
                .await?
            }
            Command::Describe(name) => {
                if !self.ctx.table_exist(name.as_str())? {
                    return Err(DataFusionError::Plan(format!(
                        "table '{name}' not found; \\d lists the tables"
                    )));
                }
                self.run_sql(&format!("DESCRIBE {name}"), out).await?
            }
            Command::ListFunctions => {
                let mut names: Vec<String> = lifecycle_udfs::scalar_functions()
                    .iter()
                    .map(|f| format!("{} (scalar)", f.name()))
                    .chain(
                        lifecycle_udfs::aggregate_functions()
                            .iter()
                            .map(|f| format!("{} (aggregate)", f.name())),
                    )
                    .chain(
                        lifecycle_udfs::window_functions()
                            .iter()
                            .map(|f| format!("{} (window)", f.name())),
                    )
                    .chain(
                        lifecycle_udfs::table_functions()
                            .iter()
                            .map(|(n, _, _)| format!("{n} (table function)")),
                    )
                    .collect();
                names.sort();
                for n in names {
                    writeln!(out, "{n}")?;
                }
            }
            Command::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                writeln!(out, "timing is {}", if self.timing { "on" } else { "off" })?;
            }
            Command::Format(f) => self.format = f,
            Command::MaxRows(n) => self.max_rows = n,
        }
        Ok(Next::Continue)
    }

    /// Runs a script: backslash commands on their own lines, SQL statements ended by ';' (the
    /// last one may omit it). Stops at the first error.
    pub async fn run_script(&mut self, text: &str, out: &mut dyn Write) -> Result<Next> {
        let mut buf = String::new();
        for line in text.lines() {
            if is_blank_sql(&buf) && line.trim_start().starts_with('\\') {
                buf.clear();
                if self.run_command(line.trim(), out).await? == Next::Quit {
                    return Ok(Next::Quit);
                }
                continue;
            }
            buf.push_str(line);
            buf.push('\n');
            if statement_complete(&buf) {
                self.run_sql(&buf, out).await?;
                buf.clear();
            }
        }
        if !is_blank_sql(&buf) {
            self.run_sql(&buf, out).await?;
        }
        Ok(Next::Continue)
    }

    /// Batch mode: every `-c` then every `-f`, stopping at the first error.
    pub async fn run_batch(&mut self, commands: &[String], files: &[PathBuf]) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for c in commands {
            if self.run_script(c, &mut out).await? == Next::Quit {
                return Ok(());
            }
        }
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| {
                DataFusionError::Plan(format!("cannot read SQL file '{}': {e}", f.display()))
            })?;
            if self.run_script(&text, &mut out).await? == Next::Quit {
                return Ok(());
            }
        }
        Ok(())
    }
}
