//! `lifecycle_stage(order_ts, as_of)` and `churn_flag(order_ts, as_of)`: one kernel, two outputs.
//!
//! Per group the kernel keeps the two latest order instants (counting duplicates), the number of
//! orders at or before `as_of`, the number inside the loyal window, and `as_of` itself. Merging
//! keeps the top two of both sides and adds the counts, so it is associative and commutative.
//!
//! Thresholds come from the session (`SET lifecycle.churn_days = 120`): the function's
//! `simplify` hook appends them as constant arguments when the query is optimised, so a plan
//! carries the thresholds it was planned with. They can also be passed explicitly:
//! `lifecycle_stage(order_ts, as_of, churn_days, at_risk_days, loyal_window_days, loyal_min_orders)`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt64Type};
use datafusion::common::Result;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility, lit,
};

use crate::options::LifecycleOptions;
use crate::support::doc::aggregate_doc;
use crate::support::time::{TickUnit, check_temporal, constant_ticks, ticks_of};
use crate::support::{check_arity, check_integer, literal_positive, resize, row_mask, take};

/// The pure kernel: instants are `i64` ticks of one unit; thresholds are in the same ticks.
pub mod kernel;

use kernel::{State, Thresholds};

/// Which answer the shared kernel gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageOutput {
    /// `lifecycle_stage`: the stage name.
    Stage,
    /// `churn_flag`: whether the stage is `churned`.
    ChurnFlag,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StageUdaf {
    output: StageOutput,
    signature: Signature,
}

impl StageUdaf {
    pub fn new(output: StageOutput) -> Self {
        Self {
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

const STAGE_RULES: &str = "With the customer's orders at or before `as_of`, the first match wins: no order -> `prospect`; \
`as_of - last_order > churn_days` -> `churned`; `> at_risk_days` -> `at_risk`; at least 2 orders and the last came more \
than `churn_days` after the one before it -> `reactivated`; exactly 1 order -> `new`; at least `loyal_min_orders` orders \
in `(as_of - loyal_window_days, as_of]` -> `loyal`; otherwise `repeat`. Thresholds default to the session's \
`lifecycle.churn_days` (180), `lifecycle.at_risk_days` (90), `lifecycle.loyal_window_days` (365) and \
`lifecycle.loyal_min_orders` (4), or are passed as four extra constant arguments. Days are exact (86,400 s); rows \
with a NULL `order_ts` count as no order (so `customers LEFT JOIN purchases` classifies prospects); rows with a NULL \
`as_of` are ignored. `as_of` should be the same for every row of a group.";

static STAGE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        &format!("Lifecycle stage of one customer (use with GROUP BY customer). {STAGE_RULES}"),
        "lifecycle_stage(order_ts, as_of [, churn_days, at_risk_days, loyal_window_days, loyal_min_orders])",
        "SELECT stage, count(*) AS customers FROM (\n  SELECT c.customer_id, lifecycle_stage(p.order_ts, TIMESTAMP '2024-06-30') AS stage\n  FROM customers c LEFT JOIN purchases p ON p.customer_id = c.customer_id\n  GROUP BY c.customer_id)\nGROUP BY stage ORDER BY customers DESC;",
    )
    .with_argument("order_ts", "TIMESTAMP (any unit, with or without time zone) or DATE of each order")
    .with_argument("as_of", "TIMESTAMP or DATE the stage is judged at; later orders are ignored")
    .build()
});

static CHURN_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "True exactly when `lifecycle_stage` would say `churned` (the last order at or before `as_of` is more \
         than `churn_days` before `as_of`); false for customers without orders (prospects are not churned). \
         The threshold is one number for every customer (a weekly and a yearly buyer alike); set it per \
         business with `SET lifecycle.churn_days = 120` or pass the thresholds explicitly.",
        "churn_flag(order_ts, as_of [, churn_days, at_risk_days, loyal_window_days, loyal_min_orders])",
        "SELECT customer_id, churn_flag(order_ts, TIMESTAMP '2024-06-30') AS churned\nFROM purchases GROUP BY customer_id;",
    )
    .with_argument("order_ts", "TIMESTAMP or DATE of each order")
    .with_argument("as_of", "TIMESTAMP or DATE the flag is judged at")
    .build()
});

