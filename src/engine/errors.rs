//! Errors as users see them.

use datafusion::error::DataFusionError;

/// One clear line for an error (no backtrace, no nested "External error" wrapping).
pub fn error_line(e: &DataFusionError) -> String {
    let s = e.strip_backtrace();
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
