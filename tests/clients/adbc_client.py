#!/usr/bin/env python3
"""Real-client check of `lifecycle serve` with the ADBC Flight SQL driver (PyPI: adbc-driver-flightsql, pyarrow).

Starts the given `lifecycle` binary on a free loopback port with a token, then, as an analyst's notebook would:
  * runs `SELECT * FROM cohort_retention('purchases', 'month')` and checks it against the same question written
    in plain SQL (cohort sizes and period-0 rows), sent over the same connection;
  * lists tables and columns with `adbc_get_objects()`;
  * runs parameterised queries (`$1` and `?`) and compares them with the literal queries;
  * checks that a wrong token and a missing token are refused, and that a refused DDL leaves the server serving.

Usage: python tests/clients/adbc_client.py path/to/lifecycle
Exits non-zero with a message on the first failed check.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions
import adbc_driver_manager

TOKEN = "adbc-test-token"
# Flight SQL has no transactions; the driver warns that autocommit cannot be disabled.
warnings.filterwarnings("ignore", message="Cannot disable autocommit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary: str, port: int, token_file: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--token-file", token_file],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        if "listening on" in line:
            return proc
    proc.kill()
    sys.exit("server did not start within 60 s")


def connect(port: int, token: str | None, **extra):
    kwargs = {}
    if token is not None:
        kwargs["db_kwargs"] = {"username": "analyst", "password": token, **extra}
    return flightsql.connect(f"grpc://127.0.0.1:{port}", **kwargs)


def check(cond: bool, what: str) -> None:
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def rows(cur, sql: str, params=None):
    if params is None:
        cur.execute(sql)
    else:
        cur.execute(sql, parameters=params)
    return cur.fetchall()


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/lifecycle"
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
        f.write(TOKEN + "\n")
        token_file = f.name
    server = start_server(binary, port, token_file)
    try:
        run_checks(port)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        os.unlink(token_file)
    check(server.returncode == 0, f"server stopped cleanly on SIGTERM (exit {server.returncode})")


def run_checks(port: int) -> None:
    with connect(port, TOKEN) as conn, conn.cursor() as cur:
        # The cohort query, and the same question in plain SQL.
        cur.execute("SELECT * FROM cohort_retention('purchases', 'month')")
        table = cur.fetch_arrow_table()
        check(
            table.column_names
            == ["cohort", "period", "cohort_size", "active_customers", "retention", "revenue",
                "cumulative_revenue", "revenue_retention"],
            f"cohort_retention columns {table.column_names}",
        )
        check(table.num_rows > 100, f"cohort_retention returned {table.num_rows} rows")
        period0 = sorted(
            (r["cohort"], r["active_customers"])
            for r in table.to_pylist()
            if r["period"] == 0
        )
        plain = rows(
            cur,
            """SELECT cohort, count(*) FROM (
                 SELECT date_trunc('month', min(order_ts)) AS cohort FROM purchases GROUP BY customer_id)
               GROUP BY cohort ORDER BY cohort""",
        )
        check(
            [(c.replace(tzinfo=None) if hasattr(c, "tzinfo") else c, n) for c, n in plain]
            == [(c.replace(tzinfo=None) if hasattr(c, "tzinfo") else c, n) for c, n in period0],
            f"cohort sizes equal the plain-SQL answer ({len(plain)} cohorts)",
        )

        # Catalog browsing.
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        tables = {}
        for catalog in objects:
            for schema in catalog["catalog_db_schemas"] or []:
                for t in schema["db_schema_tables"] or []:
                    tables[t["table_name"]] = [c["column_name"] for c in t["table_columns"] or []]
        check({"purchases", "customers"} <= set(tables), f"adbc_get_objects lists {sorted(tables)}")
        check(
            {"customer_id", "order_ts", "amount"} <= set(tables["purchases"]),
            f"purchases columns {tables['purchases']}",
        )
        schema = conn.adbc_get_table_schema("purchases")
        check("order_ts" in schema.names, "adbc_get_table_schema(purchases)")

        # A parameterised query equals the literal one.
        buyer = rows(cur, "SELECT min(customer_id) FROM purchases")[0][0]
        bound = rows(cur, "SELECT count(*), sum(amount) FROM purchases WHERE customer_id = $1", (buyer,))
        literal = rows(cur, f"SELECT count(*), sum(amount) FROM purchases WHERE customer_id = {buyer}")
        check(bound == literal and bound[0][0] > 0, f"parameterised query {bound} == literal {literal}")
        # `?` placeholders (DB-API's qmark style, as the user wrote it), numbered left to
        # right, equal the literal query; a `?` inside a string stays a character.
        qmark = rows(cur, "SELECT count(*) FROM purchases WHERE amount > ?", (100.0,))
        literal = rows(cur, "SELECT count(*) FROM purchases WHERE amount > 100.0")
        check(qmark == literal and qmark[0][0] > 0, f"? parameter {qmark} == literal {literal}")
        two = rows(
            cur,
            "SELECT count(*), '?' AS mark FROM purchases WHERE customer_id = ? AND amount > ?",
            (buyer, 0.0),
        )
        check(two == [(bound[0][0], "?")], f"two ? parameters and a '?' literal: {two}")
        stage = rows(
            cur,
            "SELECT lifecycle_stage(order_ts, TIMESTAMP '2025-01-01') FROM purchases WHERE customer_id = $1",
            (buyer,),
        )
        check(stage[0][0] in {"new", "repeat", "loyal", "at_risk", "churned", "reactivated"}, f"stage {stage}")

        # Read-only: a DDL is refused, the connection keeps working.
        try:
            cur.execute("CREATE TABLE x AS SELECT 1")
            check(False, "DDL refused")
        except adbc_driver_manager.Error as e:
            check("read-only" in str(e), f"DDL refused: {str(e).splitlines()[0]}")
        check(rows(cur, "SELECT 1 AS one") == [(1,)], "connection still serves after an error")

    # Wrong and missing tokens.
    for label, token in [("wrong", "not-the-token"), ("missing", None)]:
        try:
            with connect(port, token) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM purchases")
                cur.fetchall()
            check(False, f"{label} token refused")
        except adbc_driver_manager.Error as e:
            msg = str(e)
            check("nauthenticated" in msg or "UNAUTHENTICATED" in msg, f"{label} token refused: {msg.splitlines()[0]}")

    # The bearer header route works too.
    with flightsql.connect(
        f"grpc://127.0.0.1:{port}",
        db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {TOKEN}"},
    ) as conn, conn.cursor() as cur:
        check(rows(cur, "SELECT count(*) FROM customers") == [(12000,)], "bearer header accepted")


if __name__ == "__main__":
    main()
