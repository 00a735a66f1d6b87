//! `period_diff(granularity, start, end)` and `period_start(granularity, ts)`: calendar period
//! arithmetic (UTC), shared with `cohort_retention`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, PrimitiveArray, StringArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{Result, cast::as_string_array, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::support::doc::scalar_doc;
use crate::support::time::{Granularity, TickUnit, check_temporal, ticks_of};

/// Granularity of every row: parsed once for a constant argument, per distinct value otherwise.
fn granularities(arg: &ColumnarValue, rows: usize) -> Result<Vec<Option<Granularity>>> {
    let array = arg.to_array(rows)?;
    let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
    let strings: &StringArray = as_string_array(&array)?;
    let mut last: Option<(&str, Granularity)> = None;
    strings
        .iter()
        .map(|s| match s {
            None => Ok(None),
            Some(s) => match last {
                Some((ls, g)) if ls == s => Ok(Some(g)),
                _ => {
                    let g: Granularity = s.parse()?;
                    last = Some((s, g));
                    Ok(Some(g))
                }
            },
        })
        .collect()
}

/// Day (since epoch, UTC) of every row of a temporal argument, and its null mask.
fn days(arg: &ColumnarValue, rows: usize) -> Result<(Vec<i64>, Option<NullBuffer>)> {
    let array = arg.to_array(rows)?;
    let unit = TickUnit::common(&[array.data_type()])?;
    let (ticks, nulls) = ticks_of(&array, unit)?;
    Ok((ticks.iter().map(|t| unit.day_of(*t)).collect(), nulls))
}

/// The granularity when the argument is one constant string (NULL or not a string: None).
fn constant_granularity(arg: &ColumnarValue) -> Result<Option<Granularity>> {
    match arg {
        ColumnarValue::Scalar(v) => match v.try_as_str() {
            Some(Some(s)) => Ok(Some(s.parse()?)),
            _ => Ok(None),
        },
        ColumnarValue::Array(_) => Ok(None),
    }
}

fn coerce_granularity(func: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            Ok(DataType::Utf8)
        }
        other => plan_err!(
            "{func}: argument 'granularity' must be a string such as 'month', got {other}; \
             valid granularities are {}",
            Granularity::VALID
        ),
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PeriodDiff {
    signature: Signature,
}

impl Default for PeriodDiff {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

static PERIOD_DIFF_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Number of whole calendar periods from the period containing `start` to the period containing \
         `end` (negative when `end` is earlier): the distance between `date_trunc(granularity, start)` \
         and `date_trunc(granularity, end)`, computed in UTC. Weeks are ISO weeks starting on Monday, so \
         Sunday 23:00 to the next Monday 01:00 is 1 week, and Jan 31 to Feb 1 is 1 month.",
        "period_diff(granularity, start, end)",
        "SELECT period_diff('month', TIMESTAMP '2024-01-31 12:00:00', TIMESTAMP '2024-02-01 00:00:00');\n-- 1",
    )
    .with_argument("granularity", "'day', 'week', 'month', 'quarter' or 'year'")
    .with_argument("start", "TIMESTAMP (any unit, with or without time zone) or DATE")
    .with_argument("end", "TIMESTAMP (any unit, with or without time zone) or DATE")
    .build()
});

