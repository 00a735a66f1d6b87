//! Time handling shared by every lifecycle function.
//!
//! Two layers:
//! - a pure kernel over `i64` *ticks* (a count of some unit since the Unix epoch, UTC): calendar
//!   period indices and period starts for `day`, `week` (ISO, Monday start), `month`, `quarter` and
//!   `year`, with no Arrow types;
//! - the adapter half ([`TickUnit`], [`ticks_of`]) that turns any Arrow timestamp unit (with or without
//!   time zone, compared as UTC instants), `Date32` and `Date64` into ticks of one common unit, so a
//!   function comparing `order_ts` with `as_of` never loses precision: both are expressed in the finer
//!   of the two units.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};

pub const SECONDS_PER_DAY: i64 = 86_400;

/// Calendar granularity of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Granularity {
    pub const VALID: &'static str = "'day', 'week', 'month', 'quarter', 'year'";

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Quarter => "quarter",
            Granularity::Year => "year",
        }
    }

    /// Index of the period that contains `day` (days since 1970-01-01). Consecutive periods have
    /// consecutive indices, so the distance between two periods is the difference of their indices.
    pub fn period_index(self, day: i64) -> i64 {
        match self {
            Granularity::Day => day,
            // 1970-01-01 was a Thursday; shifting by 3 makes Monday the first day of each week.
            Granularity::Week => (day + 3).div_euclid(7),
            Granularity::Month => month_index(day),
            Granularity::Quarter => month_index(day).div_euclid(3),
            Granularity::Year => civil_from_days(day).0,
        }
    }

    /// First day (days since epoch) of the period with the given index.
    pub fn period_start_day(self, index: i64) -> i64 {
        match self {
            Granularity::Day => index,
            Granularity::Week => index * 7 - 3,
            Granularity::Month => {
                days_from_civil(index.div_euclid(12), index.rem_euclid(12) + 1, 1)
            }
            Granularity::Quarter => {
                let m = index * 3;
                days_from_civil(m.div_euclid(12), m.rem_euclid(12) + 1, 1)
            }
            Granularity::Year => days_from_civil(index, 1, 1),
        }
    }
}

impl FromStr for Granularity {
    type Err = DataFusionError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "days" => Ok(Granularity::Day),
            "week" | "weeks" => Ok(Granularity::Week),
            "month" | "months" => Ok(Granularity::Month),
            "quarter" | "quarters" => Ok(Granularity::Quarter),
            "year" | "years" => Ok(Granularity::Year),
            _ => plan_err!(
                "unknown granularity '{s}': valid granularities are {}",
                Granularity::VALID
            ),
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn month_index(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    y * 12 + (m - 1)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The unit of the ticks a function works in: how many ticks make a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickUnit {
    pub unit: TimeUnit,
}

impl TickUnit {
    pub fn per_second(self) -> i64 {
        match self.unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
    }

    pub fn per_day(self) -> i64 {
        self.per_second() * SECONDS_PER_DAY
    }

    /// Day (since epoch) containing the instant `ticks`.
    pub fn day_of(self, ticks: i64) -> i64 {
        ticks.div_euclid(self.per_day())
    }

    /// `days` whole days as ticks, saturating (a threshold beyond the representable range is
    /// simply "never reached").
    pub fn days(self, days: u64) -> i64 {
        i64::try_from(days)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.per_day())
    }

    /// The unit a function compares the given temporal types in: the finest among them (dates
    /// count as seconds), except that nanoseconds mixed with anything coarser (a DATE, or a
    /// second / milli / microsecond timestamp) are compared in microseconds. Nanoseconds only
    /// reach 1677-09-21..2262-04-11, while DATEs such as 1600-01-01 or the "open-ended"
    /// 9999-12-31 are common in real data, and SQL's `TIMESTAMP '...'` literal is in
    /// nanoseconds; microseconds hold every DATE, and nanosecond values are converted exactly
    /// (one with a sub-microsecond part is an error, never rounded).
    pub fn common(types: &[&DataType]) -> Result<Self> {
        let mut best = TimeUnit::Second;
        let mut coarser_than_ns = false;
        for t in types {
            let u = temporal_unit(t)?;
            coarser_than_ns |= !matches!(t, DataType::Null) && u != TimeUnit::Nanosecond;
            if rank(&u) > rank(&best) {
                best = u;
            }
        }
        if coarser_than_ns && best == TimeUnit::Nanosecond {
            best = TimeUnit::Microsecond;
        }
        Ok(TickUnit { unit: best })
    }

    /// The SQL name of the unit's timestamp type, for messages.
    pub fn type_name(self) -> &'static str {
        match self.unit {
            TimeUnit::Second => "TIMESTAMP(s)",
            TimeUnit::Millisecond => "TIMESTAMP(ms)",
            TimeUnit::Microsecond => "TIMESTAMP(us)",
            TimeUnit::Nanosecond => "TIMESTAMP(ns)",
        }
    }

