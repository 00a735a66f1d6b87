//! Small adapter helpers shared by the aggregate functions: argument checks, literal arguments,
//! row masks and emitting group state.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, new_empty_array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::nulls::filter_to_nulls;

/// The most boolean conditions an aggregate takes (`retention`, `window_funnel` steps,
/// `sequence_*`): each row's conditions are the bits of one `u32` mask.
pub const MAX_CONDITIONS: usize = u32::BITS as usize;

/// Checks the argument count of `func` against an inclusive range, with a message that says how
/// the function is called.
pub fn check_arity(func: &str, usage: &str, n: usize, min: usize, max: usize) -> Result<()> {
    if n < min || n > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return plan_err!("{func} takes {want} arguments ({usage}), got {n}");
    }
    Ok(())
}

/// Integer types a threshold argument may have; coerced to BIGINT.
pub fn check_integer(func: &str, name: &str, t: &DataType) -> Result<DataType> {
    if t.is_integer() || t.is_null() {
        Ok(DataType::Int64)
    } else {
        plan_err!("{func}: argument '{name}' must be an integer, got {t}")
    }
}

/// The value of a constant argument of an aggregate (after constant folding): a [`Literal`], or
/// an expression without inputs that evaluates to a scalar. The second form is how a constant
/// arrives when the aggregate runs in another DataFusion build (DataFusion Python, through
/// datafusion-ffi): as a foreign expression that can only be evaluated, not inspected.
pub fn constant(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    if let Some(lit) = expr.downcast_ref::<Literal>() {
        return Some(lit.value().clone());
    }
    if !expr.children().is_empty() {
        return None;
    }
    let empty = datafusion::arrow::datatypes::Schema::empty();
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1));
    let batch = datafusion::arrow::array::RecordBatch::try_new_with_options(
        Arc::new(empty),
        vec![],
        &options,
    )
    .ok()?;
    match expr.evaluate(&batch).ok()? {
        datafusion::logical_expr::ColumnarValue::Scalar(v) => Some(v),
        datafusion::logical_expr::ColumnarValue::Array(_) => None,
    }
}

/// The value of a constant integer argument (after constant folding), >= 1.
pub fn literal_positive(func: &str, name: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<u64> {
    let Some(value) = constant(expr) else {
        return plan_err!("{func}: argument '{name}' must be a constant");
    };
    let v = match &value {
        ScalarValue::Int64(Some(v)) => *v,
        other => match other.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(v)) => v,
            _ => return plan_err!("{func}: argument '{name}' must be a non-NULL integer"),
        },
    };
    if v < 1 {
        return plan_err!("{func}: argument '{name}' must be at least 1, got {v}");
    }
    Ok(v as u64)
}

