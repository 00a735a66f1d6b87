//! Hash aggregation over many small hash tables: the per-customer stage of a question on raw
//! files, fanned out over more partitions than there are cores.
//!
//! DataFusion hash-partitions a grouped aggregate's input over `target_partitions` (the cores)
//! and builds one hash table per partition. With millions of customers each table is far larger
//! than the cache, and finding a row's group is a cache miss (a third of `churn_risk` on 108.8M
//! raw purchases of 10M customers). DuckDB and ClickHouse partition by the hash's bits first so
//! that each table fits in cache; this is the same idea in DataFusion's own operators.
//!
//! [`FanoutAggregates`] (a physical optimizer rule of the local session) rewrites a partitioned
//! aggregate (`SinglePartitioned` or `FinalPartitioned`, hash mode) over
//! `RepartitionExec(Hash(keys), n)` into the same aggregate over `RepartitionExec(Hash(keys), k)`
//! with `k` a multiple of `n` ([`AGGREGATE_PARTITIONS`]), under a [`FoldPartitionsExec`] that
//! hands partition `j` of the `k` to output `j % n`. DataFusion's hash partitioning sends a row
//! to `hash % partitions`, and `(hash % k) % n == hash % n` when `n` divides `k`: output `i` holds
//! exactly the groups it held before the rewrite, so the plan above (joins co-partitioned on the
//! same keys included) sees the very same partitioning, `Hash(keys, n)`. Each output polls its
//! `k / n` aggregates together (not one after the other: a repartition buffers what an unpolled
//! output has not taken).

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    Partitioning, PlanProperties, SendableRecordBatchStream, StatisticsArgs, StatisticsContext,
    replace_children_if_necessary,
};

/// Partitions of a fanned-out aggregate (rounded up to a multiple of the plan's), so that 10M
/// customers make tables of ~60k groups. `count(*), sum(amount) GROUP BY customer_id` over
/// 108.8M time-ordered purchases of 7.5M customers, 2 cores, `--memory-limit 2G`: 7.34 s in 2
/// partitions, 6.44 s in 32, 5.82 s in 64, 5.19 s in 128, 5.22 s in 256, 6.15 s in 512; over
/// 21.8M purchases of 1.5M customers 2.84 s, 0.93 s (64), 0.89 s (128).
pub const AGGREGATE_PARTITIONS: usize = 128;

/// Inputs smaller than this (estimated rows) are not fanned out: their tables fit in cache.
pub const MIN_ROWS: usize = 1 << 20;

const RULE_NAME: &str = "lifecycle_fanout_aggregates";

/// The rule; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct FanoutAggregates {
    /// Partitions to fan out to (at least).
    pub partitions: usize,
    /// Inputs with fewer estimated rows keep their partitions.
    pub min_rows: usize,
}

impl Default for FanoutAggregates {
    fn default() -> Self {
        Self {
            partitions: AGGREGATE_PARTITIONS,
            min_rows: MIN_ROWS,
        }
    }
}

impl FanoutAggregates {
    fn rewrite(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(agg) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let partitioned = matches!(
            agg.mode(),
            AggregateMode::SinglePartitioned | AggregateMode::FinalPartitioned
        );
        if !partitioned
            || *agg.input_order_mode() != InputOrderMode::Linear
            || agg.properties().output_ordering().is_some()
            || !agg.dynamic_expressions_produced().is_empty()
        {
            return Ok(None);
        }
        let Some(repartition) = agg.input().downcast_ref::<RepartitionExec>() else {
            return Ok(None);
        };
        let Partitioning::Hash(exprs, n) = repartition.partitioning() else {
            return Ok(None);
        };
        let n = *n;
        let k = self.partitions.div_ceil(n.max(1)) * n;
        if repartition.preserve_order() || n == 0 || k <= n {
            return Ok(None);
        }
        let rows = StatisticsContext::new()
            .compute(repartition.input().as_ref(), &StatisticsArgs::new())
            .map(|s| s.num_rows)
            .unwrap_or(Precision::Absent);
        if rows.get_value().is_some_and(|r| *r < self.min_rows) {
            return Ok(None);
        }
        let wide = RepartitionExec::try_new(
            Arc::clone(repartition.input()),
            Partitioning::Hash(exprs.clone(), k),
        )?;
        let wide_agg = replace_children_if_necessary(Arc::clone(plan), vec![Arc::new(wide)])?;
        let folded =
            FoldPartitionsExec::try_new(wide_agg, agg.properties().output_partitioning().clone())?;
        Ok(Some(Arc::new(folded)))
    }
}

impl PhysicalOptimizerRule for FanoutAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        plan.transform_up(|p| {
            Ok(match self.rewrite(&p)? {
                Some(p) => Transformed::yes(p),
                None => Transformed::no(p),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `k` input partitions as `n` (`n` divides `k`): output `i` is inputs `i, i + n, i + 2n, ...`,
/// polled together. Declares `partitioning` (with `n` partitions), which the caller vouches for.
#[derive(Debug)]
pub struct FoldPartitionsExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl FoldPartitionsExec {
    pub fn try_new(input: Arc<dyn ExecutionPlan>, partitioning: Partitioning) -> Result<Self> {
        let k = input.output_partitioning().partition_count();
        let n = partitioning.partition_count();
        if n == 0 || k % n != 0 {
            return Err(DataFusionError::Internal(format!(
                "FoldPartitionsExec: {k} input partitions do not fold into {n}"
            )));
        }
        // Merging partitions keeps no order; the columns' equivalences and constants stay.
        let mut eq = EquivalenceProperties::new(input.schema());
        eq.add_constants(input.equivalence_properties().constants())?;
        let properties = PlanProperties::new(
            eq,
            partitioning,
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Ok(Self {
            input,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for FoldPartitionsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FoldPartitionsExec: {} partitions into {}",
            self.input.output_partitioning().partition_count(),
            self.properties.partitioning.partition_count()
        )
    }
}

impl ExecutionPlan for FoldPartitionsExec {
    fn name(&self) -> &str {
        "FoldPartitionsExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| {
            DataFusionError::Internal("FoldPartitionsExec takes one child".into())
        })?;
        Ok(Arc::new(Self::try_new(
            input,
            self.properties.partitioning.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let n = self.properties.partitioning.partition_count();
        let k = self.input.output_partitioning().partition_count();
        if partition >= n {
            return Err(DataFusionError::Internal(format!(
                "FoldPartitionsExec: partition {partition} of {n}"
            )));
        }
        let streams = (partition..k)
            .step_by(n)
            .map(|j| self.input.execute(j, Arc::clone(&context)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            futures::stream::select_all(streams),
        )))
    }
}
