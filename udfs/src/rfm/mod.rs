//! `rfm_summary(order_ts, amount, as_of [, period])` and `churn_risk(order_ts, as_of)`: one
//! per-customer kernel with the definitions of `lifetimes.utils.summary_data_from_transaction_data`.
//!
//! Kernel: a customer's orders at or before `as_of`, as (day, amount) pairs in any order; the
//! summary sorts them (so it does not depend on row order or on how rows were split) and reads off
//! frequency (distinct days - 1), recency (last day - first day), t (as_of day - first day) and
//! monetary value (mean over the repeat days of each day's summed amount).
//!
//! Adapter: the groups accumulator keeps one flat vector of (group, day, amount) entries and one
//! `as_of` per group; evaluating buckets the entries by group (a counting sort, O(rows)) and
//! summarises each group's slice. Partial states are the per-group lists of days and amounts.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;

use crate::support::doc::aggregate_doc;
use crate::support::time::{TickUnit, check_temporal, constant_ticks, ticks_of};
use crate::support::{GroupLog, OneGroup, check_arity, list_array, money, resize, row_mask, take};

pub mod kernel;

use kernel::{Amount, MEAN_EXTRA_SCALE, NONE, NoAmount, Rfm};

/// Which answer the shared kernel gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RfmOutput {
    Summary,
    ChurnRisk,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmUdaf {
    output: RfmOutput,
    signature: Signature,
}

/// DECIMAL amounts of at most this precision are kept as `i64` (10^18 - 1 < 2^63).
const NARROW_PRECISION: u8 = 18;

/// The summary's fields; `monetary_value` is DOUBLE, or DECIMAL(38, s + 4) for DECIMAL amounts
/// of scale s (`amount` as read, see [`money::amount_type`]).
fn summary_fields(amount: &DataType) -> Fields {
    let monetary = match amount {
        DataType::Decimal128(_, s) => {
            DataType::Decimal128(38, (*s + MEAN_EXTRA_SCALE as i8).min(38))
        }
        _ => DataType::Float64,
    };
    Fields::from(vec![
        Field::new("frequency", DataType::Float64, true),
        Field::new("recency", DataType::Float64, true),
        Field::new("t", DataType::Float64, true),
        Field::new("monetary_value", monetary, true),
    ])
}

/// How an order amount kind is read from and written to Arrow.
trait RfmAmount: Amount {
    /// Whether the state carries a list of amounts (not for [`NoAmount`]).
    const IN_STATE: bool = true;

    /// A column of amounts as read (DOUBLE or DECIMAL(p, s)), NULL as 0.
    fn column(values: &ArrayRef) -> Result<Vec<Self>>;

    /// Amounts as an array of the read type `t`.
    fn array(values: Vec<Self>, t: &DataType) -> Result<ArrayRef>;

    /// Means as an array of the summary's `monetary_value` type `t`.
    fn means(values: Vec<Option<Self::Mean>>, t: &DataType) -> Result<ArrayRef>;
}

impl RfmAmount for f64 {
    fn column(values: &ArrayRef) -> Result<Vec<Self>> {
        Ok(money::floats(values))
    }

    fn array(values: Vec<Self>, _: &DataType) -> Result<ArrayRef> {
        Ok(Arc::new(Float64Array::from(values)))
    }

    fn means(values: Vec<Option<f64>>, _: &DataType) -> Result<ArrayRef> {
        Ok(Arc::new(Float64Array::from(values)))
    }
}

impl RfmAmount for NoAmount {
    const IN_STATE: bool = false;

    fn column(values: &ArrayRef) -> Result<Vec<Self>> {
        Ok(vec![NoAmount; values.len()])
    }

    fn array(_: Vec<Self>, _: &DataType) -> Result<ArrayRef> {
        datafusion::common::internal_err!("churn_risk keeps no amounts")
    }

    fn means(_: Vec<Option<()>>, _: &DataType) -> Result<ArrayRef> {
        datafusion::common::internal_err!("churn_risk has no monetary value")
    }
}

impl RfmAmount for i128 {
    fn column(values: &ArrayRef) -> Result<Vec<Self>> {
        Ok(money::decimals(values))
    }

    fn array(values: Vec<Self>, t: &DataType) -> Result<ArrayRef> {
        money::decimal_array("rfm_summary", values.into_iter().map(Some), t)
    }

    fn means(values: Vec<Option<i128>>, t: &DataType) -> Result<ArrayRef> {
        money::decimal_array("rfm_summary", values, t)
    }
}

/// DECIMAL amounts of precision at most 18 (as [`RfmUdaf`] coerces them: DECIMAL(18, s)).
impl RfmAmount for i64 {
    fn column(values: &ArrayRef) -> Result<Vec<Self>> {
        money::decimals(values)
            .into_iter()
            .map(|v| {
                i64::try_from(v).map_err(|_| {
                    datafusion::common::DataFusionError::Execution(format!(
                        "rfm_summary: amount {v} (unscaled) exceeds its type {}",
                        values.data_type()
                    ))
                })
            })
            .collect()
    }

    fn array(values: Vec<Self>, t: &DataType) -> Result<ArrayRef> {
        money::decimal_array(
            "rfm_summary",
            values.into_iter().map(|v| Some(v as i128)),
            t,
        )
    }

    fn means(values: Vec<Option<i128>>, t: &DataType) -> Result<ArrayRef> {
        money::decimal_array("rfm_summary", values, t)
    }
}

static RFM_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Recency-frequency-monetary summary of one customer (use with GROUP BY customer), with exactly the \
         definitions of `lifetimes.utils.summary_data_from_transaction_data`: orders after `as_of` are dropped; \
         timestamps are floored to (UTC) days; `frequency` = distinct purchase days - 1; `recency` = last purchase \
         day - first purchase day; `t` = `as_of` day - first purchase day; `monetary_value` = mean over the repeat \
         purchase days of each day's summed amount (0 when frequency is 0; for DECIMAL amounts of scale s, summed \
         exactly and a DECIMAL(38, s + 4) rounded half away from zero, as DataFusion's `avg`; other amounts give \
         DOUBLE). `recency` and `t` are expressed in \
         `period`: 'day' (default), 'week' (days / 7) or any number of days. NULL for a customer without orders \
         at or before `as_of`; a NULL amount counts as 0. The result feeds `bgnbd_fit`, `pareto_nbd_fit` and \
         `gamma_gamma_fit`.",
        "rfm_summary(order_ts, amount, as_of [, period])",
        "SELECT customer_id, s.frequency, s.recency, s.t, s.monetary_value FROM (\n  SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30', 'week') AS s\n  FROM cdnow GROUP BY customer_id)\nORDER BY customer_id LIMIT 3;",
    )
    .with_argument("order_ts", "TIMESTAMP (any unit, with or without time zone) or DATE of each order")
    .with_argument("amount", "numeric amount of each order (DECIMAL amounts stay exact)")
    .with_argument("as_of", "TIMESTAMP or DATE: end of the observation period (constant per customer)")
    .with_argument("period", "constant 'day', 'week', or a positive number of days (DOUBLE)")
    .build()
});

static CHURN_RISK_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Cadence-aware silence probability of one customer, without a model fit: \
         `exp(-rate x days_since_last)` with the customer's own purchase rate `rate = frequency / recency` \
         (from `rfm_summary`, in days) and `days_since_last = t - recency` - the probability that a customer \
         buying at its own pace would have stayed silent this long. Near 1: the silence is normal for this \
         customer; near 0: far longer than its usual gap (likely churned). NULL for one-time buyers (no rate) \
         and customers without orders. Compare `churn_flag` (one fixed threshold for everyone) and the model \
         route `1 - bgnbd_p_alive(...)` (a population fit, two passes).",
        "churn_risk(order_ts, as_of)",
        "SELECT customer_id, churn_risk(order_ts, TIMESTAMP '2025-01-01') AS silence_probability\nFROM purchases GROUP BY customer_id ORDER BY silence_probability LIMIT 5;",
    )
    .with_argument("order_ts", "TIMESTAMP or DATE of each order")
    .with_argument("as_of", "TIMESTAMP or DATE the risk is judged at")
    .build()
});

