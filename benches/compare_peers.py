#!/usr/bin/env python3
"""Lifecycle vs DuckDB vs ClickHouse (chdb) on the same Parquet files and the same questions.

    cargo build --release
    target/release/lifecycle generate --customers 15000000 --out /tmp/lc-retail --no-events
    target/release/lifecycle generate --customers 2000000 --shape dense --out /tmp/lc-dense
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install duckdb chdb
    /tmp/venv/bin/python benches/compare_peers.py --data /tmp/lc-dense [--memory-limit 2G]

Every workload is one question answered by all engines, each run in a fresh process per run
(`--runs`, median reported) so peak memory is per query:
- Lifecycle: the whole `lifecycle sql -c` process (start-up, planning, reading, answering), timed
  from outside; it uses one partition per core.
- DuckDB and ClickHouse: the question written in plain SQL (they have no lifecycle functions) in a
  worker process started by this script; only the query itself is timed (execute and fetch, files
  warm), not the interpreter or the import. Both at `--threads` threads (default 2).
With `--memory-limit` every engine is bounded the same: Lifecycle `--memory-limit`, DuckDB
`memory_limit`, ClickHouse `max_memory_usage` with external GROUP BY / sort beyond half of it.

With `--warehouse DIR`, every engine reads its own warehouse layout of the same rows instead of the
Parquet files: Lifecycle a lifecycle store per table (`DIR/store/TABLE`, `lifecycle store sync`),
DuckDB a table created `ORDER BY customer_id, time` in a database file (`DIR/duckdb.db`), ClickHouse
a MergeTree table `ORDER BY (customer_id, time)` in a chdb session directory (`DIR/chdb`), timed with
`optimize_aggregation_in_order` off and on and the faster taken. `--prepare` builds the three from
`--data` first and prints their load times (the DuckDB and ClickHouse loads at `--threads`).

Each answer is a few summary numbers (counts, sums, checksums) compared across engines, floats to
a relative 1e-9; a mismatch is printed and the script exits 1. The table gives seconds (median),
peak RSS and Lifecycle's time over the best peer's.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

AS_OF = "2025-01-01 00:00:00"

# Each workload: Lifecycle SQL, DuckDB SQL (None: no plain-SQL version run), ClickHouse SQL, and
# the table it reads ("purchases" or "events").
STAGE_CASE = f"""CASE
    WHEN TIMESTAMP '{AS_OF}' - last_ts > INTERVAL 180 DAY THEN 'churned'
    WHEN TIMESTAMP '{AS_OF}' - last_ts > INTERVAL 90 DAY THEN 'at_risk'
    WHEN n >= 2 AND last_ts - prev_ts > INTERVAL 180 DAY THEN 'reactivated'
    WHEN n = 1 THEN 'new'
    WHEN nw >= 4 THEN 'loyal'
    ELSE 'repeat' END"""

CH_AS_OF = f"toDateTime64('{AS_OF}', 6, 'UTC')"
CH_STAGE_CASE = f"""multiIf(
    dateDiff('microsecond', last_ts, {CH_AS_OF}) > 180 * 86400000000, 'churned',
    dateDiff('microsecond', last_ts, {CH_AS_OF}) > 90 * 86400000000, 'at_risk',
    n >= 2 AND dateDiff('microsecond', prev_ts, last_ts) > 180 * 86400000000, 'reactivated',
    n = 1, 'new',
    nw >= 4, 'loyal',
    'repeat')"""

# rfm_summary in plain SQL (lifetimes' summary_data_from_transaction_data, days): per customer
# and day the summed amount; frequency = days - 1, recency = last - first day, t = as_of day -
# first day, monetary = mean of the repeat days' sums (0 for one-time buyers).
DUCK_RFM = f"""WITH d AS (
      SELECT customer_id, CAST(order_ts AS DATE) AS day, sum(amount) AS amt
      FROM purchases WHERE order_ts <= TIMESTAMP '{AS_OF}' GROUP BY ALL),
    c AS (
      SELECT count(*) - 1 AS frequency, max(day) - min(day) AS recency,
             DATE '{AS_OF[:10]}' - min(day) AS t,
             CASE WHEN count(*) = 1 THEN 0 ELSE (sum(amt) - arg_min(amt, day)) / (count(*) - 1) END AS m
      FROM d GROUP BY customer_id)"""
# (Float64 before the division: ClickHouse divides a Decimal to the dividend's scale, truncating.)
CH_RFM = f"""WITH d AS (
      SELECT customer_id, toDate(order_ts) AS day, sum(amount) AS amt
      FROM purchases WHERE order_ts <= {CH_AS_OF} GROUP BY customer_id, day),
    c AS (
      SELECT count() - 1 AS frequency, toInt64(max(day)) - toInt64(min(day)) AS recency,
             toInt64(toDate('{AS_OF[:10]}')) - toInt64(min(day)) AS t,
             if(count() = 1, 0, toFloat64(sum(amt) - argMin(amt, day)) / (count() - 1)) AS m
      FROM d GROUP BY customer_id)"""

STEPS = ["visit", "view", "cart", "checkout", "purchase"]
FUNNEL_WINDOW_S = 86400

WORKLOADS = {
    "floor": (
        "SELECT count(*), sum(n), round(sum(s), 2) FROM (SELECT customer_id, count(*) AS n, sum(amount) AS s "
        "FROM purchases GROUP BY customer_id)",
        "SELECT count(*), sum(n), round(sum(s), 2) FROM (SELECT customer_id, count(*) AS n, sum(amount) AS s "
        "FROM purchases GROUP BY customer_id)",
        "SELECT count(), sum(n), round(sum(s), 2) FROM (SELECT customer_id, count() AS n, sum(amount) AS s "
        "FROM purchases GROUP BY customer_id)",
        "purchases",
    ),
    "lifecycle_stage": (
        f"SELECT s, count(*) FROM (SELECT lifecycle_stage(order_ts, TIMESTAMP '{AS_OF}') AS s "
        "FROM purchases GROUP BY customer_id) GROUP BY s ORDER BY s",
        f"""WITH a AS (
              SELECT customer_id, count(*) AS n, max(order_ts) AS last_ts,
                     list_extract(max(order_ts, 2), 2) AS prev_ts,
                     count(*) FILTER (WHERE order_ts > TIMESTAMP '{AS_OF}' - INTERVAL 365 DAY) AS nw
              FROM purchases WHERE order_ts <= TIMESTAMP '{AS_OF}' GROUP BY customer_id)
            SELECT s, count(*) FROM (SELECT {STAGE_CASE} AS s FROM a) GROUP BY s ORDER BY s""",
        f"""WITH a AS (
              SELECT customer_id, count() AS n, max(order_ts) AS last_ts,
                     groupArraySorted(2)(-toUnixTimestamp64Micro(order_ts))[2] AS neg_prev,
                     countIf(order_ts > {CH_AS_OF} - INTERVAL 365 DAY) AS nw
              FROM purchases WHERE order_ts <= {CH_AS_OF} GROUP BY customer_id),
            b AS (SELECT n, last_ts, nw, fromUnixTimestamp64Micro(-neg_prev, 'UTC') AS prev_ts FROM a)
            SELECT {CH_STAGE_CASE} AS s, count() FROM b GROUP BY s ORDER BY s""",
        "purchases",
    ),
    "cohort_retention_month": (
        "SELECT count(*) FILTER (WHERE active_customers > 0), sum(active_customers), "
        "sum(active_customers * period), sum(CASE WHEN period = 0 THEN cohort_size ELSE 0 END), round(sum(revenue), 2) "
        "FROM cohort_retention('purchases', 'month')",
        """WITH f AS (SELECT customer_id, date_trunc('month', min(order_ts)) AS cohort
                      FROM purchases GROUP BY customer_id),
                s AS (SELECT cohort, count(*) AS n FROM f GROUP BY cohort),
                c AS (SELECT f.cohort, datediff('month', f.cohort, p.order_ts) AS period,
                             count(DISTINCT p.customer_id) AS active, sum(p.amount) AS revenue
                      FROM purchases p JOIN f USING (customer_id) GROUP BY 1, 2)
           SELECT count(*), sum(active), sum(active * period), sum(CASE WHEN period = 0 THEN n ELSE 0 END),
                  round(sum(revenue), 2)
           FROM c JOIN s USING (cohort)""",
        """WITH f AS (SELECT customer_id, toStartOfMonth(min(order_ts)) AS cohort
                      FROM purchases GROUP BY customer_id),
                s AS (SELECT cohort, count() AS n FROM f GROUP BY cohort),
                c AS (SELECT f.cohort AS cohort, dateDiff('month', f.cohort, p.order_ts) AS period,
                             uniqExact(p.customer_id) AS active, sum(p.amount) AS revenue
                      FROM purchases AS p INNER JOIN f ON p.customer_id = f.customer_id GROUP BY cohort, period)
           SELECT count(), sum(active), sum(active * period), sum(if(period = 0, n, 0)), round(sum(revenue), 2)
           FROM c INNER JOIN s ON c.cohort = s.cohort""",
        "purchases",
    ),
    "rfm_summary": (
        f"SELECT count(*), sum(s.frequency), sum(s.recency), sum(s.t), round(sum(s.monetary_value), 4) FROM "
        f"(SELECT rfm_summary(order_ts, amount, TIMESTAMP '{AS_OF}') AS s FROM purchases GROUP BY customer_id)",
        DUCK_RFM + " SELECT count(*), sum(frequency), sum(recency), sum(t), round(sum(m), 4) FROM c",
        CH_RFM + " SELECT count(), sum(frequency), sum(recency), sum(t), round(sum(m), 4) FROM c",
        "purchases",
    ),
    "churn_risk": (
        f"SELECT count(r), round(sum(r), 6) FROM (SELECT churn_risk(order_ts, TIMESTAMP '{AS_OF}') AS r "
        "FROM purchases GROUP BY customer_id)",
        DUCK_RFM + " SELECT count(r), round(sum(r), 6) FROM (SELECT CASE WHEN frequency > 0 AND recency > 0 "
        "THEN exp(-frequency / recency * (t - recency)) END AS r FROM c)",
        CH_RFM + " SELECT count(r), round(sum(r), 6) FROM (SELECT if(frequency > 0 AND recency > 0, "
        "exp(-frequency / recency * (t - recency)), NULL) AS r FROM c)",
        "purchases",
    ),
    "window_funnel": (
        "SELECT level, count(*) FROM (SELECT customer_id, window_funnel("
        + str(FUNNEL_WINDOW_S) + ", event_ts, "
        + ", ".join(f"event_type = '{s}'" for s in STEPS)
        + ") AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level",
        None,
        "SELECT level, count() FROM (SELECT customer_id, windowFunnel("
        + str(FUNNEL_WINDOW_S * 1_000_000) + ")(toUInt64(toUnixTimestamp64Micro(event_ts)), "
        + ", ".join(f"event_type = '{s}'" for s in STEPS)
        + ") AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level",
        "events",
    ),
    # Sessions (a new one after a gap of more than 30 minutes): rows, the sum and the largest of
    # the session numbers. The peers number them as the running count of gaps (lag, then a
    # running sum).
    "sessionize": (
        "SELECT count(*), sum(s), max(s) FROM (SELECT sessionize(event_ts, INTERVAL '30 minutes') "
        "OVER (PARTITION BY customer_id ORDER BY event_ts) AS s FROM events)",
        "SELECT count(*), sum(s), max(s) FROM (SELECT sum(CASE WHEN prev IS NULL OR event_ts - prev > "
        "INTERVAL 30 MINUTE THEN 1 ELSE 0 END) OVER (PARTITION BY customer_id ORDER BY event_ts "
        "ROWS UNBOUNDED PRECEDING) AS s FROM (SELECT customer_id, event_ts, lag(event_ts) OVER "
        "(PARTITION BY customer_id ORDER BY event_ts) AS prev FROM events))",
        "SELECT count(), sum(s), max(s) FROM (SELECT sum(if(rn = 1 OR dateDiff('microsecond', prev, event_ts) > "
        "1800000000, 1, 0)) OVER (PARTITION BY customer_id ORDER BY event_ts ROWS UNBOUNDED PRECEDING) AS s "
        "FROM (SELECT customer_id, event_ts, lagInFrame(event_ts) OVER (PARTITION BY customer_id ORDER BY "
        "event_ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev, row_number() OVER (PARTITION BY "
        "customer_id ORDER BY event_ts) AS rn FROM events))",
        "events",
    ),
}


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = s.strip().upper().rstrip("B")
    return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)


def run_measured(cmd):
    """Runs a command; returns (wall seconds, peak RSS bytes, stdout, stderr)."""
    import threading
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Read the pipes while waiting (a big output must not block the child).
    chunks = {"out": [], "err": []}
    def pump(stream, key):
        chunks[key].append(stream.read())
    threads = [threading.Thread(target=pump, args=(p.stdout, "out")),
               threading.Thread(target=pump, args=(p.stderr, "err"))]
    for th in threads:
        th.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    for th in threads:
        th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({p.returncode}): {err.strip()[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out, err


def lifecycle_rows(stdout):
    lines = [l for l in stdout.strip().splitlines() if l]
    return [l.split(",") for l in lines[1:]]


def normalise(rows):
    """Rows as tuples of floats or strings, for comparison."""
    out = []
    for r in rows:
        vals = []
        for v in r:
            if v is None or v == "" or v == "NULL" or v == "\\N":
                vals.append(None)
                continue
            try:
                vals.append(float(v))
            except (TypeError, ValueError):
                vals.append(str(v))
        out.append(tuple(vals))
    return out


def same(a, b):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6):
                    return False
            elif x != y:
                return False
    return True


# ---- peer workers (run as `compare_peers.py --worker ENGINE ...`) ----

TIME_COLUMNS = {"purchases": "order_ts", "events": "event_ts"}


def prepare_warehouse(args):
    """Builds the three warehouse layouts of --data under --warehouse; prints the load times."""
    import shutil
    os.makedirs(args.warehouse, exist_ok=True)
    tables = [t for t in TIME_COLUMNS if os.path.isdir(os.path.join(args.data, t))]
    print(f"loads into {args.warehouse} ({args.threads} threads for the peers):")
    for t in tables:
        store = os.path.join(args.warehouse, "store", t)
        shutil.rmtree(store, ignore_errors=True)
        cmd = [args.lifecycle, "store", "sync", "--table", f"{t}={os.path.join(args.data, t)}",
               "--store", store, "--order", TIME_COLUMNS[t]]
        if args.memory_limit:
            cmd += ["--memory-limit", args.memory_limit]
        wall, rss, _, _ = run_measured(cmd)
        print(f"- lifecycle store sync {t}: {wall:.2f} s ({rss / 2**20:.0f} MB)")
    for engine in ("duckdb", "clickhouse"):
        target = os.path.join(args.warehouse, "duckdb.db" if engine == "duckdb" else "chdb")
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--data", args.data,
               "--threads", str(args.threads), "--warehouse", args.warehouse, "--load"]
        _, rss, out, _ = run_measured(cmd)
        for line in out.strip().splitlines():
            print(f"- {engine} {line}")


def worker_load(args):
    """Loads --data into this engine's warehouse table(s), timing each."""
    tables = [t for t in TIME_COLUMNS if os.path.isdir(os.path.join(args.data, t))]
    if args.worker == "duckdb":
        import duckdb
        con = duckdb.connect(os.path.join(args.warehouse, "duckdb.db"))
        con.execute(f"SET threads = {args.threads}")
        con.execute("SET TimeZone = 'UTC'")
        for t in tables:
            p = os.path.join(args.data, t, "*.parquet")
            start = time.perf_counter()
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{p}') "
                        f"ORDER BY customer_id, {TIME_COLUMNS[t]}")
            con.execute("CHECKPOINT")
            print(f"load {t}: {time.perf_counter() - start:.2f} s")
        con.close()
    else:
        from chdb import session
        sess = session.Session(os.path.join(args.warehouse, "chdb"))
        for t in tables:
            p = os.path.join(args.data, t, "*.parquet")
            start = time.perf_counter()
            sess.query(f"CREATE TABLE {t} ENGINE = MergeTree ORDER BY (customer_id, {TIME_COLUMNS[t]}) "
                       f"AS SELECT * FROM file('{p}', Parquet) SETTINGS max_threads = {args.threads}")
            sess.query(f"OPTIMIZE TABLE {t} FINAL")
            print(f"load {t} (with OPTIMIZE FINAL): {time.perf_counter() - start:.2f} s")
        sess.close()


