//! The adapter shared by the event-sequence aggregates (`window_funnel`, `sequence_match`, ...):
//! each group's events are (timestamp, tag) pairs kept in one flat [`GroupLog`]; partial states
//! are two lists per group; the aggregate itself only says which events a batch holds and what a
//! group's events answer.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt32Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};

use crate::common::{GroupLog, list_array};
use crate::time::{TickUnit, ticks_of};

/// An aggregate over each group's (timestamp, tag) events.
pub trait EventAggregate: Send + Sync + 'static {
    /// Feeds every event of the batch to `f(row, ts, tag)`.
    fn events(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        f: &mut dyn FnMut(usize, i64, u32),
    ) -> Result<()>;

    /// The answers of groups `0..offsets.len() - 1`, whose events are
    /// `flat[offsets[g]..offsets[g + 1]]` in no particular order (the aggregate sorts them as it needs).
    fn finish(&self, offsets: &[usize], flat: &mut [(i64, u32)]) -> Result<ArrayRef>;
}

/// Walks the rows of `(ts, cond1, ..., condN)` arguments (`values[1]` the timestamps,
/// `values[2..2 + conditions]` the conditions) that have a timestamp and pass the FILTER, calling
/// `f(row, ticks, mask)` with the bitmask of the conditions that hold (NULL counts as false).
pub fn for_each_condition_row(
    values: &[ArrayRef],
    unit: TickUnit,
    conditions: usize,
    filter: Option<&BooleanArray>,
    mut f: impl FnMut(usize, i64, u32),
) -> Result<()> {
    let (ts, ts_nulls) = ticks_of(&values[1], unit)?;
    let conds: Vec<&BooleanArray> = values[2..2 + conditions]
        .iter()
        .map(|v| v.as_boolean())
        .collect();
    for row in 0..ts.len() {
        if ts_nulls.as_ref().is_some_and(|m| m.is_null(row))
            || filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
        {
            continue;
        }
        let mut mask = 0u32;
        for (k, c) in conds.iter().enumerate() {
            if c.is_valid(row) && c.value(row) {
                mask |= 1 << k;
            }
        }
        f(row, ts[row], mask);
    }
    Ok(())
}

/// The partial-state fields: timestamps and tags, one list each per group.
pub fn state_fields(name: &str) -> Vec<FieldRef> {
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, false)));
    vec![
        Arc::new(Field::new(
            format!("{name}[ts]"),
            list(DataType::Int64),
            true,
        )),
        Arc::new(Field::new(
            format!("{name}[tag]"),
            list(DataType::UInt32),
            true,
        )),
    ]
}

fn state_arrays(offsets: &[usize], flat: &[(i64, u32)]) -> Vec<ArrayRef> {
    vec![
        list_array(
            offsets,
            Arc::new(Int64Array::from_iter_values(flat.iter().map(|e| e.0))),
        ),
        list_array(
            offsets,
            Arc::new(UInt32Array::from_iter_values(flat.iter().map(|e| e.1))),
        ),
    ]
}

/// The groups accumulator of an [`EventAggregate`].
pub struct EventGroups<A> {
    agg: A,
    log: GroupLog<(i64, u32)>,
    groups: usize,
}

impl<A: EventAggregate> EventGroups<A> {
    pub fn new(agg: A) -> Self {
        Self {
            agg,
            log: GroupLog::default(),
            groups: 0,
        }
    }

    fn merge_states(&mut self, values: &[ArrayRef], group_of: impl Fn(usize) -> usize) {
        let ts: &ListArray = values[0].as_list::<i32>();
        let tags: &ListArray = values[1].as_list::<i32>();
        let tv = ts.values().as_primitive::<Int64Type>();
        let gv = tags.values().as_primitive::<UInt32Type>();
        let offsets = ts.value_offsets();
        for row in 0..ts.len() {
            let g = group_of(row);
            for k in offsets[row] as usize..offsets[row + 1] as usize {
                self.log.push(g, (tv.value(k), gv.value(k)));
            }
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> (Vec<usize>, Vec<(i64, u32)>) {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(k) => k,
        };
        self.groups -= n;
        self.log.take(emit_to, n)
    }
}

impl<A: EventAggregate> GroupsAccumulator for EventGroups<A> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let log = &mut self.log;
        self.agg.events(values, opt_filter, &mut |row, ts, tag| {
            log.push(group_indices[row], (ts, tag))
        })
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        self.merge_states(values, |row| group_indices[row]);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (offsets, mut flat) = self.take(emit_to);
        self.agg.finish(&offsets, &mut flat)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (offsets, flat) = self.take(emit_to);
        Ok(state_arrays(&offsets, &flat))
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let n = values.first().map_or(0, |v| v.len());
        let mut log = GroupLog::default();
        self.agg.events(values, opt_filter, &mut |row, ts, tag| {
            log.push(row, (ts, tag))
        })?;
        let (offsets, flat) = log.take(EmitTo::All, n);
        Ok(state_arrays(&offsets, &flat))
    }

    fn size(&self) -> usize {
        self.log.size()
    }
}

/// The single-group accumulator: the groups accumulator with one group; evaluating does not
/// consume the events (window frames evaluate repeatedly).
pub struct EventAccumulator<A>(pub EventGroups<A>);

impl<A> std::fmt::Debug for EventAccumulator<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventAccumulator").finish()
    }
}

impl<A: EventAggregate> Accumulator for EventAccumulator<A> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let groups = vec![0usize; values.first().map_or(0, |v| v.len())];
        GroupsAccumulator::update_batch(&mut self.0, values, &groups, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0.groups = 1;
        self.0.merge_states(states, |_| 0);
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let flat = self.0.log.values().to_vec();
        state_arrays(&[0, flat.len()], &flat)
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut flat = self.0.log.values().to_vec();
        ScalarValue::try_from_array(&self.0.agg.finish(&[0, flat.len()], &mut flat)?, 0)
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.0.size()
    }
}
