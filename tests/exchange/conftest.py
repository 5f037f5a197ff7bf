from __future__ import annotations

import pytest

from tests.exchange.helpers import operator_org


@pytest.fixture
async def op(operator):
    return await operator_org(operator)