/// Validity of the rows an aggregate may use: the FILTER clause (NULL counts as false) combined
/// with the given null masks.
pub fn row_mask(
    filter: Option<&BooleanArray>,
    nulls: &[Option<&NullBuffer>],
) -> Option<NullBuffer> {
    let mut mask = filter.map(filter_to_nulls);
    for n in nulls {
        mask = NullBuffer::union(mask.as_ref(), *n);
    }
    mask
}

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
            Ok(Box::new($crate::common::OneGroup::new(
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

/// [`grouped_accumulators`] for an aggregate generic over its amounts (see [`money`]): built by
/// `$make::<i128>` when `$decimal(&self, &args)` says the amounts are DECIMAL, else by
/// `$make::<$float>`.
macro_rules! money_accumulators {
    ($make:ident, $float:ty, $decimal:expr) => {
        fn accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
            Ok(if $decimal(self, &args) {
                Box::new($crate::common::OneGroup::new(
                    self.$make::<i128>(&args)?,
                    &args,
                )?)
            } else {
                Box::new($crate::common::OneGroup::new(
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

/// Turns per-row counts (`offsets[row + 1]` holds row's count, `offsets[0]` is 0) into list
/// offsets, in place: the shape `convert_to_state` builds when each row is its own group.
pub fn counts_to_offsets(offsets: &mut [usize]) {
    for r in 1..offsets.len() {
        offsets[r] += offsets[r - 1];
    }
}

/// Whether `t` is a string type.
pub fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A list of `t` (elements not null), the shape of every list state.
pub fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, false)))
}

/// Partial-state fields `name[suffix]`, each a (nullable) list of the given element type.
pub fn list_state_fields(name: &str, fields: &[(&str, DataType)]) -> Vec<FieldRef> {
    fields
        .iter()
        .map(|(suffix, t)| {
            Arc::new(Field::new(
                format!("{name}[{suffix}]"),
                list_of(t.clone()),
                true,
            ))
        })
        .collect()
}

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

/// A scalar function's arguments as arrays, and how to return its result: a scalar when every
/// argument was a scalar, else an array.
pub fn scalar_args(
    args: &[datafusion::logical_expr::ColumnarValue],
) -> Result<(Vec<datafusion::arrow::array::ArrayRef>, bool)> {
    use datafusion::logical_expr::ColumnarValue;
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    Ok((ColumnarValue::values_to_arrays(args)?, all_scalar))
}

/// The result of a scalar function (see [`scalar_args`]).
pub fn scalar_result(
    arr: datafusion::arrow::array::ArrayRef,
    all_scalar: bool,
) -> Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::logical_expr::ColumnarValue;
    Ok(if all_scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?)
    } else {
        ColumnarValue::Array(arr)
    })
}

/// Per-group values of aggregates that must see every row of a group (distinct days, funnel
/// events): one flat log of (group, value) entries for all groups, no per-group allocation.
/// Emitting buckets the entries by group with a counting sort (O(entries)).
#[derive(Debug, Default)]
pub struct GroupLog<V> {
    groups: Vec<u32>,
    values: Vec<V>,
}

impl<V: Copy + Default> GroupLog<V> {
    #[inline]
    pub fn push(&mut self, group: usize, value: V) {
        self.groups.push(group as u32);
        self.values.push(value);
    }

    pub fn size(&self) -> usize {
        self.groups.capacity() * 4 + self.values.capacity() * size_of::<V>()
    }

    /// Takes the entries of groups `emit_to` (of `n` groups emitted) out, bucketed by group:
    /// `values[offsets[g]..offsets[g + 1]]` are group g's, in no particular order. Remaining
    /// groups are renumbered from 0. The bucketing permutes the entries in place (an American
    /// flag sort), so emitting allocates no second copy of the log.
    pub fn take(&mut self, emit_to: EmitTo, n: usize) -> (Vec<usize>, Vec<V>) {
        let (mut groups, mut values) = self.take_raw(emit_to, n);
        let offsets = bucket_in_place(&mut groups, &mut values, n);
        (offsets, values)
    }

    /// Takes the entries of groups `emit_to` (of `n` groups emitted) out as they were logged:
    /// (group of each entry, entry). Remaining groups are renumbered from 0.
    fn take_raw(&mut self, emit_to: EmitTo, n: usize) -> (Vec<u32>, Vec<V>) {
        match emit_to {
            EmitTo::All => (
                std::mem::take(&mut self.groups),
                std::mem::take(&mut self.values),
            ),
            EmitTo::First(_) => {
                let (mut mine_g, mut mine_v) = (vec![], vec![]);
                let (mut rest_g, mut rest_v) = (vec![], vec![]);
                for (g, v) in self.groups.iter().zip(&self.values) {
                    if (*g as usize) < n {
                        mine_g.push(*g);
                        mine_v.push(*v);
                    } else {
                        rest_g.push(*g - n as u32);
                        rest_v.push(*v);
                    }
                }
                self.groups = rest_g;
                self.values = rest_v;
                (mine_g, mine_v)
            }
        }
    }
}

/// Per-group start offsets (`n + 1` of them) of entries whose groups are `groups`.
pub fn group_offsets(groups: &[u32], n: usize) -> Vec<usize> {
    let mut offsets = vec![0usize; n + 1];
    for g in groups {
        offsets[*g as usize + 1] += 1;
    }
    for g in 0..n {
        offsets[g + 1] += offsets[g];
    }
    offsets
}

/// Buckets `values` by `groups` (of `n` groups) in place, an American flag sort: afterwards
/// `values[offsets[g]..offsets[g + 1]]` are group g's, in no particular order.
pub fn bucket_in_place<V>(groups: &mut [u32], values: &mut [V], n: usize) -> Vec<usize> {
    bucket_in_place_with(groups, n, |i, j| values.swap(i, j))
}

/// [`bucket_in_place`] for entries kept in several vectors: `swap(i, j)` swaps entries i and j
/// of each of them (`groups` is swapped here).
pub fn bucket_in_place_with(
    groups: &mut [u32],
    n: usize,
    mut swap: impl FnMut(usize, usize),
) -> Vec<usize> {
    let offsets = group_offsets(groups, n);
    let mut next: Vec<usize> = offsets[..n].to_vec();
    for g in 0..n {
        let end = offsets[g + 1];
        while next[g] < end {
            let i = next[g];
            let dest = groups[i] as usize;
            if dest == g {
                next[g] += 1;
            } else {
                let j = next[dest];
                groups.swap(i, j);
                swap(i, j);
                next[dest] += 1;
            }
        }
    }
    offsets
}

/// Builds a List array from per-group offsets and a flat values array.
pub fn list_array(
    offsets: &[usize],
    values: datafusion::arrow::array::ArrayRef,
) -> datafusion::arrow::array::ArrayRef {
    use datafusion::arrow::array::ListArray;
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Field;
    let offs = OffsetBuffer::new(offsets.iter().map(|o| *o as i32).collect::<Vec<_>>().into());
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(values.data_type().clone(), false)),
        offs,
        values,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_log_buckets_every_entry_by_group() {
        let mut log = GroupLog::<u32>::default();
        // Entry value = group * 1000 + sequence number, in a scrambled group order.
        let groups = [3usize, 0, 2, 3, 1, 0, 3, 2, 2, 0, 4, 3];
        for (k, g) in groups.iter().enumerate() {
            log.push(*g, (*g * 1000 + k) as u32);
        }
        let (offsets, values) = log.take(EmitTo::All, 5);
        assert_eq!(offsets, vec![0, 3, 4, 7, 11, 12]);
        for g in 0..5 {
            let mut got: Vec<u32> = values[offsets[g]..offsets[g + 1]].to_vec();
            got.sort();
            let want: Vec<u32> = groups
                .iter()
                .enumerate()
                .filter(|(_, x)| **x == g)
                .map(|(k, _)| (g * 1000 + k) as u32)
                .collect();
            assert_eq!(got, want, "group {g}");
        }
        // Emitting the first groups keeps and renumbers the rest.
        let mut log = GroupLog::<u32>::default();
        for (k, g) in groups.iter().enumerate() {
            log.push(*g, k as u32);
        }
        let (offsets, _) = log.take(EmitTo::First(2), 2);
        assert_eq!(offsets, vec![0, 3, 4]);
        let (offsets, _) = log.take(EmitTo::All, 3);
        assert_eq!(offsets, vec![0, 3, 7, 8]);
    }

    #[test]
    fn constants_are_literals_or_input_free_expressions() {
        use datafusion::common::DFSchema;
        use datafusion::execution::context::ExecutionProps;
        use datafusion::logical_expr::{col, lit};
        use datafusion::physical_expr::create_physical_expr;
        let schema = DFSchema::try_from(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("a", DataType::Int64, true),
        ]))
        .unwrap();
        let physical = |e| {
            let planning = datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
            create_physical_expr(&e, &schema, &ExecutionProps::new(), &planning).unwrap()
        };
        assert_eq!(
            constant(&physical(lit(7i64))),
            Some(ScalarValue::Int64(Some(7)))
        );
        // Not a Literal, no inputs, a scalar when evaluated: what a foreign (FFI) constant is.
        let pi = constant(&physical(datafusion::functions::math::expr_fn::pi()));
        assert_eq!(pi, Some(ScalarValue::Float64(Some(std::f64::consts::PI))));
        assert_eq!(constant(&physical(col("a"))), None);
        assert_eq!(constant(&physical(col("a") + lit(1i64))), None);
    }
}

