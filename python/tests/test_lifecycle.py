"""datafusion_lifecycle in DataFusion Python, against `lifecycle sql` on the same generated Parquet.

The binary (env LIFECYCLE_BIN, default target/debug/lifecycle) generates the data and answers each
question; the same SQL then runs in a DataFusion Python context with the package's functions, and the
rows must be equal.
"""

import csv
import datetime as dt
import io
import os
import subprocess
import sys

import pytest
from datafusion import SessionConfig, SessionContext

import datafusion_lifecycle as lc

BIN = os.environ.get("LIFECYCLE_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "lifecycle"))

QUERIES = {
    "stages": "SELECT stage, count(*) AS n FROM (SELECT customer_id, "
    "lifecycle_stage(order_ts, TIMESTAMP '2024-06-30 00:00:00') AS stage FROM purchases GROUP BY customer_id) "
    "GROUP BY stage ORDER BY stage",
    "churn_flag": "SELECT churned, count(*) AS n FROM (SELECT customer_id, "
    "churn_flag(order_ts, TIMESTAMP '2024-06-30 00:00:00') AS churned FROM purchases GROUP BY customer_id) "
    "GROUP BY churned ORDER BY churned",
    "cohort_retention": "SELECT cohort, period, cohort_size, active_customers, round(revenue, 4) AS revenue "
    "FROM cohort_retention('purchases', 'month') ORDER BY cohort, period",
    "btyd": "WITH s AS (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2024-07-01 00:00:00') AS r "
    "FROM purchases GROUP BY customer_id), f AS (SELECT bgnbd_fit(r.frequency, r.recency, r.t) AS fit FROM s) "
    "SELECT customer_id, round(bgnbd_p_alive(f.fit, s.r.frequency, s.r.recency, s.r.t), 6) AS p "
    "FROM s CROSS JOIN f ORDER BY customer_id LIMIT 50",
    "stages_explicit": "SELECT stage, count(*) AS n FROM (SELECT customer_id, "
    "lifecycle_stage(order_ts, TIMESTAMP '2024-06-30 00:00:00', 400, 90, 365, 4) AS stage FROM purchases "
    "GROUP BY customer_id) GROUP BY stage ORDER BY stage",
    "customer_value": "SELECT customer_id, frequency, recency, round(p_alive, 6) AS p, stage, rfm_segment "
    "FROM customer_value('purchases', TIMESTAMP '2024-07-01 00:00:00') ORDER BY customer_id",
    "lifecycle_by_period": "SELECT * FROM lifecycle_by_period('purchases', 'quarter') ORDER BY period, status",
    "cohort_as_of": "SELECT cohort, period, active_customers FROM cohort_retention('purchases', 'quarter', "
    "DATE '2023-12-31') ORDER BY cohort, period",
    "window_funnel": "SELECT level, count(*) AS n FROM (SELECT customer_id, window_funnel(86400, event_ts, "
    "event_type = 'visit', event_type = 'cart', event_type = 'purchase') AS level FROM events "
    "GROUP BY customer_id) GROUP BY level ORDER BY level",
    "strict_once": "SELECT level, count(*) AS n FROM (SELECT customer_id, window_funnel(86400, event_ts, "
    "event_type = 'visit', event_type IN ('visit', 'cart'), event_type = 'purchase', 'strict_once') AS level "
    "FROM events GROUP BY customer_id) GROUP BY level ORDER BY level",
    "sequence_match_events": "SELECT customer_id, CAST(sequence_match_events('(?1).*(?2)', event_ts, "
    "event_type = 'cart', event_type = 'purchase') AS VARCHAR) AS t FROM events GROUP BY customer_id "
    "ORDER BY customer_id LIMIT 100",
    "sequence_next_node": "SELECT next, count(*) AS n FROM (SELECT customer_id, sequence_next_node('forward', "
    "'first_match', event_ts, event_type, true, event_type = 'cart') AS next FROM events GROUP BY customer_id) "
    "GROUP BY next ORDER BY next",
    "sessionize": "SELECT customer_id, max(s) AS sessions, count(*) AS events FROM (SELECT customer_id, "
    "sessionize(event_ts, INTERVAL '30 minutes') OVER (PARTITION BY customer_id ORDER BY event_ts) AS s "
    "FROM events) GROUP BY customer_id ORDER BY customer_id LIMIT 200",
    "cohort_unbounded": "SELECT cohort, period, active_customers, round(cumulative_revenue, 4) AS value "
    "FROM cohort_retention('purchases', 'quarter', 'unbounded') ORDER BY cohort, period",
    "cohort_breakdown": "SELECT breakdown, cohort, period, cohort_size, active_customers FROM "
    "cohort_retention('purchases', 'quarter', DATE '2024-06-30', 'bounded', 'customer_id') "
    "WHERE breakdown < 40 ORDER BY breakdown, cohort, period",
}


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    subprocess.run([BIN, "generate", "--customers", "800", "--shape", "dense", "--files", "3",
                    "--start", "2022-01-01", "--end", "2024-07-01", "--out", str(out)], check=True,
                   capture_output=True)
    return out


def cli(data, sql, *settings):
    args = [BIN, "sql", "--format", "csv"]
    for t in ("purchases", "events"):
        args += ["--table", f"{t}={data / t}"]
    for s in settings:
        args += ["-c", s]
    r = subprocess.run(args + ["-c", sql], check=True, capture_output=True, text=True)
    rows = list(csv.reader(io.StringIO(r.stdout)))
    return [[_norm(v) for v in row] for row in rows[1:]]


def python_rows(ctx, sql):
    table = ctx.sql(sql).to_arrow_table()
    out = []
    for row in table.to_pylist():
        out.append([_norm(_text(v)) for v in row.values()])
    return out


def _norm(text):
    """A cell as compared: numbers by value (8e-06 and 8e-6 are the same DOUBLE), the rest as text."""
    try:
        return float(text)
    except ValueError:
        return text


def _text(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if hasattr(v, "isoformat"):
        return v.isoformat(sep="T") if hasattr(v, "hour") else v.isoformat()
    return str(v)


@pytest.fixture(params=[1, 4], ids=["partitions1", "partitions4"])
def ctx(data, request):
    # Aggregates at 1 and 4 target partitions over the 3 files: the merge path crosses the FFI too.
    ctx = lc.session_context(SessionConfig().with_information_schema(True).with_target_partitions(request.param))
    for t in ("purchases", "events"):
        ctx.register_parquet(t, str(data / t))
    return ctx


@pytest.mark.parametrize("name", list(QUERIES))
def test_equals_lifecycle_sql(ctx, data, name):
    assert python_rows(ctx, QUERIES[name]) == cli(data, QUERIES[name])


def test_set_thresholds(data):
    ctx = lc.session_context()
    ctx.register_parquet("purchases", str(data / "purchases"))
    setting = "SET lifecycle.churn_days = 400"
    ctx.sql(setting).collect()
    assert ctx.sql("SHOW lifecycle.churn_days").to_pylist()[0]["value"] == "400"
    # Table functions plan with the session's thresholds.
    q = QUERIES["customer_value"]
    assert python_rows(ctx, q) == cli(data, q, setting)
    # Explicit thresholds need no session setting.
    assert python_rows(ctx, QUERIES["stages_explicit"]) == cli(data, QUERIES["stages"], setting)
    # The two-argument form cannot see them through the FFI: an error, not the defaults' answer.
    with pytest.raises(Exception, match="pass them explicitly"):
        ctx.sql(QUERIES["stages"]).collect()
    # Invalid values are refused with lifecycle sql's message, and change nothing.
    with pytest.raises(Exception, match="must be a whole number >= 1"):
        ctx.sql("SET lifecycle.churn_days = 0").collect()
    with pytest.raises(Exception, match="must be less than lifecycle.churn_days"):
        ctx.sql("SET lifecycle.at_risk_days = 500").collect()
    with pytest.raises(Exception, match="unknown option"):
        ctx.sql("SET lifecycle.nope = 1").collect()
    assert ctx.sql("SHOW lifecycle.churn_days").to_pylist()[0]["value"] == "400"
    # Back to the defaults, the two-argument form answers again.
    ctx.sql("SET lifecycle.churn_days = 180").collect()
    assert python_rows(ctx, QUERIES["stages"]) == cli(data, QUERIES["stages"])


def test_table_functions_read_settings_without_information_schema(data):
    # The settings are read from the context's configuration, not through SHOW.
    ctx = lc.session_context(SessionConfig())
    ctx.register_parquet("purchases", str(data / "purchases"))
    setting = "SET lifecycle.churn_days = 400"
    ctx.sql(setting).collect()
    q = QUERIES["customer_value"]
    try:
        assert python_rows(ctx, q) == cli(data, q, setting)
    finally:
        ctx.sql("SET lifecycle.churn_days = 180").collect()


def test_table_function_from_python(ctx, data):
    df = lc.cohort_retention(ctx, "purchases", "quarter", dt.date(2023, 12, 31))
    rows = [[_norm(_text(r[k])) for k in ("cohort", "period", "active_customers")] for r in df.to_pylist()]
    assert sorted(rows) == sorted(cli(data, QUERIES["cohort_as_of"]))


def test_sample_is_lifecycle_sqls():
    ctx = lc.sample(lc.session_context())
    for t in ("purchases", "customers", "events", "cdnow"):
        q = f"SELECT count(*) AS n FROM {t}"
        got = ctx.sql(q).to_pylist()[0]["n"]
        want = subprocess.run([BIN, "sql", "--format", "csv", "-c", q], check=True, capture_output=True,
                              text=True).stdout.split()[1]
        assert str(got) == want, t


def test_to_pandas_and_imports(ctx):
    from datafusion_lifecycle import cohort_retention, lifecycle_stage  # noqa: F401

    df = ctx.sql("SELECT * FROM cohort_retention('purchases', 'month')").to_pandas()
    assert list(df.columns) == ["cohort", "period", "cohort_size", "active_customers", "retention", "revenue",
                                "cumulative_revenue", "revenue_retention"]
    assert len(df) > 10
    assert "lifecycle_stage" in lifecycle_stage.doc or lifecycle_stage.doc


def test_wrong_argument_type_is_an_exception(ctx):
    with pytest.raises(Exception, match="lifecycle_stage"):
        ctx.sql("SELECT lifecycle_stage('not a time', 'x') FROM purchases").collect()
    with pytest.raises(Exception, match="window_funnel"):
        ctx.sql("SELECT window_funnel(order_ts, order_ts, TRUE) FROM purchases").collect()
    with pytest.raises(Exception, match="granularity|fortnight"):
        ctx.sql("SELECT * FROM cohort_retention('purchases', 'fortnight')").collect()
    with pytest.raises(Exception, match="nosuch"):
        ctx.sql("SELECT * FROM cohort_retention('nosuch', 'month')").collect()
    # The context keeps working.
    assert ctx.sql("SELECT count(*) AS n FROM purchases").to_pylist()[0]["n"] > 0


def test_register_on_a_plain_context(data):
    ctx = lc.register(SessionContext())
    ctx.register_parquet("purchases", str(data / "purchases"))
    assert python_rows(ctx, QUERIES["stages"]) == cli(data, QUERIES["stages"])


def test_type_stubs_are_current():
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "gen_stubs.py")
    r = subprocess.run([sys.executable, tool, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("unit", ["date32", "s", "ms", "us", "ns"])
def test_hostile_tables(tmp_path, unit):
    """Extreme dates, every timestamp unit, NULLs, a 0-row and a 1-row file: the same answers as
    lifecycle sql on the same Parquet, or one clear error, never a crash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if unit == "date32":
        lo, hi, t = dt.date(1600, 1, 1), dt.date(9999, 12, 31), pa.date32()
        as_of = "DATE '9999-12-31'"
    else:
        lo, hi, t = dt.datetime(1970, 1, 2), dt.datetime(2200, 1, 1), pa.timestamp(unit)
        as_of = "TIMESTAMP '2200-01-01 00:00:00'"
    rows = {
        "customer_id": [1, 1, 2, None, 3],
        "order_ts": pa.array([lo, hi, None, hi, hi], t),
        "amount": [1.5, None, 2.0, 3.0, 0.0],
    }
    full = tmp_path / "full"
    full.mkdir()
    pq.write_table(pa.table(rows), full / "a.parquet")
    pq.write_table(pa.table(rows).slice(0, 0), full / "empty.parquet")
    pq.write_table(pa.table(rows).slice(4, 1), full / "one.parquet")
    ctx = lc.session_context()
    ctx.register_parquet("purchases", str(full))
    for q in [
        f"SELECT customer_id, lifecycle_stage(order_ts, {as_of}) AS s FROM purchases "
        "GROUP BY customer_id ORDER BY customer_id",
        f"SELECT customer_id, rfm_summary(order_ts, amount, {as_of}).frequency AS f "
        "FROM purchases GROUP BY customer_id ORDER BY customer_id",
        "SELECT cohort, period, cohort_size, active_customers FROM cohort_retention('purchases', 'year') "
        "ORDER BY cohort, period",
    ]:
        args = [BIN, "sql", "--format", "csv", "--table", f"purchases={full}", "-c", q]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            with pytest.raises(Exception):
                ctx.sql(q).collect()
            continue
        want = [[_norm(v) for v in row] for row in csv.reader(io.StringIO(r.stdout))][1:]
        assert python_rows(ctx, q) == want, q
    # A file without rows: an empty triangle.
    ctx.register_parquet("nothing", str(full / "empty.parquet"))
    assert ctx.sql("SELECT * FROM cohort_retention('nothing', 'month')").to_pandas().empty


def test_qualified_table_name():
    """A table in another schema, by its qualified name; the triangle computed by hand."""
    import pyarrow as pa

    ctx = lc.session_context()
    ctx.sql("CREATE SCHEMA shop").collect()
    ts = [dt.datetime(2024, 1, 5), dt.datetime(2024, 3, 5), dt.datetime(2024, 2, 1)]
    t = pa.table({"customer_id": [1, 1, 2], "order_ts": pa.array(ts, pa.timestamp("us")), "amount": [1.0, 2.0, 3.0]})
    ctx.register_record_batches("shop.purchases", [t.to_batches()])
    got = ctx.sql("SELECT cohort, period, cohort_size, active_customers "
                  "FROM cohort_retention('shop.purchases', 'month') ORDER BY cohort, period").to_pylist()
    # Customer 1: cohort January, active in periods 0 and 2; customer 2: cohort February, period 0.
    want = [(dt.datetime(2024, 1, 1), 0, 1, 1), (dt.datetime(2024, 1, 1), 1, 1, 0), (dt.datetime(2024, 1, 1), 2, 1, 1),
            (dt.datetime(2024, 2, 1), 0, 1, 1), (dt.datetime(2024, 2, 1), 1, 1, 0)]
    assert [(r["cohort"], r["period"], r["cohort_size"], r["active_customers"]) for r in got] == want
