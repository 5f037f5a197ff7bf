"""Builders for the policy tests: an authority, subscribed enterprises, a policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

from canal.platform import clock
from canal.platform.http.context import TenantContext, TenantRef
from tests.factories import make_tenant, make_user, unique


def certificate(name: str = "高新技术企业") -> dict[str, str]:
    """A certificate held for two years and valid for another year, on whatever day the tests
    run (fixed dates here were time bombs: "valid to 2027-12-31" fails in 2028)."""
    today = clock.today()
    return {
        "name": name,
        "valid_from": (today - dt.timedelta(days=730)).isoformat(),
        "valid_to": (today + dt.timedelta(days=365)).isoformat(),
    }


def ctx_of(tenant: Any, person: Any) -> TenantContext:
    return TenantContext(
        TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active"),
        person.user_id,
        ("owner",),
    )


async def org(kind: str, name: str | None = None) -> tuple[Any, Any, TenantContext]:
    """A fresh organisation of ``kind`` with the policy module on: (owner, tenant, ctx)."""
    from canal.tenants.services import set_module

    owner = await make_user(unique("负责人"))
    tenant = await make_tenant(owner, kind=kind, name=name or unique("测试单位") + "有限公司")
    ctx = ctx_of(tenant, owner)
    await set_module(ctx, "policy", enabled=True)
    return owner, tenant, ctx


def policy_json(criteria: dict[str, Any], **over: Any) -> dict[str, Any]:
    today = clock.today()
    data = {
        "title": unique("测试政策"),
        "issuer": "东昌府区科学技术局",
        "level": "district",
        "doc_number": "东科发〔2026〕99号",
        "support_type": "subsidy",
        "window_opens": (today - dt.timedelta(days=5)).isoformat(),
        "window_closes": (today + dt.timedelta(days=30)).isoformat(),
        "summary": "测试用政策",
        "amount_text": "最高10万元",
        "amount_max_yuan": 100000,
        "materials": ["申报书"],
        "criteria": criteria,
    }
    data.update(over)
    return data


CRITERIA = {
    "all": [
        {"fact": "region_code", "op": "prefix_in", "prefixes": ["371502"]},
        {"op": "certified", "name": "高新技术企业", "on": "window_open"},
        {"fact": "employees", "op": "range", "min": 20},
    ]
}
