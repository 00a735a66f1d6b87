//! The store's layout and where it is recorded: the Delta table's properties.

use std::collections::HashMap;

use datafusion::error::{DataFusionError, Result};
use deltalake_core::kernel::EagerSnapshot;

/// `lifecycle.store.format`: the version of this layout (files, names, properties).
pub const FORMAT: &str = "lifecycle.store.format";
/// `lifecycle.store.key`: the column rows are bucketed and sorted by first.
pub const KEY: &str = "lifecycle.store.key";
/// `lifecycle.store.order`: the column rows are sorted by within a key.
pub const ORDER: &str = "lifecycle.store.order";
/// `lifecycle.store.buckets`: the number of hash buckets (the NULL-key bucket comes after them).
pub const BUCKETS: &str = "lifecycle.store.buckets";
/// `lifecycle.store.hash`: the bucket function.
pub const HASH: &str = "lifecycle.store.hash";
/// `lifecycle.store.sources`: the file listing the source files folded so far.
pub const SOURCES: &str = "lifecycle.store.sources";

/// The one format this build writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// The bucket function: Iceberg's bucket transform (`store_bucket`).
pub const HASH_NAME: &str = "iceberg-bucket-murmur3_x86_32";
/// The default number of buckets.
pub const DEFAULT_BUCKETS: u32 = 32;

/// How a store lays its rows out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub key: String,
    pub order: String,
    pub buckets: u32,
}

impl Layout {
    /// Number of bucket directories: the hash buckets and the NULL-key bucket.
    pub fn partitions(&self) -> usize {
        self.buckets as usize + 1
    }

    /// The table properties that record this layout.
    pub fn properties(&self) -> HashMap<String, String> {
        HashMap::from([
            (FORMAT.to_string(), FORMAT_VERSION.to_string()),
            (KEY.to_string(), self.key.clone()),
            (ORDER.to_string(), self.order.clone()),
            (BUCKETS.to_string(), self.buckets.to_string()),
            (HASH.to_string(), HASH_NAME.to_string()),
        ])
    }

    /// The layout recorded in a table's properties: `None` for a Delta table that is not a
    /// store, an error for a store this build cannot read.
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Option<Self>> {
        let Some(format) = props.get(FORMAT) else {
            return Ok(None);
        };
        let bad = |what: &str| {
            DataFusionError::Plan(format!(
                "this lifecycle store's {what} is not one this build reads ({})",
                props
                    .iter()
                    .filter(|(k, _)| k.starts_with("lifecycle.store."))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        if format != FORMAT_VERSION {
            return Err(bad("format"));
        }
        if props.get(HASH).map(String::as_str) != Some(HASH_NAME) {
            return Err(bad("bucket function"));
        }
        let buckets = props
            .get(BUCKETS)
            .and_then(|b| b.parse::<u32>().ok())
            .filter(|b| (1..=MAX_BUCKETS).contains(b))
            .ok_or_else(|| bad("bucket count"))?;
        let (Some(key), Some(order)) = (props.get(KEY), props.get(ORDER)) else {
            return Err(bad("key or order"));
        };
        Ok(Some(Self {
            key: key.clone(),
            order: order.clone(),
            buckets,
        }))
    }

    /// The directory (relative to the table) of bucket `b`'s files.
    pub fn bucket_dir(b: usize) -> String {
        format!("b{b:05}")
    }

    /// The bucket of a data file's table-relative path, if it is a store file.
    pub fn bucket_of_path(path: &str) -> Option<usize> {
        let dir = path.split('/').next()?;
        dir.strip_prefix('b')?.parse().ok()
    }
}

/// The most buckets a store may have (a file per bucket per sync: keep it sane).
pub const MAX_BUCKETS: u32 = 4096;

/// A snapshot's table properties (Delta metadata `configuration`).
pub fn properties(snapshot: &EagerSnapshot) -> Result<HashMap<String, String>> {
    let meta = serde_json::to_value(snapshot.metadata())
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(meta
        .get("configuration")
        .and_then(|c| c.as_object())
        .map(|c| {
            c.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_refuse_what_they_do_not_know() {
        let l = Layout {
            key: "customer_id".into(),
            order: "order_ts".into(),
            buckets: 16,
        };
        let p = l.properties();
        assert_eq!(Layout::from_properties(&p).unwrap(), Some(l.clone()));
        assert_eq!(Layout::from_properties(&HashMap::new()).unwrap(), None);
        for (k, v) in [
            (FORMAT, "2"),
            (HASH, "xxhash"),
            (BUCKETS, "0"),
            (BUCKETS, "x"),
        ] {
            let mut q = p.clone();
            q.insert(k.to_string(), v.to_string());
            assert!(Layout::from_properties(&q).is_err(), "{k}={v}");
        }
        assert_eq!(Layout::bucket_of_path("b00007/r-1.parquet"), Some(7));
        assert_eq!(Layout::bucket_of_path("part-0.parquet"), None);
    }
}
