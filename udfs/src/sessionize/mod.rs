//! `sessionize(ts, gap) OVER (PARTITION BY customer_id ORDER BY ts)`: the session number (1, 2,
//! ...) of each event, a new session starting when the time since the previous event exceeds
//! `gap` (an INTERVAL, or a number of seconds).
//!
//! Kernel: [`kernel::Sessions`], the running state of one partition (the previous timestamp and
//! the session number), fed timestamps in ascending order.
//!
//! Adapter: a window function that DataFusion can run both ways: streamed, one row at a time
//! as the sorted partition arrives (`BoundedWindowAggExec`, memory bounded by the batch), and
//! over a whole partition at once (`WindowAggExec`, when another window expression of the query
//! needs it). Either way the timestamps of a batch are converted to ticks once, and a row that
//! goes back in time is an error, never a wrong session number.

use std::ops::Range;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Documentation, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::PhysicalExpr;

use crate::support::doc::aggregate_doc;
use crate::support::time::{TickUnit, check_temporal, ticks_of};

pub mod kernel;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Window function: the session number (1, 2, ...) of each event within its partition (usually a customer). \
         A new session starts when an event comes more than `gap` after the previous event of the partition (exactly \
         `gap` later is the same session; events at the same instant always share one, so ties cannot change the \
         answer). Write it with the partition's events in time order: `OVER (PARTITION BY customer_id ORDER BY ts)`; \
         rows that go back in time (another ORDER BY, or DESC) are an error rather than a wrong number. Rows with a \
         NULL `ts` get NULL and do not end a session. It streams: on a sorted input it keeps only the current \
         batch, so it runs over tens of millions of events like `row_number()`. A session key is \
         `(customer_id, sessionize(...))`; aggregate over it for session length and count.",
        "sessionize(ts, gap) OVER (PARTITION BY key ORDER BY ts)",
        "SELECT customer_id, ts, sessionize(ts, INTERVAL '30 minutes') OVER (PARTITION BY customer_id ORDER BY ts) AS session\n\
         FROM (VALUES (1, TIMESTAMP '2024-01-01 10:00:00'), (1, TIMESTAMP '2024-01-01 10:20:00'),\n\
                      (1, TIMESTAMP '2024-01-01 11:00:00')) AS e(customer_id, ts)\n\
         ORDER BY customer_id, ts;",
    )
    .with_argument("ts", "TIMESTAMP (any unit, with or without time zone) or DATE of each event")
    .with_argument(
        "gap",
        "constant INTERVAL (days, hours, minutes, seconds; not months) or number of seconds (>= 0)",
    )
    .build()
});

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Sessionize {
    signature: Signature,
}

impl Default for Sessionize {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The constant `gap` in ticks of `unit`, rounded down (timestamps are whole ticks, so a gap of
/// 1.5 ticks splits exactly where 1 does).
fn gap_ticks(value: &ScalarValue, unit: TickUnit) -> Result<i64> {
    let per_second = unit.per_second() as i128;
    let nanos: i128 = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return plan_err!(
                    "sessionize: argument 'gap' must not have months or years (they have no fixed length); \
                     use days, e.g. INTERVAL '30 days'"
                );
            }
            v.days as i128 * 86_400_000_000_000 + v.nanoseconds as i128
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            v.days as i128 * 86_400_000_000_000 + v.milliseconds as i128 * 1_000_000
        }
        ScalarValue::IntervalYearMonth(Some(_)) => {
            return plan_err!(
                "sessionize: argument 'gap' must not have months or years (they have no fixed length)"
            );
        }
        v if v.data_type().is_numeric() && !v.is_null() => {
            let ScalarValue::Float64(Some(s)) = v.cast_to(&DataType::Float64)? else {
                return plan_err!("sessionize: argument 'gap' must be a number of seconds");
            };
            if !s.is_finite() || s < 0.0 {
                return plan_err!("sessionize: argument 'gap' must be >= 0 seconds, got {s}");
            }
            let ticks = (s * unit.per_second() as f64).floor();
            return Ok(if ticks >= i64::MAX as f64 {
                i64::MAX
            } else {
                ticks as i64
            });
        }
        _ => return plan_err!("sessionize: argument 'gap' must not be NULL"),
    };
    if nanos < 0 {
        return plan_err!("sessionize: argument 'gap' must not be negative");
    }
    let ticks = (nanos * per_second).div_euclid(1_000_000_000);
    Ok(i64::try_from(ticks).unwrap_or(i64::MAX))
}

