//! `lifecycle report`: every kind in every format on the sample, blanks for cells not yet
//! observable, empty input, clear errors, and the HTML cohort page rendered in headless Chromium.

use std::path::Path;
use std::process::{Command, Output};

fn lifecycle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifecycle"))
        .args(args)
        .output()
        .expect("run lifecycle")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_kind_in_every_format() {
    for kind in ["cohort", "lifecycle", "growth", "value", "funnel"] {
        for format in ["table", "csv", "json", "html"] {
            let o = lifecycle(&["report", kind, "--format", format, "--period", "quarter"]);
            assert!(o.status.success(), "{kind} {format}: {}", text(&o.stderr));
            let out = text(&o.stdout);
            assert!(out.len() > 100, "{kind} {format}: {out}");
            match format {
                "json" => assert!(out.starts_with("{\"title\":") && out.trim_end().ends_with("}}")),
                "html" => assert!(
                    out.starts_with("<!DOCTYPE html>") && out.contains("<svg")
                        || kind == "value"
                        || kind == "funnel"
                ),
                _ => {}
            }
        }
    }
}

#[test]
fn cohort_triangle_leaves_unobservable_cells_blank() {
    let o = lifecycle(&[
        "report",
        "cohort",
        "--period",
        "quarter",
        "--as-of",
        "2024-12-31",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    // 12 quarterly cohorts (2022-2024): the first has periods 0..11, the last only period 0, so
    // its row ends right after 100.0%.
    let first = out.lines().find(|l| l.starts_with("2022-01-01 (")).unwrap();
    let last = out.lines().find(|l| l.starts_with("2024-10-01 (")).unwrap();
    assert_eq!(first.matches('%').count(), 12, "{first}");
    assert!(last.trim_end().ends_with("100.0%"), "{last}");
    assert_eq!(last.matches('%').count(), 1);
    // CSV is the triangle in long form: 12 + 11 + ... + 1 cells.
    let o = lifecycle(&[
        "report",
        "cohort",
        "--period",
        "quarter",
        "--as-of",
        "2024-12-31",
        "--format",
        "csv",
    ]);
    let csv = text(&o.stdout);
    assert!(csv.starts_with(
        "cohort,period,cohort_size,active_customers,retention,revenue,revenue_per_customer,value_per_customer\n"
    ));
    assert_eq!(csv.lines().count(), 1 + 78);
}

#[test]
fn growth_draws_dormant_below_zero() {
    let o = lifecycle(&["report", "growth", "--format", "html"]);
    let html = text(&o.stdout);
    assert!(html.contains("dormant: -"), "dormant bars are negative");
}

#[test]
fn empty_input_gives_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.parquet");
    let o = lifecycle(&[
        "sql",
        "-c",
        &format!(
            "COPY (SELECT * FROM purchases WHERE false) TO '{}'",
            p.display()
        ),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let spec = format!("purchases={}", p.display());
    for format in ["table", "html", "json"] {
        let o = lifecycle(&["report", "cohort", "--table", &spec, "--format", format]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("the report is empty"), "{format}");
    }
}

#[test]
fn bad_options_fail_with_one_clear_line() {
    let o = lifecycle(&["report", "cohort", "--as-of", "someday"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--as-of 'someday' is not a date"),
        "{}",
        text(&o.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.parquet");
    lifecycle(&[
        "sql",
        "-c",
        &format!("COPY (SELECT * FROM purchases) TO '{}'", p.display()),
    ]);
    let o = lifecycle(&[
        "report",
        "funnel",
        "--table",
        &format!("purchases={}", p.display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("the funnel report needs a table 'events'"),
        "{}",
        text(&o.stderr)
    );
    let o = lifecycle(&["report", "funnel", "--window", "soon"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("invalid window 'soon'"));
    let o = lifecycle(&["report", "nonsense"]);
    assert!(!o.status.success());
}

#[test]
fn funnel_report_counts_steps_like_window_funnel() {
    let o = lifecycle(&[
        "report",
        "funnel",
        "--steps",
        "visit,cart,purchase",
        "--window",
        "2d",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = text(&o.stdout);
    let counts: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    // The same question asked of window_funnel directly.
    let q = "SELECT level, count(*) FROM (SELECT customer_id, window_funnel(172800, event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase') AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level";
    let o = lifecycle(&["sql", "--format", "csv", "-c", q]);
    let levels: Vec<(usize, u64)> = text(&o.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    for step in 1..=3usize {
        let reached: u64 = levels
            .iter()
            .filter(|(l, _)| *l >= step)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(counts[step - 1], reached.to_string(), "step {step}");
    }
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_string();
        }
    }
    panic!("headless Chromium is needed for this test: install Debian's chromium package");
}

/// Screenshots `html` in headless Chromium and returns the PNG's RGBA pixels.
fn screenshot(html: &Path, png_path: &Path) -> (u32, u32, Vec<u8>) {
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        png_path.exists(),
        "chromium wrote no screenshot: {}",
        text(&o.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, rgba)
}

#[test]
fn cohort_html_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("cohort.html");
    let o = lifecycle(&[
        "report",
        "cohort",
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<script") && !page.contains("<link"),
        "self-contained"
    );
    let (w, h, px) = screenshot(&html, &dir.path().join("cohort.png"));
    assert!(w >= 1000 && h >= 800);
    let pixels: Vec<&[u8]> = px.chunks(4).collect();
    let non_white = pixels
        .iter()
        .filter(|p| p[0] < 240 || p[1] < 240 || p[2] < 240)
        .count();
    let dark_blue = pixels
        .iter()
        .filter(|p| p[2] > 80 && p[0] < 40 && p[1] < 80)
        .count();
    let mut colours: Vec<[u8; 3]> = pixels
        .iter()
        .map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0])
        .collect();
    colours.sort();
    colours.dedup();
    assert!(
        non_white * 10 > pixels.len(),
        "page is mostly blank: {non_white} of {} pixels drawn",
        pixels.len()
    );
    assert!(
        dark_blue > 1000,
        "the heatmap's full-retention column is drawn ({dark_blue} dark blue pixels)"
    );
    assert!(
        colours.len() > 20,
        "a colour-scaled heatmap has many shades ({})",
        colours.len()
    );
}

#[test]
fn shipped_report_sql_runs_as_is_in_the_shell() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/reports");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            let o = lifecycle(&["sql", "--format", "csv", "-f", path.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{}: {}",
                path.display(),
                text(&o.stderr)
            );
            assert!(
                text(&o.stdout).lines().count() > 1,
                "{} returned rows",
                path.display()
            );
            n += 1;
        }
    }
    assert_eq!(n, 10);
}

/// Parses CSV output (no quoted commas in these reports) into rows of fields.
fn csv_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn cohort_report_by_breakdown_and_unbounded_mode() {
    let o = lifecycle(&[
        "report",
        "cohort",
        "--period",
        "quarter",
        "--as-of",
        "2024-12-31",
        "--mode",
        "unbounded",
        "--breakdown",
        "channel",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = csv_rows(&text(&o.stdout));
    // The sample's five channels, every customer attributed once: the period-0 sizes add up to
    // the customers with an order by the end of 2024.
    let channels: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(channels.len(), 5, "{channels:?}");
    let size: u64 = rows
        .iter()
        .filter(|r| r[2] == "0")
        .map(|r| r[3].parse::<u64>().unwrap())
        .sum();
    let q = "SELECT count(DISTINCT customer_id) FROM purchases WHERE order_ts <= TIMESTAMP '2024-12-31 00:00:00'";
    let o = lifecycle(&["sql", "--format", "csv", "-c", q]);
    assert_eq!(text(&o.stdout).lines().nth(1).unwrap(), size.to_string());
    // Unbounded: retained customers never increase along a cohort's row.
    for w in rows.windows(2) {
        if w[0][0] == w[1][0] && w[0][1] == w[1][1] {
            let (a, b): (u64, u64) = (w[0][4].parse().unwrap(), w[1][4].parse().unwrap());
            assert!(b <= a, "{:?} then {:?}", w[0], w[1]);
        }
    }
    // The text report draws a heatmap per channel and the curves by channel.
    let o = lifecycle(&[
        "report",
        "cohort",
        "--period",
        "quarter",
        "--breakdown",
        "channel",
    ]);
    let out = text(&o.stdout);
    assert!(out.contains("Average retention curve by channel"), "{out}");
    assert!(out.contains("(channel = organic)"), "{out}");
}

#[test]
fn funnel_report_by_breakdown_counts_and_times_like_window_funnel_times() {
    let o = lifecycle(&[
        "report",
        "funnel",
        "--steps",
        "visit,cart,purchase",
        "--window",
        "2d",
        "--breakdown",
        "channel",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = csv_rows(&text(&o.stdout));
    // Each customer's step times from window_funnel_times and its channel from customers (a
    // customer attribute, so first touch is the customer's channel; visitors without a customer
    // record have none).
    let q = "SELECT coalesce(c.channel, ''), CAST(f.t AS VARCHAR) FROM (
               SELECT customer_id, window_funnel_times(172800, event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase') AS t
               FROM events GROUP BY customer_id) f
             LEFT JOIN customers c ON c.customer_id = f.customer_id WHERE cardinality(f.t) > 0";
    let o = lifecycle(&["sql", "--format", "csv", "-c", q]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // channel -> per customer, the step times in seconds.
    let mut by: std::collections::BTreeMap<String, Vec<Vec<f64>>> = Default::default();
    for line in text(&o.stdout).lines().skip(1) {
        let (ch, t) = line.split_once(',').unwrap();
        let t = t.trim_matches('"').trim_matches(|c| c == '[' || c == ']');
        let secs: Vec<f64> = t
            .split(", ")
            .map(|s| {
                let dt = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").unwrap();
                dt.and_utc().timestamp_micros() as f64 / 1e6
            })
            .collect();
        by.entry(ch.to_string()).or_default().push(secs);
    }
    let nearest_rank = |mut v: Vec<f64>, q: f64| -> f64 {
        v.sort_by(f64::total_cmp);
        v[((q * v.len() as f64).ceil() as usize).max(1) - 1]
    };
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let mut checked = 0;
    for r in &rows {
        let ch = if r[0].is_empty() { "" } else { r[0].as_str() };
        let step: usize = r[1].parse().unwrap();
        let customers = &by[ch];
        let reached: Vec<&Vec<f64>> = customers.iter().filter(|t| t.len() >= step).collect();
        assert_eq!(r[2], reached.len().to_string(), "{ch} step {step}");
        if step > 1 {
            let prev: Vec<f64> = reached.iter().map(|t| t[step - 1] - t[step - 2]).collect();
            let first: Vec<f64> = reached.iter().map(|t| t[step - 1] - t[0]).collect();
            let close = |got: &str, want: f64| (got.parse::<f64>().unwrap() - want).abs() < 1e-6;
            assert!(
                close(&r[3], median(prev.clone())),
                "{ch} {step} median {}",
                r[3]
            );
            assert!(
                close(&r[4], nearest_rank(prev, 0.9)),
                "{ch} {step} p90 {}",
                r[4]
            );
            assert!(close(&r[5], median(first.clone())), "{ch} {step}");
            assert!(close(&r[6], nearest_rank(first, 0.9)), "{ch} {step}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn breakdown_and_mode_errors_are_one_clear_line() {
    for (args, want) in [
        (
            &["report", "cohort", "--breakdown", "nope"][..],
            "--breakdown 'nope': neither 'purchases' nor 'customer_orders'",
        ),
        (
            &["report", "growth", "--mode", "unbounded"][..],
            "--mode applies to the cohort report only",
        ),
        (
            &["report", "value", "--breakdown", "channel"][..],
            "--breakdown applies to the cohort and funnel reports only",
        ),
    ] {
        let o = lifecycle(args);
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
