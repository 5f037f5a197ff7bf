"""Fixtures for the organisation tests: the operator's staff, an owner and a tenant.
Helpers (people with phones, invitations, audit rows): tests/tenants/helpers.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import Person, make_tenant, make_user, unique


@pytest.fixture(scope="session")
async def operator_staff(app) -> dict[str, Any]:
    """The operator tenant with an owner (manage) and a platform auditor (read only)."""
    from tests.factories import make_operator_staff

    return await make_operator_staff()


@pytest.fixture
async def owner_and_tenant() -> tuple[Person, Any]:
    owner = await make_user("王所有者")
    tenant = await make_tenant(owner, name=f"聊城{unique('')}科技有限公司")
    return owner, tenant
