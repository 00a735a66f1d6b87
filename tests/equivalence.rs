//! The lifecycle functions against the same questions written in plain SQL, on generated data
//! spread over several Parquet files, with `target_partitions` 1 and 4; and the same answers from
//! one file and from several.

use std::path::Path;

use lifecycle_sample::generate::parse_date_us;

use crate::common::{query, session};

const DAY_US: i64 = 86_400_000_000;

/// The dense generated data (see [`crate::common::generate_dense`]) with this file's seed.
fn generate(dir: &Path, customers: u64, files: u64) {
    crate::common::generate_dense(dir, customers, files, 11);
}

fn stage_sql(as_of: &str) -> String {
    let a = parse_date_us(as_of).unwrap();
    format!(
        "WITH o AS (SELECT customer_id, CAST(order_ts AS BIGINT) AS t FROM purchases
                    WHERE order_ts <= TIMESTAMP '{as_of} 00:00:00'),
         r AS (SELECT customer_id, t, row_number() OVER (PARTITION BY customer_id ORDER BY t DESC) AS rn FROM o),
         a AS (SELECT customer_id, count(*) AS n, max(t) AS last_t, max(CASE WHEN rn = 2 THEN t END) AS prev_t,
                      sum(CASE WHEN t > {a} - 365 * {DAY_US} THEN 1 ELSE 0 END) AS nw
               FROM r GROUP BY customer_id)
         SELECT c.customer_id, CASE
           WHEN a.n IS NULL THEN 'prospect'
           WHEN {a} - a.last_t > 180 * {DAY_US} THEN 'churned'
           WHEN {a} - a.last_t > 90 * {DAY_US} THEN 'at_risk'
           WHEN a.n >= 2 AND a.last_t - a.prev_t > 180 * {DAY_US} THEN 'reactivated'
           WHEN a.n = 1 THEN 'new'
           WHEN a.nw >= 4 THEN 'loyal'
           ELSE 'repeat' END AS stage,
           a.n IS NOT NULL AND {a} - a.last_t > 180 * {DAY_US} AS churned
         FROM customers c LEFT JOIN a ON a.customer_id = c.customer_id ORDER BY 1"
    )
}

const STAGE_FN: &str =
    "SELECT c.customer_id, lifecycle_stage(p.order_ts, TIMESTAMP '2024-03-31 00:00:00') AS stage,
        churn_flag(p.order_ts, TIMESTAMP '2024-03-31 00:00:00') AS churned
 FROM customers c LEFT JOIN purchases p ON p.customer_id = c.customer_id
 GROUP BY c.customer_id ORDER BY 1";

fn cohort_sql(g: &str) -> String {
    let period = match g {
        "month" => "CAST((date_part('year', b.order_ts) * 12 + date_part('month', b.order_ts))
                         - (date_part('year', f.cohort) * 12 + date_part('month', f.cohort)) AS BIGINT)",
        "week" => "CAST((CAST(date_trunc('week', b.order_ts) AS BIGINT) - CAST(f.cohort AS BIGINT)) / (7 * 86400000000) AS BIGINT)",
        "year" => "CAST(date_part('year', b.order_ts) - date_part('year', f.cohort) AS BIGINT)",
        _ => unreachable!(),
    };
    format!(
        "WITH f AS (SELECT customer_id, date_trunc('{g}', min(order_ts)) AS cohort FROM purchases GROUP BY customer_id),
         s AS (SELECT cohort, count(*) AS n FROM f GROUP BY cohort),
         a AS (SELECT f.cohort, {period} AS period, b.customer_id, b.amount
               FROM purchases b JOIN f ON b.customer_id = f.customer_id)
         SELECT a.cohort, a.period, s.n, count(DISTINCT a.customer_id), round(sum(a.amount), 4)
         FROM a JOIN s ON a.cohort = s.cohort GROUP BY 1, 2, 3 ORDER BY 1, 2"
    )
}

