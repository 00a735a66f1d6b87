//! `sequence_next_node(direction, base, ts, event_column, base_condition, event1, ...)`:
//! ClickHouse's `sequenceNextNode(direction, base)(ts, event_column, base_condition, event1, ...)`,
//! the value of the event that follows (or, backward, precedes) a chain of events.
//!
//! Kernel: a group's events sorted by time, each with the bitmask of the chain's conditions it
//! matches and whether it may be the base; [`kernel::next_node`] finds the base event, checks that
//! the chain's events follow it one by one, and returns the position of the event after them.
//!
//! Adapter: unlike the other event aggregates an event carries a value (`event_column`), so the
//! log keeps one string buffer beside the (group, timestamp, mask) vectors: a row costs its
//! bytes appended to the buffer and no allocation of its own. Partial states are per-group lists
//! of timestamps, masks and values.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, LargeStringArray, LargeStringBuilder,
    ListArray, StringBuilder, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, UInt32Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use crate::support::doc::aggregate_doc;
use crate::support::time::{TickUnit, check_temporal};
use crate::support::{counts_to_offsets, group_offsets, is_string, list_array, list_state_fields};

/// Most event conditions (bit 0 of a row's mask is `base_condition`).
pub const MAX_EVENTS: usize = crate::support::MAX_CONDITIONS - 1;

pub mod kernel;

use kernel::{Base, Direction, Node};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "The value of `event_column` at the event that follows a chain of events, as ClickHouse's \
         `sequenceNextNode(direction, base)(ts, event_column, base_condition, event1, ...)`: the natural \"what do \
         customers do next after A then B\" question. Every row with a `ts` and an `event_column` value is an event; \
         a group's events are ordered by `ts` (ties by value, then by the conditions they match, so the order never \
         depends on row order). The base event is the first event (`base` 'head'), the last ('tail'), or the first / \
         last event matching `event1` ('first_match', 'last_match'), and it must satisfy `base_condition`. From the \
         base, going `direction` 'forward' (or 'backward'), the k-th event must match event k for every event \
         condition; the answer is the value of the event after them (before them, backward). NULL when there is no \
         base, the chain breaks, or no event is left. `event_column` is a string (cast other types); up to 31 event \
         conditions; NULL conditions are false; rows with a NULL `ts` or `event_column` are ignored. ClickHouse \
         marks the function experimental; its semantics here are those of its source (ClickHouse 26).",
        "sequence_next_node(direction, base, ts, event_column, base_condition, event1, ..., eventN)",
        "SELECT id, sequence_next_node('forward', 'head', dt, page, page = 'A', page = 'A', page = 'B') AS next_page\nFROM (VALUES (1, TIMESTAMP '2024-01-01 00:00:01', 'A'), (1, TIMESTAMP '2024-01-01 00:00:02', 'B'),\n             (1, TIMESTAMP '2024-01-01 00:00:03', 'C'), (1, TIMESTAMP '2024-01-01 00:00:04', 'D')) AS f(id, dt, page)\nGROUP BY id;",
    )
    .with_argument("direction", "constant 'forward' or 'backward'")
    .with_argument("base", "constant 'head', 'tail', 'first_match' or 'last_match'")
    .with_argument("ts", "TIMESTAMP (any unit) or DATE of each event")
    .with_argument("event_column", "string value returned for the next event")
    .with_argument("base_condition", "BOOLEAN condition the base event must satisfy")
    .with_argument("event1, ..., eventN", "BOOLEAN conditions of the chain (1 to 31)")
    .build()
});

const USAGE: &str = "direction, base, ts, event_column, base_condition, event1, ...";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SequenceNextNode {
    signature: Signature,
}

impl Default for SequenceNextNode {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn constant_str(expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Option<String> {
    crate::support::constant(expr).and_then(|v| v.try_as_str().flatten().map(str::to_string))
}

impl SequenceNextNode {
    fn groups(&self, args: &AccumulatorArgs) -> Result<NextNodeGroups> {
        let name = "sequence_next_node";
        let parse = |i: usize, what: &str| {
            constant_str(&args.exprs[i]).ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!(
                    "{name}: argument '{what}' must be a constant string"
                ))
            })
        };
        let direction = Direction::parse(&parse(0, "direction")?)
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("{name}: {e}")))?;
        let base = Base::parse(&parse(1, "base")?)
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("{name}: {e}")))?;
        Ok(NextNodeGroups {
            unit: TickUnit::common(&[args.expr_fields[2].data_type()])?,
            events: args.exprs.len() - 5,
            direction,
            base,
            log: Log::default(),
            groups: 0,
        })
    }
}

