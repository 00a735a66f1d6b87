//! `cohort_retention(table, granularity [, as_of])`: the retention triangle as a table function.
//!
//! The function does not read the table: it resolves it in the session and returns a view over an
//! ordinary logical plan (two aggregates, unnest, sort), so the query runs partitioned, under the
//! session's memory limit, and spills like any other query. The table is read once:
//!
//! ```text
//! base      = table WHERE customer_id IS NOT NULL AND order_ts IS NOT NULL [AND order_ts <= as_of]
//! customers = base GROUP BY customer_id:
//!             c = lifecycle_cohort_customer(order_ts, amount, granularity)
//!                 -- {cohort, cohort_index, periods: [offset], revenue: [sum]} per customer
//! triangle  = customers (no GROUP BY): lifecycle_cohort_triangle(c, end)
//!                 -- every zero-filled row of the triangle, as one list
//! result    = unnest(triangle) ORDER BY cohort, period
//! ```
//!
//! `lifecycle_cohort_customer` is a groups accumulator over the kernel's `KeyedSums` (a flat slot
//! per customer plus a shared log, no per-customer allocation); its states are lists, so the
//! per-customer aggregate spills like any GROUP BY, and it runs in one phase after a hash
//! repartition by customer (see `single_phase`).
//! `lifecycle_cohort_triangle` adds customers into dense per-cohort cells (partial per partition,
//! merged once). `end` is as_of's period index, or NULL for the latest period with any order.
//! Both are internal: planned here, not registered as SQL functions.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator,
    LogicalPlan, LogicalPlanBuilder, Signature, Volatility, cast, col, lit,
};
use datafusion::physical_expr::PhysicalExpr;

use super::{PlannedTable, as_of_bound, constant_arg, require_columns, resolve_table, string_arg};
use crate::cohort::{KeyedSums, Runs, Sum, TooLong, Triangle};
use crate::common::{list_array, row_mask};
use crate::doc::scalar_doc;
use crate::period::period_start_type;
use crate::time::{Granularity, TickUnit, check_temporal, periods_of, ticks_of};

pub use crate::cohort::MAX_TRIANGLE_PERIODS;

pub static COHORT_RETENTION_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Table function: the whole retention triangle of a purchases table. One row per cohort (start of \
         the first-purchase period) and period (0, 1, ... up to the period of the latest order, or of \
         `as_of`), zero-filled, ordered by cohort then period, with columns `cohort` TIMESTAMP, `period` \
         BIGINT, `cohort_size` BIGINT, `active_customers` BIGINT, `retention` DOUBLE (active / size) and \
         `revenue` DOUBLE (sum of the cohort's non-NULL amounts in the period). The table needs columns \
         `customer_id`, `order_ts` (TIMESTAMP or DATE) and `amount`; rows with a NULL customer_id or \
         order_ts are ignored, and so are orders after `as_of`. Periods are calendar periods in UTC.",
        "cohort_retention(table, granularity [, as_of])",
        "SELECT cohort, period, cohort_size, round(retention * 100, 1) AS pct\nFROM cohort_retention('purchases', 'month')\nWHERE period <= 3;",
    )
    .with_argument("table", "name of a table (or view) in the session, as a string")
    .with_argument("granularity", "'day', 'week', 'month', 'quarter' or 'year'")
    .with_argument("as_of", "optional TIMESTAMP or DATE: ignore later orders and extend the triangle to it")
    .build()
});

#[derive(Debug, Default)]
pub struct CohortRetention;

const USAGE: &str = "cohort_retention(table, granularity [, as_of])";

