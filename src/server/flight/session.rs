//! Flight SQL session options: `SetSessionOptions`, `GetSessionOptions` and `CloseSession`
//! (Arrow Flight's session actions), so BI tools on Flight SQL can change their settings as a
//! Postgres client does with `SET`, within the same bounds ([`crate::server::settings`]).
//!
//! The session lives in the client's cookie (`arrow_flight_session_id`, as the Flight
//! specification suggests), which holds the settings themselves: the server keeps nothing per
//! client, so sessions cost it no memory and survive a restart, like the server's
//! self-contained tickets and prepared-statement handles. The cookie is checked again against
//! the table of settable settings on every call, so a client that edits it gains nothing. A
//! client must keep cookies (ADBC: `adbc.flight.sql.rpc.with_cookie_middleware=true`).
//!
//! arrow-flight 59 has no types for these messages; they are declared here as in the Arrow
//! format's `Flight.proto` (package `arrow.flight.protocol`).

use std::collections::HashMap;

use base64::Engine;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use datafusion::common::config::ConfigOptions;
use tonic::metadata::MetadataMap;

use crate::server::settings::{self, SettingError};

/// The cookie that holds a session's settings.
pub const COOKIE: &str = "arrow_flight_session_id";

/// Settings a session may hold at most (the table has fewer).
const MAX_SETTINGS: usize = 64;

/// Options one `SetSessionOptions` request may set.
pub const MAX_OPTIONS_PER_REQUEST: usize = 64;

/// The longest cookie value read (a session's settings are far shorter).
const MAX_COOKIE_BYTES: usize = 8 << 10;

/// The action names.
pub const SET: &str = "SetSessionOptions";
pub const GET: &str = "GetSessionOptions";
pub const CLOSE: &str = "CloseSession";

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "session_option_value::OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<session_option_value::OptionValue>,
}

pub mod session_option_value {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringListValue {
        #[prost(string, repeated, tag = "1")]
        pub values: Vec<String>,
    }

    /// The names are the protocol's (`string_value`, ...).
    #[allow(clippy::enum_variant_names)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum OptionValue {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(sfixed64, tag = "3")]
        Int64Value(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        StringListValue(StringListValue),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionsError>,
}

/// `SetSessionOptionsResult.Error`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsError {
    /// `SetSessionOptionsResult.ErrorValue`: 1 INVALID_NAME, 2 INVALID_VALUE, 3 ERROR.
    #[prost(int32, tag = "1")]
    pub value: i32,
}

pub const INVALID_NAME: i32 = 1;
pub const INVALID_VALUE: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    /// 1 CLOSED.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const CLOSED: i32 = 1;

/// A session's settings: `(name, value)` in the order they were set, names normalised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    pub settings: Vec<(String, String)>,
}

impl Session {
    /// The session in a call's `cookie` header; none (an empty session) without one. A cookie
    /// that does not decode is an error: the client would otherwise run with other settings
    /// than it set.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, String> {
        for header in metadata.get_all("cookie") {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name.trim() == COOKIE {
                    return Self::decode(value.trim());
                }
            }
        }
        Ok(Self::default())
    }

    fn decode(value: &str) -> Result<Self, String> {
        let bad = || format!("the {COOKIE} cookie does not hold this server's session");
        if value.is_empty() {
            return Ok(Self::default());
        }
        if value.len() > MAX_COOKIE_BYTES {
            return Err(bad());
        }
        let bytes = BASE64_URL_SAFE_NO_PAD.decode(value).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut settings = vec![];
        for line in text.lines() {
            let (n, v) = line.split_once('=').ok_or_else(bad)?;
            settings.push((n.to_string(), v.to_string()));
        }
        if settings.len() > MAX_SETTINGS {
            return Err(bad());
        }
        Ok(Self { settings })
    }

    /// The cookie value for this session.
    pub fn encode(&self) -> String {
        let text: String = self
            .settings
            .iter()
            .map(|(n, v)| format!("{n}={v}\n"))
            .collect();
        BASE64_URL_SAFE_NO_PAD.encode(text)
    }

    /// The `set-cookie` header value that gives the client this session.
    pub fn set_cookie(&self) -> String {
        format!("{COOKIE}={}; Path=/; HttpOnly", self.encode())
    }

    /// The `set-cookie` header value that ends the session.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly")
    }

    /// The server's configuration with this session's settings, each checked again.
    pub fn apply(&self, server: &ConfigOptions) -> Result<Option<ConfigOptions>, SettingError> {
        if self.settings.is_empty() {
            return Ok(None);
        }
        let mut config = server.clone();
        for (name, value) in &self.settings {
            settings::apply(&mut config, server, name, Some(value))?;
        }
        Ok(Some(config))
    }

    /// Sets options: each valid one is kept (replacing an earlier value of the same name; an
    /// empty value removes it, giving back the server's value); each invalid one is reported
    /// and changes nothing.
    pub fn set(
        &mut self,
        server: &ConfigOptions,
        options: HashMap<String, SessionOptionValue>,
    ) -> HashMap<String, SetSessionOptionsError> {
        let mut errors = HashMap::new();
        let mut names: Vec<_> = options.into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        // The session as it is now, checked once; each option is tried on a copy of it.
        let mut current = match self.apply(server) {
            Ok(c) => c.unwrap_or_else(|| server.clone()),
            Err(_) => server.clone(),
        };
        for (raw, value) in names {
            let name = settings::normalize_name(raw.split('.'));
            let error = |value: i32| SetSessionOptionsError { value };
            use session_option_value::OptionValue;
            let text = match value.option_value {
                None => {
                    self.settings.retain(|(n, _)| *n != name);
                    current = match self.apply(server) {
                        Ok(c) => c.unwrap_or_else(|| server.clone()),
                        Err(_) => server.clone(),
                    };
                    continue;
                }
                Some(OptionValue::StringValue(s)) => s,
                Some(OptionValue::BoolValue(b)) => b.to_string(),
                Some(OptionValue::Int64Value(i)) => i.to_string(),
                Some(OptionValue::DoubleValue(d)) => d.to_string(),
                Some(OptionValue::StringListValue(_)) => {
                    errors.insert(raw, error(INVALID_VALUE));
                    continue;
                }
            };
            // Checked against the session as it is now (the cross-field rules of the
            // lifecycle options), then kept.
            let mut scratch = current.clone();
            match settings::apply(&mut scratch, server, &name, Some(&text)) {
                Ok(()) => {
                    let canonical = canonical_value(&scratch, &name).unwrap_or(text);
                    current = scratch;
                    self.settings.retain(|(n, _)| *n != name);
                    if self.settings.len() < MAX_SETTINGS {
                        self.settings.push((name, canonical));
                    }
                }
                Err(SettingError::Invalid(_)) => {
                    errors.insert(raw, error(INVALID_VALUE));
                }
                Err(_) => {
                    errors.insert(raw, error(INVALID_NAME));
                }
            }
        }
        errors
    }

    /// Every setting a session may change, with its value in this session.
    pub fn options(&self, server: &ConfigOptions) -> HashMap<String, SessionOptionValue> {
        let config = self.apply(server).ok().flatten();
        let config = config.as_ref().unwrap_or(server);
        config
            .entries()
            .into_iter()
            .filter(|e| {
                e.key.starts_with("lifecycle.")
                    || settings::settable_datafusion().any(|n| n == e.key)
            })
            .map(|e| {
                let value = SessionOptionValue {
                    option_value: Some(session_option_value::OptionValue::StringValue(
                        e.value.unwrap_or_default(),
                    )),
                };
                (e.key, value)
            })
            .collect()
    }
}

