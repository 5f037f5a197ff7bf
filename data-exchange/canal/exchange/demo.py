"""Demo data for the exchange (filled in below)."""

from __future__ import annotations

from typing import Any


async def seed(world: Any) -> None:
    return None
