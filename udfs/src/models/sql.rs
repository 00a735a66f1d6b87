//! SQL adapters of the customer-base models ([`super::btyd`]): the fits as aggregates returning a
//! parameter struct, and the predictions as scalar functions taking that struct, so
//! `CROSS JOIN (SELECT bgnbd_fit(...) AS p FROM summary)` feeds every customer's row.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Documentation, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::btyd::{self, Collapsed, Fit, check_frt};
use crate::support::doc::{aggregate_doc, scalar_doc};

/// The three models and their parameter names (the struct fields, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    BgNbd,
    ParetoNbd,
    GammaGamma,
}

impl Model {
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Model::BgNbd => &["r", "alpha", "a", "b"],
            Model::ParetoNbd => &["r", "alpha", "s", "beta"],
            Model::GammaGamma => &["p", "q", "v"],
        }
    }

    fn fit_name(self) -> &'static str {
        match self {
            Model::BgNbd => "bgnbd_fit",
            Model::ParetoNbd => "pareto_nbd_fit",
            Model::GammaGamma => "gamma_gamma_fit",
        }
    }

    fn inputs(self) -> &'static [&'static str] {
        match self {
            Model::BgNbd | Model::ParetoNbd => &["frequency", "recency", "t"],
            Model::GammaGamma => &["frequency", "monetary_value"],
        }
    }

    fn fields(self) -> Fields {
        let mut f: Vec<Field> = self
            .params()
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, true))
            .collect();
        f.push(Field::new("log_likelihood", DataType::Float64, true));
        f.push(Field::new("converged", DataType::Boolean, true));
        Fields::from(f)
    }
}

fn numeric_args(func: &str, names: &[&str], arg_types: &[DataType]) -> Result<Vec<DataType>> {
    if arg_types.len() != names.len() {
        return plan_err!(
            "{func} takes {} arguments ({}), got {}",
            names.len(),
            names.join(", "),
            arg_types.len()
        );
    }
    for (t, n) in arg_types.iter().zip(names) {
        if !(t.is_numeric() || t.is_null()) {
            return plan_err!("{func}: argument '{n}' must be numeric, got {t}");
        }
    }
    Ok(vec![DataType::Float64; names.len()])
}

// ---------------------------------------------------------------------------------------------
// Fits

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FitUdaf {
    model: Model,
    signature: Signature,
}

static BGNBD_FIT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Maximum-likelihood BG/NBD parameters (Fader, Hardie & Lee 2005) over all customers' `(frequency, recency, t)` \
         from `rfm_summary`, with the likelihood of `lifetimes.BetaGeoFitter` (no penalizer). Identical rows are \
         collapsed into weights, then BFGS with analytic gradients runs in log-parameter space from several starts; \
         `log_likelihood` is summed over customers. NULL rows are skipped; negative \
         values or recency > t are errors. The time unit of the parameters is the unit of recency and t. The struct's `converged` is false when the optimiser stopped without meeting its gradient test (degenerate \
         data such as almost only one-time buyers, where the likelihood peaks at a boundary): the parameters are then \
         the best point reached and predictions from them are unreliable. Errors are kept for invalid input.",
        "bgnbd_fit(frequency, recency, t)",
        "WITH s AS (SELECT rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30', 'week') AS s FROM cdnow GROUP BY customer_id)\nSELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p FROM s;",
    )
    .with_argument("frequency", "repeat purchase days (rfm_summary.frequency)")
    .with_argument("recency", "time from first to last purchase (rfm_summary.recency)")
    .with_argument("t", "time from first purchase to the end of observation (rfm_summary.t)")
    .build()
});

static PARETO_FIT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Maximum-likelihood Pareto/NBD parameters `(r, alpha, s, beta)` with the likelihood of \
         `lifetimes.ParetoNBDFitter` (no penalizer), from `rfm_summary`'s `(frequency, recency, t)`. Rows are \
         collapsed into weights; BFGS in log-parameter space (numeric gradient; the Gaussian hypergeometric \
         function by its series, or Euler's integral where the series converges slowly). The struct's `converged` is false when the optimiser stopped without meeting its gradient test (degenerate \
         data such as almost only one-time buyers, where the likelihood peaks at a boundary): the parameters are then \
         the best point reached and predictions from them are unreliable. Errors are kept for invalid input.",
        "pareto_nbd_fit(frequency, recency, t)",
        "WITH s AS (SELECT rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30', 'week') AS s FROM cdnow GROUP BY customer_id)\nSELECT pareto_nbd_fit(s.frequency, s.recency, s.t) AS p FROM s;",
    )
    .with_argument("frequency", "rfm_summary.frequency")
    .with_argument("recency", "rfm_summary.recency")
    .with_argument("t", "rfm_summary.t")
    .build()
});

