//! `window_funnel(window_seconds, ts, cond1, ..., condN [, mode])` and
//! `window_funnel_times(...)`: ClickHouse's `windowFunnel(window[, mode...])(ts, cond1, ...)`.
//!
//! Kernel: a group's events as (timestamp, condition index), index 0 for a row matching no
//! condition (recorded only in `strict_order` mode, where it interrupts the chain). Evaluation sorts
//! them by (timestamp, index), as ClickHouse's stable sort of its (timestamp, index) pairs does,
//! and walks them once keeping, per level, the first and last timestamp of the chain that reached
//! it (and, for `window_funnel_times`, the chain's step timestamps).
//!
//! Adapter: one flat log of (group, timestamp, index) entries; rows matching no condition cost
//! nothing outside `strict_order`. Partial states are per-group lists.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;

use super::{self as events, EventAggregate, EventGroups, GroupEvents};
use crate::support::doc::aggregate_doc;
use crate::support::time::{TickUnit, check_temporal};
use crate::support::{is_string, list_array};

/// Most conditions a funnel takes (as ClickHouse).
/// The most steps a funnel has (one bit each in an event's condition mask).
pub const MAX_STEPS: usize = crate::support::MAX_CONDITIONS;

pub mod kernel;

use kernel::Modes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunnelOutput {
    Level,
    Times,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnel {
    output: FunnelOutput,
    signature: Signature,
}

const USAGE: &str = "window_seconds, ts, cond1, ..., condN [, mode]";

static LEVEL_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "The funnel level a group (usually a customer) reached: the largest k such that events matching cond1, ..., \
         condk occur in that order with every step within `window_seconds` of the chain's first step (inclusive), \
         exactly as ClickHouse's `windowFunnel(window[, mode])(ts, cond1, ...)`: a row matching several conditions \
         counts as one event per condition, events are sorted by timestamp then condition index, a repeated first \
         step starts a new chain (the levels already reached stay), and 1 to 32 conditions are allowed. `mode` (a \
         constant, several comma-separated): `strict_order` (an event matching no condition, or a later step before \
         its predecessor, stops the search), `strict_deduplication` (a repeated step stops it), `strict_increase` \
         (each step strictly after the previous one), `allow_reentry` (with strict_order: early later steps are \
         skipped instead of stopping), `strict_once` (a row counts at most once in a chain, even when it matches \
         several steps; rows at the same instant are taken in order of the set of conditions they match, where \
         ClickHouse takes them in arrival order). Beyond ClickHouse: `ts` may be a timestamp of any unit or a DATE (ClickHouse \
         rejects 64-bit timestamps), and `window_seconds` may be fractional. NULL conditions count as false; rows \
         with a NULL `ts` are ignored. Memory: like ClickHouse, \
         a group keeps the events matching a condition until it is evaluated, except that in the default mode a \
         group that has reached the last step is settled (more events cannot lower its level) and keeps nothing \
         more; the strict modes and `window_funnel_times` keep every matching event (in `strict_once` mode, one per \
         matching row).",
        "window_funnel(window_seconds, ts, cond1, ..., condN [, mode])",
        "SELECT level, count(*) AS customers FROM (\n  SELECT customer_id, window_funnel(7 * 86400, event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase') AS level\n  FROM (VALUES (1, TIMESTAMP '2024-01-01 10:00:00', 'visit'), (1, TIMESTAMP '2024-01-02 09:00:00', 'cart'),\n               (1, TIMESTAMP '2024-01-03 09:00:00', 'purchase'), (2, TIMESTAMP '2024-01-01 10:00:00', 'visit'))\n       AS e(customer_id, event_ts, event_type)\n  GROUP BY customer_id)\nGROUP BY level ORDER BY level;",
    )
    .with_argument("window_seconds", "constant number of seconds the chain may span from its first step")
    .with_argument("ts", "TIMESTAMP (any unit, with or without time zone) or DATE of each event")
    .with_argument("cond1, ..., condN", "BOOLEAN step conditions, in funnel order (1 to 32)")
    .with_argument("mode", "optional constant string: strict_order, strict_deduplication, strict_increase, strict_once, allow_reentry (comma-separated)")
    .build()
});

