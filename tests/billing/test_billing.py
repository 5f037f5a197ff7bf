"""Paid plans, entitlements, reconciliation, payments, Connect and metering against
localstripe (+ the stand-in for what localstripe lacks), through the real gateway."""

from __future__ import annotations

import uuid

import pytest

from canal.platform import db
from canal.platform.billing import catalogue, services
from canal.platform.billing.jobs import billing_handle_event, reconcile_subscriptions
from canal.platform.billing.tables import BillingSubscription, UsageRecord
from canal.tenants.services import forget_modules
from canal.tenants.tables import ModuleSubscription
from tests.billing.helpers import billed_tenant, deliver, event, stripe_subscription
from tests.factories import sign_in

GATEWAY_CREATES = (
    "/v1/customers",
    "/v1/products",
    "/v1/plans",
    "/v1/checkout/sessions",
    "/v1/billing_portal/sessions",
    "/v1/payment_intents",
    "/v1/accounts",
    "/v1/account_links",
    "/v1/billing/meter_events",
)


async def _subscribe_via_webhook(client, gateway, b):
    sub = await stripe_subscription(gateway, b)
    evt = event("customer.subscription.created", sub)
    assert (await deliver(client, evt)).status_code == 200
    await billing_handle_event({}, evt["id"])
    return sub


@pytest.mark.stripe_clock
async def test_subscription_state_drives_the_entitlement(client, gateway):
    b = await billed_tenant(client)
    home = f"/api/v1/t/{b.tenant.slug}/m/smartpark"
    assert (await client.get(home)).status_code == 403  # not subscribed
    sub = await _subscribe_via_webhook(client, gateway, b)
    assert (await client.get(home)).status_code == 200
    modules = (await client.get(f"/t/{b.tenant.slug}/modules")).text
    assert "管理账单" in modules  # the owner reads Chinese
    # The catalogue's switch does not cancel a paid subscription behind Stripe's back.
    refused = await client.post(
        f"/api/v1/t/{b.tenant.slug}/modules/smartpark", json={"enabled": False}
    )
    assert refused.status_code == 409 and refused.json()["code"] == "billing_managed"
    cancelled = await gateway.v1.subscriptions.cancel_async(sub["id"])
    evt = event("customer.subscription.deleted", cancelled.to_dict(recursive=True))
    await deliver(client, evt)
    await billing_handle_event({}, evt["id"])
    assert (await client.get(home)).status_code == 403
    from tests.tenants.helpers import audit_actions

    actions = await audit_actions(b.tenant.id)
    assert "billing.subscribed" in actions and "billing.cancelled" in actions


@pytest.mark.stripe_clock
async def test_reconciliation_repairs_a_drifted_row(client, gateway):
    b = await billed_tenant(client)
    await _subscribe_via_webhook(client, gateway, b)
    async with db.tenant_scope(b.tenant.id):  # drift: both rows say it ended
        await ModuleSubscription.update({ModuleSubscription.status: "cancelled"}).where(
            ModuleSubscription.tenant_id == b.tenant.id
        )
        await BillingSubscription.update({BillingSubscription.status: "canceled"}).where(
            BillingSubscription.tenant_id == b.tenant.id
        )
    # A write behind the app's back: forget the cached subscriptions as a notice would.
    forget_modules(b.tenant.id, broadcast_change=False)
    home = f"/api/v1/t/{b.tenant.slug}/m/smartpark"
    assert (await client.get(home)).status_code == 403
    counts = await reconcile_subscriptions({})
    assert counts["checked"] >= 1 and counts["failed"] == 0
    assert (await client.get(home)).status_code == 200
    async with db.tenant_scope(b.tenant.id):
        row = await BillingSubscription.select(BillingSubscription.status).first()
    assert row["status"] == "active"


