#!/usr/bin/env python3
"""End-to-end comparison: Lifecycle vs DuckDB on the same Parquet files and the same questions.

    cargo build --release
    target/release/lifecycle generate --customers 1000000 --out /tmp/lc1m --files 8
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install duckdb
    /tmp/venv/bin/python benches/compare_duckdb.py --data /tmp/lc1m

Each query runs `--runs` times per engine on warm files; the table shows the best and median wall
time of the query itself (Lifecycle's own `--timing` figure, DuckDB's execute + fetch). Both engines
use every core. The DuckDB queries are the same questions written in plain SQL (DuckDB has no
lifecycle functions); its cohort triangle is not zero-filled, which only makes its job smaller.
"""

import argparse
import os
import re
import statistics
import subprocess
import time

AS_OF = "2025-01-01 00:00:00"

QUERIES = {
    "floor: count, sum GROUP BY customer": (
        "SELECT sum(n), sum(s) FROM (SELECT customer_id, count(*) AS n, sum(amount) AS s "
        "FROM purchases GROUP BY customer_id)",
        None,
    ),
    "lifecycle_stage GROUP BY customer": (
        f"SELECT s, count(*) FROM (SELECT lifecycle_stage(order_ts, TIMESTAMP '{AS_OF}') AS s "
        "FROM purchases GROUP BY customer_id) GROUP BY s ORDER BY s",
        f"""WITH a AS (
              SELECT customer_id, count(*) AS n, max(order_ts) AS last_ts,
                     list_extract(max(order_ts, 2), 2) AS prev_ts,
                     count(*) FILTER (WHERE order_ts > TIMESTAMP '{AS_OF}' - INTERVAL 365 DAY) AS nw
              FROM purchases WHERE order_ts <= TIMESTAMP '{AS_OF}' GROUP BY customer_id)
            SELECT s, count(*) FROM (SELECT CASE
              WHEN TIMESTAMP '{AS_OF}' - last_ts > INTERVAL 180 DAY THEN 'churned'
              WHEN TIMESTAMP '{AS_OF}' - last_ts > INTERVAL 90 DAY THEN 'at_risk'
              WHEN n >= 2 AND last_ts - prev_ts > INTERVAL 180 DAY THEN 'reactivated'
              WHEN n = 1 THEN 'new'
              WHEN nw >= 4 THEN 'loyal'
              ELSE 'repeat' END AS s FROM a) GROUP BY s ORDER BY s""",
    ),
    "cohort_retention month": (
        "SELECT count(*), sum(active_customers), sum(revenue) FROM cohort_retention('purchases', 'month')",
        """WITH f AS (SELECT customer_id, date_trunc('month', min(order_ts)) AS cohort
                      FROM purchases GROUP BY customer_id),
                s AS (SELECT cohort, count(*) AS n FROM f GROUP BY cohort),
                c AS (SELECT f.cohort, datediff('month', f.cohort, p.order_ts) AS period,
                             count(DISTINCT p.customer_id) AS active, sum(p.amount) AS revenue
                      FROM purchases p JOIN f USING (customer_id) GROUP BY 1, 2)
           SELECT count(*), sum(active), sum(revenue) FROM c JOIN s USING (cohort)""",
    ),
}


def run_lifecycle(binary, data, sql):
    out = subprocess.run(
        [binary, "sql", "--timing", "--format", "csv",
         "--table", f"purchases={os.path.join(data, 'purchases')}", "-c", sql],
        capture_output=True, text=True, check=True,
    )
    m = re.search(r"rows? in ([0-9.]+)s", out.stderr)
    return float(m.group(1)), out.stdout.strip().splitlines()[1:]


def run_duckdb(con, sql):
    t = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return time.perf_counter() - t, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory written by `lifecycle generate`")
    ap.add_argument("--lifecycle", default="target/release/lifecycle")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW purchases AS SELECT * FROM read_parquet('{args.data}/purchases/*.parquet')")
    rows = con.execute("SELECT count(*), count(DISTINCT customer_id) FROM purchases").fetchone()
    print(f"{rows[0]:,} purchases of {rows[1]:,} customers; {os.cpu_count()} cores; duckdb {duckdb.__version__}\n")
    print(f"| query | Lifecycle best / median (s) | DuckDB best / median (s) |")
    print(f"|---|---|---|")
    for name, (lc_sql, duck_sql) in QUERIES.items():
        lc = [run_lifecycle(args.lifecycle, args.data, lc_sql)[0] for _ in range(args.runs)]
        dk = [run_duckdb(con, duck_sql or lc_sql)[0] for _ in range(args.runs)]
        print(f"| {name} | {min(lc):.3f} / {statistics.median(lc):.3f} | {min(dk):.3f} / {statistics.median(dk):.3f} |")


if __name__ == "__main__":
    main()
