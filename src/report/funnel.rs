//! The funnel report: customers reaching each step, conversion between steps and the time to
//! convert, from `sql/reports/funnel.sql` (`window_funnel_times`), or one funnel per breakdown
//! value from `sql/reports/funnel_breakdown.sql`.

use super::*;

const FUNNEL_SQL: &str = include_str!("../../sql/reports/funnel.sql");
const FUNNEL_BREAKDOWN_SQL: &str = include_str!("../../sql/reports/funnel_breakdown.sql");

#[derive(Debug)]
pub(super) struct FunnelReport;

#[async_trait::async_trait]
impl ReportKind for FunnelReport {
    fn name(&self) -> &'static str {
        "funnel"
    }
    fn title(&self) -> &'static str {
        "Pre-purchase funnel"
    }
    fn needs(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("events", &["customer_id", "event_ts", "event_type"])]
    }
    fn clock(&self) -> (&'static str, &'static str) {
        ("events", "event_ts")
    }
    fn breakdown_tables(&self) -> Option<(&'static str, &'static str)> {
        Some(("events", "customer_events"))
    }
    fn queries(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
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
        ]
    }
    async fn build(&self, job: &Job<'_>, report: &mut Report) -> Result<()> {
        let opts = job.opts;
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
        // The breakdown column as an identifier, and the table or view that has it.
        let template = match job.breakdown {
            Some((column, table)) => fill(
                FUNNEL_BREAKDOWN_SQL,
                &[
                    ("breakdown", lifecycle_udfs::template::expr(&col(column))?),
                    ("table", table.to_string()),
                ],
            )?,
            None => FUNNEL_SQL.to_string(),
        };
        let sql = fill(
            &job.params(&template)?,
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
            job.as_of.replace('T', " "),
            model::human_seconds(opts.window_seconds),
            opts.breakdown
                .as_ref()
                .map_or(String::new(), |b| format!("; by {b} (first touch)"))
        );
        funnel(
            job,
            report,
            &sql,
            &opts.steps,
            job.breakdown.map(|(column, _)| column),
        )
        .await
    }
}

/// One funnel: per step (1-based, all of them) the customers and the four time figures.
struct Funnel {
    customers: Vec<f64>,
    times: Vec<[Option<f64>; 4]>,
}

impl Funnel {
    /// From rows `(step, customers, median_prev, p90_prev, median_first, p90_first)`; a step
    /// without a row was reached by nobody.
    fn new(rows: &[&[Value]], steps: usize) -> Self {
        let mut f = Funnel {
            customers: vec![0.0; steps],
            times: vec![[None; 4]; steps],
        };
        for r in rows {
            let Some(step) = r[0]
                .num()
                .map(|s| s as usize)
                .filter(|s| (1..=steps).contains(s))
            else {
                continue;
            };
            f.customers[step - 1] = r[1].num().unwrap_or(0.0);
            f.times[step - 1] = [r[2].num(), r[3].num(), r[4].num(), r[5].num()];
        }
        f
    }

    fn rows(&self, steps: &[String], first: Option<&str>) -> Vec<Vec<String>> {
        let c = &self.customers;
        let seconds = |v: Option<f64>| v.map_or(String::new(), |v| Fmt::Seconds.show(v));
        (0..c.len())
            .map(|i| {
                let mut row: Vec<String> = first.map(str::to_string).into_iter().collect();
                row.extend([
                    (i + 1).to_string(),
                    steps.get(i).cloned().unwrap_or_default(),
                    Fmt::Count.show(c[i]),
                    if c[0] == 0.0 {
                        String::new()
                    } else {
                        Fmt::Percent.show(c[i] / c[0])
                    },
                    if i == 0 || c[i - 1] == 0.0 {
                        String::new()
                    } else {
                        Fmt::Percent.show(c[i] / c[i - 1])
                    },
                    seconds(self.times[i][0]),
                    seconds(self.times[i][1]),
                    seconds(self.times[i][2]),
                    seconds(self.times[i][3]),
                ]);
                row
            })
            .collect()
    }
}

const COLUMNS: [&str; 9] = [
    "step",
    "event",
    "customers",
    "of first step",
    "conversion from previous",
    "median time from previous",
    "p90 time from previous",
    "median time to convert (from step 1)",
    "p90 time to convert",
];

async fn funnel(
    r: &Job<'_>,
    report: &mut Report,
    sql: &str,
    steps: &[String],
    breakdown: Option<&str>,
) -> Result<()> {
    let d = r.run("funnel", sql).await?;
    let rows = d.rows()?;
    report.datasets.push(d);
    let n = steps.len();
    let Some(column) = breakdown else {
        let all: Vec<&[Value]> = rows.iter().map(|r| r.as_slice()).collect();
        let f = Funnel::new(&all, n);
        if f.customers.first().copied().unwrap_or(0.0) == 0.0 {
            report.notice = Some("No customer reached the first step: the report is empty.".into());
            return Ok(());
        }
        report.blocks.push(Block::Bars(Bars {
            title: "Customers reaching each step".into(),
            x_labels: steps.to_vec(),
            series: vec![("customers".into(), f.customers.clone())],
            format: Fmt::Count,
        }));
        report.blocks.push(Block::Table(Table {
            title: "Conversion and time to convert".into(),
            columns: COLUMNS.map(String::from).to_vec(),
            rows: f.rows(steps, None),
        }));
        return Ok(());
    };
    if rows.is_empty() {
        report.notice = Some("No customer reached the first step: the report is empty.".into());
        return Ok(());
    }
    // One funnel per breakdown value (NULL shown as "(none)"), the largest first.
    let (groups, total) = breakdown_groups(&rows, |r| {
        if r[0].num() == Some(1.0) {
            r[1].num().unwrap_or(0.0)
        } else {
            0.0
        }
    });
    breakdown_notice(report, column, groups.len(), total);
    let funnels: Vec<(String, Funnel)> = groups
        .iter()
        .map(|(v, idx)| {
            let mine: Vec<&[Value]> = idx.iter().map(|&i| &rows[i][1..]).collect();
            (v.clone(), Funnel::new(&mine, n))
        })
        .collect();
    report.blocks.push(Block::Bars(Bars {
        title: format!("Customers reaching each step, by {column}"),
        x_labels: steps.to_vec(),
        series: funnels
            .iter()
            .map(|(v, f)| (v.clone(), f.customers.clone()))
            .collect(),
        format: Fmt::Count,
    }));
    let mut columns = vec![column.to_string()];
    columns.extend(COLUMNS.map(String::from));
    report.blocks.push(Block::Table(Table {
        title: format!("Conversion and time to convert, by {column}"),
        columns,
        rows: funnels
            .iter()
            .flat_map(|(v, f)| f.rows(steps, Some(v)))
            .collect(),
    }));
    Ok(())
}
