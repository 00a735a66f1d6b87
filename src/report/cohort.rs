//! The cohort report: the retention triangle (a heatmap of retention, and of revenue) from
//! `sql/reports/cohort.sql`, or one triangle per breakdown value from
//! `sql/reports/cohort_breakdown.sql`.

use super::*;

const COHORT_SQL: &str = include_str!("../../sql/reports/cohort.sql");
const COHORT_BREAKDOWN_SQL: &str = include_str!("../../sql/reports/cohort_breakdown.sql");

#[derive(Debug)]
pub(super) struct CohortReport;

#[async_trait::async_trait]
impl ReportKind for CohortReport {
    fn name(&self) -> &'static str {
        "cohort"
    }
    fn title(&self) -> &'static str {
        "Cohort retention"
    }
    fn needs(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[PURCHASES]
    }
    fn takes_mode(&self) -> bool {
        true
    }
    fn breakdown_tables(&self) -> Option<(&'static str, &'static str)> {
        Some(("purchases", "customer_orders"))
    }
    fn queries(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            (COHORT_SQL, &["period", "as_of", "mode"]),
            (
                COHORT_BREAKDOWN_SQL,
                &["period", "as_of", "mode", "table", "breakdown"],
            ),
        ]
    }
    async fn build(&self, job: &Job<'_>, report: &mut Report) -> Result<()> {
        match job.breakdown {
            // cohort_retention takes the column and the table as strings.
            Some((column, table)) => {
                let sql = fill(
                    &job.params(COHORT_BREAKDOWN_SQL)?,
                    &[
                        ("breakdown", sql_literal(ScalarValue::from(column))?),
                        ("table", sql_literal(ScalarValue::from(table))?),
                    ],
                )?;
                cohort(job, report, &sql, Some(column)).await
            }
            None => cohort(job, report, &job.params(COHORT_SQL)?, None).await,
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| Fmt::Percent.show(x))
}

fn money(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.2}"))
}

/// Columns of a triangle row after the breakdown (if any): cohort, period, cohort_size,
/// active_customers, retention, revenue, revenue_per_customer, value_per_customer.
const COHORT: usize = 0;
const PERIOD: usize = 1;
const SIZE: usize = 2;
const RETENTION: usize = 4;
const REVENUE_PER_CUSTOMER: usize = 6;
const VALUE_PER_CUSTOMER: usize = 7;

