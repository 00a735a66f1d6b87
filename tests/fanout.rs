//! Hash aggregates fanned out over more partitions than the plan's (`FoldPartitionsExec` over
//! an aggregate over a wider hash repartition): the same answers as DataFusion's own plan, and
//! the same partitioning for what sits above (a partitioned hash join on the same keys), for
//! partition counts that are and are not powers of two, whatever the batch size.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use lifecycle::engine::fanout_aggregate::FanoutAggregates;

use crate::common::{explain, query, session};

const AS_OF: &str = "TIMESTAMP '2025-01-01 00:00:00'";

/// The questions over the embedded sample (`purchases` and `events`): per-customer aggregates
/// of every kind, two-phase ones (DISTINCT, grouping sets) and the table functions.
fn questions() -> Vec<String> {
    let steps = ["visit", "view", "cart", "checkout", "purchase"]
        .iter()
        .map(|s| format!("event_type = '{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        "SELECT customer_id, count(*), sum(amount), min(order_ts), max(order_ts) FROM purchases GROUP BY customer_id".into(),
        format!("SELECT customer_id, lifecycle_stage(order_ts, {AS_OF}), churn_flag(order_ts, {AS_OF}) FROM purchases GROUP BY customer_id"),
        format!("SELECT customer_id, rfm_summary(order_ts, amount, {AS_OF}), churn_risk(order_ts, {AS_OF}) FROM purchases GROUP BY customer_id"),
        format!("SELECT customer_id, window_funnel(86400, event_ts, {steps}) FROM events GROUP BY customer_id"),
        "SELECT customer_id, count(DISTINCT date_trunc('month', order_ts)), count(*) FROM purchases GROUP BY customer_id".into(),
        "SELECT customer_id % 7, date_part('year', order_ts), count(*), sum(amount) FROM purchases \
         GROUP BY ROLLUP (customer_id % 7, date_part('year', order_ts))".into(),
        "SELECT * FROM cohort_retention('purchases', 'month')".into(),
        format!("SELECT stage, count(*) FROM (SELECT lifecycle_stage(order_ts, {AS_OF}) AS stage FROM purchases GROUP BY customer_id) GROUP BY stage"),
        "SELECT customer_id, count(*) FROM purchases WHERE amount < 0 GROUP BY customer_id".into(),
        "SELECT customer_id, max(amount) FROM purchases GROUP BY customer_id ORDER BY max(amount) DESC, customer_id LIMIT 5".into(),
        "SELECT customer_id, count(*) FROM (SELECT customer_id FROM purchases UNION ALL SELECT customer_id FROM events) GROUP BY customer_id".into(),
    ]
}

/// Joins on the aggregates' keys, planned as partitioned hash joins: a fanned-out side must
/// keep exactly the partitioning the other side has.
const JOINS: [&str; 2] = [
    "SELECT a.customer_id, a.n, b.m FROM \
       (SELECT customer_id, count(*) AS n FROM purchases GROUP BY customer_id) a \
       JOIN (SELECT customer_id, max(amount) AS m FROM purchases GROUP BY customer_id) b \
       ON a.customer_id = b.customer_id",
    "SELECT p.customer_id, p.order_ts, p.amount, f.f FROM purchases p \
       JOIN (SELECT customer_id, min(order_ts) AS f FROM purchases GROUP BY customer_id) f \
       ON p.customer_id = f.customer_id",
];

/// `ctx` with the rule fanning every partitioned aggregate out to at least `partitions`.
fn fanned_out(ctx: &SessionContext, partitions: usize) -> SessionContext {
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_physical_optimizer_rule(Arc::new(FanoutAggregates {
            partitions,
            min_rows: 0,
            memory_limit: None,
        }))
        .build();
    SessionContext::new_with_state(state)
}

async fn sorted(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let mut rows = query(ctx, sql).await;
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanned_out_aggregates_equal_datafusions_plan() {
    // (plan partitions, fan-out asked, partitions the aggregates get)
    for (n, asked, k) in [(2, 8, 8), (3, 10, 12), (4, 64, 64)] {
        let plain = session(n, &[]).await;
        // Partitioned joins, not a broadcast of the small side.
        for s in [
            "SET datafusion.optimizer.hash_join_single_partition_threshold = 0",
            "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
        ] {
            query(&plain, s).await;
        }
        let fan = fanned_out(&plain, asked);
        let fold = format!("FoldPartitionsExec: {k} partitions into {n}");
        for q in questions().iter().map(String::as_str).chain(JOINS) {
            // The sample is small: the session's own rule leaves it alone.
            assert!(!explain(&plain, q).await.contains("FoldPartitions"), "{q}");
            let plan = explain(&fan, q).await;
            assert!(plan.contains(&fold), "{n} partitions: {q}\n{plan}");
        }
        for j in JOINS {
            let plan = explain(&fan, j).await;
            assert!(
                plan.contains("HashJoinExec: mode=Partitioned"),
                "{j}\n{plan}"
            );
        }
        // A limit pushed into the aggregate, and an error in one partition: it ends the query
        // (no hang while the other partitions are polled).
        let soft =
            "SELECT count(*) FROM (SELECT customer_id FROM purchases GROUP BY customer_id LIMIT 5)";
        assert_eq!(query(&fan, soft).await, vec![vec!["5".to_string()]]);
        let failing = "SELECT customer_id, sum(CAST(amount AS BIGINT) / (customer_id - customer_id)) \
                       FROM purchases GROUP BY customer_id";
        assert!(explain(&fan, failing).await.contains(&fold));
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            fan.sql(failing).await.unwrap().collect().await
        })
        .await
        .expect("the failing query ends")
        .unwrap_err();
        assert!(err.to_string().contains("Divide by zero"), "{err}");
        for batch in [3, 8192] {
            for ctx in [&plain, &fan] {
                query(
                    ctx,
                    &format!("SET datafusion.execution.batch_size = {batch}"),
                )
                .await;
            }
            for q in questions().iter().map(String::as_str).chain(JOINS) {
                let want = sorted(&plain, q).await;
                assert!(!want.is_empty() || q.contains("amount < 0"), "{q}");
                assert_eq!(
                    sorted(&fan, q).await,
                    want,
                    "{n} -> {k} partitions, batches of {batch}: {q}"
                );
            }
        }
    }
}

