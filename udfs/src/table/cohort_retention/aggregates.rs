//! The two internal aggregates `cohort_retention` plans: one row per customer
//! ([`COHORT_CUSTOMER`]: its cohort and its per-period revenue runs) and the triangle over them,
//! both over the kernel ([`super::kernel`]). SQL cannot name them; a cluster's processes decode
//! them by name ([`internal_aggregates`]).

use super::kernel::{Amount, KeyedSums, Mode, Runs, Sum, TooLong, Triangle, TriangleRow};
use super::*;

/// A constant argument of an internal aggregate.
fn literal(func: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<ScalarValue> {
    match crate::support::constant(expr) {
        Some(v) => Ok(v),
        None => plan_err!("{func}: expected a constant argument, got {expr}"),
    }
}

/// How one kind of revenue total ([`Amount`]) is read from and written to Arrow: floating
/// totals as DOUBLE (with the compensation term in partial states), decimal totals as
/// DECIMAL(38, s).
trait Money: Amount {
    /// The state columns of a list of totals: (suffix, element type).
    fn state_types(revenue: &DataType) -> Vec<(&'static str, DataType)>;

    /// Flat state arrays of `totals`, one per [`Money::state_types`] entry.
    fn state_arrays(totals: &[Self], revenue: &DataType) -> Result<Vec<ArrayRef>>;

    /// Totals back from flat state arrays.
    fn from_state(arrays: &[ArrayRef]) -> Vec<Self>;

    /// Totals from a flat array of revenue values (DOUBLE or DECIMAL); NULL counts as 0.
    fn from_values(values: &ArrayRef) -> Vec<Self>;

    /// An output array of revenue values; a decimal total beyond DECIMAL(38) is an error.
    fn values(totals: impl Iterator<Item = Self>, revenue: &DataType) -> Result<ArrayRef>;
}

impl Money for Sum {
    fn state_types(_: &DataType) -> Vec<(&'static str, DataType)> {
        vec![
            ("revenue", DataType::Float64),
            ("revenue_lo", DataType::Float64),
        ]
    }

    fn state_arrays(totals: &[Self], _: &DataType) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            Arc::new(Float64Array::from_iter_values(totals.iter().map(|s| s.hi))),
            Arc::new(Float64Array::from_iter_values(totals.iter().map(|s| s.lo))),
        ])
    }

    fn from_state(arrays: &[ArrayRef]) -> Vec<Self> {
        let hi = arrays[0].as_primitive::<Float64Type>().values();
        let lo = arrays[1].as_primitive::<Float64Type>().values();
        hi.iter()
            .zip(lo.iter())
            .map(|(&hi, &lo)| Sum { hi, lo })
            .collect()
    }

    fn from_values(values: &ArrayRef) -> Vec<Self> {
        money::floats(values).into_iter().map(Sum::of).collect()
    }

    fn values(totals: impl Iterator<Item = Self>, _: &DataType) -> Result<ArrayRef> {
        Ok(Arc::new(Float64Array::from_iter_values(
            totals.map(|s| s.value()),
        )))
    }
}

impl Money for i128 {
    fn state_types(revenue: &DataType) -> Vec<(&'static str, DataType)> {
        vec![("revenue", revenue.clone())]
    }

    fn state_arrays(totals: &[Self], revenue: &DataType) -> Result<Vec<ArrayRef>> {
        Ok(vec![Self::values(totals.iter().copied(), revenue)?])
    }

    fn from_state(arrays: &[ArrayRef]) -> Vec<Self> {
        arrays[0].as_primitive::<Decimal128Type>().values().to_vec()
    }

    fn from_values(values: &ArrayRef) -> Vec<Self> {
        money::decimals(values)
    }

    fn values(totals: impl Iterator<Item = Self>, revenue: &DataType) -> Result<ArrayRef> {
        money::decimal_array("cohort_retention", totals.map(Some), revenue)
    }
}

use money::is_decimal;