static GG_FIT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate_doc(
        "Maximum-likelihood Gamma-Gamma spend parameters `(p, q, v)` with the likelihood of \
         `lifetimes.GammaGammaFitter` (no penalizer), from `rfm_summary`'s `(frequency, monetary_value)`. Rows with \
         frequency = 0 or monetary_value <= 0 are skipped, as lifetimes requires. BFGS with analytic gradients, \
         converged tightly (gradient < 1e-11). The struct's `converged` is false when the optimiser stopped without meeting its gradient test (degenerate \
         data such as almost only one-time buyers, where the likelihood peaks at a boundary): the parameters are then \
         the best point reached and predictions from them are unreliable. Errors are kept for invalid input.",
        "gamma_gamma_fit(frequency, monetary_value)",
        "WITH s AS (SELECT rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30', 'week') AS s FROM cdnow GROUP BY customer_id)\nSELECT gamma_gamma_fit(s.frequency, s.monetary_value) AS p FROM s;",
    )
    .with_argument("frequency", "rfm_summary.frequency")
    .with_argument("monetary_value", "rfm_summary.monetary_value")
    .build()
});

impl FitUdaf {
    pub fn new(model: Model) -> Self {
        Self {
            model,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for FitUdaf {
    fn name(&self) -> &str {
        self.model.fit_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        numeric_args(self.name(), self.model.inputs(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(self.model.fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[rows]", args.name),
                list.clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}[weights]", args.name), list, true)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(match self.model {
            Model::GammaGamma => Box::new(FitAccumulator::<2> {
                model: self.model,
                data: Collapsed::default(),
            }),
            _ => Box::new(FitAccumulator::<3> {
                model: self.model,
                data: Collapsed::default(),
            }),
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.model {
            Model::BgNbd => &BGNBD_FIT_DOC,
            Model::ParetoNbd => &PARETO_FIT_DOC,
            Model::GammaGamma => &GG_FIT_DOC,
        })
    }
}

#[derive(Debug)]
struct FitAccumulator<const N: usize> {
    model: Model,
    data: Collapsed<N>,
}

impl<const N: usize> FitAccumulator<N> {
    /// Checks a row; Ok(false) for rows the fit skips.
    fn accept(&self, row: &[f64; N]) -> Result<bool> {
        let name = self.model.fit_name();
        if N == 3 {
            if let Err(e) = check_frt(row[0], row[1], row[2]) {
                return exec_err!("{name}: {e}");
            }
            return Ok(true);
        }
        if !(row[0] >= 0.0 && row[0].is_finite()) {
            return exec_err!("{name}: frequency must be finite and >= 0, got {}", row[0]);
        }
        Ok(btyd::gamma_gamma::usable(row[0], row[1]))
    }
}

impl<const N: usize> Accumulator for FitAccumulator<N> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let cols: Vec<&Float64Array> = values
            .iter()
            .map(|v| v.as_primitive::<Float64Type>())
            .collect();
        for i in 0..values[0].len() {
            if cols.iter().any(|c| c.is_null(i)) {
                continue;
            }
            let row: [f64; N] = std::array::from_fn(|k| cols[k].value(i));
            if self.accept(&row)? {
                self.data.add(row, 1.0);
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states[0].as_list::<i32>();
        let weights = states[1].as_list::<i32>();
        for i in 0..rows.len() {
            if rows.is_null(i) {
                continue;
            }
            let r = rows.value(i);
            let w = weights.value(i);
            let (r, w) = (
                r.as_primitive::<Float64Type>(),
                w.as_primitive::<Float64Type>(),
            );
            for k in 0..w.len() {
                let row: [f64; N] = std::array::from_fn(|j| r.value(k * N + j));
                self.data.add(row, w.value(k));
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let rows: Vec<([f64; N], f64)> = self.data.entries().collect();
        let values =
            Float64Array::from_iter_values(rows.iter().flat_map(|(r, _)| r.iter().copied()));
        let weights = Float64Array::from_iter_values(rows.iter().map(|(_, w)| *w));
        let list = |a: Float64Array| {
            let n = a.len();
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Float64, false)),
                OffsetBuffer::from_lengths([n]),
                Arc::new(a),
                None,
            )))
        };
        Ok(vec![list(values), list(weights)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let t0 = std::time::Instant::now();
        let fields = self.model.fields();
        if self.data.is_empty() {
            return ScalarValue::try_from(DataType::Struct(fields));
        }
        let fit: std::result::Result<Fit, String> = match self.model {
            Model::BgNbd => btyd::bgnbd::fit(self.collapsed3()),
            Model::ParetoNbd => btyd::pareto_nbd::fit(self.collapsed3()),
            Model::GammaGamma => btyd::gamma_gamma::fit(self.collapsed2()),
        };
        let fit = match fit {
            Ok(f) => f,
            Err(e) => return exec_err!("{e}"),
        };
        log::debug!(
            "{}: {} rows, fitted in {:?} ({} iterations)",
            self.model.fit_name(),
            self.data.raw_len(),
            t0.elapsed(),
            fit.iterations
        );
        let mut cols: Vec<ArrayRef> = fit
            .params
            .iter()
            .map(|v| Arc::new(Float64Array::from(vec![*v])) as ArrayRef)
            .collect();
        cols.push(Arc::new(Float64Array::from(vec![fit.log_likelihood])));
        cols.push(Arc::new(BooleanArray::from(vec![fit.converged])));
        Ok(ScalarValue::Struct(Arc::new(StructArray::new(
            fields, cols, None,
        ))))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.data.size()
    }
}

impl<const N: usize> FitAccumulator<N> {
    fn collapsed3(&self) -> &Collapsed<3> {
        (&self.data as &dyn std::any::Any)
            .downcast_ref()
            .expect("three-column model")
    }

    fn collapsed2(&self) -> &Collapsed<2> {
        (&self.data as &dyn std::any::Any)
            .downcast_ref()
            .expect("two-column model")
    }
}

pub fn bgnbd_fit_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(FitUdaf::new(Model::BgNbd)))
}

pub fn pareto_nbd_fit_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(FitUdaf::new(Model::ParetoNbd)))
}

