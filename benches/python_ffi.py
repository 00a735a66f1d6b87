"""The lifecycle functions in DataFusion Python (datafusion_lifecycle, through the FFI) against
`lifecycle sql` on the same Parquet: medians of 5 runs of three questions.

Usage: python benches/python_ffi.py DATA_DIR LIFECYCLE_BIN   (DATA_DIR from `lifecycle generate`;
the package installed in the running Python, e.g. `pip install ./python`).
"""
import subprocess, sys, time, statistics
import datafusion_lifecycle as lc
data, BIN = sys.argv[1], sys.argv[2]
Q = {
 "stages": "SELECT stage, count(*) FROM (SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2024-06-30 00:00:00') AS stage FROM purchases GROUP BY customer_id) GROUP BY stage",
 "cohort": "SELECT count(*) FROM cohort_retention('purchases', 'month')",
 "funnel": "SELECT level, count(*) FROM (SELECT customer_id, window_funnel(86400, event_ts, event_type = 'visit', event_type = 'cart', event_type = 'purchase') AS level FROM events GROUP BY customer_id) GROUP BY level",
}
ctx = lc.session_context()
ctx.register_parquet("purchases", f"{data}/purchases"); ctx.register_parquet("events", f"{data}/events")
for name, q in Q.items():
    ts = []
    for _ in range(5):
        t = time.perf_counter(); ctx.sql(q).collect(); ts.append(time.perf_counter() - t)
    cli = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([BIN, "sql", "--format", "csv", "--table", f"purchases={data}/purchases", "--table", f"events={data}/events", "-c", q], check=True, capture_output=True)
        cli.append(time.perf_counter() - t)
    print(f"{name}: DataFusion Python + datafusion_lifecycle median {statistics.median(ts)*1000:.0f} ms; lifecycle sql (process incl. start) median {statistics.median(cli)*1000:.0f} ms")
