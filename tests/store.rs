//! The lifecycle store (`lifecycle store sync | compact | info`): every question answered on the
//! store equals the answer on the source files, after a first sync, after later syncs that fold
//! new files, and after compaction, at 1 and 4 partitions; per-customer aggregates plan with no
//! repartition; bad input is one clear error and writes nothing; joins with other tables stay
//! exact whatever the partition counts.

use std::path::Path;

use datafusion::prelude::SessionContext;
use lifecycle::engine::store::write::{self, SyncOptions};

use crate::common::{query, session};

const AS_OF: &str = "TIMESTAMP '2024-03-31 00:00:00'";

fn questions() -> Vec<String> {
    vec![
        "SELECT customer_id, count(*), sum(amount), min(order_ts), max(order_ts) FROM purchases GROUP BY 1 ORDER BY 1".into(),
        format!("SELECT customer_id, lifecycle_stage(order_ts, {AS_OF}), churn_flag(order_ts, {AS_OF}) FROM purchases GROUP BY 1 ORDER BY 1"),
        "SELECT * FROM cohort_retention('purchases', 'month') ORDER BY 1, 2".into(),
        format!("SELECT customer_id, rfm_summary(order_ts, amount, {AS_OF}), churn_risk(order_ts, {AS_OF}) FROM purchases GROUP BY 1 ORDER BY 1"),
        "SELECT customer_id, order_id, lag(order_ts) OVER (PARTITION BY customer_id ORDER BY order_ts, order_id) FROM purchases ORDER BY 1, 2".into(),
        "SELECT customer_id, window_funnel(86400, event_ts, event_type = 'visit', event_type = 'view', event_type = 'cart', event_type = 'checkout', event_type = 'purchase') FROM events GROUP BY 1 ORDER BY 1".into(),
        "SELECT customer_id, session_id, event_ts, event_type, sessionize(event_ts, INTERVAL '30 minutes') OVER (PARTITION BY customer_id ORDER BY event_ts, session_id, event_type) FROM events ORDER BY 1, 3, 2, 4".into(),
        "SELECT count(*) FROM purchases p JOIN purchases q ON p.customer_id = q.customer_id".into(),
        // The types the source files are read with (strings as views, as DataFusion reads Parquet).
        "SELECT arrow_typeof(event_type), arrow_typeof(customer_id), arrow_typeof(event_ts) FROM events LIMIT 1".into(),
    ]
}

/// The Parquet files under a store's bucket directories.
fn walk_parquet(st: &Path) -> usize {
    std::fs::read_dir(st)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with('b'))
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

async fn sync_ctx() -> SessionContext {
    lifecycle::engine::session::local_context(&Default::default()).unwrap()
}

async fn sync(
    src: &Path,
    store: &Path,
    extra: impl FnOnce(&mut SyncOptions),
) -> datafusion::error::Result<write::SyncReport> {
    let mut o = SyncOptions {
        source: src.to_str().unwrap().to_string(),
        store: store.to_str().unwrap().to_string(),
        key: None,
        order: None,
        buckets: Some(4),
        rebuild: false,
    };
    extra(&mut o);
    write::sync(&sync_ctx().await, &o).await
}

/// Every question's answer on `tables`, at 1 and 4 partitions.
async fn answers(tables: &[(&str, &Path)]) -> Vec<Vec<Vec<String>>> {
    let tables: Vec<(&str, &str)> = tables
        .iter()
        .map(|(n, p)| (*n, p.to_str().unwrap()))
        .collect();
    let mut out = vec![];
    for partitions in [1, 4] {
        let ctx = session(partitions, &tables).await;
        for q in questions() {
            out.push(query(&ctx, &q).await);
        }
    }
    out
}

