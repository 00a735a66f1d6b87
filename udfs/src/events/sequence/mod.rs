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
use crate::support::doc::aggregate_doc;
use crate::support::time::{TickUnit, check_temporal};

pub use crate::support::MAX_CONDITIONS;

pub mod kernel;

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
        let Some(pattern) = crate::support::constant(&args.exprs[0])
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

    crate::support::grouped_accumulators!(Self::groups);

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
                crate::support::list_array(&offsets, values)
            }
        })
    }
}

pub fn sequence_match_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(SequenceUdaf::new(
        SequenceOutput::Match,
    )))
}

pub fn sequence_match_events_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(SequenceUdaf::new(
        SequenceOutput::Events,
    )))
}

pub fn sequence_count_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(SequenceUdaf::new(
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