const USAGE: &str =
    "order_ts, as_of [, churn_days, at_risk_days, loyal_window_days, loyal_min_orders]";
const THRESHOLD_NAMES: [&str; 4] = [
    "churn_days",
    "at_risk_days",
    "loyal_window_days",
    "loyal_min_orders",
];

impl StageUdaf {
    fn thresholds(&self, args: &AccumulatorArgs) -> Result<(TickUnit, Thresholds)> {
        let unit = TickUnit::common(&[
            args.expr_fields[0].data_type(),
            args.expr_fields[1].data_type(),
        ])?;
        let opts = if args.exprs.len() == 6 {
            let mut v = [0u64; 4];
            for (i, name) in THRESHOLD_NAMES.iter().enumerate() {
                v[i] = literal_positive(self.name(), name, &args.exprs[2 + i])?;
            }
            LifecycleOptions {
                churn_days: v[0],
                at_risk_days: v[1],
                loyal_window_days: v[2],
                loyal_min_orders: v[3],
            }
        } else {
            LifecycleOptions::default()
        };
        opts.validate()?;
        Ok((
            unit,
            Thresholds {
                churn: unit.days(opts.churn_days),
                at_risk: unit.days(opts.at_risk_days),
                loyal_window: unit.days(opts.loyal_window_days),
                loyal_min_orders: opts.loyal_min_orders,
            },
        ))
    }

    fn groups(&self, args: &AccumulatorArgs) -> Result<StageGroups> {
        let (unit, th) = self.thresholds(args)?;
        Ok(StageGroups {
            udaf: StageUdaf::new(self.output),
            unit,
            th,
            as_of: constant_ticks(&args.exprs[1], unit),
            cols: Columns::default(),
        })
    }

    fn finish(&self, states: &[State], th: &Thresholds) -> ArrayRef {
        match self.output {
            StageOutput::Stage => Arc::new(
                states
                    .iter()
                    .map(|s| s.stage(th).map(|st| st.as_str()))
                    .collect::<StringArray>(),
            ),
            StageOutput::ChurnFlag => Arc::new(
                states
                    .iter()
                    .map(|s| s.stage(th).map(|st| st == kernel::Stage::Churned))
                    .collect::<BooleanArray>(),
            ),
        }
    }
}

