//! Lifecycle on an Apache DataFusion Ballista cluster: every function family gives the
//! single-process answers, in Ballista's standalone mode (a scheduler and an executor in this
//! process) and on a real cluster of processes (`lifecycle scheduler` and two
//! `lifecycle executor`s on loopback ports), with `SET lifecycle.*`, a bad query, a report, and
//! an executor killed during a query.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::common::{query, session};

/// The dense generated data (see [`crate::common::generate_dense`]) with this file's seed.
fn generate(dir: &Path, customers: u64, files: u64) {
    crate::common::generate_dense(dir, customers, files, 5);
}

/// A view the queries read: amounts as DECIMAL and a five-value segment to break down by.
const PREPARE: &str = "CREATE VIEW purchases_decimal AS SELECT customer_id, order_ts,
    CAST(amount AS DECIMAL(18, 2)) AS amount, customer_id % 5 AS segment FROM purchases";

/// One query per function family, each with a total order on its output.
const QUERIES: &[&str] = &[
    // lifecycle_stage and churn_flag (session thresholds, added at planning)
    "SELECT stage, count(*) AS n, sum(CASE WHEN churned THEN 1 ELSE 0 END) AS churned FROM (
       SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2024-06-30') AS stage,
              churn_flag(order_ts, TIMESTAMP '2024-06-30') AS churned
       FROM purchases GROUP BY customer_id) GROUP BY stage ORDER BY stage",
    // retention (list state)
    "SELECT r, count(*) AS n FROM (
       SELECT customer_id, retention(order_ts < TIMESTAMP '2023-01-01',
                                     order_ts >= TIMESTAMP '2023-01-01' AND order_ts < TIMESTAMP '2023-07-01',
                                     order_ts >= TIMESTAMP '2023-07-01') AS r
       FROM purchases GROUP BY customer_id) GROUP BY r ORDER BY n, CAST(r AS VARCHAR)",
    // cohort_retention (a table function with internal aggregates)
    "SELECT cohort, period, cohort_size, active_customers, round(revenue, 4) AS revenue
     FROM cohort_retention('purchases', 'month') ORDER BY cohort, period",
    // the same through a week triangle with as_of
    "SELECT count(*), sum(active_customers), round(sum(revenue), 2)
     FROM cohort_retention('purchases', 'week', TIMESTAMP '2024-03-31')",
    // unbounded, by a breakdown (first_value with an order, the triangle grouped), DECIMAL revenue
    "SELECT breakdown, count(*), sum(active_customers), CAST(sum(cumulative_revenue) AS VARCHAR)
     FROM cohort_retention('purchases_decimal', 'quarter', 'unbounded', 'segment')
     GROUP BY breakdown ORDER BY breakdown",
    // rfm_summary (single phase) and bgnbd_fit over it
    "SELECT customer_id, s.frequency, s.recency, s.t, round(s.monetary_value, 6) AS m FROM (
       SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2024-07-01') AS s
       FROM purchases GROUP BY customer_id) ORDER BY customer_id",
    "WITH s AS (SELECT rfm_summary(order_ts, amount, TIMESTAMP '2024-07-01', 'week') AS s
                FROM purchases GROUP BY customer_id)
     SELECT round(p.r, 6), round(p.alpha, 6), round(p.a, 6), round(p.b, 6)
     FROM (SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p FROM s)",
    // churn_risk
    "SELECT customer_id, round(churn_risk(order_ts, TIMESTAMP '2024-07-01'), 9) AS risk
     FROM purchases GROUP BY customer_id ORDER BY customer_id",
    // strict_once, sequence_match_events, sequence_next_node and sessionize over events
    "SELECT level, count(*) AS n FROM (
       SELECT customer_id, window_funnel(86400, event_ts, event_type = 'visit', event_type IN ('visit', 'cart'),
                                         event_type = 'purchase', 'strict_once') AS level
       FROM events GROUP BY customer_id) GROUP BY level ORDER BY level",
    "SELECT next, cardinality(t) AS k, count(*) AS n FROM (
       SELECT customer_id, sequence_next_node('forward', 'first_match', event_ts, event_type, true,
                                              event_type = 'view') AS next,
              sequence_match_events('(?1).*(?2)', event_ts, event_type = 'view', event_type = 'cart') AS t
       FROM events GROUP BY customer_id) GROUP BY next, k ORDER BY next, k",
    "SELECT s, count(*) AS n FROM (
       SELECT sessionize(event_ts, INTERVAL '30 minutes') OVER (PARTITION BY customer_id ORDER BY event_ts) AS s
       FROM events) GROUP BY s ORDER BY s",
    // window_funnel and sequence_count over events
    "SELECT level, count(*) AS n FROM (
       SELECT customer_id, window_funnel(86400, event_ts, event_type = 'visit', event_type = 'view',
                                         event_type = 'cart', event_type = 'purchase') AS level
       FROM events GROUP BY customer_id) GROUP BY level ORDER BY level",
    "SELECT c, count(*) AS n FROM (
       SELECT customer_id, sequence_count('(?1)(?2)', event_ts, event_type = 'cart',
                                          event_type = 'purchase') AS c
       FROM events GROUP BY customer_id) GROUP BY c ORDER BY c",
    // lead_score
    "SELECT customer_id, round(lead_score(CASE event_type WHEN 'visit' THEN 1 WHEN 'view' THEN 2
                                                        WHEN 'cart' THEN 5 ELSE 8 END,
                                          event_ts, TIMESTAMP '2024-07-01', 14), 9) AS score
     FROM events GROUP BY customer_id ORDER BY customer_id",
    // lifecycle_by_period (a table function planned from shipped SQL)
    "SELECT period, status, customers FROM lifecycle_by_period('purchases', 'quarter')
     ORDER BY period, status",
    // customer_value (a table function over shipped SQL, with model fits)
    "SELECT stage, count(*) AS n, round(avg(p_alive), 6) AS p, round(sum(expected_purchases), 3) AS e
     FROM customer_value('purchases', TIMESTAMP '2024-07-01') GROUP BY stage ORDER BY stage",
    // scalar functions
    "SELECT period_start('quarter', order_ts) AS q, count(*) AS n,
            sum(period_diff('month', TIMESTAMP '2022-01-01', order_ts)) AS months
     FROM purchases GROUP BY 1 ORDER BY 1",
];