static TIMES_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Like `window_funnel`, but returns when each reached step happened: a list of `level` timestamps, those of \
         the chain that reached the level (empty for level 0). Time between steps, e.g. `t[2] - t[1]`, follows.",
        "window_funnel_times(window_seconds, ts, cond1, ..., condN [, mode])",
        "SELECT customer_id, window_funnel_times(86400, event_ts, event_type = 'visit', event_type = 'cart') AS steps\nFROM (VALUES (1, TIMESTAMP '2024-01-01 10:00:00', 'visit'), (1, TIMESTAMP '2024-01-01 12:30:00', 'cart'))\n     AS e(customer_id, event_ts, event_type)\nGROUP BY customer_id;",
    )
    .with_argument("window_seconds", "constant number of seconds")
    .with_argument("ts", "TIMESTAMP or DATE of each event")
    .with_argument("cond1, ..., condN", "BOOLEAN step conditions")
    .with_argument("mode", "optional constant mode string, as window_funnel")
    .build()
});

/// The constant window in seconds (>= 0) of argument 0.
fn window_seconds(name: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<f64> {
    let Some(value) = crate::support::constant(expr) else {
        return plan_err!("{name}: argument 'window_seconds' must be a constant");
    };
    match value.cast_to(&DataType::Float64)? {
        ScalarValue::Float64(Some(w)) if w >= 0.0 && w.is_finite() => Ok(w),
        _ => plan_err!("{name}: argument 'window_seconds' must be a number >= 0"),
    }
}

fn mode_of(name: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<Modes> {
    let Some(value) = crate::support::constant(expr) else {
        return plan_err!("{name}: argument 'mode' must be a constant string");
    };
    match value.try_as_str() {
        Some(Some(s)) => Modes::parse(s).or_else(|e| plan_err!("{name}: {e}")),
        _ => plan_err!("{name}: argument 'mode' must be a constant string"),
    }
}

impl WindowFunnel {
    pub fn new(output: FunnelOutput) -> Self {
        Self {
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn groups(&self, args: &AccumulatorArgs) -> Result<EventGroups<Funnel>> {
        let name = self.name();
        let n = args.exprs.len();
        let has_mode = is_string(args.expr_fields[n - 1].data_type());
        let steps = n - 2 - usize::from(has_mode);
        let unit = TickUnit::common(&[args.expr_fields[1].data_type()])?;
        let w = window_seconds(name, &args.exprs[0])?;
        let window = (w * unit.per_second() as f64).round().min(i64::MAX as f64) as i64;
        let modes = if has_mode {
            mode_of(name, &args.exprs[n - 1])?
        } else {
            Modes::default()
        };
        Ok(EventGroups::new(Funnel {
            output: self.output,
            unit,
            ts_type: args.expr_fields[1].data_type().clone(),
            steps,
            window,
            modes,
        }))
    }
}

/// The list element type of `window_funnel_times`: the timestamp type of `ts` (DATE as seconds).
pub(super) fn times_type(ts: &DataType) -> DataType {
    match ts {
        DataType::Timestamp(u, tz) => DataType::Timestamp(*u, tz.clone()),
        DataType::Date64 => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => DataType::Timestamp(TimeUnit::Second, None),
    }
}

impl AggregateUDFImpl for WindowFunnel {
    fn name(&self) -> &str {
        match self.output {
            FunnelOutput::Level => "window_funnel",
            FunnelOutput::Times => "window_funnel_times",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let n = arg_types.len();
        if n < 3 {
            return plan_err!("{name} takes at least 3 arguments ({USAGE}), got {n}");
        }
        if !(arg_types[0].is_numeric() || arg_types[0].is_null()) {
            return plan_err!(
                "{name}: argument 'window_seconds' must be numeric, got {}",
                arg_types[0]
            );
        }
        check_temporal(name, "ts", &arg_types[1])?;
        let has_mode = is_string(&arg_types[n - 1]);
        let conds = &arg_types[2..n - usize::from(has_mode)];
        if conds.is_empty() || conds.len() > MAX_STEPS {
            return plan_err!(
                "{name} takes 1 to {MAX_STEPS} conditions, got {}",
                conds.len()
            );
        }
        let mut out = vec![DataType::Float64, arg_types[1].clone()];
        for (i, t) in conds.iter().enumerate() {
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return plan_err!("{name}: condition {} must be BOOLEAN, got {t}", i + 1);
            }
            out.push(DataType::Boolean);
        }
        if has_mode {
            out.push(arg_types[n - 1].clone());
        }
        Ok(out)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            FunnelOutput::Level => DataType::Int32,
            FunnelOutput::Times => DataType::List(Arc::new(Field::new_list_field(
                times_type(&arg_types[1]),
                false,
            ))),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(events::state_fields(args.name))
    }

    crate::support::grouped_accumulators!(Self::groups);

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.output {
            FunnelOutput::Level => &LEVEL_DOC,
            FunnelOutput::Times => &TIMES_DOC,
        })
    }
}

/// The funnel over a group's (timestamp, step) events.
struct Funnel {
    output: FunnelOutput,
    unit: TickUnit,
    ts_type: DataType,
    steps: usize,
    window: i64,
    modes: Modes,
}

impl EventAggregate for Funnel {
    type Progress = kernel::Progress;

    /// One event per matching condition (tag = its 1-based index), and a tag-0 event for a row
    /// matching none in strict_order mode; in strict_once mode one event per row, tagged with
    /// its conditions' bitmask.
    fn events(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        f: &mut impl FnMut(usize, i64, u32),
    ) -> Result<()> {
        let conditions = &values[2..2 + self.steps];
        events::for_each_condition_row(
            &values[1],
            conditions,
            self.unit,
            filter,
            |row, ts, mask| {
                if self.modes.strict_once {
                    // One event per row, tagged with the conditions it matches: strict_once must
                    // know which steps came from the same row.
                    if mask != 0 || self.modes.strict_order {
                        f(row, ts, mask);
                    }
                    return;
                }
                if mask == 0 {
                    if self.modes.strict_order {
                        f(row, ts, 0);
                    }
                    return;
                }
                for k in 0..self.steps {
                    if mask & (1 << k) != 0 {
                        f(row, ts, (k + 1) as u32);
                    }
                }
            },
        )
    }

    fn finish(&self, events: &mut GroupEvents<'_>) -> Result<ArrayRef> {
        let n = events.groups();
        let results = (0..n).map(|g| match events.get(g) {
            // Only the level is ever settled early (see `progress_slots`).
            None => (self.steps, vec![]),
            Some(evs) if self.modes.strict_once => {
                kernel::funnel_once(evs, self.steps, self.window, self.modes)
            }
            Some(evs) => kernel::funnel(evs, self.steps, self.window, self.modes),
        });
        Ok(match self.output {
            FunnelOutput::Level => Arc::new(results.map(|(l, _)| l as i32).collect::<Int32Array>()),
            FunnelOutput::Times => {
                let mut offs = vec![0usize];
                let mut times = vec![];
                for (_, t) in results {
                    times.extend(t);
                    offs.push(times.len());
                }
                let values = datafusion::arrow::compute::cast(
                    &(Arc::new(Int64Array::from(times)) as ArrayRef),
                    &times_type(&self.ts_type),
                )?;
                list_array(&offs, values)
            }
        })
    }

    /// The level in the default mode settles once the last step is reached (more events never
    /// lower it); the other modes can lower it, and the step times can still change.
    fn progress_slots(&self) -> usize {
        if self.output == FunnelOutput::Level && self.modes == Modes::default() {
            self.steps
        } else {
            0
        }
    }

    #[inline]
    fn feed(&self, progress: &mut Self::Progress, slots: &mut [i64], ts: i64, tag: u32) -> bool {
        progress.feed(slots, self.window, ts, tag)
    }
}

pub fn window_funnel_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(WindowFunnel::new(
        FunnelOutput::Level,
    )))
}