/// `ctx` without the fan-out rule: DataFusion's own plan.
fn without_fanout(ctx: &SessionContext) -> SessionContext {
    let state = ctx.state();
    let rules = state
        .physical_optimizers()
        .iter()
        .filter(|r| r.name() != "lifecycle_fanout_aggregates")
        .cloned()
        .collect();
    SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rules(rules)
            .build(),
    )
}

/// The product's session fans out an aggregate over a table of a million rows or more (as far
/// as its memory limit allows), and leaves smaller ones, and aggregates of a fanned-out
/// aggregate's groups, alone; the answers are DataFusion's own plan's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_fans_out_large_inputs_only() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.parquet");
    let small = tmp.path().join("small.parquet");
    let ctx = session(2, &[]).await;
    // 250,000 customers, one order a day each from 2024-01-01 on, some days skipped.
    for (file, rows) in [(&big, 1_100_000), (&small, 50_000)] {
        query(
            &ctx,
            &format!(
                "COPY (SELECT value % 250000 AS customer_id, value AS amount, \
                        to_timestamp_seconds(1704067200 + (value / 250000 + value % 3) * 86400) AS order_ts \
                        FROM generate_series(1, {rows})) \
                 TO '{}' STORED AS PARQUET",
                file.display()
            ),
        )
        .await;
    }
    let tables = [
        ("big", big.to_str().unwrap()),
        ("small", small.to_str().unwrap()),
    ];
    let ctx = session(2, &tables).await;
    let floor = "SELECT count(*), sum(n), sum(s) FROM (SELECT customer_id, count(*) AS n, sum(amount) AS s FROM {t} GROUP BY customer_id)";
    let plan = explain(&ctx, &floor.replace("{t}", "big")).await;
    assert!(
        plan.contains("FoldPartitionsExec: 128 partitions into 2"),
        "{plan}"
    );
    assert!(
        !explain(&ctx, &floor.replace("{t}", "small"))
            .await
            .contains("FoldPartitions")
    );
    // Sum of 1..=1,100,000 over 250,000 customers.
    assert_eq!(
        query(&ctx, &floor.replace("{t}", "big")).await,
        vec![vec![
            "250000".to_string(),
            "1100000".to_string(),
            "605000550000".to_string()
        ]]
    );
    // The whole-input aggregates (made single-phase by the functions' own rule, after this
    // one), and an aggregate over their groups, which is not fanned out again.
    let as_of = "TIMESTAMP '2024-02-01 00:00:00'";
    let questions = [
        format!(
            "SELECT count(r), round(sum(r), 6) FROM (SELECT churn_risk(order_ts, {as_of}) AS r FROM big GROUP BY customer_id)"
        ),
        format!(
            "SELECT sum(s.frequency), sum(s.recency), sum(s.t), round(sum(s.monetary_value), 2) FROM (SELECT rfm_summary(order_ts, amount, {as_of}) AS s FROM big GROUP BY customer_id)"
        ),
        format!(
            "SELECT stage, count(*) FROM (SELECT lifecycle_stage(order_ts, {as_of}) AS stage FROM big GROUP BY customer_id) GROUP BY stage ORDER BY stage"
        ),
    ];
    let plain = without_fanout(&ctx);
    for q in &questions {
        let plan = explain(&ctx, q).await;
        assert_eq!(plan.matches("FoldPartitionsExec").count(), 1, "{q}\n{plan}");
        assert!(
            plan.contains("FoldPartitionsExec: 128 partitions into 2"),
            "{plan}"
        );
        assert!(!explain(&plain, q).await.contains("FoldPartitions"));
        assert_eq!(query(&ctx, q).await, query(&plain, q).await, "{q}");
    }
    // Under a memory limit, as many partitions as leave each a share of at least 8 MiB.
    for (limit, k) in [(1usize << 30, 64), (256 << 20, 16), (16 << 20, 0)] {
        let limited = lifecycle::build_session(&lifecycle::SessionOptions {
            tables: tables
                .iter()
                .map(|(n, p)| lifecycle::TableSpec {
                    name: n.to_string(),
                    path: p.to_string(),
                })
                .collect(),
            memory_limit: Some(limit),
            target_partitions: Some(2),
            cluster: None,
        })
        .await
        .unwrap();
        let plan = explain(&limited, &questions[0]).await;
        if k == 0 {
            assert!(!plan.contains("FoldPartitions"), "{plan}");
        } else {
            assert!(
                plan.contains(&format!("FoldPartitionsExec: {k} partitions into 2")),
                "{limit}: {plan}"
            );
        }
        assert_eq!(
            query(&limited, &questions[0]).await,
            query(&plain, &questions[0]).await
        );
    }
}
