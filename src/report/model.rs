//! The report model every kind builds and every format renders: query results (datasets) and
//! visual blocks (heatmaps, line charts, stacked bars, tables).

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result;

/// One query's result.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// A cell of a dataset: numbers as `f64`, everything else as display text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Num(f64),
    Text(String),
}

impl Value {
    pub fn num(&self) -> Option<f64> {
        match self {
            Value::Num(v) => Some(*v),
            _ => None,
        }
    }

    /// Display text (period starts at midnight lose their time).
    pub fn text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Num(v) => format!("{v}"),
            Value::Text(s) => s.strip_suffix("T00:00:00").unwrap_or(s).to_string(),
        }
    }
}

impl Dataset {
    pub fn columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// Rows as values.
    pub fn rows(&self) -> Result<Vec<Vec<Value>>> {
        let opts = FormatOptions::default();
        let mut out = vec![];
        for b in &self.batches {
            let cols: Vec<Vec<Value>> = b
                .columns()
                .iter()
                .map(|c| -> Result<Vec<Value>> {
                    if c.data_type().is_numeric() {
                        let f = cast(c, &DataType::Float64)?;
                        let f = f
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::PrimitiveArray<Float64Type>>()
                            .expect("f64");
                        Ok((0..f.len())
                            .map(|i| {
                                if f.is_null(i) {
                                    Value::Null
                                } else {
                                    Value::Num(f.value(i))
                                }
                            })
                            .collect())
                    } else {
                        let fmt = ArrayFormatter::try_new(c.as_ref(), &opts)?;
                        Ok((0..c.len())
                            .map(|i| {
                                if c.is_null(i) {
                                    Value::Null
                                } else {
                                    Value::Text(fmt.value(i).to_string())
                                }
                            })
                            .collect())
                    }
                })
                .collect::<Result<_>>()?;
            for r in 0..b.num_rows() {
                out.push(cols.iter().map(|c| c[r].clone()).collect());
            }
        }
        Ok(out)
    }
}

/// How numbers of a block are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    Percent,
    Money,
    Count,
    Seconds,
    Ratio,
}

impl Fmt {
    pub fn show(self, v: f64) -> String {
        match self {
            Fmt::Percent => format!("{:.1}%", v * 100.0),
            Fmt::Money => {
                if v.abs() >= 10_000.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            }
            Fmt::Count => format!("{v:.0}"),
            Fmt::Ratio => format!("{v:.3}"),
            Fmt::Seconds => human_seconds(v),
        }
    }
}

/// 42 s, 7.5 min, 3.2 h, 2.1 d.
pub fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// None: not observable (blank), not zero.
    pub cells: Vec<Vec<Option<f64>>>,
    pub format: Fmt,
}

#[derive(Debug, Clone)]
pub struct Lines {
    pub title: String,
    pub x_labels: Vec<String>,
    pub series: Vec<(String, Vec<Option<f64>>)>,
    pub format: Fmt,
}

/// Stacked bars; negative values stack below zero.
#[derive(Debug, Clone)]
pub struct Bars {
    pub title: String,
    pub x_labels: Vec<String>,
    pub series: Vec<(String, Vec<f64>)>,
    pub format: Fmt,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Heatmap(Heatmap),
    Lines(Lines),
    Bars(Bars),
    Table(Table),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub subtitle: String,
    pub datasets: Vec<Dataset>,
    pub blocks: Vec<Block>,
    /// Shown instead of the blocks when there is nothing to report (e.g. no purchases).
    pub notice: Option<String>,
}

/// Distinct values of column `col` in first-seen order.
pub fn distinct(rows: &[Vec<Value>], col: usize) -> Vec<String> {
    let mut seen = vec![];
    for r in rows {
        let t = r[col].text();
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen
}

/// Pivots long rows (x, series, value) into per-series vectors over `xs` (missing: None).
pub fn pivot(
    rows: &[Vec<Value>],
    x: usize,
    s: usize,
    v: usize,
    xs: &[String],
    series: &[String],
) -> Vec<Vec<Option<f64>>> {
    let mut out = vec![vec![None; xs.len()]; series.len()];
    for r in rows {
        let (Some(i), Some(k)) = (
            xs.iter().position(|a| *a == r[x].text()),
            series.iter().position(|a| *a == r[s].text()),
        ) else {
            continue;
        };
        out[k][i] = r[v].num();
    }
    out
}