pub fn window_funnel_times_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(WindowFunnel::new(
        FunnelOutput::Times,
    )))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;

    fn level(events: &[(i64, u32)], steps: usize, window: i64, mode: &str) -> usize {
        funnel(
            &mut events.to_vec(),
            steps,
            window,
            Modes::parse(mode).unwrap(),
        )
        .0
    }

    #[test]
    fn default_mode_by_hand() {
        // A(1) B(2) C(3), window 10: all three.
        assert_eq!(level(&[(1, 1), (2, 2), (3, 3)], 3, 10, ""), 3);
        // Unsorted input: same answer.
        assert_eq!(level(&[(3, 3), (1, 1), (2, 2)], 3, 10, ""), 3);
        // The window edge: exactly window after the first step is inside, one more is not.
        assert_eq!(level(&[(0, 1), (5, 2), (10, 3)], 3, 10, ""), 3);
        assert_eq!(level(&[(0, 1), (5, 2), (11, 3)], 3, 10, ""), 2);
        // Steps out of order: B before A is not a step.
        assert_eq!(level(&[(1, 2), (2, 1), (3, 3)], 3, 10, ""), 1);
        // A restart: A(0) B(1) A(100) C(101), window 10: C is too far from its chain's A(0), and
        // the new chain has no B, so level 2.
        assert_eq!(level(&[(0, 1), (1, 2), (100, 1), (101, 3)], 3, 10, ""), 2);
        // A restart that completes: A(0) A(50) B(55) C(58).
        assert_eq!(level(&[(0, 1), (50, 1), (55, 2), (58, 3)], 3, 10, ""), 3);
        // Ties: one row matching A and B at the same instant counts as A then B.
        assert_eq!(level(&[(5, 2), (5, 1)], 2, 10, ""), 2);
        // One event, nothing, and one condition.
        assert_eq!(level(&[(5, 1)], 3, 10, ""), 1);
        assert_eq!(level(&[], 3, 10, ""), 0);
        assert_eq!(level(&[(9, 1)], 1, 0, ""), 1);
        // No first step: 0.
        assert_eq!(level(&[(1, 2), (2, 3)], 3, 10, ""), 0);
    }

    #[test]
    fn strict_modes_by_hand() {
        // strict_order: A B D C (D matches nothing: step 0) stops at D: 2.
        assert_eq!(
            level(&[(1, 1), (2, 2), (3, 0), (4, 3)], 3, 10, "strict_order"),
            2
        );
        assert_eq!(level(&[(1, 1), (2, 2), (4, 3)], 3, 10, "strict_order"), 3);
        // strict_order: C before B after A stops at level 1.
        assert_eq!(
            level(&[(1, 1), (2, 3), (3, 2), (4, 3)], 3, 10, "strict_order"),
            1
        );
        // ... unless allow_reentry skips the early C.
        assert_eq!(
            level(
                &[(1, 1), (2, 3), (3, 2), (4, 3)],
                3,
                10,
                "strict_order,allow_reentry"
            ),
            3
        );
        // Non-matching rows before the first step are skipped.
        assert_eq!(level(&[(0, 0), (1, 1), (2, 2)], 2, 10, "strict_order"), 2);
        // strict_deduplication: A B B C stops at the repeated B with level 2.
        assert_eq!(
            level(
                &[(1, 1), (2, 2), (3, 2), (4, 3)],
                3,
                10,
                "strict_deduplication"
            ),
            2
        );
        assert_eq!(level(&[(1, 1), (2, 2), (3, 2), (4, 3)], 3, 10, ""), 3);
        // strict_increase: A and B at the same instant do not chain.
        assert_eq!(level(&[(5, 1), (5, 2)], 2, 10, "strict_increase"), 1);
        assert_eq!(level(&[(5, 1), (6, 2)], 2, 10, "strict_increase"), 2);
        // A single condition in strict_order mode still walks the events.
        assert_eq!(level(&[(1, 0), (2, 1)], 1, 10, "strict_order"), 1);
        assert!(Modes::parse("strict").is_err());
        assert!(Modes::parse("allow_reentry").is_err());
        assert!(Modes::parse("fast").is_err());
    }

    fn once(rows: &[(i64, u32)], steps: usize, window: i64, mode: &str) -> usize {
        let m = Modes::parse(&format!("strict_once,{mode}")).unwrap();
        funnel_once(&mut rows.to_vec(), steps, window, m).0
    }

    /// ClickHouse 26's strict_once walk as its source describes it: every partial chain kept,
    /// out-of-window chains dropped only while another remains. The reference the bounded walk
    /// must agree with.
    fn once_reference(rows: &[(i64, u32)], steps: usize, window: i64, m: Modes) -> usize {
        let mut entries = vec![];
        for (row, &(ts, mask)) in rows.iter().enumerate() {
            if mask == 0 {
                entries.push((ts, 0u32, row));
            }
            for k in 0..32 {
                if mask & (1 << k) != 0 {
                    entries.push((ts, k + 1, row));
                }
            }
        }
        if entries.is_empty() {
            return 0;
        }
        entries.sort();
        if !m.strict_order && steps == 1 {
            return 1;
        }
        // (first, last, rows used)
        let mut seqs: Vec<Vec<(i64, i64, Vec<usize>)>> = vec![vec![]; steps];
        let reached = |seqs: &Vec<Vec<(i64, i64, Vec<usize>)>>| {
            seqs.iter().take_while(|l| !l.is_empty()).count()
        };
        let mut has_first = false;
        for &(ts, idx, row) in &entries {
            if m.strict_order && idx == 0 {
                if has_first {
                    break;
                }
                continue;
            }
            if idx == 0 {
                continue;
            }
            let e = idx as usize - 1;
            if e == 0 {
                seqs[0].push((ts, ts, vec![row]));
                has_first = true;
            } else if m.strict_deduplication && !seqs[e].is_empty() {
                return reached(&seqs);
            } else if m.strict_order && has_first && seqs[e - 1].is_empty() {
                if m.allow_reentry {
                    continue;
                }
                return reached(&seqs);
            } else {
                let mut i = 0;
                while i < seqs[e - 1].len() {
                    let (first, last, used) = seqs[e - 1][i].clone();
                    let in_window = ts <= first + window;
                    if !in_window && seqs[e - 1].len() > 1 {
                        seqs[e - 1].remove(i);
                        continue;
                    }
                    let ok = in_window && !used.contains(&row) && (!m.strict_increase || last < ts);
                    if ok {
                        let mut u = used;
                        u.push(row);
                        seqs[e].push((first, ts, u));
                        if e + 1 == steps {
                            return steps;
                        }
                    }
                    i += 1;
                }
            }
        }
        reached(&seqs)
    }

    #[test]
    fn strict_once_by_hand() {
        // ClickHouse's test: one row matching all three conditions is one step, not three.
        assert_eq!(once(&[(2, 0b111)], 3, 10000, ""), 1);
        assert_eq!(level(&[(2, 1), (2, 2), (2, 3)], 3, 10000, ""), 3);
        // ClickHouse's funnel_test2 (window 200; failure matches steps 1 and 2, success step 3):
        // uid 123: F(180) F(220) S(250): F(180) is step 1, F(220) step 2, S step 3.
        let uid123 = [(180, 0b011), (220, 0b011), (250, 0b100)];
        // uid 234: F(100) F(250): two steps from two rows.
        let uid234 = [(100, 0b011), (250, 0b011)];
        // uid 345: S(200) F(210) S(230): F is step 1 only; it cannot also be step 2.
        let uid345 = [(200, 0b100), (210, 0b011), (230, 0b100)];
        for mode in ["", "strict_increase", "strict_deduplication"] {
            assert_eq!(once(&uid123, 3, 200, mode), 3, "{mode}");
            assert_eq!(once(&uid234, 3, 200, mode), 2, "{mode}");
            assert_eq!(once(&uid345, 3, 200, mode), 1, "{mode}");
        }
        // Without strict_once the same row is steps 1 and 2: uid 345 reaches 3.
        let expanded: Vec<(i64, u32)> = vec![(200, 3), (210, 1), (210, 2), (230, 3)];
        assert_eq!(level(&expanded, 3, 200, ""), 3);
        // Two rows at one instant each matching both steps chain with each other.
        assert_eq!(once(&[(5, 0b11), (5, 0b11)], 2, 0, ""), 2);
        // ... but not under strict_increase (same instant).
        assert_eq!(once(&[(5, 0b11), (5, 0b11)], 2, 0, "strict_increase"), 1);
        // The window: step 2 exactly `window` after step 1 is in, one more is out.
        assert_eq!(once(&[(0, 1), (10, 2)], 2, 10, ""), 2);
        assert_eq!(once(&[(0, 1), (11, 2)], 2, 10, ""), 1);
        // A later restart that completes uses the restart's start.
        let (l, t) = funnel_once(
            &mut [(0, 1), (50, 1), (55, 2), (58, 4)],
            3,
            10,
            Modes::parse("strict_once").unwrap(),
        );
        assert_eq!((l, t), (3, vec![50, 55, 58]));
        // strict_order: a row matching nothing after the first step stops the search.
        assert_eq!(once(&[(1, 1), (2, 0), (3, 2)], 2, 10, "strict_order"), 1);
        assert_eq!(
            once(&[(1, 1), (2, 4), (3, 2), (4, 4)], 3, 10, "strict_order"),
            1
        );
        assert_eq!(
            once(
                &[(1, 1), (2, 4), (3, 2), (4, 4)],
                3,
                10,
                "strict_order,allow_reentry"
            ),
            3
        );
        assert_eq!(once(&[], 3, 10, ""), 0);
        assert!(Modes::parse("strict_once,allow_reentry").is_err());
    }

    proptest::proptest! {
        /// The bounded walk answers what ClickHouse's keep-every-chain walk answers, in every
        /// mode combination, whatever the rows' order.
        #[test]
        fn strict_once_matches_the_reference(
            rows in proptest::collection::vec((0i64..12, 0u32..16), 0..14),
            steps in 1usize..5,
            window in 0i64..8,
            flags in 0u32..16,
        ) {
            let rows: Vec<(i64, u32)> = rows
                .into_iter()
                .map(|(t, m)| (t, m & ((1 << steps) - 1)))
                .collect();
            let m = Modes {
                strict_order: flags & 1 != 0,
                strict_deduplication: flags & 2 != 0,
                strict_increase: flags & 4 != 0,
                allow_reentry: flags & 9 == 9,
                strict_once: true,
            };
            // Rows matching nothing exist only in strict_order mode.
            let rows: Vec<(i64, u32)> =
                rows.into_iter().filter(|r| r.1 != 0 || m.strict_order).collect();
            // ClickHouse's answer for the rows arriving in (timestamp, bitmask) order.
            let mut arrival = rows.clone();
            arrival.sort();
            let want = once_reference(&arrival, steps, window, m);
            let (got, times) = funnel_once(&mut rows.clone(), steps, window, m);
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(times.len(), got);
            proptest::prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            let mut reversed = rows.clone();
            reversed.reverse();
            proptest::prop_assert_eq!(funnel_once(&mut reversed, steps, window, m).0, want);
        }
    }

    #[test]
    fn step_times_follow_the_chain() {
        let m = Modes::default();
        let (l, t) = funnel(&mut [(0, 1), (1, 2), (50, 1), (55, 2), (58, 3)], 3, 10, m);
        assert_eq!((l, t), (3, vec![50, 55, 58]));
        let (l, t) = funnel(&mut [(0, 1), (1, 2), (100, 1)], 3, 10, m);
        assert_eq!((l, t), (2, vec![0, 1]));
    }

    /// Feeds events in the given order to a fresh [`Progress`]: (reached, settled).
    fn stream(events: &[(i64, u32)], steps: usize, window: i64) -> (usize, bool) {
        let mut p = Progress::default();
        let mut starts = vec![0i64; steps];
        for &(ts, idx) in events {
            p.feed(&mut starts, window, ts, idx);
        }
        (p.reached as usize, p.settled)
    }

    #[test]
    fn streaming_walk_by_hand() {
        // In order: the same level as the sorted walk, settled at the last step.
        assert_eq!(stream(&[(1, 1), (2, 2), (3, 3)], 3, 10), (3, true));
        assert_eq!(stream(&[(0, 1), (5, 2), (11, 3)], 3, 10), (2, false));
        // A restart that completes: the chain from the second A.
        assert_eq!(
            stream(&[(0, 1), (50, 1), (55, 2), (58, 3)], 3, 10),
            (3, true)
        );
        // Same-instant steps fed in index order chain, as the sorted walk.
        assert_eq!(stream(&[(5, 1), (5, 2)], 2, 0), (2, true));
        // Out of order: C(2) then A(0) B(1): A and B are older than C and skipped, so nothing
        // chains here; the sorted evaluation of the kept events answers 3.
        assert_eq!(stream(&[(2, 3), (0, 1), (1, 2)], 3, 10), (0, false));
        // B(5) before A(5) at the same instant: A is older in (ts, index) order, skipped.
        assert_eq!(stream(&[(5, 2), (5, 1)], 2, 10), (0, false));
        // Once settled, later events change nothing.
        assert_eq!(stream(&[(1, 1), (2, 2), (0, 1), (9, 9)], 2, 10), (2, true));
        // One condition settles at its first event.
        assert_eq!(stream(&[(7, 1)], 1, 0), (1, true));
    }

    proptest::proptest! {
        /// Fed a group's events in sorted order, the streaming walk reaches what the sorted walk
        /// returns; fed them in any order, it never claims more, and when it settles the sorted
        /// walk over all the events (however many more arrive) is at the last step.
        #[test]
        fn streaming_walk_is_sound(
            events in proptest::collection::vec((0i64..40, 1u32..5), 0..30),
            more in proptest::collection::vec((0i64..40, 1u32..5), 0..10),
            steps in 1usize..5,
            window in 0i64..15,
        ) {
            let events: Vec<(i64, u32)> =
                events.into_iter().filter(|e| e.1 as usize <= steps).collect();
            let want = level(&events, steps, window, "");
            let mut sorted = events.clone();
            sorted.sort();
            let (reached, settled) = stream(&sorted, steps, window);
            proptest::prop_assert_eq!(reached, want);
            proptest::prop_assert_eq!(settled, want == steps);
            let (reached, settled) = stream(&events, steps, window);
            proptest::prop_assert!(reached <= want);
            if settled {
                let all: Vec<(i64, u32)> = events.iter().chain(&more).cloned()
                    .filter(|e| e.1 as usize <= steps).collect();
                proptest::prop_assert_eq!(level(&all, steps, window, ""), steps);
            }
        }
    }

    #[test]
    fn split_and_order_do_not_matter() {
        let events = vec![
            (7, 2),
            (1, 1),
            (3, 0),
            (3, 2),
            (9, 3),
            (2, 1),
            (12, 3),
            (4, 2),
        ];
        for mode in [
            "",
            "strict_order",
            "strict_deduplication",
            "strict_increase",
            "strict_order,allow_reentry",
        ] {
            let want = level(&events, 3, 6, mode);
            let rows: Vec<(i64, u32)> = events
                .iter()
                .filter(|e| e.1 > 0 || mode.contains("strict_order"))
                .map(|&(t, i)| (t, if i == 0 { 0 } else { 1 << (i - 1) }))
                .collect();
            let once_mode = Modes::parse(&format!("strict_once,{mode}")).unwrap();
            let once_want = funnel_once(&mut rows.clone(), 3, 6, once_mode);
            for cut in 0..events.len() {
                let mut v: Vec<_> = events[cut..]
                    .iter()
                    .chain(&events[..cut])
                    .cloned()
                    .collect();
                v.reverse();
                assert_eq!(level(&v, 3, 6, mode), want, "{mode} {cut}");
                let mut r: Vec<_> = rows[cut..].iter().chain(&rows[..cut]).cloned().collect();
                r.reverse();
                assert_eq!(
                    funnel_once(&mut r, 3, 6, once_mode),
                    once_want,
                    "{mode} {cut}"
                );
            }
        }
    }
}

