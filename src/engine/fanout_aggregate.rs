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
use datafusion::physical_expr::PhysicalExpr;
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

/// Under a memory limit, each fanned-out partition keeps at least this much of it: DataFusion's
/// fair pool gives every spilling operator an equal share, and a fanned-out aggregate adds two
/// per partition (its own, and its repartition channel's). So 2 GB fans out to 128 partitions,
/// 1 GB to 64 and a server query's 256 MB share to 16; beyond that, a customer with a very long
/// history could no longer be held by its partition's share.
pub const MIN_SHARE_BYTES: usize = 8 << 20;

const RULE_NAME: &str = "lifecycle_fanout_aggregates";

/// The rule; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct FanoutAggregates {
    /// Partitions to fan out to (at least).
    pub partitions: usize,
    /// Inputs with fewer estimated rows keep their partitions.
    pub min_rows: usize,
    /// The query's memory limit, if it has one (bounds `partitions`, see [`MIN_SHARE_BYTES`]).
    pub memory_limit: Option<usize>,
}

impl Default for FanoutAggregates {
    fn default() -> Self {
        Self::for_memory(None)
    }
}

impl FanoutAggregates {
    /// The rule for queries of at most `memory_limit` bytes (None: unbounded).
    pub fn for_memory(memory_limit: Option<usize>) -> Self {
        Self {
            partitions: AGGREGATE_PARTITIONS,
            min_rows: MIN_ROWS,
            memory_limit,
        }
    }

    /// `state` with this rule for queries of at most `memory_limit` bytes in place of the one
    /// it has (a server gives each query a share of its memory).
    pub fn with_memory_limit(
        state: datafusion::execution::SessionState,
        memory_limit: Option<usize>,
    ) -> datafusion::execution::SessionState {
        let rules = state
            .physical_optimizers()
            .iter()
            .map(|r| {
                if r.name() == RULE_NAME {
                    Arc::new(Self::for_memory(memory_limit)) as _
                } else {
                    Arc::clone(r)
                }
            })
            .collect();
        datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rules(rules)
            .build()
    }

    /// Partitions for a plan of `n`: `partitions` rounded up to a multiple of `n`, or down to
    /// what the memory limit allows.
    fn fanout(&self, n: usize) -> usize {
        let k = self.partitions.div_ceil(n) * n;
        match self.memory_limit {
            Some(limit) => k.min(limit / (2 * MIN_SHARE_BYTES) / n * n),
            None => k,
        }
    }

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
        if repartition.preserve_order() || n == 0 {
            return Ok(None);
        }
        let k = self.fanout(n);
        // An aggregate over a fanned-out one's output groups its groups (customers into
        // stages, cohorts): few groups, no gain.
        if k <= n || below_a_fold(repartition.input())? {
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

/// Whether `plan` has a [`FoldPartitionsExec`] in it.
fn below_a_fold(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    use datafusion::common::tree_node::TreeNode;
    plan.exists(|p| Ok(p.downcast_ref::<FoldPartitionsExec>().is_some()))
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
        if n == 0 || !k.is_multiple_of(n) {
            return Err(DataFusionError::Internal(format!(
                "FoldPartitionsExec: {k} input partitions do not fold into {n}"
            )));
        }
        // Merging partitions keeps no order and no per-partition constant; the rest stays.
        let mut eq = input.equivalence_properties().clone();
        eq.clear_orderings();
        eq.clear_per_partition_constants();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_is_a_multiple_of_the_plan_within_the_memory_limit() {
        let rule = |m: Option<usize>| FanoutAggregates::for_memory(m);
        assert_eq!(rule(None).fanout(2), 128);
        assert_eq!(rule(None).fanout(3), 129);
        assert_eq!(rule(None).fanout(200), 200);
        let gib = 1usize << 30;
        assert_eq!(rule(Some(2 * gib)).fanout(2), 128);
        assert_eq!(rule(Some(gib)).fanout(2), 64);
        assert_eq!(rule(Some(gib)).fanout(3), 63);
        assert_eq!(rule(Some(gib / 4)).fanout(2), 16);
        // Too little memory to fan out at all: no more partitions than the plan's.
        assert!(rule(Some(16 << 20)).fanout(2) <= 2);
        assert_eq!(rule(Some(0)).fanout(4), 0);
    }

    /// A server query's state gets the rule for its memory share in place of the session's,
    /// every other rule kept in its place.
    #[test]
    fn the_rule_is_replaced_for_a_query_share() {
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(FanoutAggregates::for_memory(None)))
            .build();
        let names = |s: &datafusion::execution::SessionState| {
            s.physical_optimizers()
                .iter()
                .map(|r| r.name().to_string())
                .collect::<Vec<_>>()
        };
        let before = names(&state);
        let shared = FanoutAggregates::with_memory_limit(state, Some(256 << 20));
        assert_eq!(names(&shared), before);
        let ours: Vec<String> = shared
            .physical_optimizers()
            .iter()
            .filter(|r| r.name() == RULE_NAME)
            .map(|r| format!("{r:?}"))
            .collect();
        assert_eq!(ours.len(), 1);
        assert!(
            ours[0].contains("memory_limit: Some(268435456)"),
            "{ours:?}"
        );
    }
}
