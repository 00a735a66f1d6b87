//! The generic parts of every aggregate's adapter: the single-group [`OneGroup`] accumulator over a
//! `GroupsAccumulator`, the macros that write the three `AggregateUDFImpl` accumulator methods,
//! growing and emitting flat per-group state vectors, and polling a planning future once.

use datafusion::arrow::array::{ArrayRef, new_empty_array};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
/// The `Accumulator` (one group, for aggregates without GROUP BY and window functions) of an
/// aggregate whose state lives in its [`GroupsAccumulator`]: group 0 of it. Every family's
/// single-group path is this one type, so the grouped and ungrouped answers cannot drift apart.
///
/// `state` and `evaluate` take group 0's state out (`EmitTo::All`); it is kept and merged back
/// before anything else touches the accumulator (a window frame evaluates, then grows), so a
/// partial aggregation's `state` costs nothing extra and `evaluate` one merge.
pub struct OneGroup<G> {
    inner: G,
    taken: Option<Vec<ArrayRef>>,
}

impl<G: GroupsAccumulator> OneGroup<G> {
    /// Wraps `inner`, with its group 0 created from empty inputs of the argument types (so an
    /// aggregate over no rows answers as its empty group does).
    pub fn new(mut inner: G, args: &AccumulatorArgs) -> Result<Self> {
        let empty = args
            .exprs
            .iter()
            .map(|e| Ok(new_empty_array(&e.data_type(args.schema)?)))
            .collect::<Result<Vec<_>>>()?;
        inner.update_batch(&empty, &[], None, 1)?;
        Ok(Self { inner, taken: None })
    }

    fn restore(&mut self) -> Result<()> {
        if let Some(state) = self.taken.take() {
            self.inner.merge_batch(&state, &[0], 1)?;
        }
        Ok(())
    }
}

impl<G> std::fmt::Debug for OneGroup<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneGroup").finish_non_exhaustive()
    }
}

impl<G: GroupsAccumulator + Sync> Accumulator for OneGroup<G> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.restore()?;
        let groups = vec![0usize; values.first().map_or(0, |v| v.len())];
        self.inner.update_batch(values, &groups, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.restore()?;
        let groups = vec![0usize; states.first().map_or(0, |v| v.len())];
        self.inner.merge_batch(states, &groups, 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.restore()?;
        let state = self.inner.state(EmitTo::All)?;
        let scalars = state
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect();
        self.taken = Some(state);
        scalars
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.restore()?;
        let state = self.inner.state(EmitTo::All)?;
        self.inner.merge_batch(&state, &[0], 1)?;
        let answer = self.inner.evaluate(EmitTo::All)?;
        self.taken = Some(state);
        ScalarValue::try_from_array(&answer, 0)
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.inner.size()
            + self.taken.as_ref().map_or(0, |t| {
                t.iter().map(|a| a.get_array_memory_size()).sum::<usize>()
            })
    }
}

/// The three `AggregateUDFImpl` methods of an aggregate whose state lives in its
/// `GroupsAccumulator`, made by `$make(&self, &args) -> Result<G>`: the grouped accumulator and,
/// for the single-group case, [`OneGroup`] over the same type. Written once for every family.
macro_rules! grouped_accumulators {
    ($make:path) => {
        fn accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
            Ok(Box::new($crate::support::OneGroup::new(
                $make(self, &args)?,
                &args,
            )?))
        }

        fn groups_accumulator_supported(
            &self,
            _args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> bool {
            true
        }

        fn create_groups_accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::GroupsAccumulator>> {
            Ok(Box::new($make(self, &args)?))
        }
    };
}
pub(crate) use grouped_accumulators;

/// [`grouped_accumulators`] for an aggregate generic over its amounts (see [`super::money`]): built by
/// `$make::<i128>` when `$decimal(&self, &args)` says the amounts are DECIMAL, else by
/// `$make::<$float>`.
macro_rules! money_accumulators {
    ($make:ident, $float:ty, $decimal:expr) => {
        fn accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
            Ok(if $decimal(self, &args) {
                Box::new($crate::support::OneGroup::new(
                    self.$make::<i128>(&args)?,
                    &args,
                )?)
            } else {
                Box::new($crate::support::OneGroup::new(
                    self.$make::<$float>(&args)?,
                    &args,
                )?)
            })
        }

        fn groups_accumulator_supported(
            &self,
            _args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> bool {
            true
        }

        fn create_groups_accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::GroupsAccumulator>> {
            Ok(if $decimal(self, &args) {
                Box::new(self.$make::<i128>(&args)?)
            } else {
                Box::new(self.$make::<$float>(&args)?)
            })
        }
    };
}
pub(crate) use money_accumulators;

/// Grows every state vector to `n` groups with its initial value.
pub fn resize<T: Clone>(v: &mut Vec<T>, n: usize, init: T) {
    if v.len() < n {
        v.resize(n, init);
    }
}

/// Takes the emitted groups' values out of a state vector.
pub fn take<T>(emit_to: EmitTo, v: &mut Vec<T>) -> Vec<T> {
    emit_to.take_needed(v)
}

/// Polls a future once: catalogs and planners over in-memory catalogs (where registered tables
/// live) answer at once, and table functions are called synchronously, so they must not block.
pub fn poll_once<T>(func: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => plan_err!(
            "{func}: a table is in a catalog that resolves tables asynchronously, which is not supported"
        ),
    }
}
