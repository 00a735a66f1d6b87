//! The growth report: new, returning, resurrecting and dormant customers per period, from
//! `sql/reports/growth.sql` (`lifecycle_by_period`).

use super::*;

pub(super) async fn growth(r: &Runner<'_>, report: &mut Report, sql: &str) -> Result<()> {
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
