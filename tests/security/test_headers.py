"""Every answer carries the security headers — also routing's 404 and 405 and the refusals a
middleware makes; HTML says its charset once; /metrics is for this machine or a token."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from httpx import ASGITransport, AsyncClient

from canal.platform.http.middleware import SECURITY_HEADERS
from tests.factories import make_user, sign_in
from tests.security.test_cross_tenant_matrix import World, _build_world, _fill, _routes

EXPECTED = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}


def _missing(response) -> list[str]:
    missing = [h for h, v in EXPECTED.items() if response.headers.get(h) != v]
    if not response.headers.get("x-request-id"):
        missing.append("x-request-id")
    return missing


def _charsets(response) -> int:
    return response.headers.get("content-type", "").lower().count("charset=")


async def test_answers_made_outside_any_route_carry_the_headers(client):
    person = await make_user()
    answers = {
        "404 page": await client.get("/no-such-page", headers={"Accept": "text/html"}),
        "404 api": await client.get("/api/v1/no-such-thing"),
        "405": await client.delete("/healthz"),
        "405 api": await client.put("/api/v1/modules"),
        "400 nul": await client.get("/api/v1/modules?x=%00"),
        "403 csrf": await client.post("/logout"),
    }
    await sign_in(client, person)
    answers["415"] = await client.post("/api/v1/orgs", content="{}")
    answers["404 tenant"] = await client.get("/t/no-such-org-x/members")
    answers["422"] = await client.post("/api/v1/orgs", json={"name": "", "kind": "x"})
    for label, response in answers.items():
        assert response.status_code >= 400, (label, response.status_code)
        assert _missing(response) == [], (label, response.status_code, _missing(response))
    assert answers["404 page"].status_code == 404
    assert answers["405"].status_code == 405
    # Routing's refusals speak like every other: a bilingual problem, or the error page.
    assert answers["405 api"].json()["code"] == "method_not_allowed"
    assert "text/html" in answers["404 page"].headers["content-type"]
    assert _charsets(answers["404 page"]) == 1


@pytest.fixture(scope="module")
async def world(app) -> World:
    return await _build_world(app)


async def test_every_page_says_its_charset_once_and_carries_the_headers(app, world):
    problems: list[str] = []
    async with AsyncClient(
        transport=ASGITransport(app=app), base_url="https://testserver.local"
    ) as alice:
        await sign_in(alice, world.alice)
        for method, path, handler in _routes(app):
            if method != "GET" or handler.opt.get("access") not in {"tenant", "user", "public"}:
                continue
            for headers in ({"Accept": "text/html"}, {"HX-Request": "true"}):
                response = await alice.get(_fill(path, world.samples), headers=headers)
                if _charsets(response) > 1:
                    problems.append(f"{path}: {response.headers['content-type']}")
                if _missing(response):
                    problems.append(f"{path} -> {response.status_code}: {_missing(response)}")
    assert problems == []


async def _scrape(app: Any, client: tuple[str, int], **headers: str):
    async with AsyncClient(
        transport=ASGITransport(app=app, client=client), base_url="https://testserver.local"
    ) as c:
        return await c.get("/metrics", headers=headers)


async def test_metrics_answer_loopback_or_the_token_only(app):
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, metrics_token="scrape-secret-1")
    try:
        local = await _scrape(app, ("127.0.0.1", 40000))
        assert local.status_code == 200 and "canal_http_requests_total" in local.text
        assert _charsets(local) == 1
        assert (await _scrape(app, ("::1", 40000))).status_code == 200
        outsider = await _scrape(app, ("203.0.113.9", 40000))
        assert outsider.status_code == 403
        assert "metrics_forbidden" in outsider.text  # the error page names its code
        assert "canal_http" not in outsider.text
        # Through a reverse proxy on this machine the client looks local: not enough.
        relayed = await _scrape(app, ("127.0.0.1", 40000), **{"X-Forwarded-For": "203.0.113.9"})
        assert relayed.status_code == 403
        wrong = await _scrape(app, ("203.0.113.9", 40000), Authorization="Bearer nope")
        assert wrong.status_code == 403
        token = await _scrape(app, ("203.0.113.9", 40000), Authorization="Bearer scrape-secret-1")
        assert token.status_code == 200 and "canal_http_requests_total" in token.text
    finally:
        app.state.settings = settings
    # Without a token configured, a bearer proves nothing: still loopback only.
    assert (await _scrape(app, ("203.0.113.9", 1), Authorization="Bearer ")).status_code == 403
