//! Lead scoring: `lead_score(points, event_ts, as_of, half_life_days)` (aggregate) and
//! `lead_stage(score, t1, t2, t3)` (scalar).
//!
//! Kernel: each event at or before `as_of` adds `points x 0.5^(age_days / half_life_days)`; the
//! score is the sum, so the state is one `f64` per group and merging adds.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, ColumnarValue, Documentation, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::support::doc::{aggregate_doc, scalar_doc};
use crate::support::time::{TickUnit, check_temporal, ticks_of};
use crate::support::{resize, row_mask, take};

pub mod kernel;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LeadScore {
    signature: Signature,
}

static SCORE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Engagement score of a lead (use with GROUP BY customer): the sum over events at or before `as_of` of \
         `points x 0.5^(age_days / half_life_days)`, with `age_days = (as_of - event_ts)` in exact days. Points per \
         event type come from the query, e.g. a CASE or a join to a weights table. Rows with a NULL argument are \
         skipped; a half-life <= 0 is an error. A lead whose events all come after `as_of` scores 0; NULL for a group without usable rows.",
        "lead_score(points, event_ts, as_of, half_life_days)",
        "SELECT customer_id, round(lead_score(CASE event_type WHEN 'visit' THEN 1 WHEN 'view' THEN 2 WHEN 'cart' THEN 5 ELSE 8 END,\n                                 event_ts, TIMESTAMP '2024-01-31', 14), 3) AS score\nFROM (VALUES (1, TIMESTAMP '2024-01-31', 'cart'), (1, TIMESTAMP '2024-01-17', 'visit')) AS e(customer_id, event_ts, event_type)\nGROUP BY customer_id;",
    )
    .with_argument("points", "numeric points of the event")
    .with_argument("event_ts", "TIMESTAMP or DATE of the event")
    .with_argument("as_of", "TIMESTAMP or DATE the score is taken at; later events count nothing")
    .with_argument("half_life_days", "positive number of days after which an event counts half")
    .build()
});

impl AggregateUDFImpl for LeadScore {
    fn name(&self) -> &str {
        "lead_score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 4 {
            return plan_err!(
                "lead_score takes 4 arguments (points, event_ts, as_of, half_life_days), got {}",
                arg_types.len()
            );
        }
        for (i, n) in [(0, "points"), (3, "half_life_days")] {
            if !(arg_types[i].is_numeric() || arg_types[i].is_null()) {
                return plan_err!(
                    "lead_score: argument '{n}' must be numeric, got {}",
                    arg_types[i]
                );
            }
        }
        check_temporal("lead_score", "event_ts", &arg_types[1])?;
        check_temporal("lead_score", "as_of", &arg_types[2])?;
        Ok(vec![
            DataType::Float64,
            arg_types[1].clone(),
            arg_types[2].clone(),
            DataType::Float64,
        ])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[score]", args.name),
            DataType::Float64,
            true,
        ))])
    }

    crate::support::grouped_accumulators!(groups);

    fn documentation(&self) -> Option<&Documentation> {
        Some(&SCORE_DOC)
    }
}

fn groups(_udaf: &LeadScore, args: &AccumulatorArgs) -> Result<LeadGroups> {
    Ok(LeadGroups {
        unit: TickUnit::common(&[
            args.expr_fields[1].data_type(),
            args.expr_fields[2].data_type(),
        ])?,
        scores: vec![],
    })
}

/// One optional score per group (None until a scored event arrives).
struct LeadGroups {
    unit: TickUnit,
    scores: Vec<Option<f64>>,
}

impl LeadGroups {
    fn for_each_row(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut f: impl FnMut(usize, f64),
    ) -> Result<()> {
        let points = values[0].as_primitive::<Float64Type>();
        let (ts, ts_nulls) = ticks_of(&values[1], self.unit)?;
        let (as_of, as_of_nulls) = ticks_of(&values[2], self.unit)?;
        let half = values[3].as_primitive::<Float64Type>();
        let usable = row_mask(
            filter,
            &[
                points.nulls(),
                ts_nulls.as_ref(),
                as_of_nulls.as_ref(),
                half.nulls(),
            ],
        );
        let per_day = self.unit.per_day() as f64;
        for row in 0..ts.len() {
            if usable.as_ref().is_some_and(|m| m.is_null(row)) {
                continue;
            }
            let h = half.value(row);
            if !(h > 0.0 && h.is_finite()) {
                return exec_err!("lead_score: half_life_days must be a positive number, got {h}");
            }
            let age = (as_of[row] as f64 - ts[row] as f64) / per_day;
            f(row, kernel::decayed(points.value(row), age, h));
        }
        Ok(())
    }
}