impl RfmUdaf {
    pub fn new(output: RfmOutput) -> Self {
        Self {
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// Positions of (order_ts, amount, as_of) in the arguments.
    fn positions(&self) -> (usize, Option<usize>, usize) {
        match self.output {
            RfmOutput::Summary => (0, Some(1), 2),
            RfmOutput::ChurnRisk => (0, None, 1),
        }
    }

    fn groups<A: RfmAmount>(&self, args: &AccumulatorArgs) -> Result<RfmGroups<A>> {
        let (ts, _, as_of) = self.positions();
        let unit = TickUnit::common(&[
            args.expr_fields[ts].data_type(),
            args.expr_fields[as_of].data_type(),
        ])?;
        let period_days = if self.output == RfmOutput::Summary && args.exprs.len() == 4 {
            period_days(&args.exprs[3])?
        } else {
            1.0
        };
        Ok(RfmGroups {
            output: self.output,
            unit,
            constant_as_of: constant_ticks(&args.exprs[as_of], unit),
            period_days,
            orders: GroupLog::default(),
            as_of: vec![],
            amount_type: match self.output {
                RfmOutput::Summary => args.expr_fields[1].data_type().clone(),
                RfmOutput::ChurnRisk => DataType::Float64,
            },
        })
    }

    /// Whether this call's amounts are exact decimals.
    fn decimal(&self, args: &AccumulatorArgs) -> bool {
        self.output == RfmOutput::Summary && money::is_decimal(args.expr_fields[1].data_type())
    }

    /// Whether this call's amounts are decimals of precision at most 18 (kept as `i64`).
    fn narrow_decimal(&self, args: &AccumulatorArgs) -> bool {
        self.decimal(args)
            && matches!(args.expr_fields[1].data_type(), DataType::Decimal128(p, _) if *p <= NARROW_PRECISION)
    }
}

/// The `period` argument as a number of days.
fn period_days(expr: &Arc<dyn PhysicalExpr>) -> Result<f64> {
    let Some(value) = crate::support::constant(expr) else {
        return plan_err!("rfm_summary: argument 'period' must be a constant");
    };
    let days = match &value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "day" | "days" => 1.0,
            "week" | "weeks" => 7.0,
            other => {
                return plan_err!(
                    "rfm_summary: unknown period '{other}': use 'day', 'week' or a number of days"
                );
            }
        },
        v => match v.cast_to(&DataType::Float64)? {
            ScalarValue::Float64(Some(d)) => d,
            _ => return plan_err!("rfm_summary: argument 'period' must not be NULL"),
        },
    };
    if !(days > 0.0 && days.is_finite()) {
        return plan_err!("rfm_summary: period must be a positive number of days, got {days}");
    }
    Ok(days)
}