fn cohort_fn(g: &str) -> String {
    format!(
        "SELECT cohort, period, cohort_size, active_customers, round(revenue, 4)
         FROM cohort_retention('purchases', '{g}') WHERE active_customers > 0 ORDER BY 1, 2"
    )
}

const RETENTION_FN: &str = "SELECT sum(r[1]), sum(r[2]), sum(r[3]) FROM (
   SELECT retention(order_ts < TIMESTAMP '2023-01-01 00:00:00',
                    order_ts >= TIMESTAMP '2023-01-01 00:00:00' AND order_ts < TIMESTAMP '2024-01-01 00:00:00',
                    order_ts >= TIMESTAMP '2024-01-01 00:00:00') AS r
   FROM purchases GROUP BY customer_id)";

const RETENTION_SQL: &str = "SELECT sum(CASE WHEN c1 THEN 1 ELSE 0 END), sum(CASE WHEN c1 AND c2 THEN 1 ELSE 0 END),
        sum(CASE WHEN c1 AND c3 THEN 1 ELSE 0 END) FROM (
   SELECT bool_or(order_ts < TIMESTAMP '2023-01-01 00:00:00') AS c1,
          bool_or(order_ts >= TIMESTAMP '2023-01-01 00:00:00' AND order_ts < TIMESTAMP '2024-01-01 00:00:00') AS c2,
          bool_or(order_ts >= TIMESTAMP '2024-01-01 00:00:00') AS c3
   FROM purchases GROUP BY customer_id)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_equal_plain_sql_across_partitions_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (many, one) = (tmp.path().join("many"), tmp.path().join("one"));
    generate(&many, 3_000, 4);
    generate(&one, 3_000, 1);
    assert_eq!(
        std::fs::read_dir(many.join("purchases")).unwrap().count(),
        4
    );

    let mut answers = vec![];
    for dir in [&many, &one] {
        for partitions in [1, 4] {
            let p = dir.join("purchases");
            let c = dir.join("customers");
            let ctx = session(
                partitions,
                &[
                    ("purchases", p.to_str().unwrap()),
                    ("customers", c.to_str().unwrap()),
                ],
            )
            .await;

            let stages = query(&ctx, STAGE_FN).await;
            assert_eq!(
                stages,
                query(&ctx, &stage_sql("2024-03-31")).await,
                "stages, {partitions} partitions"
            );
            assert_eq!(stages.len(), 3_000);
            for g in ["month", "week", "year"] {
                let cells = query(&ctx, &cohort_fn(g)).await;
                assert!(!cells.is_empty());
                assert_eq!(
                    cells,
                    query(&ctx, &cohort_sql(g)).await,
                    "cohort {g}, {partitions} partitions"
                );
            }
            // Zero-filled: every cohort has every period up to the last order's month.
            let shape = query(
                &ctx,
                "SELECT count(*), sum(CASE WHEN retention = CAST(active_customers AS DOUBLE) / cohort_size THEN 1 ELSE 0 END),
                        min(period), count(DISTINCT cohort) FROM cohort_retention('purchases', 'month')",
            )
            .await;
            let expected = query(
                &ctx,
                "WITH f AS (SELECT date_trunc('month', min(order_ts)) AS cohort FROM purchases GROUP BY customer_id),
                      m AS (SELECT date_trunc('month', max(order_ts)) AS last FROM purchases)
                 SELECT sum(CAST((date_part('year', last) - date_part('year', cohort)) * 12
                                 + date_part('month', last) - date_part('month', cohort) + 1 AS BIGINT)),
                        count(*) FROM (SELECT DISTINCT cohort FROM f) CROSS JOIN m",
            )
            .await;
            assert_eq!(shape[0][0], expected[0][0]);
            assert_eq!(
                shape[0][1], shape[0][0],
                "retention = active / size on every row"
            );
            assert_eq!(shape[0][2], "0");
            assert_eq!(shape[0][3], expected[0][1]);

            let retention = query(&ctx, RETENTION_FN).await;
            assert_eq!(retention, query(&ctx, RETENTION_SQL).await);
            answers.push((stages, query(&ctx, &cohort_fn("month")).await, retention));
        }
    }
    for a in &answers[1..] {
        assert_eq!(
            a, &answers[0],
            "same answers from 1 or 4 files and 1 or 4 partitions"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_is_realistic() {
    let ctx = session(4, &[]).await;
    let r = query(
        &ctx,
        "SELECT count(*), min(signup_ts) >= TIMESTAMP '2022-01-01 00:00:00', max(signup_ts) < TIMESTAMP '2025-01-01 00:00:00' FROM customers",
    )
    .await;
    assert_eq!(r[0], vec!["12000", "true", "true"]);
    // Churn is realistic: a sizeable share, but far from all, of the buyers churned by the end.
    let r = query(
        &ctx,
        "SELECT avg(CASE WHEN s = 'churned' THEN 1.0 ELSE 0.0 END), count(DISTINCT s) FROM (
           SELECT lifecycle_stage(p.order_ts, TIMESTAMP '2025-01-01 00:00:00') AS s
           FROM customers c LEFT JOIN purchases p ON p.customer_id = c.customer_id GROUP BY c.customer_id)",
    )
    .await;
    let churned: f64 = r[0][0].parse().unwrap();
    assert!((0.2..0.7).contains(&churned), "churned share {churned}");
    assert_eq!(r[0][1], "7", "every stage occurs in the sample");
}

/// Every SQL example in the function reference runs on the embedded sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_examples_run_on_the_sample() {
    let ctx = session(2, &[]).await;
    let docs = lifecycle_udfs::function_docs();
    let mut examples = 0;
    for block in docs.split("```sql\n").skip(1) {
        let sql = &block[..block.find("```").unwrap()];
        for statement in sql.split(';').filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        }) {
            ctx.sql(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
            examples += 1;
        }
    }
    assert!(examples >= 6, "{examples} examples");
}

