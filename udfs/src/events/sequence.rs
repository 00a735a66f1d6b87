//! `sequence_match(pattern, ts, cond1, ...)` and `sequence_count(pattern, ts, cond1, ...)`:
//! ClickHouse's `sequenceMatch(pattern)(ts, cond...)` and `sequenceCount`.
//!
//! Kernel: a group's events are the rows where at least one condition holds, as (timestamp,
//! bitmask of conditions), sorted by timestamp (ties by bitmask; ClickHouse leaves their order
//! unspecified). The pattern (`(?N)`, `.`, `.*`, `(?t<=S)`, `(?t<S)`, `(?t>=S)`, `(?t>S)`,
//! `(?t==S)`, S in seconds) is matched anywhere in the events, as ClickHouse does: a DFA for
//! patterns without time conditions, otherwise a backtracking matcher (at most 1,000,000 steps
//! per match, then an error). `sequence_count` counts non-overlapping matches.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::{self as events, EventAggregate, EventGroups, GroupEvents};
use crate::doc::aggregate_doc;
use crate::time::{TickUnit, check_temporal};

pub use crate::common::MAX_CONDITIONS;

pub mod kernel {
    /// Steps a backtracking match may take (ClickHouse's `sequence_match_max_iterations`).
    pub const MAX_ITERATIONS: usize = 1_000_000;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        /// Condition index (0-based).
        Event(u32),
        Any,
        Star,
        TimeLe(i64),
        TimeLt(i64),
        TimeGe(i64),
        TimeGt(i64),
        TimeEq(i64),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Pattern {
        /// Actions, starting with the implicit leading `.*`.
        pub actions: Vec<Action>,
        pub has_time: bool,
        /// Conditions the pattern names (bitmask).
        pub conditions: u32,
        /// DFA states: (has_star, transition), transition None / Some(None) any / Some(Some(k)).
        dfa: Vec<(bool, Option<Option<u32>>)>,
    }