def worker(args):
    if args.load:
        return worker_load(args)
    sql = args.sql
    paths = {t: os.path.join(args.data, t, "*.parquet") for t in ("purchases", "events")}
    if args.worker == "duckdb":
        import duckdb
        con = duckdb.connect(os.path.join(args.warehouse, "duckdb.db"), read_only=True) \
            if args.warehouse else duckdb.connect()
        con.execute(f"SET threads = {args.threads}")
        if args.memory_limit:
            con.execute(f"SET memory_limit = '{parse_size(args.memory_limit)}B'")
            con.execute("SET temp_directory = '/tmp/compare_peers_duckdb'")
        con.execute("SET TimeZone = 'UTC'")
        for t, p in paths.items():
            if os.path.isdir(os.path.dirname(p)) and not args.warehouse:
                con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{p}')")
        t = time.perf_counter()
        rows = con.execute(sql).fetchall()
        secs = time.perf_counter() - t
        rows = [[None if v is None else str(v) for v in r] for r in rows]
    else:
        from chdb import session
        sess = session.Session(os.path.join(args.warehouse, "chdb")) if args.warehouse \
            else session.Session()
        settings = [f"max_threads = {args.threads}", "session_timezone = 'UTC'"]
        if args.ch_in_order is not None:
            settings.append(f"optimize_aggregation_in_order = {args.ch_in_order}")
        if args.memory_limit:
            limit = parse_size(args.memory_limit)
            settings += [f"max_memory_usage = {limit}",
                         f"max_bytes_before_external_group_by = {limit // 2}",
                         f"max_bytes_before_external_sort = {limit // 2}",
                         "join_algorithm = 'grace_hash,parallel_hash,hash'"]
        for t, p in paths.items():
            if os.path.isdir(os.path.dirname(p)) and not args.warehouse:
                sess.query(f"CREATE VIEW {t} AS SELECT * FROM file('{p}', Parquet)")
        q = sql + " SETTINGS " + ", ".join(settings)
        t = time.perf_counter()
        res = sess.query(q, "JSONCompact")
        secs = time.perf_counter() - t
        rows = [[None if v is None else str(v) for v in r] for r in json.loads(res.bytes())["data"]]
    print(json.dumps({"seconds": secs, "rows": rows}))