/// The default-mode funnel level written as plain SQL: the longest prefix of steps visit, cart,
/// purchase with a chain t_visit <= t_cart <= t_purchase <= t_visit + window (every event has one
/// type, so the (timestamp, step) order is the timestamp order).
fn funnel_sql(window_us: i64) -> String {
    format!(
        "WITH e AS (SELECT customer_id AS c, CAST(event_ts AS BIGINT) AS t, event_type AS k FROM events),
         a AS (SELECT c, t FROM e WHERE k = 'visit'),
         b AS (SELECT c, t FROM e WHERE k = 'cart'),
         p AS (SELECT c, t FROM e WHERE k = 'purchase'),
         ab AS (SELECT a.c, a.t AS t0, b.t AS t1 FROM a JOIN b ON a.c = b.c AND b.t >= a.t AND b.t <= a.t + {window_us}),
         l1 AS (SELECT DISTINCT c FROM a),
         l2 AS (SELECT DISTINCT c FROM ab),
         l3 AS (SELECT DISTINCT ab.c FROM ab JOIN p ON ab.c = p.c AND p.t >= ab.t1 AND p.t <= ab.t0 + {window_us})
         SELECT u.c, CASE WHEN l3.c IS NOT NULL THEN 3 WHEN l2.c IS NOT NULL THEN 2
                          WHEN l1.c IS NOT NULL THEN 1 ELSE 0 END
         FROM (SELECT DISTINCT c FROM e) u LEFT JOIN l1 ON l1.c = u.c LEFT JOIN l2 ON l2.c = u.c
              LEFT JOIN l3 ON l3.c = u.c ORDER BY 1"
    )
}

const FUNNEL_STEPS: &str =
    "event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase'";

