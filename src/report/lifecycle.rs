//! The lifecycle report: customers by stage per period (stacked bars) and the stage
//! transitions between the last two periods, from `sql/reports/lifecycle*.sql`.

use super::*;

const LIFECYCLE_SQL: &str = include_str!("../../sql/reports/lifecycle.sql");
const TRANSITIONS_SQL: &str = include_str!("../../sql/reports/lifecycle_transitions.sql");

#[derive(Debug)]
pub(super) struct LifecycleReport;

#[async_trait::async_trait]
impl ReportKind for LifecycleReport {
    fn name(&self) -> &'static str {
        "lifecycle"
    }
    fn title(&self) -> &'static str {
        "Customers by lifecycle stage"
    }
    fn needs(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[PURCHASES, ("customers", &["customer_id", "signup_ts"])]
    }
    fn queries(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            (LIFECYCLE_SQL, &["period", "as_of", "step"]),
            (TRANSITIONS_SQL, &["period", "as_of"]),
        ]
    }
    async fn build(&self, job: &Job<'_>, report: &mut Report) -> Result<()> {
        lifecycle(
            job,
            report,
            &job.params(LIFECYCLE_SQL)?,
            &job.params(TRANSITIONS_SQL)?,
        )
        .await
    }
}

const STAGES: [&str; 7] = [
    "prospect",
    "new",
    "repeat",
    "loyal",
    "reactivated",
    "at_risk",
    "churned",
];

async fn lifecycle(
    r: &Job<'_>,
    report: &mut Report,
    sql: &str,
    transitions_sql: &str,
) -> Result<()> {
    let d = r.run("lifecycle", sql).await?;
    let rows = d.rows()?;
    report.datasets.push(d);
    let t = r.run("transitions", transitions_sql).await?;
    let trows = t.rows()?;
    report.datasets.push(t);
    if rows.is_empty() {
        report.notice = Some("No customers: the report is empty.".into());
        return Ok(());
    }
    let (bars, table) = period_series(
        &rows,
        &STAGES,
        &[],
        "Customers per lifecycle stage at the end of each period",
    );
    report.blocks.push(Block::Bars(bars));
    report.blocks.push(Block::Table(table));
    let prev: Vec<String> = STAGES
        .iter()
        .map(|s| s.to_string())
        .filter(|s| trows.iter().any(|r| r[0].text() == *s))
        .collect();
    let cur: Vec<String> = STAGES
        .iter()
        .map(|s| s.to_string())
        .filter(|s| trows.iter().any(|r| r[1].text() == *s))
        .collect();
    let m = pivot(&trows, 1, 0, 2, &cur, &prev);
    let mut columns = vec!["previous \\ now".to_string()];
    columns.extend(cur.iter().cloned());
    report.blocks.push(Block::Table(Table {
        title: "Transitions between the last two periods (rows: stage at the end of the previous period; columns: now)".into(),
        columns,
        rows: prev
            .iter()
            .zip(&m)
            .map(|(p, row)| {
                let mut v = vec![p.clone()];
                v.extend(row.iter().map(|x| Fmt::Count.show(x.unwrap_or(0.0))));
                v
            })
            .collect(),
    }));
    Ok(())
}
