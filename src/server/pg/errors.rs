//! Errors as Postgres clients see them: one line with a SQLSTATE that says what went wrong.

use super::*;

/// The error a result ends with when it was left unread and its slot given back.
pub(super) fn unread_error(idle: std::time::Duration) -> PgWireError {
    user_error(
        "57014",
        format!(
            "canceling statement: its result was left unread for {} s and its slot given back \
             (--idle-result-timeout)",
            idle.as_secs()
        ),
    )
}

/// The error a stopped query ends with (SQLSTATE 57014, as PostgreSQL's).
pub(super) fn stop_error(why: Stop) -> PgWireError {
    let message = match why {
        Stop::Cancel => "canceling statement due to user request",
        Stop::Gone => "canceling statement: the client disconnected",
        Stop::Timeout => "canceling statement due to statement timeout",
    };
    user_error("57014", message.into())
}

pub(super) fn shutting_down() -> PgWireError {
    user_error("57P01", "the server is shutting down".into())
}

pub(super) fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

pub(super) fn api(e: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Errors as one line with a SQLSTATE for what went wrong.
pub(super) struct PgErrors {
    pub(super) limits: QueryLimits,
}

impl ErrorHandler for PgErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(_) = error {
            // PostgreSQL's wording, with the user of the startup message (SCRAM's own user
            // field is empty: libpq sends the name at startup only).
            let user = client.metadata().get("user").cloned().unwrap_or_default();
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!("password authentication failed for user \"{user}\""),
            )));
            return;
        }
        let PgWireError::ApiError(inner) = error else {
            return;
        };
        let (code, message) = if let Some(e) = inner.downcast_ref::<DataFusionError>() {
            let code = sqlstate(e);
            let mut message = error_line(e);
            if code == "53200"
                && let Some(note) = self.limits.memory_note()
            {
                message = format!("{message} ({note})");
            }
            (code, message)
        } else if let Some(e) =
            inner.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>()
        {
            ("42601", e.to_string())
        } else {
            ("XX000", inner.to_string())
        };
        *error = user_error(code, message);
    }
}

/// The SQLSTATE of a DataFusion error.
pub(super) fn sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(m) if m.contains("table") && m.contains("not found") => "42P01",
        DataFusionError::Plan(m) if m.contains("function") => "42883",
        DataFusionError::Plan(_) => "42000",
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => "22000",
        _ => "XX000",
    }
}