/// window_funnel (whose default mode settles a customer at the last step and forgets its events)
/// and lead_score against plain SQL, on events in the generator's order (each customer's purchase sessions, then
/// browsing sessions at random times, all in one file) and in time order with every customer
/// spread over four files (partial states of one customer merged from several partitions); the
/// strict modes, step times and sequences give the same answers from both layouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_funnel_equals_plain_sql_across_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    generate(&gen_dir, 1_500, 3);
    let events = gen_dir.join("events");
    let spread = tmp.path().join("spread");
    std::fs::create_dir(&spread).unwrap();
    let ctx = session(1, &[("events", events.to_str().unwrap())]).await;
    for k in 0..4 {
        query(
            &ctx,
            &format!(
                "COPY (SELECT * FROM events WHERE session_id % 4 = {k} ORDER BY event_ts)
                 TO '{}/part-{k}.parquet' STORED AS PARQUET",
                spread.display()
            ),
        )
        .await;
    }

    let mut answers = vec![];
    for dir in [&events, &spread] {
        for partitions in [1, 4] {
            let ctx = session(partitions, &[("events", dir.to_str().unwrap())]).await;
            for window_s in [3_600i64, 3 * 86_400] {
                let levels = query(
                    &ctx,
                    &format!(
                        "SELECT customer_id, window_funnel({window_s}, {FUNNEL_STEPS}) FROM events
                         GROUP BY customer_id ORDER BY 1"
                    ),
                )
                .await;
                assert_eq!(
                    levels,
                    query(&ctx, &funnel_sql(window_s * 1_000_000)).await,
                    "window {window_s} s, {partitions} partitions, {}",
                    dir.display()
                );
                let reached: Vec<&str> = levels.iter().map(|r| r[1].as_str()).collect();
                for level in ["1", "2", "3"] {
                    assert!(reached.contains(&level), "some customer at level {level}");
                }
            }
            // lead_score against the same sum written out, from the same layouts.
            let score = |f: &str| {
                format!(
                    "SELECT customer_id, round({f}, 6) FROM (SELECT customer_id, event_ts,
                       CASE event_type WHEN 'visit' THEN 1 WHEN 'view' THEN 2 WHEN 'cart' THEN 5
                                       WHEN 'checkout' THEN 8 ELSE 0 END AS p FROM events)
                     GROUP BY customer_id ORDER BY 1"
                )
            };
            let as_of = "TIMESTAMP '2023-06-30 00:00:00'";
            assert_eq!(
                query(&ctx, &score(&format!("lead_score(p, event_ts, {as_of}, 30)"))).await,
                query(
                    &ctx,
                    &score(&format!(
                        "sum(CASE WHEN event_ts <= {as_of} THEN p * power(0.5,
                           (date_part('epoch', {as_of}) - date_part('epoch', event_ts)) / 86400 / 30)
                           ELSE 0 END)"
                    ))
                )
                .await,
                "lead_score, {partitions} partitions, {}",
                dir.display()
            );
            let others = query(
                &ctx,
                &format!(
                    "SELECT customer_id,
                       window_funnel(86400, {FUNNEL_STEPS}, 'strict_order'),
                       window_funnel(86400, {FUNNEL_STEPS}, 'strict_deduplication'),
                       window_funnel(86400, {FUNNEL_STEPS}, 'strict_increase'),
                       window_funnel_times(86400, {FUNNEL_STEPS}),
                       window_funnel(86400, {FUNNEL_STEPS}, 'strict_once'),
                       window_funnel(86400, {FUNNEL_STEPS}, 'strict_once,strict_order,allow_reentry'),
                       window_funnel_times(86400, {FUNNEL_STEPS}, 'strict_once,strict_increase'),
                       sequence_match('(?1)(?2)(?3)', event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase'),
                       sequence_count('(?1).*(?2)', event_ts, event_type = 'cart', event_type = 'purchase'),
                       sequence_match_events('(?1).*(?2)(?t<=86400)(?3)', event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase'),
                       sequence_match_events('(?1).*(?2)', event_ts, event_type = 'cart', event_type = 'purchase'),
                       sequence_next_node('forward', 'first_match', event_ts, event_type, true, event_type = 'cart'),
                       sequence_next_node('backward', 'last_match', event_ts, event_type, true, event_type = 'purchase', event_type = 'checkout')
                     FROM events GROUP BY customer_id ORDER BY 1"
                ),
            )
            .await;
            answers.push(others);

            // sessionize against the lag-based query: a session starts where the gap to the
            // previous event exceeds 30 minutes; its number is the running count of starts.
            let sessions = query(
                &ctx,
                "SELECT customer_id, event_ts, sessionize(event_ts, INTERVAL '30 minutes')
                   OVER (PARTITION BY customer_id ORDER BY event_ts) AS s
                 FROM events ORDER BY 1, 2, 3",
            )
            .await;
            let lag_based = query(
                &ctx,
                "SELECT customer_id, event_ts, sum(start) OVER (PARTITION BY customer_id ORDER BY event_ts
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s
                 FROM (SELECT customer_id, event_ts,
                         CASE WHEN event_ts - lag(event_ts) OVER (PARTITION BY customer_id ORDER BY event_ts)
                                   <= INTERVAL '30 minutes' THEN 0 ELSE 1 END AS start
                       FROM events)
                 ORDER BY 1, 2, 3",
            )
            .await;
            assert_eq!(
                sessions,
                lag_based,
                "sessionize, {partitions} partitions, {}",
                dir.display()
            );
            assert!(sessions.iter().any(|r| r[2] != "1"), "some second sessions");
        }
    }
    for a in &answers[1..] {
        assert_eq!(
            a, &answers[0],
            "same answers from both layouts and partitions"
        );
    }

    // Under a memory limit below the events' size the final aggregation spills (EXPLAIN ANALYZE
    // shows 4 and 1 spills on this data at 6 MiB, and 8 and 3 at 4 MiB) and merges the spilled
    // states back; the answers stay the same.
    let limited = limited_session("events", &spread).await;
    let default_levels = format!(
        "SELECT customer_id, window_funnel(86400, {FUNNEL_STEPS}) FROM events GROUP BY customer_id ORDER BY 1"
    );
    let want = query(
        &session(1, &[("events", events.to_str().unwrap())]).await,
        &default_levels,
    )
    .await;
    assert_eq!(
        query(&limited, &default_levels).await,
        want,
        "default mode, 6 MiB"
    );
    let strict = format!(
        "SELECT customer_id, window_funnel(86400, {FUNNEL_STEPS}, 'strict_order'),
                window_funnel_times(86400, {FUNNEL_STEPS}) FROM events GROUP BY customer_id ORDER BY 1"
    );
    let got = query(&limited, &strict).await;
    let want: Vec<Vec<String>> = answers[0]
        .iter()
        .map(|r| vec![r[0].clone(), r[1].clone(), r[4].clone()])
        .collect();
    assert_eq!(got, want, "strict_order and step times, 6 MiB");
}