impl WindowUDFImpl for Sessionize {
    fn name(&self) -> &str {
        "sessionize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "sessionize takes 2 arguments (ts, gap), got {}",
                arg_types.len()
            );
        }
        check_temporal("sessionize", "ts", &arg_types[0])?;
        let gap = &arg_types[1];
        if !(gap.is_numeric() || matches!(gap, DataType::Interval(_))) {
            return plan_err!(
                "sessionize: argument 'gap' must be an INTERVAL or a number of seconds, got {gap}"
            );
        }
        Ok(arg_types.to_vec())
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let exprs = args.input_exprs();
        let fields = args.input_fields();
        if exprs.len() != 2 {
            return plan_err!(
                "sessionize takes 2 arguments (ts, gap), got {}",
                exprs.len()
            );
        }
        let (unit, gap) = setup(exprs, fields[0].data_type())?;
        Ok(Box::new(SessionEvaluator {
            unit,
            sessions: kernel::Sessions::new(gap),
            batch: None,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Int64,
            true,
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// The tick unit of `ts_type` and the gap (`args[1]`, a constant) in those ticks.
fn setup(args: &[Arc<dyn PhysicalExpr>], ts_type: &DataType) -> Result<(TickUnit, i64)> {
    let unit = TickUnit::common(&[ts_type])?;
    let Some(gap) = args.get(1).and_then(crate::support::constant) else {
        return plan_err!("sessionize: argument 'gap' must be a constant");
    };
    Ok((unit, gap_ticks(&gap, unit)?))
}

/// `sessionize` over many partitions at once, for rows that arrive sorted by their partition and
/// then by time: a batch at a time, given where each partition starts in it. What a plan over
/// sorted input (a lifecycle store) uses instead of one evaluator per partition.
#[derive(Debug)]
pub struct SortedSessions {
    unit: TickUnit,
    gap: i64,
    sessions: kernel::Sessions,
}

impl SortedSessions {
    /// For `sessionize(args)`, the first argument of type `ts_type`.
    pub fn try_new(args: &[Arc<dyn PhysicalExpr>], ts_type: &DataType) -> Result<Self> {
        let (unit, gap) = setup(args, ts_type)?;
        Ok(Self {
            unit,
            gap,
            sessions: kernel::Sessions::new(gap),
        })
    }

    /// The session numbers of a batch's timestamps `ts`, in time order within each partition;
    /// `starts`: the first row of each partition in the batch (the first is 0), and `continues`:
    /// the first one is the previous batch's last partition going on.
    pub fn evaluate(
        &mut self,
        ts: &ArrayRef,
        starts: &[usize],
        continues: bool,
    ) -> Result<ArrayRef> {
        let (ticks, nulls) = ticks_of(ts, self.unit)?;
        let mut out = vec![0i64; ticks.len()];
        for (r, &start) in starts.iter().enumerate() {
            let end = starts.get(r + 1).copied().unwrap_or(ticks.len());
            if r > 0 || !continues {
                self.sessions = kernel::Sessions::new(self.gap);
            }
            for i in start..end.min(ticks.len()) {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    continue;
                }
                out[i] = self
                    .sessions
                    .next(ticks[i])
                    .map_err(SessionEvaluator::out_of_order)?;
            }
        }
        Ok(Arc::new(Int64Array::new(out.into(), nulls)))
    }
}

/// A batch's timestamps as ticks, kept while DataFusion asks for its rows one at a time.
#[derive(Debug)]
struct Ticks {
    array: ArrayRef,
    ticks: Vec<i64>,
    nulls: Option<NullBuffer>,
}

#[derive(Debug)]
struct SessionEvaluator {
    unit: TickUnit,
    sessions: kernel::Sessions,
    batch: Option<Ticks>,
}

impl SessionEvaluator {
    fn out_of_order(e: kernel::OutOfOrder) -> datafusion::error::DataFusionError {
        datafusion::error::DataFusionError::Execution(format!(
            "sessionize: the events are not in time order (a timestamp of {} ticks follows {}); \
             write OVER (PARTITION BY ... ORDER BY ts)",
            e.ts, e.previous
        ))
    }

    fn ticks(&mut self, array: &ArrayRef) -> Result<&Ticks> {
        let same = self
            .batch
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.array, array) && b.ticks.len() == array.len());
        if !same {
            let (ticks, nulls) = ticks_of(array, self.unit)?;
            self.batch = Some(Ticks {
                array: Arc::clone(array),
                ticks: ticks.into_owned(),
                nulls,
            });
        }
        Ok(self.batch.as_ref().expect("just set"))
    }
}

impl PartitionEvaluator for SessionEvaluator {
    fn is_causal(&self) -> bool {
        true
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    /// Streamed: row `range.start` of the batch, after every earlier row of the partition.
    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let i = range.start;
        let b = self.ticks(&values[0])?;
        if b.nulls.as_ref().is_some_and(|n| n.is_null(i)) {
            return Ok(ScalarValue::Int64(None));
        }
        let ts = b.ticks[i];
        match self.sessions.next(ts) {
            Ok(s) => Ok(ScalarValue::Int64(Some(s))),
            Err(e) => Err(Self::out_of_order(e)),
        }
    }

