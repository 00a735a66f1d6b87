//! A physical optimizer rule: aggregates whose partial state is as large as their input run in
//! one phase.
//!
//! DataFusion always plans a grouped aggregate in two phases: a partial aggregate per input
//! partition, a hash repartition of the partial states by the group keys, and a final aggregate
//! that merges them. That pays off when the partial phase shrinks the data. The lifecycle
//! aggregates that must see every row of a group (`rfm_summary` and `churn_risk` keep every
//! order's day and amount, `window_funnel` and `sequence_*` every matching event,
//! `cohort_retention`'s per-customer aggregate every distinct period) have partial states about
//! as large as their input: the partial phase then only builds those states as lists, ships
//! them, and the final phase adds every element again.
//!
//! [`SinglePhaseAggregates`] rewrites `FinalPartitioned(Repartition(Hash(keys), Partial(input)))`
//! into `SinglePartitioned(Repartition(Hash(keys), input))` when the aggregate list contains
//! one of those functions: the rows go to their group's partition once and are aggregated once.
//! The result is the same aggregate over the same rows (DataFusion's own
//! `CombinePartialFinalAggregate` makes the same rewrite when no repartition is needed); it
//! still runs in parallel, and it still spills under a memory limit (a single-phase aggregate
//! spills its states as a final one does). Grouping sets, ordered (streaming) aggregation and
//! ungrouped aggregates are left alone.

use std::any::{Any, TypeId};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, RwLock};

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{AggregateUDF, AggregateUDFImpl};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, InputOrderMode, Partitioning};

/// The implementation types of the aggregates whose state keeps (nearly) every input row of a
/// group, as each one's constructor declared it with [`whole_input`].
static WHOLE_INPUT: LazyLock<RwLock<HashSet<TypeId>>> = LazyLock::new(Default::default);

/// An aggregate whose partial state keeps (nearly) every input row of a group: its constructor
/// makes it with this, and the rule plans it in one phase. The declaration is the function's own
/// (its implementation type), not a list of names here.
pub fn whole_input<T: AggregateUDFImpl>(imp: T) -> AggregateUDF {
    WHOLE_INPUT
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(TypeId::of::<T>());
    AggregateUDF::new_from_impl(imp)
}

/// Whether `f` declared itself a whole-input aggregate ([`whole_input`]).
pub fn keeps_whole_input(f: &AggregateUDF) -> bool {
    let inner: &dyn AggregateUDFImpl = f.inner().as_ref();
    let id = (inner as &dyn Any).type_id();
    WHOLE_INPUT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&id)
}

/// The rule's name in the physical optimizer's list.
pub const RULE_NAME: &str = "lifecycle_single_phase_aggregates";

#[derive(Debug, Default)]
pub struct SinglePhaseAggregates;

impl SinglePhaseAggregates {
    /// The single-phase replacement of `plan`, if it is a final aggregate over a hash
    /// repartition of a partial one with a whole-input aggregate.
    fn rewrite(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(last) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        if *last.mode() != AggregateMode::FinalPartitioned {
            return Ok(None);
        }
        let Some(repartition) = last.input().downcast_ref::<RepartitionExec>() else {
            return Ok(None);
        };
        let Partitioning::Hash(_, partitions) = repartition.partitioning() else {
            return Ok(None);
        };
        let Some(partial) = repartition.input().downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let whole_input = partial
            .aggr_expr()
            .iter()
            .any(|a| keeps_whole_input(a.fun()));
        if *partial.mode() != AggregateMode::Partial
            || !whole_input
            || !partial.group_expr().is_single()
            || partial.group_expr().expr().is_empty()
            || *partial.input_order_mode() != InputOrderMode::Linear
        {
            return Ok(None);
        }
        let keys = partial.group_expr().input_exprs();
        let rows = Arc::new(RepartitionExec::try_new(
            Arc::clone(partial.input()),
            Partitioning::Hash(keys, *partitions),
        )?);
        let single = AggregateExec::try_new(
            AggregateMode::SinglePartitioned,
            partial.group_expr().clone(),
            partial.aggr_expr().to_vec(),
            partial.filter_expr().to_vec(),
            rows,
            partial.input_schema(),
        )?
        .with_limit_options(last.limit_options());
        Ok(Some(Arc::new(single)))
    }
}

impl PhysicalOptimizerRule for SinglePhaseAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|plan| {
            Ok(match Self::rewrite(&plan)? {
                Some(p) => Transformed::yes(p),
                None => Transformed::no(plan),
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