    /// `day` (days since epoch) as ticks, or a clear error when the unit cannot hold it.
    pub fn ticks_of_day(self, day: i64) -> Result<i64> {
        day.checked_mul(self.per_day())
            .ok_or_else(|| out_of_range(day, self))
    }
}

/// The day (since epoch) of every instant in `ticks`, into `out`: one pass with the unit's
/// ticks-per-day a compile-time constant, so the division is a multiplication.
pub fn days_of(ticks: &[i64], unit: TickUnit, out: &mut Vec<i64>) {
    fn days<const PER_DAY: i64>(ticks: &[i64], out: &mut Vec<i64>) {
        out.extend(ticks.iter().map(|t| t.div_euclid(PER_DAY)));
    }
    out.clear();
    out.reserve(ticks.len());
    match unit.unit {
        TimeUnit::Second => days::<SECONDS_PER_DAY>(ticks, out),
        TimeUnit::Millisecond => days::<{ SECONDS_PER_DAY * 1_000 }>(ticks, out),
        TimeUnit::Microsecond => days::<{ SECONDS_PER_DAY * 1_000_000 }>(ticks, out),
        TimeUnit::Nanosecond => days::<{ SECONDS_PER_DAY * 1_000_000_000 }>(ticks, out),
    }
}

/// The period index of every instant in `ticks`, into `out` (`scratch` is reused between
/// calls). A batch of real data spans a few years of days, fewer days than rows: then the
/// calendar arithmetic runs once per day of the batch's range and each row is a table look-up.
pub fn periods_of(
    ticks: &[i64],
    unit: TickUnit,
    g: Granularity,
    out: &mut Vec<i64>,
    scratch: &mut Vec<i64>,
) {
    days_of(ticks, unit, out);
    if g == Granularity::Day {
        return;
    }
    let (lo, hi) = out
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), d| (lo.min(*d), hi.max(*d)));
    if lo <= hi && ((hi as i128 - lo as i128) as usize) < out.len() {
        scratch.clear();
        scratch.extend((lo..=hi).map(|d| g.period_index(d)));
        for d in out.iter_mut() {
            *d = scratch[(*d - lo) as usize];
        }
    } else {
        for d in out.iter_mut() {
            *d = g.period_index(*d);
        }
    }
}

/// The error for a day that the unit's timestamps cannot represent.
pub fn out_of_range(day: i64, unit: TickUnit) -> DataFusionError {
    let (y, m, d) = civil_from_days(day);
    DataFusionError::Execution(format!(
        "date {y:04}-{m:02}-{d:02} is outside the range of {} values{}",
        unit.type_name(),
        if unit.unit == TimeUnit::Nanosecond {
            " (1677-09-21 to 2262-04-11); cast nanosecond timestamps to microseconds, \
             e.g. arrow_cast(ts, 'Timestamp(Microsecond, None)'), or compare with a DATE"
        } else {
            ""
        }
    ))
}

fn rank(u: &TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

/// Whether `t` is a type the lifecycle functions accept as a point in time.
pub fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null
    )
}

fn temporal_unit(t: &DataType) -> Result<TimeUnit> {
    match t {
        DataType::Timestamp(u, _) => Ok(*u),
        DataType::Date32 | DataType::Null => Ok(TimeUnit::Second),
        DataType::Date64 => Ok(TimeUnit::Millisecond),
        other => plan_err!("expected a TIMESTAMP or DATE, got {other}"),
    }
}

/// Checks that argument `name` of `func` is a timestamp or date, with a message that names both.
pub fn check_temporal(func: &str, name: &str, t: &DataType) -> Result<()> {
    if is_temporal(t) {
        Ok(())
    } else {
        plan_err!(
            "{func}: argument '{name}' must be a TIMESTAMP or DATE, got {t}; \
             cast it, e.g. CAST({name} AS TIMESTAMP) or TIMESTAMP '2024-01-31'"
        )
    }
}