/// A setting's value as the configuration shows it (so `on` is kept as `true`).
fn canonical_value(config: &ConfigOptions, name: &str) -> Option<String> {
    config
        .entries()
        .into_iter()
        .find(|e| e.key == name)
        .and_then(|e| e.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_option_value::OptionValue;

    fn server() -> ConfigOptions {
        lifecycle_udfs::with_options(
            datafusion::prelude::SessionConfig::new().with_target_partitions(4),
        )
        .options()
        .as_ref()
        .clone()
    }

    fn value(v: OptionValue) -> SessionOptionValue {
        SessionOptionValue {
            option_value: Some(v),
        }
    }

    #[test]
    fn options_are_checked_kept_and_round_trip_through_the_cookie() {
        let server = server();
        let mut s = Session::default();
        let errors = s.set(
            &server,
            HashMap::from([
                (
                    "lifecycle.churn_days".into(),
                    value(OptionValue::Int64Value(120)),
                ),
                (
                    "datafusion.execution.target_partitions".into(),
                    value(OptionValue::StringValue("2".into())),
                ),
                (
                    "datafusion.runtime.memory_limit".into(),
                    value(OptionValue::StringValue("20G".into())),
                ),
                (
                    "datafusion.execution.batch_size".into(),
                    value(OptionValue::Int64Value(1)),
                ),
                ("lifecycle.nope".into(), value(OptionValue::BoolValue(true))),
            ]),
        );
        assert_eq!(
            errors["datafusion.runtime.memory_limit"].value,
            INVALID_NAME
        );
        assert_eq!(errors["lifecycle.nope"].value, INVALID_NAME);
        assert_eq!(
            errors["datafusion.execution.batch_size"].value,
            INVALID_VALUE
        );
        assert_eq!(errors.len(), 3);
        let mut md = MetadataMap::new();
        md.insert(
            "cookie",
            format!("other=1; {COOKIE}={}", s.encode()).parse().unwrap(),
        );
        let back = Session::from_metadata(&md).unwrap();
        assert_eq!(back, s);
        let config = back.apply(&server).unwrap().unwrap();
        assert_eq!(config.execution.target_partitions, 2);
        assert_eq!(
            lifecycle_udfs::LifecycleOptions::from_config(&config).churn_days,
            120
        );
        let shown = back.options(&server);
        assert_eq!(
            shown["lifecycle.churn_days"].option_value,
            Some(OptionValue::StringValue("120".into()))
        );
        // An empty value gives back the server's value.
        let mut s = back;
        s.set(
            &server,
            HashMap::from([(
                "lifecycle.churn_days".into(),
                SessionOptionValue { option_value: None },
            )]),
        );
        assert_eq!(s.settings.len(), 1);
    }

    #[test]
    fn an_edited_cookie_is_checked_again() {
        let server = server();
        let forged = Session {
            settings: vec![(
                "datafusion.execution.target_partitions".into(),
                "100000".into(),
            )],
        };
        assert!(forged.apply(&server).is_err());
        let mut md = MetadataMap::new();
        md.insert("cookie", format!("{COOKIE}=!!!").parse().unwrap());
        assert!(Session::from_metadata(&md).is_err());
    }
}
