//! `retention(cond1, ..., condN) -> LIST<UINT8>`, ClickHouse-compatible.
//!
//! Kernel: a group's state is one `u32` bit set, bit `i` set when `cond(i+1)` was true for some row.
//! Merge is bitwise OR (associative, commutative, idempotent), so the result cannot depend on row
//! order or on how rows are split across partitions.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, UInt8Array, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt32Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use crate::support::doc::aggregate_doc;
use crate::support::{check_arity, resize, row_mask, take};

pub use crate::support::MAX_CONDITIONS;

/// The pure kernel.
pub mod kernel;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Retention {
    signature: Signature,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "ClickHouse-compatible retention: element 0 is 1 if `cond1` is true for any row of the group; \
         element i (i >= 1) is 1 if `cond1` is true for some row AND `cond(i+1)` is true for some row. \
         2 to 32 boolean conditions; NULL counts as false; an empty group gives all zeros.",
        "retention(cond1, cond2, ..., condN)",
        "SELECT customer_id,\n       retention(order_ts < TIMESTAMP '2024-02-01',\n                 order_ts >= TIMESTAMP '2024-02-01' AND order_ts < TIMESTAMP '2024-03-01') AS r\nFROM purchases GROUP BY customer_id;\n-- r = [1, 1] for a customer who bought in January and again in February",
    )
    .with_argument("condN", "BOOLEAN expression evaluated on each row")
    .build()
});

fn list_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::UInt8, true))
}

/// Builds the `LIST<UINT8>` result for a slice of states.
fn finish_list(states: &[u32], n: usize) -> ArrayRef {
    let mut values = Vec::with_capacity(states.len() * n);
    for s in states {
        kernel::finish(*s, n, &mut values);
    }
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(n, states.len()));
    Arc::new(ListArray::new(
        list_field(),
        offsets,
        Arc::new(UInt8Array::from(values)),
        None,
    ))
}

/// Calls `f(row, bits)` for every row with at least one true (non-NULL, unfiltered) condition.
fn for_each_true(
    values: &[ArrayRef],
    filter: Option<&BooleanArray>,
    mut f: impl FnMut(usize, u32),
) {
    let mask = row_mask(filter, &[]);
    for (i, v) in values.iter().enumerate() {
        let b = v.as_boolean();
        let valid = row_mask(None, &[b.nulls(), mask.as_ref()]);
        let bits = match valid {
            Some(n) => b.values() & n.inner(),
            None => b.values().clone(),
        };
        for row in bits.set_indices() {
            f(row, 1u32 << i);
        }
    }
}

impl AggregateUDFImpl for Retention {
    fn name(&self) -> &str {
        "retention"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(
            "retention",
            "cond1, cond2, ..., condN",
            arg_types.len(),
            2,
            MAX_CONDITIONS,
        )?;
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                DataType::Boolean | DataType::Null => Ok(DataType::Boolean),
                other => plan_err!(
                    "retention: argument cond{} must be BOOLEAN, got {other}",
                    i + 1
                ),
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(list_field()))
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[bits]", args.name),
            DataType::UInt32,
            false,
        ))])
    }

    crate::support::grouped_accumulators!(groups);

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&finish_list(&[0], 2), 0)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

fn groups(_udaf: &Retention, args: &AccumulatorArgs) -> Result<RetentionGroups> {
    Ok(RetentionGroups {
        states: vec![],
        n: args.exprs.len(),
    })
}

struct RetentionGroups {
    states: Vec<u32>,
    n: usize,
}

impl GroupsAccumulator for RetentionGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        resize(&mut self.states, total_num_groups, 0);
        let states = &mut self.states;
        for_each_true(values, opt_filter, |row, bit| {
            kernel::update(&mut states[group_indices[row]], bit)
        });
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        resize(&mut self.states, total_num_groups, 0);
        let s = values[0].as_primitive::<UInt32Type>();
        for (g, v) in group_indices.iter().zip(s.values().iter()) {
            self.states[*g] = kernel::merge(self.states[*g], *v);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let states = take(emit_to, &mut self.states);
        Ok(finish_list(&states, self.n))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let states = take(emit_to, &mut self.states);
        Ok(vec![Arc::new(UInt32Array::from(states))])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map(|v| v.len()).unwrap_or(0);
        let mut states = vec![0u32; rows];
        for_each_true(values, opt_filter, |row, bit| {
            kernel::update(&mut states[row], bit)
        });
        Ok(vec![Arc::new(UInt32Array::from(states))])
    }

    fn size(&self) -> usize {
        self.states.capacity() * size_of::<u32>()
    }
}

pub fn retention_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(Retention::default()))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;
    use proptest::prelude::*;

    fn fin(state: u32, n: usize) -> Vec<u8> {
        let mut v = vec![];
        finish(state, n, &mut v);
        v
    }

    #[test]
    fn clickhouse_semantics() {
        assert_eq!(fin(0, 3), vec![0, 0, 0]);
        // cond2 and cond3 without cond1: nothing counts.
        assert_eq!(fin(0b110, 3), vec![0, 0, 0]);
        assert_eq!(fin(0b101, 3), vec![1, 0, 1]);
        assert_eq!(fin(0b111, 3), vec![1, 1, 1]);
        assert_eq!(fin(u32::MAX, 32), vec![1; 32]);
    }

    proptest! {
        #[test]
        fn merge_laws(rows in proptest::collection::vec(any::<u32>(), 0..40), split in 0usize..40) {
            let split = split.min(rows.len());
            let fold = |rs: &[u32]| rs.iter().fold(0u32, |mut s, r| { update(&mut s, *r); s });
            let whole = fold(&rows);
            let (a, b) = rows.split_at(split);
            prop_assert_eq!(merge(fold(a), fold(b)), whole);
            prop_assert_eq!(merge(fold(b), fold(a)), whole);
            let mut rev = rows.clone();
            rev.reverse();
            prop_assert_eq!(fold(&rev), whole);
        }
    }
}
