"""Samples for the cross-tenant matrix, one file per domain.

Each module here defines ``async def add_samples(world, ctx_a) -> None``: it creates real
objects of tenant A (``ctx_a`` is A's owner's context; ``world.tenant_a`` / ``world.alice``
are there too), puts their ids under the path-parameter names its routes use
(``world.samples["policy_id"] = …``), and may add marker strings to ``world.markers``.

Only put markers in data that is private to tenant A: things public by design (a published
listing in the catalogue) legitimately appear on Bob's pages and would read as a leak.
A module's routes stay covered the moment they exist; without a sample for a new parameter
name the matrix fails and says which one is missing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from typing import Any

SampleBuilder = Callable[[Any, Any], Awaitable[None]]


def builders() -> list[SampleBuilder]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(module.add_samples)
    return found
