//! Customer-base models in SQL: the CDNOW acceptance numbers from the raw transactions (as
//! published), rfm_summary and churn_risk against plain SQL, customer_value, and recovery of known
//! BG/NBD parameters from simulated data. Each at target_partitions 1 and 4, from several files.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use lifecycle_sample::generate::{
    AmountType, GenerateOptions, Process, generate_batches, parse_date_us, write_parquet,
};
use parquet::arrow::ArrowWriter;

use crate::common::{query, session};

/// Writes the embedded CDNOW table to `n` Parquet files (customers split by id) under `dir`.
fn cdnow_files(dir: &Path, n: usize) {
    let batch =
        lifecycle_sample::embedded::parse_cdnow(lifecycle_sample::embedded::CDNOW_TEXT).unwrap();
    let ids = batch
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    for k in 0..n {
        let keep: datafusion::arrow::array::BooleanArray =
            ids.iter().map(|v| v.map(|v| v as usize % n == k)).collect();
        let part = datafusion::arrow::compute::filter_record_batch(&batch, &keep).unwrap();
        let f = std::fs::File::create(dir.join(format!("part-{k}.parquet"))).unwrap();
        let mut w = ArrowWriter::try_new(f, part.schema(), None).unwrap();
        w.write(&part).unwrap();
        w.close().unwrap();
    }
}

async fn cdnow_sessions() -> Vec<(String, SessionContext)> {
    let dir = tempfile::tempdir().unwrap().keep();
    cdnow_files(&dir, 3);
    let path = dir.to_str().unwrap().to_string();
    let mut out = vec![];
    for p in [1, 4] {
        out.push((format!("embedded, {p} partitions"), session(p, &[]).await));
        let ctx = session(p, &[("files", &path)]).await;
        ctx.sql("CREATE VIEW cdnow_files AS SELECT * FROM files")
            .await
            .unwrap();
        out.push((format!("3 files, {p} partitions"), ctx));
    }
    out
}

/// Equal to 4 significant digits.
fn sig4(got: &str, want: f64) -> bool {
    let got: f64 = got.parse().unwrap();
    let scale = 10f64.powi(want.abs().log10().floor() as i32 - 3);
    ((got - want) / scale).abs() <= 0.5 + 1e-9
}

const SUMMARY: &str = "WITH s AS (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '1997-09-30', 'week') AS s
                                  FROM {t} GROUP BY customer_id)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdnow_published_numbers_from_raw_transactions() {
    for (label, ctx) in cdnow_sessions().await {
        let table = if label.starts_with("embedded") {
            "cdnow"
        } else {
            "cdnow_files"
        };
        let with = SUMMARY.replace("{t}", table);
        let r = query(
            &ctx,
            &format!(
                "{with}, p AS (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p,
                                    pareto_nbd_fit(s.frequency, s.recency, s.t) AS q,
                                    gamma_gamma_fit(s.frequency, s.monetary_value) AS g,
                                    count(*) AS n,
                                    count(*) FILTER (WHERE s.frequency > 0 AND s.monetary_value > 0) AS n_gg FROM s)
                 SELECT n, p.r, p.alpha, p.a, p.b, p.log_likelihood,
                        q.r, q.alpha, q.s, q.beta, q.log_likelihood,
                        g.p, g.q, g.v, n_gg,
                        bgnbd_p_alive(p, 2, 30.43, 38.86) FROM p"
            ),
        )
        .await;
        let r = &r[0];
        assert_eq!(r[0], "2357", "{label}");
        let want = [
            0.2426, 4.4135, 0.7929, 2.4258, -9582.43, 0.5533, 10.58, 0.6062, 11.67, -9594.98,
            6.2496, 3.7442, 15.4435,
        ];
        for (i, w) in want.iter().enumerate() {
            assert!(
                sig4(&r[i + 1], *w),
                "{label}: column {} = {} (want {w})",
                i + 1,
                r[i + 1]
            );
        }
        assert_eq!(r[14], "946", "{label}: Gamma-Gamma customers");
        assert!(sig4(&r[15], 0.7266), "{label}: P(alive) {}", r[15]);
    }
}

