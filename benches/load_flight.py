#!/usr/bin/env python3
"""Load test of `lifecycle serve`: N concurrent ADBC clients for D seconds on the embedded sample.

    cargo build --release
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install adbc-driver-flightsql pyarrow
    /tmp/venv/bin/python benches/load_flight.py --lifecycle target/release/lifecycle \
        --clients 16 --seconds 30 --memory-limit 1G

Starts the server (with `--memory-limit`), runs the two queries once on one client to get the
reference answers, then has every client alternate them for the duration on its own connection.
Every answer is compared with the reference (floating-point cells to 1e-9 relative: parallel sums add
in any order); the server's peak resident memory (VmHWM) is read
from /proc. Prints queries per second and p50 / p99 latency per query and overall. Exits non-zero
on any error or differing answer.
"""

import argparse
import math
import socket
import statistics
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql

QUERIES = {
    "cohort_retention month": "SELECT * FROM cohort_retention('purchases', 'month')",
    "stage count": (
        "SELECT stage, count(*) AS n FROM ("
        " SELECT lifecycle_stage(p.order_ts, TIMESTAMP '2025-01-01') AS stage"
        " FROM customers c LEFT JOIN purchases p ON p.customer_id = c.customer_id GROUP BY c.customer_id)"
        " GROUP BY stage ORDER BY stage"
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def same(a, b) -> bool:
    """Equal tables; floating-point cells to 1e-9 relative (parallel sums add in any order)."""
    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.to_pylist(), b.to_pylist()):
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) and isinstance(v, float):
                if not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


def answer(cur, sql):
    cur.execute(sql)
    return cur.fetch_arrow_table()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifecycle", default="target/release/lifecycle")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--memory-limit", default="1G")
    ap.add_argument("--max-concurrent-queries", type=int, default=None)
    args = ap.parse_args()

    port = free_port()
    cmd = [args.lifecycle, "serve", "--listen", f"127.0.0.1:{port}", "--memory-limit", args.memory_limit]
    if args.max_concurrent_queries:
        cmd += ["--max-concurrent-queries", str(args.max_concurrent_queries)]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    while "listening on" not in (line := server.stderr.readline()):
        if not line and server.poll() is not None:
            sys.exit("server did not start")
    # Drain the per-query log so the pipe never fills.
    log_lines = []
    threading.Thread(target=lambda: log_lines.extend(server.stderr), daemon=True).start()
    uri = f"grpc://127.0.0.1:{port}"
    try:
        with flightsql.connect(uri) as conn, conn.cursor() as cur:
            reference = {name: answer(cur, sql) for name, sql in QUERIES.items()}
        latencies = {name: [] for name in QUERIES}
        errors = []
        stop_at = time.perf_counter() + args.seconds
        lock = threading.Lock()

        def client(k: int) -> None:
            names = list(QUERIES)
            try:
                with flightsql.connect(uri) as conn, conn.cursor() as cur:
                    i = k
                    while time.perf_counter() < stop_at:
                        name = names[i % len(names)]
                        i += 1
                        t0 = time.perf_counter()
                        got = answer(cur, QUERIES[name])
                        dt = time.perf_counter() - t0
                        if not same(got, reference[name]):
                            with lock:
                                errors.append(f"client {k}: {name} differs from the single-client answer")
                        with lock:
                            latencies[name].append(dt)
            except Exception as e:  # noqa: BLE001 - any client failure is a test failure
                with lock:
                    errors.append(f"client {k}: {e}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    everything = [x for xs in latencies.values() for x in xs]
    print(f"{args.clients} clients x {args.seconds:.0f} s, memory limit {args.memory_limit}, wall {wall:.1f} s")
    print(f"{'query':<26}{'count':>7}{'QPS':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for name, xs in list(latencies.items()) + [("all", everything)]:
        print(
            f"{name:<26}{len(xs):>7}{len(xs) / wall:>8.1f}{pct(xs, 0.5) * 1e3:>9.1f}{pct(xs, 0.99) * 1e3:>9.1f}"
        )
    print(f"server peak RSS: {rss:.0f} MiB; errors: {len(errors)}")
    for e in errors[:10]:
        print("  " + e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
