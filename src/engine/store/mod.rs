//! The lifecycle store (issue 26): a table's history kept as a Delta Lake table whose rows are
//! bucketed by customer and sorted by (key, time) inside every file, so per-customer questions
//! stream one customer at a time with no hash table and no repartition, and a sync reads only the
//! source files it has not folded yet. The layout ([`Layout`]) is recorded in the table's
//! properties; a bucket's files are its sorted runs, one per sync until `compact` merges them.
//!
//! On disk, for a store at `DIR`:
//! - `DIR/_delta_log/`: the Delta log (any Delta reader reads the store's rows);
//! - `DIR/bNNNNN/RUN.parquet`: bucket `NNNNN`'s runs, each sorted by (key, time), nulls last;
//!   bucket `N` (one past the last hash bucket) holds the rows whose key is NULL;
//! - `DIR/_lifecycle/sources-ID.json`: the source files folded so far, named by the table
//!   property `lifecycle.store.sources` of the version that folded them.
//!
//! Buckets are Iceberg's bucket transform of the key (`store_bucket(key, n)`), so other engines
//! can find a key's bucket from the documented hash.

pub mod guard;
pub mod layout;
pub mod merge;
pub mod provider;
pub mod sources;
pub mod write;

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use object_store::ObjectStore;
use url::Url;

pub use layout::Layout;

/// A store or table location as a directory URL (`file:///abs/dir/` or `s3://bucket/prefix/`).
pub fn table_url(path: &str) -> Result<Url> {
    let mut url = if path.contains("://") {
        Url::parse(path).map_err(|e| {
            DataFusionError::Configuration(format!("'{path}' is not a valid URL: {e}"))
        })?
    } else {
        let p = std::path::absolute(path)?;
        Url::from_directory_path(&p).map_err(|()| {
            DataFusionError::Configuration(format!("'{path}' is not a usable directory path"))
        })?
    };
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// The object store that serves `url` in `ctx` (the session's registry: local files, `s3://`).
pub fn store_for(ctx: &SessionContext, url: &Url) -> Result<Arc<dyn ObjectStore>> {
    ctx.runtime_env()
        .object_store(provider::object_store_url(url)?)
}

/// Whether `url` holds a Delta table (a `_delta_log/` with at least one entry).
pub async fn is_delta_table(ctx: &SessionContext, url: &Url) -> Result<bool> {
    use futures::StreamExt;
    let store = store_for(ctx, url)?;
    let log = object_store::path::Path::from_url_path(url.path())
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .clone()
        .join("_delta_log");
    let mut list = store.list(Some(&log));
    Ok(match list.next().await {
        Some(Ok(_)) => true,
        Some(Err(object_store::Error::NotFound { .. })) | None => false,
        Some(Err(e)) => return Err(e.into()),
    })
}

/// delta-rs knows log stores for `file://` and `memory://` only (S3's comes with deltalake-aws,
/// with DynamoDB locking we do not need): commits to `s3://` use the default log store, whose
/// commit is a conditional put (`If-None-Match`), which S3 and S3-compatible servers honour.
pub(crate) fn register_s3_log_store() {
    use deltalake_core::logstore::{LogStore, ObjectStoreRef, default_logstore};
    use deltalake_core::logstore::{LogStoreFactory, StorageConfig, logstore_factories};
    struct Conditional;
    impl LogStoreFactory for Conditional {
        fn with_options(
            &self,
            prefixed_store: ObjectStoreRef,
            root_store: ObjectStoreRef,
            location: &Url,
            options: &StorageConfig,
        ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(
                prefixed_store,
                root_store,
                location,
                options,
            ))
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let s3 = Url::parse("s3://").expect("a valid URL");
        logstore_factories().insert(s3, Arc::new(Conditional));
    });
}

/// Opens the Delta table at `url` (its newest version), through the session's object store.
pub async fn open_table(ctx: &SessionContext, url: &Url) -> Result<DeltaTable> {
    register_s3_log_store();
    let store = store_for(ctx, url)?;
    DeltaTableBuilder::from_url(url.clone())
        .map_err(delta_error)?
        .with_storage_backend(store, url.clone())
        .load()
        .await
        .map_err(delta_error)
}

/// A delta-rs error as a DataFusion one, with its message.
pub fn delta_error(e: deltalake_core::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Registers the Delta table at `url` as `name`: a store written by `lifecycle store sync` with a
/// provider that declares its layout ([`provider::StoreTable`]), any other Delta table with
/// delta-rs's provider.
pub async fn register(ctx: &SessionContext, name: &str, url: &Url) -> Result<()> {
    let table = open_table(ctx, url).await?;
    let layout = Layout::from_properties(&layout::properties(
        table.snapshot().map_err(delta_error)?.snapshot(),
    )?)?;
    let provider: Arc<dyn datafusion::catalog::TableProvider> = match layout {
        Some(layout) => {
            let view_types = ctx
                .copied_config()
                .options()
                .execution
                .parquet
                .schema_force_view_types;
            Arc::new(provider::StoreTable::try_new(table, layout, view_types)?)
        }
        None => {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(delta_error)?;
            Arc::new(table.table_provider().build().await?)
        }
    };
    ctx.register_table(name, provider)?;
    Ok(())
}
