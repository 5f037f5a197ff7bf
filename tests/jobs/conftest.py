"""Jobs tests: the operator console's staff. Helpers (a burst worker): tests/jobs/helpers.py."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
async def operator_staff(app) -> dict[str, Any]:
    """The operator tenant with an owner (manage) and a platform auditor (read only)."""
    from tests.factories import make_operator_staff

    return await make_operator_staff()
