"""Telling the other processes that a cached fact changed.

Each process keeps small caches in memory (the casbin enforcer, tenants by slug, resolved
sessions and tokens). When one process changes the row behind a cached fact it clears its own
cache at once and broadcasts a notice on Redis; every other web or worker process clears or
reloads the same entry when the notice arrives. A process ignores its own notices.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("canal.invalidation")

CHANNEL = "canal:invalidate"
_ORIGIN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
_publish: Callable[[str], Coroutine[Any, Any, Any]] | None = None
_pending: set[asyncio.Task[Any]] = set()
# Caches outside the platform (a domain's own) register the kind they listen to; the platform
# cannot import them (dependency direction platform <- tenants <- modules).
_handlers: dict[str, Callable[[str], None]] = {}


def register(kind: str, handler: Callable[[str], None]) -> None:
    """Call ``handler(argument)`` when another process broadcasts ``kind``."""
    _handlers[kind] = handler


def attach(publish: Callable[[str], Coroutine[Any, Any, Any]] | None) -> None:
    global _publish
    _publish = publish


def attached() -> bool:
    return _publish is not None


def broadcast(kind: str, argument: str = "") -> None:
    """Fire and forget: a lost notice is repaired by the caches' own expiry."""
    if _publish is None:
        return
    try:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            _publish(f"{_ORIGIN}|{kind}|{argument}")
        )
    except RuntimeError:  # no running loop (a CLI command): nobody to tell in this process
        return
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def handle(message: str) -> None:
    origin, _, rest = message.partition("|")
    if origin == _ORIGIN:
        return
    kind, _, argument = rest.partition("|")
    if kind == "casbin":
        from canal.platform.access.services import access

        await access().reload()
    elif kind == "tenant":
        from canal.platform.http.tenancy import forget_tenant

        forget_tenant(argument or None, broadcast_change=False)
    elif kind == "auth":
        from canal.platform.http.auth import forget

        forget(argument or None, broadcast_change=False)
    elif kind in _handlers:
        _handlers[kind](argument)
    else:
        log.warning("unknown invalidation notice %r", message)