    impl Pattern {
        /// Parses ClickHouse's pattern syntax for `conditions` conditions; time values are in
        /// seconds and are multiplied by `ticks_per_second`.
        pub fn parse(p: &str, conditions: usize, ticks_per_second: i64) -> Result<Pattern, String> {
            let mut actions = vec![Action::Star];
            let mut dfa: Vec<(bool, Option<Option<u32>>)> = vec![(true, None)];
            let (mut has_time, mut mask) = (false, 0u32);
            let b = p.as_bytes();
            let mut i = 0;
            let number = |i: &mut usize| -> Option<u64> {
                let start = *i;
                while *i < b.len() && b[*i].is_ascii_digit() {
                    *i += 1;
                }
                p[start..*i].parse().ok()
            };
            while i < b.len() {
                let at = i;
                let err = |m: &str| format!("{m} at position {at} of pattern '{p}'");
                if p[i..].starts_with("(?") {
                    i += 2;
                    if p[i..].starts_with('t') {
                        i += 1;
                        type TimeOp = (&'static str, fn(i64) -> Action);
                        let ops: [TimeOp; 5] = [
                            ("<=", Action::TimeLe),
                            ("<", Action::TimeLt),
                            (">=", Action::TimeGe),
                            (">", Action::TimeGt),
                            ("==", Action::TimeEq),
                        ];
                        let Some((op, make)) = ops.iter().find(|(op, _)| p[i..].starts_with(op))
                        else {
                            return Err(err("unknown time condition (use <, <=, >, >= or ==)"));
                        };
                        i += op.len();
                        let secs =
                            number(&mut i).ok_or_else(|| err("expected a number of seconds"))?;
                        if !matches!(
                            actions.last(),
                            Some(Action::Event(_) | Action::Any | Action::Star)
                        ) {
                            return Err(err("a time condition must follow an event condition"));
                        }
                        has_time = true;
                        let ticks = i64::try_from(secs)
                            .unwrap_or(i64::MAX)
                            .saturating_mul(ticks_per_second);
                        actions.push(make(ticks));
                    } else {
                        let n = number(&mut i).ok_or_else(|| err("expected a condition number"))?;
                        if n == 0 || n as usize > conditions {
                            return Err(err(&format!(
                                "condition number {n} is out of range 1..{conditions}"
                            )));
                        }
                        let k = (n - 1) as u32;
                        actions.push(Action::Event(k));
                        dfa.last_mut().expect("a state").1 = Some(Some(k));
                        dfa.push((false, None));
                        mask |= 1 << k;
                    }
                    if !p[i..].starts_with(')') {
                        return Err(format!("expected ')' at position {i} of pattern '{p}'"));
                    }
                    i += 1;
                } else if p[i..].starts_with(".*") {
                    i += 2;
                    actions.push(Action::Star);
                    dfa.last_mut().expect("a state").0 = true;
                } else if p[i..].starts_with('.') {
                    i += 1;
                    actions.push(Action::Any);
                    dfa.last_mut().expect("a state").1 = Some(None);
                    dfa.push((false, None));
                } else {
                    return Err(err("unexpected character"));
                }
            }
            Ok(Pattern {
                actions,
                has_time,
                conditions: mask,
                dfa,
            })
        }

        /// DFA match over `events[start..]` (patterns without time conditions).
        fn dfa_match(&self, events: &[(i64, u32)]) -> bool {
            let n = self.dfa.len();
            let mut active = vec![false; n];
            let mut next = vec![false; n];
            active[0] = true;
            let mut n_active = 1;
            for &(_, bits) in events {
                if n_active == 0 || active[n - 1] {
                    break;
                }
                n_active = 0;
                next.iter_mut().for_each(|v| *v = false);
                for s in 0..n {
                    if !active[s] {
                        continue;
                    }
                    match self.dfa[s].1 {
                        None => {}
                        Some(None) => {
                            next[s + 1] = true;
                            n_active += 1;
                        }
                        Some(Some(k)) if bits & (1 << k) != 0 => {
                            next[s + 1] = true;
                            n_active += 1;
                        }
                        Some(Some(_)) => {}
                    }
                    if self.dfa[s].0 {
                        next[s] = true;
                        n_active += 1;
                    }
                }
                std::mem::swap(&mut active, &mut next);
            }
            active[n - 1]
        }

        /// Backtracking match from `*pos`; leaves `*pos` after the match (or one past where it
        /// started), as ClickHouse's `backtrackingMatch`.
        /// `used`, when given, receives the positions of the events the match's `(?N)` steps
        /// used, in pattern order.
        fn backtrack_match(
            &self,
            events: &[(i64, u32)],
            pos: &mut usize,
            mut used: Option<&mut Vec<usize>>,
        ) -> Result<bool, String> {
            let acts = &self.actions;
            let end = events.len();
            let begin = *pos;
            let (mut a, mut e, mut base) = (0usize, *pos, *pos);
            // (action, event, base, events used so far)
            let mut stack: Vec<(usize, usize, usize, usize)> = vec![];
            let backtrack = |stack: &mut Vec<(usize, usize, usize, usize)>,
                             a: &mut usize,
                             e: &mut usize,
                             base: &mut usize,
                             used: &mut Option<&mut Vec<usize>>| {
                while let Some((a0, e0, b0, n0)) = stack.pop() {
                    *a = a0;
                    *e = e0 + 1;
                    *base = b0;
                    if let Some(u) = used.as_deref_mut() {
                        u.truncate(n0);
                    }
                    if *e != end {
                        return true;
                    }
                }
                false
            };
            let depth = |used: &Option<&mut Vec<usize>>| used.as_deref().map_or(0, Vec::len);
            let mut steps = 0usize;
            while a < acts.len() && e < end {
                let (ts, bits) = events[e];
                let base_ts = events[base].0;
                match acts[a] {
                    Action::Event(k) => {
                        if bits & (1 << k) != 0 {
                            if let Some(u) = used.as_deref_mut() {
                                u.push(e);
                            }
                            base = e;
                            a += 1;
                            e += 1;
                        } else if !backtrack(&mut stack, &mut a, &mut e, &mut base, &mut used) {
                            break;
                        }
                    }
                    Action::Any => {
                        base = e;
                        a += 1;
                        e += 1;
                    }
                    Action::Star => {
                        stack.push((a, e, base, depth(&used)));
                        base = e;
                        a += 1;
                    }
                    Action::TimeLe(d) | Action::TimeLt(d) => {
                        let ok = match acts[a] {
                            Action::TimeLe(_) => ts <= base_ts.saturating_add(d),
                            _ => ts < base_ts.saturating_add(d),
                        };
                        if ok {
                            stack.push((a, e, base, depth(&used)));
                            base = e;
                            a += 1;
                        } else if !backtrack(&mut stack, &mut a, &mut e, &mut base, &mut used) {
                            break;
                        }
                    }
                    Action::TimeGe(d) | Action::TimeGt(d) | Action::TimeEq(d) => {
                        let limit = base_ts.saturating_add(d);
                        let ok = match acts[a] {
                            Action::TimeGe(_) => ts >= limit,
                            Action::TimeGt(_) => ts > limit,
                            _ => ts == limit,
                        };
                        if ok {
                            stack.push((a, e, base, depth(&used)));
                            base = e;
                            a += 1;
                        } else {
                            e += 1;
                            if e == end
                                && !backtrack(&mut stack, &mut a, &mut e, &mut base, &mut used)
                            {
                                break;
                            }
                        }
                    }
                }
                steps += 1;
                if steps > MAX_ITERATIONS {
                    return Err(format!(
                        "pattern application proves too difficult, exceeding {MAX_ITERATIONS} steps"
                    ));
                }
            }
            // Trailing actions that match the empty sequence.
            while a < acts.len()
                && matches!(
                    acts[a],
                    Action::Star | Action::TimeLe(_) | Action::TimeLt(_) | Action::TimeGe(0)
                )
            {
                a += 1;
            }
            if e == begin {
                e += 1;
            }
            *pos = e;
            Ok(a == acts.len())
        }

        /// Whether the deterministic parts (runs of `(?N)` and `.`) occur in order: a quick
        /// necessary condition before backtracking.
        fn could_match(&self, events: &[(i64, u32)]) -> bool {
            let mut e = 0usize;
            let mut part: Vec<Action> = vec![];
            let check = |part: &[Action], e: &mut usize| -> bool {
                if part.is_empty() {
                    return true;
                }
                let mut init = *e;
                let mut k = 0;
                while k < part.len() && *e < events.len() {
                    let ok = match part[k] {
                        Action::Event(c) => events[*e].1 & (1 << c) != 0,
                        _ => true,
                    };
                    if ok {
                        *e += 1;
                        k += 1;
                    } else {
                        init += 1;
                        *e = init;
                        k = 0;
                    }
                }
                k == part.len()
            };
            for act in &self.actions {
                match act {
                    Action::Event(_) | Action::Any => part.push(*act),
                    _ => {
                        if !check(&part, &mut e) {
                            return false;
                        }
                        part.clear();
                    }
                }
            }
            check(&part, &mut e)
        }

        /// `sequence_match` of sorted events; `seen` is the bitmask of conditions that held.
        pub fn matches(&self, events: &[(i64, u32)], seen: u32) -> Result<bool, String> {
            if self.conditions & seen != self.conditions {
                return Ok(false);
            }
            if self.has_time {
                Ok(self.could_match(events) && self.backtrack_match(events, &mut 0, None)?)
            } else {
                Ok(self.dfa_match(events))
            }
        }

        /// `sequence_count` of sorted events.
        pub fn count(&self, events: &[(i64, u32)], seen: u32) -> Result<u64, String> {
            if self.conditions & seen != self.conditions || !self.could_match(events) {
                return Ok(0);
            }
            let (mut pos, mut n) = (0usize, 0u64);
            while pos < events.len() && self.backtrack_match(events, &mut pos, None)? {
                n += 1;
            }
            Ok(n)
        }
    }

