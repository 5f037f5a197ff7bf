"""Jobs tests: the operator console's staff, a worker factory with fast retries."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
async def operator_staff(app) -> dict[str, Any]:
    """The operator tenant with an owner (manage) and a platform auditor (read only)."""
    from tests.factories import make_operator_staff

    return await make_operator_staff()


async def drain(runtime, **kwargs: Any) -> Any:
    """Run a burst worker in this process until the queue is empty; returns the worker."""
    from canal.platform.jobs import make_worker

    worker = make_worker(runtime, burst=True, **kwargs)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker
