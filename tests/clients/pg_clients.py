#!/usr/bin/env python3
"""Real-client checks of `lifecycle serve --pg-listen` (the PostgreSQL wire protocol).

Clients: psql (Debian's postgresql-client), psycopg 3 (PyPI `psycopg[binary]`), the PostgreSQL JDBC driver
(Debian's libpostgresql-jdbc-java, run by `java`; env LIFECYCLE_PG_JDBC overrides the jar) and node-postgres (npm
`pg`, found through env LIFECYCLE_NODE_MODULES); ADBC's Flight SQL driver for the mixed-protocol load. Every server is the given binary, started here on free loopback
ports with a token, on the embedded sample.

  psql      a lifecycle query against the same question in plain SQL, `\\dt`, `\\d purchases`,
            a wrong password refused, COPY (and `\\copy`) refused, TLS with `sslmode=require`,
            a certificate that does not load refused at startup; Ctrl-C (a cancel request) and a killed
            client stop the running query and free its slot at once; statement_timeout stops it
  psycopg   a `%s` parameter equals the literal query, `cohort_retention` equals the plain-SQL
            triangle, `SET lifecycle.churn_days` in one connection leaves another's stages alone,
            a bad statement keeps the connection usable (in and out of a transaction), TIMESTAMP,
            BIGINT, DOUBLE, VARCHAR and LIST columns arrive typed, STRUCTs and nested lists as JSON text
  JDBC      `?` parameters (also once the driver switches to a named server-side statement), TIMESTAMP
            and BIGINT parameters, DatabaseMetaData getTables/getColumns, DROP TABLE refused (25006)
  node-pg   `$1` parameters, TIMESTAMP and array types, INSERT refused
  BI tools  the settings and pg_catalog / information_schema queries BI tools send, simple and prepared
  load      (--load SECONDS, default 30) 8 Postgres and 8 Flight SQL clients against one server:
            0 errors, every answer identical to the first, server peak RSS within --memory-limit

Usage: python tests/clients/pg_clients.py path/to/lifecycle [--load SECONDS]
Exits non-zero with a message on the first failed check.
"""

from decimal import Decimal
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import psycopg

TOKEN = "pg-test-token"
MEMORY_LIMIT_MIB = 256
warnings.filterwarnings("ignore", message="Cannot disable autocommit")

STAGES = """SELECT stage, count(*) FROM (
              SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2025-01-01 00:00:00') AS stage
              FROM purchases GROUP BY customer_id) GROUP BY stage ORDER BY stage"""

COHORT_FN = """SELECT cohort, period, cohort_size, active_customers, round(revenue, 4)
               FROM cohort_retention('purchases', 'month') WHERE active_customers > 0 ORDER BY 1, 2"""

COHORT_SQL = """WITH f AS (SELECT customer_id, date_trunc('month', min(order_ts)) AS cohort
                           FROM purchases GROUP BY customer_id),
                     s AS (SELECT cohort, count(*) AS n FROM f GROUP BY cohort),
                     a AS (SELECT f.cohort,
                                  CAST((date_part('year', b.order_ts) * 12 + date_part('month', b.order_ts))
                                       - (date_part('year', f.cohort) * 12 + date_part('month', f.cohort)) AS BIGINT)
                                    AS period,
                                  b.customer_id, b.amount
                           FROM purchases b JOIN f ON b.customer_id = f.customer_id)
                SELECT a.cohort, a.period, s.n, count(DISTINCT a.customer_id), round(sum(a.amount), 4)
                FROM a JOIN s ON a.cohort = s.cohort GROUP BY 1, 2, 3 ORDER BY 1, 2"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(cond: bool, what: str) -> None:
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


class Server:
    """`lifecycle serve` as a process; its log is drained on a thread (and kept)."""

    def __init__(self, binary: str, args: list[str]):
        self.proc = subprocess.Popen([binary, "serve", *args], stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.ports: dict[str, int] = {}
        deadline = time.time() + 120
        want = {"Flight SQL" if "--listen" in args else None, "Postgres" if "--pg-listen" in args else None} - {None}
        while time.time() < deadline and set(self.ports) != want:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                sys.exit(f"server exited early with {self.proc.returncode}: {''.join(self.log)}")
            self.log.append(line)
            m = re.search(r"lifecycle (Flight SQL|Postgres) server listening on [^:]+:(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
        if set(self.ports) != want:
            self.proc.kill()
            sys.exit("server did not start within 120 s")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def peak_rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def psql(port: int, *args: str, password: str = TOKEN, conninfo: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    dsn = f"host=127.0.0.1 port={port} user=analyst dbname=lifecycle {conninfo}".strip()
    return subprocess.run(["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def pg_connect(port: int, **kw) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=port, user="analyst", password=TOKEN,
                           dbname="lifecycle", connect_timeout=10, **kw)


def psql_checks(port: int) -> None:
    r = psql(port, "-At", "-c", "SELECT count(*) FROM customers")
    check(r.returncode == 0 and r.stdout.strip() == "12000", f"psql count(*) customers: {r.stdout.strip()} {r.stderr.strip()}")
    fn = psql(port, "-At", "-F", ",", "-c", COHORT_FN)
    plain = psql(port, "-At", "-F", ",", "-c", COHORT_SQL)
    check(fn.returncode == 0 and plain.returncode == 0, f"psql cohort queries ran: {fn.stderr.strip()} {plain.stderr.strip()}")
    n = len(fn.stdout.splitlines())
    check(n > 100 and fn.stdout == plain.stdout, f"psql cohort_retention equals plain SQL ({n} rows)")

    r = psql(port, "-c", "\\dt")
    check(r.returncode == 0 and all(t in r.stdout for t in ("purchases", "customers", "cdnow")),
          f"psql \\dt lists the tables: {r.stdout.strip()[:300]} {r.stderr.strip()}")
    r = psql(port, "-c", "\\d purchases")
    check(r.returncode == 0 and all(c in r.stdout for c in ("customer_id", "order_ts", "amount")),
          f"psql \\d purchases: {r.stdout.strip()[:400]} {r.stderr.strip()}")

    r = psql(port, "-c", "\\dn")
    check(r.returncode == 0 and "public" in r.stdout, f"psql \\dn: {r.stdout.strip()[:200]} {r.stderr.strip()}")
    r = psql(port, "-c", "\\l")
    check(r.returncode == 0 and "List of databases" in r.stdout, f"psql \\l: {r.stderr.strip()}")
    r = psql(port, "-c", "SELECT 1", password="wrong-token")
    check(r.returncode != 0 and 'password authentication failed for user "analyst"' in r.stderr,
          f"psql wrong password refused: {r.stderr.strip()}")
    r = psql(port, "-c", "COPY purchases TO STDOUT")
    check(r.returncode != 0 and "read-only" in r.stderr and "COPY" in r.stderr, f"psql COPY refused: {r.stderr.strip()}")
    with tempfile.TemporaryDirectory() as d:
        r = psql(port, "-c", f"\\copy purchases TO '{d}/out.csv'")
        check(r.returncode != 0 and "read-only" in r.stderr, f"psql \\copy refused: {r.stderr.strip()}")
    r = psql(port, "-c", "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'")
    check(r.returncode != 0 and "ERROR" in r.stderr, f"psql CREATE EXTERNAL TABLE refused: {r.stderr.strip()}")
    r = psql(port, "-c", "CREATE TABLE t AS SELECT 1")
    check(r.returncode != 0 and "read-only" in r.stderr, f"psql CREATE TABLE refused: {r.stderr.strip()}")
    r = psql(port, "-At", "-c", "SELECT count(*) FROM purchases")
    check(r.returncode == 0 and int(r.stdout) > 0, "server still serves after the refusals")


def psycopg_checks(port: int) -> None:
    with pg_connect(port) as conn:  # psycopg's default: a transaction (BEGIN) around statements
        cur = conn.cursor()
        buyer = cur.execute("SELECT min(customer_id) FROM purchases").fetchone()[0]
        bound = cur.execute("SELECT count(*), sum(amount) FROM purchases WHERE customer_id = %s", (buyer,)).fetchall()
        literal = cur.execute(f"SELECT count(*), sum(amount) FROM purchases WHERE customer_id = {buyer}").fetchall()
        check(bound == literal and bound[0][0] > 0, f"psycopg %s parameter {bound} == literal {literal}")
        ts = cur.execute("SELECT count(*) FROM purchases WHERE order_ts >= %s AND amount > %s",
                         ("2024-01-01 00:00:00", 10.0)).fetchone()[0]
        ts_literal = cur.execute("SELECT count(*) FROM purchases WHERE order_ts >= TIMESTAMP '2024-01-01 00:00:00'"
                                 " AND amount > 10.0").fetchone()[0]
        check(ts == ts_literal and ts > 0, f"psycopg timestamp and double parameters: {ts} == {ts_literal}")
        # amount is DECIMAL(12, 2): an integer or a float that is exactly a 2-place decimal binds as
        # that decimal; a float with more places is refused, never rounded into another comparison.
        for value, literal in [(10, "10"), (12.64, "12.64"), (Decimal("12.64"), "12.64")]:
            got = cur.execute("SELECT count(*) FROM purchases WHERE amount >= %s", (value,)).fetchone()[0]
            want = cur.execute(f"SELECT count(*) FROM purchases WHERE amount >= {literal}").fetchone()[0]
            check(got == want and got > 0, f"psycopg {type(value).__name__} {value} against DECIMAL: {got} == {want}")
        try:
            cur.execute("SELECT count(*) FROM purchases WHERE amount >= %s", (12.645,)).fetchone()
            check(False, "a float with more places than the DECIMAL is refused")
        except psycopg.Error as e:
            conn.rollback()
            check("decimal places" in str(e), f"a float with more places than the DECIMAL is refused: {e}")

        fn = cur.execute(COHORT_FN).fetchall()
        plain = cur.execute(COHORT_SQL).fetchall()
        check(len(fn) > 100 and fn == plain, f"psycopg cohort_retention equals plain SQL ({len(fn)} rows)")

        for bad, sqlstate in [("SELEC 1", "42601"), ("SELECT * FROM no_such_table", "42P01")]:
            try:
                cur.execute(bad)
                check(False, f"{bad} fails")
            except psycopg.Error as e:
                check(e.sqlstate == sqlstate, f"{bad}: {e.sqlstate} {str(e).strip()}")
            conn.rollback()
            check(cur.execute("SELECT 1 AS one").fetchall() == [(1,)], "connection usable after a failed transaction")

        row = cur.execute(
            """SELECT TIMESTAMP '2024-03-01 12:30:00' AS ts, CAST(7 AS BIGINT) AS n, CAST(2.5 AS DOUBLE) AS x,
                      'seven' AS s, make_array(1, 2, 3) AS l,
                      named_struct('a', 1, 'b', 'two') AS st""").fetchone()
        import datetime
        types = [d.type_code for d in cur.description]
        check(row[0] == datetime.datetime(2024, 3, 1, 12, 30) and row[1] == 7 and row[2] == 2.5 and row[3] == "seven"
              and row[4] == [1, 2, 3],
              f"typed columns: {row!r}, type oids {types}")
        check(types == [1114, 20, 701, 25, 1016, 25], f"type oids timestamp, int8, float8, text, int8[], text: {types}")
        import json
        check(json.loads(row[5]) == {"a": 1, "b": "two"}, f"a STRUCT arrives as JSON text: {row[5]!r}")
        nested = cur.execute("SELECT make_array(make_array(1, 2), make_array(3)) AS n, "
                             "rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01 00:00:00') AS r "
                             "FROM purchases WHERE customer_id = %s GROUP BY customer_id", (buyer,)).fetchone()
        rfm = json.loads(nested[1])
        check(json.loads(nested[0]) == [[1, 2], [3]] and set(rfm) == {"frequency", "recency", "t", "monetary_value"},
              f"nested lists and a lifecycle STRUCT arrive as JSON text over the extended protocol: {nested}")

    # Settings are per connection.
    with pg_connect(port, autocommit=True) as a, pg_connect(port, autocommit=True) as b:
        before = a.execute(STAGES).fetchall()
        check(b.execute(STAGES).fetchall() == before, "two connections agree before any SET")
        a.execute("SET lifecycle.churn_days = 400")
        after = a.execute(STAGES).fetchall()
        check(after != before, f"SET lifecycle.churn_days = 400 changes this connection's stages: {after}")
        check(b.execute(STAGES).fetchall() == before, "another connection's stages are unchanged")
        check(a.execute("SHOW lifecycle.churn_days").fetchall()[0][-1] == "400", "SHOW lifecycle.churn_days")
        with pg_connect(port, autocommit=True) as c:
            check(c.execute(STAGES).fetchall() == before, "a new connection starts from the server's settings")
        try:
            a.execute("SET datafusion.runtime.memory_limit = '100G'")
            check(False, "server setting refused")
        except psycopg.Error as e:
            check("cannot be changed" in str(e), f"server setting refused: {str(e).strip()[:120]}")
        a.execute("SET TIME ZONE 'America/New_York'")
        check(a.execute("SHOW TIME ZONE").fetchone()[0] == "America/New_York", "SET TIME ZONE on this connection")
        check(b.execute("SHOW TIME ZONE").fetchone()[0] != "America/New_York", "another connection keeps its zone")
        try:
            a.execute("SELEC 1")
        except psycopg.Error:
            pass
        check(a.execute("SELECT 2").fetchone() == (2,), "autocommit connection usable after an error")


def interrupt_checks(binary: str) -> None:
    """Ctrl-C in psql (a cancel request) and a killed client both stop the running query and free its
    slot at once: with one query slot, the next query runs without waiting. No token: anyone may connect."""
    import signal
    srv = Server(binary, ["--pg-listen", f"127.0.0.1:{free_port()}", "--max-concurrent-queries", "1"])
    port = srv.ports["Postgres"]
    endless = "SELECT sum(value) FROM generate_series(1, 100000000000)"
    dsn = f"host=127.0.0.1 port={port} user=anyone dbname=lifecycle"
    try:
        for how, sig in [("cancel request (Ctrl-C)", signal.SIGINT), ("killed client", signal.SIGKILL)]:
            p = subprocess.Popen(["psql", dsn, "-X", "-c", endless], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=dict(os.environ, PGPASSWORD=""))
            time.sleep(3)
            check(p.poll() is None, f"{how}: the query is still running after 3 s")
            p.send_signal(sig)
            _, err = p.communicate(timeout=30)
            if sig == signal.SIGINT:
                check("canceling statement due to user request" in err, f"{how}: psql says {err.strip()}")
            t0 = time.time()
            r = psql(port, "-At", "-c", "SELECT count(*) FROM customers", password="")
            waited = time.time() - t0
            check(r.returncode == 0 and r.stdout.strip() == "12000" and waited < 5,
                  f"{how}: the slot is free at once (next query answered in {waited:.2f} s)")
        t0 = time.time()
        r = psql(port, "-c", "SET statement_timeout = '1s'", "-c", endless, password="")
        took = time.time() - t0
        check(r.returncode != 0 and "canceling statement due to statement timeout" in r.stderr and took < 10,
              f"statement_timeout stops the query in {took:.1f} s: {r.stderr.strip()}")
        # SIGTERM while a query runs: no new connections, the query in flight finishes (within the
        # 10 s grace), then the server exits 0.
        p = subprocess.Popen(["psql", dsn, "-X", "-At", "-c", "SELECT sum(value) FROM generate_series(1, 500000000)"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PGPASSWORD=""))
        time.sleep(1)
        srv.proc.terminate()
        time.sleep(0.5)
        late = psql(port, "-At", "-c", "SELECT 1", password="")
        out, err = p.communicate(timeout=60)
        check(late.returncode != 0, f"after SIGTERM new connections are refused: {late.stderr.strip()[:100]}")
        check(out.strip() == "125000000250000000", f"the query in flight at SIGTERM finished: {out.strip()} {err.strip()}")
    finally:
        code = srv.stop()
    cancelled = [line for line in srv.log if "generate_series" in line and "outcome=cancelled" in line]
    check(len(cancelled) == 3, f"the stopped queries are logged as cancelled ({len(cancelled)})")
    check(code == 0, f"server stopped cleanly (exit {code})")


# What BI tools send on connect and when browsing (written here after the statements Metabase, Grafana,
# DBeaver and JDBC drivers issue): session settings, then catalog queries over pg_catalog and
# information_schema. Each runs over the simple protocol and again prepared (the extended protocol JDBC uses).
BI_STATEMENTS = [
    "SET extra_float_digits = 3",
    "SET application_name = 'Metabase v0.55'",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SHOW search_path",
    "show timezone",
    "SELECT version()",
    "SELECT current_database(), current_schema(), current_user",
    "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname !~ '^pg_' ORDER BY nspname",
    """SELECT n.nspname AS schema, c.relname AS name, c.relkind FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'v', 'm', 'p') AND n.nspname = 'public' ORDER BY 2""",
    """SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
       FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON a.attrelid = c.oid
       WHERE c.relname = 'purchases' AND a.attnum > 0 ORDER BY a.attnum""",
    "SELECT oid, typname FROM pg_catalog.pg_type WHERE typname IN ('int8', 'float8', 'timestamp', 'text')",
    """SELECT table_schema, table_name, table_type FROM information_schema.tables
       WHERE table_schema = 'public' ORDER BY table_name""",
    """SELECT column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_name = 'purchases' ORDER BY ordinal_position""",
    "SELECT schemaname, tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' ORDER BY 2",
    "SELECT datname FROM pg_catalog.pg_database",
    # Grafana's PostgreSQL data source: the search path, table and column pickers, a time series.
    "SELECT current_setting('search_path')",
    """SELECT quote_ident(table_name) AS "table" FROM information_schema.tables
       WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1""",
    """SELECT quote_ident(column_name) AS "column", data_type AS "type" FROM information_schema.columns
       WHERE quote_ident(table_name) = 'purchases'""",
    """SELECT date_trunc('day', order_ts) AS "time", sum(amount) AS revenue FROM purchases
       WHERE order_ts BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-08T00:00:00Z' GROUP BY 1 ORDER BY 1""",
]


