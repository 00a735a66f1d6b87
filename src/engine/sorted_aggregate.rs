//! Grouped aggregation over input sorted by its group keys, without a hash table.
//!
//! When an aggregate's input arrives sorted by every group key (a lifecycle store's buckets, a
//! table declared `WITH ORDER`), DataFusion plans it in its streaming mode
//! (`ordering_mode=Sorted`), but it still interns every row's key in a hash table to find its
//! group (15% of `lifecycle_stage` on a store). Sorted input needs no lookup: a group is a run of
//! equal keys, so a row's group is the number of key changes before it.
//!
//! [`SortedAggregates`] (a physical optimizer rule, run last) replaces such an `AggregateExec`
//! (one phase: `Single` or `SinglePartitioned`, no grouping sets, no limit, every aggregate with
//! a groups accumulator) by [`SortedGroupsAggregateExec`]: the same accumulators, fed with group
//! indices from the key runs ([`run_groups`]), and every group but the last one of a batch
//! emitted as soon as the batch is folded. Memory is the accumulators of one batch's groups.
//! Only the local engine uses it (a cluster keeps DataFusion's node, which its codec ships).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{ColumnarValue, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::OrderingRequirements;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, aggregate_expressions};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties, SendableRecordBatchStream, displayable, replace_children_if_necessary,
};

use super::sorted_input::{BatchFold, fold_stream, key_runs, replace_nodes};

/// The kernel: group indices for one batch of sorted rows.
///
/// `starts`: the first row of each run of equal keys in the batch (ascending, `starts[0] == 0`),
/// `rows`: the batch's row count; `open`: a group is still open from the previous batch (it is
/// group 0), and `continues`: the batch's first run is that group's continuation. Fills
/// `indices` with each row's group and returns the number of groups (the open one included).
pub fn run_groups(
    starts: &[usize],
    rows: usize,
    open: bool,
    continues: bool,
    indices: &mut Vec<usize>,
) -> usize {
    indices.clear();
    indices.reserve(rows);
    // The open group keeps index 0; the batch's runs follow it unless the first one is it.
    let base = usize::from(open && !continues);
    for (r, &start) in starts.iter().enumerate() {
        let end = starts.get(r + 1).copied().unwrap_or(rows);
        indices.resize(indices.len() + (end - start), base + r);
    }
    base + starts.len()
}

/// The rule's name in the physical optimizer's list.
pub const RULE_NAME: &str = "lifecycle_sorted_aggregates";

/// Replaces one-phase aggregates over input sorted by their group keys with
/// [`SortedGroupsAggregateExec`].
#[derive(Debug, Default)]
pub struct SortedAggregates;

impl SortedAggregates {
    fn rewrite(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        let agg = plan.downcast_ref::<AggregateExec>()?;
        let eligible = matches!(
            agg.mode(),
            AggregateMode::Single | AggregateMode::SinglePartitioned
        ) && *agg.input_order_mode() == InputOrderMode::Sorted
            && agg.group_expr().is_single()
            && !agg.group_expr().expr().is_empty()
            && agg.limit_options().is_none()
            && agg.dynamic_expressions_produced().is_empty()
            && agg
                .aggr_expr()
                .iter()
                .all(|a| a.groups_accumulator_supported());
        eligible.then(|| {
            Arc::new(SortedGroupsAggregateExec::new(Arc::new(agg.clone())))
                as Arc<dyn ExecutionPlan>
        })
    }
}

impl PhysicalOptimizerRule for SortedAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        replace_nodes(plan, Self::rewrite)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// An `AggregateExec` over input sorted by its group keys, run without a hash table: the
/// aggregate's own definition (keys, accumulators, filters, output) and its plan properties.
#[derive(Debug)]
pub struct SortedGroupsAggregateExec {
    agg: Arc<AggregateExec>,
    metrics: ExecutionPlanMetricsSet,
}

