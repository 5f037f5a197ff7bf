"""Jobs test helpers: a burst worker run in the test's own process."""

from __future__ import annotations

from typing import Any


async def drain(runtime, **kwargs: Any) -> Any:
    """Run a burst worker in this process until the queue is empty; returns the worker."""
    from canal.platform.jobs import make_worker

    worker = make_worker(runtime, burst=True, **kwargs)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker
