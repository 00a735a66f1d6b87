//! `lifecycle.*` session options, a DataFusion config extension.
//!
//! ```sql
//! SET lifecycle.churn_days = 120;
//! SHOW lifecycle.churn_days;
//! ```
//!
//! Values are validated when set: every value must be a whole number >= 1, and
//! `at_risk_days` must stay below `churn_days` (lower `at_risk_days` first when shrinking both).

use std::any::Any;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ConfigOptions, ExtensionOptions};
use datafusion::common::{Result, plan_err};

/// Thresholds that decide a customer's lifecycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleOptions {
    /// Days since the last order after which a customer is `churned`.
    pub churn_days: u64,
    /// Days since the last order after which a customer is `at_risk`.
    pub at_risk_days: u64,
    /// Length in days of the window `(as_of - loyal_window_days, as_of]` counted for `loyal`.
    pub loyal_window_days: u64,
    /// Orders within the loyal window that make a customer `loyal`.
    pub loyal_min_orders: u64,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            churn_days: 180,
            at_risk_days: 90,
            loyal_window_days: 365,
            loyal_min_orders: 4,
        }
    }
}

const KEYS: [(&str, &str); 4] = [
    (
        "churn_days",
        "Days since the last order after which a customer is churned (default 180)",
    ),
    (
        "at_risk_days",
        "Days since the last order after which a customer is at_risk; must be below churn_days (default 90)",
    ),
    (
        "loyal_window_days",
        "Length in days of the window counted for loyal customers (default 365)",
    ),
    (
        "loyal_min_orders",
        "Orders within the loyal window that make a customer loyal (default 4)",
    ),
];

impl LifecycleOptions {
    /// The options in force for a session: its `lifecycle.*` extension, or the defaults.
    pub fn from_config(config: &ConfigOptions) -> Self {
        config
            .extensions
            .get::<LifecycleOptions>()
            .copied()
            .unwrap_or_default()
    }

    /// Checks the cross-field rules; every setter and every function that takes explicit
    /// thresholds goes through this.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("churn_days", self.churn_days),
            ("at_risk_days", self.at_risk_days),
            ("loyal_window_days", self.loyal_window_days),
            ("loyal_min_orders", self.loyal_min_orders),
        ] {
            if v == 0 {
                return plan_err!("lifecycle.{name} must be at least 1, got 0");
            }
        }
        if self.at_risk_days >= self.churn_days {
            return plan_err!(
                "lifecycle.at_risk_days ({}) must be less than lifecycle.churn_days ({}); \
                 when lowering both, lower at_risk_days first",
                self.at_risk_days,
                self.churn_days
            );
        }
        Ok(())
    }

    fn field_mut(&mut self, key: &str) -> Result<&mut u64> {
        Ok(match key {
            "churn_days" => &mut self.churn_days,
            "at_risk_days" => &mut self.at_risk_days,
            "loyal_window_days" => &mut self.loyal_window_days,
            "loyal_min_orders" => &mut self.loyal_min_orders,
            _ => {
                let valid: Vec<String> =
                    KEYS.iter().map(|(k, _)| format!("lifecycle.{k}")).collect();
                return plan_err!(
                    "unknown option 'lifecycle.{key}'; valid options are {}",
                    valid.join(", ")
                );
            }
        })
    }
}

impl ConfigExtension for LifecycleOptions {
    const PREFIX: &'static str = "lifecycle";
}

impl ExtensionOptions for LifecycleOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(*self)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = *self;
        let slot = next.field_mut(key)?;
        let trimmed = value.trim().trim_matches('\'');
        *slot = match trimmed.parse::<i64>() {
            Ok(v) if v >= 1 => v as u64,
            Ok(v) => return plan_err!("lifecycle.{key} must be a whole number >= 1, got {v}"),
            Err(_) => {
                return plan_err!("lifecycle.{key} must be a whole number >= 1, got '{value}'");
            }
        };
        next.validate()?;
        *self = next;
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let values = [
            self.churn_days,
            self.at_risk_days,
            self.loyal_window_days,
            self.loyal_min_orders,
        ];
        KEYS.iter()
            .zip(values)
            .map(|((k, doc), v)| ConfigEntry {
                key: format!("lifecycle.{k}"),
                value: Some(v.to_string()),
                description: doc,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates() {
        let mut o = LifecycleOptions::default();
        o.set("churn_days", "120").unwrap();
        assert_eq!(o.churn_days, 120);
        assert!(o.set("churn_days", "0").is_err());
        assert!(o.set("churn_days", "-3").is_err());
        assert!(o.set("churn_days", "abc").is_err());
        let e = o.set("churn_days", "90").unwrap_err().to_string();
        assert!(e.contains("at_risk_days (90) must be less than"), "{e}");
        assert_eq!(
            o.churn_days, 120,
            "a refused value leaves the option unchanged"
        );
        assert!(
            o.set("nope", "1")
                .unwrap_err()
                .to_string()
                .contains("lifecycle.churn_days")
        );
    }
}
