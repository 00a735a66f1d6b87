//! `rfm_segment(r_score, f_score)`: the ten named segments of the common R x F map.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::support::doc::scalar_doc;

pub mod kernel;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmSegment {
    signature: Signature,
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "Named segment of 1-5 recency and frequency scores, the common R x F map (a complete, \
         non-overlapping partition of the 25 cells): R1-2 & F1-2 `hibernating`; R1-2 & F3-4 `at_risk`; R1-2 & F5 \
         `cant_lose`; R3 & F1-2 `about_to_sleep`; R3 & F3 `need_attention`; R3-4 & F4-5 `loyal`; R4 & F1 \
         `promising`; R5 & F1 `new`; R4-5 & F2-3 `potential_loyalist`; R5 & F4-5 `champions`. NULL for NULL \
         scores; a score outside 1-5 is an error. Scores usually come from `ntile(5)`, with ties broken by \
         customer_id so they are deterministic: R orders by days since the last order, most recent last (R5 = \
         most recent), F by frequency (F5 = most frequent).",
        "rfm_segment(r_score, f_score)",
        "WITH s AS (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01') AS s FROM purchases GROUP BY customer_id),\n  scored AS (SELECT customer_id,\n    ntile(5) OVER (ORDER BY s.t - s.recency DESC, customer_id) AS r,\n    ntile(5) OVER (ORDER BY s.frequency, customer_id) AS f FROM s)\nSELECT rfm_segment(r, f) AS segment, count(*) AS customers FROM scored GROUP BY segment ORDER BY customers DESC, segment;",
    )
    .with_argument("r_score", "recency score 1-5 (5 = most recent)")
    .with_argument("f_score", "frequency score 1-5 (5 = most frequent)")
    .build()
});

impl ScalarUDFImpl for RfmSegment {
    fn name(&self) -> &str {
        "rfm_segment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "rfm_segment takes 2 arguments (r_score, f_score), got {}",
                arg_types.len()
            );
        }
        for (t, n) in arg_types.iter().zip(["r_score", "f_score"]) {
            if !(t.is_integer() || t.is_null()) {
                return plan_err!("rfm_segment: argument '{n}' must be an integer 1-5, got {t}");
            }
        }
        Ok(vec![DataType::Int64; 2])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, all_scalar) = crate::support::scalar_args(&args.args)?;
        let (r, f) = (
            arrays[0].as_primitive::<Int64Type>(),
            arrays[1].as_primitive::<Int64Type>(),
        );
        let mut out = Vec::with_capacity(r.len());
        for i in 0..r.len() {
            if r.is_null(i) || f.is_null(i) {
                out.push(None);
                continue;
            }
            match kernel::segment(r.value(i), f.value(i)) {
                Some(s) => out.push(Some(s)),
                None => {
                    return exec_err!(
                        "rfm_segment: scores must be 1 to 5, got ({}, {})",
                        r.value(i),
                        f.value(i)
                    );
                }
            }
        }
        let arr: ArrayRef = Arc::new(StringArray::from(out));
        crate::support::scalar_result(arr, all_scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

pub fn rfm_segment_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(RfmSegment {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[cfg(test)]
mod tests {
    use super::kernel::segment;

    #[test]
    fn ten_segments_partition_the_25_cells() {
        let mut counts = std::collections::BTreeMap::new();
        for r in 1..=5 {
            for f in 1..=5 {
                *counts.entry(segment(r, f).unwrap()).or_insert(0) += 1;
            }
        }
        // Cell counts from the map's definition, by hand.
        let want = [
            ("about_to_sleep", 2),
            ("at_risk", 4),
            ("cant_lose", 2),
            ("champions", 2),
            ("hibernating", 4),
            ("loyal", 4),
            ("need_attention", 1),
            ("new", 1),
            ("potential_loyalist", 4),
            ("promising", 1),
        ];
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), want);
        assert_eq!(segment(0, 3), None);
        assert_eq!(segment(3, 6), None);
        assert_eq!(segment(5, 5), Some("champions"));
        assert_eq!(segment(4, 4), Some("loyal"));
        assert_eq!(segment(4, 1), Some("promising"));
    }
}
