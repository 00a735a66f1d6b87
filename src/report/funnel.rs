//! The funnel report: customers reaching each step and the time between steps, from
//! `sql/reports/funnel.sql` (`window_funnel_times`).

use super::*;

pub(super) async fn funnel(
    r: &Runner<'_>,
    report: &mut Report,
    sql: &str,
    steps: &[String],
) -> Result<()> {
    let d = r.run("funnel", sql).await?;
    let rows = d.rows()?;
    report.datasets.push(d);
    let counts: Vec<f64> = rows.iter().map(|r| r[1].num().unwrap_or(0.0)).collect();
    if counts.first().copied().unwrap_or(0.0) == 0.0 {
        report.notice = Some("No customer reached the first step: the report is empty.".into());
        return Ok(());
    }
    report.blocks.push(Block::Bars(Bars {
        title: "Customers reaching each step".into(),
        x_labels: steps.to_vec(),
        series: vec![("customers".into(), counts.clone())],
        format: Fmt::Count,
    }));
    report.blocks.push(Block::Table(Table {
        title: "Conversion".into(),
        columns: [
            "step",
            "event",
            "customers",
            "of first step",
            "drop-off from previous",
            "median time from previous",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                vec![
                    (i + 1).to_string(),
                    steps.get(i).cloned().unwrap_or_default(),
                    Fmt::Count.show(counts[i]),
                    Fmt::Percent.show(counts[i] / counts[0]),
                    if i == 0 || counts[i - 1] == 0.0 {
                        String::new()
                    } else {
                        Fmt::Percent.show(1.0 - counts[i] / counts[i - 1])
                    },
                    r[2].num().map_or(String::new(), |v| Fmt::Seconds.show(v)),
                ]
            })
            .collect(),
    }));
    Ok(())
}
