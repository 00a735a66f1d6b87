//! `store_bucket(key, n)`: the lifecycle store's bucket of a key (Iceberg's bucket transform).

pub mod kernel;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::support::doc::scalar_doc;

/// The largest bucket count `store_bucket` accepts.
pub const MAX_BUCKETS: i64 = 1 << 20;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StoreBucket {
    signature: Signature,
}

impl Default for StoreBucket {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    scalar_doc(
        "The bucket, from 0 to `n - 1`, that the lifecycle store keeps `key`'s rows in: Iceberg's \
         bucket transform, `(murmur3_x86_32(key) & 2147483647) % n` with seed 0, integers and dates \
         hashed as their 8-byte little-endian value and strings as their UTF-8 bytes. NULL for a NULL \
         key (the store keeps those rows in a bucket of their own).",
        "store_bucket(key, n)",
        "SELECT store_bucket(34, 16), store_bucket('iceberg', 16);\n-- 3, 9",
    )
    .with_argument("key", "an integer, DATE or string")
    .with_argument("n", "the number of buckets, 1 to 1048576")
    .build()
});

/// Hashes of a key column, as Iceberg's bucket transform (`None` for NULL keys).
pub fn key_hashes(keys: &ArrayRef) -> Result<Vec<Option<i32>>> {
    use datafusion::arrow::compute::cast;
    let hashed = |hash: &dyn Fn(usize) -> i32| {
        (0..keys.len())
            .map(|i| keys.is_valid(i).then(|| hash(i)))
            .collect::<Vec<_>>()
    };
    Ok(match keys.data_type() {
        t if t.is_integer() || matches!(t, DataType::Date32) => {
            if matches!(t, DataType::UInt64) {
                return exec_err!(
                    "store_bucket: UInt64 keys are not supported (Iceberg has no unsigned long)"
                );
            }
            let longs = cast(keys, &DataType::Int64)?;
            let longs = longs.as_primitive::<Int64Type>();
            hashed(&|i| kernel::hash_long(longs.value(i)))
        }
        DataType::Utf8 => {
            let s = keys.as_string::<i32>();
            hashed(&|i| kernel::hash_str(s.value(i)))
        }
        DataType::LargeUtf8 => {
            let s = keys.as_string::<i64>();
            hashed(&|i| kernel::hash_str(s.value(i)))
        }
        DataType::Utf8View => {
            let s = keys.as_string_view();
            hashed(&|i| kernel::hash_str(s.value(i)))
        }
        t => {
            return exec_err!(
                "store_bucket: keys of type {t} are not supported (integers, DATE or strings)"
            );
        }
    })
}

/// Whether `store_bucket` takes keys of type `t`.
pub fn supported_key(t: &DataType) -> bool {
    (t.is_integer() && *t != DataType::UInt64)
        || matches!(
            t,
            DataType::Date32 | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
}

impl ScalarUDFImpl for StoreBucket {
    fn name(&self) -> &str {
        "store_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "store_bucket takes 2 arguments (key, n), got {}",
                arg_types.len()
            );
        }
        if !supported_key(&arg_types[0]) && arg_types[0] != DataType::Null {
            return plan_err!(
                "store_bucket: keys of type {} are not supported (integers, DATE or strings)",
                arg_types[0]
            );
        }
        if !arg_types[1].is_integer() {
            return plan_err!("store_bucket: n must be an integer, got {}", arg_types[1]);
        }
        Ok(vec![arg_types[0].clone(), DataType::Int64])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if (1..=MAX_BUCKETS).contains(n) => {
                *n as u32
            }
            ColumnarValue::Scalar(v) => {
                return exec_err!("store_bucket: n must be 1 to {MAX_BUCKETS}, got {v}");
            }
            ColumnarValue::Array(_) => return exec_err!("store_bucket: n must be a constant"),
        };
        let keys = args.args[0].to_array(args.number_rows)?;
        if keys.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(Arc::new(Int32Array::new_null(
                keys.len(),
            ))));
        }
        let out: Int32Array = key_hashes(&keys)?
            .into_iter()
            .map(|h| h.map(|h| kernel::bucket_of(h, n) as i32))
            .collect();
        let out: ArrayRef = Arc::new(out);
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

pub fn store_bucket_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(StoreBucket::default()))
}