impl SortedGroupsAggregateExec {
    pub fn new(agg: Arc<AggregateExec>) -> Self {
        Self {
            agg,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for SortedGroupsAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => self.agg.fmt_as(t, f),
            _ => {
                // The aggregate's own description (mode, keys, aggregates, ordering_mode).
                let agg = displayable(self.agg.as_ref()).one_line().to_string();
                let agg = agg.trim_end();
                let agg = agg.strip_prefix("AggregateExec: ").unwrap_or(agg);
                write!(f, "SortedGroupsAggregateExec: {agg}")
            }
        }
    }
}

impl ExecutionPlan for SortedGroupsAggregateExec {
    fn name(&self) -> &str {
        "SortedGroupsAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.agg.properties()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.agg.input_distribution_requirements()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.agg.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.agg.maintains_input_order()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.agg.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.agg.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The aggregate over the new input; if that input is no longer sorted by the keys, the
        // aggregate is DataFusion's own again.
        let agg = replace_children_if_necessary(Arc::clone(&self.agg) as _, children)?;
        Ok(SortedAggregates::rewrite(&agg).unwrap_or(agg))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let agg = &self.agg;
        let input = agg.input().execute(partition, Arc::clone(&context))?;
        let accumulators = agg
            .aggr_expr()
            .iter()
            .map(|a| a.create_groups_accumulator())
            .collect::<Result<Vec<_>>>()?;
        let reservation = MemoryConsumer::new(format!("SortedGroupsAggregate[{partition}]"))
            .register(context.memory_pool());
        let groups = SortedGroups {
            schema: agg.schema(),
            keys: agg
                .group_expr()
                .expr()
                .iter()
                .map(|(e, _)| Arc::clone(e))
                .collect(),
            arguments: aggregate_expressions(
                agg.aggr_expr(),
                agg.mode(),
                agg.group_expr().num_group_exprs(),
            )?,
            filters: agg.filter_expr().to_vec(),
            constants: agg
                .aggr_expr()
                .iter()
                .map(|a| vec![None; a.expressions().len() + a.order_bys().len()])
                .collect(),
            accumulators,
            open: None,
            indices: Vec::new(),
            reservation,
        };
        Ok(fold_stream(
            input,
            agg.schema(),
            groups,
            BaselineMetrics::new(&self.metrics, partition),
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `value` as a column of `rows` rows. A constant (a literal argument, such as `as_of`) is
/// made a column once and sliced for later batches of at most as many rows, not built again
/// for every batch.
fn column(
    value: ColumnarValue,
    rows: usize,
    cached: &mut Option<(ScalarValue, ArrayRef)>,
) -> Result<ArrayRef> {
    match value {
        ColumnarValue::Array(a) => Ok(a),
        ColumnarValue::Scalar(s) => {
            let column = match cached.take() {
                Some((c, a)) if c == s && a.len() >= rows => a,
                _ => s.to_array_of_size(rows)?,
            };
            let out = column.slice(0, rows);
            *cached = Some((s, column));
            Ok(out)
        }
    }
}

struct SortedGroups {
    schema: SchemaRef,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Per argument of each aggregate: the last constant it evaluated to, as a column.
    constants: Vec<Vec<Option<(ScalarValue, ArrayRef)>>>,
    /// The key of the group still open (the last of the previous batch), one row per column.
    open: Option<Vec<ArrayRef>>,
    indices: Vec<usize>,
    reservation: MemoryReservation,
}

impl SortedGroups {
    /// Folds `batch` into the accumulators; returns the groups it closed.
    fn fold_groups(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        let keys = self
            .keys
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let (starts, continues) = key_runs(&keys, self.open.as_deref())?;
        let groups = run_groups(
            &starts,
            rows,
            self.open.is_some(),
            continues,
            &mut self.indices,
        );
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            let values = self.arguments[i]
                .iter()
                .zip(&mut self.constants[i])
                .map(|(e, constant)| column(e.evaluate(batch)?, rows, constant))
                .collect::<Result<Vec<_>>>()?;
            let filter = match &self.filters[i] {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            acc.update_batch(
                &values,
                &self.indices,
                filter.as_ref().map(|f| f.as_boolean()),
                groups,
            )?;
        }
        // Every group's key: the open one's (unless the first run continues it), then the
        // first row of each run.
        let firsts = UInt32Array::from_iter_values(starts.iter().map(|&s| s as u32));
        let mut all = Vec::with_capacity(keys.len());
        for (c, k) in keys.iter().enumerate() {
            let runs = take(k.as_ref(), &firsts, None)?;
            all.push(match &self.open {
                Some(open) if !continues => concat(&[open[c].as_ref(), runs.as_ref()])?,
                _ => runs,
            });
        }
        // The last group may go on in the next batch: everything before it is final.
        self.open = Some(all.iter().map(|a| a.slice(groups - 1, 1)).collect());
        let closed = self.emit(
            all.iter().map(|a| a.slice(0, groups - 1)).collect(),
            EmitTo::First(groups - 1),
        )?;
        let size = self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        self.reservation.try_resize(size)?;
        Ok(closed)
    }

    /// The groups `emit` of the accumulators, with their `keys`, as an output batch.
    fn emit(&mut self, keys: Vec<ArrayRef>, emit: EmitTo) -> Result<Option<RecordBatch>> {
        let n = keys.first().map_or(0, |k| k.len());
        if n == 0 {
            return Ok(None);
        }
        let mut columns = keys;
        for acc in &mut self.accumulators {
            columns.push(acc.evaluate(emit)?);
        }
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }

    /// The open group, at the end of the input.
    fn close(&mut self) -> Result<Option<RecordBatch>> {
        let out = match self.open.take() {
            Some(keys) => self.emit(keys, EmitTo::All),
            None => Ok(None),
        };
        self.reservation.free();
        out
    }
}

impl BatchFold for SortedGroups {
    fn fold(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        self.fold_groups(batch)
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::run_groups;

    /// Group of each row for sorted `keys` split into batches of `size`, by the kernel, with the
    /// open group carried as the stream carries it; numbered globally.
    fn grouped(keys: &[i64], size: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let (mut open, mut emitted, mut indices) = (None::<i64>, 0, Vec::new());
        for batch in keys.chunks(size) {
            let starts: Vec<usize> = (0..batch.len())
                .filter(|&i| i == 0 || batch[i] != batch[i - 1])
                .collect();
            let continues = open == Some(batch[0]);
            let groups = run_groups(
                &starts,
                batch.len(),
                open.is_some(),
                continues,
                &mut indices,
            );
            out.extend(indices.iter().map(|g| emitted + g));
            emitted += groups - 1;
            open = batch.last().copied();
        }
        out
    }

    #[test]
    fn a_group_is_a_run_of_equal_keys_whatever_the_batches() {
        let keys = [1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 5];
        // Independently: the number of key changes before each row.
        let want: Vec<usize> = (0..keys.len())
            .map(|i| (1..=i).filter(|&j| keys[j] != keys[j - 1]).count())
            .collect();
        for size in 1..=keys.len() + 1 {
            assert_eq!(grouped(&keys, size), want, "batches of {size}");
        }
    }

    #[test]
    fn the_open_group_keeps_index_zero() {
        let mut idx = Vec::new();
        // Continued: the first run is group 0.
        assert_eq!(run_groups(&[0, 2], 3, true, true, &mut idx), 2);
        assert_eq!(idx, [0, 0, 1]);
        // Not continued: group 0 gets no row, the runs are 1 and 2.
        assert_eq!(run_groups(&[0, 2], 3, true, false, &mut idx), 3);
        assert_eq!(idx, [1, 1, 2]);
        // Nothing open.
        assert_eq!(run_groups(&[0], 2, false, false, &mut idx), 1);
        assert_eq!(idx, [0, 0]);
    }
}