impl AggregateUDFImpl for RfmUdaf {
    fn name(&self) -> &str {
        match self.output {
            RfmOutput::Summary => "rfm_summary",
            RfmOutput::ChurnRisk => "churn_risk",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let n = arg_types.len();
        match self.output {
            RfmOutput::Summary => {
                check_arity(name, "order_ts, amount, as_of [, period]", n, 3, 4)?;
                check_temporal(name, "order_ts", &arg_types[0])?;
                if !(arg_types[1].is_numeric() || arg_types[1].is_null()) {
                    return plan_err!(
                        "{name}: argument 'amount' must be numeric, got {}",
                        arg_types[1]
                    );
                }
                check_temporal(name, "as_of", &arg_types[2])?;
                // DECIMALs of precision at most 18 stay that narrow (kept as `i64`, half the
                // memory of the `i128` of wider ones).
                let amount = match &arg_types[1] {
                    DataType::Decimal32(p, s)
                    | DataType::Decimal64(p, s)
                    | DataType::Decimal128(p, s)
                    | DataType::Decimal256(p, s)
                        if *p <= NARROW_PRECISION && *s >= 0 =>
                    {
                        DataType::Decimal128(NARROW_PRECISION, *s)
                    }
                    t => money::amount_type(t),
                };
                let mut out = vec![arg_types[0].clone(), amount, arg_types[2].clone()];
                if n == 4 {
                    let t = &arg_types[3];
                    if t.is_numeric() {
                        out.push(DataType::Float64);
                    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    {
                        out.push(t.clone());
                    } else {
                        return plan_err!(
                            "{name}: argument 'period' must be 'day', 'week' or a number of days, got {t}"
                        );
                    }
                }
                Ok(out)
            }
            RfmOutput::ChurnRisk => {
                check_arity(name, "order_ts, as_of", n, 2, 2)?;
                check_temporal(name, "order_ts", &arg_types[0])?;
                check_temporal(name, "as_of", &arg_types[1])?;
                Ok(arg_types.to_vec())
            }
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            RfmOutput::Summary => DataType::Struct(summary_fields(&arg_types[1])),
            RfmOutput::ChurnRisk => DataType::Float64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, false)));
        let mut fields = vec![Arc::new(Field::new(
            format!("{}[days]", args.name),
            list(DataType::Int32),
            true,
        ))];
        // churn_risk reads no amounts (its orders are days only).
        if self.output == RfmOutput::Summary {
            fields.push(Arc::new(Field::new(
                format!("{}[amounts]", args.name),
                list(args.input_fields[1].data_type().clone()),
                true,
            )));
        }
        fields.push(Arc::new(Field::new(
            format!("{}[as_of]", args.name),
            DataType::Int64,
            true,
        )));
        Ok(fields)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(match self.output {
            RfmOutput::ChurnRisk => {
                Box::new(OneGroup::new(self.groups::<NoAmount>(&args)?, &args)?)
            }
            _ if self.decimal(&args) => {
                Box::new(OneGroup::new(self.groups::<i128>(&args)?, &args)?)
            }
            _ => Box::new(OneGroup::new(self.groups::<f64>(&args)?, &args)?),
        })
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(match self.output {
            RfmOutput::ChurnRisk => Box::new(self.groups::<NoAmount>(&args)?),
            _ if self.narrow_decimal(&args) => Box::new(self.groups::<i64>(&args)?),
            _ if self.decimal(&args) => Box::new(self.groups::<i128>(&args)?),
            _ => Box::new(self.groups::<f64>(&args)?),
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.output {
            RfmOutput::Summary => &RFM_DOC,
            RfmOutput::ChurnRisk => &CHURN_RISK_DOC,
        })
    }
}

struct RfmGroups<A: RfmAmount> {
    output: RfmOutput,
    unit: TickUnit,
    /// `as_of` when it is a constant (see [`constant_ticks`]).
    constant_as_of: Option<Option<i64>>,
    period_days: f64,
    /// Every order of every group: (day, amount), with the group id.
    orders: GroupLog<(i32, A)>,
    as_of: Vec<i64>,
    /// The amounts' type as read: DOUBLE or DECIMAL(38, s).
    amount_type: DataType,
}

impl<A: RfmAmount> RfmGroups<A> {
    /// Feeds every usable row to `f(row, order, as_of)`; `order` is None for a row without an
    /// order at or before its `as_of`.
    fn for_each_row(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut f: impl FnMut(usize, Option<(i32, A)>, i64),
    ) -> Result<()> {
        let (ts_i, amount_i, as_of_i) = match self.output {
            RfmOutput::Summary => (0, Some(1), 2),
            RfmOutput::ChurnRisk => (0, None, 1),
        };
        let (ts, ts_nulls) = ticks_of(&values[ts_i], self.unit)?;
        // A constant `as_of` is not converted row by row; a NULL one leaves no row usable.
        let column = match self.constant_as_of {
            Some(None) => return Ok(()),
            Some(Some(_)) => None,
            None => Some(ticks_of(&values[as_of_i], self.unit)?),
        };
        let constant = self.constant_as_of.flatten().unwrap_or_default();
        let as_of_at = |row: usize| column.as_ref().map_or(constant, |(c, _)| c[row]);
        let amounts = amount_i.map(|i| A::column(&values[i])).transpose()?;
        let usable = row_mask(filter, &[column.as_ref().and_then(|c| c.1.as_ref())]);
        for row in 0..ts.len() {
            if usable.as_ref().is_some_and(|m| m.is_null(row)) {
                continue;
            }
            let as_of = as_of_at(row);
            let has_order = ts_nulls.as_ref().is_none_or(|m| m.is_valid(row)) && ts[row] <= as_of;
            let order = has_order.then(|| {
                let day = self.unit.day_of(ts[row]) as i32;
                let amount = amounts.as_ref().map_or(A::default(), |a| a[row]);
                (day, amount)
            });
            f(row, order, as_of);
        }
        Ok(())
    }