/// One customer's part of the triangle (the output of `lifecycle_cohort_customer`).
fn customer_fields(cohort: &DataType, revenue: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("cohort", cohort.clone(), false),
        Field::new("cohort_index", DataType::Int64, false),
        Field::new("periods", list_of(DataType::Int64), false),
        Field::new("revenue", list_of(revenue.clone()), false),
    ])
}

fn fill_fields(cohort: &DataType, revenue: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("cohort", cohort.clone(), false),
        Field::new("period", DataType::Int64, false),
        Field::new("cohort_size", DataType::Int64, false),
        Field::new("active_customers", DataType::Int64, false),
        Field::new("retention", DataType::Float64, false),
        Field::new("revenue", revenue.clone(), false),
        Field::new("cumulative_revenue", revenue.clone(), false),
        Field::new("revenue_retention", DataType::Float64, true),
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
        crate::single_phase::whole_input(CohortCustomerUdaf::default()),
        AggregateUDF::new_from_impl(CohortTriangleUdaf::default()),
    ]
}

/// Internal aggregate `lifecycle_cohort_customer(order_ts, amount, granularity)`, amount DOUBLE
/// or DECIMAL(38, s): per customer, the cohort and the revenue of every period the customer
/// ordered in.
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

    fn groups<A: Money>(&self, args: &AccumulatorArgs) -> Result<CohortCustomers<A>> {
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
            revenue_type: args.expr_fields[1].data_type().clone(),
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
        Ok(DataType::Struct(customer_fields(
            &period_start_type(&arg_types[0]),
            &arg_types[1],
        )))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let revenue = args.input_fields[1].data_type();
        let mut fields = vec![("periods", DataType::Int64)];
        if is_decimal(revenue) {
            fields.extend(<i128 as Money>::state_types(revenue));
        } else {
            fields.extend(<Sum as Money>::state_types(revenue));
        }
        Ok(list_state_fields(args.name, &fields))
    }

    crate::support::money_accumulators!(groups, Sum, |_: &Self, args: &AccumulatorArgs| {
        is_decimal(args.expr_fields[1].data_type())
    });
}

struct CohortCustomers<A: Money> {
    granularity: Granularity,
    /// Unit of the order_ts ticks, and of the cohort instants produced.
    unit: TickUnit,
    out_unit: TickUnit,
    cohort_type: DataType,
    revenue_type: DataType,
    sums: KeyedSums<A>,
}

impl<A: Money> CohortCustomers<A> {
    /// Calls `f(row, period index, amount)` for every usable row (order_ts not NULL, FILTER
    /// true); a NULL amount counts as 0 (the customer was active).
    fn for_each_row(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut f: impl FnMut(usize, i64, A),
    ) -> Result<()> {
        let (ticks, nulls) = ticks_of(&values[0], self.unit)?;
        let amounts = A::from_values(&values[1]);
        let mask = row_mask(filter, &[nulls.as_ref()]);
        let (mut periods, mut scratch) = (vec![], vec![]);
        periods_of(
            &ticks,
            self.unit,
            self.granularity,
            &mut periods,
            &mut scratch,
        );
        for (row, (p, x)) in periods.iter().zip(amounts).enumerate() {
            if mask.as_ref().is_some_and(|m| m.is_null(row)) {
                continue;
            }
            f(row, *p, x);
        }
        Ok(())
    }

    fn take_runs(&mut self, emit_to: EmitTo) -> Runs<A> {
        let n = match emit_to {
            EmitTo::All => self.sums.groups(),
            EmitTo::First(n) => n,
        };
        self.sums.take(n)
    }

    fn state_arrays(&self, runs: &Runs<A>) -> Result<Vec<ArrayRef>> {
        let keys = Int64Array::from(runs.keys.clone());
        let mut out = vec![list_array(&runs.offsets, Arc::new(keys))];
        for a in A::state_arrays(&runs.sums, &self.revenue_type)? {
            out.push(list_array(&runs.offsets, a));
        }
        Ok(out)
    }
}

