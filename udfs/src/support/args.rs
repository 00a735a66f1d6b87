//! Argument checks and constant arguments: what every function's adapter checks before it plans.

use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::nulls::filter_to_nulls;
/// The most boolean conditions an aggregate takes (`retention`, `window_funnel` steps,
/// `sequence_*`): each row's conditions are the bits of one `u32` mask.
pub const MAX_CONDITIONS: usize = u32::BITS as usize;

/// Checks the argument count of `func` against an inclusive range, with a message that says how
/// the function is called.
pub fn check_arity(func: &str, usage: &str, n: usize, min: usize, max: usize) -> Result<()> {
    if n < min || n > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return plan_err!("{func} takes {want} arguments ({usage}), got {n}");
    }
    Ok(())
}

/// Integer types a threshold argument may have; coerced to BIGINT.
pub fn check_integer(func: &str, name: &str, t: &DataType) -> Result<DataType> {
    if t.is_integer() || t.is_null() {
        Ok(DataType::Int64)
    } else {
        plan_err!("{func}: argument '{name}' must be an integer, got {t}")
    }
}

/// The value of a constant argument of an aggregate (after constant folding): a [`Literal`], or
/// an expression without inputs that evaluates to a scalar. The second form is how a constant
/// arrives when the aggregate runs in another DataFusion build (DataFusion Python, through
/// datafusion-ffi): as a foreign expression that can only be evaluated, not inspected.
pub fn constant(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    if let Some(lit) = expr.downcast_ref::<Literal>() {
        return Some(lit.value().clone());
    }
    if !expr.children().is_empty() {
        return None;
    }
    let empty = datafusion::arrow::datatypes::Schema::empty();
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1));
    let batch = datafusion::arrow::array::RecordBatch::try_new_with_options(
        Arc::new(empty),
        vec![],
        &options,
    )
    .ok()?;
    match expr.evaluate(&batch).ok()? {
        datafusion::logical_expr::ColumnarValue::Scalar(v) => Some(v),
        datafusion::logical_expr::ColumnarValue::Array(_) => None,
    }
}

/// The value of a constant integer argument (after constant folding), >= 1.
pub fn literal_positive(func: &str, name: &str, expr: &Arc<dyn PhysicalExpr>) -> Result<u64> {
    let Some(value) = constant(expr) else {
        return plan_err!("{func}: argument '{name}' must be a constant");
    };
    let v = match &value {
        ScalarValue::Int64(Some(v)) => *v,
        other => match other.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(v)) => v,
            _ => return plan_err!("{func}: argument '{name}' must be a non-NULL integer"),
        },
    };
    if v < 1 {
        return plan_err!("{func}: argument '{name}' must be at least 1, got {v}");
    }
    Ok(v as u64)
}

/// Validity of the rows an aggregate may use: the FILTER clause (NULL counts as false) combined
/// with the given null masks.
pub fn row_mask(
    filter: Option<&BooleanArray>,
    nulls: &[Option<&NullBuffer>],
) -> Option<NullBuffer> {
    let mut mask = filter.map(filter_to_nulls);
    for n in nulls {
        mask = NullBuffer::union(mask.as_ref(), *n);
    }
    mask
}

/// Whether `t` is a string type.
pub fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A scalar function's arguments as arrays, and how to return its result: a scalar when every
/// argument was a scalar, else an array.
pub fn scalar_args(
    args: &[datafusion::logical_expr::ColumnarValue],
) -> Result<(Vec<datafusion::arrow::array::ArrayRef>, bool)> {
    use datafusion::logical_expr::ColumnarValue;
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    Ok((ColumnarValue::values_to_arrays(args)?, all_scalar))
}

/// The result of a scalar function (see [`scalar_args`]).
pub fn scalar_result(
    arr: datafusion::arrow::array::ArrayRef,
    all_scalar: bool,
) -> Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::logical_expr::ColumnarValue;
    Ok(if all_scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?)
    } else {
        ColumnarValue::Array(arr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_literals_or_input_free_expressions() {
        use datafusion::common::DFSchema;
        use datafusion::execution::context::ExecutionProps;
        use datafusion::logical_expr::{col, lit};
        use datafusion::physical_expr::create_physical_expr;
        let schema = DFSchema::try_from(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("a", DataType::Int64, true),
        ]))
        .unwrap();
        let physical = |e| {
            let planning = datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
            create_physical_expr(&e, &schema, &ExecutionProps::new(), &planning).unwrap()
        };
        assert_eq!(
            constant(&physical(lit(7i64))),
            Some(ScalarValue::Int64(Some(7)))
        );
        // Not a Literal, no inputs, a scalar when evaluated: what a foreign (FFI) constant is.
        let pi = constant(&physical(datafusion::functions::math::expr_fn::pi()));
        assert_eq!(pi, Some(ScalarValue::Float64(Some(std::f64::consts::PI))));
        assert_eq!(constant(&physical(col("a"))), None);
        assert_eq!(constant(&physical(col("a") + lit(1i64))), None);
    }
}