    /// Takes groups `emit_to` out: their orders bucketed by group, and their `as_of`.
    fn take_groups(&mut self, emit_to: EmitTo) -> (Vec<usize>, Vec<(i32, A)>, Vec<i64>) {
        let as_of = take(emit_to, &mut self.as_of);
        let (offsets, flat) = self.orders.take(emit_to, as_of.len());
        (offsets, flat, as_of)
    }

    fn finish(&self, offsets: &[usize], flat: &mut [(i32, A)], as_of: &[i64]) -> Result<ArrayRef> {
        let per_day = self.unit.per_day();
        let summaries: Vec<Option<Rfm<A::Mean>>> = (0..as_of.len())
            .map(|g| {
                if as_of[g] == NONE {
                    return None;
                }
                kernel::summarize(
                    &mut flat[offsets[g]..offsets[g + 1]],
                    as_of[g].div_euclid(per_day),
                )
            })
            .collect();
        Ok(match self.output {
            RfmOutput::ChurnRisk => Arc::new(
                summaries
                    .iter()
                    .map(|s| s.as_ref().and_then(kernel::churn_risk))
                    .collect::<Float64Array>(),
            ),
            RfmOutput::Summary => {
                let p = self.period_days;
                let fields = summary_fields(&self.amount_type);
                let col = |f: &dyn Fn(&Rfm<A::Mean>) -> f64| -> ArrayRef {
                    Arc::new(
                        summaries
                            .iter()
                            .map(|s| s.as_ref().map(f))
                            .collect::<Float64Array>(),
                    )
                };
                let nulls = summaries.iter().map(|s| s.is_some()).collect::<Vec<_>>();
                let monetary = A::means(
                    summaries
                        .iter()
                        .map(|s| s.as_ref().map(|r| r.monetary_value))
                        .collect(),
                    fields[3].data_type(),
                )?;
                Arc::new(StructArray::try_new(
                    fields,
                    vec![
                        col(&|r| r.frequency),
                        col(&|r| r.recency / p),
                        col(&|r| r.t / p),
                        monetary,
                    ],
                    Some(nulls.into()),
                )?)
            }
        })
    }

    fn state_arrays(
        &self,
        offsets: &[usize],
        flat: &[(i32, A)],
        as_of: Vec<i64>,
    ) -> Result<Vec<ArrayRef>> {
        let days = Int32Array::from_iter_values(flat.iter().map(|e| e.0));
        let mut state = vec![list_array(offsets, Arc::new(days))];
        if A::IN_STATE {
            let amounts = A::array(flat.iter().map(|e| e.1).collect(), &self.amount_type)?;
            state.push(list_array(offsets, amounts));
        }
        state.push(Arc::new(Int64Array::from(as_of)));
        Ok(state)
    }