impl<A: Money> GroupsAccumulator for CohortCustomers<A> {
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
            sums.add(group_indices[row], key, x)
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
        let flat: Vec<ArrayRef> = values[1..]
            .iter()
            .map(|v| v.as_list::<i32>().values().clone())
            .collect();
        let totals = A::from_state(&flat);
        for (row, g) in group_indices.iter().enumerate() {
            if keys.is_null(row) {
                continue;
            }
            for k in offsets[row] as usize..offsets[row + 1] as usize {
                self.sums.add(*g, key_values[k], totals[k]);
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
        let revenue = A::values(runs.sums.iter().copied(), &self.revenue_type)?;
        let fields = customer_fields(&self.cohort_type, &self.revenue_type);
        Ok(Arc::new(StructArray::try_new(
            fields,
            vec![
                instants(cohort, None, &self.cohort_type)?,
                Arc::new(Int64Array::from(cohort_index)),
                list_array(&runs.offsets, Arc::new(Int64Array::from(offsets))),
                list_array(&runs.offsets, revenue),
            ],
            Some(NullBuffer::from(valid)),
        )?))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let runs = self.take_runs(emit_to);
        self.state_arrays(&runs)
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
            runs.sums.push(x);
        })?;
        while runs.offsets.len() <= n {
            runs.offsets.push(runs.keys.len());
        }
        self.state_arrays(&runs)
    }

    fn size(&self) -> usize {
        self.sums.size()
    }
}

/// Internal aggregate `lifecycle_cohort_triangle(customer, end, mode)`: the customers of
/// `lifecycle_cohort_customer` added up into the zero-filled triangle, one list of rows.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CohortTriangleUdaf {
    signature: Signature,
}

impl Default for CohortTriangleUdaf {
    fn default() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl CohortTriangleUdaf {
    const NAME: &'static str = "lifecycle_cohort_triangle";
}

/// The cohort and revenue types inside a `lifecycle_cohort_customer` struct.
fn customer_types(t: &DataType) -> Result<(DataType, DataType)> {
    match t {
        DataType::Struct(f) if f.len() == 4 => match f[3].data_type() {
            DataType::List(r) => Ok((f[0].data_type().clone(), r.data_type().clone())),
            other => plan_err!("{}: bad revenue list {other}", CohortTriangleUdaf::NAME),
        },
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
        let (cohort, revenue) = customer_types(&arg_types[0])?;
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(fill_fields(&cohort, &revenue)),
            false,
        ))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let (_, revenue) = customer_types(args.input_fields[0].data_type())?;
        let mut fields = vec![
            ("cohort_index", DataType::Int64),
            ("cohort", DataType::Int64),
            ("period", DataType::Int64),
            ("active", DataType::Int64),
            ("last", DataType::Int64),
        ];
        if is_decimal(&revenue) {
            fields.extend(<i128 as Money>::state_types(&revenue));
        } else {
            fields.extend(<Sum as Money>::state_types(&revenue));
        }
        Ok(list_state_fields(args.name, &fields))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let end = match literal(Self::NAME, &args.exprs[1])? {
            ScalarValue::Int64(v) => v,
            ScalarValue::Null => None,
            other => return plan_err!("{}: bad end {other}", Self::NAME),
        };
        let mode: Mode = match literal(Self::NAME, &args.exprs[2])?.try_as_str() {
            Some(Some(m)) => m.parse().map_err(DataFusionError::Plan)?,
            _ => return plan_err!("{}: bad mode", Self::NAME),
        };
        let (cohort_type, revenue_type) = customer_types(args.expr_fields[0].data_type())?;
        Ok(if is_decimal(&revenue_type) {
            Box::new(TriangleAccumulator::<i128>::new(
                cohort_type,
                revenue_type,
                end,
                mode,
            ))
        } else {
            Box::new(TriangleAccumulator::<Sum>::new(
                cohort_type,
                revenue_type,
                end,
                mode,
            ))
        })
    }
}

#[derive(Debug)]
struct TriangleAccumulator<A: Money> {
    cohort_type: DataType,
    revenue_type: DataType,
    end: Option<i64>,
    mode: Mode,
    triangle: Triangle<A>,
}

