//! `lifecycle report KIND`: cohort, lifecycle, growth, value and funnel reports. Each kind is
//! shipped SQL (`sql/reports/*.sql`, runnable as is in `lifecycle sql`) whose marked literals
//! (`'month' /* @period */`, `TIMESTAMP '...' /* @as_of */`, ...) take the command's options,
//! plus the blocks it is drawn with: one file per kind, each a [`ReportKind`] listed in [`KINDS`];
//! [`build`] runs any of them and [`render`] draws every kind.

pub mod model;
pub mod render;

mod cohort;
mod funnel;
mod growth;
mod lifecycle;
mod value;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;

use model::{Bars, Block, Dataset, Fmt, Heatmap, Lines, Report, Table, Value, distinct, pivot};
pub use render::{ReportFormat, render};

/// A kind of report: what it reads and how it is built. The runner ([`build`]) checks its tables,
/// settles `--as-of`, fills the parameters every report shares and calls [`ReportKind::build`].
/// A new kind is one file with one of these, and one line in [`KINDS`].
#[async_trait::async_trait]
pub trait ReportKind: Send + Sync + std::fmt::Debug {
    /// Its name on the command line (`lifecycle report NAME`).
    fn name(&self) -> &'static str;
    /// The report's title.
    fn title(&self) -> &'static str;
    /// The tables it reads, each with the columns it needs.
    fn needs(&self) -> &'static [(&'static str, &'static [&'static str])];
    /// The table and time column whose latest value is the default `--as-of`.
    fn clock(&self) -> (&'static str, &'static str) {
        ("purchases", "order_ts")
    }
    /// Whether it takes `--mode`.
    fn takes_mode(&self) -> bool {
        false
    }
    /// For `--breakdown`: the table it reads and the shipped view with each customer's columns.
    fn breakdown_tables(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// Its shipped queries, each with the markers it must have (checked by a test).
    fn queries(&self) -> &'static [(&'static str, &'static [&'static str])];
    /// Runs its queries and adds their datasets and blocks to `report` (whose title and default
    /// subtitle are set).
    async fn build(&self, job: &Job<'_>, report: &mut Report) -> Result<()>;
}

/// The purchases table as most kinds read it.
const PURCHASES: (&str, &[&str]) = ("purchases", &["customer_id", "order_ts", "amount"]);

/// Every kind of report, in the order the command line lists them.
pub const KINDS: &[&dyn ReportKind] = &[
    &cohort::CohortReport,
    &lifecycle::LifecycleReport,
    &growth::GrowthReport,
    &value::ValueReport,
    &funnel::FunnelReport,
];

/// The names of every kind, for the command line.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static dyn ReportKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// What a kind builds from: the runner, the options, `--as-of` and the shared parameters.
pub struct Job<'a> {
    runner: Runner<'a>,
    pub opts: &'a ReportOptions,
    /// `--as-of` (or the latest order or event), as timestamp text.
    pub as_of: String,
    /// `--breakdown`'s column and the table or view that has it.
    pub breakdown: Option<(&'a str, &'static str)>,
    common: Vec<(&'static str, String)>,
}

impl Job<'_> {
    /// Runs one query of the report.
    pub async fn run(&self, name: &str, sql: &str) -> Result<Dataset> {
        self.runner.run(name, sql).await
    }

    /// A shipped query with the parameters every report shares filled in (`as_of`, `period`,
    /// `step`, `mode`).
    pub fn params(&self, sql: &str) -> Result<String> {
        fill(sql, &self.common)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
        }
    }

    fn step(self) -> &'static str {
        match self {
            Period::Day => "1 day",
            Period::Week => "7 days",
            Period::Month => "1 month",
            Period::Quarter => "3 months",
        }
    }
}

/// Which customers a cohort report counts as retained in period n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Active in period n.
    Bounded,
    /// Active in period n or any later period.
    Unbounded,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bounded => "bounded",
            Mode::Unbounded => "unbounded",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub kind: &'static dyn ReportKind,
    pub period: Period,
    /// A timestamp or date literal; default: the latest order (event, for funnels).
    pub as_of: Option<String>,
    pub format: ReportFormat,
    pub out: Option<PathBuf>,
    /// Funnel steps (event types), in order.
    pub steps: Vec<String>,
    /// Funnel window in seconds.
    pub window_seconds: f64,
    /// Cohort retention mode (cohort report; default bounded).
    pub mode: Option<Mode>,
    /// A column to break the cohort or funnel report down by (first touch).
    pub breakdown: Option<String>,
}

