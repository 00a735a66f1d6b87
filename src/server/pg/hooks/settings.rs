//! The connection's own settings: every `SET`, `RESET` and `SHOW` of a `lifecycle.*` or
//! `datafusion.*` name, quoted or not, in any case, is answered here against the server's table of
//! settable settings ([`crate::server::settings`]); none reaches DataFusion's own `SET`
//! (datafusion-postgres falls back to it and ignores its errors, which let quoted names through and
//! turned refused values into silent no-ops). The Postgres client settings datafusion-postgres
//! keeps (`statement_timeout`, `DateStyle`, ...) are passed to it under their normalised name; any
//! other `SET` a client sends on connect is accepted and changes nothing, as PostgreSQL's drivers
//! expect. Settings live in the connection's metadata, from which every statement's session is built.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, Reset, Set, Statement, UnaryOperator, Value,
};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;

use crate::server::pg::{api, user_error};
use crate::server::settings::{self, SettingError};

/// The Postgres client settings datafusion-postgres keeps per connection (its `SetShowHook`
/// answers them without DataFusion).
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// `lifecycle.*` / `datafusion.*` settings per connection (see the module docs).
pub(in crate::server::pg) struct Settings {
    /// The server's configuration: the bound of some settings and the value of `DEFAULT`.
    pub(in crate::server::pg) server: Arc<ConfigOptions>,
}

/// What [`Settings`] answers itself.
#[derive(Debug)]
enum Own {
    /// Settings of ours, each `(name, value)` (`None`: the server's value), applied together.
    Set(Vec<(String, Option<String>)>),
    /// `RESET ALL`: every setting of ours back to the server's value.
    ResetAll,
    /// `SET TIME ZONE ...` / `SET timezone = ...`: the zone, `None` for LOCAL / DEFAULT.
    TimeZone(Option<String>),
    /// `SHOW lifecycle.x`, `SHOW datafusion.x`, `SHOW ALL`: DataFusion's answer, by this name.
    Show(String),
    /// A Postgres client setting, rewritten with its normalised name for datafusion-postgres.
    Client(Box<Statement>),
    /// Any other `SET`: accepted, and nothing changes.
    Ignore,
}

fn setting_error(e: SettingError) -> PgWireError {
    user_error(e.sqlstate(), e.message().to_string())
}

/// A setting's name from an object name, normalised (quoted or not, any case).
fn name_of(variable: &ObjectName) -> String {
    settings::normalize_name(
        variable
            .0
            .iter()
            .map(|p| p.as_ident().map_or("", |i: &Ident| i.value.as_str())),
    )
}

/// The text of a `SET` value; `None` for `DEFAULT`.
fn value_text(name: &str, values: &[Expr]) -> PgWireResult<Option<String>> {
    let [value] = values else {
        return Err(user_error(
            "22023",
            format!("SET {name} takes one value, got {}", values.len()),
        ));
    };
    Ok(match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            Value::Null => {
                return Err(user_error("22023", format!("SET {name} cannot be NULL")));
            }
            other => Some(other.to_string()),
        },
        Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default") => None,
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => Some(format!("-{}", v.value)),
            other => Some(format!("-{other}")),
        },
        other => Some(other.to_string()),
    })
}

fn time_zone_value(value: &Expr) -> PgWireResult<Option<String>> {
    let zone = match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.to_string(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    };
    if zone.eq_ignore_ascii_case("local") || zone.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    // The zone must be one Arrow can apply (an IANA name, or an offset such as +02:00).
    zone.parse::<datafusion::arrow::array::timezone::Tz>()
        .map_err(|e| user_error("22023", format!("invalid time zone '{zone}': {e}")))?;
    Ok(Some(zone))
}

/// One assignment `name = values`, classified.
fn assignment(variable: &ObjectName, values: &[Expr]) -> PgWireResult<Own> {
    let name = name_of(variable);
    if name == "timezone" || name == "time.zone" || name == "time zone" {
        let value = values
            .first()
            .ok_or_else(|| user_error("42601", "SET timezone needs a value".into()))?;
        return Ok(Own::TimeZone(time_zone_value(value)?));
    }
    if settings::is_ours(&name) {
        let value = value_text(&name, values)?;
        return Ok(Own::Set(vec![(name, value)]));
    }
    if CLIENT_SETTINGS.contains(&name.as_str()) {
        return Ok(Own::Client(Box::new(Statement::Set(
            Set::SingleAssignment {
                scope: None,
                hivevar: false,
                variable: ObjectName::from(vec![Ident::new(name)]),
                values: values.to_vec(),
            },
        ))));
    }
    Ok(Own::Ignore)
}

/// What [`Settings`] answers itself, if anything.
fn own(s: &Statement) -> PgWireResult<Option<Own>> {
    let set = match s {
        Statement::Set(set) => set,
        Statement::Reset(r) => {
            return Ok(Some(match &r.reset {
                Reset::ALL => Own::ResetAll,
                Reset::ConfigurationParameter(name) => {
                    let name = name_of(name);
                    if settings::is_ours(&name) {
                        Own::Set(vec![(name, None)])
                    } else {
                        Own::Ignore
                    }
                }
            }));
        }
        Statement::ShowVariable { variable } => {
            let name = settings::normalize_name(variable.iter().map(|i| i.value.as_str()));
            let ours = name == "all" || settings::is_ours(&name);
            return Ok(ours.then_some(Own::Show(name)));
        }
        _ => return Ok(None),
    };
    Ok(Some(match set {
        Set::SetTimeZone { value, .. } => Own::TimeZone(time_zone_value(value)?),
        Set::SingleAssignment {
            variable, values, ..
        } => assignment(variable, values)?,
        Set::MultipleAssignments { assignments } => {
            let mut ours = vec![];
            for a in assignments {
                match assignment(&a.name, std::slice::from_ref(&a.value))? {
                    Own::Set(mut s) => ours.append(&mut s),
                    Own::Ignore => {}
                    _ => {
                        return Err(user_error(
                            "0A000",
                            format!("SET {} cannot be combined with other settings", a.name),
                        ));
                    }
                }
            }
            Own::Set(ours)
        }
        Set::ParenthesizedAssignments { variables, values } => {
            if variables.len() != values.len() {
                return Err(user_error(
                    "42601",
                    "SET (...) = (...) needs as many values as names".into(),
                ));
            }
            let mut ours = vec![];
            for (v, x) in variables.iter().zip(values) {
                match assignment(v, std::slice::from_ref(x))? {
                    Own::Set(mut s) => ours.append(&mut s),
                    Own::Ignore => {}
                    _ => {
                        return Err(user_error(
                            "0A000",
                            format!("SET {v} cannot be combined with other settings"),
                        ));
                    }
                }
            }
            Own::Set(ours)
        }
        // SET ROLE, SET NAMES, SET TRANSACTION, SET SESSION AUTHORIZATION, ...: accepted and
        // ignored, unless they name one of the product's namespaces.
        other => {
            let text = other.to_string().to_lowercase();
            if text.contains("datafusion") || text.contains("lifecycle") {
                return Err(user_error(
                    "42501",
                    format!("{other}: only SET name = value can change a setting"),
                ));
            }
            Own::Ignore
        }
    }))
}

/// The key of pgwire's per-connection metadata that holds the connection's settings.
const SETTINGS_KEY: &str = "lifecycle:settings";

/// A connection's settings, `(name, value)` in the order they were set.
pub(in crate::server::pg) fn connection_settings(
    metadata: &std::collections::HashMap<String, String>,
) -> Vec<(String, String)> {
    metadata
        .get(SETTINGS_KEY)
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn store_settings(
    metadata: &mut std::collections::HashMap<String, String>,
    kept: &[(String, String)],
) {
    if kept.is_empty() {
        metadata.remove(SETTINGS_KEY);
    } else {
        let text: String = kept.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
        metadata.insert(SETTINGS_KEY.into(), text);
    }
}

/// The connection's settings after `list` (each checked, in order, against `current`, the
/// configuration with the settings so far): a value replaces the setting's earlier one, `None`
/// (DEFAULT, RESET) removes it. An error leaves the settings as they were.
fn applied(
    current: &ConfigOptions,
    server: &ConfigOptions,
    mut kept: Vec<(String, String)>,
    list: &[(String, Option<String>)],
) -> PgWireResult<Vec<(String, String)>> {
    let mut config = current.clone();
    for (name, value) in list {
        settings::apply(&mut config, server, name, value.as_deref()).map_err(setting_error)?;
        kept.retain(|(n, _)| n != name);
        if value.is_some() {
            let shown = config
                .entries()
                .into_iter()
                .find(|e| e.key == *name)
                .and_then(|e| e.value)
                .unwrap_or_default();
            if shown.contains('\n') {
                return Err(user_error("22023", format!("invalid value for {name}")));
            }
            kept.push((name.clone(), shown));
        }
    }
    Ok(kept)
}

/// An empty result plan for statements answered without rows.
fn no_rows() -> PgWireResult<LogicalPlan> {
    DFSchema::try_from(Schema::empty())
        .map(|schema| {
            LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(schema),
            })
        })
        .map_err(api)
}

impl Settings {
    /// Applies settings of ours to the connection, all or none: checked against the
    /// statement's session (which holds the connection's settings so far), then kept in the
    /// connection's metadata, where every later statement's session is built from.
    fn apply(
        &self,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
        list: &[(String, Option<String>)],
    ) -> PgWireResult<()> {
        let current = ctx.state_ref().read().config_options().as_ref().clone();
        let kept = connection_settings(client.metadata());
        let kept = applied(&current, &self.server, kept, list)?;
        store_settings(client.metadata_mut(), &kept);
        Ok(())
    }

    async fn answer(
        &self,
        own: Own,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
        extended: Option<(&LogicalPlan, &ParamValues)>,
    ) -> PgWireResult<Response> {
        match own {
            Own::Set(list) => {
                self.apply(ctx, client, &list)?;
                Ok(Response::Execution(Tag::new("SET")))
            }
            Own::ResetAll => {
                store_settings(client.metadata_mut(), &[]);
                client.metadata_mut().remove("timezone");
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Own::TimeZone(zone) => {
                let name = "datafusion.execution.time_zone".to_string();
                self.apply(ctx, client, &[(name, zone.clone())])?;
                let shown = zone.unwrap_or_else(|| "UTC".into());
                // datafusion-postgres's SHOW TIME ZONE reads the connection's metadata.
                client
                    .metadata_mut()
                    .insert("timezone".into(), shown.clone());
                client
                    .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        "TimeZone".into(),
                        shown,
                    )))
                    .await?;
                Ok(Response::Execution(Tag::new("SET")))
            }
            Own::Show(name) => {
                let df = ctx
                    .sql_with_options(&format!("SHOW {name}"), settings_only())
                    .await
                    .map_err(api)?;
                Ok(Response::Query(
                    encode_dataframe(df, &Format::UnifiedText, None).await?,
                ))
            }
            Own::Client(statement) => {
                let answer = match extended {
                    None => {
                        SetShowHook
                            .handle_simple_query(&statement, ctx, client)
                            .await
                    }
                    Some((plan, params)) => {
                        SetShowHook
                            .handle_extended_query(&statement, plan, params, ctx, client)
                            .await
                    }
                };
                answer.unwrap_or_else(|| Ok(Response::Execution(Tag::new("SET"))))
            }
            Own::Ignore => Ok(Response::Execution(Tag::new("SET"))),
        }
    }
}

/// Statements `SHOW` runs as: no DDL or DML.
fn settings_only() -> datafusion::prelude::SQLOptions {
    datafusion::prelude::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(true)
}