impl AggregateUDFImpl for StageUdaf {
    fn name(&self) -> &str {
        match self.output {
            StageOutput::Stage => "lifecycle_stage",
            StageOutput::ChurnFlag => "churn_flag",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let n = arg_types.len();
        if n != 2 {
            check_arity(name, USAGE, n, 6, 6)?;
        }
        check_temporal(name, "order_ts", &arg_types[0])?;
        check_temporal(name, "as_of", &arg_types[1])?;
        let mut out = vec![arg_types[0].clone(), arg_types[1].clone()];
        for (i, t) in arg_types.iter().enumerate().skip(2) {
            out.push(check_integer(name, THRESHOLD_NAMES[i - 2], t)?);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            StageOutput::Stage => DataType::Utf8,
            StageOutput::ChurnFlag => DataType::Boolean,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let f =
            |n: &str, t: DataType| Arc::new(Field::new(format!("{}[{n}]", args.name), t, false));
        Ok(vec![
            f("last", DataType::Int64),
            f("prev", DataType::Int64),
            f("orders", DataType::UInt64),
            f("in_window", DataType::UInt64),
            f("as_of", DataType::Int64),
        ])
    }

    crate::support::grouped_accumulators!(Self::groups);

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        // The aggregate form also gets the thresholds here when the session has no
        // [`ThresholdsRewrite`] (a context that registered the functions one by one).
        Some(Box::new(|mut func: AggregateFunction, ctx| {
            append_thresholds(&mut func.params.args, ctx.config_options());
            Ok(Expr::AggregateFunction(func))
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.output {
            StageOutput::Stage => &STAGE_DOC,
            StageOutput::ChurnFlag => &CHURN_DOC,
        })
    }
}

/// Appends the session's thresholds to a two-argument call (explicit thresholds stay).
fn append_thresholds(args: &mut Vec<Expr>, config: &datafusion::config::ConfigOptions) -> bool {
    if args.len() != 2 {
        return false;
    }
    let o = LifecycleOptions::from_config(config);
    for v in [
        o.churn_days,
        o.at_risk_days,
        o.loyal_window_days,
        o.loyal_min_orders,
    ] {
        args.push(lit(v as i64));
    }
    true
}

/// Gives `lifecycle_stage(ts, as_of)` and `churn_flag(ts, as_of)` the session's `lifecycle.*`
/// thresholds as constant arguments, in the aggregate form and in the window form
/// (`... OVER (PARTITION BY customer_id)`), when the query is analysed. DataFusion's aggregate
/// `simplify` hook does not reach aggregates used as window functions, so this is a function
/// rewrite (an analyzer step), which also keeps the expressions' output names. A plan thereby
/// carries the thresholds it was planned with (a cluster's executors need no session options).
#[derive(Debug)]
pub struct ThresholdsRewrite;

impl datafusion::logical_expr::expr_rewriter::FunctionRewrite for ThresholdsRewrite {
    fn name(&self) -> &str {
        "lifecycle_thresholds"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &datafusion::common::DFSchema,
        config: &datafusion::config::ConfigOptions,
    ) -> Result<datafusion::common::tree_node::Transformed<Expr>> {
        use datafusion::common::tree_node::Transformed;
        use datafusion::logical_expr::expr::WindowFunctionDefinition;
        let is_stage = |name: &str| name == "lifecycle_stage" || name == "churn_flag";
        Ok(match expr {
            Expr::AggregateFunction(mut f) if is_stage(f.func.name()) => {
                if append_thresholds(&mut f.params.args, config) {
                    Transformed::yes(Expr::AggregateFunction(f))
                } else {
                    Transformed::no(Expr::AggregateFunction(f))
                }
            }
            Expr::WindowFunction(mut w) if matches!(&w.fun, WindowFunctionDefinition::AggregateUDF(u) if is_stage(u.name())) => {
                if append_thresholds(&mut w.params.args, config) {
                    Transformed::yes(Expr::WindowFunction(w))
                } else {
                    Transformed::no(Expr::WindowFunction(w))
                }
            }
            other => Transformed::no(other),
        })
    }
}

/// Group state: one flat vector of plain 40-byte states indexed by group id, so updating a group
/// touches one cache line.
#[derive(Debug, Default)]
struct Columns {
    states: Vec<State>,
}

impl Columns {
    fn resize(&mut self, n: usize) {
        resize(&mut self.states, n, State::default());
    }

    #[inline]
    fn get(&self, g: usize) -> State {
        self.states[g]
    }

    #[inline]
    fn set(&mut self, g: usize, s: State) {
        self.states[g] = s;
    }

    fn take(&mut self, emit_to: EmitTo) -> Columns {
        Columns {
            states: take(emit_to, &mut self.states),
        }
    }

    fn states(&self) -> &[State] {
        &self.states
    }

    fn into_arrays(self) -> Vec<ArrayRef> {
        let s = &self.states;
        vec![
            Arc::new(s.iter().map(|x| x.last).collect::<Int64Array>()),
            Arc::new(s.iter().map(|x| x.prev).collect::<Int64Array>()),
            Arc::new(s.iter().map(|x| x.orders).collect::<UInt64Array>()),
            Arc::new(s.iter().map(|x| x.in_window).collect::<UInt64Array>()),
            Arc::new(s.iter().map(|x| x.as_of).collect::<Int64Array>()),
        ]
    }
}

struct StageGroups {
    udaf: StageUdaf,
    unit: TickUnit,
    th: Thresholds,
    /// `as_of` when it is a constant (see [`constant_ticks`]).
    as_of: Option<Option<i64>>,
    cols: Columns,
}

impl StageGroups {
    /// Feeds every usable row to `f(row, state_update)`.
    fn for_each_row(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut f: impl FnMut(usize, Option<i64>, i64),
    ) -> Result<()> {
        let (ts, ts_nulls) = ticks_of(&values[0], self.unit)?;
        if let Some(constant) = self.as_of {
            // A constant `as_of`: no column to convert per batch. NULL: no row is usable.
            let Some(as_of) = constant else {
                return Ok(());
            };
            let usable = row_mask(filter, &[]);
            for row in 0..ts.len() {
                if usable.as_ref().is_some_and(|m| m.is_null(row)) {
                    continue;
                }
                let t = (!ts_nulls.as_ref().is_some_and(|m| m.is_null(row))).then(|| ts[row]);
                f(row, t, as_of);
            }
            return Ok(());
        }
        let (as_of, as_of_nulls) = ticks_of(&values[1], self.unit)?;
        let usable = row_mask(filter, &[as_of_nulls.as_ref()]);
        for row in 0..ts.len() {
            if usable.as_ref().is_some_and(|m| m.is_null(row)) {
                continue;
            }
            let t = if ts_nulls.as_ref().is_some_and(|m| m.is_null(row)) {
                None
            } else {
                Some(ts[row])
            };
            f(row, t, as_of[row]);
        }
        Ok(())
    }

    fn merge_states(&mut self, values: &[ArrayRef], group_of: impl Fn(usize) -> usize) {
        let last = values[0].as_primitive::<Int64Type>().values();
        let prev = values[1].as_primitive::<Int64Type>().values();
        let orders = values[2].as_primitive::<UInt64Type>().values();
        let in_window = values[3].as_primitive::<UInt64Type>().values();
        let as_of = values[4].as_primitive::<Int64Type>().values();
        for row in 0..last.len() {
            let g = group_of(row);
            let mut s = self.cols.get(g);
            s.merge(&State {
                last: last[row],
                prev: prev[row],
                orders: orders[row],
                in_window: in_window[row],
                as_of: as_of[row],
            });
            self.cols.set(g, s);
        }
    }
}

impl GroupsAccumulator for StageGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.cols.resize(total_num_groups);
        let th = self.th;
        let mut cols = std::mem::take(&mut self.cols);
        let r = self.for_each_row(values, opt_filter, |row, t, as_of| {
            cols.states[group_indices[row]].update(t, as_of, &th);
        });
        self.cols = cols;
        r
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.cols.resize(total_num_groups);
        self.merge_states(values, |row| group_indices[row]);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.cols.take(emit_to);
        Ok(self.udaf.finish(taken.states(), &self.th))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(self.cols.take(emit_to).into_arrays())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut cols = Columns::default();
        cols.resize(values[0].len());
        let th = self.th;
        self.for_each_row(values, opt_filter, |row, t, as_of| {
            let mut s = State::default();
            s.update(t, as_of, &th);
            cols.set(row, s);
        })?;
        Ok(cols.into_arrays())
    }

    fn size(&self) -> usize {
        self.cols.states.capacity() * size_of::<State>()
    }
}

/// The single-group accumulator is the groups accumulator with one group.
pub fn lifecycle_stage_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(StageUdaf::new(
        StageOutput::Stage,
    )))
}