async def test_idempotency_keys_are_sent_and_replayed(gateway, standin):
    b = await billed_tenant()
    before = len(standin.requests)
    first = await services.ensure_customer(b.ctx)
    # A retried create with the same key (a crashed job running again) gets the same object.
    again = await gateway.create_customer(
        name="x", metadata={}, idempotency_key=f"canal:customer:{b.tenant.id}"
    )
    assert again == first
    await services.start_checkout(b.ctx, "smartpark", "pro", base_url="https://canal.test")
    new = standin.requests[before:]
    creates = [r for r in new if r.method == "POST" and r.path.startswith(GATEWAY_CREATES)]
    assert creates and all(r.headers.get("idempotency-key") for r in creates)
    assert any(r.answered_by == "replay" for r in new)
    for r in standin.requests:  # every create the gateway ever sent carried a key
        if r.method == "POST" and r.path in GATEWAY_CREATES:
            assert r.headers.get("idempotency-key"), r.path


async def test_sync_catalogue_is_idempotent(gateway, standin):
    ids = await services.sync_catalogue()
    assert "canal_smartpark_pro_cny_299900_month" in ids
    before = len(standin.sent("POST", "/v1/p"))
    assert await services.sync_catalogue() == ids
    assert len(standin.sent("POST", "/v1/p")) == before  # second run only reads
    plan = await gateway.v1.plans.retrieve_async("canal_smartpark_pro_cny_299900_month")
    assert plan.currency == "cny" and plan.amount == 299_900


