//! The value report: `customer_value` by segment, its distribution and the top customers, from
//! `sql/reports/value*.sql`.

use super::*;

const VALUE_SQL: &str = include_str!("../../sql/reports/value.sql");
const VALUE_DISTRIBUTION_SQL: &str = include_str!("../../sql/reports/value_distribution.sql");
const VALUE_TOP_SQL: &str = include_str!("../../sql/reports/value_top.sql");

#[derive(Debug)]
pub(super) struct ValueReport;

#[async_trait::async_trait]
impl ReportKind for ValueReport {
    fn name(&self) -> &'static str {
        "value"
    }
    fn title(&self) -> &'static str {
        "Customer value (BG/NBD and Gamma-Gamma)"
    }
    fn needs(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[PURCHASES]
    }
    fn queries(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            (VALUE_SQL, &["as_of"]),
            (VALUE_DISTRIBUTION_SQL, &["as_of"]),
            (VALUE_TOP_SQL, &["as_of"]),
        ]
    }
    async fn build(&self, job: &Job<'_>, report: &mut Report) -> Result<()> {
        report.subtitle = format!("as of {}; time in days", job.as_of.replace('T', " "));
        value(
            job,
            report,
            [
                &job.params(VALUE_SQL)?,
                &job.params(VALUE_DISTRIBUTION_SQL)?,
                &job.params(VALUE_TOP_SQL)?,
            ],
        )
        .await
    }
}

fn table_of(d: &Dataset, title: &str, formats: &[Option<Fmt>]) -> Result<Table> {
    Ok(Table {
        title: title.to_string(),
        columns: d.columns(),
        rows: d
            .rows()?
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(
                        |(i, v)| match (formats.get(i).copied().flatten(), v.num()) {
                            (Some(f), Some(x)) => f.show(x),
                            _ => v.text(),
                        },
                    )
                    .collect()
            })
            .collect(),
    })
}

async fn value(r: &Job<'_>, report: &mut Report, sql: [&str; 3]) -> Result<()> {
    let seg = r.run("segments", sql[0]).await?;
    let dist = r.run("distribution", sql[1]).await?;
    let top = r.run("top_customers", sql[2]).await?;
    if seg.num_rows() == 0 {
        report.notice = Some("No customers with purchases: the report is empty.".into());
        report.datasets.extend([seg, dist, top]);
        return Ok(());
    }
    let drows = dist.rows()?;
    for (measure, title, fmt) in [
        (
            "p_alive",
            "Distribution of P(alive) (customers per tenth)",
            Fmt::Ratio,
        ),
        (
            "clv",
            "Distribution of CLV (customers per tenth of the largest)",
            Fmt::Money,
        ),
    ] {
        let rows: Vec<&Vec<Value>> = drows.iter().filter(|r| r[0].text() == measure).collect();
        report.blocks.push(Block::Bars(Bars {
            title: title.to_string(),
            x_labels: rows
                .iter()
                .map(|r| {
                    r[2].num()
                        .map_or(String::new(), |v| format!(">= {}", fmt.show(v)))
                })
                .collect(),
            series: vec![(
                "customers".into(),
                rows.iter().map(|r| r[3].num().unwrap_or(0.0)).collect(),
            )],
            format: Fmt::Count,
        }));
    }
    report.blocks.insert(
        0,
        Block::Table(table_of(
            &seg,
            "Segments",
            &[
                None,
                Some(Fmt::Count),
                Some(Fmt::Ratio),
                Some(Fmt::Ratio),
                Some(Fmt::Money),
            ],
        )?),
    );
    report.blocks.push(Block::Table(table_of(
        &top,
        "Top customers by CLV",
        &[
            None,
            Some(Fmt::Count),
            Some(Fmt::Count),
            Some(Fmt::Count),
            Some(Fmt::Money),
            Some(Fmt::Ratio),
            Some(Fmt::Ratio),
            Some(Fmt::Money),
        ],
    )?));
    report.datasets.extend([seg, dist, top]);
    Ok(())
}