impl TableFunctionImpl for CohortRetention {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "cohort_retention";
        let exprs = args.exprs();
        let session = args.session();
        if !(2..=3).contains(&exprs.len()) {
            return plan_err!("{F} takes 2 or 3 arguments ({USAGE}), got {}", exprs.len());
        }
        let table = string_arg(F, "table", &exprs[0], session)?;
        let granularity: Granularity = string_arg(F, "granularity", &exprs[1], session)?.parse()?;
        let as_of = match exprs.get(2) {
            Some(e) => {
                let v = constant_arg(F, "as_of", e, session)?;
                check_temporal(F, "as_of", &v.data_type())?;
                if v.is_null() {
                    return plan_err!("{F}: argument 'as_of' must not be NULL");
                }
                Some(v)
            }
            None => None,
        };
        let provider = resolve_table(F, &table, session)?;
        require_columns(
            F,
            &table,
            provider.as_ref(),
            &["customer_id", "order_ts", "amount"],
        )?;
        let schema = provider.schema();
        let ts_type = schema.field_with_name("order_ts")?.data_type().clone();
        check_temporal(F, "order_ts", &ts_type)?;
        let amount_type = schema.field_with_name("amount")?.data_type().clone();
        if !(amount_type.is_numeric() || amount_type.is_null()) {
            return plan_err!("{F}: column 'amount' must be numeric, got {amount_type}");
        }
        let plan = cohort_plan(provider, &ts_type, granularity, as_of)?;
        Ok(Arc::new(PlannedTable::new(plan)))
    }
}

fn plan_err_ctx(e: DataFusionError) -> DataFusionError {
    e.context("planning cohort_retention")
}

/// Builds the plan described in the module docs.
pub fn cohort_plan(
    provider: Arc<dyn TableProvider>,
    ts_type: &DataType,
    granularity: Granularity,
    as_of: Option<ScalarValue>,
) -> Result<LogicalPlan> {
    let mut filter = col("customer_id")
        .is_not_null()
        .and(col("order_ts").is_not_null());
    let end = match &as_of {
        Some(a) => {
            filter = filter.and(as_of_bound(ts_type, a)?.expr(col("order_ts")));
            lit(period_index_of(granularity, a)?)
        }
        None => lit(ScalarValue::Int64(None)),
    };
    let [customer, triangle] = internal_aggregates();
    let field = |name: &str| get_field(col("r"), name).alias(name);
    LogicalPlanBuilder::scan("t", provider_as_source(provider), None)?
        .filter(filter)?
        .project(vec![
            col("customer_id"),
            col("order_ts"),
            cast(col("amount"), DataType::Float64).alias("amount"),
        ])?
        .aggregate(
            vec![col("customer_id")],
            vec![
                customer
                    .call(vec![
                        col("order_ts"),
                        col("amount"),
                        lit(granularity.as_str()),
                    ])
                    .alias("c"),
            ],
        )?
        .alias("customers")?
        .aggregate(
            Vec::<Expr>::new(),
            vec![triangle.call(vec![col("c"), end]).alias("row")],
        )?
        // (Projections around the unnest, as the SQL planner makes them: the shape DataFusion's
        // unparser writes back as `SELECT UNNEST(row) AS r`, which the Python package runs.)
        .alias("triangle")?
        .project(vec![col("row")])?
        .unnest_column("row")?
        .project(vec![col("row").alias("r")])?
        .project(vec![
            field("cohort"),
            field("period"),
            field("cohort_size"),
            field("active_customers"),
            field("retention"),
            field("revenue"),
        ])?
        .sort(vec![
            col("cohort").sort(true, false),
            col("period").sort(true, false),
        ])?
        .build()
        .map_err(plan_err_ctx)
}

/// The period index of a constant instant.
fn period_index_of(granularity: Granularity, v: &ScalarValue) -> Result<i64> {
    let array = v.to_array()?;
    let unit = TickUnit::common(&[array.data_type()])?;
    let (ticks, _) = ticks_of(&array, unit)?;
    Ok(granularity.period_index(unit.day_of(ticks[0])))
}

/// A constant argument of an internal aggregate.
fn literal(func: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<ScalarValue> {
    match crate::common::constant(expr) {
        Some(v) => Ok(v),
        None => plan_err!("{func}: expected a constant argument, got {expr}"),
    }
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, false)))
}

