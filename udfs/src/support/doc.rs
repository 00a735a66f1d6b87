//! Documentation helpers: every function carries a [`Documentation`] with a SQL example, and
//! [`crate::function_docs`] renders them as docs/functions.md.

use datafusion::logical_expr::{DocSection, DocumentationBuilder};

pub const SECTION: DocSection = DocSection {
    include: true,
    label: "Lifecycle Functions",
    description: Some("Customer-lifecycle functions of lifecycle-udfs"),
};

pub fn scalar_doc(description: &str, syntax: &str, example: &str) -> DocumentationBuilder {
    DocumentationBuilder::new_with_details(SECTION, description, syntax)
        .with_sql_example(format!("```sql\n{example}\n```"))
}

pub use scalar_doc as aggregate_doc;
