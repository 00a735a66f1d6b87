//! Both registration entry points install the same functions and options.

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use lifecycle_udfs::LifecycleStateBuilderExt;

use crate::common::query;

const Q: &str = "SELECT lifecycle_stage(column1, TIMESTAMP '2024-07-01 00:00:00') AS s,
                        period_diff('month', TIMESTAMP '2024-01-31 00:00:00', TIMESTAMP '2024-02-01 00:00:00') AS d
                 FROM (VALUES (TIMESTAMP '2024-01-03 00:00:00'))";

#[tokio::test]
async fn state_builder_and_context_registration_agree() {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_lifecycle()
        .build();
    let built = SessionContext::new_with_state(state);
    let ctx = SessionContext::new();
    lifecycle_udfs::register_all(&ctx).unwrap();
    for c in [&built, &ctx] {
        assert_eq!(query(c, Q).await, vec![vec!["at_risk", "1"]]);
        c.sql("SET lifecycle.churn_days = 170").await.unwrap();
        assert_eq!(query(c, Q).await, vec![vec!["churned", "1"]]);
        let err = c
            .sql("SELECT * FROM cohort_retention('nope', 'month')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("table 'nope' not found"), "{err}");
    }
}