fn tables(dir: &Path) -> Vec<(String, String)> {
    ["purchases", "events", "customers"]
        .iter()
        .map(|t| (t.to_string(), dir.join(t).to_str().unwrap().to_string()))
        .collect()
}

/// The answers of every query in one process.
async fn local_answers(dir: &Path) -> Vec<Vec<Vec<String>>> {
    let t = tables(dir);
    let t: Vec<(&str, &str)> = t.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let ctx = session(4, &t).await;
    query(&ctx, PREPARE).await;
    let mut out = vec![];
    for q in QUERIES {
        out.push(query(&ctx, q).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_cluster_answers_on_lifecycle_stores() {
    use lifecycle::engine::store::write::{SyncOptions, sync};
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), 1_500, 3);
    let expected = local_answers(tmp.path()).await;
    // Purchases and events as stores (two runs per bucket for purchases: two syncs).
    let local = lifecycle::engine::session::local_context(&Default::default()).unwrap();
    let stores = tmp.path().join("stores");
    for t in ["purchases", "events"] {
        let src = tmp.path().join(format!("src_{t}"));
        std::fs::create_dir_all(&src).unwrap();
        let parts: Vec<_> = std::fs::read_dir(tmp.path().join(t))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for (i, p) in parts.iter().enumerate() {
            std::fs::copy(p, src.join(p.file_name().unwrap())).unwrap();
            if i == 0 || i == parts.len() - 1 {
                sync(
                    &local,
                    &SyncOptions {
                        source: src.to_str().unwrap().into(),
                        store: stores.join(t).to_str().unwrap().into(),
                        key: None,
                        order: None,
                        buckets: Some(3),
                        rebuild: false,
                    },
                )
                .await
                .unwrap();
            }
        }
    }
    let ctx = lifecycle::cluster::standalone(2).await.expect("standalone");
    for (name, path) in tables(tmp.path()) {
        let path = if name == "customers" {
            path
        } else {
            stores.join(&name).to_str().unwrap().to_string()
        };
        lifecycle::engine::session::register_parquet(&ctx, &name, &path)
            .await
            .unwrap();
    }
    query(&ctx, PREPARE).await;
    for (q, want) in QUERIES.iter().zip(&expected) {
        assert_eq!(&query(&ctx, q).await, want, "{q}");
    }
    // The per-customer stage reads the store's buckets in place (its runs merged in order):
    // no shuffle below the per-customer aggregate.
    let explain: Vec<String> = query(&ctx, &format!("EXPLAIN {}", QUERIES[0]))
        .await
        .into_iter()
        .map(|r| r.join("\n"))
        .collect();
    let dist = explain
        .iter()
        .find(|r| r.starts_with("distributed_plan"))
        .expect("a distributed plan");
    let stage = dist
        .split("=========")
        .find(|s| s.contains("gby=[customer_id@"))
        .unwrap_or_else(|| panic!("no per-customer stage in\n{dist}"));
    assert!(
        stage.contains("StoreBucketMergeExec")
            && !stage.contains("ShuffleReaderExec")
            && !stage.contains("UnresolvedShuffleExec"),
        "the per-customer stage shuffles:\n{dist}"
    );
    // A sync after the cluster session registered the store: the next query reads the new
    // version (the client names its files in the plan it sends).
    let src = tmp.path().join("src_purchases");
    let first = std::fs::read_dir(&src)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&first, src.join("again.parquet")).unwrap();
    sync(
        &local,
        &SyncOptions {
            source: src.to_str().unwrap().into(),
            store: stores.join("purchases").to_str().unwrap().into(),
            key: None,
            order: None,
            buckets: None,
            rebuild: false,
        },
    )
    .await
    .unwrap();
    let count = "SELECT count(*), sum(amount) FROM purchases";
    let on_files = crate::common::session(2, &[("purchases", src.to_str().unwrap())]).await;
    assert_eq!(query(&ctx, count).await, query(&on_files, count).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_cluster_gives_the_single_process_answers() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), 1_500, 3);
    let expected = local_answers(tmp.path()).await;

    let ctx = lifecycle::cluster::standalone(2).await.expect("standalone");
    for (name, path) in tables(tmp.path()) {
        lifecycle::engine::session::register_parquet(&ctx, &name, &path)
            .await
            .unwrap();
    }
    query(&ctx, PREPARE).await;
    for (q, want) in QUERIES.iter().zip(&expected) {
        assert!(!want.is_empty(), "{q}");
        assert_eq!(&query(&ctx, q).await, want, "{q}");
    }
    // The session thresholds reach the cluster: churn_days 120 makes more customers churned.
    let count = "SELECT count(*) FROM (SELECT customer_id, churn_flag(order_ts, TIMESTAMP '2024-06-30') AS c
                 FROM purchases GROUP BY customer_id) WHERE c";
    let before = query(&ctx, count).await;
    query(&ctx, "SET lifecycle.churn_days = 120").await;
    let after = query(&ctx, count).await;
    let local = session(
        4,
        &[("purchases", tmp.path().join("purchases").to_str().unwrap())],
    )
    .await;
    query(&local, "SET lifecycle.churn_days = 120").await;
    assert_eq!(after, query(&local, count).await);
    assert_ne!(before, after);
    // The Flight SQL server over the cluster session: the same answers to a client.
    let (tx_addr, rx_addr) = tokio::sync::oneshot::channel();
    let (tx_stop, rx_stop) = tokio::sync::oneshot::channel::<()>();
    let opts = lifecycle::server::ServeOptions {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        pg_listen: None,
        token: None,
        tls: None,
        max_concurrent_queries: 2,
        memory_limit: None,
        shutdown_grace: Duration::from_secs(5),
        ..Default::default()
    };
    let server = tokio::spawn(lifecycle::server::serve(
        ctx.clone(),
        opts,
        Some(tx_addr),
        async {
            let _ = rx_stop.await;
        },
    ));
    let mut client = crate::server::client(rx_addr.await.unwrap().flight.unwrap()).await;
    let batches = crate::server::run(&mut client, QUERIES[2]).await.unwrap();
    assert_eq!(crate::common::rows(&batches), expected[2]);
    let _ = tx_stop.send(());
    server.await.unwrap().unwrap();

    // A bad query is an error, and the session keeps working.
    assert!(
        ctx.sql("SELECT lifecycle_stage(amount, 1) FROM purchases")
            .await
            .is_err()
    );
    assert_eq!(query(&ctx, "SELECT count(*) FROM purchases").await.len(), 1);
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifecycle"))
}