/// State fields `name[suffix]`, each a list of the given type.
fn list_state_fields(name: &str, fields: &[(&str, DataType)]) -> Vec<FieldRef> {
    fields
        .iter()
        .map(|(suffix, t)| {
            Arc::new(Field::new(
                format!("{name}[{suffix}]"),
                list_of(t.clone()),
                true,
            ))
        })
        .collect()
}

/// One customer's part of the triangle (the output of `lifecycle_cohort_customer`).
fn customer_fields(cohort: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("cohort", cohort.clone(), false),
        Field::new("cohort_index", DataType::Int64, false),
        Field::new("periods", list_of(DataType::Int64), false),
        Field::new("revenue", list_of(DataType::Float64), false),
    ])
}

fn fill_fields(cohort: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("cohort", cohort.clone(), false),
        Field::new("period", DataType::Int64, false),
        Field::new("cohort_size", DataType::Int64, false),
        Field::new("active_customers", DataType::Int64, false),
        Field::new("retention", DataType::Float64, false),
        Field::new("revenue", DataType::Float64, false),
    ])
}

/// Instants (ticks of `t`'s unit) as an array of timestamp type `t`.
fn instants(values: Vec<i64>, nulls: Option<NullBuffer>, t: &DataType) -> Result<ArrayRef> {
    Ok(cast_array(&Int64Array::new(values.into(), nulls), t)?)
}

/// The two internal aggregates the plan uses, `lifecycle_cohort_customer` and
/// `lifecycle_cohort_triangle`. They are not registered as SQL functions; a process that decodes
/// a serialised plan (a Ballista scheduler or executor) resolves them by name through
/// [`crate::internal_aggregate`].
pub fn internal_aggregates() -> [AggregateUDF; 2] {
    [
        AggregateUDF::new_from_impl(CohortCustomerUdaf::default()),
        AggregateUDF::new_from_impl(CohortTriangleUdaf::default()),
    ]
}

/// Internal aggregate `lifecycle_cohort_customer(order_ts, amount DOUBLE, granularity)`: per
/// customer, the cohort and the revenue of every period the customer ordered in.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CohortCustomerUdaf {
    signature: Signature,
}

impl Default for CohortCustomerUdaf {
    fn default() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

/// Name of the internal per-customer aggregate.
pub const COHORT_CUSTOMER: &str = "lifecycle_cohort_customer";

impl CohortCustomerUdaf {
    const NAME: &'static str = COHORT_CUSTOMER;

    fn groups(&self, args: &AccumulatorArgs) -> Result<CohortCustomers> {
        let granularity: Granularity = match literal(Self::NAME, &args.exprs[2])? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.parse()?,
            other => return plan_err!("{}: bad granularity {other}", Self::NAME),
        };
        let ts_type = args.expr_fields[0].data_type();
        let cohort_type = period_start_type(ts_type);
        let DataType::Timestamp(out_unit, _) = &cohort_type else {
            return plan_err!("{}: unexpected cohort type {cohort_type}", Self::NAME);
        };
        Ok(CohortCustomers {
            granularity,
            unit: TickUnit::common(&[ts_type])?,
            out_unit: TickUnit { unit: *out_unit },
            cohort_type,
            sums: KeyedSums::default(),
        })
    }
}

impl AggregateUDFImpl for CohortCustomerUdaf {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(customer_fields(&period_start_type(
            &arg_types[0],
        ))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(list_state_fields(
            args.name,
            &[
                ("periods", DataType::Int64),
                ("revenue", DataType::Float64),
                ("revenue_lo", DataType::Float64),
            ],
        ))
    }

    crate::common::grouped_accumulators!(Self::groups);
}

struct CohortCustomers {
    granularity: Granularity,
    /// Unit of the order_ts ticks, and of the cohort instants produced.
    unit: TickUnit,
    out_unit: TickUnit,
    cohort_type: DataType,
    sums: KeyedSums,
}