def driver_checks(port: int) -> None:
    """The JDBC driver (`?` placeholders, DatabaseMetaData) and node-postgres (`$1`), each its own program."""
    here = os.path.dirname(os.path.abspath(__file__))
    jar = os.environ.get("LIFECYCLE_PG_JDBC", "/usr/share/java/postgresql.jar")
    r = subprocess.run(["java", "-cp", jar, f"{here}/JdbcCheck.java", str(port), TOKEN],
                       capture_output=True, text=True, timeout=300)
    print(r.stdout.rstrip())
    check(r.returncode == 0, f"JDBC driver checks ({jar}) {r.stderr.strip()[-400:]}")
    modules = os.environ.get("LIFECYCLE_NODE_MODULES", "")
    r = subprocess.run(["node", f"{here}/node_pg.mjs", str(port), TOKEN], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, NODE_PATH=modules))
    print(r.stdout.rstrip())
    check(r.returncode == 0, f"node-postgres checks (NODE_PATH={modules}) {r.stderr.strip()[-400:]}")


def bi_checks(port: int) -> None:
    with pg_connect(port, autocommit=True) as conn:
        results = {}
        for sql in BI_STATEMENTS:
            for prepared in (False, True):
                try:
                    cur = conn.execute(sql, prepare=prepared)
                    results[(sql, prepared)] = cur.fetchall() if cur.description else None
                except psycopg.Error as e:
                    check(False, f"BI statement ({'prepared' if prepared else 'simple'}) {sql.split()[:6]}: {e}")
        same = all(results[(q, False)] == results[(q, True)] for q in BI_STATEMENTS)
        check(same, f"{len(BI_STATEMENTS)} BI-tool statements run, simple and prepared alike")
        tables = [r[1] for r in results[(BI_STATEMENTS[9], False)]]
        check({"purchases", "customers", "cdnow"} <= set(tables), f"pg_class lists the tables: {tables}")
        cols = results[(BI_STATEMENTS[10], False)]
        check([c[0] for c in cols][:4] == ["customer_id", "order_id", "order_ts", "amount"]
              and cols[2][1].startswith("timestamp"), f"pg_attribute columns of purchases: {cols}")
        check(results[(BI_STATEMENTS[16], False)] == [("public",)], "current_setting('search_path')")
        series = results[(BI_STATEMENTS[19], False)]
        check(len(series) == 7, f"a Grafana time series: {len(series)} days")
        info = [r[0] for r in results[(BI_STATEMENTS[13], False)]]
        check(info[:4] == ["customer_id", "order_id", "order_ts", "amount"], f"information_schema.columns: {info}")