/// Exact money: DECIMAL amounts are summed as their unscaled `i128` and returned as
/// DECIMAL(38, s) (DataFusion's `sum` widens to 38 digits the same way); other numeric amounts
/// are DOUBLE. Shared by `cohort_retention` and `rfm_summary`.
pub mod money {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
    use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type};
    use datafusion::common::{DataFusionError, Result};

    /// The type an amount column is read in: DECIMAL(38, s) for a DECIMAL of scale s (summed
    /// exactly), DOUBLE for any other number.
    pub fn amount_type(amount: &DataType) -> DataType {
        match amount {
            DataType::Decimal32(_, s)
            | DataType::Decimal64(_, s)
            | DataType::Decimal128(_, s)
            | DataType::Decimal256(_, s) => DataType::Decimal128(38, (*s).clamp(0, 38)),
            _ => DataType::Float64,
        }
    }

    /// Whether amounts of this (read) type are exact decimals.
    pub fn is_decimal(t: &DataType) -> bool {
        matches!(t, DataType::Decimal128(_, _))
    }

    /// A DOUBLE column's values, NULL as 0.
    pub fn floats(values: &ArrayRef) -> Vec<f64> {
        let v = values.as_primitive::<Float64Type>();
        (0..v.len())
            .map(|i| if v.is_null(i) { 0.0 } else { v.value(i) })
            .collect()
    }

    /// A DECIMAL(38, s) column's unscaled values, NULL as 0.
    pub fn decimals(values: &ArrayRef) -> Vec<i128> {
        let v = values.as_primitive::<Decimal128Type>();
        (0..v.len())
            .map(|i| if v.is_null(i) { 0 } else { v.value(i) })
            .collect()
    }

    /// Unscaled values as a DECIMAL array of type `t`; a value beyond its precision (a total
    /// that overflowed, saturated) is an error naming `func`.
    pub fn decimal_array(
        func: &str,
        values: impl IntoIterator<Item = Option<i128>>,
        t: &DataType,
    ) -> Result<ArrayRef> {
        let DataType::Decimal128(p, s) = t else {
            return Err(DataFusionError::Internal(format!(
                "{func}: expected a DECIMAL type, got {t}"
            )));
        };
        let a = Decimal128Array::from_iter(values).with_precision_and_scale(*p, *s)?;
        a.validate_decimal_precision(*p).map_err(|_| {
            DataFusionError::Execution(format!(
                "{func}: a total exceeds {t}; cast the amount to DOUBLE"
            ))
        })?;
        Ok(Arc::new(a))
    }
}