impl CohortCustomers {
    /// Calls `f(row, period index, amount)` for every usable row (order_ts not NULL, FILTER
    /// true); a NULL amount counts as 0 (the customer was active).
    fn for_each_row(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut f: impl FnMut(usize, i64, f64),
    ) -> Result<()> {
        let (ticks, nulls) = ticks_of(&values[0], self.unit)?;
        let amounts = values[1].as_primitive::<Float64Type>();
        let mask = row_mask(filter, &[nulls.as_ref()]);
        let amount_nulls = amounts.nulls();
        let (mut periods, mut scratch) = (vec![], vec![]);
        periods_of(
            &ticks,
            self.unit,
            self.granularity,
            &mut periods,
            &mut scratch,
        );
        for (row, (p, x)) in periods.iter().zip(amounts.values()).enumerate() {
            if mask.as_ref().is_some_and(|m| m.is_null(row)) {
                continue;
            }
            let x = if amount_nulls.is_some_and(|n| n.is_null(row)) {
                0.0
            } else {
                *x
            };
            f(row, *p, x);
        }
        Ok(())
    }

    fn take_runs(&mut self, emit_to: EmitTo) -> Runs {
        let n = match emit_to {
            EmitTo::All => self.sums.groups(),
            EmitTo::First(n) => n,
        };
        self.sums.take(n)
    }

    fn state_arrays(runs: &Runs) -> Vec<ArrayRef> {
        let keys = Int64Array::from(runs.keys.clone());
        let hi = Float64Array::from_iter_values(runs.sums.iter().map(|s| s.hi));
        let lo = Float64Array::from_iter_values(runs.sums.iter().map(|s| s.lo));
        vec![
            list_array(&runs.offsets, Arc::new(keys)),
            list_array(&runs.offsets, Arc::new(hi)),
            list_array(&runs.offsets, Arc::new(lo)),
        ]
    }
}

impl GroupsAccumulator for CohortCustomers {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let mut sums = std::mem::take(&mut self.sums);
        sums.resize(total_num_groups);
        let r = self.for_each_row(values, opt_filter, |row, key, x| {
            sums.add(group_indices[row], key, Sum::of(x))
        });
        self.sums = sums;
        r
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.sums.resize(total_num_groups);
        let keys = values[0].as_list::<i32>();
        let offsets = keys.value_offsets();
        let key_values = keys.values().as_primitive::<Int64Type>().values();
        let hi = values[1].as_list::<i32>();
        let hi = hi.values().as_primitive::<Float64Type>().values();
        let lo = values[2].as_list::<i32>();
        let lo = lo.values().as_primitive::<Float64Type>().values();
        for (row, g) in group_indices.iter().enumerate() {
            if keys.is_null(row) {
                continue;
            }
            for k in offsets[row] as usize..offsets[row + 1] as usize {
                self.sums.add(
                    *g,
                    key_values[k],
                    Sum {
                        hi: hi[k],
                        lo: lo[k],
                    },
                );
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let runs = self.take_runs(emit_to);
        let n = runs.groups();
        let mut cohort = Vec::with_capacity(n);
        let mut cohort_index = Vec::with_capacity(n);
        let mut valid = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(runs.keys.len());
        let g = self.granularity;
        for c in 0..n {
            let range = runs.range(c);
            let Some(&first) = runs.keys.get(range.start).filter(|_| !range.is_empty()) else {
                cohort.push(0);
                cohort_index.push(0);
                valid.push(false);
                continue;
            };
            cohort.push(self.out_unit.ticks_of_day(g.period_start_day(first))?);
            cohort_index.push(first);
            valid.push(true);
            offsets.extend(runs.keys[range].iter().map(|k| k - first));
        }
        let revenue = Float64Array::from_iter_values(runs.sums.iter().map(|s| s.value()));
        let fields = customer_fields(&self.cohort_type);
        Ok(Arc::new(StructArray::try_new(
            fields,
            vec![
                instants(cohort, None, &self.cohort_type)?,
                Arc::new(Int64Array::from(cohort_index)),
                list_array(&runs.offsets, Arc::new(Int64Array::from(offsets))),
                list_array(&runs.offsets, Arc::new(revenue)),
            ],
            Some(NullBuffer::from(valid)),
        )?))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let runs = self.take_runs(emit_to);
        Ok(Self::state_arrays(&runs))
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row is its own group: a run of zero or one period.
        let n = values[0].len();
        let mut runs = Runs {
            offsets: Vec::with_capacity(n + 1),
            ..Default::default()
        };
        runs.offsets.push(0);
        self.for_each_row(values, opt_filter, |row, key, x| {
            while runs.offsets.len() <= row {
                runs.offsets.push(runs.keys.len());
            }
            runs.keys.push(key);
            runs.sums.push(Sum::of(x));
        })?;
        while runs.offsets.len() <= n {
            runs.offsets.push(runs.keys.len());
        }
        Ok(Self::state_arrays(&runs))
    }

    fn size(&self) -> usize {
        self.sums.size()
    }
}

/// Internal aggregate `lifecycle_cohort_triangle(customer, end)`: the customers of
/// `lifecycle_cohort_customer` added up into the zero-filled triangle, one list of rows.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CohortTriangleUdaf {
    signature: Signature,
}