fn copy_parts(from: &Path, to: &Path, parts: std::ops::Range<usize>) {
    std::fs::create_dir_all(to).unwrap();
    for k in parts {
        let name = format!("part-{k:05}.parquet");
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_question_equals_the_source_files_across_syncs_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 1500, 3, 21);
    let (src_p, src_e) = (tmp.path().join("src_p"), tmp.path().join("src_e"));
    let (st_p, st_e) = (tmp.path().join("store_p"), tmp.path().join("store_e"));
    // The first sync folds two of three files.
    copy_parts(&data.join("purchases"), &src_p, 0..2);
    copy_parts(&data.join("events"), &src_e, 0..2);
    let r = sync(&src_p, &st_p, |_| {}).await.unwrap();
    assert_eq!((r.version, r.new_files), (0, 2));
    sync(&src_e, &st_e, |o| o.order = Some("event_ts".into()))
        .await
        .unwrap();
    let want = answers(&[("purchases", &src_p), ("events", &src_e)]).await;
    let got = answers(&[("purchases", &st_p), ("events", &st_e)]).await;
    assert_eq!(got, want, "first sync");
    // Nothing new: nothing written.
    let r = sync(&src_p, &st_p, |_| {}).await.unwrap();
    assert_eq!((r.version, r.new_files), (0, 0));
    // The third file arrives: only it is read, as one more run per bucket.
    copy_parts(&data.join("purchases"), &src_p, 2..3);
    copy_parts(&data.join("events"), &src_e, 2..3);
    let r = sync(&src_p, &st_p, |_| {}).await.unwrap();
    assert_eq!((r.version, r.new_files), (1, 1));
    sync(&src_e, &st_e, |_| {}).await.unwrap();
    let want = answers(&[("purchases", &src_p), ("events", &src_e)]).await;
    let got = answers(&[("purchases", &st_p), ("events", &st_e)]).await;
    assert_eq!(got, want, "after a second sync (two runs per bucket)");
    let info = write::info(&sync_ctx().await, st_p.to_str().unwrap())
        .await
        .unwrap();
    let get = |k: &str| info.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("version"), "1");
    assert_eq!(get("source files folded"), "3");
    assert!(get("runs per bucket").starts_with("max 2"), "{info:?}");
    // Compaction: one file per bucket, same answers.
    for st in [&st_p, &st_e] {
        let (v, merged) =
            write::compact(&sync_ctx().await, st.to_str().unwrap(), write::Merge::All)
                .await
                .unwrap();
        assert_eq!((v, merged), (2, 4));
    }
    let got = answers(&[("purchases", &st_p), ("events", &st_e)]).await;
    assert_eq!(got, want, "after compaction");
    // Vacuum: the merged runs stay on disk for older versions' readers until they are older
    // than the retention; then they are deleted, and the answers stay.
    let run_files = |st: &Path| walk_parquet(st);
    let before = run_files(&st_p);
    let v = write::vacuum(&sync_ctx().await, st_p.to_str().unwrap(), 168)
        .await
        .unwrap();
    assert_eq!((v.runs, v.source_lists, run_files(&st_p)), (0, 0, before));
    let v = write::vacuum(&sync_ctx().await, st_p.to_str().unwrap(), 0)
        .await
        .unwrap();
    // The runs merged away, and the first sync's source list (the second sync wrote the whole
    // list anew).
    assert_eq!(
        (v.runs, v.source_lists),
        (before - 4, 1),
        "the 8 runs of 4 buckets merged into 4 files"
    );
    let lists = std::fs::read_dir(st_p.join("_lifecycle"))
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            e.file_name().to_string_lossy().starts_with("sources-")
        })
        .count();
    assert_eq!(lists, 1, "only the latest version's source list is left");
    assert_eq!(run_files(&st_p), 4);
    let got = answers(&[("purchases", &st_p), ("events", &st_e)]).await;
    assert_eq!(got, want, "after vacuum");
    let info = write::info(&sync_ctx().await, st_p.to_str().unwrap())
        .await
        .unwrap();
    assert!(
        info.iter()
            .any(|(k, v)| k == "runs per bucket" && v.starts_with("max 1")),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_customer_questions_plan_without_repartition_or_sort() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 300, 2, 5);
    let (src, st) = (tmp.path().join("src"), tmp.path().join("store"));
    // One run per bucket, then two (a second sync): the runs are merged in order, not sorted.
    for (runs, parts) in [(1, 0..1), (2, 1..2)] {
        copy_parts(&data.join("purchases"), &src, parts);
        sync(&src, &st, |_| {}).await.unwrap();
        let ctx = session(2, &[("purchases", st.to_str().unwrap())]).await;
        let plan = |sql: String| {
            let ctx = ctx.clone();
            async move {
                let rows = query(&ctx, &format!("EXPLAIN {sql}")).await;
                rows.iter()
                    .map(|r| r.join(" "))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        for sql in [
            "SELECT customer_id, count(*), sum(amount) FROM purchases GROUP BY customer_id".to_string(),
            format!("SELECT customer_id, lifecycle_stage(order_ts, {AS_OF}) FROM purchases GROUP BY customer_id"),
            "SELECT customer_id, lag(order_ts) OVER (PARTITION BY customer_id ORDER BY order_ts) FROM purchases".into(),
            "SELECT customer_id, max(amount) FROM purchases GROUP BY customer_id".into(),
        ] {
            let p = plan(sql.clone()).await;
            assert!(!p.contains("RepartitionExec"), "{runs} run(s): {sql}\n{p}");
            assert!(!p.contains("SortExec"), "{runs} run(s): {sql}\n{p}");
            assert!(p.contains("ordering_mode=Sorted") || sql.contains("lag("), "{runs} run(s): {sql}\n{p}");
            assert_eq!(p.contains("StoreBucketMergeExec"), runs > 1, "{runs} run(s): {sql}\n{p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_with_other_tables_stay_exact_whatever_the_partition_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 800, 2, 8);
    let (src, st) = (tmp.path().join("src"), tmp.path().join("store"));
    // 4 buckets + the NULL-key bucket = 5 partitions: at target_partitions 5, DataFusion alone
    // would take the store's buckets for its own hash partitions. With one run per bucket (a
    // scan) and with two (their merge).
    copy_parts(&data.join("purchases"), &src, 0..1);
    sync(&src, &st, |_| {}).await.unwrap();
    let sql = "SELECT count(*), sum(c.customer_id) FROM purchases p JOIN customers c ON p.customer_id = c.customer_id";
    for (partitions, runs) in [(1, 1), (4, 1), (5, 1), (8, 1), (5, 2), (4, 2)] {
        if runs == 2 && !src.join("part-00001.parquet").exists() {
            copy_parts(&data.join("purchases"), &src, 1..2);
            sync(&src, &st, |_| {}).await.unwrap();
        }
        let on_files = session(
            partitions,
            &[
                ("purchases", src.to_str().unwrap()),
                ("customers", data.join("customers").to_str().unwrap()),
            ],
        )
        .await;
        let on_store = session(
            partitions,
            &[
                ("purchases", st.to_str().unwrap()),
                ("customers", data.join("customers").to_str().unwrap()),
            ],
        )
        .await;
        on_store
            .sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0")
            .await
            .unwrap();
        on_store
            .sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0")
            .await
            .unwrap();
        assert_eq!(
            query(&on_store, sql).await,
            query(&on_files, sql).await,
            "{partitions} partitions, {runs} run(s) per bucket"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_union_of_a_store_and_other_tables_stays_exact_whatever_the_partition_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 800, 2, 9);
    let (src, st) = (tmp.path().join("src"), tmp.path().join("store"));
    // Per-customer aggregates of a store (4 buckets + 1 = 5 partitions) and of files that
    // DataFusion repartitions itself, in one UNION ALL grouped again by customer: at 5
    // partitions DataFusion interleaves the two (pairs partition i with partition i).
    copy_parts(&data.join("purchases"), &src, 0..1);
    sync(&src, &st, |_| {}).await.unwrap();
    // The other side: the same rows with the store's (nullable) schema, so that the union needs
    // no cast and both sides are hash-partitioned on the same column as far as DataFusion sees.
    let others = tmp.path().join("others");
    std::fs::create_dir_all(&others).unwrap();
    let ctx = session(1, &[("purchases", st.to_str().unwrap())]).await;
    query(
        &ctx,
        &format!(
            "COPY (SELECT * FROM purchases) TO '{}' STORED AS PARQUET",
            others.join("part.parquet").display()
        ),
    )
    .await;
    let sql = "SELECT count(*), sum(n), sum(customer_id * n) FROM (SELECT customer_id, sum(c) AS n FROM ( \
               SELECT customer_id, count(*) AS c FROM purchases GROUP BY customer_id \
               UNION ALL SELECT customer_id, count(*) AS c FROM others GROUP BY customer_id) \
               GROUP BY customer_id)";
    for (partitions, runs) in [(1, 1), (4, 1), (5, 1), (8, 1), (5, 2)] {
        if runs == 2 && !src.join("part-00001.parquet").exists() {
            copy_parts(&data.join("purchases"), &src, 1..2);
            sync(&src, &st, |_| {}).await.unwrap();
        }
        let on_files = session(
            partitions,
            &[
                ("purchases", src.to_str().unwrap()),
                ("others", others.to_str().unwrap()),
            ],
        )
        .await;
        let on_store = session(
            partitions,
            &[
                ("purchases", st.to_str().unwrap()),
                ("others", others.to_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(
            query(&on_store, sql).await,
            query(&on_files, sql).await,
            "{partitions} partitions, {runs} run(s) per bucket"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_more_runs_than_merged_is_read_unordered_and_exact() {
    use lifecycle::engine::store::provider::MAX_MERGED_RUNS;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let n = MAX_MERGED_RUNS + 1;
    crate::common::generate_dense(&data, 200, n as u64, 23);
    let (src, st) = (tmp.path().join("src"), tmp.path().join("store"));
    for k in 0..n {
        copy_parts(&data.join("purchases"), &src, k..k + 1);
        sync(&src, &st, |o| o.buckets = Some(2)).await.unwrap();
    }
    let info = write::info(&sync_ctx().await, st.to_str().unwrap())
        .await
        .unwrap();
    assert!(
        info.iter().any(|(k, v)| k == "runs per bucket"
            && v.starts_with(&format!("max {n},"))
            && v.contains("read without order until `store compact`")),
        "{info:?}"
    );
    let sql = [
        "SELECT customer_id, count(*), sum(amount), min(order_ts), max(order_ts) FROM purchases GROUP BY 1 ORDER BY 1".to_string(),
        format!("SELECT customer_id, lifecycle_stage(order_ts, {AS_OF}) FROM purchases GROUP BY 1 ORDER BY 1"),
        "SELECT customer_id, order_id, lag(order_ts) OVER (PARTITION BY customer_id ORDER BY order_ts, order_id) FROM purchases ORDER BY 1, 2".into(),
    ];
    let on_store = session(2, &[("purchases", st.to_str().unwrap())]).await;
    let on_files = session(2, &[("purchases", src.to_str().unwrap())]).await;
    for q in &sql {
        assert_eq!(query(&on_store, q).await, query(&on_files, q).await, "{q}");
    }
    let plan: String = query(&on_store, &format!("EXPLAIN {}", sql[0]))
        .await
        .iter()
        .map(|r| r.join(" "))
        .collect();
    assert!(!plan.contains("StoreBucketMergeExec"), "{plan}");
    assert!(!plan.contains("RepartitionExec"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 200, 2, 3);
    let src = tmp.path().join("src");
    copy_parts(&data.join("purchases"), &src, 0..1);
    let st = tmp.path().join("store");
    let err = |r: datafusion::error::Result<write::SyncReport>| r.unwrap_err().to_string();
    // Missing key or order column, unsupported bucket counts: nothing created.
    let e = err(sync(&src, &st, |o| o.key = Some("nope".into())).await);
    assert!(e.contains("no key column 'nope'"), "{e}");
    let e = err(sync(&src, &st, |o| o.order = Some("amount".into())).await);
    assert!(e.contains("order column 'amount'"), "{e}");
    let e = err(sync(&src, &st, |o| o.buckets = Some(0)).await);
    assert!(e.contains("--buckets"), "{e}");
    assert!(!st.join("_delta_log").exists());
    sync(&src, &st, |_| {}).await.unwrap();
    // Another layout asked of an existing store.
    let e = err(sync(&src, &st, |o| o.buckets = Some(8)).await);
    assert!(e.contains("--buckets 4") && e.contains("--rebuild"), "{e}");
    // A new file with another schema (the customers table) is named; the store is unchanged.
    std::fs::copy(
        data.join("customers/part-00000.parquet"),
        src.join("zz.parquet"),
    )
    .unwrap();
    let e = err(sync(&src, &st, |_| {}).await);
    assert!(
        e.contains("zz.parquet") && e.contains("another schema"),
        "{e}"
    );
    std::fs::remove_file(src.join("zz.parquet")).unwrap();
    // A folded file that changed, then one that disappeared.
    let f = src.join("part-00000.parquet");
    std::fs::copy(data.join("purchases/part-00001.parquet"), &f).unwrap();
    let e = err(sync(&src, &st, |_| {}).await);
    assert!(
        e.contains("part-00000.parquet") && e.contains("changed"),
        "{e}"
    );
    std::fs::remove_file(&f).unwrap();
    copy_parts(&data.join("purchases"), &src, 1..2);
    let e = err(sync(&src, &st, |_| {}).await);
    assert!(
        e.contains("part-00000.parquet") && e.contains("gone"),
        "{e}"
    );
    let ctx = sync_ctx().await;
    let info = write::info(&ctx, st.to_str().unwrap()).await.unwrap();
    assert!(
        info.contains(&("version".to_string(), "0".to_string())),
        "{info:?}"
    );
    // --rebuild lays the store out again from the files there now.
    let r = sync(&src, &st, |o| {
        o.rebuild = true;
        o.buckets = Some(8)
    })
    .await
    .unwrap();
    assert_eq!((r.version, r.new_files), (1, 1));
    let on_store = session(2, &[("purchases", st.to_str().unwrap())]).await;
    let on_files = session(2, &[("purchases", src.to_str().unwrap())]).await;
    let q = "SELECT count(*), sum(amount), count(DISTINCT customer_id) FROM purchases";
    assert_eq!(query(&on_store, q).await, query(&on_files, q).await);
    // A store inside its own source directory is refused before anything is written.
    let inner = src.join("store");
    let e = err(sync(&src, &inner, |_| {}).await);
    assert!(e.contains("inside the source"), "{e}");
    assert!(!inner.exists());
    // Not a store.
    let e = write::info(&ctx, src.to_str().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a lifecycle store"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_keys_and_times_are_kept_and_answers_equal_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 600, 2, 13);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let ctx = session(
        1,
        &[("purchases", data.join("purchases").to_str().unwrap())],
    )
    .await;
    let st = tmp.path().join("store");
    let q = [
        "SELECT count(*), count(customer_id), count(order_ts), sum(amount) FROM purchases",
        "SELECT customer_id, count(*), count(order_ts), min(order_ts), max(order_ts) FROM purchases GROUP BY 1 ORDER BY 1 NULLS FIRST",
        "SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2024-03-31 00:00:00') FROM purchases GROUP BY 1 ORDER BY 1 NULLS FIRST",
        "SELECT * FROM cohort_retention('purchases', 'month') ORDER BY 1, 2",
        "SELECT customer_id, order_id, lag(order_id) OVER (PARTITION BY customer_id ORDER BY order_ts, order_id) FROM purchases ORDER BY 2",
    ];
    let same_answers = |what: &'static str| {
        let (st, src) = (st.clone(), src.clone());
        async move {
            for partitions in [1, 4] {
                let on_store = session(partitions, &[("purchases", st.to_str().unwrap())]).await;
                let on_file = session(partitions, &[("purchases", src.to_str().unwrap())]).await;
                for sql in q {
                    assert_eq!(
                        query(&on_store, sql).await,
                        query(&on_file, sql).await,
                        "{what}, {partitions} partition(s): {sql}"
                    );
                }
            }
        }
    };
    // Three syncs (85%, 7.5% and 7.5% of the rows): three runs in every bucket, the NULL-key
    // bucket's included, read through the in-order merge.
    for (i, part) in [
        "order_id % 40 < 34",
        "order_id % 40 BETWEEN 34 AND 36",
        "order_id % 40 > 36",
    ]
    .into_iter()
    .enumerate()
    {
        let out = src.join(format!("part-{i}.parquet"));
        ctx.sql(&format!(
            "COPY (SELECT CASE WHEN customer_id % 5 = 0 THEN NULL ELSE customer_id END AS customer_id, order_id,
                          CASE WHEN order_id % 11 = 0 THEN NULL ELSE order_ts END AS order_ts, amount
                   FROM purchases WHERE {part}) TO '{}' STORED AS PARQUET",
            out.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let r = sync(&src, &st, |_| {}).await.unwrap();
        assert!(r.rows > 50);
        // The NULL-key rows sit in the bucket after the hash buckets.
        assert_eq!(std::fs::read_dir(st.join("b00004")).unwrap().count(), i + 1);
    }
    same_answers("three runs").await;
    let runs = || async {
        let info = write::info(&sync_ctx().await, st.to_str().unwrap())
            .await
            .unwrap();
        info.into_iter()
            .find(|(k, _)| k == "runs per bucket")
            .unwrap()
            .1
    };
    assert!(runs().await.starts_with("max 3"));
    // The merge after a sync: the two small newest runs, not the large one.
    let (v, merged) = write::compact(
        &sync_ctx().await,
        st.to_str().unwrap(),
        write::Merge::Tiered,
    )
    .await
    .unwrap();
    assert_eq!((v, merged), (3, 5));
    assert!(
        runs()
            .await
            .starts_with("max 2, buckets with 0: 0, 1: 0, more: 5"),
        "{}",
        runs().await
    );
    same_answers("the newest runs merged").await;
    // Nothing more to merge until the newest runs grow.
    let (_, merged) = write::compact(
        &sync_ctx().await,
        st.to_str().unwrap(),
        write::Merge::Tiered,
    )
    .await
    .unwrap();
    assert_eq!(merged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_on_a_store_as_on_the_source_files_and_follows_its_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crate::common::generate_dense(&data, 500, 2, 17);
    let (src, st) = (tmp.path().join("src"), tmp.path().join("store"));
    copy_parts(&data.join("purchases"), &src, 0..1);
    sync(&src, &st, |_| {}).await.unwrap();
    let ctx = session(2, &[("purchases", st.to_str().unwrap())]).await;
    let server = crate::server::serve_session(ctx, Default::default()).await;
    let addr = server.addr;
    let mut c = crate::server::client(addr).await;
    let sql = format!(
        "SELECT s, count(*) AS n FROM (SELECT lifecycle_stage(order_ts, {AS_OF}) AS s FROM purchases GROUP BY customer_id) GROUP BY s ORDER BY s"
    );
    let on_files = session(2, &[("purchases", src.to_str().unwrap())]).await;
    let got = crate::common::rows(&crate::server::run(&mut c, &sql).await.unwrap());
    assert_eq!(got, query(&on_files, &sql).await);
    // A sync while the server runs: its next query answers on the new version (and a self-join
    // reads one version on both sides).
    let count = "SELECT count(*), sum(amount) FROM purchases";
    let before = crate::common::rows(&crate::server::run(&mut c, count).await.unwrap());
    copy_parts(&data.join("purchases"), &src, 1..2);
    sync(&src, &st, |_| {}).await.unwrap();
    let on_files = session(2, &[("purchases", src.to_str().unwrap())]).await;
    let after = crate::common::rows(&crate::server::run(&mut c, count).await.unwrap());
    assert_ne!(before, after);
    assert_eq!(after, query(&on_files, count).await);
    let got = crate::common::rows(&crate::server::run(&mut c, &sql).await.unwrap());
    assert_eq!(got, query(&on_files, &sql).await);
    let join = "SELECT count(*) FROM purchases p JOIN purchases q ON p.order_id = q.order_id";
    assert_eq!(
        crate::common::rows(&crate::server::run(&mut c, join).await.unwrap()),
        query(&on_files, join).await
    );
    // Rebuilt with another layout: one clear error, and the server keeps serving.
    sync(&src, &st, |o| {
        o.buckets = Some(7);
        o.rebuild = true;
    })
    .await
    .unwrap();
    let err = crate::server::run(&mut c, count)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("rebuilt with another layout"), "{err}");
    assert_eq!(
        crate::common::rows(&crate::server::run(&mut c, "SELECT 1").await.unwrap()),
        vec![vec!["1".to_string()]]
    );
    let _ = server.stop.send(());
    server.task.await.unwrap();
}