pub fn gamma_gamma_fit_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(FitUdaf::new(Model::GammaGamma)))
}

// ---------------------------------------------------------------------------------------------
// Predictions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prediction {
    BgNbdPAlive,
    BgNbdExpectedPurchases,
    ParetoNbdPAlive,
    GammaGammaExpectedValue,
    Clv,
}

/// One argument of a prediction: a model's parameter struct or a number.
#[derive(Debug, Clone, Copy)]
enum Arg {
    Params(Model),
    Number(&'static str),
}

impl Prediction {
    fn name(self) -> &'static str {
        match self {
            Prediction::BgNbdPAlive => "bgnbd_p_alive",
            Prediction::BgNbdExpectedPurchases => "bgnbd_expected_purchases",
            Prediction::ParetoNbdPAlive => "pareto_nbd_p_alive",
            Prediction::GammaGammaExpectedValue => "gamma_gamma_expected_value",
            Prediction::Clv => "clv",
        }
    }

    /// Arguments; the last `optional` of them may be left out.
    fn args(self) -> (&'static [Arg], usize) {
        use Arg::*;
        const FRT: [Arg; 3] = [Number("frequency"), Number("recency"), Number("t")];
        match self {
            Prediction::BgNbdPAlive => (&[Params(Model::BgNbd), FRT[0], FRT[1], FRT[2]], 0),
            Prediction::BgNbdExpectedPurchases => (
                &[
                    Params(Model::BgNbd),
                    Number("horizon"),
                    FRT[0],
                    FRT[1],
                    FRT[2],
                ],
                0,
            ),
            Prediction::ParetoNbdPAlive => (&[Params(Model::ParetoNbd), FRT[0], FRT[1], FRT[2]], 0),
            Prediction::GammaGammaExpectedValue => (
                &[
                    Params(Model::GammaGamma),
                    Number("frequency"),
                    Number("monetary_value"),
                ],
                0,
            ),
            Prediction::Clv => (
                &[
                    Params(Model::BgNbd),
                    Params(Model::GammaGamma),
                    FRT[0],
                    FRT[1],
                    FRT[2],
                    Number("monetary_value"),
                    Number("months"),
                    Number("monthly_discount_rate"),
                ],
                1,
            ),
        }
    }