impl Default for CohortTriangleUdaf {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl CohortTriangleUdaf {
    const NAME: &'static str = "lifecycle_cohort_triangle";
}

/// The cohort type inside a `lifecycle_cohort_customer` struct.
fn cohort_type_of(t: &DataType) -> Result<DataType> {
    match t {
        DataType::Struct(f) if !f.is_empty() => Ok(f[0].data_type().clone()),
        other => plan_err!(
            "{}: expected a customer struct, got {other}",
            CohortTriangleUdaf::NAME
        ),
    }
}

impl AggregateUDFImpl for CohortTriangleUdaf {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(fill_fields(&cohort_type_of(&arg_types[0])?)),
            false,
        ))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(list_state_fields(
            args.name,
            &[
                ("cohort_index", DataType::Int64),
                ("cohort", DataType::Int64),
                ("period", DataType::Int64),
                ("active", DataType::Int64),
                ("revenue", DataType::Float64),
                ("revenue_lo", DataType::Float64),
            ],
        ))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let end = match literal(Self::NAME, &args.exprs[1])? {
            ScalarValue::Int64(v) => v,
            ScalarValue::Null => None,
            other => return plan_err!("{}: bad end {other}", Self::NAME),
        };
        Ok(Box::new(TriangleAccumulator {
            cohort_type: cohort_type_of(args.expr_fields[0].data_type())?,
            end,
            triangle: Triangle::default(),
        }))
    }
}

#[derive(Debug)]
struct TriangleAccumulator {
    cohort_type: DataType,
    end: Option<i64>,
    triangle: Triangle,
}

impl TriangleAccumulator {
    fn too_long(&self, e: TooLong) -> DataFusionError {
        let label = self.triangle.cohorts()[e.cohort].label;
        let cohort = instants(vec![label], None, &self.cohort_type)
            .and_then(|a| {
                Ok(datafusion::arrow::util::display::ArrayFormatter::try_new(
                    a.as_ref(),
                    &Default::default(),
                )?
                .value(0)
                .to_string())
            })
            .unwrap_or_else(|_| label.to_string());
        DataFusionError::Execution(format!(
            "cohort_retention: the triangle would span {} periods (cohort {cohort} to the end), \
             more than the {MAX_TRIANGLE_PERIODS} a triangle may have (up to {} rows); use a \
             coarser granularity, an earlier as_of, or filter the table",
            e.periods,
            MAX_TRIANGLE_PERIODS * (MAX_TRIANGLE_PERIODS + 1) / 2
        ))
    }