/// The ticks of `expr` in `unit` when it is a constant (a literal such as `TIMESTAMP '...'`, which
/// DataFusion hands an aggregate as a full column every batch): `Some(None)` for a NULL constant,
/// `None` when it is not a constant or does not convert (then it is read row by row, with the
/// row-by-row errors).
pub fn constant_ticks(
    expr: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    unit: TickUnit,
) -> Option<Option<i64>> {
    let value = super::args::constant(expr)?;
    let array = value.to_array_of_size(1).ok()?;
    let (ticks, nulls) = ticks_of(&array, unit).ok()?;
    Some((!nulls.is_some_and(|n| n.is_null(0))).then(|| ticks[0]))
}

/// Ticks of `unit` for every row of a temporal array, and its null mask. Borrows the array's
/// values when no conversion is needed (the common case of one shared unit).
pub fn ticks_of(array: &ArrayRef, unit: TickUnit) -> Result<(Cow<'_, [i64]>, Option<NullBuffer>)> {
    let nulls = array.logical_nulls();
    let target = unit.per_second();
    fn scaled<'a>(
        values: &'a [i64],
        per_second: i64,
        target: i64,
        nulls: Option<&NullBuffer>,
        unit: TickUnit,
    ) -> Result<Cow<'a, [i64]>> {
        if per_second == target {
            return Ok(Cow::Borrowed(values));
        }
        let is_null = |i: usize| nulls.is_some_and(|n| n.is_null(i));
        let mut out = Vec::with_capacity(values.len());
        if per_second > target {
            // Coarser target (nanoseconds next to DATEs): exact or an error, never rounded.
            let divisor = per_second / target;
            for (i, v) in values.iter().enumerate() {
                if v % divisor == 0 {
                    out.push(v / divisor);
                } else if is_null(i) {
                    out.push(0);
                } else {
                    return exec_err!(
                        "timestamp {v} (nanoseconds) has a sub-{} part and cannot be compared exactly \
                         with a coarser DATE or TIMESTAMP; truncate it first, e.g. date_trunc('second', ts)",
                        match unit.unit {
                            TimeUnit::Microsecond => "microsecond",
                            TimeUnit::Millisecond => "millisecond",
                            _ => "second",
                        }
                    );
                }
            }
            return Ok(Cow::Owned(out));
        }
        let factor = target / per_second;
        for (i, v) in values.iter().enumerate() {
            match v.checked_mul(factor) {
                Some(x) => out.push(x),
                None if is_null(i) => out.push(0),
                None => {
                    return Err(out_of_range(
                        v.div_euclid(per_second * SECONDS_PER_DAY),
                        unit,
                    ));
                }
            }
        }
        Ok(Cow::Owned(out))
    }
    let n = nulls.as_ref();
    let ticks = match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => scaled(
            array.as_primitive::<TimestampSecondType>().values(),
            1,
            target,
            n,
            unit,
        )?,
        DataType::Timestamp(TimeUnit::Millisecond, _) => scaled(
            array.as_primitive::<TimestampMillisecondType>().values(),
            1_000,
            target,
            n,
            unit,
        )?,
        DataType::Timestamp(TimeUnit::Microsecond, _) => scaled(
            array.as_primitive::<TimestampMicrosecondType>().values(),
            1_000_000,
            target,
            n,
            unit,
        )?,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => scaled(
            array.as_primitive::<TimestampNanosecondType>().values(),
            1_000_000_000,
            target,
            n,
            unit,
        )?,
        DataType::Date64 => scaled(
            array.as_primitive::<Date64Type>().values(),
            1_000,
            target,
            n,
            unit,
        )?,
        DataType::Date32 => {
            let per_day = unit.per_day();
            let days = array.as_primitive::<Date32Type>().values();
            let mut out = Vec::with_capacity(days.len());
            for (i, d) in days.iter().enumerate() {
                match (*d as i64).checked_mul(per_day) {
                    Some(t) => out.push(t),
                    None if nulls.as_ref().is_some_and(|n| n.is_null(i)) => out.push(0),
                    None => return Err(out_of_range(*d as i64, unit)),
                }
            }
            Cow::Owned(out)
        }
        DataType::Null => Cow::Owned(vec![0; array.len()]),
        other => return exec_err!("expected a TIMESTAMP or DATE array, got {other}"),
    };
    Ok((ticks, nulls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(y: i64, m: i64, d: i64) -> i64 {
        days_from_civil(y, m, d)
    }

    #[test]
    fn civil_round_trip_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn week_is_iso_monday_start() {
        // 2024-01-07 is a Sunday, 2024-01-08 a Monday.
        let sun = day(2024, 1, 7);
        let mon = day(2024, 1, 8);
        assert_eq!(
            Granularity::Week.period_index(mon) - Granularity::Week.period_index(sun),
            1
        );
        assert_eq!(
            Granularity::Week.period_start_day(Granularity::Week.period_index(sun)),
            day(2024, 1, 1)
        );
        // Monday and the following Sunday share a week.
        assert_eq!(
            Granularity::Week.period_index(mon),
            Granularity::Week.period_index(day(2024, 1, 14))
        );
    }

    #[test]
    fn month_quarter_year_boundaries() {
        let g = Granularity::Month;
        assert_eq!(
            g.period_index(day(2024, 2, 1)) - g.period_index(day(2024, 1, 31)),
            1
        );
        assert_eq!(
            g.period_index(day(2025, 1, 1)) - g.period_index(day(2024, 12, 31)),
            1
        );
        let q = Granularity::Quarter;
        assert_eq!(
            q.period_index(day(2024, 4, 1)) - q.period_index(day(2024, 3, 31)),
            1
        );
        assert_eq!(
            q.period_start_day(q.period_index(day(2024, 8, 15))),
            day(2024, 7, 1)
        );
        let y = Granularity::Year;
        assert_eq!(
            y.period_index(day(2025, 1, 1)) - y.period_index(day(2024, 12, 31)),
            1
        );
        assert_eq!(
            y.period_start_day(y.period_index(day(1969, 5, 5))),
            day(1969, 1, 1)
        );
    }

    #[test]
    fn periods_of_equals_period_index_per_row() {
        // A narrow batch (the table path) and a wide one (the direct path), every unit.
        let narrow: Vec<i64> = (0..500).map(|i| 19_000 + (i * 7919) % 400).collect();
        let wide: Vec<i64> = vec![-1_000_000, 0, 59, 60, 1_000_000, -719_468];
        for days in [narrow, wide] {
            for unit in [
                TimeUnit::Second,
                TimeUnit::Millisecond,
                TimeUnit::Microsecond,
                TimeUnit::Nanosecond,
            ] {
                let u = TickUnit { unit };
                // Ticks a little after midnight and just before the next one.
                let ticks: Vec<i64> = days
                    .iter()
                    .filter_map(|d| {
                        d.checked_mul(u.per_day())?
                            .checked_add(u.per_day())?
                            .checked_add(1)
                    })
                    .flat_map(|t| [t - u.per_day(), t - 2])
                    .collect();
                for g in [
                    Granularity::Day,
                    Granularity::Week,
                    Granularity::Month,
                    Granularity::Quarter,
                    Granularity::Year,
                ] {
                    let (mut out, mut scratch) = (vec![], vec![]);
                    periods_of(&ticks, u, g, &mut out, &mut scratch);
                    let want: Vec<i64> =
                        ticks.iter().map(|t| g.period_index(u.day_of(*t))).collect();
                    assert_eq!(out, want, "{g} {unit:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_granularity_lists_valid_ones() {
        let err = "fortnight".parse::<Granularity>().unwrap_err().to_string();
        assert!(
            err.contains("'day', 'week', 'month', 'quarter', 'year'"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn civil_round_trip(d in -1_000_000i64..1_000_000) {
            let (y, m, dd) = civil_from_days(d);
            prop_assert_eq!(days_from_civil(y, m, dd), d);
        }

        #[test]
        fn period_start_contains_day(d in -200_000i64..200_000, g in 0usize..5) {
            let g = [Granularity::Day, Granularity::Week, Granularity::Month, Granularity::Quarter, Granularity::Year][g];
            let idx = g.period_index(d);
            let start = g.period_start_day(idx);
            prop_assert!(start <= d);
            prop_assert_eq!(g.period_index(start), idx);
            prop_assert_eq!(g.period_index(start - 1), idx - 1);
        }
    }
}
