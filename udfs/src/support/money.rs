//! Exact money: DECIMAL amounts are summed as their unscaled `i128` and returned as
//! DECIMAL(38, s) (DataFusion's `sum` widens to 38 digits the same way); other numeric amounts
//! are DOUBLE. Shared by `cohort_retention` and `rfm_summary`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use datafusion::common::{DataFusionError, Result};

/// The type an amount column is read in: DECIMAL(38, s) for a DECIMAL of scale s (summed
/// exactly), DOUBLE for any other number.
pub fn amount_type(amount: &DataType) -> DataType {
    match amount {
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal128(_, s)
        | DataType::Decimal256(_, s) => DataType::Decimal128(38, (*s).clamp(0, 38)),
        _ => DataType::Float64,
    }
}

/// Whether amounts of this (read) type are exact decimals.
pub fn is_decimal(t: &DataType) -> bool {
    matches!(t, DataType::Decimal128(_, _))
}

/// A DOUBLE column's values, NULL as 0.
pub fn floats(values: &ArrayRef) -> Vec<f64> {
    let v = values.as_primitive::<Float64Type>();
    (0..v.len())
        .map(|i| if v.is_null(i) { 0.0 } else { v.value(i) })
        .collect()
}

/// A DECIMAL(38, s) column's unscaled values, NULL as 0.
pub fn decimals(values: &ArrayRef) -> Vec<i128> {
    let v = values.as_primitive::<Decimal128Type>();
    (0..v.len())
        .map(|i| if v.is_null(i) { 0 } else { v.value(i) })
        .collect()
}

/// Unscaled values as a DECIMAL array of type `t`; a value beyond its precision (a total
/// that overflowed, saturated) is an error naming `func`.
pub fn decimal_array(
    func: &str,
    values: impl IntoIterator<Item = Option<i128>>,
    t: &DataType,
) -> Result<ArrayRef> {
    let DataType::Decimal128(p, s) = t else {
        return Err(DataFusionError::Internal(format!(
            "{func}: expected a DECIMAL type, got {t}"
        )));
    };
    let a = Decimal128Array::from_iter(values).with_precision_and_scale(*p, *s)?;
    a.validate_decimal_precision(*p).map_err(|_| {
        DataFusionError::Execution(format!(
            "{func}: a total exceeds {t}; cast the amount to DOUBLE"
        ))
    })?;
    Ok(Arc::new(a))
}