    fn list_scalar(values: ArrayRef) -> ScalarValue {
        let n = values.len();
        ScalarValue::List(Arc::new(
            list_array(&[0, n], values).as_list::<i32>().clone(),
        ))
    }
}

impl Accumulator for TriangleAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let customers = values[0].as_struct();
        let labels = cast_array(customers.column(0), &DataType::Int64)?;
        let labels = labels.as_primitive::<Int64Type>().values();
        let cohorts = customers.column(1).as_primitive::<Int64Type>().values();
        let periods = customers.column(2).as_list::<i32>();
        let offsets = periods.value_offsets();
        let periods = periods.values().as_primitive::<Int64Type>().values();
        let revenue = customers.column(3).as_list::<i32>();
        let revenue = revenue.values().as_primitive::<Float64Type>().values();
        for row in 0..customers.len() {
            if customers.is_null(row) {
                continue;
            }
            for k in offsets[row] as usize..offsets[row + 1] as usize {
                if let Err(e) = self.triangle.add_cell(
                    cohorts[row],
                    labels[row],
                    periods[k],
                    1,
                    Sum::of(revenue[k]),
                ) {
                    return Err(self.too_long(e));
                }
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let col = |i: usize| states[i].as_list::<i32>().values().clone();
        let (cohort, label, period, active, hi, lo) =
            (col(0), col(1), col(2), col(3), col(4), col(5));
        let int = |a: &ArrayRef| a.as_primitive::<Int64Type>().values().clone();
        let float = |a: &ArrayRef| a.as_primitive::<Float64Type>().values().clone();
        let (cohort, label, period, active) =
            (int(&cohort), int(&label), int(&period), int(&active));
        let (hi, lo) = (float(&hi), float(&lo));
        for i in 0..cohort.len() {
            let sum = Sum {
                hi: hi[i],
                lo: lo[i],
            };
            if let Err(e) = self
                .triangle
                .add_cell(cohort[i], label[i], period[i], active[i], sum)
            {
                return Err(self.too_long(e));
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (mut cohort, mut label, mut period, mut active, mut hi, mut lo) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (c, k, a, r) in self.triangle.cells() {
            cohort.push(c.cohort);
            label.push(c.label);
            period.push(k);
            active.push(a);
            hi.push(r.hi);
            lo.push(r.lo);
        }
        let ints = |v: Vec<i64>| Self::list_scalar(Arc::new(Int64Array::from(v)));
        let floats = |v: Vec<f64>| Self::list_scalar(Arc::new(Float64Array::from(v)));
        Ok(vec![
            ints(cohort),
            ints(label),
            ints(period),
            ints(active),
            floats(hi),
            floats(lo),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let rows = self.triangle.rows(self.end).map_err(|e| self.too_long(e))?;
        let cohorts = self.triangle.cohorts();
        let label: Vec<i64> = rows.iter().map(|r| cohorts[r.cohort].label).collect();
        let ints = |f: &dyn Fn(&crate::cohort::TriangleRow) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let floats = |f: &dyn Fn(&crate::cohort::TriangleRow) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
        };
        let fields = fill_fields(&self.cohort_type);
        let rows_array = StructArray::try_new(
            fields,
            vec![
                instants(label, None, &self.cohort_type)?,
                ints(&|r| r.period),
                ints(&|r| r.cohort_size),
                ints(&|r| r.active),
                floats(&|r| r.retention),
                floats(&|r| r.revenue),
            ],
            None,
        )?;
        Ok(Self::list_scalar(Arc::new(rows_array)))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self
                .triangle
                .cohorts()
                .iter()
                .map(|c| {
                    size_of_val(c)
                        + c.active.capacity() * 8
                        + c.revenue.capacity() * size_of::<Sum>()
                })
                .sum::<usize>()
    }
}
