//! Reading a store: one partition per bucket, declared to DataFusion as hash-partitioned on the
//! key and ordered by (key, time) (a bucket of several runs is their in-order merge), so per-customer
//! aggregates plan with no repartition (single-phase, in order) and windows over
//! `PARTITION BY key ORDER BY time` need no sort.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
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
use super::{Layout, delta_error, layout};

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
///
/// A store registered from its Delta log ([`StoreTable::try_new`]) follows it: every query
/// reads the newest committed version, loaded once per query (all scans of one query see the
/// same version, never a mix), so a long-running server answers on what the last `store sync`
/// committed. One decoded from a plan ([`StoreTable::decode`]) is the version its client read.
#[derive(Debug)]
pub struct StoreTable {
    schema: SchemaRef,
    layout: Layout,
    store_url: ObjectStoreUrl,
    files: std::sync::RwLock<Arc<StoreFiles>>,
    live: Option<Live>,
}

/// The Delta table a registered store follows, and the query whose version is loaded.
#[derive(Debug)]
struct Live {
    table: tokio::sync::Mutex<DeltaTable>,
    loaded_for: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl StoreTable {
    /// `view_types`: read strings and binaries as Arrow's view types, as DataFusion reads
    /// Parquet files (`datafusion.execution.parquet.schema_force_view_types`), so a store answers
    /// with the types the source files would, and its strings are not copied into another layout.
    pub fn try_new(table: DeltaTable, layout: Layout, view_types: bool) -> Result<Self> {
        let snapshot = table.snapshot().map_err(delta_error)?;
        let schema = table_schema(snapshot.snapshot().arrow_schema(), view_types);
        for c in [&layout.key, &layout.order] {
            if schema.index_of(c).is_err() {
                return Err(DataFusionError::Plan(format!(
                    "store {}: its layout names column '{c}', which its schema lacks",
                    table.table_url()
                )));
            }
        }
        Ok(Self {
            files: std::sync::RwLock::new(Arc::new(StoreFiles::of(&table, &layout)?)),
            store_url: object_store_url(table.table_url())?,
            schema,
            layout,
            live: Some(Live {
                table: tokio::sync::Mutex::new(table),
                loaded_for: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The files of the version the query started at `query` reads: the store's newest version,
    /// loaded when this is the first scan of that query; the files already loaded otherwise (or
    /// when `query` is unknown and some version was loaded).
    pub async fn files_for(
        &self,
        query: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Arc<StoreFiles>> {
        let current = || Arc::clone(&self.files.read().expect("store files lock"));
        let Some(live) = &self.live else {
            return Ok(current());
        };
        let loaded = |live: &Live| {
            let l = live.loaded_for.lock().expect("store version lock");
            l.is_some() && (query.is_none() || *l == query)
        };
        if loaded(live) {
            return Ok(current());
        }
        let mut table = live.table.lock().await;
        if loaded(live) {
            return Ok(current());
        }
        table.update_incremental(None).await.map_err(delta_error)?;
        let snapshot = table.snapshot().map_err(delta_error)?;
        let layout = Layout::from_properties(&layout::properties(snapshot.snapshot())?)?;
        let view_types = self
            .schema
            .fields()
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView));
        let schema = table_schema(snapshot.snapshot().arrow_schema(), view_types);
        if layout.as_ref() != Some(&self.layout) || schema != self.schema {
            return Err(DataFusionError::Plan(format!(
                "store {} was rebuilt with another layout or schema (version {}) since it was \
                 registered: register it again (restart the server)",
                table.table_url(),
                table.version().unwrap_or_default()
            )));
        }
        let files = Arc::new(StoreFiles::of(&table, &self.layout)?);
        *self.files.write().expect("store files lock") = Arc::clone(&files);
        *live.loaded_for.lock().expect("store version lock") = query.or(Some(chrono::Utc::now()));
        Ok(files)
    }

    /// Loads the store's newest version for the query started at `query` (see
    /// [`Self::files_for`]), for a client that sends the plan elsewhere to be scanned.
    pub async fn refresh(&self, query: Option<chrono::DateTime<chrono::Utc>>) -> Result<()> {
        self.files_for(query).await.map(|_| ())
    }

    fn files(&self) -> Arc<StoreFiles> {
        Arc::clone(&self.files.read().expect("store files lock"))
    }
}

/// A store's schema as its provider declares it: with view types for strings and binaries
/// when `view_types` (see [`StoreTable::try_new`]).
fn table_schema(schema: SchemaRef, view_types: bool) -> SchemaRef {
    if !view_types {
        return schema;
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                t => t.clone(),
            };
            f.as_ref().clone().with_data_type(t)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
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
    ordered: bool,
) -> Result<FileScanConfig> {
    let key = Arc::new(Column::new(&layout.key, schema.index_of(&layout.key)?));
    let partitions = groups.len();
    let source = ParquetSource::new(TableSchema::from(Arc::clone(schema)));
    let mut config = FileScanConfigBuilder::new(store_url.clone(), Arc::new(source))
        .with_file_groups(groups)
        .with_output_partitioning(Some(Partitioning::Hash(vec![key], partitions)));
    if ordered {
        config = config.with_output_ordering(vec![ordering(schema, layout)?]);
    }
    Ok(config
        .with_limit(limit)
        .with_projection_indices(projection.cloned())?
        .build())
}

/// The most runs a bucket may have for the store to be read in order (each bucket the merge of
/// its runs, one reader per run open at once, in every bucket). Beyond it the runs are read one
/// after the other, the store declares its partitioning but not its order (per-customer
/// aggregates hash), until `store compact`.
pub const MAX_MERGED_RUNS: usize = 16;

impl StoreTable {
    /// The provider as bytes, for a cluster's scheduler (which reads no Delta log: the files of
    /// the version the client opened travel with the plan).
    pub fn encode(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        use prost::Message;
        let schema = datafusion_proto::protobuf::Schema::try_from(self.schema.as_ref())?;
        let files: Vec<serde_json::Value> = self
            .files()
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
            files: std::sync::RwLock::new(Arc::new(StoreFiles { buckets })),
            live: None,
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // One scan partition per bucket, declared hash-partitioned on the key (so neither
        // DataFusion nor a cluster's task builder splits or regroups its files).
        let files = self
            .files_for(state.execution_props().query_execution_start_time)
            .await?;
        let groups = files
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
        let runs = files.buckets.iter().map(Vec::len).max().unwrap_or(0);
        let config = bucket_scan_config(
            &self.store_url,
            &self.schema,
            &self.layout,
            groups,
            projection,
            limit,
            runs <= MAX_MERGED_RUNS,
        )?;
        let scan = DataSourceExec::from_data_source(config);
        if runs <= 1 || runs > MAX_MERGED_RUNS {
            // One sorted file per bucket (a first sync, or after `compact`): the scan is ordered.
            // Too many runs to merge: partitioned, not ordered.
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

/// Loads the newest version of every store `plan` scans (also inside table functions' plans),
/// for the query started at `query`: what a cluster client does before it sends the plan, whose
/// scans are then made elsewhere from the files it names.
pub async fn refresh_stores(
    plan: &datafusion::logical_expr::LogicalPlan,
    query: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::source_as_provider;
    use datafusion::logical_expr::LogicalPlan;
    fn collect(plan: &LogicalPlan, out: &mut Vec<Arc<dyn TableProvider>>) -> Result<()> {
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(p) = source_as_provider(&scan.source)
            {
                if let Some(planned) = (p.as_ref() as &dyn std::any::Any)
                    .downcast_ref::<lifecycle_udfs::table::PlannedTable>()
                {
                    collect(planned.plan(), out)?;
                }
                out.push(p);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(())
    }
    let mut providers = vec![];
    collect(plan, &mut providers)?;
    for p in providers {
        if let Some(store) = (p.as_ref() as &dyn std::any::Any).downcast_ref::<StoreTable>() {
            store.refresh(query).await?;
        }
    }
    Ok(())
}
