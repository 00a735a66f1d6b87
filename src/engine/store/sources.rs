//! The source files a store has folded: path, size, modification time and ETag of each, kept in
//! `_lifecycle/sources-ID.json` beside the table and named by the table property
//! `lifecycle.store.sources` of the version that folded them (so the list and the rows change in
//! one Delta commit).

use std::collections::BTreeMap;

use datafusion::error::{DataFusionError, Result};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

/// One source file as it was when folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub size: u64,
    pub modified_ms: i64,
    pub etag: Option<String>,
}

impl SourceFile {
    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            size: meta.size,
            modified_ms: meta.last_modified.timestamp_millis(),
            etag: meta.e_tag.clone(),
        }
    }

    /// How `now` differs from this record, if it does.
    pub fn change(&self, now: &SourceFile) -> Option<String> {
        if self.size != now.size {
            Some(format!(
                "its size changed from {} to {} bytes",
                self.size, now.size
            ))
        } else if self.modified_ms != now.modified_ms {
            Some("its modification time changed".to_string())
        } else if self.etag.is_some() && now.etag.is_some() && self.etag != now.etag {
            Some("its ETag changed".to_string())
        } else {
            None
        }
    }
}

/// Folded source files by URL.
pub type Sources = BTreeMap<String, SourceFile>;

/// Reads the list at `path` (table-relative) under `root`.
pub async fn read(
    store: &dyn ObjectStore,
    root: &object_store::path::Path,
    rel: &str,
) -> Result<Sources> {
    let path = child(root, rel);
    let bytes = store.get(&path).await?.bytes().await?;
    let bad = |why: String| {
        DataFusionError::Execution(format!("store source list '{rel}' is unreadable: {why}"))
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let files = v
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no files".into()))?;
    let mut out = Sources::new();
    for f in files {
        let (Some(url), Some(size), Some(modified_ms)) = (
            f.get("url").and_then(Value::as_str),
            f.get("size").and_then(Value::as_u64),
            f.get("modified_ms").and_then(Value::as_i64),
        ) else {
            return Err(bad(format!("bad entry {f}")));
        };
        let etag = f.get("etag").and_then(Value::as_str).map(str::to_string);
        out.insert(
            url.to_string(),
            SourceFile {
                size,
                modified_ms,
                etag,
            },
        );
    }
    Ok(out)
}

/// Writes `sources` as `rel` under `root`.
pub async fn write(
    store: &dyn ObjectStore,
    root: &object_store::path::Path,
    rel: &str,
    sources: &Sources,
) -> Result<()> {
    let files: Vec<Value> = sources
        .iter()
        .map(|(url, f)| json!({"url": url, "size": f.size, "modified_ms": f.modified_ms, "etag": f.etag}))
        .collect();
    let body = serde_json::to_vec(&json!({"files": files}))
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    store.put(&child(root, rel), PutPayload::from(body)).await?;
    Ok(())
}

/// `root/rel`, `rel` a `/`-separated relative path.
pub fn child(root: &object_store::path::Path, rel: &str) -> object_store::path::Path {
    rel.split('/').fold(root.clone(), |p, part| p.join(part))
}
