//! Aggregates over input sorted by their group keys run without a hash table
//! (`SortedGroupsAggregateExec`): the same answers as DataFusion's hash aggregate over the same
//! rows unsorted, whatever the batch size (groups split across batches in every way), the
//! partition count, NULL keys, several keys, filters and literal arguments.

use crate::common::{query, session};

const AS_OF: &str = "TIMESTAMP '2025-01-01 00:00:00'";

/// The questions, over `{t}`: each grouped by keys the sorted table is ordered by.
fn questions() -> Vec<String> {
    vec![
        "SELECT k, count(*), sum(amount), min(order_ts), max(order_ts), count(order_ts) FROM {t} GROUP BY k".into(),
        "SELECT k, count(*) FILTER (WHERE amount > 50), sum(amount) FILTER (WHERE k2 = 1), avg(amount) FROM {t} GROUP BY k".into(),
        "SELECT k, k2, count(*), max(amount) FROM {t} GROUP BY k, k2".into(),
        format!("SELECT k, lifecycle_stage(order_ts, {AS_OF}), churn_flag(order_ts, {AS_OF}) FROM {{t}} GROUP BY k"),
        format!("SELECT k, rfm_summary(order_ts, amount, {AS_OF}) FROM {{t}} GROUP BY k"),
        "SELECT k, first_value(amount ORDER BY order_ts, order_id), last_value(order_id ORDER BY order_ts, order_id) FROM {t} GROUP BY k".into(),
        "SELECT k, count(DISTINCT k2), array_agg(k2 ORDER BY order_ts, order_id) FROM {t} GROUP BY k".into(),
        "SELECT k, count(*) FROM {t} WHERE order_id < 0 GROUP BY k".into(),
        "SELECT k, count(*) FROM {t} WHERE order_id % 1000 = 7 GROUP BY k".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_groups_equal_the_hash_aggregate_whatever_the_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (sorted, shuffled) = (tmp.path().join("sorted"), tmp.path().join("shuffled"));
    // A quarter of the embedded sample's customers (about 4,000 rows), with a NULL key for every 13th customer and a second key.
    let ctx = session(1, &[]).await;
    let rows = "SELECT CASE WHEN customer_id % 13 = 0 THEN NULL ELSE customer_id END AS k, \
                customer_id % 3 AS k2, order_id, order_ts, amount FROM purchases WHERE customer_id % 4 = 1";
    for (dir, order) in [
        (&sorted, "k NULLS LAST, k2, order_ts, order_id"),
        (&shuffled, "order_id * 7919 % 10007"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("p.parquet");
        query(
            &ctx,
            &format!(
                "COPY ({rows} ORDER BY {order}) TO '{}' STORED AS PARQUET",
                file.display()
            ),
        )
        .await;
    }
    for partitions in [1, 4] {
        let ctx = session(partitions, &[]).await;
        query(
            &ctx,
            &format!(
                "CREATE EXTERNAL TABLE s STORED AS PARQUET LOCATION '{}' \
                 WITH ORDER (k ASC NULLS LAST, k2 ASC, order_ts ASC, order_id ASC)",
                sorted.display()
            ),
        )
        .await;
        query(
            &ctx,
            &format!(
                "CREATE EXTERNAL TABLE h STORED AS PARQUET LOCATION '{}'",
                shuffled.display()
            ),
        )
        .await;
        // With one partition the sorted table's aggregates run without a hash table; the
        // unsorted one's with DataFusion's.
        if partitions == 1 {
            for (i, q) in questions().iter().enumerate() {
                let plan = |t: &str| {
                    let ctx = ctx.clone();
                    let sql = format!("EXPLAIN {}", q.replace("{t}", t));
                    async move {
                        query(&ctx, &sql)
                            .await
                            .iter()
                            .map(|r| r.join(" "))
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                };
                let (s, h) = (plan("s").await, plan("h").await);
                assert!(!h.contains("SortedGroupsAggregateExec"), "{h}");
                // count(DISTINCT) has no groups accumulator for every type: either node is fine.
                if i != 6 {
                    assert!(s.contains("SortedGroupsAggregateExec"), "{q}\n{s}");
                }
            }
        }
        for batch in [1, 2, 7, 8192] {
            query(
                &ctx,
                &format!("SET datafusion.execution.batch_size = {batch}"),
            )
            .await;
            for q in questions() {
                let ask = |t: &str| {
                    let ctx = ctx.clone();
                    let sql = format!("SELECT * FROM ({}) ORDER BY 1, 2", q.replace("{t}", t));
                    async move { query(&ctx, &sql).await }
                };
                let (got, want) = (ask("s").await, ask("h").await);
                assert_eq!(
                    got, want,
                    "{partitions} partition(s), batches of {batch}: {q}"
                );
            }
        }
    }
}