/// A session over one table at 2 partitions and 6 MiB of memory. DataFusion reserves 10 MB for
/// merging spilled sorted runs unless told otherwise; small batches keep each merged batch of
/// partial states well inside a partition's share, so aggregations spill instead of failing.
async fn limited_session(name: &str, path: &Path) -> datafusion::prelude::SessionContext {
    let limited = lifecycle::build_session(&lifecycle::SessionOptions {
        tables: vec![lifecycle::TableSpec {
            name: name.into(),
            path: path.to_str().unwrap().into(),
        }],
        memory_limit: Some(6 << 20),
        target_partitions: Some(2),
        cluster: None,
    })
    .await
    .unwrap();
    for set in [
        "SET datafusion.execution.sort_spill_reservation_bytes = 131072",
        "SET datafusion.execution.batch_size = 256",
    ] {
        query(&limited, set).await;
    }
    limited
}

/// `cohort_retention` and `rfm_summary` under a memory limit far below their state: the
/// per-customer aggregates spill and merge their states back (checked in EXPLAIN ANALYZE), and
/// the answers equal the unlimited ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_and_rfm_spill_with_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    generate(&dir, 20_000, 4);
    let p = dir.join("purchases");
    let queries = [
        "SELECT * FROM cohort_retention('purchases', 'week')".to_string(),
        "SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2024-07-01 00:00:00') FROM purchases GROUP BY customer_id ORDER BY 1".to_string(),
    ];
    let free = session(1, &[("purchases", p.to_str().unwrap())]).await;
    let limited = limited_session("purchases", &p).await;
    for q in &queries {
        let want = query(&free, q).await;
        assert!(want.len() > 1000, "{q}: {} rows", want.len());
        assert_eq!(query(&limited, q).await, want, "{q} under 6 MiB");
        let plan = query(&limited, &format!("EXPLAIN ANALYZE {q}"))
            .await
            .into_iter()
            .map(|r| r.join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        let spilled = plan
            .split("spill_count=")
            .skip(1)
            .any(|rest| !rest.starts_with('0'));
        assert!(spilled, "{q}: no spill under 6 MiB:\n{plan}");
    }
}