pub fn churn_flag_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(StageUdaf::new(
        StageOutput::ChurnFlag,
    )))
}

#[cfg(test)]
mod tests {
    use super::kernel::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400;
    const TH: Thresholds = Thresholds {
        churn: 180 * DAY,
        at_risk: 90 * DAY,
        loyal_window: 365 * DAY,
        loyal_min_orders: 4,
    };

    fn stage(orders: &[i64], as_of: i64) -> Option<Stage> {
        let mut s = State::default();
        if orders.is_empty() {
            s.update(None, as_of, &TH);
        }
        for o in orders {
            s.update(Some(*o), as_of, &TH);
        }
        s.stage(&TH)
    }

    #[test]
    fn hand_computed_stages() {
        let as_of = 1000 * DAY;
        assert_eq!(stage(&[], as_of), Some(Stage::Prospect));
        // Exactly churn_days apart is not churned (at_risk); one second more is.
        assert_eq!(stage(&[as_of - 180 * DAY], as_of), Some(Stage::AtRisk));
        assert_eq!(stage(&[as_of - 180 * DAY - 1], as_of), Some(Stage::Churned));
        assert_eq!(stage(&[as_of - 90 * DAY], as_of), Some(Stage::New));
        assert_eq!(stage(&[as_of - 90 * DAY - 1], as_of), Some(Stage::AtRisk));
        // Orders after as_of are ignored.
        assert_eq!(stage(&[as_of + 1], as_of), Some(Stage::Prospect));
        // A return after a gap > churn_days with no order since: reactivated.
        assert_eq!(
            stage(&[as_of - 400 * DAY, as_of - 10 * DAY], as_of),
            Some(Stage::Reactivated)
        );
        // Gap of exactly churn_days is not a reactivation.
        assert_eq!(
            stage(&[as_of - 190 * DAY, as_of - 10 * DAY], as_of),
            Some(Stage::Repeat)
        );
        // Duplicate timestamps: gap 0.
        assert_eq!(
            stage(
                &[as_of - 500 * DAY, as_of - 5 * DAY, as_of - 5 * DAY],
                as_of
            ),
            Some(Stage::Repeat)
        );
        // Loyal: 4 orders within (as_of - 365d, as_of]; an order exactly 365 days ago is outside.
        let four = [
            as_of - 300 * DAY,
            as_of - 200 * DAY,
            as_of - 100 * DAY,
            as_of - DAY,
        ];
        assert_eq!(stage(&four, as_of), Some(Stage::Loyal));
        let edge = [
            as_of - 365 * DAY,
            as_of - 200 * DAY,
            as_of - 100 * DAY,
            as_of - DAY,
        ];
        assert_eq!(stage(&edge, as_of), Some(Stage::Repeat));
        // Reactivated wins over loyal.
        let react = [
            as_of - 360 * DAY,
            as_of - 359 * DAY,
            as_of - 358 * DAY,
            as_of - DAY,
        ];
        assert_eq!(stage(&react, as_of), Some(Stage::Reactivated));
        // No as_of at all: NULL.
        assert_eq!(State::default().stage(&TH), None);
    }

