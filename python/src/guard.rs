//! `lifecycle_stage(ts, as_of)` and `churn_flag(ts, as_of)` as DataFusion Python receives them.
//!
//! In `lifecycle sql` the two-argument form gets the session's `lifecycle.*` thresholds when the
//! query is planned (an analyzer rewrite, and the aggregate's `simplify`). Neither reaches a
//! function registered through datafusion-ffi 55: the foreign aggregate's `simplify` is `None`,
//! and `FFI_AccumulatorArgs` carries no configuration. So here the two-argument form can only
//! use the default thresholds, and it refuses to when any session of the process has set other
//! thresholds: a wrong answer is worse than an error, and the error says what to write instead.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, GroupsAccumulator, Signature,
};

/// A stage aggregate that checks, before it accumulates, that its thresholds are the session's.
#[derive(Debug)]
pub struct SessionThresholds {
    inner: Arc<AggregateUDF>,
}

impl SessionThresholds {
    pub fn wrap(inner: Arc<AggregateUDF>) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::new_from_impl(Self { inner }))
    }

    fn check(&self, args: &AccumulatorArgs) -> Result<()> {
        if args.exprs.len() == 2 && crate::options::thresholds_changed() {
            let name = self.inner.name();
            return plan_err!(
                "{name}(ts, as_of) uses the default thresholds in DataFusion Python, which does \
                 not pass session settings to aggregate functions, and lifecycle.* thresholds \
                 were SET in this process; pass them explicitly: \
                 {name}(ts, as_of, churn_days, at_risk_days, loyal_window_days, loyal_min_orders)"
            );
        }
        Ok(())
    }
}

impl PartialEq for SessionThresholds {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for SessionThresholds {}

impl Hash for SessionThresholds {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state)
    }
}

impl AggregateUDFImpl for SessionThresholds {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.check(&args)?;
        self.inner.accumulator(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.check(&args)?;
        self.inner.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.check(&args)?;
        self.inner.create_sliding_accumulator(args)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
