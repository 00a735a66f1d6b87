//! Aggregates over input sorted by their group keys run without a hash table
//! (`SortedGroupsAggregateExec`), and `sessionize` over input sorted by its partition without
//! per-partition state (`SortedSessionizeExec`): the same answers as DataFusion's operators over
//! the same rows unsorted, whatever the batch size (groups and partitions split across batches in
//! every way), the partition count, NULL keys, several keys, filters and literal arguments.

use crate::common::{explain, query, session};

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

/// Writes the rows twice, sorted by (k, k2, order_ts, order_id) in `sorted` and shuffled in
/// `shuffled`: a quarter of the embedded sample's customers (about 4,000 rows), with a NULL key
/// for every 13th customer, a second key and a NULL time for every 17th order.
async fn sorted_and_shuffled(sorted: &std::path::Path, shuffled: &std::path::Path) {
    let ctx = session(1, &[]).await;
    let rows = "SELECT CASE WHEN customer_id % 13 = 0 THEN NULL ELSE customer_id END AS k, \
                customer_id % 3 AS k2, order_id, \
                CASE WHEN order_id % 17 = 0 THEN NULL ELSE order_ts END AS order_ts, amount \
                FROM purchases WHERE customer_id % 4 = 1";
    for (dir, order) in [
        (sorted, "k NULLS LAST, k2, order_ts NULLS LAST, order_id"),
        (shuffled, "order_id * 7919 % 10007"),
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
}

/// A session with `s` (declared sorted) and `h` (not), at `partitions` partitions.
async fn tables(
    partitions: usize,
    sorted: &std::path::Path,
    shuffled: &std::path::Path,
) -> datafusion::prelude::SessionContext {
    let ctx = session(partitions, &[]).await;
    query(
        &ctx,
        &format!(
            "CREATE EXTERNAL TABLE s STORED AS PARQUET LOCATION '{}' \
             WITH ORDER (k ASC NULLS LAST, k2 ASC, order_ts ASC NULLS LAST, order_id ASC)",
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
    ctx
}

/// Session numbers in plain SQL, by their definition: within each partition (`keys`) in time
/// order, 1 + the number of gaps longer than `gap_s` seconds so far; NULL for a NULL time.
/// (In microseconds: DataFusion 55 compares a duration with an INTERVAL field by field, so
/// `ts - prev > INTERVAL '30 days'` is false for a gap of 147 days.)
fn plain_sessions(keys: &str, gap_s: i64) -> String {
    let gap_us = gap_s * 1_000_000;
    format!(
        "SELECT order_id, CASE WHEN order_ts IS NULL THEN NULL ELSE \
           sum(CASE WHEN prev IS NULL OR CAST(order_ts AS BIGINT) - CAST(prev AS BIGINT) > {gap_us} \
           THEN 1 ELSE 0 END) \
           OVER (PARTITION BY {keys} ORDER BY order_ts, order_id ROWS UNBOUNDED PRECEDING) END AS s \
         FROM (SELECT {keys}, order_id, order_ts, \
               lag(order_ts) OVER (PARTITION BY {keys} ORDER BY order_ts, order_id) AS prev FROM h)"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_sessions_equal_their_definition_whatever_the_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (sorted, shuffled) = (tmp.path().join("sorted"), tmp.path().join("shuffled"));
    sorted_and_shuffled(&sorted, &shuffled).await;
    // (sessionize, the plain-SQL definition), each giving (order_id, session).
    let questions = [
        (
            "SELECT order_id, sessionize(order_ts, INTERVAL '30 days') OVER (PARTITION BY k ORDER BY order_ts) FROM {t}",
            plain_sessions("k", 30 * 86400),
        ),
        (
            "SELECT order_id, sessionize(order_ts, 86400) OVER (PARTITION BY k ORDER BY order_ts) FROM {t}",
            plain_sessions("k", 86400),
        ),
        (
            "SELECT order_id, sessionize(order_ts, INTERVAL '7 days') OVER (PARTITION BY k, k2 ORDER BY order_ts) FROM {t}",
            plain_sessions("k, k2", 7 * 86400),
        ),
    ];
    // Two windows in one operator, and beside another window function (in an operator of its
    // own, DataFusion's): the sorted and the unsorted table agree.
    let pairs = [
        "SELECT order_id, sessionize(order_ts, INTERVAL '30 days') OVER (PARTITION BY k ORDER BY order_ts), \
                sessionize(order_ts, 86400) OVER (PARTITION BY k ORDER BY order_ts) FROM {t}",
        "SELECT order_id, sessionize(order_ts, INTERVAL '30 days') OVER (PARTITION BY k ORDER BY order_ts), \
                lag(order_id) OVER (PARTITION BY k ORDER BY order_ts, order_id) FROM {t}",
    ];
    for partitions in [1, 4] {
        let ctx = tables(partitions, &sorted, &shuffled).await;
        if partitions == 1 {
            // Sorted input (the declared order, or DataFusion's sort of the other table):
            // sessionize alone runs without per-partition state.
            for (q, _) in &questions {
                for t in ["s", "h"] {
                    let p = explain(&ctx, &q.replace("{t}", t)).await;
                    assert!(p.contains("SortedSessionizeExec"), "{q}\n{p}");
                }
            }
        }
        for batch in [1, 2, 7, 8192] {
            query(
                &ctx,
                &format!("SET datafusion.execution.batch_size = {batch}"),
            )
            .await;
            let ordered = |sql: String| {
                let ctx = ctx.clone();
                async move { query(&ctx, &format!("SELECT * FROM ({sql}) ORDER BY order_id")).await }
            };
            for (q, want) in &questions {
                assert_eq!(
                    ordered(q.replace("{t}", "s")).await,
                    ordered(want.clone()).await,
                    "{partitions} partition(s), batches of {batch}: {q}"
                );
            }
            for q in pairs {
                assert_eq!(
                    ordered(q.replace("{t}", "s")).await,
                    ordered(q.replace("{t}", "h")).await,
                    "{partitions} partition(s), batches of {batch}: {q}"
                );
            }
        }
        // Out of time order (descending): an error, not numbers.
        let desc =
            "SELECT sessionize(order_ts, 60) OVER (PARTITION BY k ORDER BY order_ts DESC) FROM s";
        let err = ctx
            .sql(desc)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in time order"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_groups_equal_the_hash_aggregate_whatever_the_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (sorted, shuffled) = (tmp.path().join("sorted"), tmp.path().join("shuffled"));
    sorted_and_shuffled(&sorted, &shuffled).await;
    for partitions in [1, 4] {
        let ctx = tables(partitions, &sorted, &shuffled).await;
        // With one partition the sorted table's aggregates run without a hash table; the
        // unsorted one's with DataFusion's.
        if partitions == 1 {
            for (i, q) in questions().iter().enumerate() {
                let s = explain(&ctx, &q.replace("{t}", "s")).await;
                let h = explain(&ctx, &q.replace("{t}", "h")).await;
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
