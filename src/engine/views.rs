//! SQL views that ship with the product (`sql/views/*.sql`, embedded at build time).

use datafusion::error::Result;
use datafusion::prelude::SessionContext;

/// (name, tables it needs, SQL).
pub const VIEWS: &[(&str, &[&str], &str)] = &[
    (
        "customer_stages",
        &["customers", "purchases"],
        include_str!("../../sql/views/customer_stages.sql"),
    ),
    (
        "customer_orders",
        &["customers", "purchases"],
        include_str!("../../sql/views/customer_orders.sql"),
    ),
    (
        "customer_events",
        &["customers", "events"],
        include_str!("../../sql/views/customer_events.sql"),
    ),
];

/// Registers every shipped view whose tables the session has (and that does not clash with a
/// table of the same name).
pub async fn register(ctx: &SessionContext) -> Result<()> {
    for (name, needs, sql) in VIEWS {
        if ctx.table_exist(*name)? {
            continue;
        }
        let mut present = true;
        for t in *needs {
            present &= ctx.table_exist(*t)?;
        }
        if present {
            // A view over the user's own tables may not plan (say `customers` and `purchases`
            // share a column name besides customer_id): then it is left out, with a warning, and
            // the session works without it.
            let plan = match ctx.state().create_logical_plan(sql).await {
                Ok(plan) => plan,
                Err(e) => {
                    log::warn!("view {name} is not available: {e}");
                    continue;
                }
            };
            let view = datafusion::catalog::view::ViewTable::new(plan, Some(sql.to_string()));
            ctx.register_table(*name, std::sync::Arc::new(view))?;
        }
    }
    Ok(())
}
