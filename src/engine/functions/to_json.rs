//! `lifecycle_pg_json`: any value as its JSON text. The Postgres listener adds it on top of a
//! query's plan for the columns the protocol has no type for (`server::pg::json`); it is
//! not registered for SQL.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

static TO_JSON: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(ToJson::default())));

/// The conversion's name in plans (not registered for SQL).
pub const TO_JSON_NAME: &str = "lifecycle_pg_json";

pub fn to_json() -> Arc<ScalarUDF> {
    TO_JSON.clone()
}

/// Any value as its JSON text (SQL NULL stays NULL; nulls inside are JSON `null`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToJson {
    signature: Signature,
}

impl Default for ToJson {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        TO_JSON_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(json_texts(
            &args.arg_fields[0],
            &array,
        )?))
    }
}

fn json_texts(field: &FieldRef, array: &ArrayRef) -> Result<ArrayRef> {
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(field, array.as_ref(), &options)?;
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 16);
    let mut buf = Vec::with_capacity(64);
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
        } else {
            buf.clear();
            encoder.encode(i, &mut buf);
            // The encoder writes UTF-8 JSON.
            out.append_value(String::from_utf8_lossy(&buf));
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, ListArray, StringArray, StructArray};
    use datafusion::arrow::datatypes::{Field, Int64Type};

    #[test]
    fn structs_and_nested_lists_as_json() {
        let st = StructArray::from(vec![
            (
                Arc::new(Field::new("frequency", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![Some(3), None])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("name", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["a\"b", "c"])) as ArrayRef,
            ),
        ]);
        let array: ArrayRef = Arc::new(st);
        let field = Arc::new(Field::new("s", array.data_type().clone(), true));
        let got = json_texts(&field, &array).unwrap();
        let got = got.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(got.value(0), r#"{"frequency":3,"name":"a\"b"}"#);
        assert_eq!(got.value(1), r#"{"frequency":null,"name":"c"}"#);

        let inner = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![Some(3)]),
        ]);
        let outer: ArrayRef = Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(inner.data_type().clone(), true)),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([2, 0]),
            Arc::new(inner),
            Some(vec![true, false].into()),
        ));
        let field = Arc::new(Field::new("l", outer.data_type().clone(), true));
        let got = json_texts(&field, &outer).unwrap();
        let got = got.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(got.value(0), "[[1,2],[3]]");
        assert!(got.is_null(1), "SQL NULL stays NULL");
    }
}