    fn merge_states(
        &mut self,
        values: &[ArrayRef],
        group_of: impl Fn(usize) -> usize,
    ) -> Result<()> {
        let days = values[0].as_list::<i32>();
        let as_of = values[values.len() - 1].as_primitive::<Int64Type>();
        let day_values = days
            .values()
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let amount_values = if A::IN_STATE {
            A::column(values[1].as_list::<i32>().values())?
        } else {
            vec![A::default(); day_values.len()]
        };
        let offsets = days.value_offsets();
        for row in 0..days.len() {
            let g = group_of(row);
            if as_of.is_valid(row) && as_of.value(row) > self.as_of[g] {
                self.as_of[g] = as_of.value(row);
            }
            let range = offsets[row] as usize..offsets[row + 1] as usize;
            for (k, amount) in range.clone().zip(&amount_values[range]) {
                self.orders.push(g, (day_values.value(k), *amount));
            }
        }
        Ok(())
    }
}

impl<A: RfmAmount> GroupsAccumulator for RfmGroups<A> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        // A constant `as_of` is every group's from the start (a group without orders gives NULL
        // whatever its `as_of`): no per-row write to a vector the size of the groups.
        let constant = self.constant_as_of.flatten();
        resize(&mut self.as_of, total_num_groups, constant.unwrap_or(NONE));
        let mut as_of_col = std::mem::take(&mut self.as_of);
        let mut orders = std::mem::take(&mut self.orders);
        let r = self.for_each_row(values, opt_filter, |row, order, as_of| {
            let g = group_indices[row];
            if constant.is_none() && as_of > as_of_col[g] {
                as_of_col[g] = as_of;
            }
            if let Some(o) = order {
                orders.push(g, o);
            }
        });
        self.as_of = as_of_col;
        self.orders = orders;
        r
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        resize(&mut self.as_of, total_num_groups, NONE);
        self.merge_states(values, |row| group_indices[row])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (offsets, mut flat, as_of) = self.take_groups(emit_to);
        self.finish(&offsets, &mut flat, &as_of)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (offsets, flat, as_of) = self.take_groups(emit_to);
        self.state_arrays(&offsets, &flat, as_of)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let n = values[0].len();
        let mut as_of = vec![NONE; n];
        let mut offsets = Vec::with_capacity(n + 1);
        let mut flat = Vec::with_capacity(n);
        offsets.push(0usize);
        let mut last_row = 0usize;
        self.for_each_row(values, opt_filter, |row, order, a| {
            while last_row < row {
                offsets.push(flat.len());
                last_row += 1;
            }
            as_of[row] = a;
            if let Some(o) = order {
                flat.push(o);
            }
        })?;
        while offsets.len() < n + 1 {
            offsets.push(flat.len());
        }
        self.state_arrays(&offsets, &flat, as_of)
    }

    fn size(&self) -> usize {
        self.orders.size() + self.as_of.capacity() * 8
    }
}

/// The single-group accumulator is the groups accumulator with one group; evaluating does not
/// consume it (window frames evaluate repeatedly).
pub fn rfm_summary_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(RfmUdaf::new(
        RfmOutput::Summary,
    )))
}

