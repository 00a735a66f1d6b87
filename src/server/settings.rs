//! The settings a client may change for itself, on either protocol (Postgres `SET`, Flight SQL's
//! session options), and the range each may take.
//!
//! One table, applied after the name is normalised (identifier parts joined by `.`, any case,
//! quoted or not: `"datafusion.execution.batch_size"`, `"datafusion".execution.BATCH_SIZE` and
//! `datafusion.execution.batch_size` are one name), and applied here, to the connection's own
//! configuration, with the value that was checked: a setting never reaches DataFusion's own `SET`
//! (which would take any key, quoted or not, and which datafusion-postgres falls back to).
//!
//! - `lifecycle.*`: every lifecycle option; the options validate themselves (whole numbers >= 1,
//!   `at_risk_days < churn_days`).
//! - the `datafusion.*` settings below, each within its range. `target_partitions` is at most the
//!   server's own: the work a query does per partition (repartition channels, one hash table per
//!   partition) grows with it, and 100,000 partitions took a server past 16 GB.
//! - everything else under `datafusion.` (the runtime's memory and spill settings, the catalog,
//!   the parser) is the server's: refused (SQLSTATE 42501).
//!
//! An invalid value is an error (SQLSTATE 22023) and leaves the setting as it was.

use datafusion::arrow::array::timezone::Tz;
use datafusion::common::config::ConfigOptions;

/// How a setting's value is checked.
#[derive(Debug, Clone, Copy)]
enum Check {
    Bool,
    /// A whole number in `[min, max]`.
    Count {
        min: u64,
        max: Max,
    },
    /// A number in `[0, 1]`.
    Ratio,
    /// An IANA time zone name or an offset such as `+02:00`.
    TimeZone,
}

/// The upper bound of a [`Check::Count`].
#[derive(Debug, Clone, Copy)]
enum Max {
    Fixed(u64),
    /// The server's own value of the setting.
    Server,
}

/// `datafusion.*` settings a connection may change, with their ranges.
const DATAFUSION: &[(&str, Check)] = &[
    (
        "datafusion.execution.batch_size",
        Check::Count {
            min: MIN_BATCH_SIZE,
            max: Max::Fixed(MAX_BATCH_SIZE),
        },
    ),
    (
        "datafusion.execution.target_partitions",
        Check::Count {
            min: 1,
            max: Max::Server,
        },
    ),
    ("datafusion.execution.time_zone", Check::TimeZone),
    ("datafusion.execution.coalesce_batches", Check::Bool),
    ("datafusion.execution.collect_statistics", Check::Bool),
    (
        "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
        Check::Ratio,
    ),
    (
        "datafusion.execution.skip_partial_aggregation_probe_rows_threshold",
        Check::Count {
            min: 0,
            max: Max::Fixed(1 << 40),
        },
    ),
    ("datafusion.execution.parquet.pushdown_filters", Check::Bool),
    ("datafusion.execution.parquet.reorder_filters", Check::Bool),
];

/// The smallest `batch_size` a connection may set: below it, per-batch overheads dominate and a
/// query costs many times its CPU (DataFusion's default is 8192).
pub const MIN_BATCH_SIZE: u64 = 128;
/// The largest `batch_size` a connection may set: operators size buffers by it.
pub const MAX_BATCH_SIZE: u64 = 65_536;

/// The names of the `datafusion.*` settings a connection may change (for messages and docs).
pub fn settable_datafusion() -> impl Iterator<Item = &'static str> {
    DATAFUSION.iter().map(|(n, _)| *n)
}

/// Why a setting was not applied, with the SQLSTATE Postgres clients get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingError {
    /// Not the connection's to change (42501).
    Refused(String),
    /// A value out of range or of the wrong kind (22023).
    Invalid(String),
    /// No such setting (42704).
    Unknown(String),
}