fn add(s: &mut Option<f64>, v: f64) {
    *s = Some(s.unwrap_or(0.0) + v);
}

impl GroupsAccumulator for LeadGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        resize(&mut self.scores, total_num_groups, None);
        let mut scores = std::mem::take(&mut self.scores);
        let r = self.for_each_row(values, opt_filter, |row, v| {
            add(&mut scores[group_indices[row]], v)
        });
        self.scores = scores;
        r
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        resize(&mut self.scores, total_num_groups, None);
        let s = values[0].as_primitive::<Float64Type>();
        for (row, g) in group_indices.iter().enumerate() {
            if s.is_valid(row) {
                add(&mut self.scores[*g], s.value(row));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(Arc::new(Float64Array::from(take(
            emit_to,
            &mut self.scores,
        ))))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut out = vec![None; values[0].len()];
        self.for_each_row(values, opt_filter, |row, v| out[row] = Some(v))?;
        Ok(vec![Arc::new(Float64Array::from(out))])
    }

    fn size(&self) -> usize {
        self.scores.capacity() * size_of::<Option<f64>>()
    }
}

pub fn lead_score_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(LeadScore {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LeadStage {
    signature: Signature,
}

static STAGE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Pre-purchase stage of a lead score: `awareness` (score < t1), `interest` (< t2), `consideration` (< t3), \
         otherwise `decision`. Thresholds must satisfy t1 <= t2 <= t3; NULL score gives NULL.",
        "lead_stage(score, t1, t2, t3)",
        "SELECT s, lead_stage(s, 5, 15, 30) AS stage FROM (VALUES (1.0), (5.0), (20.0), (31.0)) AS t(s);",
    )
    .with_argument("score", "numeric score, e.g. from lead_score")
    .with_argument("t1, t2, t3", "numeric thresholds, ascending")
    .build()
});

impl ScalarUDFImpl for LeadStage {
    fn name(&self) -> &str {
        "lead_stage"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 4 {
            return plan_err!(
                "lead_stage takes 4 arguments (score, t1, t2, t3), got {}",
                arg_types.len()
            );
        }
        for (t, n) in arg_types.iter().zip(["score", "t1", "t2", "t3"]) {
            if !(t.is_numeric() || t.is_null()) {
                return plan_err!("lead_stage: argument '{n}' must be numeric, got {t}");
            }
        }
        Ok(vec![DataType::Float64; 4])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, all_scalar) = crate::support::scalar_args(&args.args)?;
        let cols: Vec<&Float64Array> = arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let mut out = Vec::with_capacity(cols[0].len());
        for i in 0..cols[0].len() {
            if cols.iter().any(|c| c.is_null(i)) {
                out.push(None);
                continue;
            }
            let t = [cols[1].value(i), cols[2].value(i), cols[3].value(i)];
            if !(t[0] <= t[1] && t[1] <= t[2]) {
                return exec_err!(
                    "lead_stage: thresholds must be ascending (t1 <= t2 <= t3), got {t:?}"
                );
            }
            out.push(Some(kernel::stage(cols[0].value(i), t)));
        }
        let arr: ArrayRef = Arc::new(StringArray::from(out));
        crate::support::scalar_result(arr, all_scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&STAGE_DOC)
    }
}

pub fn lead_stage_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(LeadStage {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;

    #[test]
    fn decay_and_stages_by_hand() {
        assert_eq!(decayed(8.0, 0.0, 14.0), 8.0);
        assert!((decayed(8.0, 14.0, 14.0) - 4.0).abs() < 1e-12);
        assert!((decayed(8.0, 28.0, 14.0) - 2.0).abs() < 1e-12);
        assert_eq!(decayed(8.0, -1.0, 14.0), 0.0);
        let t = [5.0, 15.0, 30.0];
        assert_eq!(stage(4.99, t), "awareness");
        assert_eq!(stage(5.0, t), "interest");
        assert_eq!(stage(15.0, t), "consideration");
        assert_eq!(stage(30.0, t), "decision");
    }
}