def run_peer(engine, sql, args, ch_in_order=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--data", args.data,
           "--threads", str(args.threads), "--sql", sql]
    if args.warehouse:
        cmd += ["--warehouse", args.warehouse]
    if ch_in_order is not None:
        cmd += ["--ch-in-order", str(ch_in_order)]
    if args.memory_limit:
        cmd += ["--memory-limit", args.memory_limit]
    _, rss, out, _ = run_measured(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return r["seconds"], rss, r["rows"]


def run_lifecycle(sql, table, args):
    path = os.path.join(args.warehouse, "store", table) if args.warehouse \
        else os.path.join(args.data, table)
    cmd = [args.lifecycle, "sql", "--format", "csv", "--table", f"{table}={path}", "-c", sql]
    if args.memory_limit:
        cmd[2:2] = ["--memory-limit", args.memory_limit]
    wall, rss, out, _ = run_measured(cmd)
    return wall, rss, lifecycle_rows(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory written by `lifecycle generate`")
    ap.add_argument("--lifecycle", default="target/release/lifecycle")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", help="e.g. 2G: the same bound for every engine")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    ap.add_argument("--engines", default="lifecycle,duckdb,clickhouse")
    ap.add_argument("--warehouse", help="directory of the warehouse layouts (see above)")
    ap.add_argument("--prepare", action="store_true", help="build --warehouse from --data first")
    ap.add_argument("--worker", choices=["duckdb", "clickhouse"], help=argparse.SUPPRESS)
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ch-in-order", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sql", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    if args.prepare:
        if not args.warehouse:
            ap.error("--prepare needs --warehouse")
        prepare_warehouse(args)
        print()
    engines = args.engines.split(",")
    names = [w for w in args.workloads.split(",") if w]
    print(f"data {args.data}; {os.cpu_count()} cores; {args.threads} threads per peer; "
          f"memory limit {args.memory_limit or 'none'}; median of {args.runs}")
    print()
    print("| workload | Lifecycle s (peak RSS) | DuckDB s (peak RSS) | ClickHouse s (peak RSS) | Lifecycle / best peer |")
    print("|---|---|---|---|---|")
    failed = False
    for name in names:
        lc_sql, duck_sql, ch_sql, table = WORKLOADS[name]
        if not os.path.isdir(os.path.join(args.warehouse, "store", table) if args.warehouse
                             else os.path.join(args.data, table)):
            print(f"| {name} | (no {table}/ in {args.data}) | | | |")
            continue
        cells, times, answers = {}, {}, {}
        for engine in ["lifecycle", "duckdb", "clickhouse"]:
            sql = {"lifecycle": lc_sql, "duckdb": duck_sql, "clickhouse": ch_sql}[engine]
            if engine not in engines or sql is None:
                cells[engine] = "-"
                continue
            # In the warehouse layout ClickHouse runs with in-order aggregation off and on; the
            # faster median counts.
            variants = [0, 1] if engine == "clickhouse" and args.warehouse else [None]
            best = None
            try:
                for v in variants:
                    runs = []
                    for _ in range(args.runs):
                        if engine == "lifecycle":
                            runs.append(run_lifecycle(sql, table, args))
                        else:
                            runs.append(run_peer(engine, sql, args, v))
                    if best is None or statistics.median(r[0] for r in runs) < statistics.median(r[0] for r in best):
                        best = runs
            except RuntimeError as e:
                cells[engine] = "error"
                print(f"<!-- {name} {engine}: {e} -->", file=sys.stderr)
                continue
            runs = best
            secs = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            times[engine] = secs
            answers[engine] = normalise(runs[-1][2])
            cells[engine] = f"{secs:.2f} ({rss / 2**20:.0f} MB)"
        peers = [times[e] for e in ("duckdb", "clickhouse") if e in times]
        ratio = f"{times['lifecycle'] / min(peers):.2f}" if "lifecycle" in times and peers else "-"
        print(f"| {name} | {cells['lifecycle']} | {cells['duckdb']} | {cells['clickhouse']} | {ratio} |", flush=True)
        if "lifecycle" in answers:
            for e in ("duckdb", "clickhouse"):
                if e in answers and not same(answers["lifecycle"], answers[e]):
                    failed = True
                    print(f"  MISMATCH {name}: lifecycle {answers['lifecycle']} vs {e} {answers[e]}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