impl SettingError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SettingError::Refused(_) => "42501",
            SettingError::Invalid(_) => "22023",
            SettingError::Unknown(_) => "42704",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SettingError::Refused(m) | SettingError::Invalid(m) | SettingError::Unknown(m) => m,
        }
    }
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// A setting's name from its identifier parts as the client wrote them (quoted or not): the
/// parts joined by `.`, lower case.
pub fn normalize_name<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts
        .into_iter()
        .map(|p| p.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether a (normalised) name is one of the product's namespaces, which only this module sets.
pub fn is_ours(name: &str) -> bool {
    name.starts_with("lifecycle.")
        || name.starts_with("datafusion.")
        || name == "lifecycle"
        || name == "datafusion"
}

/// Sets `name` (normalised) to `value` in a connection's configuration, after checking it against
/// the table; `server` is the server's configuration (the bound of some ranges, and the value of
/// `DEFAULT`). `value` `None` means `DEFAULT`: the server's value. On error nothing changes.
pub fn apply(
    conn: &mut ConfigOptions,
    server: &ConfigOptions,
    name: &str,
    value: Option<&str>,
) -> Result<(), SettingError> {
    if let Some(option) = name.strip_prefix("lifecycle.") {
        let value = match value {
            Some(v) => v.to_string(),
            None => server_value(server, name).ok_or_else(|| unknown_lifecycle(option))?,
        };
        let mut next = conn.clone();
        return match next.set(name, &value) {
            Ok(()) => {
                *conn = next;
                Ok(())
            }
            Err(e) => {
                let message = e.strip_backtrace();
                let message = message
                    .trim_start_matches("Error during planning: ")
                    .to_string();
                if message.contains("unknown option") {
                    Err(SettingError::Unknown(message))
                } else {
                    Err(SettingError::Invalid(message))
                }
            }
        };
    }
    let Some((_, check)) = DATAFUSION.iter().find(|(n, _)| *n == name) else {
        if name.starts_with("datafusion.") || name == "datafusion" {
            return Err(SettingError::Refused(format!(
                "{name} cannot be changed by a client of this server (it is the server's); a \
                 connection may set lifecycle.* and {}",
                settable_datafusion().collect::<Vec<_>>().join(", ")
            )));
        }
        return Err(SettingError::Unknown(format!(
            "unrecognized configuration parameter \"{name}\""
        )));
    };
    let value = match value {
        Some(v) => checked(*check, name, v.trim(), server)?,
        None => server_value(server, name).unwrap_or_default(),
    };
    let mut next = conn.clone();
    if name == "datafusion.execution.time_zone" {
        // An empty value is no zone (UTC), as DataFusion's own default.
        next.execution.time_zone = (!value.is_empty()).then_some(value);
    } else {
        next.set(name, &value)
            .map_err(|e| SettingError::Invalid(format!("{name}: {}", e.strip_backtrace())))?;
    }
    *conn = next;
    Ok(())
}

fn unknown_lifecycle(option: &str) -> SettingError {
    SettingError::Unknown(format!(
        "unrecognized configuration parameter \"lifecycle.{option}\""
    ))
}

/// The server's value of a setting, as text.
fn server_value(server: &ConfigOptions, name: &str) -> Option<String> {
    server
        .entries()
        .into_iter()
        .find(|e| e.key == name)
        .map(|e| e.value.unwrap_or_default())
}

/// The value to set, checked against its range (in the form DataFusion parses).
fn checked(
    check: Check,
    name: &str,
    value: &str,
    server: &ConfigOptions,
) -> Result<String, SettingError> {
    let invalid = |why: String| SettingError::Invalid(format!("invalid value for {name}: {why}"));
    match check {
        Check::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok("true".into()),
            "false" | "off" | "no" | "0" => Ok("false".into()),
            _ => Err(invalid(format!(
                "'{value}' is not a boolean (true or false)"
            ))),
        },
        Check::Count { min, max } => {
            let max = match max {
                Max::Fixed(m) => m,
                Max::Server => server_value(server, name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .max(1),
            };
            let n: i128 = value
                .parse()
                .map_err(|_| invalid(format!("'{value}' is not a whole number")))?;
            if n < min as i128 || n > max as i128 {
                return Err(invalid(format!(
                    "{n} is outside the range this server allows ({min} to {max})"
                )));
            }
            Ok(n.to_string())
        }
        Check::Ratio => {
            let x: f64 = value
                .parse()
                .map_err(|_| invalid(format!("'{value}' is not a number")))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(invalid(format!("{value} is outside the range 0 to 1")));
            }
            Ok(x.to_string())
        }
        Check::TimeZone => {
            if value.is_empty() {
                return Ok(String::new());
            }
            value
                .parse::<Tz>()
                .map_err(|e| invalid(format!("'{value}' is not a time zone ({e})")))?;
            Ok(value.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ConfigOptions {
        let mut c = lifecycle_udfs::with_options(
            datafusion::prelude::SessionConfig::new().with_target_partitions(4),
        )
        .options()
        .as_ref()
        .clone();
        c.set("datafusion.execution.batch_size", "8192").unwrap();
        c
    }

    #[test]
    fn names_normalise_whatever_the_quoting_and_case() {
        assert_eq!(
            normalize_name(["datafusion.runtime.memory_limit"]),
            "datafusion.runtime.memory_limit"
        );
        assert_eq!(
            normalize_name(["Datafusion", "RUNTIME", "temp_directory"]),
            "datafusion.runtime.temp_directory"
        );
        assert!(is_ours("lifecycle.churn_days"));
        assert!(!is_ours("extra_float_digits"));
    }

    #[test]
    fn server_settings_are_refused_and_values_stay() {
        let s = server();
        let mut c = s.clone();
        for name in [
            "datafusion.runtime.memory_limit",
            "datafusion.runtime.temp_directory",
            "datafusion.sql_parser.recursion_limit",
            "datafusion.catalog.default_catalog",
            "datafusion",
        ] {
            let e = apply(&mut c, &s, name, Some("1")).unwrap_err();
            assert_eq!(e.sqlstate(), "42501", "{name}: {e}");
        }
        assert_eq!(
            c.sql_parser.recursion_limit, s.sql_parser.recursion_limit,
            "nothing changed"
        );
    }

    #[test]
    fn ranges() {
        let s = server();
        let mut c = s.clone();
        apply(
            &mut c,
            &s,
            "datafusion.execution.target_partitions",
            Some("2"),
        )
        .unwrap();
        assert_eq!(c.execution.target_partitions, 2);
        for bad in ["5", "100000", "0", "-1", "two"] {
            let e = apply(
                &mut c,
                &s,
                "datafusion.execution.target_partitions",
                Some(bad),
            )
            .unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad}: {e}");
        }
        assert_eq!(
            c.execution.target_partitions, 2,
            "a refused value changes nothing"
        );
        apply(&mut c, &s, "datafusion.execution.target_partitions", None).unwrap();
        assert_eq!(
            c.execution.target_partitions, 4,
            "DEFAULT is the server's value"
        );

        apply(&mut c, &s, "datafusion.execution.batch_size", Some("1024")).unwrap();
        assert_eq!(c.execution.batch_size.get(), 1024);
        for bad in ["1", "127", "65537", "1000000000000", "1e9"] {
            assert!(apply(&mut c, &s, "datafusion.execution.batch_size", Some(bad)).is_err());
        }
        apply(
            &mut c,
            &s,
            "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
            Some("0.5"),
        )
        .unwrap();
        for bad in ["1.5", "-0.1", "NaN", "inf"] {
            assert!(
                apply(
                    &mut c,
                    &s,
                    "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
                    Some(bad)
                )
                .is_err(),
                "{bad}"
            );
        }
        apply(
            &mut c,
            &s,
            "datafusion.execution.coalesce_batches",
            Some("off"),
        )
        .unwrap();
        assert!(!c.execution.coalesce_batches);
        assert!(
            apply(
                &mut c,
                &s,
                "datafusion.execution.coalesce_batches",
                Some("maybe")
            )
            .is_err()
        );
        apply(
            &mut c,
            &s,
            "datafusion.execution.time_zone",
            Some("Europe/Paris"),
        )
        .unwrap();
        assert_eq!(c.execution.time_zone.as_deref(), Some("Europe/Paris"));
        assert!(
            apply(
                &mut c,
                &s,
                "datafusion.execution.time_zone",
                Some("Mars/Olympus")
            )
            .is_err()
        );
    }

    #[test]
    fn lifecycle_options_validate_and_unknown_names_are_errors() {
        let s = server();
        let mut c = s.clone();
        apply(&mut c, &s, "lifecycle.churn_days", Some("120")).unwrap();
        let e = apply(&mut c, &s, "lifecycle.churn_days", Some("-5")).unwrap_err();
        assert_eq!(e.sqlstate(), "22023", "{e}");
        assert!(e.message().contains("lifecycle.churn_days"), "{e}");
        let e = apply(&mut c, &s, "lifecycle.nope", Some("1")).unwrap_err();
        assert_eq!(e.sqlstate(), "42704", "{e}");
        let o = lifecycle_udfs::LifecycleOptions::from_config(&c);
        assert_eq!(o.churn_days, 120);
        apply(&mut c, &s, "lifecycle.churn_days", None).unwrap();
        assert_eq!(
            lifecycle_udfs::LifecycleOptions::from_config(&c).churn_days,
            180
        );
    }
}