/// The adapter end to end: events split over partial accumulators (each group in several),
/// their states merged into a final one, emitted in two parts; and one accumulator over
/// everything. Every group's answer must be the kernel's over all of its events.
#[cfg(test)]
mod adapter_tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, TimestampSecondArray};
    use datafusion::arrow::datatypes::{Int32Type, Int64Type};
    use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

    const GROUPS: usize = 6;
    const STEPS: usize = 3;

    fn agg(mode: &str, output: FunnelOutput) -> Funnel {
        let ts_type = DataType::Timestamp(TimeUnit::Second, None);
        Funnel {
            output,
            unit: TickUnit::common(&[&ts_type]).unwrap(),
            ts_type,
            steps: STEPS,
            window: 5,
            modes: Modes::parse(mode).unwrap(),
        }
    }

    /// The arguments of `window_funnel(5, ts, step = 1, step = 2, step = 3)` for `rows` of
    /// (group, ts, step), step 0 matching nothing.
    fn batch(rows: &[(usize, i64, u32)]) -> (Vec<ArrayRef>, Vec<usize>) {
        let mut values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![5; rows.len()])),
            Arc::new(TimestampSecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
        ];
        for k in 1..=STEPS as u32 {
            values.push(Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.2 == k)),
            )));
        }
        (values, rows.iter().map(|r| r.0).collect())
    }

    /// Each group's answer as (level, step times), in group order.
    fn answers(out: &[ArrayRef], output: FunnelOutput) -> Vec<(usize, Vec<i64>)> {
        let mut v = vec![];
        for a in out {
            for i in 0..a.len() {
                v.push(match output {
                    FunnelOutput::Level => {
                        (a.as_primitive::<Int32Type>().value(i) as usize, vec![])
                    }
                    FunnelOutput::Times => {
                        let l = a.as_list::<i32>().value(i);
                        let t: Vec<i64> = datafusion::arrow::compute::cast(&l, &DataType::Int64)
                            .unwrap()
                            .as_primitive::<Int64Type>()
                            .values()
                            .to_vec();
                        (t.len(), t)
                    }
                });
            }
        }
        v
    }

    fn run(rows: &[(usize, i64, u32)], parts: &[usize], mode: &str, output: FunnelOutput) {
        let want: Vec<(usize, Vec<i64>)> = (0..GROUPS)
            .map(|g| {
                let modes = Modes::parse(mode).unwrap();
                let kept = |r: &&(usize, i64, u32)| r.0 == g && (r.2 > 0 || modes.strict_order);
                let (l, t) = if modes.strict_once {
                    let mut rows: Vec<(i64, u32)> = rows
                        .iter()
                        .filter(kept)
                        .map(|r| (r.1, if r.2 == 0 { 0 } else { 1 << (r.2 - 1) }))
                        .collect();
                    kernel::funnel_once(&mut rows, STEPS, 5, modes)
                } else {
                    let mut ev: Vec<(i64, u32)> =
                        rows.iter().filter(kept).map(|r| (r.1, r.2)).collect();
                    kernel::funnel(&mut ev, STEPS, 5, modes)
                };
                (
                    l,
                    if output == FunnelOutput::Times {
                        t
                    } else {
                        vec![]
                    },
                )
            })
            .collect();

        // DataFusion tells every accumulator how many groups there are on each call; an empty
        // first batch registers all of them here.
        let fresh = || {
            let mut acc = EventGroups::new(agg(mode, output));
            let (values, groups) = batch(&[]);
            acc.update_batch(&values, &groups, None, GROUPS).unwrap();
            acc
        };
        // One accumulator over everything, in batches of 7 rows.
        let mut single = fresh();
        for chunk in rows.chunks(7) {
            let (values, groups) = batch(chunk);
            single.update_batch(&values, &groups, None, GROUPS).unwrap();
        }
        let got = answers(&[single.evaluate(EmitTo::All).unwrap()], output);
        assert_eq!(got, want, "single, {mode}");

        // Partial accumulators (row i goes to parts[i]), merged, emitted in two parts.
        let mut partials: Vec<EventGroups<Funnel>> = (0..3).map(|_| fresh()).collect();
        for (row, part) in rows.iter().zip(parts) {
            let (values, groups) = batch(std::slice::from_ref(row));
            partials[*part]
                .update_batch(&values, &groups, None, GROUPS)
                .unwrap();
        }
        let mut fin = EventGroups::new(agg(mode, output));
        let all: Vec<usize> = (0..GROUPS).collect();
        for p in &mut partials {
            let state = p.state(EmitTo::All).unwrap();
            fin.merge_batch(&state, &all, GROUPS).unwrap();
        }
        let first = fin.evaluate(EmitTo::First(2)).unwrap();
        let rest = fin.evaluate(EmitTo::All).unwrap();
        assert_eq!(answers(&[first, rest], output), want, "merged, {mode}");
    }

    proptest::proptest! {
        #[test]
        fn answers_do_not_depend_on_how_rows_are_split(
            rows in proptest::collection::vec((0usize..GROUPS, 0i64..30, 0u32..=STEPS as u32), 0..60),
            parts in proptest::collection::vec(0usize..3, 60),
        ) {
            for mode in ["", "strict_order", "strict_deduplication", "strict_increase",
                         "strict_once", "strict_once,strict_order"] {
                run(&rows, &parts, mode, FunnelOutput::Level);
            }
            run(&rows, &parts, "", FunnelOutput::Times);
            run(&rows, &parts, "strict_once", FunnelOutput::Times);
        }
    }
}
