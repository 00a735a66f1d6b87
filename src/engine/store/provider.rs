//! Reading a store: one partition per bucket, declared to DataFusion as hash-partitioned on the
//! key and ordered by (key, time) (a bucket of several runs is their in-order merge), so per-customer
//! aggregates plan with no repartition (single-phase, in order) and windows over
//! `PARTITION BY key ORDER BY time` need no sort.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, Partitioning, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use deltalake_core::DeltaTable;
use url::Url;

use super::merge::BucketMergeExec;
use super::{Layout, delta_error};

/// A store's files at one version, by bucket.
#[derive(Debug, Clone)]
pub struct StoreFiles {
    /// Bucket `b`'s runs: (object store path, size, rows if known).
    pub buckets: Vec<Vec<(String, u64, Option<usize>)>>,
}

impl StoreFiles {
    /// The files of `table`'s loaded version, grouped by bucket; an error names a data file
    /// that is not in a bucket directory (a store only ever writes there).
    pub fn of(table: &DeltaTable, layout: &Layout) -> Result<Self> {
        let snapshot = table.snapshot().map_err(delta_error)?;
        let root = object_store::path::Path::from_url_path(table.table_url().path())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut buckets = vec![vec![]; layout.partitions()];
        for f in snapshot.log_data().iter() {
            let rel = f.path().to_string();
            let b = Layout::bucket_of_path(&rel)
                .filter(|b| *b < buckets.len())
                .ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "store {}: data file '{rel}' is not in a bucket directory b00000..b{:05}: \
                         the table was changed by another writer",
                        table.table_url(),
                        layout.buckets
                    ))
                })?;
            let path = format!("{}/{rel}", root.as_ref())
                .trim_start_matches('/')
                .to_string();
            buckets[b].push((path, f.size().max(0) as u64, f.num_records()));
        }
        for runs in &mut buckets {
            runs.sort();
        }
        Ok(Self { buckets })
    }

    /// Number of rows, when every file's count is recorded.
    pub fn rows(&self) -> Option<usize> {
        self.buckets.iter().flatten().map(|f| f.2).sum()
    }
}

/// The table provider of a store.
#[derive(Debug)]
pub struct StoreTable {
    schema: SchemaRef,
    layout: Layout,
    store_url: ObjectStoreUrl,
    files: StoreFiles,
}

impl StoreTable {
    pub fn try_new(table: &DeltaTable, layout: Layout) -> Result<Self> {
        let snapshot = table.snapshot().map_err(delta_error)?;
        let schema = snapshot.snapshot().arrow_schema();
        for c in [&layout.key, &layout.order] {
            if schema.index_of(c).is_err() {
                return Err(DataFusionError::Plan(format!(
                    "store {}: its layout names column '{c}', which its schema lacks",
                    table.table_url()
                )));
            }
        }
        Ok(Self {
            files: StoreFiles::of(table, &layout)?,
            store_url: object_store_url(table.table_url())?,
            schema,
            layout,
        })
    }
}

/// The ordering every bucket file has: (key, time), ascending, nulls last.
fn ordering(schema: &SchemaRef, layout: &Layout) -> Result<LexOrdering> {
    let opts = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let sort = |name: &str| -> Result<PhysicalSortExpr> {
        Ok(PhysicalSortExpr::new(
            Arc::new(Column::new(name, schema.index_of(name)?)),
            opts,
        ))
    };
    LexOrdering::new([sort(&layout.key)?, sort(&layout.order)?])
        .ok_or_else(|| DataFusionError::Internal("empty store ordering".into()))
}