/// Parses a funnel window: `7d`, `12h`, `30m`, `90s` or plain seconds.
pub fn parse_window(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('d') => (&t[..t.len() - 1], 86400.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('s') => (&t[..t.len() - 1], 1.0),
        _ => (t, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v * mult),
        _ => Err(format!(
            "invalid window '{s}': expected e.g. 7d, 12h, 30m or 3600"
        )),
    }
}

/// A constant as SQL text, rendered by DataFusion (see [`lifecycle_udfs::template`]).
pub(crate) fn sql_literal(v: ScalarValue) -> Result<String> {
    lifecycle_udfs::template::literal(&v)
}

/// Fills the parameters of a shipped report query that it has (each query uses some of them).
pub(crate) fn fill(sql: &str, params: &[(&str, String)]) -> Result<String> {
    let present: Vec<(&str, String)> = params
        .iter()
        .filter(|(name, _)| sql.contains(&format!("/* @{name} */")))
        .cloned()
        .collect();
    lifecycle_udfs::template::fill(sql, &present)
}

struct Runner<'a> {
    ctx: &'a SessionContext,
    spinner: indicatif::ProgressBar,
}

impl Runner<'_> {
    async fn run(&self, name: &str, sql: &str) -> Result<Dataset> {
        self.spinner.set_message(format!("running {name}"));
        let df = self.ctx.sql(sql).await.map_err(|e| context(name, e))?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|e| context(name, e))?;
        Ok(Dataset {
            name: name.to_string(),
            schema,
            batches,
        })
    }
}

fn context(name: &str, e: DataFusionError) -> DataFusionError {
    DataFusionError::Execution(format!(
        "report query '{name}': {}",
        crate::engine::errors::error_line(&e)
    ))
}