pub fn churn_risk_udaf() -> Arc<AggregateUDF> {
    Arc::new(crate::single_phase::whole_input(RfmUdaf::new(
        RfmOutput::ChurnRisk,
    )))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;
    use proptest::prelude::*;

    #[test]
    fn lifetimes_definitions_by_hand() {
        // Days 0 (two orders: 10 + 5), 3 (7), 3 (1), 10 (4); as_of day 20.
        let mut o = vec![(3, 7.0), (0, 10.0), (10, 4.0), (0, 5.0), (3, 1.0)];
        let r = summarize(&mut o, 20).unwrap();
        assert_eq!(r.frequency, 2.0);
        assert_eq!(r.recency, 10.0);
        assert_eq!(r.t, 20.0);
        assert_eq!(r.monetary_value, (8.0 + 4.0) / 2.0);
        // rate 2/10 per day, 10 days of silence.
        assert!((churn_risk(&r).unwrap() - (-2.0f64).exp()).abs() < 1e-15);
        // One purchase day: frequency 0, monetary 0, no churn risk.
        let mut one = vec![(5, 3.0), (5, 4.0)];
        let r = summarize(&mut one, 9).unwrap();
        assert_eq!(
            (r.frequency, r.recency, r.t, r.monetary_value),
            (0.0, 0.0, 4.0, 0.0)
        );
        assert_eq!(churn_risk(&r), None);
        assert_eq!(summarize::<f64>(&mut [], 9), None);
    }

    #[test]
    fn decimal_amounts_are_exact() {
        // The same orders in cents (scale 2): day 0 (10.00 + 5.00), day 3 (7.00 + 1.00), day 10
        // (4.01): monetary (8.00 + 4.01) / 2 = 6.005, as 6.005000 at scale 6.
        let mut o: Vec<(i32, i128)> = vec![(3, 700), (0, 1000), (10, 401), (0, 500), (3, 100)];
        let r = summarize(&mut o, 20).unwrap();
        assert_eq!((r.frequency, r.recency, r.t), (2.0, 10.0, 20.0));
        assert_eq!(r.monetary_value, 6_005_000);
        // 0.01 over 3 repeat days: 0.0033333... rounds to 0.003333; 0.02 / 3 to 0.006667; a
        // negative mean rounds away from zero too.
        assert_eq!(i128::mean(1, 3), 3_333);
        assert_eq!(i128::mean(2, 3), 6_667);
        assert_eq!(i128::mean(-2, 3), -6_667);
        assert_eq!(i128::mean(1, 2), 5_000);
        // Saturates instead of overflowing.
        assert_eq!(i128::mean(i128::MAX, 1), i128::MAX);
        // A float 0.1 + 0.2 is not 0.3; the decimal is.
        let mut f = vec![(0, 0.0), (1, 0.1), (1, 0.2)];
        assert_ne!(summarize(&mut f, 5).unwrap().monetary_value, 0.3);
        let mut d: Vec<(i32, i128)> = vec![(0, 0), (1, 10), (1, 20)];
        assert_eq!(summarize(&mut d, 5).unwrap().monetary_value, 300_000);
    }

    #[test]
    fn narrow_decimals_sum_like_wide_ones_beyond_i64() {
        // DECIMAL(18, 0) amounts near the largest: each fits an i64, their repeat-day total does
        // not; the narrow path sums in an i128 as the wide one does.
        let big = 999_999_999_999_999_999i64;
        let narrow: Vec<(i32, i64)> = vec![(0, 1), (1, big), (2, big), (3, big), (3, 7)];
        let wide: Vec<(i32, i128)> = narrow.iter().map(|&(d, a)| (d, a as i128)).collect();
        let n = summarize(&mut narrow.clone(), 9).unwrap();
        let w = summarize(&mut wide.clone(), 9).unwrap();
        assert_eq!(n, w);
        // (3 * big + 7) / 3 at 4 more digits, by hand: big + 7/3 = 999...999 + 2.3333.
        assert_eq!(n.monetary_value, (big as i128 + 2) * 10_000 + 3_333);
        assert_eq!((n.frequency, n.recency, n.t), (3.0, 3.0, 9.0));
    }

    proptest! {
        #[test]
        fn order_and_split_do_not_matter(
            orders in proptest::collection::vec((0i32..60, 0u32..10_000), 1..40),
            seed in any::<u64>(),
            cut in 0usize..40,
        ) {
            let orders: Vec<(i32, f64)> = orders.into_iter().map(|(d, c)| (d, c as f64 / 100.0)).collect();
            let mut a = orders.clone();
            let want = summarize(&mut a, 100).unwrap();
            // Shuffle deterministically, split in two, concatenate the parts the other way round.
            let mut b = orders.clone();
            let n = b.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                b.swap(i, (s >> 33) as usize % (i + 1));
            }
            let cut = cut.min(n);
            let (x, y) = b.split_at(cut);
            let mut c: Vec<(i32, f64)> = y.iter().chain(x.iter()).cloned().collect();
            prop_assert_eq!(summarize(&mut c, 100).unwrap(), want);
        }
    }
}
