//! Result columns the Postgres protocol has no type for, as JSON text.
//!
//! Scalars and lists of scalars have Postgres types (`bigint`, `double precision[]`, ...). A
//! STRUCT has none with its field names (an anonymous `record` loses them, and many clients
//! cannot read one), and nested lists and maps have none at all; such a column is sent as text
//! holding its JSON (`{"frequency":3,"recency":120.0}`, `[[1,2],[3]]`), by a projection added on
//! top of the query's plan, so the column's described type and its rows agree.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::engine::functions::to_json::to_json;

/// Whether the Postgres front end has a type for `dt` (arrow-pg's mapping): scalars, and lists
/// whose elements are scalars.
pub(crate) fn pg_native(dt: &DataType) -> bool {
    match dt {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => scalar(f.data_type()),
        DataType::Dictionary(_, v) => pg_native(v),
        other => scalar(other),
    }
}

fn scalar(dt: &DataType) -> bool {
    !matches!(
        dt,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
            | DataType::RunEndEncoded(..)
    ) && !matches!(dt, DataType::Dictionary(_, v) if !scalar(v))
}

/// `plan` with every column that has no Postgres type turned into JSON text (same names and
/// qualifiers); unchanged when every column has one.
pub(crate) fn with_json_columns(plan: LogicalPlan) -> Result<LogicalPlan> {
    if plan
        .schema()
        .fields()
        .iter()
        .all(|f| pg_native(f.data_type()))
    {
        return Ok(plan);
    }
    let exprs: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let col = Expr::Column(Column::from((qualifier, field)));
            if pg_native(field.data_type()) {
                col
            } else {
                Expr::ScalarFunction(ScalarFunction::new_udf(to_json(), vec![col]))
                    .alias_qualified(qualifier.cloned(), field.name())
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Fields};
    use std::sync::Arc;

    #[test]
    fn which_types_are_native() {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        assert!(pg_native(&DataType::Int64));
        assert!(pg_native(&list(DataType::Float64)));
        assert!(!pg_native(&list(list(DataType::Int64))));
        let st = DataType::Struct(Fields::from(vec![Field::new("a", DataType::Int64, true)]));
        assert!(!pg_native(&st));
        assert!(!pg_native(&list(st)));
    }
}
