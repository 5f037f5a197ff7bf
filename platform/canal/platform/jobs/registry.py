"""Which job functions exist: the platform's, every module's (``ModuleSpec.jobs``), and any
registered in-process with ``register_job`` (a test's, a one-off command's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

JobFunction = Callable[..., Awaitable[Any]]

_registered: list[JobFunction] = []


def register_job(function: JobFunction) -> JobFunction:
    """Add a job function in this process (usable as a decorator)."""
    if function not in _registered:
        _registered.append(function)
        job_names.cache_clear()
    return function


def raw_job_functions() -> list[JobFunction]:
    from canal.exchange.bank.jobs import JOBS as bank_jobs  # not a module: every tenant has one
    from canal.platform.billing.jobs import JOBS as billing_jobs
    from canal.platform.jobs.builtin import cleanup_expired, noop, probe
    from canal.platform.modules import registry
    from canal.platform.notifications.delivery import deliver_message
    from canal.platform.search.jobs import JOBS as search_jobs

    functions: list[JobFunction] = [
        deliver_message,
        probe,
        noop,
        cleanup_expired,
        *search_jobs,
        *billing_jobs,
        *bank_jobs,
    ]
    for module in registry().values():
        functions.extend(module.jobs)
    for function in _registered:
        if function not in functions:
            functions.append(function)
    return functions


def job_name(function: Any) -> str:
    return str(getattr(function, "name", None) or function.__qualname__)


@lru_cache(maxsize=1)
def job_names() -> frozenset[str]:
    return frozenset(job_name(f) for f in raw_job_functions())