/// Starts `lifecycle scheduler` on a free port and returns it, its address (read from the line
/// it prints when it listens) and the job lines it logs afterwards.
fn start_scheduler() -> (Proc, String, Receiver<String>) {
    start_scheduler_with(&[])
}

/// [`start_scheduler`] with more arguments (a token, TLS, a shorter executor timeout).
fn start_scheduler_with(extra: &[&str]) -> (Proc, String, Receiver<String>) {
    let mut child = bin()
        .args(["scheduler", "--bind", "127.0.0.1:0"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("lifecycle scheduler listening on ") {
                let _ = addr_tx.send(addr.to_string());
            } else if line.contains("] job ") {
                let _ = jobs_tx.send(line);
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("scheduler did not start");
    (Proc(child), addr, jobs_rx)
}

fn start_executor(scheduler: &str, work: &Path) -> Proc {
    start_executor_with(scheduler, work, &[])
}

/// [`start_executor`] with more arguments (a token, TLS, a shorter heartbeat).
fn start_executor_with(scheduler: &str, work: &Path, extra: &[&str]) -> Proc {
    let (flight, grpc) = (free_port(), free_port());
    let child = bin()
        .args([
            "executor",
            "--scheduler",
            scheduler
                .trim_start_matches("dfs://")
                .trim_start_matches("df://"),
            "--bind",
            &format!("127.0.0.1:{flight}"),
            "--grpc-bind",
            &format!("127.0.0.1:{grpc}"),
            "--concurrent-tasks",
            "2",
            "--memory-limit",
            "512M",
            "--work-dir",
            work.to_str().unwrap(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        // LIFECYCLE_TEST_LOG=1 shows the executors' logs.
        .stderr(if std::env::var_os("LIFECYCLE_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    Proc(child)
}

/// `lifecycle sql [--cluster]` with the tables, as CSV.
fn lifecycle_sql(cluster: Option<&str>, dir: &Path, sql: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(["sql", "--format", "csv"]);
    if let Some(c) = cluster {
        cmd.args(["--cluster", c]);
    }
    for (name, path) in tables(dir) {
        cmd.args(["--table", &format!("{name}={path}")]);
    }
    for s in sql {
        cmd.args(["-c", s]);
    }
    cmd.output().unwrap()
}

#[test]
fn a_cluster_of_processes_gives_the_single_process_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, 1_500, 4);
    let (scheduler, addr, job_lines) = start_scheduler();
    let e1 = start_executor(&addr, &tmp.path().join("w1"));
    let mut e2 = Some(start_executor(&addr, &tmp.path().join("w2")));

    for q in QUERIES {
        // The same command without --cluster: the same printing, so lists and structs compare too.
        let local = lifecycle_sql(None, &data, &[PREPARE, q]);
        assert!(
            local.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&local.stderr)
        );
        let o = lifecycle_sql(Some(&addr), &data, &[PREPARE, q]);
        assert!(
            o.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(local.stdout.len() > 20, "{q}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&local.stdout),
            "{q}"
        );
    }
    // One log line per job on the scheduler.
    let line = job_lines
        .recv_timeout(Duration::from_secs(5))
        .expect("a job line");
    assert!(line.contains("finished in"), "{line}");

    // SET lifecycle.* in a cluster session.
    let count = "SELECT count(*) AS n FROM (SELECT customer_id, churn_flag(order_ts, TIMESTAMP '2024-06-30') AS c
                 FROM purchases GROUP BY customer_id) WHERE c";
    let o = lifecycle_sql(
        Some(&addr),
        &data,
        &[count, "SET lifecycle.churn_days = 120", count],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let local = lifecycle_sql(
        None,
        &data,
        &[count, "SET lifecycle.churn_days = 120", count],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text, String::from_utf8_lossy(&local.stdout));
    let counts: Vec<&str> = text.lines().filter(|l| *l != "n").collect();
    assert_eq!(counts.len(), 2, "{text}");
    assert_ne!(counts[0], counts[1], "churn_days 120 churns more customers");

    // A bad query: one clear error, and the cluster keeps serving.
    let o = lifecycle_sql(
        Some(&addr),
        &data,
        &["SELECT no_such_column FROM purchases"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no_such_column"));
    let o = lifecycle_sql(Some(&addr), &data, &["SELECT count(*) AS n FROM purchases"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The cohort report on the cluster equals the local one.
    let report = |cluster: Option<&str>| {
        let mut cmd = bin();
        cmd.args(["report", "cohort", "--format", "csv"]);
        if let Some(c) = cluster {
            cmd.args(["--cluster", c]);
        }
        for (name, path) in tables(&data) {
            cmd.args(["--table", &format!("{name}={path}")]);
        }
        cmd.output().unwrap()
    };
    let (local_report, cluster_report) = (report(None), report(Some(&addr)));
    assert!(
        cluster_report.status.success(),
        "{}",
        String::from_utf8_lossy(&cluster_report.stderr)
    );
    assert_eq!(local_report.stdout, cluster_report.stdout);

    // An executor killed during a query: the query is retried on the other executor or fails
    // with an error, and never hangs; the cluster then still answers.
    let heavy = "SELECT count(*) AS n FROM (SELECT p.customer_id FROM purchases p JOIN purchases q
                 ON p.customer_id = q.customer_id JOIN purchases r ON p.customer_id = r.customer_id)";
    let mut cmd = bin();
    cmd.args(["sql", "--cluster", &addr, "--format", "csv", "-c", heavy]);
    for (name, path) in tables(&data) {
        cmd.args(["--table", &format!("{name}={path}")]);
    }
    let started = Instant::now();
    let client = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(e2.take());
    let out = client.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "the query hung"
    );
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("Error:"), "{err}");
    }
    let o = lifecycle_sql(Some(&addr), &data, &["SELECT count(*) AS n FROM purchases"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A UNION ALL of two single-partition stages (lifecycle_by_period over a one-row file) is
    // read once per branch: 1 new customer, every time (Ballista's adaptive planner sometimes
    // read one branch twice).
    let one = tmp.path().join("one.parquet");
    let copy = format!(
        "COPY (SELECT CAST(1 AS BIGINT) AS customer_id, TIMESTAMP '2024-01-05 00:00:00' AS order_ts, 10.0 AS amount) TO '{}'",
        one.display()
    );
    assert!(
        bin()
            .args(["sql", "-c", &copy])
            .output()
            .unwrap()
            .status
            .success()
    );
    for _ in 0..8 {
        let o = bin()
            .args(["sql", "--cluster", &addr, "--format", "csv", "--table"])
            .arg(format!("p={}", one.display()))
            .args(["-c", "SELECT status, customers FROM lifecycle_by_period('p', 'month') WHERE customers > 0"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "status,customers\nnew,1\n",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // SIGTERM stops the scheduler and an executor cleanly (exit status 0) and promptly.
    for mut p in [e1, scheduler] {
        // SAFETY: kill(2) with a child's pid and a signal number.
        unsafe { libc::kill(p.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = p.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{status}");
    }
}

#[test]
fn cluster_mistakes_fail_with_one_clear_line() {
    let err = |args: &[&str]| {
        let o = bin().args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?}");
        String::from_utf8_lossy(&o.stderr).trim().to_string()
    };
    // Not a cluster address.
    let e = err(&["sql", "--cluster", "http://127.0.0.1:1", "-c", "SELECT 1"]);
    assert!(e.contains("df://HOST:PORT"), "{e}");
    // The embedded sample cannot be sent to a cluster.
    let e = err(&["sql", "--cluster", "df://127.0.0.1:1", "-c", "SELECT 1"]);
    assert!(e.contains("needs --table"), "{e}");
    // No scheduler there: one line naming the address.
    let free = free_port().to_string();
    let addr = format!("df://127.0.0.1:{free}");
    let e = err(&[
        "sql",
        "--cluster",
        &addr,
        "--table",
        "p=/nonexistent",
        "-c",
        "SELECT 1",
    ]);
    assert!(
        e.starts_with("Error:") && e.contains(&addr) && e.lines().count() == 1,
        "{e}"
    );
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let e = err(&["scheduler", "--bind", &bind]);
    assert!(e.contains("cannot listen on") && e.contains(&bind), "{e}");
    // An executor whose scheduler is not running.
    let e = err(&[
        "executor",
        "--scheduler",
        &format!("127.0.0.1:{free}"),
        "--bind",
        "127.0.0.1:0",
        "--grpc-bind",
        "127.0.0.1:0",
    ]);
    let last = e.lines().last().unwrap();
    assert!(
        last.starts_with("Error:") && last.contains(&format!("scheduler at 127.0.0.1:{free}")),
        "{e}"
    );
}

/// The self-join of issue 24's reproduction: every pair of a customer's distinct orders. The
/// amounts are summed as DECIMAL, exactly, so that any run's answer is the one answer (a DOUBLE
/// sum depends on the order rows arrive in, in its last digits).
const SELF_JOIN: &str = "SELECT count(*) AS n,
    CAST(sum(CAST(a.amount AS DECIMAL(18, 2)) * CAST(b.amount AS DECIMAL(18, 2))) AS VARCHAR) AS s
    FROM purchases a
    JOIN purchases b ON a.customer_id = b.customer_id AND a.order_id <> b.order_id";

/// Settings that make the self-join a partitioned hash join of many small tasks (as on data too
/// large to broadcast): two map stages, a join stage of 8 tasks, a final stage.
const JOIN_SETTINGS: &[&str] = &[
    "SET datafusion.execution.target_partitions = 8",
    "SET datafusion.optimizer.hash_join_single_partition_threshold = 0",
    "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
    "SET ballista.optimizer.broadcast_join_threshold_bytes = 0",
    "SET ballista.optimizer.broadcast_join_threshold_rows = 0",
    "SET ballista.scheduler.max_partitions_per_task = 1",
];

/// An executor whose log lines (tasks starting and finishing, with their stage) come through
/// `lines` as `(executor, stage, finished)`.
fn start_logged_executor(
    scheduler: &str,
    work: &Path,
    index: usize,
    lines: std::sync::mpsc::Sender<(usize, usize, bool)>,
) -> Proc {
    let (flight, grpc) = (free_port(), free_port());
    let mut child = bin()
        .args([
            "executor",
            "--scheduler",
            scheduler.trim_start_matches("df://"),
        ])
        .args(["--bind", &format!("127.0.0.1:{flight}")])
        .args(["--grpc-bind", &format!("127.0.0.1:{grpc}")])
        .args(["--concurrent-tasks", "2", "--heartbeat-interval", "1"])
        .args(["--work-dir", work.to_str().unwrap()])
        .env("RUST_LOG", "warn,ballista_executor::executor_server=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        // "Execute task  : [TID <job>/<stage>.<attempt>/<partition>.<attempt>]", "Finished task : ..."
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let finished = line.contains("Finished task");
            if !finished && !line.contains("Execute task") {
                continue;
            }
            let stage = line
                .split("[TID ")
                .nth(1)
                .and_then(|t| t.split('/').nth(1))
                .and_then(|t| t.split('.').next())
                .and_then(|t| t.parse::<usize>().ok());
            if let Some(stage) = stage {
                let _ = lines.send((index, stage, finished));
            }
        }
    });
    Proc(child)
}

/// When in a job an executor is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// When the map stages start.
    Early,
    /// During the join stage, once one of its tasks has finished on the other executor.
    Mid,
    /// When the last stage starts.
    Late,
}

/// An executor SIGKILLed at three moments of a job (5 runs each) on a cluster that declares an
/// executor dead after 4 s: every run answers exactly as one process does, or fails with one
/// error line, never with another number. (Ballista 55 kept what a rolled-back stage had
/// already published and read it again beside the stage's new attempt: an inflated count with
/// exit status 0. See third_party/README.md.)
#[test]
fn an_executor_killed_at_any_moment_gives_the_answer_or_one_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, 40_000, 8);
    let statements: Vec<&str> = JOIN_SETTINGS.iter().copied().chain([SELF_JOIN]).collect();
    let local = lifecycle_sql(None, &data, &[SELF_JOIN]);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let expected = String::from_utf8_lossy(&local.stdout).to_string();
    assert!(
        expected.starts_with("n,s\n") && expected.lines().count() == 2,
        "{expected}"
    );

    let (_scheduler, addr, _jobs) = start_scheduler_with(&["--executor-timeout", "4"]);
    let mut outcomes = vec![];
    let runs = [Moment::Early, Moment::Mid, Moment::Late]
        .into_iter()
        .flat_map(|m| std::iter::repeat_n(m, 5));
    for (run, moment) in runs.enumerate() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut executors = [0, 1].map(|i| {
            let work = tmp.path().join(format!("run{run}-{i}"));
            Some(start_logged_executor(&addr, &work, i, tx.clone()))
        });
        // Registered, and the executors of the run before declared dead, before the query.
        std::thread::sleep(Duration::from_secs(if run == 0 { 2 } else { 6 }));
        let mut cmd = bin();
        cmd.args(["sql", "--cluster", &addr, "--format", "csv"]);
        for (name, path) in tables(&data) {
            cmd.args(["--table", &format!("{name}={path}")]);
        }
        for s in &statements {
            cmd.args(["-c", s]);
        }
        let mut client = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut killed = None;
        while killed.is_none() && client.try_wait().unwrap().is_none() {
            let Ok((executor, stage, finished)) = rx.recv_timeout(Duration::from_millis(50)) else {
                continue;
            };
            let victim = match moment {
                Moment::Early if stage <= 2 => Some(executor),
                // The join stage (the third) has a finished task on one executor: kill the
                // other, whose map outputs the stage's remaining tasks still need.
                Moment::Mid if stage == 3 && finished => Some(1 - executor),
                Moment::Late if stage >= 4 && !finished => Some((executor + run) % 2),
                _ => None,
            };
            if let Some(v) = victim {
                drop(executors[v].take());
                killed = Some((v, started.elapsed()));
            }
        }
        // Never a hang: the answer or an error within two minutes.
        while client.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                let _ = client.kill();
                panic!("run {run} ({moment:?}, killed {killed:?}): the query hung for 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let outcome = if out.status.success() {
            assert_eq!(
                stdout, expected,
                "run {run} ({moment:?}, killed {killed:?}): a different answer with exit status 0"
            );
            "the answer"
        } else {
            assert!(
                stderr.starts_with("Error:") && stderr.lines().count() == 1,
                "run {run} ({moment:?}, killed {killed:?}): not one error line: {stderr}"
            );
            "one error line"
        };
        eprintln!(
            "run {run} {moment:?}: killed {killed:?}, {outcome} after {:.1?}: {stderr}",
            started.elapsed()
        );
        outcomes.push((moment, killed.is_some(), outcome));
        drop(executors);
    }
    // Every run killed an executor at its moment (a run that ended first would test nothing).
    assert!(outcomes.iter().all(|(_, k, _)| *k), "{outcomes:?}");
}

/// A cluster with a token: a client or an executor without it (or with another) is refused
/// with one clear error, and one with it gets the answers. A table the scheduler cannot see is
/// an error naming the path, not an empty result.
#[test]
fn the_cluster_is_authenticated_and_an_invisible_table_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, 300, 2);
    let token = tmp.path().join("token");
    std::fs::write(&token, "cluster-s3cret\n").unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let token_arg = token.to_str().unwrap();
    let (_scheduler, addr, _) = start_scheduler_with(&["--token-file", token_arg]);
    let _e1 = start_executor_with(&addr, &tmp.path().join("w1"), &["--token-file", token_arg]);

    // An executor without the token cannot register: it stops with one error line.
    let o = bin()
        .args([
            "executor",
            "--scheduler",
            addr.trim_start_matches("df://"),
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
            "--grpc-bind",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.lines().last().unwrap().starts_with("Error:"), "{e}");

    let count = "SELECT count(*) AS n FROM purchases";
    let run = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["sql", "--cluster", &addr, "--format", "csv"])
            .args(extra);
        for (name, path) in tables(&data) {
            cmd.args(["--table", &format!("{name}={path}")]);
        }
        cmd.args(["-c", count]).output().unwrap()
    };
    for extra in [&[][..], &["--token-file", wrong.to_str().unwrap()][..]] {
        let o = run(extra);
        assert!(!o.status.success(), "{extra:?}");
        let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert!(
            e.starts_with("Error:") && e.lines().count() == 1 && e.contains("refused this client"),
            "{extra:?}: {e}"
        );
    }
    let local = lifecycle_sql(None, &data, &[count]);
    let o = run(&["--token-file", token_arg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, local.stdout);

    // A table whose files exist where the client registered it, and nowhere the scheduler
    // looks: an error naming the path, never an empty table.
    let gone = tmp.path().join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    for f in std::fs::read_dir(data.join("purchases")).unwrap().flatten() {
        std::fs::copy(f.path(), gone.join(f.file_name())).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = lifecycle::engine::config::ClusterClient {
            url: addr.clone(),
            token_file: Some(token.clone()),
            ca: None,
        };
        let ctx = lifecycle::cluster::connect(&client, lifecycle::engine::storage::Stores::new())
            .await
            .unwrap();
        lifecycle::engine::session::register_parquet(&ctx, "p", gone.to_str().unwrap())
            .await
            .unwrap();
        std::fs::remove_dir_all(&gone).unwrap();
        let err = match ctx.sql("SELECT count(*) FROM p").await {
            Ok(df) => df.collect().await.map(|_| ()).unwrap_err(),
            Err(e) => e,
        };
        let line = lifecycle::engine::errors::error_line(&err);
        assert!(
            line.contains(gone.to_str().unwrap()) && line.contains("scheduler"),
            "{line}"
        );
    });
}

/// A cluster over TLS: scheduler and executors serve with a certificate, a client connects with
/// dfs:// and the authority; a plaintext client is refused.
#[test]
fn a_tls_cluster_answers_over_tls_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, 300, 2);
    let (ca, cert, key) = crate::server::test_certificates(tmp.path());
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca.to_str().unwrap(),
    ];
    let (_scheduler, addr, _) = start_scheduler_with(&tls);
    assert!(addr.starts_with("dfs://"), "{addr}");
    let _e1 = start_executor_with(&addr, &tmp.path().join("w1"), &tls);
    let _e2 = start_executor_with(&addr, &tmp.path().join("w2"), &tls);
    std::thread::sleep(Duration::from_secs(2));
    let q = "SELECT customer_id, count(*) AS n FROM purchases GROUP BY customer_id ORDER BY customer_id";
    let local = lifecycle_sql(None, &data, &[q]);
    let mut cmd = bin();
    cmd.args([
        "sql",
        "--cluster",
        &addr,
        "--cluster-ca",
        ca.to_str().unwrap(),
    ]);
    cmd.args(["--format", "csv"]);
    for (name, path) in tables(&data) {
        cmd.args(["--table", &format!("{name}={path}")]);
    }
    let o = cmd.args(["-c", q]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, local.stdout);
    // Plaintext to a TLS scheduler: one error line naming the address.
    let plain = addr.replacen("dfs://", "df://", 1);
    let o = lifecycle_sql(Some(&plain), &data, &[q]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(
        e.starts_with("Error:") && e.lines().count() == 1 && e.contains(&plain),
        "{e}"
    );
}

/// A cluster's failures are one line each, naming what failed: an executor that cannot see a
/// table's files (here one in a private mount namespace, where the table's directory is an
/// empty tmpfs), and a scheduler killed during a query.
#[test]
fn cluster_failures_are_one_line_naming_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, 20_000, 4);
    let purchases = data.join("purchases");

    // An executor that cannot see the files the scheduler planned.
    let (_scheduler, addr, _) = start_scheduler();
    let (flight, grpc) = (free_port(), free_port());
    let hidden = format!(
        "mount -t tmpfs none '{}' && exec '{}' executor --scheduler {} --bind 127.0.0.1:{flight} \
         --grpc-bind 127.0.0.1:{grpc} --work-dir '{}'",
        purchases.display(),
        env!("CARGO_BIN_EXE_lifecycle"),
        addr.trim_start_matches("df://"),
        tmp.path().join("w-hidden").display()
    );
    let _blind = Proc(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &hidden])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs an executor in a mount namespace of its own"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let o = lifecycle_sql(Some(&addr), &data, &["SELECT sum(amount) FROM purchases"]);
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(!o.status.success(), "{e}");
    assert!(
        e.starts_with("Error:")
            && e.lines().count() == 1
            && e.contains(&format!("executor 127.0.0.1:{flight} cannot read"))
            && e.contains(purchases.to_str().unwrap()),
        "{e}"
    );

    // The scheduler killed while a query runs: one line naming it.
    let (scheduler, addr, _) = start_scheduler();
    let _e1 = start_executor(&addr, &tmp.path().join("w1"));
    std::thread::sleep(Duration::from_secs(1));
    let heavy = "SELECT count(*) FROM purchases a JOIN purchases b ON a.customer_id = b.customer_id
                 JOIN purchases c ON a.customer_id = c.customer_id JOIN purchases d ON a.customer_id = d.customer_id";
    let mut cmd = bin();
    cmd.args(["sql", "--cluster", &addr, "--format", "csv", "-c", heavy]);
    for (name, path) in tables(&data) {
        cmd.args(["--table", &format!("{name}={path}")]);
    }
    let client = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(scheduler);
    let out = client.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "the query finished before the scheduler was killed: {e}"
    );
    assert!(
        e.starts_with("Error:")
            && e.lines().count() == 1
            && e.contains(&format!("lost the scheduler at {addr}")),
        "{e}"
    );
}