    /// A whole partition at once.
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let (ticks, nulls) = ticks_of(&values[0], self.unit)?;
        let mut out = Vec::with_capacity(num_rows);
        for (i, &t) in ticks.iter().enumerate().take(num_rows) {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                out.push(0);
                continue;
            }
            match self.sessions.next(t) {
                Ok(s) => out.push(s),
                Err(e) => return Err(Self::out_of_order(e)),
            }
        }
        if out.len() != num_rows {
            return exec_err!("sessionize: expected {num_rows} rows, got {}", out.len());
        }
        Ok(Arc::new(Int64Array::new(out.into(), nulls)))
    }
}

pub fn sessionize_udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::new_from_impl(Sessionize::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn gaps_in_ticks() {
        let s = TickUnit {
            unit: TimeUnit::Second,
        };
        let ms = TickUnit {
            unit: TimeUnit::Millisecond,
        };
        let iv = |days, nanos| {
            ScalarValue::IntervalMonthDayNano(Some(
                datafusion::arrow::datatypes::IntervalMonthDayNano::new(0, days, nanos),
            ))
        };
        assert_eq!(gap_ticks(&iv(0, 1_800_000_000_000), s).unwrap(), 1800);
        assert_eq!(gap_ticks(&iv(1, 0), ms).unwrap(), 86_400_000);
        // 1.5 s on a seconds clock: a difference of 2 s is a new session, 1 s is not.
        assert_eq!(gap_ticks(&iv(0, 1_500_000_000), s).unwrap(), 1);
        assert_eq!(gap_ticks(&ScalarValue::Float64(Some(1.5)), s).unwrap(), 1);
        assert_eq!(
            gap_ticks(&ScalarValue::Int64(Some(60)), ms).unwrap(),
            60_000
        );
        assert!(gap_ticks(&ScalarValue::Int64(Some(-1)), s).is_err());
        assert!(gap_ticks(&ScalarValue::Int64(None), s).is_err());
        let month = ScalarValue::IntervalMonthDayNano(Some(
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(1, 0, 0),
        ));
        assert!(gap_ticks(&month, s).is_err());
        assert_eq!(
            gap_ticks(
                &iv(i32::MAX, i64::MAX),
                TickUnit {
                    unit: TimeUnit::Nanosecond
                }
            )
            .unwrap(),
            i64::MAX
        );
    }

    proptest::proptest! {
        /// Many partitions a batch at a time, the batches cut anywhere: each partition's
        /// sessions are the kernel's over that partition alone.
        #[test]
        fn sorted_partitions_in_any_batches_equal_each_partition_alone(
            parts in proptest::collection::vec(
                proptest::collection::vec(proptest::option::weighted(0.9, 0i64..50), 1..8), 1..12),
            cut in 1usize..9,
        ) {
            use datafusion::arrow::array::{AsArray, TimestampSecondArray};
            use datafusion::arrow::datatypes::{Int64Type, TimeUnit};
            use datafusion::physical_expr::expressions::{Column, Literal};
            let gap = 5;
            // Each partition in time order (NULLs anywhere: they get no session).
            let parts: Vec<Vec<Option<i64>>> = parts.into_iter().map(|mut p| {
                let mut ts: Vec<i64> = p.iter().flatten().copied().collect();
                ts.sort();
                let mut it = ts.into_iter();
                for v in p.iter_mut() {
                    if v.is_some() {
                        *v = it.next();
                    }
                }
                p
            }).collect();
            let mut want = vec![];
            for p in &parts {
                want.extend(kernel::sessions(p, gap).unwrap());
            }
            let rows: Vec<(usize, Option<i64>)> = parts
                .iter()
                .enumerate()
                .flat_map(|(k, p)| p.iter().map(move |t| (k, *t)))
                .collect();
            let args: Vec<Arc<dyn PhysicalExpr>> = vec![
                Arc::new(Column::new("ts", 0)),
                Arc::new(Literal::new(ScalarValue::Int64(Some(gap)))),
            ];
            let ts_type = DataType::Timestamp(TimeUnit::Second, None);
            let mut s = SortedSessions::try_new(&args, &ts_type).unwrap();
            let (mut got, mut open) = (vec![], None);
            for batch in rows.chunks(cut) {
                let starts: Vec<usize> = (0..batch.len())
                    .filter(|&i| i == 0 || batch[i].0 != batch[i - 1].0)
                    .collect();
                let continues = open == Some(batch[0].0);
                let ts: ArrayRef = Arc::new(TimestampSecondArray::from(
                    batch.iter().map(|r| r.1).collect::<Vec<_>>(),
                ));
                let out = s.evaluate(&ts, &starts, continues).unwrap();
                let out = out.as_primitive::<Int64Type>();
                got.extend((0..out.len()).map(|i| out.is_valid(i).then(|| out.value(i))));
                open = batch.last().map(|r| r.0);
            }
            proptest::prop_assert_eq!(got, want);
        }
    }
}