    impl Pattern {
        /// `sequence_match_events` of sorted events: the positions of the events the first
        /// match's `(?N)` steps used, in pattern order (empty when nothing matches). The first
        /// match is the backtracking matcher's (ClickHouse's): each `.*` takes as few events as
        /// it can, so it is the match whose steps come earliest, the first step first. Patterns
        /// without time conditions find it without backtracking: a table of which pattern
        /// suffixes can match from which event, then one forward walk.
        pub fn match_events(&self, events: &[(i64, u32)], seen: u32) -> Result<Vec<usize>, String> {
            if self.conditions & seen != self.conditions || !self.could_match(events) {
                return Ok(vec![]);
            }
            if self.has_time {
                let mut used = vec![];
                return Ok(if self.backtrack_match(events, &mut 0, Some(&mut used))? {
                    used
                } else {
                    vec![]
                });
            }
            let (acts, n) = (&self.actions, events.len());
            let width = n + 1;
            // can[a * width + e]: actions a.. match starting at event e.
            let mut can = vec![false; (acts.len() + 1) * width];
            can[acts.len() * width..].iter_mut().for_each(|c| *c = true);
            for a in (0..acts.len()).rev() {
                for e in (0..=n).rev() {
                    let next = |e: usize| can[(a + 1) * width + e];
                    can[a * width + e] = match acts[a] {
                        Action::Event(k) => e < n && events[e].1 & (1 << k) != 0 && next(e + 1),
                        Action::Any => e < n && next(e + 1),
                        Action::Star => next(e) || (e < n && can[a * width + e + 1]),
                        _ => unreachable!("no time conditions"),
                    };
                }
            }
            let mut used = vec![];
            if !can[0] {
                return Ok(used);
            }
            let (mut a, mut e) = (0usize, 0usize);
            while a < acts.len() {
                match acts[a] {
                    Action::Star if can[(a + 1) * width + e] => a += 1,
                    Action::Star => e += 1,
                    Action::Event(_) => {
                        used.push(e);
                        (a, e) = (a + 1, e + 1);
                    }
                    _ => (a, e) = (a + 1, e + 1),
                }
            }
            Ok(used)
        }
    }

