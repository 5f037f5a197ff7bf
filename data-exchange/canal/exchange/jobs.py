"""Background work of the exchange: profiling versions too large to profile in the request."""

from __future__ import annotations

import uuid
from typing import Any


async def exchange_profile_version(ctx: dict[str, Any], tenant_id: str, version_id: str) -> str:
    """Idempotent: a version that is no longer "profiling" is skipped."""
    from canal.exchange.services import profile_version

    return await profile_version(uuid.UUID(tenant_id), uuid.UUID(version_id))
