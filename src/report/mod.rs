//! `lifecycle report KIND`: cohort, lifecycle, growth, value and funnel reports. Each kind is
//! shipped SQL (`sql/reports/*.sql`, runnable as is in `lifecycle sql`) whose marked literals
//! (`'month' /* @period */`, `TIMESTAMP '...' /* @as_of */`, ...) take the command's options,
//! plus the blocks it is drawn with; [`render`] draws every kind.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Cohort,
    Lifecycle,
    Growth,
    Value,
    Funnel,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cohort => "cohort",
            Kind::Lifecycle => "lifecycle",
            Kind::Growth => "growth",
            Kind::Value => "value",
            Kind::Funnel => "funnel",
        }
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
    pub kind: Kind,
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

pub const COHORT_SQL: &str = include_str!("../../sql/reports/cohort.sql");
pub const LIFECYCLE_SQL: &str = include_str!("../../sql/reports/lifecycle.sql");
pub const TRANSITIONS_SQL: &str = include_str!("../../sql/reports/lifecycle_transitions.sql");
pub const GROWTH_SQL: &str = include_str!("../../sql/reports/growth.sql");
pub const VALUE_SQL: &str = include_str!("../../sql/reports/value.sql");
pub const VALUE_DISTRIBUTION_SQL: &str = include_str!("../../sql/reports/value_distribution.sql");
pub const VALUE_TOP_SQL: &str = include_str!("../../sql/reports/value_top.sql");
pub const FUNNEL_SQL: &str = include_str!("../../sql/reports/funnel.sql");
pub const COHORT_BREAKDOWN_SQL: &str = include_str!("../../sql/reports/cohort_breakdown.sql");
pub const FUNNEL_BREAKDOWN_SQL: &str = include_str!("../../sql/reports/funnel_breakdown.sql");

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
fn sql_literal(v: ScalarValue) -> Result<String> {
    lifecycle_udfs::template::literal(&v)
}

/// Fills the parameters of a shipped report query that it has (each query uses some of them).
fn fill(sql: &str, params: &[(&str, String)]) -> Result<String> {
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
        crate::shell::error_line(&e)
    ))
}

/// The tables each kind needs, with the columns it reads.
fn needs(kind: Kind) -> &'static [(&'static str, &'static [&'static str])] {
    const P: (&str, &[&str]) = ("purchases", &["customer_id", "order_ts", "amount"]);
    match kind {
        Kind::Cohort | Kind::Growth | Kind::Value => &[P],
        Kind::Lifecycle => &[P, ("customers", &["customer_id", "signup_ts"])],
        Kind::Funnel => &[("events", &["customer_id", "event_ts", "event_type"])],
    }
}

