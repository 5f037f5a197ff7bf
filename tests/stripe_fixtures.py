"""Stripe for the tests, once per session: localstripe (a real, stateful fake Stripe server) on
loopback, the stand-in in front of it for the endpoints localstripe lacks, the gateway pointed at
them. Tests use the session's one app (billing reads the gateway per request).

A plugin (``pytest_plugins`` in tests/conftest.py), not a directory's conftest: fixtures that
several directories import from a conftest are instantiated once per directory — a second
localstripe and gateway then replaced the first mid-run, and a customer made at one localstripe
was invoiced at the other (404). The billing, supermarket and data-exchange Stripe tests switch
the gateway on per test (``stripe_on``, autouse in their conftests)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest

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
    from canal.platform.billing.gateway import GatewayConfig, StripeGateway

    gw = StripeGateway(
        GatewayConfig(
            api_key="sk_test_canal",
            api_base=standin.base_url,
            webhook_secret=WEBHOOK_SECRET,
            platform_fee_percent=10,
        )
    )
    return gw  # switched on per test by stripe_on


@pytest.fixture
def stripe_on(gateway):
    """The gateway for one test only. Left on for the session, it made every later test's
    in-process payments go to Stripe (orders stayed unpaid where a test expected the no-charge
    path) — so the Stripe directories switch it on per test (autouse in their conftests)."""
    from canal.platform.billing.gateway import use_gateway

    use_gateway(gateway)
    try:
        yield gateway
    finally:
        use_gateway(None)
