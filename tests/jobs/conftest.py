"""Jobs tests: the operator console's staff, a worker factory with fast retries."""

from __future__ import annotations

from typing import Any

import pytest

from canal.platform import db
from tests.factories import make_user, unique


@pytest.fixture(scope="session")
async def operator_staff(app) -> dict[str, Any]:
    """The operator tenant with an owner (manage) and a platform auditor (read only)."""
    from canal.platform.access.services import access
    from canal.platform.http.tenancy import forget_tenant
    from canal.tenants.services import create_operator_tenant
    from canal.tenants.tables import Membership, Tenant
    from tests.factories import credit_code

    existing = await Tenant.select(Tenant.id).where(Tenant.kind == "operator").first()
    admin = await make_user("运营管理员")
    auditor = await make_user("平台审计员")
    if existing is None:
        operator = await create_operator_tenant(
            creator_id=admin.user_id,
            name="数字东昌测试运营公司",
            slug=unique("op-"),
            credit_code=credit_code(),
        )
        operator_id = operator.id
    else:
        operator_id = existing["id"]
        async with db.tenant_scope(operator_id):
            await Membership.insert(Membership(tenant_id=operator_id, user_id=admin.user_id))
            await access().assign_role(admin.user_id, "owner", operator_id)
    async with db.tenant_scope(operator_id):
        await Membership.insert(Membership(tenant_id=operator_id, user_id=auditor.user_id))
        await access().assign_role(auditor.user_id, "platform_auditor", operator_id)
    forget_tenant()
    return {"admin": admin, "auditor": auditor, "operator_id": operator_id}


async def drain(runtime, **kwargs: Any) -> Any:
    """Run a burst worker in this process until the queue is empty; returns the worker."""
    from canal.platform.jobs import make_worker

    worker = make_worker(runtime, burst=True, **kwargs)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker
