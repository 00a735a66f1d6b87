//! What a session is made of, as plain values: the tables to register, the memory limit, the
//! cluster to run on, and the product's defaults on top of DataFusion's. The command line fills
//! these in (`commands`); the session builders read them.

use datafusion::prelude::SessionConfig;

/// A `NAME=PATH` table to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub path: String,
}

impl std::str::FromStr for TableSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PATH, got '{s}'"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "table name '{name}' must be letters, digits and underscores"
            ));
        }
        if path.trim().is_empty() {
            return Err(format!("table '{name}' has an empty path"));
        }
        Ok(TableSpec {
            name: name.to_string(),
            path: path.trim().to_string(),
        })
    }
}

/// Parses a memory size such as `512M`, `2G`, `1.5GiB` or `1000000` (bytes).
pub fn parse_memory_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid memory size '{s}': expected e.g. 512M or 2G"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "invalid memory size '{s}': unknown unit '{other}' (use K, M, G or T)"
            ));
        }
    };
    let bytes = n * mult;
    if bytes.is_nan() || bytes < 1.0 || bytes > usize::MAX as f64 {
        return Err(format!("invalid memory size '{s}'"));
    }
    Ok(bytes as usize)
}

/// What a session is built from.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub tables: Vec<TableSpec>,
    /// Upper bound on query memory in bytes; operators that can spill do so beyond it.
    pub memory_limit: Option<usize>,
    /// Overrides `datafusion.execution.target_partitions` (default: number of cores).
    pub target_partitions: Option<usize>,
    /// A cluster to run queries on.
    pub cluster: Option<ClusterClient>,
}

/// The product's settings on top of a session configuration (a local session's and every
/// cluster process's).
pub fn product_defaults(mut config: SessionConfig) -> SessionConfig {
    // Skip a grouped aggregate's partial phase when its first 100,000 rows hold more than 0.3
    // groups per row (DataFusion's default: 0.8). Customer-level GROUP BYs over real purchase
    // history (mostly one-time buyers) reduce by 2-3x in the partial phase, which then costs
    // more than it saves: `count(*), sum(amount) GROUP BY customer_id` over 20.4M purchases of
    // 7.5M customers went from 0.88-1.11 s to 0.73-0.84 s, lifecycle_stage from 1.31-1.53 s to
    // 1.10-1.20 s; on 21.8M purchases of 1.5M heavy buyers (0.07 groups per row) nothing
    // changes. `SET datafusion.execution.skip_partial_aggregation_probe_ratio_threshold` overrides it.
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 0.3;
    config.with_information_schema(true)
}

/// The scheme of a cluster address (`df://HOST:PORT`, as Ballista's own clients write it).
pub const SCHEME: &str = "df://";

/// The scheme of a cluster served over TLS (`dfs://HOST:PORT`).
pub const TLS_SCHEME: &str = "dfs://";

/// Checks a `--cluster` value: `df://HOST:PORT`, or `dfs://HOST:PORT` for TLS.
pub fn parse_cluster_url(s: &str) -> std::result::Result<String, String> {
    let (scheme, rest) = match (s.strip_prefix(SCHEME), s.strip_prefix(TLS_SCHEME)) {
        (Some(rest), _) => (SCHEME, rest),
        (None, Some(rest)) => (TLS_SCHEME, rest),
        (None, None) => {
            return Err(format!(
                "cluster address '{s}' must look like df://HOST:PORT (a lifecycle scheduler; \
                 dfs:// with TLS)"
            ));
        }
    };
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(|| format!("cluster address '{s}' has no port (df://HOST:PORT)"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "cluster address '{s}' must look like df://HOST:PORT (a lifecycle scheduler)"
        ));
    }
    Ok(format!("{scheme}{host}:{port}"))
}

/// `HOST:PORT` of a checked cluster address.
pub fn host_port(url: &str) -> &str {
    url.trim_start_matches(TLS_SCHEME)
        .trim_start_matches(SCHEME)
}

/// How a client reaches the cluster: its address (checked with [`parse_cluster_url`]), the
/// token file and, for `dfs://`, the certificate authority to trust.
#[derive(Debug, Clone, Default)]
pub struct ClusterClient {
    pub url: String,
    pub token_file: Option<std::path::PathBuf>,
    pub ca: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_memory_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_memory_size("1000").unwrap(), 1000);
        assert!(parse_memory_size("lots").is_err());
        assert!(parse_memory_size("5X").is_err());
        assert!(parse_memory_size("0").is_err());
    }

    #[test]
    fn table_specs() {
        let t: TableSpec = "p=/data/x.parquet".parse().unwrap();
        assert_eq!(t.name, "p");
        assert_eq!(t.path, "/data/x.parquet");
        assert!("nopath".parse::<TableSpec>().is_err());
        assert!("bad name=x".parse::<TableSpec>().is_err());
    }

    #[test]
    fn cluster_urls() {
        assert_eq!(parse_cluster_url("df://h:1").unwrap(), "df://h:1");
        assert_eq!(
            parse_cluster_url("df://10.0.0.1:50050/").unwrap(),
            "df://10.0.0.1:50050"
        );
        assert!(parse_cluster_url("http://h:1").is_err());
        assert!(parse_cluster_url("df://h").is_err());
        assert!(parse_cluster_url("df://:1").is_err());
        assert!(parse_cluster_url("df://h:x").is_err());
    }
}