/// `cohort_retention`'s modes, value columns, breakdowns and DECIMAL revenue against plain SQL on
/// generated data in 4 files, at 1 and 4 partitions: the unbounded triangle from each customer's
/// first and last month; cumulative revenue as a running sum; each breakdown value's triangle as
/// the plain triangle of a view holding just that value's customers; DECIMAL revenue as DataFusion's
/// own exact `sum` per cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_modes_and_breakdowns_equal_plain_sql() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), 2_000, 4);
    let (p, c) = (tmp.path().join("purchases"), tmp.path().join("customers"));
    let month_index =
        |e: &str| format!("CAST(date_part('year', {e}) * 12 + date_part('month', {e}) AS BIGINT)");
    let mut answers = vec![];
    for partitions in [1, 4] {
        let ctx = session(
            partitions,
            &[
                ("purchases", p.to_str().unwrap()),
                ("customers", c.to_str().unwrap()),
            ],
        )
        .await;
        // Unbounded: customers whose last order is at or after period k.
        let unbounded = query(
            &ctx,
            &format!(
                "SELECT {}, period, cohort_size, active_customers FROM cohort_retention('purchases', 'month', 'unbounded')
                 ORDER BY 1, 2",
                month_index("cohort")
            ),
        )
        .await;
        let plain = query(
            &ctx,
            &format!(
                "WITH f AS (SELECT customer_id, {} AS c, {} AS l FROM purchases GROUP BY customer_id),
                      e AS (SELECT max(l) AS e FROM f),
                      g AS (SELECT c, unnest(generate_series(0, e - c)) AS k FROM (SELECT DISTINCT c FROM f) CROSS JOIN e)
                 SELECT g.c, g.k, count(*), sum(CASE WHEN f.l - f.c >= g.k THEN 1 ELSE 0 END)
                 FROM g JOIN f ON f.c = g.c GROUP BY 1, 2 ORDER BY 1, 2",
                month_index("min(order_ts)"),
                month_index("max(order_ts)")
            ),
        )
        .await;
        // (Sorted here: DataFusion 55 drops the second key of that ORDER BY, as the unnest keeps
        // the DISTINCT's uniqueness of `c`; see the cohort plan.)
        let mut plain = plain;
        plain.sort_by_key(|r| (r[0].parse::<i64>().unwrap(), r[1].parse::<i64>().unwrap()));
        assert!(unbounded.len() > 100);
        assert_eq!(unbounded, plain, "unbounded, {partitions} partitions");

        // Cumulative revenue and revenue retention from the bounded triangle's own cells.
        let value = query(
            &ctx,
            "SELECT count(*) FROM (
               SELECT cumulative_revenue, revenue_retention,
                      sum(revenue) OVER (PARTITION BY cohort ORDER BY period) AS running,
                      CAST(revenue AS DOUBLE)
                        / CAST(first_value(revenue) OVER (PARTITION BY cohort ORDER BY period) AS DOUBLE) AS ratio
               FROM cohort_retention('purchases', 'month'))
             WHERE cumulative_revenue <> running
                OR abs(revenue_retention - ratio) > 1e-9",
        )
        .await;
        assert_eq!(value, vec![vec!["0".to_string()]], "value curve");

        // Breakdown by the customer's channel (first touch): every value's triangle is the
        // plain triangle of that value's customers.
        query(
            &ctx,
            "CREATE OR REPLACE VIEW pc AS SELECT p.customer_id, p.order_ts, p.amount, c.channel
             FROM purchases p JOIN customers c ON c.customer_id = p.customer_id",
        )
        .await;
        let channels = query(&ctx, "SELECT DISTINCT channel FROM customers ORDER BY 1").await;
        assert!(channels.len() >= 2);
        let cols = "cohort, period, cohort_size, active_customers, round(revenue, 4), round(cumulative_revenue, 4)";
        for mode in ["bounded", "unbounded"] {
            let total = query(
                &ctx,
                &format!(
                    "SELECT count(*) FROM cohort_retention('pc', 'month', '{mode}', 'channel')"
                ),
            )
            .await;
            let mut sum = 0usize;
            for ch in &channels {
                let ch = &ch[0];
                query(
                    &ctx,
                    &format!(
                        "CREATE OR REPLACE VIEW one AS SELECT * FROM pc WHERE channel = '{ch}'"
                    ),
                )
                .await;
                let got = query(
                    &ctx,
                    &format!(
                        "SELECT {cols} FROM cohort_retention('pc', 'month', '{mode}', 'channel')
                         WHERE breakdown = '{ch}'"
                    ),
                )
                .await;
                let want = query(
                    &ctx,
                    &format!("SELECT {cols} FROM cohort_retention('one', 'month', '{mode}')"),
                )
                .await;
                assert!(!want.is_empty());
                assert_eq!(got, want, "breakdown {ch}, {mode}, {partitions} partitions");
                sum += got.len();
            }
            assert_eq!(total, vec![vec![sum.to_string()]]);
        }
        // The output is ordered by breakdown, cohort, period (checked on the rows as returned:
        // a window over it would not keep the order).
        let rows = query(
            &ctx,
            "SELECT breakdown, cohort, period FROM cohort_retention('pc', 'week', 'bounded', 'channel')",
        )
        .await;
        // (Cohorts print as ISO timestamps of one width, which sort as text.)
        let keys: Vec<(String, String, i64)> = rows
            .iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].parse().unwrap()))
            .collect();
        let bad: Vec<_> = keys.windows(2).filter(|w| w[0] >= w[1]).take(3).collect();
        assert!(bad.is_empty(), "ordered: {bad:?} of {}", keys.len());

        // DECIMAL amounts: revenue per cell is DataFusion's exact decimal sum.
        query(
            &ctx,
            "CREATE OR REPLACE VIEW dec AS SELECT customer_id, order_ts, CAST(amount AS DECIMAL(18, 2)) AS amount FROM purchases",
        )
        .await;
        let dec = query(
            &ctx,
            "SELECT cohort, period, CAST(revenue AS VARCHAR), arrow_typeof(revenue) FROM cohort_retention('dec', 'month')
             WHERE active_customers > 0 ORDER BY 1, 2",
        )
        .await;
        let want = query(
            &ctx,
            "WITH f AS (SELECT customer_id, date_trunc('month', min(order_ts)) AS cohort FROM dec GROUP BY customer_id)
             SELECT f.cohort, CAST((date_part('year', d.order_ts) * 12 + date_part('month', d.order_ts))
                                   - (date_part('year', f.cohort) * 12 + date_part('month', f.cohort)) AS BIGINT),
                    CAST(CAST(sum(d.amount) AS DECIMAL(38, 2)) AS VARCHAR), 'Decimal128(38, 2)'
             FROM dec d JOIN f ON f.customer_id = d.customer_id GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .await;
        assert_eq!(dec, want, "decimal revenue, {partitions} partitions");
        answers.push((unbounded, dec));
    }
    assert_eq!(answers[0], answers[1], "1 and 4 partitions");
}