    #[cfg(test)]
    impl Pattern {
        /// The backtracking matcher's first match from the start, for tests.
        pub fn backtrack_first(&self, events: &[(i64, u32)], used: &mut Vec<usize>) -> bool {
            self.backtrack_match(events, &mut 0, Some(used)).unwrap()
        }
    }

    /// Sorts a group's events by timestamp, ties by bitmask, and returns the conditions seen.
    pub fn prepare(events: &mut [(i64, u32)]) -> u32 {
        events.sort_unstable();
        events.iter().fold(0, |m, e| m | e.1)
    }
}

use kernel::Pattern;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SequenceOutput {
    Match,
    Count,
    Events,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SequenceUdaf {
    output: SequenceOutput,
    signature: Signature,
}

const PATTERN_SYNTAX: &str = "Pattern syntax (ClickHouse's): `(?N)` an event matching condition N; `.` any one event; `.*` any \
number of events; `(?t<=S)`, `(?t<S)`, `(?t>=S)`, `(?t>S)`, `(?t==S)` the time in seconds between the events on either \
side. Only rows where at least one condition holds are events; they are ordered by timestamp (ties by which conditions \
hold; ClickHouse leaves ties unordered). The pattern may match anywhere. A match needing more than 1,000,000 steps is \
an error, as in ClickHouse. `ts` may be any timestamp unit or a DATE; NULL conditions are false; NULL `ts` rows are \
ignored.";

static MATCH_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        &format!("Whether the group's events contain the pattern, as ClickHouse's `sequenceMatch(pattern)(ts, cond1, ...)`. {PATTERN_SYNTAX}"),
        "sequence_match(pattern, ts, cond1, ..., condN)",
        "SELECT customer_id, sequence_match('(?1).*(?2)(?t<=3600)(?3)', event_ts, event_type = 'view', event_type = 'cart', event_type = 'checkout') AS fast_checkout\nFROM (VALUES (1, TIMESTAMP '2024-01-01 10:00:00', 'view'), (1, TIMESTAMP '2024-01-01 10:05:00', 'cart'), (1, TIMESTAMP '2024-01-01 10:20:00', 'checkout'))\n     AS e(customer_id, event_ts, event_type)\nGROUP BY customer_id;",
    )
    .with_argument("pattern", "constant pattern string")
    .with_argument("ts", "TIMESTAMP (any unit) or DATE of each event")
    .with_argument("cond1, ..., condN", "BOOLEAN conditions (1 to 32), referred to as (?1) ... (?N)")
    .build()
});

