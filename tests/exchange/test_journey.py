"""The main path over the JSON API: provider lists → profiling → operator review → catalogue →
request → approval → the three delivery modes → usage audit on every side."""

from __future__ import annotations

import httpx
import pytest

from canal.platform import db
from tests.exchange.helpers import (
    active_grant,
    approved_provider,
    create_dataset,
    electricity_csv,
    make_org,
    published_dataset,
    upload_version,
)
from tests.factories import sign_in


async def test_profile_detects_personal_data_and_proposes_masking(client):
    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    response = await upload_version(client, provider, dataset["id"], electricity_csv())
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["status"] == "ready" and version["rows"] == 240
    columns = {c["name"]: c for c in version["profile"]["columns"]}
    assert columns["手机号"]["pii"] == "mobile"
    assert columns["身份证号"]["pii"] == "id_card"
    assert columns["联系人"]["pii"] == "name"
    assert columns["用电量"]["pii"] is None and columns["用电量"]["type"] == "DOUBLE"
    assert columns["行业"]["distinct"] == 6
    assert columns["身份证号"]["min"] is None  # never a raw ID number in the profile
    detail = (await client.get(f"{provider.api}/datasets/{dataset['id']}")).json()
    rules = detail["dataset"]["masking_rules"]
    assert rules["手机号"] == "mask" and rules["身份证号"] == "hash" and rules["行业"] == "keep"


