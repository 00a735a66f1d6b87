//! The Postgres listener's statement hooks, asked in this order before datafusion-postgres plans a
//! statement itself; the first that answers (or refuses) wins. Adding a hook is one file here and
//! one line in [`hooks`].

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;

use crate::server::limits::QueryLimits;

pub(super) mod queries;
pub(super) mod read_only;
pub(super) mod settings;

/// Every connection's hooks: read-only first (nothing that writes gets further), then the
/// connection's settings, our planning of queries and cursors, and datafusion-postgres's own
/// (`FETCH` / `CLOSE`, client settings and `SHOW`, transaction statements).
pub(super) fn hooks(server: Arc<ConfigOptions>, limits: QueryLimits) -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(read_only::ReadOnly),
        Arc::new(settings::Settings { server }),
        Arc::new(queries::Queries { limits }),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}