static COUNT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        &format!("How many non-overlapping times the group's events contain the pattern, as ClickHouse's `sequenceCount(pattern)(ts, cond1, ...)`. {PATTERN_SYNTAX}"),
        "sequence_count(pattern, ts, cond1, ..., condN)",
        "SELECT customer_id, sequence_count('(?1)(?2)', event_ts, event_type = 'cart', event_type = 'purchase') AS cart_then_buy\nFROM (VALUES (1, TIMESTAMP '2024-01-01', 'cart'), (1, TIMESTAMP '2024-01-02', 'purchase'), (1, TIMESTAMP '2024-01-03', 'cart'), (1, TIMESTAMP '2024-01-04', 'purchase'))\n     AS e(customer_id, event_ts, event_type)\nGROUP BY customer_id;",
    )
    .with_argument("pattern", "constant pattern string")
    .with_argument("ts", "TIMESTAMP (any unit) or DATE of each event")
    .with_argument("cond1, ..., condN", "BOOLEAN conditions (1 to 32)")
    .build()
});

static EVENTS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        &format!("The timestamps of the events the first match of the pattern used, one per `(?N)` step in pattern order \
         (`.` and `.*` contribute none), as ClickHouse's `sequenceMatchEvents(pattern)(ts, cond1, ...)`; an empty list when \
         the pattern does not match. The first match is the one whose steps come earliest, the first step first (each `.*` \
         takes as few events as it can, as in ClickHouse's matcher). Where ClickHouse returns the longest partial chain \
         for a group that does not match, this returns an empty list, so `cardinality(...) > 0` is `sequence_match`. The \
         list's type is the timestamp type of `ts` (DATE as TIMESTAMP(s)). {PATTERN_SYNTAX}"),
        "sequence_match_events(pattern, ts, cond1, ..., condN)",
        "SELECT customer_id, sequence_match_events('(?1).*(?2)', event_ts, event_type = 'cart', event_type = 'purchase') AS cart_then_buy\nFROM (VALUES (1, TIMESTAMP '2024-01-01 10:00:00', 'cart'), (1, TIMESTAMP '2024-01-01 10:05:00', 'view'), (1, TIMESTAMP '2024-01-01 10:09:00', 'purchase'))\n     AS e(customer_id, event_ts, event_type)\nGROUP BY customer_id;",
    )
    .with_argument("pattern", "constant pattern string")
    .with_argument("ts", "TIMESTAMP (any unit) or DATE of each event")
    .with_argument("cond1, ..., condN", "BOOLEAN conditions (1 to 32), referred to as (?1) ... (?N)")
    .build()
});