impl<A: Money> TriangleAccumulator<A> {
    fn new(cohort_type: DataType, revenue_type: DataType, end: Option<i64>, mode: Mode) -> Self {
        Self {
            cohort_type,
            revenue_type,
            end,
            mode,
            triangle: Triangle::default(),
        }
    }

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

impl<A: Money> Accumulator for TriangleAccumulator<A> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let customers = values[0].as_struct();
        let labels = cast_array(customers.column(0), &DataType::Int64)?;
        let labels = labels.as_primitive::<Int64Type>().values();
        let cohorts = customers.column(1).as_primitive::<Int64Type>().values();
        let periods = customers.column(2).as_list::<i32>();
        let offsets = periods.value_offsets();
        let periods = periods.values().as_primitive::<Int64Type>().values();
        // Only this batch's part of the lists: a grouped aggregate hands each group a slice,
        // whose lists still share the whole batch's values.
        let base = offsets[0] as usize;
        let revenue_list = customers.column(3).as_list::<i32>();
        let revenue = A::from_values(
            &revenue_list
                .values()
                .slice(base, offsets[customers.len()] as usize - base),
        );
        for row in 0..customers.len() {
            if customers.is_null(row) {
                continue;
            }
            let range = offsets[row] as usize..offsets[row + 1] as usize;
            if let Err(e) = self.triangle.add_customer(
                cohorts[row],
                labels[row],
                &periods[range.clone()],
                &revenue[range.start - base..range.end - base],
            ) {
                return Err(self.too_long(e));
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        // The rows' elements: a grouped aggregate hands each group a slice of the state lists,
        // whose `values()` are still the whole batch's.
        let col = |i: usize| {
            let list = states[i].as_list::<i32>();
            let offsets = list.value_offsets();
            let (start, end) = (offsets[0] as usize, offsets[list.len()] as usize);
            list.values().slice(start, end - start)
        };
        let int = |a: &ArrayRef| a.as_primitive::<Int64Type>().values().clone();
        let (cohort, label, period, active, last) = (
            int(&col(0)),
            int(&col(1)),
            int(&col(2)),
            int(&col(3)),
            int(&col(4)),
        );
        let flat: Vec<ArrayRef> = (5..states.len()).map(col).collect();
        let totals = A::from_state(&flat);
        for i in 0..cohort.len() {
            if let Err(e) = self.triangle.add_cell(
                cohort[i], label[i], period[i], active[i], last[i], totals[i],
            ) {
                return Err(self.too_long(e));
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (mut cohort, mut label, mut period, mut active, mut last, mut totals) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (c, k, a, l, r) in self.triangle.cells() {
            cohort.push(c.cohort);
            label.push(c.label);
            period.push(k);
            active.push(a);
            last.push(l);
            totals.push(r);
        }
        let ints = |v: Vec<i64>| Self::list_scalar(Arc::new(Int64Array::from(v)));
        let mut out = vec![
            ints(cohort),
            ints(label),
            ints(period),
            ints(active),
            ints(last),
        ];
        for a in A::state_arrays(&totals, &self.revenue_type)? {
            out.push(Self::list_scalar(a));
        }
        Ok(out)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let rows = self
            .triangle
            .rows(self.end, self.mode)
            .map_err(|e| self.too_long(e))?;
        let cohorts = self.triangle.cohorts();
        let label: Vec<i64> = rows.iter().map(|r| cohorts[r.cohort].label).collect();
        let ints = |f: &dyn Fn(&TriangleRow<A>) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let fields = fill_fields(&self.cohort_type, &self.revenue_type);
        let rows_array = StructArray::try_new(
            fields,
            vec![
                instants(label, None, &self.cohort_type)?,
                ints(&|r| r.period),
                ints(&|r| r.cohort_size),
                ints(&|r| r.active),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|r| r.retention),
                )),
                A::values(rows.iter().map(|r| r.revenue), &self.revenue_type)?,
                A::values(
                    rows.iter().map(|r| r.cumulative_revenue),
                    &self.revenue_type,
                )?,
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|r| r.revenue_retention),
                )),
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
                        + (c.active.capacity() + c.last.capacity()) * 8
                        + c.revenue.capacity() * size_of::<A>()
                })
                .sum::<usize>()
    }
}