async fn check_tables(ctx: &SessionContext, kind: Kind) -> Result<()> {
    for (table, cols) in needs(kind) {
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
    check_tables(ctx, opts.kind).await?;
    if opts.mode.is_some() && opts.kind != Kind::Cohort {
        return Err(DataFusionError::Plan(
            "--mode applies to the cohort report only".into(),
        ));
    }
    if opts.breakdown.is_some() && !matches!(opts.kind, Kind::Cohort | Kind::Funnel) {
        return Err(DataFusionError::Plan(
            "--breakdown applies to the cohort and funnel reports only".into(),
        ));
    }
    let source = match (&opts.breakdown, opts.kind) {
        (Some(b), Kind::Cohort) => {
            Some(breakdown_source(ctx, b, "purchases", "customer_orders").await?)
        }
        (Some(b), Kind::Funnel) => {
            Some(breakdown_source(ctx, b, "events", "customer_events").await?)
        }
        _ => None,
    };
    let spinner = if std::io::stderr().is_terminal() {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let runner = Runner { ctx, spinner };
    let (ts_col, table) = match opts.kind {
        Kind::Funnel => ("event_ts", "events"),
        _ => ("order_ts", "purchases"),
    };
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
                            crate::shell::error_line(&e)
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
    let title = match opts.kind {
        Kind::Cohort => "Cohort retention",
        Kind::Lifecycle => "Customers by lifecycle stage",
        Kind::Growth => "Growth: new, returning, resurrecting and dormant customers",
        Kind::Value => "Customer value (BG/NBD and Gamma-Gamma)",
        Kind::Funnel => "Pre-purchase funnel",
    };
    let mut report = Report {
        title: title.to_string(),
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
    // The breakdown: a column name as a string (cohort_retention's argument) and as an
    // identifier (the funnel's SQL), and the table that has it.
    let breakdown_params = match (&opts.breakdown, source) {
        (Some(b), Some(table)) => vec![
            (
                "breakdown",
                match opts.kind {
                    Kind::Cohort => sql_literal(ScalarValue::from(b.as_str()))?,
                    _ => lifecycle_udfs::template::expr(&col(b.as_str()))?,
                },
            ),
            (
                "table",
                match opts.kind {
                    Kind::Cohort => sql_literal(ScalarValue::from(table))?,
                    _ => table.to_string(),
                },
            ),
        ],
        _ => vec![],
    };
    let params = |sql: &str| fill(sql, &common);
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
    match opts.kind {
        Kind::Cohort if opts.breakdown.is_some() => {
            let sql = fill(&params(COHORT_BREAKDOWN_SQL)?, &breakdown_params)?;
            cohort::cohort(&runner, &mut report, &sql, opts.breakdown.as_deref()).await?
        }
        Kind::Cohort => cohort::cohort(&runner, &mut report, &params(COHORT_SQL)?, None).await?,
        Kind::Growth => growth::growth(&runner, &mut report, &params(GROWTH_SQL)?).await?,
        Kind::Lifecycle => {
            lifecycle::lifecycle(
                &runner,
                &mut report,
                &params(LIFECYCLE_SQL)?,
                &params(TRANSITIONS_SQL)?,
            )
            .await?
        }
        Kind::Value => {
            report.subtitle = format!("as of {}; time in days", as_of.replace('T', " "));
            value::value(
                &runner,
                &mut report,
                [
                    &params(VALUE_SQL)?,
                    &params(VALUE_DISTRIBUTION_SQL)?,
                    &params(VALUE_TOP_SQL)?,
                ],
            )
            .await?
        }
        Kind::Funnel => {
            if opts.steps.is_empty() || opts.steps.len() > 32 {
                return Err(DataFusionError::Plan(
                    "--steps takes 1 to 32 event types".into(),
                ));
            }
            let conds = opts
                .steps
                .iter()
                .map(|s| lifecycle_udfs::template::expr(&col("event_type").eq(lit(s.as_str()))))
                .collect::<Result<Vec<_>>>()?;
            let template = match &opts.breakdown {
                Some(_) => fill(FUNNEL_BREAKDOWN_SQL, &breakdown_params)?,
                None => FUNNEL_SQL.to_string(),
            };
            let sql = fill(
                &params(&template)?,
                &[
                    ("steps", conds.join(", ")),
                    (
                        "window",
                        sql_literal(ScalarValue::from(opts.window_seconds))?,
                    ),
                    (
                        "n_steps",
                        sql_literal(ScalarValue::from(opts.steps.len() as i64))?,
                    ),
                ],
            )?;
            report.subtitle = format!(
                "as of {}; window {}{}",
                as_of.replace('T', " "),
                model::human_seconds(opts.window_seconds),
                opts.breakdown
                    .as_ref()
                    .map_or(String::new(), |b| format!("; by {b} (first touch)"))
            );
            funnel::funnel(
                &runner,
                &mut report,
                &sql,
                &opts.steps,
                opts.breakdown.as_deref(),
            )
            .await?
        }
    }
    runner.spinner.finish_and_clear();
    Ok(report)
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
        for sql in [
            COHORT_SQL,
            LIFECYCLE_SQL,
            TRANSITIONS_SQL,
            GROWTH_SQL,
            VALUE_SQL,
            VALUE_DISTRIBUTION_SQL,
            VALUE_TOP_SQL,
            FUNNEL_SQL,
        ] {
            for line in sql.lines().filter(|l| l.trim_start().starts_with("--")) {
                assert!(
                    !line.contains("/* @"),
                    "a marker in a comment would be substituted: {line}"
                );
            }
        }
    }

    #[test]
    fn every_shipped_report_query_has_its_markers() {
        for (sql, markers) in [
            (COHORT_SQL, &["period", "as_of", "mode"][..]),
            (
                COHORT_BREAKDOWN_SQL,
                &["period", "as_of", "mode", "table", "breakdown"],
            ),
            (LIFECYCLE_SQL, &["period", "as_of", "step"]),
            (TRANSITIONS_SQL, &["period", "as_of"]),
            (GROWTH_SQL, &["period", "as_of"]),
            (VALUE_SQL, &["as_of"]),
            (VALUE_DISTRIBUTION_SQL, &["as_of"]),
            (VALUE_TOP_SQL, &["as_of"]),
            (
                FUNNEL_SQL,
                &["as_of", "window", "n_steps", "steps", "end_steps"],
            ),
            (
                FUNNEL_BREAKDOWN_SQL,
                &[
                    "as_of",
                    "window",
                    "n_steps",
                    "steps",
                    "end_steps",
                    "table",
                    "breakdown",
                ],
            ),
        ] {
            for m in markers {
                assert!(sql.contains(&format!("/* @{m} */")), "{m}");
            }
        }
    }
}
