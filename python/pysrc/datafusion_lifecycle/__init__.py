"""Customer-lifecycle SQL functions for DataFusion Python.

Every function of Lifecycle (``lifecycle_stage``, ``churn_flag``, ``rfm_summary``, ``bgnbd_fit``,
``window_funnel``, ``cohort_retention``, ...) registered on a ``datafusion.SessionContext``. The
functions run in this package's native library and cross to DataFusion through its FFI, so they run
at native speed on the session's own tables::

    import datafusion_lifecycle as lc
    ctx = lc.session_context()
    ctx.register_parquet("purchases", "purchases/")
    ctx.sql("SELECT * FROM cohort_retention('purchases', 'month')").to_pandas()
"""

from __future__ import annotations

from datafusion import SessionConfig, SessionContext, udaf, udf, udtf

from . import _native
from ._native import LifecycleOptions

_FUNCTIONS = _native.functions()

__all__ = ["LifecycleOptions", "config", "functions", "register", "sample", "session_context"]

# Each function importable by name (``from datafusion_lifecycle import lifecycle_stage``): the FFI
# object, which ``datafusion.udf`` / ``udaf`` / ``udtf`` accept.
for _kind, _obj in _FUNCTIONS:
    globals()[_obj.name] = _obj
    __all__.append(_obj.name)


def functions() -> list[tuple[str, object]]:
    """Every lifecycle function as ``(kind, object)``; kind is ``scalar``, ``aggregate`` or ``table``."""
    return list(_FUNCTIONS)


def config(base: SessionConfig | None = None) -> SessionConfig:
    """``base`` (or a new ``SessionConfig`` with ``information_schema``, which ``SHOW`` needs) with the
    ``lifecycle.*`` options, so that
    ``SET lifecycle.churn_days = 120`` and ``SHOW lifecycle.churn_days`` work in a context made from it.

    DataFusion Python adds configuration extensions to a ``SessionConfig`` only, before the context
    exists; ``register`` cannot add them to an existing context.
    """
    if base is None:
        base = SessionConfig().with_information_schema(True)
    return base.with_extension(LifecycleOptions())


def register(ctx: SessionContext) -> SessionContext:
    """Registers every lifecycle scalar, aggregate and table function on ``ctx``; returns ``ctx``."""
    for kind, obj in _FUNCTIONS:
        if kind == "scalar":
            ctx.register_udf(udf(obj))
        elif kind == "aggregate":
            ctx.register_udaf(udaf(obj))
        else:
            ctx.register_udtf(udtf(obj, obj.name))
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
