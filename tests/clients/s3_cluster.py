"""Object storage, for real: an S3-protocol server (moto's server mode) on a loopback port, a bucket
holding generated Parquet, and the same lifecycle queries through s3:// on one machine and on a
cluster (`lifecycle scheduler` + two `lifecycle executor`s), compared with the answers from the
local files; then `lifecycle serve --pg-listen` over that cluster, with psycopg. Also: a missing bucket is one
clear error naming the table and the URL.

Usage: python s3_cluster.py PATH/TO/lifecycle   (run by .ci/run in its venv: moto[server], boto3, psycopg)
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import boto3

QUERIES = [
    "SELECT stage, count(*) AS n FROM (SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2024-06-30') AS stage "
    "FROM purchases GROUP BY customer_id) GROUP BY stage ORDER BY stage",
    "SELECT cohort, period, cohort_size, active_customers, round(revenue, 4) AS revenue "
    "FROM cohort_retention('purchases', 'month') ORDER BY cohort, period",
    "SELECT customer_id, s.frequency, s.recency, s.t FROM (SELECT customer_id, "
    "rfm_summary(order_ts, amount, TIMESTAMP '2024-07-01') AS s FROM purchases GROUP BY customer_id) ORDER BY customer_id",
    "SELECT level, count(*) AS n FROM (SELECT customer_id, window_funnel(86400, event_ts, event_type = 'visit', "
    "event_type = 'cart', event_type = 'purchase') AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{what} did not listen on {port}")


def run(binary, args, env):
    p = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def answers(binary, tables, env, cluster=None, token=None):
    args = ["sql", "--format", "csv"]
    if cluster:
        args += ["--cluster", cluster]
    if token:
        args += ["--token-file", token]
    for name, path in tables.items():
        args += ["--table", f"{name}={path}"]
    out = []
    for q in QUERIES:
        rc, stdout, stderr = run(binary, args + ["-c", q], env)
        if rc != 0:
            sys.exit(f"query failed ({'cluster' if cluster else 'local'}, {tables['purchases']}): {q}\n{stderr}")
        out.append(stdout)
    return out


def main():
    binary = os.path.abspath(sys.argv[1])
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            rc, _, err = run(binary, ["generate", "--customers", "2000", "--shape", "dense", "--files", "3",
                                      "--start", "2022-01-01", "--end", "2024-07-01", "--out", data], os.environ)
            assert rc == 0, err

            port = free_port()
            moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                                     "-H", "127.0.0.1", "-p", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(moto)
            wait_port(port, moto, "moto_server")
            endpoint = f"http://127.0.0.1:{port}"
            env = dict(os.environ, AWS_ACCESS_KEY_ID="lifecycle", AWS_SECRET_ACCESS_KEY="lifecycle-secret",
                       AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true")
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="lifecycle", aws_secret_access_key="lifecycle-secret")
            s3.create_bucket(Bucket="lake")
            uploaded = 0
            for table in ("purchases", "events", "customers"):
                for f in sorted(os.listdir(os.path.join(data, table))):
                    s3.upload_file(os.path.join(data, table, f), "lake", f"shop/{table}/{f}")
                    uploaded += 1

            local_tables = {t: os.path.join(data, t) for t in ("purchases", "events")}
            s3_tables = {t: f"s3://lake/shop/{t}/" for t in ("purchases", "events")}
            expected = answers(binary, local_tables, env)
            assert all(len(a.splitlines()) > 1 for a in expected), expected
            got = answers(binary, s3_tables, env)
            assert got == expected, "s3:// answers differ from the local files'"
            print(f"s3: {uploaded} objects in s3://lake/shop/, {len(QUERIES)} queries equal the local answers")

            # Keys as written: reserved characters in a key, a prefix with or without its slash,
            # other objects under a prefix skipped, a .parquet object that is not Parquet refused.
            one = sorted(os.listdir(os.path.join(data, "purchases")))[0]
            odd = "odd/a%20b c#1?.parquet"
            s3.upload_file(os.path.join(data, "purchases", one), "lake", odd)
            count = "SELECT count(*) AS n, sum(customer_id) AS s FROM p"
            rc, want, err = run(binary, ["sql", "--format", "csv", "--table",
                                         f"p={os.path.join(data, 'purchases', one)}", "-c", count], env)
            assert rc == 0, err
            rc, out, err = run(binary, ["sql", "--format", "csv", "--table", f"p=s3://lake/{odd}", "-c", count], env)
            assert rc == 0 and out == want, (out, want, err)
            s3.put_object(Bucket="lake", Key="shop/purchases/README.txt", Body=b"not a table")
            outs = []
            for url in ("s3://lake/shop/purchases", "s3://lake/shop/purchases/"):
                rc, out, err = run(binary, ["sql", "--format", "csv", "--table", f"p={url}", "-c", count], env)
                assert rc == 0, (url, err)
                outs.append(out)
            assert outs[0] == outs[1], outs
            s3.put_object(Bucket="lake", Key="broken/x.parquet", Body=b"hello")
            rc, _, err = run(binary, ["sql", "--table", "p=s3://lake/broken", "-c", "SELECT 1"], env)
            assert rc != 0 and "broken/x.parquet" in err and "not a Parquet file" in err, err
            outs = [run(binary, ["sql", "--table", f"p={url}", "-c", "SELECT count(*) FROM p"], env)[1:]
                    for url in ("s3://lake", "s3://lake/")]
            assert outs[0] == outs[1], outs
            print(f"s3: a key with reserved characters ({odd}), a prefix with and without its slash, "
                  "other objects skipped, a non-Parquet .parquet object refused, s3://lake = s3://lake/")

            # Lifecycle stores on S3: built from the s3:// source files into s3:// stores (a Delta
            # log committed with conditional puts), read back locally with the same answers.
            store_tables = {t: f"s3://lake/stores/{t}" for t in ("purchases", "events")}
            for t in ("purchases", "events"):
                rc, _, err = run(binary, ["store", "sync", "--table", f"{t}=s3://lake/shop/{t}/",
                                          "--store", store_tables[t], "--buckets", "4"], env)
                assert rc == 0, err
            rc, out, err = run(binary, ["store", "info", "--store", store_tables["purchases"]], env)
            assert rc == 0 and "source files folded: 3" in out, (out, err)
            got = answers(binary, store_tables, env)
            assert got == expected, "answers on s3:// stores differ from the local files'"
            print(f"s3: stores synced from s3:// into s3://lake/stores/, {len(QUERIES)} queries equal the local answers")

            # A missing bucket: one clear error naming the table and the URL.
            rc, _, err = run(binary, ["sql", "--table", "purchases=s3://no-such-bucket/x/", "-c", "SELECT 1"], env)
            assert rc != 0 and "purchases" in err and "s3://no-such-bucket/x/" in err, err
            assert len(err.strip().splitlines()) == 1, err

            # The cluster, reading the bucket from its executors; every process has the token.
            token = os.path.join(tmp, "token")
            with open(token, "w") as f:
                f.write("s3-cluster-token")
            sport = free_port()
            scheduler = subprocess.Popen([binary, "scheduler", "--bind", f"127.0.0.1:{sport}",
                                          "--token-file", token], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(scheduler)
            wait_port(sport, scheduler, "lifecycle scheduler")
            for i in range(2):
                flight, grpc = free_port(), free_port()
                e = subprocess.Popen([binary, "executor", "--scheduler", f"127.0.0.1:{sport}",
                                      "--bind", f"127.0.0.1:{flight}", "--grpc-bind", f"127.0.0.1:{grpc}",
                                      "--concurrent-tasks", "2", "--work-dir", os.path.join(tmp, f"work{i}"),
                                      "--token-file", token],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(e)
                wait_port(flight, e, f"lifecycle executor {i}")
            got = answers(binary, s3_tables, env, cluster=f"df://127.0.0.1:{sport}", token=token)
            assert got == expected, "cluster s3:// answers differ from the local files'"
            got = answers(binary, store_tables, env, cluster=f"df://127.0.0.1:{sport}", token=token)
            assert got == expected, "cluster answers on s3:// stores differ from the local files'"
            rc, out, err = run(binary, ["sql", "--format", "csv", "--cluster", f"df://127.0.0.1:{sport}",
                                        "--token-file", token, "--table", f"p=s3://lake/{odd}", "-c", count], env)
            assert rc == 0 and out == want, (out, want, err)
            print(f"cluster (1 scheduler, 2 executors): {len(QUERIES)} queries over s3:// equal the local answers")

            # The Postgres listener over the cluster: queries run on the cluster, catalog browsing in
            # the server (pg_catalog exists only there), STRUCT columns arrive as JSON text.
            import json
            import psycopg
            pport = free_port()
            args = [binary, "serve", "--pg-listen", f"127.0.0.1:{pport}", "--cluster", f"df://127.0.0.1:{sport}",
                    "--cluster-token-file", token]
            for name, path in s3_tables.items():
                args += ["--table", f"{name}={path}"]
            server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(server)
            wait_port(pport, server, "lifecycle serve --pg-listen --cluster")
            with psycopg.connect(host="127.0.0.1", port=pport, user="analyst", dbname="lifecycle",
                                 autocommit=True) as conn:
                tables = [r[0] for r in conn.execute(
                    "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1").fetchall()]
                assert tables == ["events", "purchases"], tables
                stages = conn.execute(QUERIES[0]).fetchall()
                want = [tuple(line.split(",")) for line in expected[0].splitlines()[1:]]
                assert [(s, str(n)) for s, n in stages] == want, (stages, want)
                rfm = conn.execute("SELECT rfm_summary(order_ts, amount, TIMESTAMP '2024-07-01') AS s "
                                   "FROM purchases WHERE customer_id = %s GROUP BY customer_id", (1,)).fetchone()[0]
                assert set(json.loads(rfm)) == {"frequency", "recency", "t", "monetary_value"}, rfm
            print("cluster over the Postgres protocol: catalog browsing, a lifecycle query, a STRUCT as JSON")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
