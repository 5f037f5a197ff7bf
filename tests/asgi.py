"""Running the app's ASGI lifespan in the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar


@asynccontextmanager
async def lifespan(application: Litestar) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan in this event loop (the pool must live on the test loop)."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        application(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},  # type: ignore[arg-type]
            inbox.get,
            outbox.put,
        )
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"app failed to start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task
