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

use crate::output::{Format, write_stream};

/// A backslash command of the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\\d`: list tables.
    ListTables,
    /// `\\d NAME`: describe a table.
    Describe(String),
    /// `\\df`: list the lifecycle functions.
    ListFunctions,
    /// `\\timing [on|off]`: toggle (or set) printing of row counts and elapsed time.
    Timing(Option<bool>),
    /// `\\format FMT`: change the output format.
    Format(Format),
    /// `\\maxrows N|all`: rows the table format shows at most.
    MaxRows(Option<usize>),
    /// `\\?`: the help table.
    Help,
    /// `\\q`: quit.
    Quit,
}

/// Every command: its forms and what it does (the help table is made from this).
const COMMANDS: &[(&str, &str)] = &[
    ("\\d", "list tables"),
    ("\\d NAME", "describe a table"),
    ("\\df", "list the lifecycle functions"),
    (
        "\\timing [on|off]",
        "toggle printing of row counts and elapsed time",
    ),
    ("\\format FMT", "output format: table, csv, json, ndjson"),
    (
        "\\maxrows N|all",
        "rows the table format shows at most (default 10000)",
    ),
    ("\\? | \\h | \\help", "this help"),
    (
        "\\q | \\quit",
        "quit (or Ctrl-D); Ctrl-C cancels the running query",
    ),
];

/// The help text: how statements end, then the command table.
pub fn help() -> String {
    let width = COMMANDS.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out = String::from("Statements end with ';' and may span lines. Commands:\n");
    for (c, what) in COMMANDS {
        out.push_str(&format!("  {c:<width$}  {what}\n"));
    }
    out.pop();
    out
}

impl std::str::FromStr for Command {
    type Err = DataFusionError;

    fn from_str(line: &str) -> Result<Self> {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        let extra = words.next();
        let unknown =
            || DataFusionError::Plan(format!("unknown command '{line}'; \\? lists the commands"));
        if extra.is_some() {
            return Err(unknown());
        }
        Ok(match (cmd, arg) {
            ("\\q" | "\\quit", None) => Command::Quit,
            ("\\?" | "\\h" | "\\help", None) => Command::Help,
            ("\\d", None) => Command::ListTables,
            ("\\d", Some(name)) => Command::Describe(name.to_string()),
            ("\\df", None) => Command::ListFunctions,
            ("\\timing", None) => Command::Timing(None),
            ("\\timing", Some("on")) => Command::Timing(Some(true)),
            ("\\timing", Some("off")) => Command::Timing(Some(false)),
            ("\\maxrows", Some("all")) => Command::MaxRows(None),
            ("\\maxrows", Some(n)) => Command::MaxRows(Some(n.parse().map_err(|_| {
                DataFusionError::Plan(format!("\\maxrows takes a number or 'all', got '{n}'"))
            })?)),
            ("\\format", Some(f)) => {
                Command::Format(<Format as clap::ValueEnum>::from_str(f, true).map_err(|_| {
                    DataFusionError::Plan(format!(
                        "unknown format '{f}': use table, csv, json or ndjson"
                    ))
                })?)
            }
            _ => return Err(unknown()),
        })
    }
}

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