#[async_trait]
impl QueryHook for Settings {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match own(statement) {
            Err(e) => Some(Err(e)),
            Ok(None) => None,
            Ok(Some(o)) => Some(self.answer(o, ctx, client, None).await),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match own(statement) {
            Err(e) => Some(Err(e)),
            Ok(None) => None,
            Ok(Some(Own::Show(name))) => Some(
                ctx.state()
                    .create_logical_plan(&format!("SHOW {name}"))
                    .await
                    .map_err(api),
            ),
            Ok(Some(_)) => Some(no_rows()),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match own(statement) {
            Err(e) => Some(Err(e)),
            Ok(None) => None,
            Ok(Some(o)) => Some(self.answer(o, ctx, client, Some((plan, params))).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn parse(sql: &str) -> Statement {
        PostgresCompatibilityParser::new()
            .parse(sql)
            .unwrap()
            .remove(0)
    }

    fn code(e: PgWireError) -> String {
        match e {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_are_classified_after_normalising_their_names() {
        let set = |sql: &str| match own(&parse(sql)) {
            Ok(Some(Own::Set(list))) => list,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            set("SET lifecycle.churn_days = 120"),
            vec![("lifecycle.churn_days".into(), Some("120".into()))]
        );
        assert_eq!(
            set("SET \"lifecycle.churn_days\" = -5"),
            vec![("lifecycle.churn_days".into(), Some("-5".into()))]
        );
        assert_eq!(
            set("SET \"datafusion.runtime.memory_limit\" = '20G'"),
            vec![("datafusion.runtime.memory_limit".into(), Some("20G".into()))]
        );
        assert_eq!(
            set("SET \"datafusion\".runtime.temp_directory = '/x'"),
            vec![(
                "datafusion.runtime.temp_directory".into(),
                Some("/x".into())
            )]
        );
        assert_eq!(
            set("SET DataFusion.Execution.BATCH_SIZE TO DEFAULT"),
            vec![("datafusion.execution.batch_size".into(), None)]
        );
        assert_eq!(
            set("RESET \"lifecycle.churn_days\""),
            vec![("lifecycle.churn_days".into(), None)]
        );
        assert!(matches!(own(&parse("RESET ALL")), Ok(Some(Own::ResetAll))));
        assert!(matches!(
            own(&parse("SET extra_float_digits = 3")),
            Ok(Some(Own::Client(_)))
        ));
        assert!(matches!(
            own(&parse("SET \"statement_timeout\" = '5s'")),
            Ok(Some(Own::Client(_)))
        ));
        assert!(matches!(
            own(&parse("SET client_min_messages = warning")),
            Ok(Some(Own::Ignore))
        ));
        assert!(matches!(
            own(&parse("SET TIME ZONE 'America/New_York'")),
            Ok(Some(Own::TimeZone(Some(z)))) if z == "America/New_York"
        ));
        assert!(matches!(
            own(&parse("SET TIME ZONE LOCAL")),
            Ok(Some(Own::TimeZone(None)))
        ));
        assert!(own(&parse("SET TIME ZONE 'Mars/Olympus'")).is_err());
        assert!(matches!(
            own(&parse("SHOW \"lifecycle.churn_days\"")),
            Ok(Some(Own::Show(n))) if n == "lifecycle.churn_days"
        ));
        assert!(matches!(own(&parse("SHOW search_path")), Ok(None)));
        assert_eq!(
            code(own(&parse("SET lifecycle.churn_days = NULL")).unwrap_err()),
            "22023"
        );
    }

    #[test]
    fn refused_and_invalid_settings_are_errors_and_change_nothing() {
        let server = lifecycle_udfs::with_options(
            datafusion::prelude::SessionConfig::new().with_target_partitions(2),
        )
        .options()
        .as_ref()
        .clone();
        let kept = vec![("lifecycle.churn_days".to_string(), "150".to_string())];
        for (sql, want) in [
            ("SET \"datafusion.runtime.memory_limit\" = '20G'", "42501"),
            (
                "SET \"datafusion\".runtime.temp_directory = '/tmp/x'",
                "42501",
            ),
            (
                "SET \"datafusion.sql_parser.recursion_limit\" = 100000",
                "42501",
            ),
            ("SET \"lifecycle.churn_days\" = -5", "22023"),
            (
                "SET datafusion.execution.target_partitions = 100000",
                "22023",
            ),
            ("SET lifecycle.no_such_thing = 1", "42704"),
            // Postgres reads this as one setting with two values: refused, nothing set.
            (
                "SET lifecycle.churn_days = 200, datafusion.runtime.memory_limit = '1G'",
                "22023",
            ),
        ] {
            let result = match own(&parse(sql)) {
                Ok(Some(Own::Set(list))) => applied(&server, &server, kept.clone(), &list),
                Err(e) => Err(e),
                other => panic!("{sql}: {other:?}"),
            };
            assert_eq!(code(result.unwrap_err()), want, "{sql}");
        }
        let Ok(Some(Own::Set(list))) = own(&parse("SET \"LIFECYCLE\".CHURN_DAYS = 120")) else {
            panic!()
        };
        let after = applied(&server, &server, kept.clone(), &list).unwrap();
        assert_eq!(
            after,
            vec![("lifecycle.churn_days".to_string(), "120".to_string())]
        );
        // RESET removes it; the settings round-trip through the connection's metadata.
        let Ok(Some(Own::Set(list))) = own(&parse("RESET lifecycle.churn_days")) else {
            panic!()
        };
        assert!(
            applied(&server, &server, after.clone(), &list)
                .unwrap()
                .is_empty()
        );
        let mut md = std::collections::HashMap::new();
        store_settings(&mut md, &after);
        assert_eq!(connection_settings(&md), after);
        store_settings(&mut md, &[]);
        assert!(md.is_empty());
    }
}