/// One triangle's rows (the breakdown column removed): its heatmaps and curves.
struct Triangle {
    cohorts: Vec<String>,
    periods: Vec<String>,
    sizes: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Triangle {
    fn new(rows: Vec<Vec<Value>>) -> Self {
        let cohorts = distinct(&rows, COHORT);
        let max = rows
            .iter()
            .filter_map(|r| r[PERIOD].num())
            .fold(0.0f64, f64::max) as usize;
        let periods = (0..=max).map(|p| p.to_string()).collect();
        let sizes = cohorts
            .iter()
            .map(|c| {
                let n = rows
                    .iter()
                    .find(|r| r[COHORT].text() == *c)
                    .and_then(|r| r[SIZE].num())
                    .unwrap_or(0.0);
                format!("{c} ({n:.0})")
            })
            .collect();
        Self {
            cohorts,
            periods,
            sizes,
            rows,
        }
    }

    fn grid(&self, col: usize) -> Vec<Vec<Option<f64>>> {
        let mut g = vec![vec![None; self.periods.len()]; self.cohorts.len()];
        for r in &self.rows {
            let i = self
                .cohorts
                .iter()
                .position(|c| *c == r[COHORT].text())
                .expect("cohort");
            let p = r[PERIOD].num().unwrap_or(0.0) as usize;
            g[i][p] = r[col].num();
        }
        g
    }

    /// The mean over the cohorts observed at each period of column `col`.
    fn curve(&self, col: usize) -> Vec<Option<f64>> {
        let g = self.grid(col);
        (0..self.periods.len())
            .map(|p| {
                let v: Vec<f64> = g.iter().filter_map(|r| r[p]).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            })
            .collect()
    }

    fn heatmaps(&self, report: &mut Report, suffix: &str) {
        report.blocks.push(Block::Heatmap(Heatmap {
            title: format!(
                "Retention: share of each cohort retained in each period (blank: not yet observable){suffix}"
            ),
            row_labels: self.sizes.clone(),
            col_labels: self.periods.clone(),
            cells: self.grid(RETENTION),
            format: Fmt::Percent,
        }));
        report.blocks.push(Block::Heatmap(Heatmap {
            title: format!("Revenue per cohort customer in each period{suffix}"),
            row_labels: self.sizes.clone(),
            col_labels: self.periods.clone(),
            cells: self.grid(REVENUE_PER_CUSTOMER),
            format: Fmt::Money,
        }));
    }
}

fn table_row(r: &[Value]) -> Vec<String> {
    vec![
        r[COHORT].text(),
        r[PERIOD].text(),
        r[SIZE].num().map_or(String::new(), |v| Fmt::Count.show(v)),
        r[3].num().map_or(String::new(), |v| Fmt::Count.show(v)),
        pct(r[RETENTION].num()),
        money(r[5].num()),
        money(r[REVENUE_PER_CUSTOMER].num()),
        money(r[VALUE_PER_CUSTOMER].num()),
    ]
}

const COLUMNS: [&str; 8] = [
    "cohort",
    "period",
    "cohort size",
    "retained",
    "retention",
    "revenue",
    "revenue / customer",
    "cumulative revenue / customer",
];

async fn cohort(
    r: &Job<'_>,
    report: &mut Report,
    sql: &str,
    breakdown: Option<&str>,
) -> Result<()> {
    let d = r.run("cohort", sql).await?;
    let rows = d.rows()?;
    report.datasets.push(d);
    if rows.is_empty() {
        report.notice = Some("No cohorts: the report is empty.".into());
        return Ok(());
    }
    let Some(column) = breakdown else {
        let t = Triangle::new(rows);
        t.heatmaps(report, "");
        report.blocks.push(Block::Lines(Lines {
            title: "Average retention curve (mean over cohorts observed at each period)".into(),
            x_labels: t.periods.clone(),
            series: vec![("average retention".into(), t.curve(RETENTION))],
            format: Fmt::Percent,
        }));
        report.blocks.push(Block::Lines(Lines {
            title: "Value curve: average cumulative revenue per customer".into(),
            x_labels: t.periods.clone(),
            series: vec![(
                "cumulative revenue / customer".into(),
                t.curve(VALUE_PER_CUSTOMER),
            )],
            format: Fmt::Money,
        }));
        report.blocks.push(Block::Table(Table {
            title: "Numbers".into(),
            columns: COLUMNS.map(String::from).to_vec(),
            rows: t.rows.iter().map(|r| table_row(r)).collect(),
        }));
        return Ok(());
    };
    // One triangle per breakdown value (NULL shown as "(none)"), the largest first.
    let (groups, total) = breakdown_groups(&rows, |r| {
        if r[PERIOD].num() == Some(0.0) {
            r[SIZE].num().unwrap_or(0.0)
        } else {
            0.0
        }
    });
    breakdown_notice(report, column, groups.len(), total);
    let triangles: Vec<(String, Triangle)> = groups
        .iter()
        .map(|(v, idx)| {
            let mine = idx.iter().map(|&i| rows[i][1..].to_vec()).collect();
            (v.clone(), Triangle::new(mine))
        })
        .collect();
    let periods = triangles
        .iter()
        .map(|(_, t)| t.periods.clone())
        .max_by_key(|p| p.len())
        .unwrap_or_default();
    let padded = |c: Vec<Option<f64>>| {
        let mut c = c;
        c.resize(periods.len(), None);
        c
    };
    report.blocks.push(Block::Lines(Lines {
        title: format!("Average retention curve by {column}"),
        x_labels: periods.clone(),
        series: triangles
            .iter()
            .map(|(v, t)| (v.clone(), padded(t.curve(RETENTION))))
            .collect(),
        format: Fmt::Percent,
    }));
    report.blocks.push(Block::Lines(Lines {
        title: format!("Value curve by {column}: average cumulative revenue per customer"),
        x_labels: periods.clone(),
        series: triangles
            .iter()
            .map(|(v, t)| (v.clone(), padded(t.curve(VALUE_PER_CUSTOMER))))
            .collect(),
        format: Fmt::Money,
    }));
    for (v, t) in &triangles {
        t.heatmaps(report, &format!(" ({column} = {v})"));
    }
    let mut columns = vec![column.to_string()];
    columns.extend(COLUMNS.map(String::from));
    report.blocks.push(Block::Table(Table {
        title: "Numbers".into(),
        columns,
        rows: groups
            .iter()
            .flat_map(|(v, idx)| {
                idx.iter().map(|&i| {
                    let mut out = vec![v.clone()];
                    out.extend(table_row(&rows[i][1..]));
                    out
                })
            })
            .collect(),
    }));
    Ok(())
}
