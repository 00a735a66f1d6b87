//! The cohort report: the retention triangle (a heatmap of retention, and of revenue) from
//! `sql/reports/cohort.sql`.

use super::*;

fn pct(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| Fmt::Percent.show(x))
}

pub(super) async fn cohort(r: &Runner<'_>, report: &mut Report, sql: &str) -> Result<()> {
    let d = r.run("cohort", sql).await?;
    let rows = d.rows()?;
    report.datasets.push(d);
    if rows.is_empty() {
        report.notice = Some("No cohorts: the report is empty.".into());
        return Ok(());
    }
    let cohorts = distinct(&rows, 0);
    let periods: Vec<String> = {
        let max = rows
            .iter()
            .filter_map(|r| r[1].num())
            .fold(0.0f64, f64::max) as usize;
        (0..=max).map(|p| p.to_string()).collect()
    };
    let sizes: Vec<String> = cohorts
        .iter()
        .map(|c| {
            let n = rows
                .iter()
                .find(|r| r[0].text() == *c)
                .and_then(|r| r[2].num())
                .unwrap_or(0.0);
            format!("{c} ({n:.0})")
        })
        .collect();
    let grid = |col: usize| -> Vec<Vec<Option<f64>>> {
        let mut g = vec![vec![None; periods.len()]; cohorts.len()];
        for r in &rows {
            let i = cohorts
                .iter()
                .position(|c| *c == r[0].text())
                .expect("cohort");
            let p = r[1].num().unwrap_or(0.0) as usize;
            g[i][p] = r[col].num();
        }
        g
    };
    let retention = grid(4);
    let curve: Vec<Option<f64>> = (0..periods.len())
        .map(|p| {
            let v: Vec<f64> = retention.iter().filter_map(|r| r[p]).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    report.blocks.push(Block::Heatmap(Heatmap {
        title: "Retention: share of each cohort buying in each period (blank: not yet observable)"
            .into(),
        row_labels: sizes.clone(),
        col_labels: periods.clone(),
        cells: retention,
        format: Fmt::Percent,
    }));
    report.blocks.push(Block::Heatmap(Heatmap {
        title: "Revenue per cohort customer in each period".into(),
        row_labels: sizes,
        col_labels: periods.clone(),
        cells: grid(6),
        format: Fmt::Money,
    }));
    report.blocks.push(Block::Lines(Lines {
        title: "Average retention curve (mean over cohorts observed at each period)".into(),
        x_labels: periods,
        series: vec![("average retention".into(), curve)],
        format: Fmt::Percent,
    }));
    report.blocks.push(Block::Table(Table {
        title: "Numbers".into(),
        columns: [
            "cohort",
            "period",
            "cohort size",
            "active",
            "retention",
            "revenue",
            "revenue / customer",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r[0].text(),
                    r[1].text(),
                    r[2].num().map_or(String::new(), |v| Fmt::Count.show(v)),
                    r[3].num().map_or(String::new(), |v| Fmt::Count.show(v)),
                    pct(r[4].num()),
                    r[5].num().map_or(String::new(), |v| format!("{v:.2}")),
                    r[6].num().map_or(String::new(), |v| format!("{v:.2}")),
                ]
            })
            .collect(),
    }));
    Ok(())
}