/// A scan of a store's files with one file group per bucket (`groups`), declared
/// hash-partitioned on the key (so neither DataFusion nor a cluster's task builder splits or
/// regroups its files) and each file ordered by (key, time).
pub fn bucket_scan_config(
    store_url: &ObjectStoreUrl,
    schema: &SchemaRef,
    layout: &Layout,
    groups: Vec<FileGroup>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<FileScanConfig> {
    let key = Arc::new(Column::new(&layout.key, schema.index_of(&layout.key)?));
    let partitions = groups.len();
    let source = ParquetSource::new(TableSchema::from(Arc::clone(schema)));
    Ok(
        FileScanConfigBuilder::new(store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_output_partitioning(Some(Partitioning::Hash(vec![key], partitions)))
            .with_output_ordering(vec![ordering(schema, layout)?])
            .with_limit(limit)
            .with_projection_indices(projection.cloned())?
            .build(),
    )
}

impl StoreTable {
    /// The provider as bytes, for a cluster's scheduler (which reads no Delta log: the files of
    /// the version the client opened travel with the plan).
    pub fn encode(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        use prost::Message;
        let schema = datafusion_proto::protobuf::Schema::try_from(self.schema.as_ref())?;
        let files: Vec<serde_json::Value> = self
            .files
            .buckets
            .iter()
            .enumerate()
            .flat_map(|(b, runs)| {
                runs.iter()
                    .map(move |(p, size, rows)| serde_json::json!([b, p, size, rows]))
            })
            .collect();
        let doc = serde_json::json!({
            "store_url": self.store_url.as_str(),
            "key": self.layout.key,
            "order": self.layout.order,
            "buckets": self.layout.buckets,
            "schema": base64::engine::general_purpose::STANDARD.encode(schema.encode_to_vec()),
            "files": files,
        });
        serde_json::to_vec(&doc).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// The provider [`Self::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        use base64::Engine;
        use prost::Message;
        let bad = |why: &str| DataFusionError::Internal(format!("bad store table encoding: {why}"));
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| doc.get(k).and_then(|v| v.as_str()).ok_or_else(|| bad(k));
        let schema_bytes = base64::engine::general_purpose::STANDARD
            .decode(s("schema")?)
            .map_err(|e| bad(&e.to_string()))?;
        let schema = datafusion_proto::protobuf::Schema::decode(schema_bytes.as_slice())
            .map_err(|e| bad(&e.to_string()))?;
        let schema: datafusion::arrow::datatypes::Schema = (&schema).try_into()?;
        let layout = Layout {
            key: s("key")?.to_string(),
            order: s("order")?.to_string(),
            buckets: doc
                .get("buckets")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad("buckets"))? as u32,
        };
        let mut buckets = vec![vec![]; layout.partitions()];
        for f in doc
            .get("files")
            .and_then(|v| v.as_array())
            .ok_or_else(|| bad("files"))?
        {
            let (Some(b), Some(p), Some(size)) = (
                f.get(0).and_then(|v| v.as_u64()),
                f.get(1).and_then(|v| v.as_str()),
                f.get(2).and_then(|v| v.as_u64()),
            ) else {
                return Err(bad("file"));
            };
            let rows = f.get(3).and_then(|v| v.as_u64()).map(|r| r as usize);
            buckets
                .get_mut(b as usize)
                .ok_or_else(|| bad("bucket"))?
                .push((p.to_string(), size, rows));
        }
        Ok(Self {
            schema: Arc::new(schema),
            store_url: ObjectStoreUrl::parse(s("store_url")?)?,
            layout,
            files: StoreFiles { buckets },
        })
    }
}

/// The object store URL (scheme and authority) of a table URL.
pub fn object_store_url(url: &Url) -> Result<ObjectStoreUrl> {
    ObjectStoreUrl::parse(format!("{}://{}", url.scheme(), url.authority()))
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // One scan partition per bucket, declared hash-partitioned on the key (so neither
        // DataFusion nor a cluster's task builder splits or regroups its files).
        let groups = self
            .files
            .buckets
            .iter()
            .map(|runs| {
                FileGroup::new(
                    runs.iter()
                        .map(|(path, size, _)| PartitionedFile::new(path.clone(), *size))
                        .collect(),
                )
            })
            .collect();
        let config = bucket_scan_config(
            &self.store_url,
            &self.schema,
            &self.layout,
            groups,
            projection,
            limit,
        )?;
        let scan = DataSourceExec::from_data_source(config);
        if self.files.buckets.iter().all(|runs| runs.len() <= 1) {
            // One sorted file per bucket (a first sync, or after `compact`): the scan is ordered.
            return Ok(scan);
        }
        // A bucket of several runs would read them one after the other: each bucket is the
        // in-order merge of its runs instead.
        Ok(Arc::new(BucketMergeExec::try_new(
            scan,
            self.layout.key.clone(),
            self.layout.order.clone(),
        )?))
    }
}
