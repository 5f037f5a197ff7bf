"""Demo data for the service supermarket (filled in below)."""

from typing import Any


async def seed(world: Any) -> None:
    return None