/// The same summary in plain SQL: distinct days per customer, then lifetimes' definitions.
const RFM_PLAIN: &str = "
WITH d AS (SELECT customer_id, CAST(floor(CAST(order_ts AS BIGINT) / 86400000000.0) AS BIGINT) AS day, sum(amount) AS amt
           FROM purchases WHERE order_ts <= TIMESTAMP '2024-03-31 00:00:00' GROUP BY 1, 2),
     f AS (SELECT customer_id, min(day) AS first_day FROM d GROUP BY 1)
SELECT d.customer_id, count(*) - 1 AS frequency, max(d.day) - min(d.day) AS recency,
       19813 - min(d.day) AS t,
       CASE WHEN count(*) = 1 THEN 0 ELSE sum(CASE WHEN d.day > f.first_day THEN d.amt ELSE 0 END) / (count(*) - 1) END AS m,
       CASE WHEN count(*) = 1 THEN NULL
            ELSE exp(-(count(*) - 1) / CAST(max(d.day) - min(d.day) AS DOUBLE) * (19813 - max(d.day))) END AS risk
FROM d JOIN f ON d.customer_id = f.customer_id GROUP BY d.customer_id ORDER BY 1";

const RFM_FN: &str = "
SELECT customer_id, CAST(s.frequency AS BIGINT), CAST(s.recency AS BIGINT), CAST(s.t AS BIGINT),
       s.monetary_value, risk
FROM (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2024-03-31 00:00:00') AS s,
             churn_risk(order_ts, TIMESTAMP '2024-03-31 00:00:00') AS risk
      FROM purchases GROUP BY customer_id)
WHERE s IS NOT NULL ORDER BY 1";

/// Equal row sets, reporting the first differing rows (not the whole tables).
fn assert_same(got: &[Vec<String>], want: &[Vec<String>], label: &str) {
    // Cells equal as text, or as numbers to 1e-9 relative (float sums in another order).
    let same = |a: &String, b: &String| {
        a == b
            || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * y.abs().max(1.0))
    };
    let diff: Vec<_> = got
        .iter()
        .zip(want)
        .filter(|(g, w)| g.len() != w.len() || g.iter().zip(w.iter()).any(|(a, b)| !same(a, b)))
        .take(5)
        .collect();
    assert!(
        diff.is_empty() && got.len() == want.len(),
        "{label}: {} vs {} rows; first differences (got, want): {diff:?}",
        got.len(),
        want.len()
    );
}

fn generate(dir: &Path, customers: u64, files: u64, process: Process) {
    write_parquet(
        GenerateOptions {
            customers,
            seed: 7,
            start_us: parse_date_us("2022-01-01").unwrap(),
            end_us: parse_date_us("2024-07-01").unwrap(),
            process,
            events: false,
            // DOUBLE amounts: the plain-SQL references below divide in floating point (DataFusion
            // truncates a DECIMAL quotient where rfm_summary rounds it).
            amount: AmountType::Double,
        },
        dir,
        files,
        |_| {},
    )
    .expect("generate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfm_summary_and_churn_risk_equal_plain_sql() {
    // 2024-03-31 is day 19813 since 1970-01-01.
    assert_eq!(parse_date_us("2024-03-31").unwrap() / 86_400_000_000, 19813);
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), 3000, 4, Process::default());
    let p = tmp.path().join("purchases");
    let path = p.to_str().unwrap();
    let mut answers = vec![];
    for parts in [1, 4] {
        let ctx = session(parts, &[("purchases", path)]).await;
        let plain = query(&ctx, RFM_PLAIN).await;
        let got = query(&ctx, RFM_FN).await;
        assert!(plain.len() > 1000);
        assert_same(&got, &plain, &format!("partitions {parts}"));
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
}

/// DECIMAL amounts: `rfm_summary`'s monetary value is the exact mean of the repeat days' cents,
/// rounded half up at 4 more digits (amounts are positive), whether the amounts are narrow
/// (DECIMAL(12, 2), kept as 64-bit integers) or wide (DECIMAL(20, 2), 128-bit). The expectation
/// is integer arithmetic in plain SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfm_summary_decimal_means_are_exact_narrow_or_wide() {
    let plain = "
        WITH d AS (SELECT customer_id, CAST(floor(CAST(order_ts AS BIGINT) / 86400000000.0) AS BIGINT) AS day,
                          sum(CAST(amount * 100 AS BIGINT)) AS cents
                   FROM {t} WHERE order_ts <= TIMESTAMP '2024-03-31 00:00:00' GROUP BY 1, 2),
             f AS (SELECT customer_id, min(day) AS first_day FROM d GROUP BY 1),
             r AS (SELECT d.customer_id, count(*) - 1 AS n,
                          sum(CASE WHEN d.day > f.first_day THEN d.cents ELSE 0 END) AS rep
                   FROM d JOIN f ON d.customer_id = f.customer_id GROUP BY d.customer_id)
        SELECT customer_id, n, CASE WHEN n = 0 THEN 0 ELSE (rep * 20000 + n) / (2 * n) END FROM r ORDER BY 1";
    let got = "
        SELECT customer_id, CAST(s.frequency AS BIGINT), CAST(s.monetary_value * 1000000 AS BIGINT),
               arrow_typeof(s.monetary_value)
        FROM (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2024-03-31 00:00:00') AS s
              FROM {t} GROUP BY customer_id)
        WHERE s IS NOT NULL ORDER BY 1";
    for parts in [1, 4] {
        let ctx = session(parts, &[]).await;
        query(
            &ctx,
            "CREATE VIEW wide AS SELECT customer_id, order_ts, CAST(amount AS DECIMAL(20, 2)) AS amount FROM purchases",
        )
        .await;
        for t in ["purchases", "wide"] {
            let ty = &query(
                &ctx,
                &format!("SELECT arrow_typeof(amount) FROM {t} LIMIT 1"),
            )
            .await[0][0];
            assert!(
                ty.starts_with("Decimal128(") && ty.ends_with(", 2)"),
                "{ty}"
            );
            let want = query(&ctx, &plain.replace("{t}", t)).await;
            let rows = query(&ctx, &got.replace("{t}", t)).await;
            assert!(want.len() > 1000, "{t}");
            let got3: Vec<Vec<String>> = rows.iter().map(|r| r[..3].to_vec()).collect();
            assert_eq!(got3, want, "{t}, {parts} partition(s)");
            assert!(
                rows.iter().all(|r| r[3] == "Decimal128(38, 6)"),
                "{t}: {:?}",
                rows[0]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_value_rows_match_the_functions_composed_by_hand() {
    let composed = "
        WITH s AS (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01') AS s,
                          lifecycle_stage(order_ts, TIMESTAMP '2025-01-01') AS stage
                   FROM purchases GROUP BY customer_id),
             m AS (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS bg, gamma_gamma_fit(s.frequency, s.monetary_value) AS gg FROM s)
        SELECT customer_id, round(bgnbd_p_alive(bg, s.frequency, s.recency, s.t), 9),
               round(bgnbd_expected_purchases(bg, 180, s.frequency, s.recency, s.t), 9),
               round(clv(bg, gg, s.frequency, s.recency, s.t, s.monetary_value, 6), 6), stage
        FROM s CROSS JOIN m ORDER BY customer_id";
    let from_fn = "SELECT customer_id, round(p_alive, 9), round(expected_purchases, 9), round(clv, 6), stage
                   FROM customer_value('purchases', TIMESTAMP '2025-01-01', 180) ORDER BY customer_id";
    for parts in [1, 4] {
        let ctx = session(parts, &[]).await;
        let want = query(&ctx, composed).await;
        let got = query(&ctx, from_fn).await;
        assert_eq!(got.len(), want.len());
        assert_same(&got, &want, &format!("partitions {parts}"));
        // Columns, in the documented order.
        let df = ctx
            .sql("SELECT * FROM customer_value('purchases', DATE '2025-01-01') LIMIT 1")
            .await
            .unwrap();
        let names: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "customer_id",
                "frequency",
                "recency",
                "t",
                "monetary_value",
                "p_alive",
                "expected_purchases",
                "expected_value",
                "clv",
                "stage",
                "rfm_segment",
                "models_converged"
            ]
        );
        // Quintiles: every R and F score holds a fifth of the customers (ntile), so segment sizes
        // add up; the champions are R5 x F4-5 by the map.
        let seg = query(
            &ctx,
            "SELECT count(*), count(DISTINCT rfm_segment), sum(CASE WHEN rfm_segment IS NULL THEN 1 ELSE 0 END)
             FROM customer_value('purchases', TIMESTAMP '2025-01-01')",
        )
        .await;
        assert_eq!(seg[0][0], query(&ctx, "SELECT count(DISTINCT customer_id) FROM purchases WHERE order_ts <= TIMESTAMP '2025-01-01'").await[0][0]);
        assert_eq!(seg[0][2], "0");
    }
    let ctx = session(1, &[]).await;
    for (sql, msg) in [
        (
            "SELECT * FROM customer_value('nope', TIMESTAMP '2025-01-01')",
            "table 'nope' not found",
        ),
        (
            "SELECT * FROM customer_value('customers', TIMESTAMP '2025-01-01')",
            "has no column 'order_ts'",
        ),
        ("SELECT * FROM customer_value('purchases', 'soon')", "as_of"),
        (
            "SELECT * FROM customer_value('purchases', TIMESTAMP '2025-01-01', -3)",
            "horizon_days",
        ),
    ] {
        let err = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(msg), "{sql}: {err}");
    }
}

/// Simulated BG/NBD data (days) with known parameters, through the generator, SQL rfm_summary and
/// bgnbd_fit: each parameter within 15% of the truth (20,000 customers; the kernel test
/// `btyd::tests::fit_recovers_exact_simulation` checks the likelihood-ratio bound on continuous-time
/// data; here days are floored, which merges same-day purchases and shifts the likelihood a little).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgnbd_fit_recovers_simulated_parameters() {
    let truth = Process {
        r: 0.8,
        alpha: 30.0,
        a: 0.9,
        b: 3.0,
        buyer_share: 1.0,
        ..Process::default()
    };
    let purchases = generate_batches(
        GenerateOptions {
            customers: 20_000,
            seed: 2024,
            start_us: parse_date_us("2023-01-01").unwrap(),
            end_us: parse_date_us("2024-01-01").unwrap(),
            process: truth,
            events: true,
            amount: AmountType::Decimal,
        },
        5_000,
    )
    .unwrap()
    .purchases;
    for parts in [1, 4] {
        let ctx = session(parts, &[]).await;
        let schema = purchases[0].schema();
        ctx.register_table(
            "sim",
            Arc::new(MemTable::try_new(schema, vec![purchases.clone()]).unwrap()),
        )
        .unwrap();
        let summary: Vec<RecordBatch> = ctx
            .sql("SELECT s.frequency, s.recency, s.t FROM (
                    SELECT rfm_summary(order_ts, amount, TIMESTAMP '2024-01-01') AS s FROM sim GROUP BY customer_id)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let fit = query(
            &ctx,
            "SELECT p.r, p.alpha, p.a, p.b, p.log_likelihood FROM (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p FROM (
               SELECT rfm_summary(order_ts, amount, TIMESTAMP '2024-01-01') AS s FROM sim GROUP BY customer_id))",
        )
        .await;
        let f: Vec<f64> = fit[0].iter().map(|v| v.parse().unwrap()).collect();
        let p = [truth.r, truth.alpha, truth.a, truth.b];
        let mut ll_true = 0.0;
        for b in &summary {
            let c: Vec<_> = (0..3)
                .map(|k| b.column(k).as_primitive::<Float64Type>())
                .collect();
            for i in 0..b.num_rows() {
                ll_true += lifecycle_udfs::models::btyd::bgnbd::log_likelihood(
                    &p,
                    c[0].value(i),
                    c[1].value(i),
                    c[2].value(i),
                );
            }
        }
        let gap = f[4] - ll_true;
        assert!(gap >= 0.0, "the fit is a maximum: {f:?}, LL gap {gap}");
        for (got, want) in f.iter().zip(p) {
            assert!(
                (got / want - 1.0).abs() < 0.15,
                "partitions {parts}: fit {f:?} vs truth {p:?}"
            );
        }
    }
}
