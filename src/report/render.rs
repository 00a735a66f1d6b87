//! The one rendering module of every report kind: terminal text, CSV, JSON and a self-contained
//! HTML page with inline SVG charts (no scripts, fonts or network fetches).

use std::fmt::Write as _;

use std::io::Write;

use datafusion::error::Result;

use super::model::{Bars, Block, Fmt, Heatmap, Lines, Report, Table};
use crate::shell::output::{Format, write_batches};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
    Html,
}

pub fn render(report: &Report, format: ReportFormat, out: &mut dyn Write) -> Result<()> {
    match format {
        ReportFormat::Table => out.write_all(text(report).as_bytes())?,
        ReportFormat::Html => out.write_all(html(report).as_bytes())?,
        ReportFormat::Csv => {
            // The report's main dataset, in long form.
            if let Some(d) = report.datasets.first() {
                write_batches(&d.schema, &d.batches, Format::Csv, out)?;
            }
        }
        ReportFormat::Json => {
            // Each dataset as arrow-json writes it, inside one serde_json document.
            let mut datasets = serde_json::Map::new();
            for d in &report.datasets {
                let mut buf = vec![];
                write_batches(&d.schema, &d.batches, Format::Json, &mut buf)?;
                let rows = if buf.iter().all(u8::is_ascii_whitespace) {
                    serde_json::Value::Array(vec![])
                } else {
                    serde_json::from_slice(&buf)
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
                };
                datasets.insert(d.name.clone(), rows);
            }
            // Fields in reading order (serde_json's own maps sort their keys); each value is
            // a serde_json value, so escaping is serde_json's.
            let value = |v: serde_json::Value| v.to_string();
            writeln!(
                out,
                "{{\"title\":{},\"subtitle\":{},\"notice\":{},\"datasets\":{}}}",
                value(report.title.clone().into()),
                value(report.subtitle.clone().into()),
                value(report.notice.clone().into()),
                value(serde_json::Value::Object(datasets))
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Text

/// An aligned text table: a header, a rule under it, right-aligned columns two spaces apart.
fn aligned(columns: &[String], rows: &[Vec<String>]) -> String {
    use comfy_table::{CellAlignment, Table};
    // comfy-table's preset characters: only the header rule ('-' at index 5) is drawn.
    const HEADER_RULE_ONLY: &str = "     -             ";
    let mut t = Table::new();
    t.load_preset(HEADER_RULE_ONLY)
        .set_header(columns)
        .add_rows(rows.iter().cloned());
    for c in t.column_iter_mut() {
        // Right-aligned, two spaces after each column (trimmed at the end of a line).
        c.set_cell_alignment(CellAlignment::Right);
        c.set_padding((0, 2));
    }
    let mut s: String = t
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

fn heatmap_table(h: &Heatmap, corner: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut cols = vec![corner.to_string()];
    cols.extend(h.col_labels.iter().cloned());
    let rows = h
        .row_labels
        .iter()
        .zip(&h.cells)
        .map(|(l, r)| {
            let mut v = vec![l.clone()];
            v.extend(
                r.iter()
                    .map(|c| c.map_or(String::new(), |x| h.format.show(x))),
            );
            v
        })
        .collect();
    (cols, rows)
}

fn series_table(
    x_title: &str,
    x: &[String],
    series: &[(String, Vec<Option<f64>>)],
    fmt: Fmt,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut cols = vec![x_title.to_string()];
    cols.extend(series.iter().map(|s| s.0.clone()));
    let rows = x
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = vec![l.clone()];
            v.extend(
                series
                    .iter()
                    .map(|s| s.1[i].map_or(String::new(), |x| fmt.show(x))),
            );
            v
        })
        .collect();
    (cols, rows)
}

pub fn text(r: &Report) -> String {
    let mut s = format!("{}\n{}\n\n", r.title, r.subtitle);
    if let Some(n) = &r.notice {
        s += n;
        s.push('\n');
        return s;
    }
    for b in &r.blocks {
        let (title, cols, rows) = match b {
            Block::Heatmap(h) => {
                let (c, rows) = heatmap_table(h, "");
                (&h.title, c, rows)
            }
            Block::Lines(l) => {
                let (c, rows) = series_table("", &l.x_labels, &l.series, l.format);
                (&l.title, c, rows)
            }
            Block::Bars(b) => {
                let series: Vec<(String, Vec<Option<f64>>)> = b
                    .series
                    .iter()
                    .map(|(n, v)| (n.clone(), v.iter().map(|x| Some(*x)).collect()))
                    .collect();
                let (c, rows) = series_table("", &b.x_labels, &series, b.format);
                (&b.title, c, rows)
            }
            Block::Table(t) => (&t.title, t.columns.clone(), t.rows.clone()),
        };
        s += &format!("{title}\n");
        s += &aligned(&cols, &rows);
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// HTML and SVG

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A colour from white (0) to deep blue (1).
pub fn blue(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        lerp(247.0, 8.0),
        lerp(251.0, 48.0),
        lerp(255.0, 107.0)
    )
}

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

pub fn heatmap_svg(h: &Heatmap) -> String {
    let (cw, ch, lw, top) = (56.0, 22.0, 110.0, 24.0);
    let w = lw + cw * h.col_labels.len() as f64 + 10.0;
    let hgt = top + ch * h.row_labels.len() as f64 + 10.0;
    let max = h
        .cells
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, v| m.max(*v));
    let scale = if h.format == Fmt::Percent {
        1.0
    } else {
        max.max(1e-12)
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hgt}" viewBox="0 0 {w} {hgt}" font-family="sans-serif" font-size="11">"#
    );
    for (j, c) in h.col_labels.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            lw + cw * (j as f64 + 0.5),
            top - 8.0,
            esc(c)
        );
    }
    for (i, (label, row)) in h.row_labels.iter().zip(&h.cells).enumerate() {
        let y = top + ch * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            lw - 6.0,
            y + ch * 0.7,
            esc(label)
        );
        for (j, v) in row.iter().enumerate() {
            let Some(v) = v else { continue };
            let t = v / scale;
            let x = lw + cw * j as f64;
            let _ = write!(
                s,
                r#"<rect x="{x}" y="{y}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect><text x="{}" y="{}" text-anchor="middle" fill="{}">{}</text>"#,
                cw - 1.0,
                ch - 1.0,
                blue(t),
                esc(label),
                h.format.show(*v),
                x + cw / 2.0,
                y + ch * 0.7,
                if t > 0.55 { "#ffffff" } else { "#1a1a1a" },
                esc(&h.format.show(*v))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Maps a value range onto a vertical pixel range (top = max).
fn y_of(v: f64, lo: f64, hi: f64, top: f64, bottom: f64) -> f64 {
    if hi <= lo {
        return bottom;
    }
    bottom - (v - lo) / (hi - lo) * (bottom - top)
}

#[allow(clippy::too_many_arguments)]
fn axis(s: &mut String, lo: f64, hi: f64, fmt: Fmt, left: f64, right: f64, top: f64, bottom: f64) {
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = y_of(v, lo, hi, top, bottom);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="#dddddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left - 4.0,
            y + 4.0,
            esc(&fmt.show(v))
        );
    }
}

fn x_labels(s: &mut String, labels: &[String], x: impl Fn(usize) -> f64, y: f64) {
    let every = labels.len().div_ceil(16).max(1);
    for (i, l) in labels.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                s,
                r#"<text x="{}" y="{y}" text-anchor="middle">{}</text>"#,
                x(i),
                esc(l)
            );
        }
    }
}

