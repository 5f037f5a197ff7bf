"""Data trading objects of tenant A for the cross-tenant matrix: A is an approved provider
with a published dataset (``dataset_id``, ``provider_id``) and the buyer of another provider's
dataset under an active grant with every delivery mode (``grant_id``)."""

from __future__ import annotations

from typing import Any

from canal.exchange import services
from canal.exchange.tables import Provider
from canal.platform import db
from canal.platform.http.context import TenantContext, TenantRef
from canal.platform.storage.services import object_store
from tests.exchange.helpers import electricity_csv, enable, make_org
from tests.factories import make_operator_staff

DATASET = services.DatasetInput(
    title="矩阵测试数据集",
    description="用于跨租户矩阵测试的企业用电数据。",
    category="energy",
    update_frequency="monthly",
    source_statement="本公司能源管理平台采集的企业电表数据。",
    sensitivity="internal",
    licence_purpose="产业分析",
    delivery_modes=["download", "compute", "api"],
)


async def _published(ctx: TenantContext, operator: TenantContext) -> dict[str, Any]:
    await services.approve_provider_directly(ctx.tenant_id, ctx.user_id)
    dataset = await services.create_dataset(ctx, DATASET)
    stored = await object_store().upload_bytes(
        ctx, "dataset", electricity_csv(), filename="电量.csv"
    )
    await services.add_version(ctx, dataset["id"], stored.id)
    await services.confirm_privacy(ctx, dataset["id"], services.PrivacyInput())
    await services.submit_for_review(ctx, dataset["id"])
    await services.review_dataset(operator, dataset["id"], approve=True, reason="已核对。")
    return dataset


async def add_samples(world: Any, ctx_a: TenantContext) -> None:
    staff = await make_operator_staff()
    from canal.tenants.tables import Tenant

    row = await Tenant.select().where(Tenant.id == staff["operator_id"]).first()
    assert row is not None
    operator = TenantContext(
        TenantRef(row["id"], row["slug"], row["name"], "operator", "active"),
        staff["admin"].user_id,
        ("owner",),
    )
    await enable(ctx_a)
    mine = await _published(ctx_a, operator)
    other = await make_org("矩阵数据提供方")
    theirs = await _published(other.ctx, operator)
    marker = world.markers[0]
    grant = await services.request_access(
        ctx_a, theirs["id"], f"{marker} 的研究用途说明", ["download", "compute", "api"]
    )
    await services.decide_request(other.ctx, grant["id"], approve=True)
    async with db.tenant_scope(ctx_a.tenant_id):
        provider = (
            await Provider.select(Provider.id).where(Provider.tenant_id == ctx_a.tenant_id).first()
        )
    assert provider is not None
    world.samples["dataset_id"] = str(mine["id"])
    world.samples["grant_id"] = str(grant["id"])
    world.samples["provider_id"] = str(provider["id"])
    # A's approved listing is published to every signed-in person (the read-only catalogue
    # for residents): another tenant's owner may read it; nothing else of A may appear.
    world.samples["published"] = (
        "/exchange/catalogue",
        "/api/v1/exchange/catalogue",
        "/exchange/catalogue/{dataset_id:uuid}",
        "/api/v1/exchange/catalogue/{dataset_id:uuid}",
    )
