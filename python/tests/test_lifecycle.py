"""datafusion_lifecycle in DataFusion Python, against `lifecycle sql` on the same generated Parquet.

The binary (env LIFECYCLE_BIN, default target/debug/lifecycle) generates the data and answers each
question; the same SQL then runs in a DataFusion Python context with the package's functions, and the
rows must be equal.
"""

import csv
import io
import os
import subprocess

import pytest
from datafusion import SessionContext

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
    "window_funnel": "SELECT level, count(*) AS n FROM (SELECT customer_id, window_funnel(86400, event_ts, "
    "event_type = 'visit', event_type = 'cart', event_type = 'purchase') AS level FROM events "
    "GROUP BY customer_id) GROUP BY level ORDER BY level",
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
    return rows[1:]


def python_rows(ctx, sql):
    table = ctx.sql(sql).to_arrow_table()
    out = []
    for row in table.to_pylist():
        out.append([_text(v) for v in row.values()])
    return out


def _text(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if hasattr(v, "isoformat"):
        return v.isoformat(sep="T") if hasattr(v, "hour") else v.isoformat()
    return str(v)


@pytest.fixture()
def ctx(data):
    ctx = lc.session_context()
    for t in ("purchases", "events"):
        ctx.register_parquet(t, str(data / t))
    return ctx


@pytest.mark.parametrize("name", list(QUERIES))
def test_equals_lifecycle_sql(ctx, data, name):
    assert python_rows(ctx, QUERIES[name]) == cli(data, QUERIES[name])


def test_set_thresholds_per_context(ctx, data):
    before = python_rows(ctx, QUERIES["stages"])
    ctx.sql("SET lifecycle.churn_days = 400").collect()
    after = python_rows(ctx, QUERIES["stages"])
    assert after != before
    assert after == cli(data, QUERIES["stages"], "SET lifecycle.churn_days = 400")
    assert ctx.sql("SHOW lifecycle.churn_days").to_pylist()[0]["value"] == "400"


def test_to_pandas_and_imports(ctx):
    from datafusion_lifecycle import cohort_retention, lifecycle_stage  # noqa: F401

    df = ctx.sql("SELECT * FROM cohort_retention('purchases', 'month')").to_pandas()
    assert list(df.columns) == ["cohort", "period", "cohort_size", "active_customers", "retention", "revenue"]
    assert len(df) > 10
    assert "lifecycle_stage" in lifecycle_stage.doc or lifecycle_stage.doc


def test_wrong_argument_type_is_an_exception(ctx):
    with pytest.raises(Exception, match="lifecycle_stage"):
        ctx.sql("SELECT lifecycle_stage('not a time', 'x') FROM purchases").collect()
    # The context keeps working.
    assert ctx.sql("SELECT count(*) AS n FROM purchases").to_pylist()[0]["n"] > 0


def test_register_on_a_plain_context(data):
    ctx = lc.register(SessionContext())
    ctx.register_parquet("purchases", str(data / "purchases"))
    assert python_rows(ctx, QUERIES["stages"]) == cli(data, QUERIES["stages"])