fn legend(s: &mut String, names: &[&str], x: f64, y: f64) {
    for (k, n) in names.iter().enumerate() {
        let yy = y + 16.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            yy - 9.0,
            PALETTE[k % PALETTE.len()],
            x + 14.0,
            yy,
            esc(n)
        );
    }
}

pub fn lines_svg(l: &Lines) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 300.0, 60.0, 620.0, 16.0, 260.0);
    let vals: Vec<f64> = l
        .series
        .iter()
        .flat_map(|s| s.1.iter().flatten().copied())
        .collect();
    let hi = vals
        .iter()
        .cloned()
        .fold(0.0f64, f64::max)
        .max(if l.format == Fmt::Percent { 1.0 } else { 1e-9 });
    let n = l.x_labels.len().max(2);
    let x = |i: usize| left + (right - left) * i as f64 / (n - 1) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    axis(&mut s, 0.0, hi, l.format, left, right, top, bottom);
    x_labels(&mut s, &l.x_labels, x, bottom + 16.0);
    for (k, (_, v)) in l.series.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .filter_map(|(i, y)| {
                y.map(|y| format!("{:.1},{:.1}", x(i), y_of(y, 0.0, hi, top, bottom)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            PALETTE[k % PALETTE.len()],
            pts.join(" ")
        );
    }
    let names: Vec<&str> = l.series.iter().map(|s| s.0.as_str()).collect();
    legend(&mut s, &names, right + 20.0, top + 10.0);
    s.push_str("</svg>");
    s
}

pub fn bars_svg(b: &Bars) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 320.0, 60.0, 620.0, 16.0, 280.0);
    let n = b.x_labels.len().max(1);
    let (mut hi, mut lo) = (0.0f64, 0.0f64);
    for i in 0..b.x_labels.len() {
        let pos: f64 = b.series.iter().map(|s| s.1[i].max(0.0)).sum();
        let neg: f64 = b.series.iter().map(|s| s.1[i].min(0.0)).sum();
        hi = hi.max(pos);
        lo = lo.min(neg);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let bw = (right - left) / n as f64;
    let x = |i: usize| left + bw * (i as f64 + 0.5);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    axis(&mut s, lo, hi, b.format, left, right, top, bottom);
    for i in 0..b.x_labels.len() {
        let (mut up, mut down) = (0.0f64, 0.0f64);
        for (k, (name, v)) in b.series.iter().enumerate() {
            let v = v[i];
            if v == 0.0 {
                continue;
            }
            let (a, c) = if v > 0.0 {
                let r = (up, up + v);
                up += v;
                r
            } else {
                let r = (down + v, down);
                down += v;
                r
            };
            let (y1, y2) = (y_of(c, lo, hi, top, bottom), y_of(a, lo, hi, top, bottom));
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                left + bw * i as f64 + bw * 0.1,
                bw * 0.8,
                (y2 - y1).max(0.5),
                PALETTE[k % PALETTE.len()],
                esc(&b.x_labels[i]),
                esc(name),
                b.format.show(v)
            );
        }
    }
    let zero = y_of(0.0, lo, hi, top, bottom);
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{right}" y1="{zero}" y2="{zero}" stroke="#333333"/>"##
    );
    x_labels(&mut s, &b.x_labels, x, bottom + 16.0);
    let names: Vec<&str> = b.series.iter().map(|s| s.0.as_str()).collect();
    legend(&mut s, &names, right + 20.0, top + 10.0);
    s.push_str("</svg>");
    s
}

