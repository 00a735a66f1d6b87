//! Joins never pair a store's buckets with DataFusion's hash partitions.
//!
//! A store declares its buckets to DataFusion as hash partitioning on the key, so aggregates and
//! windows need no repartition. DataFusion assumes every hash partitioning in a plan uses its own
//! hash function: a partitioned join whose one side is a store's buckets (Iceberg's Murmur3 of
//! the key, N + 1 partitions) and whose other side DataFusion repartitioned itself would pair
//! partitions holding different keys whenever the counts happen to match. This rule, run after
//! DataFusion's own, repartitions the store side of any operator that needs two or more inputs
//! hash-partitioned alike, or that interleaves its inputs' partitions (a `UNION ALL` DataFusion
//! turned into an `InterleaveExec`), unless every such input is a store bucketed the same way.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::{Distribution, Partitioning};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::union::InterleaveExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::merge::BucketMergeExec;

/// Where an input's hash partitioning comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// DataFusion's `RepartitionExec` (its own hash).
    DataFusion,
    /// A scan that declares its partitioning (a store's buckets), with its partition count.
    Declared(usize),
    /// Something else (a join's output, a single partition...).
    Other,
}

fn origin(plan: &Arc<dyn ExecutionPlan>) -> Origin {
    let mut p = Arc::clone(plan);
    loop {
        if !matches!(p.output_partitioning(), Partitioning::Hash(..)) {
            return Origin::Other;
        }
        if p.downcast_ref::<RepartitionExec>().is_some() {
            return Origin::DataFusion;
        }
        if p.downcast_ref::<BucketMergeExec>().is_some() {
            return Origin::Declared(p.output_partitioning().partition_count());
        }
        if let Some(ds) = p.downcast_ref::<DataSourceExec>() {
            return match ds.data_source().downcast_ref::<FileScanConfig>() {
                Some(c) if c.output_partitioning.is_some() => {
                    Origin::Declared(p.output_partitioning().partition_count())
                }
                _ => Origin::Other,
            };
        }
        let children = p.children();
        if children.len() != 1 {
            return Origin::Other;
        }
        let child = Arc::clone(children[0]);
        p = child;
    }
}

/// A `UNION ALL` of hash-partitioned inputs that DataFusion interleaves (partition `i` of the
/// union = partition `i` of every input, taken as hash-partitioned alike): a store's buckets and
/// DataFusion's own hash partitions of the same count would be paired. Every input that is not
/// DataFusion's hash is brought to it, unless every input is a store bucketed the same way.
fn interleave(node: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
    let origins: Vec<Origin> = children.iter().map(origin).collect();
    let declared = origins.iter().any(|o| matches!(o, Origin::Declared(_)));
    if !declared || origins.windows(2).all(|w| w[0] == w[1]) {
        return Ok(Transformed::no(node));
    }
    let new_children = children
        .into_iter()
        .zip(&origins)
        .map(|(child, o)| match child.output_partitioning().clone() {
            Partitioning::Hash(exprs, n) if *o != Origin::DataFusion => Ok(Arc::new(
                RepartitionExec::try_new(child, Partitioning::Hash(exprs, n))?,
            )
                as Arc<dyn ExecutionPlan>),
            _ => Ok(child),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Transformed::yes(Arc::new(InterleaveExec::try_new(
        new_children,
    )?)))
}

/// The physical optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub struct StoreCoPartitioning;

#[expect(
    deprecated,
    reason = "HashPartitioned is what joins still ask for in DataFusion 55"
)]
fn hash_exprs(d: &Distribution) -> Option<&Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>> {
    match d {
        Distribution::HashPartitioned(e) | Distribution::KeyPartitioned(e) => Some(e),
        _ => None,
    }
}

impl PhysicalOptimizerRule for StoreCoPartitioning {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let target = config.execution.target_partitions.max(1);
        plan.transform_up(|node| {
            if node.downcast_ref::<InterleaveExec>().is_some() {
                return interleave(node);
            }
            let reqs: Vec<Distribution> = node
                .input_distribution_requirements()
                .per_child_distributions()
                .cloned()
                .collect();
            let hashed: Vec<usize> = reqs
                .iter()
                .enumerate()
                .filter(|(_, d)| hash_exprs(d).is_some())
                .map(|(i, _)| i)
                .collect();
            if hashed.len() < 2 {
                return Ok(Transformed::no(node));
            }
            let children: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().cloned().collect();
            let origins: Vec<Origin> = hashed.iter().map(|i| origin(&children[*i])).collect();
            let declared = origins.iter().any(|o| matches!(o, Origin::Declared(_)));
            let all_same = origins.windows(2).all(|w| w[0] == w[1]);
            if !declared || all_same {
                return Ok(Transformed::no(node));
            }
            // Mixed: bring every input that is not DataFusion's own hash to DataFusion's hash,
            // with the partition count of the inputs that are.
            let n = hashed
                .iter()
                .zip(&origins)
                .find(|(_, o)| **o == Origin::DataFusion)
                .map(|(i, _)| children[*i].output_partitioning().partition_count())
                .unwrap_or(target);
            let mut new_children = children.clone();
            for (i, o) in hashed.iter().zip(&origins) {
                let same_df = *o == Origin::DataFusion
                    && children[*i].output_partitioning().partition_count() == n;
                if same_df {
                    continue;
                }
                let exprs = hash_exprs(&reqs[*i]).expect("hash requirement").clone();
                let r = RepartitionExec::try_new(
                    Arc::clone(&children[*i]),
                    Partitioning::Hash(exprs, n),
                )?
                .with_preserve_order();
                new_children[*i] = Arc::new(r);
            }
            Ok(Transformed::yes(replace_children_if_necessary(
                node,
                new_children,
            )?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lifecycle_store_co_partitioning"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