impl AggregateUDFImpl for SequenceNextNode {
    fn name(&self) -> &str {
        "sequence_next_node"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let n = arg_types.len();
        if n < 6 || n - 5 > MAX_EVENTS {
            return plan_err!("{name} takes {USAGE} (1 to {MAX_EVENTS} events), got {n} arguments");
        }
        for (i, what) in [(0, "direction"), (1, "base")] {
            if !is_string(&arg_types[i]) {
                return plan_err!(
                    "{name}: argument '{what}' must be a string, got {}",
                    arg_types[i]
                );
            }
        }
        check_temporal(name, "ts", &arg_types[2])?;
        if !(is_string(&arg_types[3]) || arg_types[3].is_null()) {
            return plan_err!(
                "{name}: argument 'event_column' must be a string, got {}; cast it, e.g. CAST(col AS VARCHAR)",
                arg_types[3]
            );
        }
        let mut out = vec![
            arg_types[0].clone(),
            arg_types[1].clone(),
            arg_types[2].clone(),
            DataType::Utf8,
        ];
        for (i, t) in arg_types[4..].iter().enumerate() {
            if !matches!(t, DataType::Boolean | DataType::Null) {
                let what = if i == 0 {
                    "base_condition".to_string()
                } else {
                    format!("event{i}")
                };
                return plan_err!("{name}: argument '{what}' must be BOOLEAN, got {t}");
            }
            out.push(DataType::Boolean);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(list_state_fields(
            args.name,
            &[
                ("ts", DataType::Int64),
                ("mask", DataType::UInt32),
                ("value", DataType::LargeUtf8),
            ],
        ))
    }

    crate::support::grouped_accumulators!(Self::groups);

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Every group's events: (group, timestamp, mask) side by side, and each event's value as a
/// range of one byte buffer. Bit 0 of a mask is `base_condition`, bit k event k.
#[derive(Debug, Default)]
struct Log {
    groups: Vec<u32>,
    ts: Vec<i64>,
    masks: Vec<u32>,
    /// End of each event's value in `bytes` (its start is the previous end).
    ends: Vec<usize>,
    bytes: Vec<u8>,
}

impl Log {
    #[inline]
    fn push(&mut self, group: usize, ts: i64, mask: u32, value: &[u8]) {
        self.groups.push(group as u32);
        self.ts.push(ts);
        self.masks.push(mask);
        self.bytes.extend_from_slice(value);
        self.ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn size(&self) -> usize {
        self.groups.capacity() * 4
            + self.ts.capacity() * 8
            + self.masks.capacity() * 4
            + self.ends.capacity() * 8
            + self.bytes.capacity()
    }

    /// Takes the events of the first `n` groups out (all of them for `EmitTo::All`); the rest
    /// are renumbered from 0.
    fn take(&mut self, emit_to: EmitTo, n: usize) -> Log {
        match emit_to {
            EmitTo::All => std::mem::take(self),
            EmitTo::First(_) => {
                let (mut mine, mut rest) = (Log::default(), Log::default());
                for i in 0..self.len() {
                    let g = self.groups[i] as usize;
                    let (ts, mask, value) = (self.ts[i], self.masks[i], self.value(i));
                    if g < n {
                        mine.push(g, ts, mask, value);
                    } else {
                        rest.push(g - n, ts, mask, value);
                    }
                }
                *self = rest;
                mine
            }
        }
    }

    /// The events' positions grouped by group (of `n`): (offsets, positions).
    fn by_group(&self, n: usize) -> (Vec<usize>, Vec<usize>) {
        let offsets = group_offsets(&self.groups, n);
        let mut next = offsets[..n].to_vec();
        let mut order = vec![0usize; self.len()];
        for (i, &g) in self.groups.iter().enumerate() {
            order[next[g as usize]] = i;
            next[g as usize] += 1;
        }
        (offsets, order)
    }
}

struct NextNodeGroups {
    unit: TickUnit,
    events: usize,
    direction: Direction,
    base: Base,
    log: Log,
    groups: usize,
}

impl NextNodeGroups {
    fn take(&mut self, emit_to: EmitTo) -> (Log, usize) {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(k) => k,
        };
        self.groups -= n;
        (self.log.take(emit_to, n), n)
    }

    /// Calls `f(row, ticks, mask, value)` for every row with a timestamp and a value that
    /// passes the filter.
    fn rows(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut f: impl FnMut(usize, i64, u32, &[u8]),
    ) -> Result<()> {
        let strings = values[3].as_string::<i32>();
        super::for_each_condition_row(
            &values[2],
            &values[4..],
            self.unit,
            filter,
            |row, ts, mask| {
                if strings.is_valid(row) {
                    f(row, ts, mask, strings.value(row).as_bytes());
                }
            },
        )
    }
}

impl GroupsAccumulator for NextNodeGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let mut log = std::mem::take(&mut self.log);
        let r = self.rows(values, opt_filter, |row, ts, mask, value| {
            log.push(group_indices[row], ts, mask, value)
        });
        self.log = log;
        r
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let ts: &ListArray = values[0].as_list::<i32>();
        let masks: &ListArray = values[1].as_list::<i32>();
        let strings: &ListArray = values[2].as_list::<i32>();
        let (tv, mv) = (
            ts.values().as_primitive::<Int64Type>(),
            masks.values().as_primitive::<UInt32Type>(),
        );
        let sv: &LargeStringArray = strings.values().as_string::<i64>();
        let offsets = ts.offsets();
        for (row, &g) in group_indices.iter().enumerate() {
            for k in offsets[row] as usize..offsets[row + 1] as usize {
                self.log
                    .push(g, tv.value(k), mv.value(k), sv.value(k).as_bytes());
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (log, n) = self.take(emit_to);
        let (offsets, mut order) = log.by_group(n);
        let mut out = StringBuilder::with_capacity(n, 0);
        let mut nodes: Vec<Node> = vec![];
        for g in 0..n {
            let idx = &mut order[offsets[g]..offsets[g + 1]];
            // Time order; ties by value, then mask, so the answer never depends on row order.
            idx.sort_unstable_by(|&a, &b| {
                log.ts[a]
                    .cmp(&log.ts[b])
                    .then_with(|| log.value(a).cmp(log.value(b)))
                    .then_with(|| log.masks[a].cmp(&log.masks[b]))
            });
            nodes.clear();
            nodes.extend(idx.iter().map(|&i| Node {
                mask: log.masks[i] >> 1,
                can_be_base: log.masks[i] & 1 != 0,
            }));
            match kernel::next_node(&nodes, self.events, self.direction, self.base) {
                // Values were valid UTF-8 strings when logged.
                Some(k) => out.append_value(
                    std::str::from_utf8(log.value(idx[k])).expect("logged from a string"),
                ),
                None => out.append_null(),
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (log, n) = self.take(emit_to);
        let (offsets, order) = log.by_group(n);
        let ts: Vec<i64> = order.iter().map(|&i| log.ts[i]).collect();
        let masks: Vec<u32> = order.iter().map(|&i| log.masks[i]).collect();
        let mut values = LargeStringBuilder::with_capacity(order.len(), log.bytes.len());
        for &i in &order {
            values.append_value(std::str::from_utf8(log.value(i)).expect("logged from a string"));
        }
        Ok(state_lists(&offsets, ts, masks, values))
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row is its own group; rows arrive in increasing order.
        let n = values.first().map_or(0, |v| v.len());
        let mut offsets = vec![0usize; n + 1];
        let (mut ts, mut masks) = (vec![], vec![]);
        let mut strings = LargeStringBuilder::new();
        self.rows(values, opt_filter, |row, t, mask, value| {
            offsets[row + 1] += 1;
            ts.push(t);
            masks.push(mask);
            strings.append_value(std::str::from_utf8(value).expect("from a string"));
        })?;
        counts_to_offsets(&mut offsets);
        Ok(state_lists(&offsets, ts, masks, strings))
    }

    fn size(&self) -> usize {
        self.log.size()
    }
}

/// The partial state: per group (`offsets`), the events' timestamps, masks and values.
fn state_lists(
    offsets: &[usize],
    ts: Vec<i64>,
    masks: Vec<u32>,
    mut values: LargeStringBuilder,
) -> Vec<ArrayRef> {
    vec![
        list_array(offsets, Arc::new(Int64Array::from(ts))),
        list_array(offsets, Arc::new(UInt32Array::from(masks))),
        list_array(offsets, Arc::new(values.finish())),
    ]
}

pub fn sequence_next_node_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SequenceNextNode::default()))
}

/// The adapter end to end: rows split over partial accumulators (each group in several), their
/// states merged into a final one and emitted in two parts, and one accumulator over everything
/// in any row order; every group's answer must be the kernel's over its events in time order.
#[cfg(test)]
mod adapter_tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampSecondArray};
    use datafusion::arrow::datatypes::TimeUnit;

    const GROUPS: usize = 5;
    const EVENTS: usize = 2;
    const PAGES: [&str; 3] = ["a", "b", "c"];

    fn acc(direction: Direction, base: Base) -> NextNodeGroups {
        NextNodeGroups {
            unit: TickUnit::common(&[&DataType::Timestamp(TimeUnit::Second, None)]).unwrap(),
            events: EVENTS,
            direction,
            base,
            log: Log::default(),
            groups: 0,
        }
    }

    /// Rows (group, ts, page); base_condition page = 'a', event1 page = 'a', event2 page = 'b'.
    fn batch(rows: &[(usize, i64, usize)]) -> (Vec<ArrayRef>, Vec<usize>) {
        let page = |r: &(usize, i64, usize)| PAGES[r.2];
        let cond = |p: &str| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(page(r) == p)),
            ))
        };
        let values: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["forward"; rows.len()])),
            Arc::new(StringArray::from(vec!["head"; rows.len()])),
            Arc::new(TimestampSecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(page))),
            cond("a"),
            cond("a"),
            cond("b"),
        ];
        (values, rows.iter().map(|r| r.0).collect())
    }

    fn strings(out: &[ArrayRef]) -> Vec<Option<String>> {
        out.iter()
            .flat_map(|a| {
                let s = a.as_string::<i32>();
                (0..s.len())
                    .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn want(rows: &[(usize, i64, usize)], d: Direction, b: Base) -> Vec<Option<String>> {
        (0..GROUPS)
            .map(|g| {
                let mut ev: Vec<(i64, usize)> = rows
                    .iter()
                    .filter(|r| r.0 == g)
                    .map(|r| (r.1, r.2))
                    .collect();
                ev.sort_by(|x, y| (x.0, PAGES[x.1]).cmp(&(y.0, PAGES[y.1])));
                let nodes: Vec<Node> = ev
                    .iter()
                    .map(|&(_, p)| Node {
                        mask: u32::from(p == 0) | (u32::from(p == 1) << 1),
                        can_be_base: p == 0,
                    })
                    .collect();
                kernel::next_node(&nodes, EVENTS, d, b).map(|k| PAGES[ev[k].1].to_string())
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn answers_do_not_depend_on_how_rows_are_split(
            rows in proptest::collection::vec((0usize..GROUPS, 0i64..8, 0usize..3), 0..40),
            parts in proptest::collection::vec(0usize..3, 40),
            d in 0usize..2,
            b in 0usize..4,
        ) {
            let d = [Direction::Forward, Direction::Backward][d];
            let b = [Base::Head, Base::Tail, Base::FirstMatch, Base::LastMatch][b];
            let expected = want(&rows, d, b);
            let fresh = || {
                let mut a = acc(d, b);
                let (v, g) = batch(&[]);
                a.update_batch(&v, &g, None, GROUPS).unwrap();
                a
            };
            // One accumulator, rows reversed, in batches of 7.
            let mut single = fresh();
            let reversed: Vec<_> = rows.iter().rev().cloned().collect();
            for chunk in reversed.chunks(7) {
                let (v, g) = batch(chunk);
                single.update_batch(&v, &g, None, GROUPS).unwrap();
            }
            proptest::prop_assert_eq!(strings(&[single.evaluate(EmitTo::All).unwrap()]), expected.clone());
            // Partials (one through convert_to_state), merged, emitted in two parts.
            let mut partials: Vec<NextNodeGroups> = (0..3).map(|_| fresh()).collect();
            let mut fin = acc(d, b);
            let all: Vec<usize> = (0..GROUPS).collect();
            for (row, part) in rows.iter().zip(&parts) {
                let (v, g) = batch(std::slice::from_ref(row));
                if *part == 2 {
                    let state = partials[2].convert_to_state(&v, None).unwrap();
                    fin.merge_batch(&state, &g, GROUPS).unwrap();
                } else {
                    partials[*part].update_batch(&v, &g, None, GROUPS).unwrap();
                }
            }
            for p in &mut partials[..2] {
                let first = p.state(EmitTo::First(2)).unwrap();
                fin.merge_batch(&first, &all[..2], GROUPS).unwrap();
                let rest = p.state(EmitTo::All).unwrap();
                fin.merge_batch(&rest, &all[2..], GROUPS).unwrap();
            }
            let first = fin.evaluate(EmitTo::First(3)).unwrap();
            let rest = fin.evaluate(EmitTo::All).unwrap();
            proptest::prop_assert_eq!(strings(&[first, rest]), expected);
        }
    }
}