impl ScalarUDFImpl for PeriodDiff {
    fn name(&self) -> &str {
        "period_diff"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!(
                "period_diff takes 3 arguments (granularity, start, end), got {}",
                arg_types.len()
            );
        }
        check_temporal("period_diff", "start", &arg_types[1])?;
        check_temporal("period_diff", "end", &arg_types[2])?;
        Ok(vec![
            coerce_granularity("period_diff", &arg_types[0])?,
            arg_types[1].clone(),
            arg_types[2].clone(),
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if all_scalar { 1 } else { rows };
        let out: ArrayRef = match constant_granularity(&args.args[0])? {
            // The common case: one granularity for the whole batch, a tight loop over days.
            Some(g) => {
                let (start, s_nulls) = days(&args.args[1], n)?;
                let (end, e_nulls) = days(&args.args[2], n)?;
                let values: Vec<i64> = start
                    .iter()
                    .zip(&end)
                    .map(|(s, e)| g.period_index(*e) - g.period_index(*s))
                    .collect();
                let nulls = NullBuffer::union(s_nulls.as_ref(), e_nulls.as_ref());
                Arc::new(Int64Array::new(values.into(), nulls))
            }
            None => {
                let g = granularities(&args.args[0], n)?;
                let (start, s_nulls) = days(&args.args[1], n)?;
                let (end, e_nulls) = days(&args.args[2], n)?;
                let valid =
                    |m: &Option<NullBuffer>, i: usize| m.as_ref().is_none_or(|m| m.is_valid(i));
                Arc::new(
                    (0..n)
                        .map(|i| match g[i] {
                            Some(g) if valid(&s_nulls, i) && valid(&e_nulls, i) => {
                                Some(g.period_index(end[i]) - g.period_index(start[i]))
                            }
                            _ => None,
                        })
                        .collect::<Int64Array>(),
                )
            }
        };
        if all_scalar {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&PERIOD_DIFF_DOC)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PeriodStart {
    signature: Signature,
}

impl Default for PeriodStart {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

static PERIOD_START_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Start of the calendar period (UTC) containing `ts`, like `date_trunc` but with the same \
         period rules as `period_diff` and `cohort_retention` (ISO weeks start on Monday). Returns \
         the type of `ts`; a DATE argument gives a TIMESTAMP in microseconds, which holds every DATE. A \
         period that starts before the earliest value of the type (the year of 1677-09-22 in \
         nanoseconds) is an error, never a wrapped value.",
        "period_start(granularity, ts)",
        "SELECT period_start('quarter', TIMESTAMP '2024-08-15 10:00:00');\n-- 2024-07-01T00:00:00",
    )
    .with_argument("granularity", "'day', 'week', 'month', 'quarter' or 'year'")
    .with_argument("ts", "TIMESTAMP (any unit, with or without time zone) or DATE")
    .build()
});

/// Output type of `period_start` for an input type.
pub fn period_start_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(u, tz) => DataType::Timestamp(*u, tz.clone()),
        DataType::Date64 => DataType::Timestamp(TimeUnit::Millisecond, None),
        // Microseconds hold every DATE (nanoseconds end in 1677 and 2262).
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

impl ScalarUDFImpl for PeriodStart {
    fn name(&self) -> &str {
        "period_start"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(period_start_type(&arg_types[1]))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "period_start takes 2 arguments (granularity, ts), got {}",
                arg_types.len()
            );
        }
        check_temporal("period_start", "ts", &arg_types[1])?;
        Ok(vec![
            coerce_granularity("period_start", &arg_types[0])?,
            arg_types[1].clone(),
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let constant = constant_granularity(&args.args[0])?;
        let g = match constant {
            Some(g) => vec![Some(g)],
            None => granularities(&args.args[0], rows)?,
        };
        let ts = args.args[1].to_array(rows)?;
        let out_type = period_start_type(ts.data_type());
        let DataType::Timestamp(unit, tz) = &out_type else {
            return exec_err!("period_start: unexpected output type {out_type}");
        };
        let unit_t = TickUnit { unit: *unit };
        let (ticks, nulls) = ticks_of(&ts, unit_t)?;
        let values: Vec<Option<i64>> = (0..rows)
            .map(|i| {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    return Ok(None);
                }
                let Some(g) = (if constant.is_some() { g[0] } else { g[i] }) else {
                    return Ok(None);
                };
                let day = unit_t.day_of(ticks[i]);
                // The start of a period can be before the earliest value of the unit (the year
                // of 1677-09-22 in nanoseconds): an error, never a wrapped value.
                unit_t
                    .ticks_of_day(g.period_start_day(g.period_index(day)))
                    .map(Some)
            })
            .collect::<Result<_>>()?;
        let tz = tz.clone();
        let out: ArrayRef = match unit {
            TimeUnit::Second => {
                Arc::new(PrimitiveArray::<TimestampSecondType>::from(values).with_timezone_opt(tz))
            }
            TimeUnit::Millisecond => Arc::new(
                PrimitiveArray::<TimestampMillisecondType>::from(values).with_timezone_opt(tz),
            ),
            TimeUnit::Microsecond => Arc::new(
                PrimitiveArray::<TimestampMicrosecondType>::from(values).with_timezone_opt(tz),
            ),
            TimeUnit::Nanosecond => Arc::new(
                PrimitiveArray::<TimestampNanosecondType>::from(values).with_timezone_opt(tz),
            ),
        };
        Ok(ColumnarValue::Array(out))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&PERIOD_START_DOC)
    }
}

pub fn period_diff_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(PeriodDiff::default()))
}

pub fn period_start_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(PeriodStart::default()))
}