    fn fold(rows: &[(Option<i64>, i64)]) -> State {
        let mut s = State::default();
        for (t, a) in rows {
            s.update(*t, *a, &TH);
        }
        s
    }

    proptest! {
        #[test]
        fn merge_is_order_and_split_independent(
            ts in proptest::collection::vec(proptest::option::of(0i64..2000 * DAY), 0..30),
            cut1 in 0usize..30, cut2 in 0usize..30,
        ) {
            let as_of = 1500 * DAY;
            let rows: Vec<_> = ts.iter().map(|t| (*t, as_of)).collect();
            let whole = fold(&rows);
            let (c1, c2) = (cut1.min(rows.len()), cut2.min(rows.len()));
            let (lo, hi) = (c1.min(c2), c1.max(c2));
            let (a, b, c) = (fold(&rows[..lo]), fold(&rows[lo..hi]), fold(&rows[hi..]));
            // (a+b)+c == a+(b+c) == c+b+a == whole
            let mut left = a; left.merge(&b); left.merge(&c);
            let mut bc = b; bc.merge(&c);
            let mut right = a; right.merge(&bc);
            let mut rev = c; rev.merge(&b); rev.merge(&a);
            prop_assert_eq!(left.stage(&TH), whole.stage(&TH));
            prop_assert_eq!(left, right);
            prop_assert_eq!(left, rev);
            prop_assert_eq!(left, whole);
            let mut shuffled = rows.clone();
            shuffled.reverse();
            prop_assert_eq!(fold(&shuffled), whole);
        }
    }
}
