//! A store's buckets when a bucket holds several sorted runs (one per sync until `compact`):
//! partition `b` is the in-order merge of bucket `b`'s runs, so the store still declares its
//! ordering — (key, time) within each bucket — and nothing above it sorts.
//!
//! Its input is the store's scan, one partition (file group) per bucket, declared
//! hash-partitioned on the key: so DataFusion never regroups its files, and a cluster's task
//! builder restricts it to a task's buckets as it does any scan. For each bucket this node opens
//! one scan per run (the input's configuration with that one file) and merges them with
//! DataFusion's streaming merge (the one `SortPreservingMergeExec` uses), under the task's
//! memory pool.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, Partitioning, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use url::Url;

use super::Layout;
use super::provider::{bucket_scan_config, object_store_url};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};

/// Bucket `b` = the in-order merge of the files of the input scan's file group `b`.
#[derive(Debug)]
pub struct BucketMergeExec {
    input: Arc<dyn ExecutionPlan>,
    key: String,
    order: String,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl BucketMergeExec {
    /// `input`: a store's scan (a `DataSourceExec` over Parquet files, one file group per
    /// bucket, each file sorted by (`key`, `order`) ascending, nulls last).
    /// (The optimizer may probe it with another input; only `execute` needs the scan.)
    pub fn try_new(input: Arc<dyn ExecutionPlan>, key: String, order: String) -> Result<Self> {
        let schema = input.schema();
        let n = input.output_partitioning().partition_count();
        // Only a store's scan as the provider built it (file groups declared as the buckets, so
        // no rule regrouped them) is merged into buckets; anything else claims nothing.
        let buckets = scan_config(&input).is_ok_and(|c| c.output_partitioning.is_some());
        let column = |name: &str| {
            schema
                .index_of(name)
                .ok()
                .map(|i| Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>)
        };
        let partitioning = match column(&key) {
            Some(k) if buckets => Partitioning::Hash(vec![k], n),
            _ => Partitioning::UnknownPartitioning(n),
        };
        // The merge's ordering: the key, then the time, as far as the projection keeps them.
        let opts = SortOptions {
            descending: false,
            nulls_first: false,
        };
        let sort: Vec<PhysicalSortExpr> = [&key, &order]
            .into_iter()
            .map_while(|c| column(c).filter(|_| buckets))
            .map(|e| PhysicalSortExpr::new(e, opts))
            .collect();
        let eq = match LexOrdering::new(sort) {
            Some(o) => EquivalenceProperties::new_with_orderings(Arc::clone(&schema), [o]),
            None => EquivalenceProperties::new(Arc::clone(&schema)),
        };
        let props = PlanProperties::new(
            eq,
            partitioning,
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Ok(Self {
            input,
            key,
            order,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The key and time columns (what a cluster's codec sends beside the input).
    pub fn columns(&self) -> (&str, &str) {
        (&self.key, &self.order)
    }
}

/// One bucket's runs (`group`, files of the store at `store_url`) merged in order, as a
/// one-partition plan: what `compact` writes as the bucket's one file.
pub fn runs_merged(
    store_url: &Url,
    schema: &SchemaRef,
    layout: &Layout,
    group: FileGroup,
) -> Result<Arc<dyn ExecutionPlan>> {
    let config = bucket_scan_config(
        &object_store_url(store_url)?,
        schema,
        layout,
        vec![group],
        None,
        None,
        true,
    )?;
    Ok(Arc::new(BucketMergeExec::try_new(
        DataSourceExec::from_data_source(config),
        layout.key.clone(),
        layout.order.clone(),
    )?))
}

/// The file scan configuration of a store's scan.
fn scan_config(input: &Arc<dyn ExecutionPlan>) -> Result<&FileScanConfig> {
    input
        .downcast_ref::<DataSourceExec>()
        .and_then(|d| d.data_source().downcast_ref::<FileScanConfig>())
        .ok_or_else(|| {
            DataFusionError::Internal(format!(
                "StoreBucketMergeExec reads a store's file scan, not {}",
                input.name()
            ))
        })
}

impl DisplayAs for BucketMergeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StoreBucketMergeExec: key={}", self.key)?;
        if let Some(o) = self.props.output_ordering() {
            write!(f, ", order=[{o}]")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for BucketMergeExec {
    fn name(&self) -> &str {
        "StoreBucketMergeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // Its ordering is its own (declared above), not its input's: the optimizer must not
        // push an ordering requirement into the scan.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Self::try_new(
                input,
                self.key.clone(),
                self.order.clone(),
            )?)),
            _ => Err(DataFusionError::Internal(
                "StoreBucketMergeExec takes one input".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let config = scan_config(&self.input)?;
        if config.output_partitioning.is_none() {
            return Err(DataFusionError::Internal(
                "StoreBucketMergeExec: its scan's file groups are no longer the store's buckets"
                    .into(),
            ));
        }
        let group = config.file_groups.get(partition).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "StoreBucketMergeExec: no bucket {partition} of {}",
                config.file_groups.len()
            ))
        })?;
        let ordering = match (group.len(), self.props.output_ordering()) {
            (0, _) => return EmptyExec::new(self.schema()).execute(0, context),
            // One run, or nothing to order by (the key is not read): the scan as it is.
            (1, _) | (_, None) => return self.input.execute(partition, context),
            (_, Some(o)) => o,
        };
        let streams = group
            .iter()
            .map(|file| {
                let one = FileScanConfigBuilder::from(config.clone())
                    .with_file_groups(vec![FileGroup::new(vec![file.clone()])])
                    .with_output_partitioning(None)
                    .build();
                DataSourceExec::from_data_source(one).execute(0, Arc::clone(&context))
            })
            .collect::<Result<Vec<_>>>()?;
        let reservation = MemoryConsumer::new(format!("StoreBucketMerge[{partition}]"))
            .register(&context.runtime_env().memory_pool);
        StreamingMergeBuilder::new()
            .with_streams(streams)
            .with_schema(self.schema())
            .with_expressions(ordering)
            .with_metrics(BaselineMetrics::new(&self.metrics, partition))
            .with_batch_size(context.session_config().batch_size())
            .with_reservation(reservation)
            // Equal (key, time) rows come in run order (oldest sync first), every time.
            .with_round_robin_tie_breaker(false)
            .build()
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
