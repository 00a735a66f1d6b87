//! Both registration entry points install the same functions and options.

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use lifecycle_udfs::LifecycleStateBuilderExt;

use crate::common::{explain, query};

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

/// Aggregates whose state keeps every row of a group run in one phase after a hash repartition
/// (the `lifecycle_single_phase_aggregates` rule), through both entry points; others keep
/// DataFusion's two phases; a table registered before `register_all` survives the state rebuild.
#[tokio::test]
async fn whole_input_aggregates_are_planned_in_one_phase() {
    use datafusion::prelude::SessionConfig;
    let config = || SessionConfig::new().with_target_partitions(4);
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config())
        .with_lifecycle()
        .build();
    let built = SessionContext::new_with_state(state);
    let ctx = SessionContext::new_with_config(config());
    ctx.sql("CREATE TABLE before_registration AS VALUES (1)")
        .await
        .unwrap();
    lifecycle_udfs::register_all(&ctx).unwrap();
    lifecycle_udfs::register_all(&ctx).unwrap();
    assert_eq!(
        query(&ctx, "SELECT count(*) FROM before_registration").await,
        vec![vec!["1"]]
    );
    let rules = |c: &SessionContext| {
        c.state()
            .physical_optimizers()
            .iter()
            .filter(|r| r.name() == lifecycle_udfs::single_phase::RULE_NAME)
            .count()
    };
    assert_eq!(rules(&ctx), 1, "registering twice adds the rule once");
    assert_eq!(rules(&built), 1);
    let table = "(SELECT column1 AS c, column2 AS ts FROM (VALUES (1, TIMESTAMP '2024-01-01 00:00:00'), (2, TIMESTAMP '2024-02-01 00:00:00')))";
    for c in [&built, &ctx] {
        let rfm = explain(c, &format!(
            "SELECT c, rfm_summary(ts, 1.0, TIMESTAMP '2025-01-01 00:00:00') FROM {table} GROUP BY c"
        ))
        .await;
        assert!(rfm.contains("mode=SinglePartitioned"), "{rfm}");
        assert!(!rfm.contains("mode=Partial"), "{rfm}");
        let floor = explain(c, &format!("SELECT c, count(*) FROM {table} GROUP BY c")).await;
        assert!(floor.contains("mode=Partial"), "{floor}");
        assert_eq!(
            query(
                c,
                &format!("SELECT c, rfm_summary(ts, 1.0, TIMESTAMP '2025-01-01 00:00:00')['t'] FROM {table} GROUP BY c ORDER BY c")
            )
            .await,
            vec![vec!["1", "366"], vec!["2", "335"]]
        );
    }
}