async fn check_tables(ctx: &SessionContext, kind: &dyn ReportKind) -> Result<()> {
    for (table, cols) in kind.needs() {
        let Ok(t) = ctx.table_provider(*table).await else {
            return Err(DataFusionError::Plan(format!(
                "the {} report needs a table '{table}' with columns {} (register it with --table {table}=PATH)",
                kind.name(),
                cols.join(", ")
            )));
        };
        for c in *cols {
            if t.schema().field_with_name(c).is_err() {
                return Err(DataFusionError::Plan(format!(
                    "table '{table}' has no column '{c}' (the report needs {})",
                    cols.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The table a breakdown report reads: `table` when it has the column, else the shipped view
/// `view` (the table joined with each customer's attributes from `customers`) when that has it.
async fn breakdown_source(
    ctx: &SessionContext,
    column: &str,
    table: &str,
    view: &str,
) -> Result<&'static str> {
    let has = |t: &str| {
        let t = t.to_string();
        async move {
            match ctx.table_provider(t.as_str()).await {
                Ok(p) => p.schema().field_with_name(column).is_ok(),
                Err(_) => false,
            }
        }
    };
    if has(table).await {
        return Ok(if table == "purchases" {
            "purchases"
        } else {
            "events"
        });
    }
    if has(view).await {
        return Ok(if view == "customer_orders" {
            "customer_orders"
        } else {
            "customer_events"
        });
    }
    Err(DataFusionError::Plan(format!(
        "--breakdown '{column}': neither '{table}' nor '{view}' ({table} with each customer's \
         columns from 'customers') has a column '{column}'"
    )))
}

/// Runs a report and writes it.
pub async fn run(ctx: &SessionContext, opts: &ReportOptions) -> Result<()> {
    let report = build(ctx, opts).await?;
    match &opts.out {
        Some(path) => {
            let mut f = std::fs::File::create(path).map_err(|e| {
                DataFusionError::Execution(format!("cannot write {}: {e}", path.display()))
            })?;
            render(&report, opts.format, &mut f)?;
            eprintln!("wrote {}", path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            render(&report, opts.format, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(())
}

/// Builds a report (queries and blocks) without writing it.
pub async fn build(ctx: &SessionContext, opts: &ReportOptions) -> Result<Report> {
    let kind = opts.kind;
    check_tables(ctx, kind).await?;
    if opts.mode.is_some() && !kind.takes_mode() {
        return Err(DataFusionError::Plan(format!(
            "--mode applies to the {} report only",
            names_of(|k| k.takes_mode())
        )));
    }
    let breakdown = match (&opts.breakdown, kind.breakdown_tables()) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(DataFusionError::Plan(format!(
                "--breakdown applies to the {} reports only",
                names_of(|k| k.breakdown_tables().is_some())
            )));
        }
        (Some(b), Some((table, view))) => {
            Some((b.as_str(), breakdown_source(ctx, b, table, view).await?))
        }
    };
    let spinner = if std::io::stderr().is_terminal() {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let runner = Runner { ctx, spinner };
    let (table, ts_col) = kind.clock();
    // The as_of literal: the option (validated by the engine) or the latest order / event.
    let as_of = match &opts.as_of {
        Some(a) => {
            let d = runner
                .run(
                    "as_of",
                    &format!(
                        "SELECT CAST({} AS TIMESTAMP) AS as_of",
                        sql_literal(ScalarValue::from(a.as_str()))?
                    ),
                )
                .await;
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    // A real date that a nanosecond timestamp cannot hold (the reports' SQL
                    // compares in TIMESTAMP) gets its own message.
                    let is_date = runner
                        .run(
                            "as_of",
                            &format!(
                                "SELECT CAST({} AS DATE) AS d",
                                sql_literal(ScalarValue::from(a.as_str()))?
                            ),
                        )
                        .await
                        .is_ok();
                    return Err(DataFusionError::Plan(if is_date {
                        format!(
                            "--as-of '{a}' is outside the range reports support: \
                             1677-09-22 to 2262-04-11 (nanosecond timestamps)"
                        )
                    } else {
                        format!(
                            "--as-of '{a}' is not a date or timestamp (e.g. 2024-12-31 or \
                             '2024-12-31 18:00:00'): {}",
                            crate::engine::errors::error_line(&e)
                        )
                    }));
                }
            };
            d.rows()?.first().map(|r| r[0].clone())
        }
        None => runner
            .run(
                "latest",
                &format!("SELECT CAST(max({ts_col}) AS TIMESTAMP) AS latest FROM {table}"),
            )
            .await?
            .rows()?
            .first()
            .map(|r| r[0].clone()),
    };
    let mut report = Report {
        title: kind.title().to_string(),
        subtitle: String::new(),
        datasets: vec![],
        blocks: vec![],
        notice: None,
    };
    let as_of = match as_of {
        Some(Value::Text(t)) => t,
        _ => {
            report.subtitle = format!("table '{table}'");
            report.notice = Some(format!("No rows in '{table}': the report is empty."));
            runner.spinner.finish_and_clear();
            return Ok(report);
        }
    };
    let as_of_value = ScalarValue::try_from_string(
        as_of.clone(),
        &DataType::Timestamp(TimeUnit::Nanosecond, None),
    )?;
    let common = [
        ("as_of", sql_literal(as_of_value)?),
        (
            "period",
            sql_literal(ScalarValue::from(opts.period.name()))?,
        ),
        // A period length from the enum (not user text).
        ("step", format!("INTERVAL '{}'", opts.period.step())),
        (
            "mode",
            sql_literal(ScalarValue::from(opts.mode.unwrap_or(Mode::Bounded).name()))?,
        ),
    ];
    report.subtitle = format!(
        "as of {}, by {}",
        as_of.replace('T', " "),
        opts.period.name()
    );
    if let Some(m) = opts.mode.filter(|m| *m == Mode::Unbounded) {
        report
            .subtitle
            .push_str(&format!(", {} retention", m.name()));
    }
    if let Some(b) = &opts.breakdown {
        report.subtitle.push_str(&format!(", by {b} (first touch)"));
    }
    let job = Job {
        runner,
        opts,
        as_of,
        breakdown,
        common: common.into(),
    };
    kind.build(&job, &mut report).await?;
    job.runner.spinner.finish_and_clear();
    Ok(report)
}

/// The kinds with a property, named for a message ("cohort and funnel").
fn names_of(has: impl Fn(&dyn ReportKind) -> bool) -> String {
    let names: Vec<&str> = KINDS
        .iter()
        .filter(|k| has(**k))
        .map(|k| k.name())
        .collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The most breakdown values a report draws; the datasets (CSV, JSON) keep every value.
pub const MAX_BREAKDOWN_VALUES: usize = 20;

/// Rows whose column 0 is a breakdown value, grouped by value (NULL as "(none)"): the largest
/// `MAX_BREAKDOWN_VALUES` values by `size` (of a value's rows, summed), largest first (ties in
/// the query's order), each with its rows' indices; and how many values there are in all.
fn breakdown_groups(
    rows: &[Vec<Value>],
    size: impl Fn(&[Value]) -> f64,
) -> (Vec<(String, Vec<usize>)>, usize) {
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut groups: Vec<(String, Vec<usize>, f64)> = vec![];
    for (i, r) in rows.iter().enumerate() {
        let label = match &r[0] {
            Value::Null => "(none)".to_string(),
            v => v.text(),
        };
        let g = *index.entry(label.clone()).or_insert_with(|| {
            groups.push((label, vec![], 0.0));
            groups.len() - 1
        });
        groups[g].1.push(i);
        groups[g].2 += size(&r[1..]);
    }
    let total = groups.len();
    groups.sort_by(|a, b| b.2.total_cmp(&a.2));
    groups.truncate(MAX_BREAKDOWN_VALUES);
    (groups.into_iter().map(|(l, i, _)| (l, i)).collect(), total)
}

/// Says in the subtitle when a report draws only some of the breakdown's values.
fn breakdown_notice(report: &mut Report, column: &str, drawn: usize, total: usize) {
    if drawn < total {
        report.subtitle.push_str(&format!(
            "; the {drawn} largest of {total} {column} values drawn (csv and json have them all)"
        ));
    }
}

/// Long rows (period, series, count) as stacked bars over periods and a wide table.
fn period_series(
    rows: &[Vec<Value>],
    order: &[&str],
    negative: &[&str],
    title: &str,
) -> (Bars, Table) {
    let periods = distinct(rows, 0);
    let present = distinct(rows, 1);
    let mut names: Vec<String> = order
        .iter()
        .map(|s| s.to_string())
        .filter(|s| present.contains(s))
        .collect();
    names.extend(present.into_iter().filter(|s| !order.contains(&s.as_str())));
    let values = pivot(rows, 0, 1, 2, &periods, &names);
    let series: Vec<(String, Vec<f64>)> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| {
            let sign = if negative.contains(&n.as_str()) {
                -1.0
            } else {
                1.0
            };
            (
                n.clone(),
                v.iter().map(|x| sign * x.unwrap_or(0.0)).collect(),
            )
        })
        .collect();
    let mut columns = vec!["period".to_string()];
    columns.extend(names.iter().cloned());
    let table_rows = periods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = vec![p.clone()];
            r.extend(values.iter().map(|v| Fmt::Count.show(v[i].unwrap_or(0.0))));
            r
        })
        .collect();
    (
        Bars {
            title: title.to_string(),
            x_labels: periods,
            series,
            format: Fmt::Count,
        },
        Table {
            title: "Numbers".into(),
            columns,
            rows: table_rows,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parameters_are_filled_where_present() {
        let sql =
            "f('purchases', 'month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)";
        let s = fill(
            sql,
            &[
                ("period", sql_literal(ScalarValue::from("week")).unwrap()),
                ("step", "INTERVAL '7 days'".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            s,
            "f('purchases', 'week' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)"
        );
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("7d"), Ok(604_800.0));
        assert_eq!(parse_window("2h"), Ok(7200.0));
        assert_eq!(parse_window("30m"), Ok(1800.0));
        assert_eq!(parse_window("90"), Ok(90.0));
        assert!(parse_window("soon").is_err());
    }

    #[test]
    fn markers_only_in_sql_not_in_comments() {
        for kind in KINDS {
            for (sql, _) in kind.queries() {
                for line in sql.lines().filter(|l| l.trim_start().starts_with("--")) {
                    assert!(
                        !line.contains("/* @"),
                        "a marker in a comment would be substituted: {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_shipped_report_query_has_its_markers() {
        for kind in KINDS {
            assert!(!kind.queries().is_empty(), "{}", kind.name());
            for (sql, markers) in kind.queries() {
                for m in *markers {
                    assert!(sql.contains(&format!("/* @{m} */")), "{}: {m}", kind.name());
                }
            }
        }
    }

    #[test]
    fn kinds_have_unique_names() {
        let mut names = kind_names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert_eq!(kind("funnel").map(|k| k.name()), Some("funnel"));
        assert!(kind("nope").is_none());
    }
}
