//! Criterion benches: every aggregate over 1 million rows and 100,000 groups (customers), next to
//! the floor `count(*), sum(amount) GROUP BY customer_id` on the same data, the summary and a
//! BG/NBD fit over it, `cohort_retention(..., 'month')` (bounded, unbounded, DECIMAL amounts, a
//! 5-value breakdown) and its one-pass kernel alone; the event aggregates and `sessionize` over
//! the embedded sample's 0.76M site events, next to their floors (and sessions in plain SQL).
//!
//! `cargo bench --bench aggregates`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use lifecycle::{SessionOptions, build_session};
use lifecycle_sample::generate::{AmountType, purchases_schema};
use lifecycle_udfs::table::cohort_retention::kernel::{KeyedSums, Mode, Sum, Triangle};

const ROWS: usize = 1_000_000;
const GROUPS: i64 = 100_000;

/// 1M purchases of 100k customers over three years, in 8 partitions, deterministic.
fn data() -> Vec<Vec<RecordBatch>> {
    let start = 1_640_995_200_000_000i64; // 2022-01-01
    let span = 3 * 365 * 86_400_000_000i64;
    let mut x = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut parts = vec![vec![]; 8];
    for (i, part) in parts.iter_mut().enumerate() {
        let n = ROWS / 8;
        let mut c = Vec::with_capacity(n);
        let mut t = Vec::with_capacity(n);
        let mut a = Vec::with_capacity(n);
        for _ in 0..n {
            c.push((next() % GROUPS as u64) as i64);
            t.push(start + (next() % span as u64) as i64);
            a.push((next() % 10_000) as f64 / 100.0);
        }
        let o: Vec<i64> = (0..n as i64).map(|k| k + (i * n) as i64).collect();
        part.push(
            RecordBatch::try_new(
                purchases_schema(AmountType::Double),
                vec![
                    Arc::new(Int64Array::from(c)),
                    Arc::new(Int64Array::from(o)),
                    Arc::new(TimestampMicrosecondArray::from(t)),
                    Arc::new(Float64Array::from(a)),
                ],
            )
            .unwrap(),
        );
    }
    parts
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx: SessionContext = rt.block_on(async {
        let ctx = build_session(&SessionOptions::default()).await.unwrap();
        ctx.deregister_table("purchases").unwrap();
        ctx.register_table(
            "purchases",
            Arc::new(MemTable::try_new(purchases_schema(AmountType::Double), data()).unwrap()),
        )
        .unwrap();
        ctx
    });
    let queries = [
        (
            "floor_count_sum",
            "SELECT customer_id, count(*), sum(amount) FROM purchases GROUP BY customer_id",
        ),
        (
            "lifecycle_stage",
            "SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2025-01-01 00:00:00') FROM purchases GROUP BY customer_id",
        ),
        (
            "churn_flag",
            "SELECT customer_id, churn_flag(order_ts, TIMESTAMP '2025-01-01 00:00:00') FROM purchases GROUP BY customer_id",
        ),
        (
            "retention",
            "SELECT customer_id, retention(order_ts < TIMESTAMP '2023-01-01 00:00:00', order_ts >= TIMESTAMP '2023-01-01 00:00:00', order_ts >= TIMESTAMP '2024-01-01 00:00:00') FROM purchases GROUP BY customer_id",
        ),
        (
            "rfm_summary",
            "SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01 00:00:00') FROM purchases GROUP BY customer_id",
        ),
        (
            "churn_risk",
            "SELECT customer_id, churn_risk(order_ts, TIMESTAMP '2025-01-01 00:00:00') FROM purchases GROUP BY customer_id",
        ),
        (
            "rfm_summary_then_bgnbd_fit",
            "SELECT bgnbd_fit(s.frequency, s.recency, s.t) FROM (SELECT rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01 00:00:00') AS s FROM purchases GROUP BY customer_id)",
        ),
        (
            "cohort_retention_month",
            "SELECT * FROM cohort_retention('purchases', 'month')",
        ),
        (
            "cohort_retention_month_unbounded",
            "SELECT * FROM cohort_retention('purchases', 'month', 'unbounded')",
        ),
        (
            "cohort_retention_month_decimal",
            "SELECT * FROM cohort_retention('purchases_decimal', 'month')",
        ),
        (
            "cohort_retention_month_breakdown_5",
            "SELECT * FROM cohort_retention('purchases_decimal', 'month', 'bounded', 'segment')",
        ),
        (
            "rfm_summary_decimal",
            "SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01 00:00:00') FROM purchases_decimal GROUP BY customer_id",
        ),
        (
            "floor_sum_decimal",
            "SELECT customer_id, count(*), sum(amount) FROM purchases_decimal GROUP BY customer_id",
        ),
    ];
    rt.block_on(async {
        ctx.sql(
            "CREATE VIEW purchases_decimal AS SELECT customer_id, order_id, order_ts,
                    CAST(amount AS DECIMAL(18, 2)) AS amount, customer_id % 5 AS segment FROM purchases",
        )
        .await
        .unwrap();
    });
    let mut group = c.benchmark_group("1M_rows_100k_customers");
    group.sample_size(10);
    for (name, sql) in queries {
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() }))
        });
    }
    group.finish();

    // The one-pass cohort kernel alone (no DataFusion): 1M (customer, month, amount) rows of
    // 100k customers, in time order per customer (append-only logs: the slot path) and shuffled
    // (the log and its compaction), then the per-cohort triangle over the runs.
    let rows = cohort_rows();
    let mut shuffled = rows.clone();
    let mut x = 0x9E3779B97F4A7C15u64;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let keyed = |rows: &[(usize, i64, f64)]| {
        let mut k = KeyedSums::default();
        k.resize(GROUPS as usize);
        for &(g, key, amount) in rows {
            k.add(g, key, Sum::of(amount));
        }
        k.take(GROUPS as usize)
    };
    let mut group = c.benchmark_group("cohort_kernel_1M_rows");
    group.sample_size(10);
    group.bench_function("keyed_sums_time_ordered", |b| b.iter(|| keyed(&rows)));
    group.bench_function("keyed_sums_shuffled", |b| b.iter(|| keyed(&shuffled)));
    let runs = keyed(&rows);
    group.bench_function("triangle", |b| {
        b.iter(|| {
            let mut t = Triangle::default();
            for g in 0..runs.groups() {
                let r = runs.range(g);
                let first = runs.keys[r.start];
                for i in r {
                    t.add_cell(first, 0, runs.keys[i] - first, 1, 0, runs.sums[i])
                        .unwrap();
                }
            }
            t.rows(None, Mode::Bounded).unwrap().len()
        })
    });
    group.finish();

    // The embedded sample's site events: about 756,000 events of 191,000 visitors (12,000
    // customers and their anonymous visitors: about 4 each, mostly browsing), as the generator
    // writes them (each customer's events together).
    let steps = "event_ts, event_type = 'visit', event_type = 'view', event_type = 'cart', event_type = 'checkout', event_type = 'purchase'";
    let funnels = [
        (
            "floor_count",
            "SELECT customer_id, count(*) FROM events GROUP BY customer_id".to_string(),
        ),
        (
            "floor_conditions",
            "SELECT customer_id, bool_or(event_type = 'visit'), bool_or(event_type = 'view'), bool_or(event_type = 'cart'), bool_or(event_type = 'checkout'), bool_or(event_type = 'purchase') FROM events GROUP BY customer_id".to_string(),
        ),
        (
            "window_funnel",
            format!("SELECT customer_id, window_funnel(604800, {steps}) FROM events GROUP BY customer_id"),
        ),
        (
            "window_funnel_strict_order",
            format!("SELECT customer_id, window_funnel(604800, {steps}, 'strict_order') FROM events GROUP BY customer_id"),
        ),
        (
            "window_funnel_strict_once",
            format!("SELECT customer_id, window_funnel(604800, {steps}, 'strict_once') FROM events GROUP BY customer_id"),
        ),
        (
            "sequence_count",
            "SELECT customer_id, sequence_count('(?1).*(?2)', event_ts, event_type = 'cart', event_type = 'purchase') FROM events GROUP BY customer_id".to_string(),
        ),
        (
            "sequence_match_events",
            "SELECT customer_id, sequence_match_events('(?1).*(?2)(?t<=3600)(?3)', event_ts, event_type = 'view', event_type = 'cart', event_type = 'purchase') FROM events GROUP BY customer_id".to_string(),
        ),
        (
            "sequence_next_node",
            "SELECT customer_id, sequence_next_node('forward', 'first_match', event_ts, event_type, true, event_type = 'cart') FROM events GROUP BY customer_id".to_string(),
        ),
        (
            "floor_row_number",
            "SELECT customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY event_ts) FROM events".to_string(),
        ),
        (
            "sessionize",
            "SELECT customer_id, sessionize(event_ts, INTERVAL '30 minutes') OVER (PARTITION BY customer_id ORDER BY event_ts) FROM events".to_string(),
        ),
        (
            "sessions_lag_sql",
            "SELECT customer_id, sum(CASE WHEN event_ts - prev <= INTERVAL '30 minutes' THEN 0 ELSE 1 END) OVER (PARTITION BY customer_id ORDER BY event_ts ROWS UNBOUNDED PRECEDING) FROM (SELECT customer_id, event_ts, lag(event_ts) OVER (PARTITION BY customer_id ORDER BY event_ts) AS prev FROM events)".to_string(),
        ),
    ];
    let mut group = c.benchmark_group("sample_events");
    group.sample_size(10);
    for (name, sql) in funnels {
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(async { ctx.sql(&sql).await.unwrap().collect().await.unwrap() }))
        });
    }
    group.finish();
}

/// 1M purchase rows of 100k customers as (customer, month index, amount), each customer's rows
/// together and in time order: a first month in 36, then months a few apart.
fn cohort_rows() -> Vec<(usize, i64, f64)> {
    let mut x = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let per = ROWS / GROUPS as usize;
    let mut rows = Vec::with_capacity(ROWS);
    for g in 0..GROUPS as usize {
        let mut month = 624 + (next() % 36) as i64;
        for _ in 0..per {
            month += (next() % 4) as i64 / 2;
            rows.push((g, month, (next() % 10_000) as f64 / 100.0));
        }
    }
    rows
}

criterion_group!(benches, bench);
criterion_main!(benches);