/// One clear line for an error (no backtrace, no nested "External error" wrapping).
pub fn error_line(e: &DataFusionError) -> String {
    let s = e.strip_backtrace();
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Shell {
    pub fn new(ctx: SessionContext, format: Format) -> Self {
        Self {
            ctx,
            format,
            timing: false,
            max_rows: Some(crate::output::DEFAULT_MAX_ROWS),
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
        crate::limits::check_expression_depth(sql)?;
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

    /// The interactive shell.
    pub async fn repl(&mut self) -> Result<()> {
        use rustyline::error::ReadlineError;
        let mut editor =
            rustyline::DefaultEditor::new().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".lifecycle_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        // Listen for Ctrl-C (SIGINT) for the whole session: it cancels the running query, and at
        // the prompt it is ignored here (the line editor handles the key itself on a terminal).
        let interrupts = Arc::new(tokio::sync::Notify::new());
        let listener = {
            let interrupts = interrupts.clone();
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    interrupts.notify_waiters();
                }
            })
        };
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
        if interactive {
            println!("Lifecycle SQL shell. End statements with ';'. \\? for help, \\q to quit.");
        }
        let mut buf = String::new();
        let mut failed = 0usize;
        let mut input_error = None;
        loop {
            let prompt = if buf.is_empty() {
                "lifecycle> "
            } else {
                "        -> "
            };
            match editor.readline(prompt) {
                Ok(line) => {
                    if is_blank_sql(&buf) && line.trim_start().starts_with('\\') {
                        buf.clear();
                        let _ = editor.add_history_entry(line.as_str());
                        let mut out = std::io::stdout();
                        match self.run_command(line.trim(), &mut out).await {
                            Ok(Next::Quit) => break,
                            Ok(Next::Continue) => {}
                            Err(e) => {
                                failed += 1;
                                eprintln!("Error: {}", error_line(&e))
                            }
                        }
                        continue;
                    }
                    buf.push_str(&line);
                    buf.push('\n');
                    if !statement_complete(&buf) {
                        continue;
                    }
                    let sql = std::mem::take(&mut buf);
                    let _ = editor.add_history_entry(sql.trim_end());
                    if !self.run_interruptible(&sql, &interrupts).await {
                        failed += 1;
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    // Ctrl-C at the prompt drops the statement being typed.
                    buf.clear();
                }
                Err(ReadlineError::Eof) => {
                    // Input from a pipe or file may end without a last ';': run that statement
                    // (on a terminal, Ctrl-D with a half-typed statement just leaves).
                    if !interactive && !is_blank_sql(&buf) {
                        let sql = std::mem::take(&mut buf);
                        if !self.run_interruptible(&sql, &interrupts).await {
                            failed += 1;
                        }
                    }
                    break;
                }
                Err(e) => {
                    input_error = Some(match e {
                        ReadlineError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                            "the input is not UTF-8 text; stopped reading".to_string()
                        }
                        other => format!("cannot read input: {other}"),
                    });
                    break;
                }
            }
        }
        listener.abort();
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        if let Some(e) = input_error {
            return Err(DataFusionError::Plan(e));
        }
        if !interactive && failed > 0 {
            return Err(DataFusionError::Plan(format!(
                "{failed} statement{} failed (see above)",
                if failed == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }

    /// Runs SQL until it finishes or Ctrl-C cancels it (dropping the query's streams).
    /// Returns false when the statement failed.
    async fn run_interruptible(&mut self, sql: &str, interrupts: &tokio::sync::Notify) -> bool {
        let mut out = std::io::stdout();
        let result = tokio::select! {
            r = self.run_sql(sql, &mut out) => Some(r),
            _ = interrupts.notified() => None,
        };
        match result {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                eprintln!("Error: {}", error_line(&e));
                false
            }
            // Cancelled on purpose (Ctrl-C): not a failure.
            None => {
                eprintln!("Query cancelled.");
                true
            }
        }
    }
}

/// A statement is complete when, outside strings and comments, it ends with ';'.
pub fn statement_complete(sql: &str) -> bool {
    let stripped = strip_comments_and_strings(sql);
    stripped.trim_end().ends_with(';')
}

fn is_blank_sql(sql: &str) -> bool {
    strip_comments_and_strings(sql)
        .chars()
        .all(|c| c.is_whitespace() || c == ';')
}

/// Replaces string literals by `''` and drops `--` and `/* */` comments, so that ';' inside them
/// does not end a statement.
fn strip_comments_and_strings(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let quote = c;
                out.push(quote);
                for d in chars.by_ref() {
                    if d == quote {
                        break;
                    }
                }
                out.push(quote);
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_the_help_lists_them() {
        assert_eq!("\\d".parse::<Command>().unwrap(), Command::ListTables);
        assert_eq!(
            "\\d purchases".parse::<Command>().unwrap(),
            Command::Describe("purchases".into())
        );
        assert_eq!(
            "\\timing off".parse::<Command>().unwrap(),
            Command::Timing(Some(false))
        );
        assert_eq!(
            "\\format CSV".parse::<Command>().unwrap(),
            Command::Format(Format::Csv)
        );
        assert!("\\format xml".parse::<Command>().is_err());
        assert!("\\nope".parse::<Command>().is_err());
        assert!("\\d a b".parse::<Command>().is_err());
        let h = help();
        for (c, _) in COMMANDS {
            assert!(h.contains(c), "{c}");
        }
    }

    #[test]
    fn completeness() {
        assert!(statement_complete("SELECT 1;"));
        assert!(statement_complete("SELECT 1; -- done\n"));
        assert!(!statement_complete("SELECT ';'"));
        assert!(!statement_complete("SELECT 1 -- ;"));
        assert!(!statement_complete("SELECT 1 /* ; */"));
        assert!(is_blank_sql("  -- only a comment\n ;"));
    }
}