def tls_checks(binary: str, token_file: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        cert, key = f"{d}/cert.pem", f"{d}/key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        srv = Server(binary, ["--pg-listen", f"127.0.0.1:{free_port()}", "--token-file", token_file,
                              "--tls-cert", cert, "--tls-key", key])
        try:
            port = srv.ports["Postgres"]
            r = psql(port, "-c", "\\conninfo", "-c", "SELECT count(*) FROM customers", conninfo="sslmode=require")
            check(r.returncode == 0 and "SSL connection" in r.stdout and "12000" in r.stdout,
                  f"psql over TLS (sslmode=require): {r.stdout.strip()} {r.stderr.strip()}")
            with pg_connect(port, sslmode="verify-full", sslrootcert=cert) as conn:
                check(conn.execute("SELECT count(*) FROM customers").fetchone() == (12000,),
                      "psycopg over TLS, certificate verified")
            r = psql(port, "-c", "SELECT 1", conninfo="sslmode=disable")
            check(r.returncode != 0 and "TLS connections only" in r.stderr,
                  f"a plaintext connection to a TLS server is refused: {r.stderr.strip()}")
        finally:
            srv.stop()
        # A certificate that does not load is a startup error, not a plaintext server.
        with open(f"{d}/bad.pem", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        r = subprocess.run([binary, "serve", "--pg-listen", f"127.0.0.1:{free_port()}", "--tls-cert", f"{d}/bad.pem",
                            "--tls-key", key], capture_output=True, text=True, timeout=120)
        check(r.returncode != 0 and "bad.pem" in r.stderr and "listening" not in r.stderr,
              f"bad certificate refused at startup: {r.stderr.strip()}")


def load(binary: str, token_file: str, seconds: float) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    srv = Server(binary, ["--listen", f"127.0.0.1:{free_port()}", "--pg-listen", f"127.0.0.1:{free_port()}",
                          "--token-file", token_file, "--memory-limit", f"{MEMORY_LIMIT_MIB}M",
                          "--max-concurrent-queries", "4"])
    fport, pport = srv.ports["Flight SQL"], srv.ports["Postgres"]
    queries = [
        STAGES,
        "SELECT cohort, period, active_customers FROM cohort_retention('purchases', 'month') ORDER BY 1, 2",
        "SELECT count(*), round(sum(amount), 4) FROM purchases WHERE amount > 20",
    ]
    errors: list[str] = []
    counts = {"pg": 0, "flight": 0}
    latencies: list[float] = []
    expected: dict[tuple[str, int], object] = {}
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def normal(rows):
        return [tuple(float(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, int) else v for v in r)
                for r in rows]

    def record(proto, i, rows, t0):
        with lock:
            key = (proto, i)
            if key not in expected:
                expected[key] = rows
            elif expected[key] != rows:
                errors.append(f"{proto} query {i}: answer differs")
            counts[proto] += 1
            latencies.append(time.time() - t0)

    def pg_client(k):
        try:
            with pg_connect(pport, autocommit=True) as conn:
                n = k
                while time.time() < stop_at:
                    i = n % len(queries)
                    t0 = time.time()
                    record("pg", i, normal(conn.execute(queries[i]).fetchall()), t0)
                    n += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted
            errors.append(f"pg client {k}: {e}")

    def flight_client(k):
        try:
            with flightsql.connect(f"grpc://127.0.0.1:{fport}",
                                   db_kwargs={"username": "analyst", "password": TOKEN}) as conn, conn.cursor() as cur:
                n = k
                while time.time() < stop_at:
                    i = n % len(queries)
                    t0 = time.time()
                    cur.execute(queries[i])
                    record("flight", i, normal(cur.fetchall()), t0)
                    n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"flight client {k}: {e}")

    threads = [threading.Thread(target=pg_client, args=(k,)) for k in range(8)]
    threads += [threading.Thread(target=flight_client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = srv.peak_rss_mib()
    code = srv.stop()
    check(not errors, f"load: 0 errors ({errors[:3]})")
    # Both protocols gave the same answers (the scalar query compared across them).
    check(expected[("pg", 2)] == expected[("flight", 2)], f"pg and flight agree: {expected[('pg', 2)]}")
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(f"   load {seconds:.0f} s, 8 pg + 8 flight clients: {counts['pg']} pg + {counts['flight']} flight queries, "
          f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, server peak RSS {peak:.0f} MiB (limit {MEMORY_LIMIT_MIB} MiB)")
    check(counts["pg"] > 0 and counts["flight"] > 0, "both protocols served queries")
    check(peak <= MEMORY_LIMIT_MIB, f"server peak RSS {peak:.0f} MiB within --memory-limit {MEMORY_LIMIT_MIB} MiB")
    check(code == 0, f"server stopped cleanly (exit {code})")


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/lifecycle"
    seconds = float(sys.argv[sys.argv.index("--load") + 1]) if "--load" in sys.argv else 30.0
    with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
        f.write(TOKEN + "\n")
        token_file = f.name
    try:
        srv = Server(binary, ["--pg-listen", f"127.0.0.1:{free_port()}", "--token-file", token_file])
        try:
            check("Flight SQL" not in srv.ports, "--pg-listen alone serves only Postgres")
            psql_checks(srv.ports["Postgres"])
            psycopg_checks(srv.ports["Postgres"])
            bi_checks(srv.ports["Postgres"])
            driver_checks(srv.ports["Postgres"])
        finally:
            code = srv.stop()
        check(code == 0, f"server stopped cleanly on SIGTERM (exit {code})")
        check(any("query protocol=pg" in line for line in srv.log), "Postgres queries are in the query log")
        interrupt_checks(binary)
        tls_checks(binary, token_file)
        if seconds > 0:
            load(binary, token_file, seconds)
    finally:
        os.unlink(token_file)


if __name__ == "__main__":
    main()
