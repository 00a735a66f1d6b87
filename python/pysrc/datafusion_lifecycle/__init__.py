"""Customer-lifecycle SQL functions for DataFusion Python.

Every function of Lifecycle (``lifecycle_stage``, ``churn_flag``, ``rfm_summary``, ``bgnbd_fit``,
``window_funnel``, ``cohort_retention``, ...) on a ``datafusion.SessionContext``. The scalar and
aggregate functions run in this package's native library and cross to DataFusion through its FFI,
so they run at native speed on the session's own tables::

    import datafusion_lifecycle as lc
    ctx = lc.session_context()
    ctx.register_parquet("purchases", "purchases/")
    ctx.sql("SELECT * FROM cohort_retention('purchases', 'month')").to_pandas()

Differences from ``lifecycle sql`` (DataFusion Python 55 and datafusion-ffi 55):

- The ``lifecycle.*`` options are a configuration extension, which DataFusion Python adds to a
  ``SessionConfig`` only: make the context with :func:`session_context` or :func:`config`
  (:func:`register` alone cannot add them to an existing context).
- ``lifecycle_stage(ts, as_of)`` and ``churn_flag(ts, as_of)`` cannot see the session's thresholds
  (the FFI passes no settings to aggregates): they use the defaults, and raise an error instead when
  thresholds were SET in the process. Pass the thresholds explicitly, or use the table functions,
  which do honour the session's settings.
- Table functions are planned by this package (its native planner writes the query as SQL over the
  session's table) and run by the session itself.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import threading as _threading
from typing import Any

from datafusion import DataFrame, SessionConfig, SessionContext, udaf, udf, udtf, udwf

from . import _native
from ._native import LifecycleOptions

__all__ = [
    "LifecycleOptions",
    "TableFunction",
    "config",
    "functions",
    "register",
    "sample",
    "session_context",
]


class TableFunction:
    """A lifecycle table function.

    In SQL on a registered context: ``SELECT * FROM cohort_retention('purchases', 'month')``.
    From Python: ``cohort_retention(ctx, 'purchases', 'month')`` returns the same DataFrame.
    """

    def __init__(self, native: Any) -> None:
        self._native = native
        self.name: str = native.name
        self.__doc__ = native.doc
        self.__name__ = native.name

    def __repr__(self) -> str:
        return f"<lifecycle table function {self.name}>"

    def sql(self, ctx: SessionContext, table: str, *args: Any) -> str:
        """The SQL this function runs on ``ctx`` for ``table`` and the constant ``args``."""
        if not isinstance(table, str):
            msg = f"{self.name}: the table argument must be a table name (a string), got {table!r}"
            raise TypeError(msg)
        schema = ctx.table(table).schema()
        literals = [_sql_literal(self.name, i + 2, a) for i, a in enumerate(args)]
        # The session's lifecycle.* settings, read from its configuration through the FFI (none
        # when it was made without them: it then runs with the defaults).
        options = _native.session_options(ctx)
        return _native.table_sql(self.name, table, literals, schema, options)

    def __call__(self, ctx: SessionContext, table: str, *args: Any) -> DataFrame:
        return ctx.sql(self.sql(ctx, table, *args))

    def _udtf(self, *exprs: Any, session: SessionContext) -> Any:
        # Called by DataFusion while it plans the calling query, inside its runtime: the
        # session's own calls (which wait on that runtime) run on a thread of their own.
        values = [_expr_value(self.name, i + 1, e) for i, e in enumerate(exprs)]
        if not values:
            msg = f"{self.name}: the first argument must be a table name"
            raise ValueError(msg)
        return _off_runtime(lambda: self(session, *values).into_view())


def _off_runtime(fn: Any) -> Any:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = e

    t = _threading.Thread(target=run, name="datafusion-lifecycle-plan")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _expr_value(func: str, position: int, expr: Any) -> Any:
    if expr.variant_name() != "Literal":
        msg = f"{func}: argument {position} must be a constant, got {expr.canonical_name()}"
        raise ValueError(msg)
    return expr.python_value().as_py()


def _sql_literal(func: str, position: int, v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, _decimal.Decimal)):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
    if isinstance(v, _dt.date):
        return f"DATE '{v.isoformat()}'"
    msg = f"{func}: argument {position} must be a string, number, date or datetime, got {v!r}"
    raise TypeError(msg)


_FUNCTIONS: list[tuple[str, Any]] = []
for _kind, _obj in _native.functions():
    _fn = TableFunction(_obj) if _kind == "table" else _obj
    _FUNCTIONS.append((_kind, _fn))
    # Each function importable by name (``from datafusion_lifecycle import lifecycle_stage``):
    # the FFI object, which ``datafusion.udf`` / ``udaf`` / ``udwf`` accept, or the table function.
    globals()[_obj.name] = _fn
    __all__.append(_obj.name)

_INTERNAL = _native.internal_functions()


def functions() -> list[tuple[str, Any]]:
    """Every lifecycle function as ``(kind, object)``; kind is ``scalar``, ``aggregate``, ``window`` or
    ``table``."""
    return list(_FUNCTIONS)


def config(base: SessionConfig | None = None) -> SessionConfig:
    """``base`` (default: a new ``SessionConfig`` with ``information_schema``, which ``SHOW`` needs)
    with the ``lifecycle.*`` options, so that ``SET lifecycle.churn_days = 120`` and
    ``SHOW lifecycle.churn_days`` work in a context made from it.

    DataFusion Python adds configuration extensions to a ``SessionConfig`` only, before the context
    exists; :func:`register` cannot add them to an existing context.
    """
    if base is None:
        base = SessionConfig().with_information_schema(True)
    return base.with_extension(LifecycleOptions())


def register(ctx: SessionContext) -> SessionContext:
    """Registers every lifecycle scalar, aggregate, window and table function on ``ctx``; returns ``ctx``.

    The ``lifecycle.*`` options come with the context's configuration (see :func:`config`).
    """
    for kind, obj in _FUNCTIONS:
        if kind == "scalar":
            ctx.register_udf(udf(obj))
        elif kind == "aggregate":
            ctx.register_udaf(udaf(obj))
        elif kind == "window":
            ctx.register_udwf(udwf(obj))
        else:
            ctx.register_udtf(udtf(obj._udtf, obj.name, with_session=True))
    for obj in _INTERNAL:
        ctx.register_udaf(udaf(obj))
    return ctx


def session_context(base: SessionConfig | None = None) -> SessionContext:
    """A new ``SessionContext`` with the ``lifecycle.*`` options and every lifecycle function."""
    return register(SessionContext(config(base)))


def sample(ctx: SessionContext) -> SessionContext:
    """Registers ``lifecycle sql``'s embedded sample on ``ctx``: ``purchases``, ``customers`` and
    ``events`` (12,000 generated customers over 2022-2024) and ``cdnow`` (the CDNOW sample of the
    BG/NBD paper); returns ``ctx``."""
    import pyarrow as pa

    for name, stream in _native.sample_tables():
        ctx.register_record_batches(name, [pa.table(stream).to_batches()])
    return ctx
