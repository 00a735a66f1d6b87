//! `current_setting`: a function Postgres clients call on connect that datafusion-pg-catalog does
//! not provide (registered by the Postgres listener).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// `current_setting(name [, missing_ok])`, as Postgres: the connection's value of a setting.
/// `lifecycle.*` and `datafusion.*` names read the connection's own settings (what `SET` changed);
/// the Postgres names clients ask for on connect (Grafana reads `search_path`) get the values the
/// server reports at startup. An unknown name is an error, or NULL with `missing_ok`.
pub fn current_setting() -> ScalarUDF {
    ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Stable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

/// The value of one setting, `None` when there is no such setting.
fn setting(config: &ConfigOptions, name: &str) -> Option<String> {
    let name = name.trim().to_lowercase();
    let fixed = match name.as_str() {
        "search_path" => "public",
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, YMD",
        "intervalstyle" => "postgres",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "default_transaction_read_only" | "transaction_read_only" => "on",
        "timezone" => {
            return Some(
                config
                    .execution
                    .time_zone
                    .clone()
                    .unwrap_or_else(|| "UTC".into()),
            );
        }
        _ => {
            return name.contains('.').then_some(()).and_then(|_| {
                config
                    .entries()
                    .into_iter()
                    .find(|e| e.key == name)
                    .map(|e| e.value.unwrap_or_default())
            });
        }
    };
    Some(fixed.to_string())
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let names: ArrayRef = args.args[0].to_array(n)?;
        let names = names.as_string::<i32>();
        let missing_ok: Option<ArrayRef> = args.args.get(1).map(|a| a.to_array(n)).transpose()?;
        let mut out = StringBuilder::with_capacity(n, n * 8);
        for i in 0..n {
            if names.is_null(i) {
                out.append_null();
                continue;
            }
            match setting(&args.config_options, names.value(i)) {
                Some(v) => out.append_value(v),
                None if missing_ok
                    .as_ref()
                    .is_some_and(|m| m.as_boolean().value(i) && m.is_valid(i)) =>
                {
                    out.append_null()
                }
                None => {
                    return Err(DataFusionError::Plan(format!(
                        "unrecognized configuration parameter \"{}\"",
                        names.value(i)
                    )));
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(
            if args
                .args
                .iter()
                .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_clients_ask_for() {
        let mut config = ConfigOptions::new();
        assert_eq!(setting(&config, "search_path").as_deref(), Some("public"));
        assert_eq!(setting(&config, "TimeZone").as_deref(), Some("UTC"));
        config.execution.time_zone = Some("Europe/Paris".into());
        assert_eq!(
            setting(&config, "timezone").as_deref(),
            Some("Europe/Paris")
        );
        assert_eq!(
            setting(&config, "datafusion.execution.batch_size").as_deref(),
            Some("8192")
        );
        assert_eq!(setting(&config, "no_such_setting"), None);
        assert_eq!(setting(&config, "datafusion.no.such"), None);
    }
}
