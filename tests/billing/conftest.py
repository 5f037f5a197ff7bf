"""Billing fixtures: localstripe (a real, stateful fake Stripe server) on loopback, the
stand-in in front of it for the endpoints localstripe lacks, and the gateway pointed at them.

The app is the real one plus billing's routes (registered here until the lead wires
``canal.platform.billing.controllers.ROUTES`` into ``app.py``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar

from tests.conftest import lifespan
from tests.factories import Person, make_tenant, make_user, sign_in, unique

WEBHOOK_SECRET = "whsec_canal_test_" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# localstripe's own start() binds every interface and loads its state from a file shared by
# every run on the machine (/tmp/localstripe.pickle); serve its app on loopback, from scratch.
_LOCALSTRIPE = (
    "import sys; from aiohttp import web; from localstripe.server import app; "
    "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)"
)


def _start_localstripe(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # our own venv's interpreter, fixed arguments
        [sys.executable, "-c", _LOCALSTRIPE, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
async def localstripe_url() -> AsyncIterator[str]:
    port = _free_port()
    process = _start_localstripe(port)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a fresh venv compiles aiohttp on first import
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            await asyncio.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
async def standin(localstripe_url: str):
    from canal.platform.billing.standin import StripeStandIn

    stand = StripeStandIn(localstripe_url=localstripe_url)
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()


@pytest.fixture(scope="session")
async def gateway(standin):
    from canal.platform.billing.gateway import GatewayConfig, StripeGateway, use_gateway

    gw = StripeGateway(
        GatewayConfig(
            api_key="sk_test_canal",
            api_base=standin.base_url,
            webhook_secret=WEBHOOK_SECRET,
            platform_fee_percent=10,
        )
    )
    use_gateway(gw)
    try:
        yield gw
    finally:
        use_gateway(None)


@pytest.fixture(scope="session")
async def app(runtime, gateway) -> AsyncIterator[Litestar]:
    from canal.platform.app import create_app
    from canal.platform.billing.controllers import ROUTES

    application = create_app(runtime, pool_size=10)
    wired = {r.path for r in application.routes}
    for handler in ROUTES:
        if not set(handler.paths) & wired:
            application.register(handler)
    async with lifespan(application):
        yield application


# --- helpers -------------------------------------------------------------------------------


def sign(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """A ``Stripe-Signature`` header exactly as Stripe computes it (scheme v1)."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event(etype: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "type": etype,
        "data": {"object": obj},
    }


async def deliver(client, evt: dict[str, Any], **sign_kw: Any):
    body = json.dumps(evt).encode()
    return await client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body, **sign_kw), "Content-Type": "application/json"},
    )


class Billed:
    """A signed-in owner of an enterprise tenant, with its context for service calls."""

    def __init__(self, owner: Person, tenant: Any, ctx: Any) -> None:
        self.owner, self.tenant, self.ctx = owner, tenant, ctx


async def billed_tenant(client=None, kind: str = "enterprise") -> Billed:
    from canal.platform.http.context import TenantContext, TenantRef

    owner = await make_user("计费所有者")
    tenant = await make_tenant(owner, kind=kind, name=f"聊城{unique('')}计费公司")
    ref = TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active")
    ctx = TenantContext(tenant=ref, user_id=owner.user_id, roles=("owner",))
    if client is not None:
        await sign_in(client, owner)
    return Billed(owner, tenant, ctx)


async def stripe_subscription(gw, b: Billed, module_key: str = "smartpark", plan: str = "pro"):
    """What Checkout would have created: a customer with a card, subscribed to the plan."""
    from canal.platform.billing import catalogue, services

    price = await services._ensure_price(module_key, catalogue.paid_plan(module_key, plan))
    customer = await services.ensure_customer(b.ctx)
    v1 = gw.v1
    pm = await v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await v1.payment_methods.attach_async(pm.id, {"customer": customer})
    await v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    meta = {"tenant_id": str(b.tenant.id), "module_key": module_key, "plan": plan}
    sub = await v1.subscriptions.create_async(
        {"customer": customer, "items": [{"plan": price}], "metadata": meta},
        {"idempotency_key": f"test:sub:{uuid.uuid4()}"},
    )
    return sub.to_dict(recursive=True)