async def test_checkout_sessions_in_cny_card_and_wallets(client, gateway, standin):
    b = await billed_tenant(client)
    page = await client.get(f"/t/{b.tenant.slug}/billing")
    assert page.status_code == 200 and "¥2,999" in page.text
    response = await client.post(
        f"/t/{b.tenant.slug}/billing/checkout",
        data={"module_key": "smartpark", "plan": "pro", "method": "card"},
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(standin.base_url + "/checkout/cs_test_")
    sent = standin.sent("POST", "/v1/checkout/sessions")[-1].form
    assert sent["mode"] == "subscription"
    assert sent["payment_method_types[0]"] == "card" and "payment_method_types[1]" not in sent
    assert sent["line_items[0][price]"] == "canal_smartpark_pro_cny_299900_month"
    assert sent["subscription_data[metadata][tenant_id]"] == str(b.tenant.id)
    api = await client.post(
        f"/api/v1/t/{b.tenant.slug}/billing/checkout",
        json={"module_key": "smartpark", "plan": "pro", "method": "wallet", "months": 3},
    )
    assert api.status_code == 200 and api.json()["url"]
    sent = standin.sent("POST", "/v1/checkout/sessions")[-1].form
    assert sent["mode"] == "payment"
    assert {v for k, v in sent.items() if k.startswith("payment_method_types")} == {
        "card",
        "alipay",
        "wechat_pay",
    }
    assert sent["line_items[0][price_data][currency]"] == "cny"
    assert sent["line_items[0][price_data][unit_amount]"] == str(299_900 * 3)
    # A free-only module has no paid plan to buy.
    bad = await client.post(
        f"/api/v1/t/{b.tenant.slug}/billing/checkout",
        json={"module_key": "policy", "plan": "pro"},
    )
    assert bad.status_code == 422


async def test_prepaid_wallet_checkout_grants_the_term(client, gateway):
    b = await billed_tenant(client)
    customer = await services.ensure_customer(b.ctx)
    session = {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "customer": customer,
        "metadata": {
            "tenant_id": str(b.tenant.id),
            "module_key": "exchange",
            "plan": "pro",
            "kind": "prepaid",
            "months": "3",
        },
    }
    evt = event("checkout.session.completed", session)
    await deliver(client, evt)
    await billing_handle_event({}, evt["id"])
    dup = event("checkout.session.completed", session)  # a second event for the same session
    await deliver(client, dup)
    await billing_handle_event({}, dup["id"])
    async with db.tenant_scope(b.tenant.id):
        row = (
            await ModuleSubscription.select()
            .where(ModuleSubscription.module_key == "exchange")
            .first()
        )
    assert row["status"] == "active" and row["active_until"] is not None
    days = (row["active_until"] - row["created_at"]).days
    assert 89 <= days <= 90  # three months once, not twice
    assert (await client.get(f"/api/v1/t/{b.tenant.slug}/m/exchange")).status_code == 200


async def test_one_off_cny_payment_with_alipay(gateway, standin):
    b = await billed_tenant()
    key = f"order-{uuid.uuid4().hex[:12]}"
    paid = await services.create_payment(
        b.ctx, 12_800, "数据集购买 dataset", key, payment_method_types=("alipay",)
    )
    assert paid.payment_intent_id and paid.payment_intent_id.startswith("pi_")
    intent = await gateway.retrieve_payment_intent(paid.payment_intent_id)
    assert intent["currency"] == "cny" and intent["amount"] == 12_800
    sent = standin.sent("POST", "/v1/payment_intents")[-1]
    assert sent.answered_by == "localstripe" and sent.form["payment_method_types[0]"] == "alipay"
    assert intent["status"] in {"requires_payment_method", "requires_confirmation"}
    posts = len(standin.sent("POST", "/v1/payment_intents"))
    again = await services.create_payment(b.ctx, 12_800, "数据集购买 dataset", key)
    assert again.payment_intent_id == paid.payment_intent_id  # same order, no second charge
    assert len(standin.sent("POST", "/v1/payment_intents")) == posts


async def test_destination_charge_carries_the_platform_fee(gateway, standin):
    provider = await billed_tenant()
    buyer = await billed_tenant()
    account = await services.create_connected_account(provider.ctx)
    assert account.startswith("acct_")
    assert await services.create_connected_account(provider.ctx) == account  # one per tenant
    link = await services.onboarding_link(provider.ctx, base_url="https://canal.test")
    assert account in link
    sent_link = standin.sent("POST", "/v1/account_links")[-1].form
    assert sent_link["type"] == "account_onboarding"
    payment = await services.create_payment(
        buyer.ctx, 50_000, "模型订购 model order", f"o-{uuid.uuid4().hex[:10]}", account
    )
    assert payment.application_fee_fen == 5_000  # 10 % of ¥500
    sent = standin.sent("POST", "/v1/payment_intents")[-1]
    assert sent.answered_by == "standin"
    assert sent.form["application_fee_amount"] == "5000"
    assert sent.form["transfer_data[destination]"] == account
    assert sent.form["currency"] == "cny"
    assert sent.headers.get("idempotency-key")


async def test_meter_events_dedup_by_identifier(gateway, standin):
    b = await billed_tenant()
    await services.ensure_customer(b.ctx)
    before = len(standin.sent("POST", "/v1/billing/meter_events"))
    assert await services.record_usage(b.ctx, "model_inference", 3, "job-1") is True
    assert await services.record_usage(b.ctx, "model_inference", 3, "job-1") is False
    assert await services.record_usage(b.ctx, "model_inference", 2, "job-2") is True
    sent = standin.sent("POST", "/v1/billing/meter_events")[before:]
    assert [r.form["identifier"] for r in sent] == [
        services.stripe_identifier(b.tenant.id, "job-1"),
        services.stripe_identifier(b.tenant.id, "job-2"),
    ]
    assert sent[0].form["payload[value]"] == "3"
    async with db.tenant_scope(b.tenant.id):
        rows = await UsageRecord.select().where(UsageRecord.tenant_id == b.tenant.id)
    assert len(rows) == 2 and all(r["sent_at"] for r in rows)
    # Another tenant's "job-1" is its own usage.
    other = await billed_tenant()
    await services.ensure_customer(other.ctx)
    assert await services.record_usage(other.ctx, "model_inference", 1, "job-1") is True


async def test_billing_page_lists_invoices_and_portal(client, gateway, standin):
    b = await billed_tenant(client)
    await _subscribe_via_webhook(client, gateway, b)
    data = (await client.get(f"/api/v1/t/{b.tenant.slug}/billing")).json()
    assert data["no_charge"] is False and data["has_customer"] is True
    assert data["subscriptions"][0]["status"] == "active"
    assert data["invoices"] and data["invoices"][0]["currency"] == "cny"
    portal = await client.post(f"/t/{b.tenant.slug}/billing/portal")
    assert portal.status_code == 303 and "/portal/bps_" in portal.headers["location"]
    sent = standin.sent("POST", "/v1/billing_portal/sessions")[-1].form
    assert sent["return_url"].endswith(f"/t/{b.tenant.slug}/billing")


async def test_tenant_b_cannot_see_tenant_a_billing(client, gateway, app):
    from httpx import ASGITransport, AsyncClient

    a = await billed_tenant(client)
    await _subscribe_via_webhook(client, gateway, a)
    b = await billed_tenant()
    async with AsyncClient(
        transport=ASGITransport(app=app), base_url="https://testserver.local"
    ) as other:
        await sign_in(other, b.owner)
        for path in (
            f"/t/{a.tenant.slug}/billing",
            f"/api/v1/t/{a.tenant.slug}/billing",
        ):
            assert (await other.get(path)).status_code == 404, path
        for path in (
            f"/api/v1/t/{a.tenant.slug}/billing/portal",
            f"/api/v1/t/{a.tenant.slug}/billing/checkout",
        ):
            response = await other.post(path, json={"module_key": "smartpark", "plan": "pro"})
            assert response.status_code == 404, path
        mine = (await other.get(f"/api/v1/t/{b.tenant.slug}/billing")).json()
        assert mine["invoices"] == [] and mine["subscriptions"] == []


async def test_no_charge_mode_grants_and_marks(client, gateway):
    from canal.platform.billing.gateway import GatewayConfig, StripeGateway, use_gateway

    b = await billed_tenant(client)
    use_gateway(StripeGateway(GatewayConfig(api_key=None)))
    try:
        response = await client.post(
            f"/t/{b.tenant.slug}/billing/checkout",
            data={"module_key": "modelstore", "plan": "pro", "method": "card"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/t/{b.tenant.slug}/billing"
        data = (await client.get(f"/api/v1/t/{b.tenant.slug}/billing")).json()
        assert data["no_charge"] is True
        assert data["subscriptions"][0]["source"] == "no_charge"
        assert (await client.get(f"/api/v1/t/{b.tenant.slug}/m/modelstore")).status_code == 200
        paid = await services.create_payment(b.ctx, 100, "demo", "demo-order-1")
        assert paid.no_charge and paid.payment_intent_id is None
        cancel = await client.post(
            f"/api/v1/t/{b.tenant.slug}/billing/cancel", json={"module_key": "modelstore"}
        )
        assert cancel.status_code == 200
        assert (await client.get(f"/api/v1/t/{b.tenant.slug}/m/modelstore")).status_code == 403
    finally:
        use_gateway(gateway)


def test_prices_are_in_fen_and_resident_modules_stay_free():
    assert catalogue.format_fen(299_900) == "¥2,999"
    assert catalogue.format_fen(12_850) == "¥128.50"
    for free in ("sscard", "community", "policy"):
        assert catalogue.paid_plans(free) == ()


async def test_non_ascii_digits_in_forms_are_refused_not_500(client, gateway):
    """``"²".isdigit()`` is true but ``int("²")`` raises: such input must answer 4xx, never 500.
    (The account-token form's check lives here too: the identity tests are another change's.)"""
    b = await billed_tenant(client)
    for months in ("²", "٣", "1²", "99999"):
        response = await client.post(
            f"/t/{b.tenant.slug}/billing/checkout",
            data={"module_key": "smartpark", "plan": "pro", "method": "wallet", "months": months},
        )
        assert response.status_code == 422, (months, response.status_code)
        assert "预付月数无效" in response.text
    for days in ("²", "³⁰", "٣٠"):
        response = await client.post(
            "/account/tokens", data={"name": "脚本", "tenant_id": "", "expires_in_days": days}
        )
        assert response.status_code == 422, (days, response.status_code)


async def test_item_subscriptions_reach_their_hook_and_only_their_owner_cancels(
    app, gateway, standin
):
    """A domain's own recurring item (a dataset subscription): its states go to the kind's
    hook, never to module entitlements; a forged customer is unmatched; only the customer's
    tenant can cancel it (at period end)."""
    from canal.platform.http.errors import CanalError

    seen: list[tuple[uuid.UUID, str, str]] = []

    async def hook(tenant_id: uuid.UUID, sub: dict, seen_at: int) -> str:
        seen.append((tenant_id, sub["id"], str(sub.get("status"))))
        return "hooked"

    services.on_subscription_changed("test_item", hook)
    b = await billed_tenant()
    url = await services.start_item_subscription(
        b.ctx,
        kind="test_item",
        reference="ref-1",
        product_id=f"canal_test_item_{uuid.uuid4().hex[:8]}",
        product_name="测试订阅项",
        amount_fen=1234,
        success_url="https://canal.example/ok",
        cancel_url="https://canal.example/back",
    )
    assert url.startswith(standin.base_url)
    form = standin.sent("POST", "/v1/checkout/sessions")[-1].form
    assert form["mode"] == "subscription" and form["line_items[0][price]"].endswith(
        "_cny_1234_month"
    )
    customer = await services.ensure_customer(b.ctx)
    pm = await gateway.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await gateway.v1.payment_methods.attach_async(pm.id, {"customer": customer})
    await gateway.v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    meta = {"kind": "test_item", "tenant_id": str(b.tenant.id), "reference": "ref-1"}
    sub = (
        await gateway.v1.subscriptions.create_async(
            {
                "customer": customer,
                "items": [{"plan": form["line_items[0][price]"]}],
                "metadata": meta,
            }
        )
    ).to_dict(recursive=True)
    async with db.transaction():
        assert await services.apply_subscription(sub, seen_at=1) == "hooked"
    assert seen == [(b.tenant.id, sub["id"], "active")]
    async with db.tenant_scope(b.tenant.id):
        assert not await BillingSubscription.exists().where(
            BillingSubscription.stripe_subscription_id == sub["id"]
        )
    other = await billed_tenant()
    forged = {**sub, "metadata": {**meta, "tenant_id": str(other.tenant.id)}}
    async with db.transaction():
        assert await services.apply_subscription(forged, seen_at=2) == "unmatched"
    await services.ensure_customer(other.ctx)
    try:
        await services.cancel_item_subscription(other.ctx, sub["id"])
        raise AssertionError("another tenant cancelled the subscription")
    except CanalError as error:
        assert error.status == 404
    cancelled = await services.cancel_item_subscription(b.ctx, sub["id"])
    assert cancelled["cancel_at_period_end"] is True and cancelled["status"] == "active"


async def test_priced_usage_is_stored_not_metered(app, gateway, standin):
    b = await billed_tenant()
    await services.ensure_customer(b.ctx)
    before = len(standin.sent("POST", "/v1/billing/meter_events"))
    assert await services.record_usage(b.ctx, "exchange_query", 250, "q-1") is True
    assert await services.record_usage(b.ctx, "exchange_query", 250, "q-1") is False
    assert len(standin.sent("POST", "/v1/billing/meter_events")) == before
    await services.send_pending_usage()
    assert len(standin.sent("POST", "/v1/billing/meter_events")) == before
    async with db.tenant_scope(b.tenant.id):
        row = (
            await UsageRecord.select()
            .where((UsageRecord.tenant_id == b.tenant.id) & (UsageRecord.identifier == "q-1"))
            .first()
        )
    assert row["sent_at"] is None and row["invoice_item_id"] is None  # waits for the month
