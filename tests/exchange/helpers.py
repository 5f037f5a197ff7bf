"""Shared set-up for the exchange tests: organisations with the module on, a provider with a
published dataset, and a realistic CSV (enterprise electricity by month, with personal data)."""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient

from canal.platform.http.context import TenantContext, TenantRef
from tests.factories import Person, make_tenant, make_user, sign_in, unique

INDUSTRIES = ["机械制造", "钢管加工", "软件信息", "食品加工", "纺织服装", "化工材料"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"


def id_number(rng: random.Random) -> str:
    from canal.exchange.pii import ID_CHECK, ID_WEIGHTS

    birth = f"{rng.randint(1960, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"371502{birth}{rng.randint(0, 999):03d}"
    total = sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True))
    return body + ID_CHECK[total % 11]


def electricity_csv(rows: int = 240, seed: int = 7, encoding: str = "utf-8") -> bytes:
    """Companies × months: industry, monthly kWh, bill, contact name, mobile, ID number."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["企业编号", "行业", "月份", "用电量", "电费", "联系人", "手机号", "身份证号"])
    companies = max(1, rows // 12)
    for c in range(companies):
        industry = INDUSTRIES[c % len(INDUSTRIES)]
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        mobile = f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"
        ident = id_number(rng)
        for month in range(1, 13):
            kwh = round(rng.uniform(5_000, 90_000), 1)
            writer.writerow(
                [
                    f"E{c:04d}",
                    industry,
                    f"2025-{month:02d}",
                    kwh,
                    f"{kwh * 0.68:.2f}",
                    name,
                    mobile,
                    ident,
                ]
            )
    return out.getvalue().encode(encoding)


@dataclass
class Org:
    owner: Person
    tenant: Any
    ctx: TenantContext

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def api(self) -> str:
        return f"/api/v1/t/{self.tenant.slug}/m/exchange"

    @property
    def web(self) -> str:
        return f"/t/{self.tenant.slug}/m/exchange"


async def enable(ctx: TenantContext) -> None:
    from canal.tenants.services import set_module

    await set_module(ctx, "exchange", enabled=True)


async def make_org(name: str = "数据企业", kind: str = "enterprise") -> Org:
    owner = await make_user(name)
    tenant = await make_tenant(owner, kind=kind, name=f"{name}{unique('')}有限公司")
    ctx = TenantContext(
        TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active"),
        owner.user_id,
        ("owner",),
    )
    await enable(ctx)
    return Org(owner, tenant, ctx)


async def operator_org(person: Person) -> Org:
    from canal.platform.http.tenancy import forget_tenant
    from canal.tenants.tables import Tenant

    row = await Tenant.select().where(Tenant.kind == "operator").first()
    assert row is not None
    ctx = TenantContext(
        TenantRef(row["id"], row["slug"], row["name"], "operator", "active"),
        person.user_id,
        ("owner",),
    )
    from canal.tenants.services import module_enabled

    if not await module_enabled(row["id"], "exchange"):
        await enable(ctx)
    forget_tenant()

    class _T:
        id = row["id"]
        slug = row["slug"]
        name = row["name"]
        kind = "operator"

    return Org(person, _T, ctx)


async def approved_provider(name: str = "数智软件") -> Org:
    from canal.exchange.services import approve_provider_directly

    org = await make_org(name)
    await approve_provider_directly(org.tenant.id, org.owner.user_id)
    return org


DATASET = {
    "title": "东昌府区企业月度用电量",
    "description": "2025 年各企业按月的用电量与电费,按行业分类,可用于产业景气分析。",
    "category": "energy",
    "update_frequency": "monthly",
    "source_statement": "来自本公司能源管理平台采集的企业电表数据,经企业授权使用。",
    "sensitivity": "internal",
    "licence_purpose": "产业分析与政策研究,不得用于营销。",
    "delivery_modes": ["download", "compute", "api"],
    "tags": ["用电", "产业"],
}


async def create_dataset(client: AsyncClient, org: Org, **overrides: Any) -> dict[str, Any]:
    await sign_in(client, org.owner)
    response = await client.post(f"{org.api}/datasets", json={**DATASET, **overrides})
    assert response.status_code == 201, response.text
    return response.json()


async def upload_version(
    client: AsyncClient, org: Org, dataset_id: str, data: bytes, name: str = "电量.csv"
) -> Any:
    await sign_in(client, org.owner)
    uploaded = await client.post(
        f"/api/v1/t/{org.slug}/files",
        params={"purpose": "dataset", "name": name},
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert uploaded.status_code == 201, uploaded.text
    return await client.post(
        f"{org.api}/datasets/{dataset_id}/versions", json={"file_id": uploaded.json()["id"]}
    )


async def published_dataset(
    client: AsyncClient,
    provider: Org,
    operator: Org,
    data: bytes | None = None,
    privacy: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """A listed dataset; its privacy settings confirmed as profiling proposed them, with
    ``privacy`` (the ``POST …/privacy`` body) applied on top."""
    dataset = await create_dataset(client, provider, **overrides)
    version = await upload_version(client, provider, dataset["id"], data or electricity_csv())
    assert version.status_code == 201, version.text
    confirmed = await client.post(
        f"{provider.api}/datasets/{dataset['id']}/privacy", json=privacy or {}
    )
    assert confirmed.status_code == 200, confirmed.text
    submitted = await client.post(f"{provider.api}/datasets/{dataset['id']}/submit")
    assert submitted.status_code == 204, submitted.text
    await sign_in(client, operator.owner)
    reviewed = await client.post(
        f"{operator.api}/review/{dataset['id']}",
        json={"approve": True, "reason": "来源与脱敏规则已核对。"},
    )
    assert reviewed.status_code == 204, reviewed.text
    return str(dataset["id"])


async def active_grant(
    client: AsyncClient, provider: Org, buyer: Org, dataset_id: str, modes: list[str] | None = None
) -> str:
    await sign_in(client, buyer.owner)
    requested = await client.post(
        f"{buyer.api}/catalogue/{dataset_id}/request",
        json={
            "purpose": "分析本区制造业用电的季节性变化。",
            "modes": modes or ["download", "compute", "api"],
        },
    )
    assert requested.status_code == 201, requested.text
    grant_id = requested.json()["id"]
    await sign_in(client, provider.owner)
    decided = await client.post(
        f"{provider.api}/grants/{grant_id}/decision", json={"approve": True}
    )
    assert decided.status_code == 204, decided.text
    return str(grant_id)


def new_id() -> str:
    return str(uuid.uuid4())