async def test_full_trade_over_the_api(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方企业")
    dataset_id = await published_dataset(client, provider, op)

    await sign_in(client, buyer.owner)
    catalogue = await client.get(f"{buyer.api}/catalogue", params={"category": "energy"})
    assert dataset_id in [r["id"] for r in catalogue.json()]
    listing = (await client.get(f"{buyer.api}/catalogue/{dataset_id}")).json()
    header = [c["name"] for c in listing["columns"]]
    mobile = listing["sample"][0][header.index("手机号")]
    assert "****" in mobile and len(mobile) == 11
    assert len(listing["sample"][0][header.index("身份证号")]) == 16  # salted hash

    grant_id = await active_grant(client, provider, buyer, dataset_id)
    from canal.platform.notifications.tables import Notification

    async with db.transaction():
        told = await Notification.select(Notification.user_id, Notification.link).where(
            Notification.kind == "exchange"
        )
    assert (buyer.owner.user_id, f"{buyer.web}/grants/{grant_id}") in {
        (n["user_id"], n["link"]) for n in told
    }
    assert (provider.owner.user_id, f"{provider.web}/grants/{grant_id}") in {
        (n["user_id"], n["link"]) for n in told
    }
    await sign_in(client, buyer.owner)

    download = await client.post(f"{buyer.api}/grants/{grant_id}/download")
    assert download.status_code == 201, download.text
    # Short-lived: the presigned URL itself says five minutes, as the API does.
    assert download.json()["expires_in"] == 300
    assert "X-Amz-Expires=300&" in download.json()["url"]
    async with httpx.AsyncClient() as s3:
        body = (await s3.get(download.json()["url"])).content.decode()
    assert "身份证号" in body and "****" in body
    assert not any(
        ch.isdigit() and len(line.split(",")[-1]) == 18
        for line in body.splitlines()[1:3]
        for ch in line[-1:]
    )

    query = await client.post(
        f"{buyer.api}/grants/{grant_id}/queries",
        json={
            "sql": "SELECT 行业, count(*) AS n, avg(用电量) AS kwh FROM data "
            "GROUP BY 行业 ORDER BY 行业"
        },
    )
    assert query.status_code == 201, query.text
    result = query.json()
    assert result["columns"] == ["行业", "n", "kwh"] and len(result["rows"]) == 6
    # No run time: it would say how much data the query touched before suppression.
    assert "elapsed_ms" not in result

    page = await client.get(
        f"{buyer.api}/grants/{grant_id}/rows", params={"page_no": 2, "size": 50}
    )
    assert page.status_code == 200, page.text
    assert len(page.json()["rows"]) == 50 and page.json()["total"] == 240
    assert all("****" in r[page.json()["columns"].index("手机号")] for r in page.json()["rows"])

    # The buyer cannot read the provider's audit (not a member there).
    assert (await client.get(f"{provider.api}/usage")).status_code == 404
    await sign_in(client, provider.owner)
    events = (await client.get(f"{provider.api}/usage")).json()["events"]
    assert {"sample", "download", "query", "api_page"} <= {e["action"] for e in events}
    # Who and what, by name: the buyer organisation, never a person of another organisation.
    used = [e for e in events if e["grant_id"] == grant_id]
    assert used and all(e["buyer_name"] == buyer.tenant.name for e in used)
    assert all(e["dataset_title"] == "东昌府区企业月度用电量" for e in used)
    assert all(e["user_name"] == "" for e in used)
    page = await client.get(f"{provider.web}/usage")
    assert buyer.tenant.name in page.text and "使用方" in page.text
    await sign_in(client, buyer.owner)
    mine = (await client.get(f"{buyer.api}/usage")).json()["events"]
    assert {e["action"] for e in mine} >= {"download", "query", "api_page"}
    assert all(e["buyer_tenant_id"] == str(buyer.tenant.id) for e in mine)
    assert all(e["user_name"] for e in mine)  # its own people, by name
    await sign_in(client, op.owner)
    everything = (await client.get(f"{op.api}/usage")).json()["events"]
    assert any(e["grant_id"] == grant_id for e in everything)


async def test_revocation_stops_every_mode(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方企业")
    dataset_id = await published_dataset(client, provider, op)
    grant_id = await active_grant(client, provider, buyer, dataset_id)
    await sign_in(client, provider.owner)
    assert (
        await client.post(f"{provider.api}/grants/{grant_id}/revoke", json={})
    ).status_code == 204
    await sign_in(client, buyer.owner)
    answers = [
        await client.post(f"{buyer.api}/grants/{grant_id}/download"),
        await client.post(
            f"{buyer.api}/grants/{grant_id}/queries", json={"sql": "SELECT count(*) FROM data"}
        ),
        await client.get(f"{buyer.api}/grants/{grant_id}/rows"),
    ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert all(a.json()["code"] == "grant_inactive" for a in answers)


@pytest.fixture
def no_charge_billing():
    """Billing without a Stripe key (the demo's mode), whatever another test installed."""
    from canal.platform.billing.gateway import GatewayConfig, StripeGateway, gateway, use_gateway

    previous = gateway()
    use_gateway(StripeGateway(GatewayConfig(api_key=None)))
    yield
    use_gateway(previous)


async def test_paid_dataset_opens_once_paid_through_billing(client, op, no_charge_billing):
    from canal.platform.billing.tables import Payment

    provider = await approved_provider()
    buyer = await make_org("付费买方")
    dataset_id = await published_dataset(
        client, provider, op, price_model="one_off", price_yuan="128.50", delivery_modes=["api"]
    )
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["api"])
    async with db.platform_scope():
        [payment] = await Payment.select().where(Payment.idempotency_key == f"exchange-{grant_id}")
    # No-charge mode: recorded as paid at once, no PaymentIntent.
    assert payment["tenant_id"] == buyer.tenant.id and payment["amount_fen"] == 12850
    assert payment["status"] == "succeeded" and payment["no_charge"] is True
    await sign_in(client, buyer.owner)
    url = f"{buyer.api}/grants/{grant_id}/rows"
    assert (await client.get(url)).status_code == 200
    events = (await client.get(f"{buyer.api}/usage")).json()["events"]
    assert any(e["action"] == "purchase" and e["amount_fen"] == 12850 for e in events)

    # Without a settled payment the grant does not open; paying (again) opens it.
    async with db.platform_scope():
        await Payment.delete().where(Payment.id == payment["id"])
    unpaid = await client.get(url)
    assert unpaid.status_code == 402 and unpaid.json()["code"] == "payment_pending"
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    assert "¥128.50" in page.text and "/payment" in page.text
    paid = await client.post(f"{buyer.api}/grants/{grant_id}/payment")
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded"
    assert (await client.get(url)).status_code == 200
