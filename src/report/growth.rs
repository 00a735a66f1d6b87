//! The growth report: new, returning, resurrecting and dormant customers per period, from
//! `sql/reports/growth.sql` (`lifecycle_by_period`).

use super::*;

const GROWTH_SQL: &str = include_str!("../../sql/reports/growth.sql");

#[derive(Debug)]
pub(super) struct GrowthReport;

#[async_trait::async_trait]
impl ReportKind for GrowthReport {
    fn name(&self) -> &'static str {
        "growth"
    }
    fn title(&self) -> &'static str {
        "Growth: new, returning, resurrecting and dormant customers"
    }
    fn needs(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[PURCHASES]
    }
    fn queries(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[(GROWTH_SQL, &["period", "as_of"])]
    }
    async fn build(&self, job: &Job<'_>, report: &mut Report) -> Result<()> {
        growth(job, report, &job.params(GROWTH_SQL)?).await
    }
}

async fn growth(r: &Job<'_>, report: &mut Report, sql: &str) -> Result<()> {
    let d = r.run("growth", sql).await?;
    let rows = d.rows()?;
    report.datasets.push(d);
    if rows.is_empty() {
        report.notice = Some("No purchases: the report is empty.".into());
        return Ok(());
    }
    let (bars, table) = period_series(
        &rows,
        &["new", "returning", "resurrecting", "dormant"],
        &["dormant"],
        "Customers per period: new, returning, resurrecting (up) and dormant (down)",
    );
    report.blocks.push(Block::Bars(bars));
    report.blocks.push(Block::Table(table));
    Ok(())
}