    fn usage(self) -> String {
        let (args, optional) = self.args();
        let names: Vec<String> = args
            .iter()
            .map(|a| match a {
                Arg::Params(m) => format!("{}_params", m.fit_name().trim_end_matches("_fit")),
                Arg::Number(n) => n.to_string(),
            })
            .collect();
        let (req, opt) = names.split_at(names.len() - optional);
        if opt.is_empty() {
            req.join(", ")
        } else {
            format!("{} [, {}]", req.join(", "), opt.join(", "))
        }
    }

    /// One row's answer from its parameters (in argument order) and numbers.
    fn compute(self, params: &[&[f64]], nums: &[f64]) -> std::result::Result<f64, String> {
        let p4 = |p: &[f64]| -> [f64; 4] { [p[0], p[1], p[2], p[3]] };
        match self {
            Prediction::BgNbdPAlive | Prediction::ParetoNbdPAlive => {
                let (x, tx, t) = (nums[0], nums[1], nums[2]);
                check_frt(x, tx, t)?;
                Ok(if self == Prediction::BgNbdPAlive {
                    btyd::bgnbd::p_alive(&p4(params[0]), x, tx, t)
                } else {
                    btyd::pareto_nbd::p_alive(&p4(params[0]), x, tx, t)
                })
            }
            Prediction::BgNbdExpectedPurchases => {
                let (h, x, tx, t) = (nums[0], nums[1], nums[2], nums[3]);
                check_frt(x, tx, t)?;
                if !(h >= 0.0 && h.is_finite()) {
                    return Err(format!("horizon must be finite and >= 0, got {h}"));
                }
                Ok(btyd::bgnbd::expected_purchases(&p4(params[0]), h, x, tx, t))
            }
            Prediction::GammaGammaExpectedValue => {
                let g = params[0];
                Ok(btyd::gamma_gamma::expected_value(
                    &[g[0], g[1], g[2]],
                    nums[0],
                    nums[1],
                ))
            }
            Prediction::Clv => {
                let (x, tx, t, m, months) = (nums[0], nums[1], nums[2], nums[3], nums[4]);
                check_frt(x, tx, t)?;
                let rate = nums.get(5).copied().unwrap_or(0.01);
                if !(months >= 0.0 && months.fract() == 0.0 && months <= 1200.0) {
                    return Err(format!(
                        "months must be a whole number from 0 to 1200, got {months}"
                    ));
                }
                if !(rate > -1.0 && rate.is_finite()) {
                    return Err(format!("monthly_discount_rate must be > -1, got {rate}"));
                }
                let g = params[1];
                Ok(btyd::clv(
                    &p4(params[0]),
                    &[g[0], g[1], g[2]],
                    x,
                    tx,
                    t,
                    m,
                    months as u32,
                    rate,
                ))
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PredictionUdf {
    what: Prediction,
    signature: Signature,
}

impl PredictionUdf {
    pub fn new(what: Prediction) -> Self {
        Self {
            what,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// A parameter struct's fields as Float64 columns, in the model's order.
fn param_columns(
    func: &str,
    model: Model,
    array: &ArrayRef,
) -> Result<(
    Vec<Float64Array>,
    Option<datafusion::arrow::buffer::NullBuffer>,
)> {
    let Some(s) = array.as_struct_opt() else {
        return exec_err!(
            "{func}: expected the struct returned by {}",
            model.fit_name()
        );
    };
    let mut cols = vec![];
    for name in model.params() {
        let Some(c) = s.column_by_name(name) else {
            return exec_err!("{func}: the parameter struct has no field '{name}'");
        };
        cols.push(
            cast(c, &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone(),
        );
    }
    Ok((cols, s.nulls().cloned()))
}

fn check_params_type(func: &str, name: &str, model: Model, t: &DataType) -> Result<()> {
    let ok = match t {
        DataType::Struct(fields) => model.params().iter().all(|p| {
            fields
                .iter()
                .any(|f| f.name() == p && f.data_type().is_numeric())
        }),
        DataType::Null => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        plan_err!(
            "{func}: argument '{name}' must be the struct returned by {} (numeric fields {}), got {t}",
            model.fit_name(),
            model.params().join(", ")
        )
    }
}

impl ScalarUDFImpl for PredictionUdf {
    fn name(&self) -> &str {
        self.what.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let func = self.name();
        let (args, optional) = self.what.args();
        let n = arg_types.len();
        if n > args.len() || n < args.len() - optional {
            return plan_err!("{func} takes arguments ({}), got {n}", self.what.usage());
        }
        let mut out = vec![];
        for (a, t) in args.iter().zip(arg_types) {
            match a {
                Arg::Params(m) => {
                    check_params_type(
                        func,
                        &format!("{}_params", m.fit_name().trim_end_matches("_fit")),
                        *m,
                        t,
                    )?;
                    out.push(t.clone());
                }
                Arg::Number(name) => {
                    if !(t.is_numeric() || t.is_null()) {
                        return plan_err!("{func}: argument '{name}' must be numeric, got {t}");
                    }
                    out.push(DataType::Float64);
                }
            }
        }
        Ok(out)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let func = self.name();
        let (arrays, all_scalar) = crate::support::scalar_args(&args.args)?;
        let n = arrays.first().map_or(0, |a| a.len());
        let (specs, _) = self.what.args();
        let mut params = vec![];
        let mut nums = vec![];
        for (spec, a) in specs.iter().zip(&arrays) {
            match spec {
                Arg::Params(m) => {
                    if a.data_type().is_null() {
                        return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None)));
                    }
                    params.push(param_columns(func, *m, a)?);
                }
                Arg::Number(_) => nums.push(a.as_primitive::<Float64Type>().clone()),
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut p_row: Vec<Vec<f64>> = params.iter().map(|(c, _)| vec![0.0; c.len()]).collect();
        let mut n_row = vec![0.0; nums.len()];
        for i in 0..n {
            let null = params.iter().any(|(cols, nulls)| {
                nulls.as_ref().is_some_and(|m| m.is_null(i)) || cols.iter().any(|c| c.is_null(i))
            }) || nums.iter().any(|c| c.is_null(i));
            if null {
                out.push(None);
                continue;
            }
            for (k, (cols, _)) in params.iter().enumerate() {
                for (j, c) in cols.iter().enumerate() {
                    p_row[k][j] = c.value(i);
                }
            }
            for (k, c) in nums.iter().enumerate() {
                n_row[k] = c.value(i);
            }
            let refs: Vec<&[f64]> = p_row.iter().map(|v| v.as_slice()).collect();
            match self.what.compute(&refs, &n_row) {
                // Degenerate parameters (a fit at a boundary) can make the closed forms negative
                // or infinite: such a prediction is NULL, never an impossible number.
                Ok(v) => out.push((v.is_finite() && v >= 0.0).then_some(v)),
                Err(e) => return exec_err!("{func}: {e}"),
            }
        }
        let arr: ArrayRef = Arc::new(Float64Array::from(out));
        crate::support::scalar_result(arr, all_scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&PREDICTION_DOCS[self.what as usize])
    }
}

const SUMMARY_CTE: &str = "WITH s AS (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30', 'week') AS s FROM cdnow GROUP BY customer_id)";

static PREDICTION_DOCS: LazyLock<Vec<Documentation>> = LazyLock::new(|| {
    vec![
        scalar_doc(
            "Probability that a customer with `(frequency, recency, t)` is still alive under BG/NBD parameters \
             `params` (from `bgnbd_fit`), as `lifetimes.BetaGeoFitter.conditional_probability_alive`: 1 for \
             frequency 0, else `1 / (1 + a / (b + x - 1) * ((alpha + t) / (alpha + recency))^(r + x))` in log space.",
            "bgnbd_p_alive(bgnbd_params, frequency, recency, t)",
            &format!("{SUMMARY_CTE},\n  p AS (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p FROM s)\nSELECT customer_id, bgnbd_p_alive(p.p, s.frequency, s.recency, s.t) AS p_alive\nFROM s CROSS JOIN p ORDER BY p_alive, customer_id LIMIT 5;"),
        )
        .with_argument("bgnbd_params", "the struct returned by bgnbd_fit")
        .with_argument("frequency, recency, t", "the customer's rfm_summary fields, in the fit's time unit")
        .build(),
        scalar_doc(
            "Expected number of purchases in the next `horizon` time units of a customer with \
             `(frequency, recency, t)` under BG/NBD parameters, as \
             `lifetimes.BetaGeoFitter.conditional_expected_number_of_purchases_up_to_time` (the Gaussian \
             hypergeometric function summed in log space, Euler's integral where the series is slow).",
            "bgnbd_expected_purchases(bgnbd_params, horizon, frequency, recency, t)",
            &format!("{SUMMARY_CTE},\n  p AS (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p FROM s)\nSELECT round(sum(bgnbd_expected_purchases(p.p, 39, s.frequency, s.recency, s.t)), 1) AS next_39_weeks\nFROM s CROSS JOIN p;"),
        )
        .with_argument("bgnbd_params", "the struct returned by bgnbd_fit")
        .with_argument("horizon", "length of the prediction window, in the fit's time unit")
        .with_argument("frequency, recency, t", "the customer's rfm_summary fields")
        .build(),
        scalar_doc(
            "Probability that a customer is still alive under Pareto/NBD parameters (from `pareto_nbd_fit`), as \
             `lifetimes.ParetoNBDFitter.conditional_probability_alive`.",
            "pareto_nbd_p_alive(pareto_nbd_params, frequency, recency, t)",
            &format!("{SUMMARY_CTE},\n  p AS (SELECT pareto_nbd_fit(s.frequency, s.recency, s.t) AS p FROM s)\nSELECT customer_id, pareto_nbd_p_alive(p.p, s.frequency, s.recency, s.t) AS p_alive\nFROM s CROSS JOIN p ORDER BY p_alive, customer_id LIMIT 5;"),
        )
        .with_argument("pareto_nbd_params", "the struct returned by pareto_nbd_fit")
        .with_argument("frequency, recency, t", "the customer's rfm_summary fields")
        .build(),
        scalar_doc(
            "Expected spend per transaction of a customer with `frequency` repeat purchases of mean \
             `monetary_value`, under Gamma-Gamma parameters (from `gamma_gamma_fit`): \
             `p (v + x m) / (p x + q - 1)`, as `lifetimes.GammaGammaFitter.conditional_expected_average_profit` \
             (the population mean `p v / (q - 1)` for frequency 0).",
            "gamma_gamma_expected_value(gamma_gamma_params, frequency, monetary_value)",
            &format!("{SUMMARY_CTE},\n  g AS (SELECT gamma_gamma_fit(s.frequency, s.monetary_value) AS g FROM s)\nSELECT customer_id, round(gamma_gamma_expected_value(g.g, s.frequency, s.monetary_value), 2) AS value\nFROM s CROSS JOIN g ORDER BY customer_id LIMIT 5;"),
        )
        .with_argument("gamma_gamma_params", "the struct returned by gamma_gamma_fit")
        .with_argument("frequency, monetary_value", "the customer's rfm_summary fields")
        .build(),
        scalar_doc(
            "Discounted customer lifetime value over `months` months, as \
             `lifetimes.GammaGammaFitter.customer_lifetime_value` for daily-unit data (`freq='D'`, BG/NBD fitted \
             on days): the sum over months i = 1..months of `expected_value x (E[N(30 i)] - E[N(30 (i-1))]) / \
             (1 + monthly_discount_rate)^i`, with E[N] from `bgnbd_expected_purchases` and the value from \
             `gamma_gamma_expected_value`. Default discount 0.01 per month.",
            "clv(bgnbd_params, gamma_gamma_params, frequency, recency, t, monetary_value, months [, monthly_discount_rate])",
            "WITH s AS (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30') AS s FROM cdnow GROUP BY customer_id),\n  p AS (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS bg, gamma_gamma_fit(s.frequency, s.monetary_value) AS gg FROM s)\nSELECT customer_id, round(clv(p.bg, p.gg, s.frequency, s.recency, s.t, s.monetary_value, 12), 2) AS clv_12m\nFROM s CROSS JOIN p ORDER BY clv_12m DESC, customer_id LIMIT 5;",
        )
        .with_argument("bgnbd_params", "bgnbd_fit over day-unit rfm_summary")
        .with_argument("gamma_gamma_params", "gamma_gamma_fit over the same customers")
        .with_argument("frequency, recency, t, monetary_value", "the customer's day-unit rfm_summary fields")
        .with_argument("months", "whole number of months (30 days each)")
        .with_argument("monthly_discount_rate", "default 0.01")
        .build(),
    ]
});

pub fn prediction_udfs() -> Vec<Arc<ScalarUDF>> {
    [
        Prediction::BgNbdPAlive,
        Prediction::BgNbdExpectedPurchases,
        Prediction::ParetoNbdPAlive,
        Prediction::GammaGammaExpectedValue,
        Prediction::Clv,
    ]
    .into_iter()
    .map(|p| Arc::new(ScalarUDF::new_from_impl(PredictionUdf::new(p))))
    .collect()
}