fn table_html(t: &Table) -> String {
    let mut s = String::from("<table><thead><tr>");
    for c in &t.columns {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

pub fn html(r: &Report) -> String {
    let mut s = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1a1a1a; background: #ffffff; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
.sub {{ color: #555555; margin-top: 0; }} .notice {{ padding: 16px; background: #fff4e5; border: 1px solid #f0c36d; }}
table {{ border-collapse: collapse; font-size: 12px; }} th, td {{ border: 1px solid #dddddd; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f5f8; }} svg {{ display: block; max-width: 100%; height: auto; }}
</style></head><body>
<h1>{}</h1><p class="sub">{}</p>
"#,
        esc(&r.title),
        esc(&r.title),
        esc(&r.subtitle)
    );
    if let Some(n) = &r.notice {
        let _ = write!(s, r#"<p class="notice">{}</p>"#, esc(n));
    }
    for b in &r.blocks {
        let (title, body) = match b {
            Block::Heatmap(h) => (&h.title, heatmap_svg(h)),
            Block::Lines(l) => (&l.title, lines_svg(l)),
            Block::Bars(b) => (&b.title, bars_svg(b)),
            Block::Table(t) => (&t.title, table_html(t)),
        };
        let _ = write!(s, "<h2>{}</h2>\n{}\n", esc(title), body);
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heat() -> Heatmap {
        Heatmap {
            title: "t".into(),
            row_labels: vec!["2024-01".into(), "2024-02".into()],
            col_labels: vec!["0".into(), "1".into()],
            cells: vec![vec![Some(1.0), Some(0.25)], vec![Some(1.0), None]],
            format: Fmt::Percent,
        }
    }

    #[test]
    fn heatmap_draws_observable_cells_only() {
        let s = heatmap_svg(&heat());
        assert_eq!(
            s.matches("<rect").count(),
            3,
            "the unobservable cell stays blank"
        );
        assert!(s.contains("25.0%") && s.contains("100.0%"));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        // Full retention is the darkest colour, with white text.
        assert!(s.contains(&blue(1.0)) && s.contains("#ffffff"));
        assert_eq!(blue(0.0), "#f7fbff");
        assert_eq!(blue(1.0), "#08306b");
    }

    #[test]
    fn text_shows_blanks_and_percentages() {
        let r = Report {
            title: "Cohorts".into(),
            subtitle: "s".into(),
            datasets: vec![],
            blocks: vec![Block::Heatmap(heat())],
            notice: None,
        };
        let t = text(&r);
        assert!(t.contains("2024-02  100.0%\n"), "{t}");
        assert!(t.contains("25.0%"));
    }

    #[test]
    fn escaping_and_negative_bars() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        let b = Bars {
            title: "g".into(),
            x_labels: vec!["p1".into(), "p2".into()],
            series: vec![
                ("new".into(), vec![3.0, 1.0]),
                ("dormant".into(), vec![-2.0, 0.0]),
            ],
            format: Fmt::Count,
        };
        let s = bars_svg(&b);
        assert_eq!(
            s.matches("<rect x=").count() - 2,
            3,
            "three non-zero bars (plus two legend swatches)"
        );
        assert!(s.contains("dormant: -2"));
        let l = Lines {
            title: "l".into(),
            x_labels: vec!["0".into(), "1".into(), "2".into()],
            series: vec![("avg".into(), vec![Some(1.0), Some(0.5), None])],
            format: Fmt::Percent,
        };
        assert_eq!(lines_svg(&l).matches("<polyline").count(), 1);
    }

    #[test]
    fn html_is_self_contained() {
        let r = Report {
            title: "Cohorts <x>".into(),
            subtitle: "s".into(),
            datasets: vec![],
            blocks: vec![Block::Heatmap(heat())],
            notice: None,
        };
        let h = html(&r);
        assert!(h.contains("Cohorts &lt;x&gt;"));
        assert!(
            !h.contains("http://") || !h.replace("http://www.w3.org/2000/svg", "").contains("http"),
            "no fetches"
        );
        assert!(!h.contains("<script") && !h.contains("<link"));
    }
}
