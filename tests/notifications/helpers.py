"""Notifications test helpers: deliver everything queued, with fast retries."""

from __future__ import annotations

from typing import Any

from canal.platform.jobs import RetryPolicy
from tests.jobs.helpers import drain

FAST = RetryPolicy(max_tries=3, base_seconds=0.01, cap_seconds=0.05)


async def deliver_all(mailing_runtime) -> Any:
    return await drain(mailing_runtime, policy=FAST)