impl SequenceUdaf {
    pub fn new(output: SequenceOutput) -> Self {
        Self {
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn groups(&self, args: &AccumulatorArgs) -> Result<EventGroups<Sequence>> {
        let name = self.name();
        let unit = TickUnit::common(&[args.expr_fields[1].data_type()])?;
        let Some(pattern) = crate::common::constant(&args.exprs[0])
            .and_then(|v| v.try_as_str().flatten().map(str::to_string))
        else {
            return plan_err!("{name}: argument 'pattern' must be a constant string");
        };
        let conditions = args.exprs.len() - 2;
        let pattern = match Pattern::parse(&pattern, conditions, unit.per_second()) {
            Ok(p) => p,
            Err(e) => return plan_err!("{name}: {e}"),
        };
        Ok(EventGroups::new(Sequence {
            output: self.output,
            unit,
            conditions,
            pattern,
            ts_type: args.expr_fields[1].data_type().clone(),
        }))
    }
}

impl AggregateUDFImpl for SequenceUdaf {
    fn name(&self) -> &str {
        match self.output {
            SequenceOutput::Match => "sequence_match",
            SequenceOutput::Count => "sequence_count",
            SequenceOutput::Events => "sequence_match_events",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let n = arg_types.len();
        if n < 3 || n - 2 > MAX_CONDITIONS {
            return plan_err!(
                "{name} takes a pattern, a timestamp and 1 to {MAX_CONDITIONS} conditions (pattern, ts, cond1, ...), got {n} arguments"
            );
        }
        if !matches!(
            arg_types[0],
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return plan_err!(
                "{name}: argument 'pattern' must be a string, got {}",
                arg_types[0]
            );
        }
        check_temporal(name, "ts", &arg_types[1])?;
        let mut out = vec![arg_types[0].clone(), arg_types[1].clone()];
        for (i, t) in arg_types[2..].iter().enumerate() {
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return plan_err!("{name}: condition {} must be BOOLEAN, got {t}", i + 1);
            }
            out.push(DataType::Boolean);
        }
        Ok(out)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            SequenceOutput::Match => DataType::Boolean,
            SequenceOutput::Count => DataType::Int64,
            SequenceOutput::Events => DataType::List(Arc::new(Field::new_list_field(
                super::funnel::times_type(&arg_types[1]),
                false,
            ))),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(events::state_fields(args.name))
    }

    crate::common::grouped_accumulators!(Self::groups);

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.output {
            SequenceOutput::Match => &MATCH_DOC,
            SequenceOutput::Count => &COUNT_DOC,
            SequenceOutput::Events => &EVENTS_DOC,
        })
    }
}

/// The pattern over a group's (timestamp, conditions bitmask) events.
struct Sequence {
    output: SequenceOutput,
    unit: TickUnit,
    conditions: usize,
    pattern: Pattern,
    ts_type: DataType,
}

impl EventAggregate for Sequence {
    type Progress = ();

    /// One event per row where at least one condition holds (tag = the conditions' bitmask).
    fn events(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        f: &mut impl FnMut(usize, i64, u32),
    ) -> Result<()> {
        events::for_each_condition_row(
            &values[1],
            &values[2..2 + self.conditions],
            self.unit,
            filter,
            |row, ts, mask| {
                if mask != 0 {
                    f(row, ts, mask);
                }
            },
        )
    }

    fn finish(&self, events: &mut GroupEvents<'_>) -> Result<ArrayRef> {
        let n = events.groups();
        let name = match self.output {
            SequenceOutput::Match => "sequence_match",
            SequenceOutput::Count => "sequence_count",
            SequenceOutput::Events => "sequence_match_events",
        };
        let mut matches = Vec::with_capacity(n);
        let mut counts = Vec::with_capacity(n);
        let (mut offsets, mut times) = (Vec::with_capacity(n + 1), vec![]);
        offsets.push(0usize);
        for g in 0..n {
            // Sequences never settle early, so every group has its events.
            let events = events.get(g).unwrap_or(&mut []);
            let seen = kernel::prepare(events);
            let r = match self.output {
                SequenceOutput::Match => {
                    self.pattern.matches(events, seen).map(|m| matches.push(m))
                }
                SequenceOutput::Count => self
                    .pattern
                    .count(events, seen)
                    .map(|c| counts.push(c as i64)),
                SequenceOutput::Events => self.pattern.match_events(events, seen).map(|used| {
                    times.extend(used.iter().map(|&e| events[e].0));
                    offsets.push(times.len());
                }),
            };
            if let Err(e) = r {
                return exec_err!("{name}: {e}");
            }
        }
        Ok(match self.output {
            SequenceOutput::Match => Arc::new(BooleanArray::from(matches)),
            SequenceOutput::Count => Arc::new(Int64Array::from(counts)),
            SequenceOutput::Events => {
                let values = datafusion::arrow::compute::cast(
                    &(Arc::new(Int64Array::from(times)) as ArrayRef),
                    &super::funnel::times_type(&self.ts_type),
                )?;
                crate::common::list_array(&offsets, values)
            }
        })
    }
}

pub fn sequence_match_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SequenceUdaf::new(
        SequenceOutput::Match,
    )))
}

