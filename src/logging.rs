//! Diagnostics through the `log` crate (the functions' fit traces, for example), written to
//! stderr as `RUST_LOG` asks, in env_logger's directive syntax without regexes: a default level
//! and `target=level` pairs, comma-separated (`RUST_LOG=lifecycle_udfs=debug` traces the fits,
//! `RUST_LOG=debug` everything). The default is warnings and errors.

use log::{LevelFilter, Log, Metadata, Record};

/// `RUST_LOG` parsed: the level of targets no directive names, and `(target prefix, level)`.
#[derive(Debug, PartialEq)]
struct Filter {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    fn parse(spec: Option<&str>) -> Self {
        let mut f = Filter {
            default: LevelFilter::Warn,
            targets: vec![],
        };
        for d in spec.unwrap_or("").split(',').map(str::trim) {
            match d.split_once('=') {
                Some((target, level)) => {
                    if let Ok(level) = level.trim().parse() {
                        f.targets.push((target.trim().to_string(), level));
                    }
                }
                None => {
                    if let Ok(level) = d.parse() {
                        f.default = level;
                    }
                }
            }
        }
        f
    }

    fn level(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| target.starts_with(t.as_str()))
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, l)| *l)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, std::cmp::max)
    }
}

struct Stderr(Filter);

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.0.level(metadata.target())
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: std::sync::OnceLock<Stderr> = std::sync::OnceLock::new();

/// Installs the logger once; later calls do nothing.
pub fn init() {
    init_with_default("");
}

/// Installs the logger once, with `default` (same syntax) when `RUST_LOG` is unset: the
/// scheduler's default shows its one line per job.
pub fn init_with_default(default: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    let logger = LOGGER.get_or_init(|| Stderr(Filter::parse(Some(&spec))));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.0.max());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_from_rust_log() {
        let f = Filter::parse(None);
        assert_eq!(f.level("anything"), LevelFilter::Warn);
        let f = Filter::parse(Some("debug"));
        assert_eq!(f.level("sqlparser::parser"), LevelFilter::Debug);
        let f = Filter::parse(Some("lifecycle_udfs=debug, nonsense"));
        assert_eq!(f.level("lifecycle_udfs::models::btyd"), LevelFilter::Debug);
        assert_eq!(f.level("sqlparser::parser"), LevelFilter::Warn);
        assert_eq!(f.max(), LevelFilter::Debug);
    }
}