pub fn sequence_match_events_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SequenceUdaf::new(
        SequenceOutput::Events,
    )))
}

pub fn sequence_count_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SequenceUdaf::new(
        SequenceOutput::Count,
    )))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;

    /// Events given as (ts, conditions as 1-based numbers).
    fn ev(list: &[(i64, &[u32])]) -> Vec<(i64, u32)> {
        list.iter()
            .map(|(t, cs)| (*t, cs.iter().fold(0, |m, c| m | 1 << (c - 1))))
            .collect()
    }

    fn m(p: &str, n: usize, events: &[(i64, &[u32])]) -> bool {
        let mut e = ev(events);
        let seen = prepare(&mut e);
        Pattern::parse(p, n, 1).unwrap().matches(&e, seen).unwrap()
    }

    fn c(p: &str, n: usize, events: &[(i64, &[u32])]) -> u64 {
        let mut e = ev(events);
        let seen = prepare(&mut e);
        Pattern::parse(p, n, 1).unwrap().count(&e, seen).unwrap()
    }

    fn me(p: &str, n: usize, events: &[(i64, &[u32])]) -> Vec<i64> {
        let mut e = ev(events);
        let seen = prepare(&mut e);
        let used = Pattern::parse(p, n, 1)
            .unwrap()
            .match_events(&e, seen)
            .unwrap();
        used.iter().map(|&i| e[i].0).collect()
    }

    #[test]
    fn match_events_by_hand() {
        // ClickHouse's sequenceMatchEventsFirst cases: data at times 0..11 is
        // 0 0 0 0 1 2 0 0 0 0 1 1; conditions data = 0, 1, 2, 3.
        let data = [0u32, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 1];
        let conds: Vec<[u32; 1]> = data.iter().map(|d| [d + 1]).collect();
        let events: Vec<(i64, &[u32])> = conds
            .iter()
            .enumerate()
            .map(|(t, c)| (t as i64, &c[..]))
            .collect();
        assert_eq!(me("(?1)", 4, &events), vec![0]);
        assert_eq!(me("(?1)(?1)(?1)(?1)", 4, &events), vec![0, 1, 2, 3]);
        assert_eq!(me("(?2)(?3)(?1)", 4, &events), vec![4, 5, 6]);
        assert_eq!(me("(?1)(?t>10)(?2)", 4, &events), vec![0, 11]);
        assert_eq!(me("(?1)(?t<11)(?2)", 4, &events), vec![0, 4]);
        assert_eq!(me("(?4)", 4, &events), Vec::<i64>::new());
        // `.` and `.*` contribute no timestamps; `.*` takes as few events as it can.
        assert_eq!(me("(?2).(?1)", 4, &events), vec![4, 6]);
        assert_eq!(me("(?3).*(?2)", 4, &events), vec![5, 10]);
        // No match: empty, where sequence_match is false.
        assert_eq!(me("(?3).*(?3)", 4, &events), Vec::<i64>::new());
        assert!(!m("(?3).*(?3)", 4, &events));
        // Unsorted input; a row matching two conditions can be both steps only via two events.
        assert_eq!(
            me("(?1).*(?2)", 2, &[(9, &[2]), (1, &[1]), (5, &[1, 2])]),
            vec![1, 5]
        );
    }

    proptest::proptest! {
        /// Without time conditions the forward walk finds what the backtracking matcher finds,
        /// and it finds something exactly when the pattern matches.
        #[test]
        fn match_events_walk_equals_backtracking(
            acts in proptest::collection::vec(0u32..5, 1..6),
            events in proptest::collection::vec((0i64..20, 1u32..8), 0..25),
        ) {
            let p: String = acts.iter().map(|a| match a {
                0 => ".".to_string(),
                1 => ".*".to_string(),
                k => format!("(?{})", k - 1),
            }).collect();
            let pattern = Pattern::parse(&p, 3, 1).unwrap();
            let mut e = events.clone();
            let seen = prepare(&mut e);
            let walked = pattern.match_events(&e, seen).unwrap();
            let mut used = vec![];
            let found = pattern.backtrack_first(&e, &mut used);
            let matches = pattern.matches(&e, seen).unwrap();
            proptest::prop_assert_eq!(found, matches);
            if p.contains("(?") {
                proptest::prop_assert_eq!(!walked.is_empty(), matches);
                if found {
                    proptest::prop_assert_eq!(walked, used);
                }
            }
        }
    }

    #[test]
    fn patterns_by_hand() {
        let abc: &[(i64, &[u32])] = &[(1, &[1]), (2, &[2]), (3, &[3])];
        assert!(m("(?1)(?2)", 3, abc));
        assert!(m("(?1)(?3)", 3, &[(1, &[1]), (3, &[3])]));
        // Adjacent: (?1)(?3) does not skip the (?2) event; .* does.
        assert!(!m("(?1)(?3)", 3, abc));
        assert!(m("(?1).*(?3)", 3, abc));
        assert!(m("(?1).(?3)", 3, abc));
        assert!(!m("(?2)(?1)", 3, abc));
        // Unsorted input is sorted by time.
        assert!(m("(?1)(?2)(?3)", 3, &[(3, &[3]), (1, &[1]), (2, &[2])]));
        // A condition never seen: no match.
        assert!(!m("(?1).*(?3)", 3, &[(1, &[1]), (2, &[2])]));
        // One event matching two conditions.
        assert!(m("(?1)", 2, &[(5, &[1, 2])]));
        assert!(!m("(?1)(?2)", 2, &[(5, &[1, 2])]));
        // Time constraints (seconds): 2 within 10 s of 1.
        assert!(m("(?1)(?t<=10)(?2)", 2, &[(0, &[1]), (10, &[2])]));
        assert!(!m("(?1)(?t<=10)(?2)", 2, &[(0, &[1]), (11, &[2])]));
        assert!(!m("(?1)(?t<10)(?2)", 2, &[(0, &[1]), (10, &[2])]));
        assert!(m("(?1)(?t>10)(?2)", 2, &[(0, &[1]), (11, &[2])]));
        assert!(!m("(?1)(?t>10)(?2)", 2, &[(0, &[1]), (10, &[2])]));
        assert!(m("(?1)(?t>=10)(?2)", 2, &[(0, &[1]), (10, &[2])]));
        assert!(m("(?1)(?t==10)(?2)", 2, &[(0, &[1]), (10, &[2])]));
        assert!(!m("(?1)(?t==10)(?2)", 2, &[(0, &[1]), (9, &[2])]));
        // A later first event can start the timed match.
        assert!(m(
            "(?1)(?t<=5)(?2)",
            2,
            &[(0, &[1]), (20, &[1]), (24, &[2])]
        ));
        // No events.
        assert!(!m("(?1)", 1, &[]));
    }

    #[test]
    fn counts_by_hand() {
        let ev2: &[(i64, &[u32])] = &[(1, &[1]), (2, &[2]), (3, &[1]), (4, &[2]), (5, &[1])];
        assert_eq!(c("(?1)(?2)", 2, ev2), 2);
        assert_eq!(c("(?1)", 2, ev2), 3);
        assert_eq!(c("(?1).*(?2)", 2, ev2), 2);
        assert_eq!(c("(?2)(?1)(?2)", 2, ev2), 1);
        assert_eq!(c("(?1)(?t<=1)(?2)", 2, ev2), 2);
        assert_eq!(c("(?1)(?2)", 2, &[(1, &[1])]), 0);
    }

    #[test]
    fn pattern_errors() {
        assert!(
            Pattern::parse("(?3)", 2, 1)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            Pattern::parse("(?1", 2, 1)
                .unwrap_err()
                .contains("expected ')'")
        );
        assert!(
            Pattern::parse("(?1)(?t~5)(?2)", 2, 1)
                .unwrap_err()
                .contains("unknown time condition")
        );
        assert!(
            Pattern::parse("x", 2, 1)
                .unwrap_err()
                .contains("unexpected character")
        );
        assert!(Pattern::parse("(?t<5)(?t<5)", 2, 1).is_err());
    }
}
