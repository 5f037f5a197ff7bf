"""The Charlie test for every route: an outsider never gets tenant A's data.

Enumerates every route the app registered (so a new route is covered the moment it exists),
fills its path with tenant A's real objects, and calls it:

* anonymously — must answer 401/403/404 or send the browser to sign in;
* as Bob, a signed-in owner of another tenant — must answer 401/403/404, except routes about
  the caller himself ("user" access with no object in the path), whose answer must not contain
  any of A's marker strings, and routes a sample builder lists in ``published`` (what A
  published to every signed-in person, e.g. a data catalogue listing), which may answer and
  name A as the publisher but must not contain any other marker;
* as Alice, A's owner, for GET routes of A — must succeed, proving the samples are real and
  the refusals above are not an accident of bad URLs;
* as Amy, a plain member of A, for every tenant route of A — the route's permission decides:
  a route her role lacks must refuse her with the guard's 403, one her role holds must let her
  in (a GET must succeed, as for Alice), and no answer may contain tenant B's private data
  (B's own markers: a file, a notification, an invitation, a member of B).

A path parameter the matrix does not know fails the test: add a sample for it below, or for a
module's objects in ``tests/security/matrix_samples/<domain>.py``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from canal.platform import clock, db
from tests.factories import Person, make_tenant, make_user, sign_in, unique

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
REFUSED = {401, 403, 404}
SKIP_METHODS = {"OPTIONS", "HEAD"}


@dataclass
class World:
    alice: Person
    bob: Person
    amy: Person  # a second member of A
    tenant_a: Any
    tenant_b: Any
    markers: list[str]
    samples: dict[str, str] = field(default_factory=dict)
    markers_b: list[str] = field(default_factory=list)  # tenant B's private data


async def _build_world(app) -> World:
    from canal.platform.access.services import access
    from canal.platform.identity.secrets import new_api_token, new_token, token_hash
    from canal.platform.identity.tables import ApiToken, Consent, UserSession
    from canal.tenants.services import forget_modules
    from canal.tenants.tables import Invitation, Membership, ModuleSubscription

    marker = unique("甲方机密")
    alice = await make_user(f"{marker}-alice", login=f"{unique('alice')}@example.cn")
    amy = await make_user("amy", login=f"{unique('amy')}@example.cn")
    bob = await make_user("bob", login=f"{unique('bob')}@example.cn")
    tenant_a = await make_tenant(alice, name=f"{marker} 有限公司")
    tenant_b = await make_tenant(bob, name="乙方有限公司")
    invitation = Invitation(
        tenant_id=tenant_a.id,
        recipient=f"{unique('inv')}@example.cn",
        role="member",
        token_hash=token_hash(new_token()),
        invited_by=alice.user_id,
        expires_at=clock.now() + dt.timedelta(days=7),
    )
    async with db.tenant_scope(tenant_a.id, alice.user_id):
        await Membership.insert(Membership(tenant_id=tenant_a.id, user_id=amy.user_id))
        await access().assign_role(amy.user_id, "member", tenant_a.id)
        await invitation.save()
        await ModuleSubscription.insert(
            ModuleSubscription(tenant_id=tenant_a.id, module_key="policy")
        )
    forget_modules(tenant_a.id, broadcast_change=False)  # written behind the services' back
    consent = Consent(user=alice.user_id, purpose="realname", text_version="matrix")
    async with db.transaction():
        await consent.save()
    token, prefix = new_api_token()
    api_token = ApiToken(
        user=alice.user_id,
        tenant=tenant_a.id,
        name=f"{marker}-token",
        prefix=prefix,
        token_hash=token_hash(token),
    )
    await api_token.save()
    session = (
        await UserSession.select(UserSession.id).where(UserSession.user == alice.user_id).first()
    )
    if session is None:
        from canal.platform.identity.services import start_session
        from canal.platform.settings import get_settings

        session_id = (await start_session(get_settings(), alice.user_id)).session_id
    else:
        session_id = session["id"]
    from canal.platform.http.context import TenantContext, TenantRef
    from canal.platform.storage.services import object_store

    ctx_a = TenantContext(
        TenantRef(tenant_a.id, tenant_a.slug, tenant_a.name, tenant_a.kind, "active"),
        alice.user_id,
        ("owner",),
    )
    stored = await object_store().upload_bytes(
        ctx_a, "document", f"{marker}\n".encode(), filename=f"{marker}.txt"
    )
    from canal.platform.jobs.tables import DeadJob
    from canal.platform.notifications.services import notify

    async with db.transaction():
        [note] = await notify([alice.user_id], "system", title_zh=f"{marker}通知", title_en=marker)
        dead = DeadJob(job_id=uuid.uuid4().hex, function="noop", args=[], error=marker, tries=1)
        await dead.save()
    world = World(alice, bob, amy, tenant_a, tenant_b, markers=[marker, alice.login, amy.login])
    world.markers_b = await _tenant_b_private_data(bob, tenant_b)
    world.samples = {
        "tenant_slug": tenant_a.slug,
        "tenant_id": str(tenant_a.id),
        "module_key": "policy",
        "invitation_id": str(invitation.id),
        "user_id": str(amy.user_id),
        "member_id": str(amy.user_id),
        "session_id": str(session_id),
        "token_id": str(api_token.id),
        "consent_id": str(consent.id),
        "file_id": str(stored.id),
        "notification_id": str(note),
        "dead_job_id": str(dead.id),
        # Secrets in links: the outsider does not have A's, so a guess must find nothing.
        "token": new_token(),
    }
    # Each domain adds its own objects and parameter names (tests/security/matrix_samples/).
    from tests.security.matrix_samples import builders

    for add_samples in builders():
        await add_samples(world, ctx_a)
    return world


async def _tenant_b_private_data(bob: Person, tenant_b: Any) -> list[str]:
    """Private data of tenant B, each named with B's own marker; returns the markers."""
    from canal.platform.access.services import access
    from canal.platform.http.context import TenantContext, TenantRef
    from canal.platform.identity.secrets import new_token, token_hash
    from canal.platform.notifications.services import notify
    from canal.platform.storage.services import object_store
    from canal.tenants.tables import Invitation, Membership

    marker = unique("乙方机密")
    carol = await make_user(f"{marker}-carol", login=f"{unique('carol')}@example.cn")
    ctx_b = TenantContext(
        TenantRef(tenant_b.id, tenant_b.slug, tenant_b.name, tenant_b.kind, "active"),
        bob.user_id,
        ("owner",),
    )
    async with db.tenant_scope(tenant_b.id, bob.user_id):
        await Membership.insert(Membership(tenant_id=tenant_b.id, user_id=carol.user_id))
        await access().assign_role(carol.user_id, "member", tenant_b.id)
        await Invitation(
            tenant_id=tenant_b.id,
            recipient=f"{marker}@example.cn",
            role="member",
            token_hash=token_hash(new_token()),
            invited_by=bob.user_id,
            expires_at=clock.now() + dt.timedelta(days=7),
        ).save()
    await object_store().upload_bytes(
        ctx_b, "document", f"{marker}\n".encode(), filename=f"{marker}.txt"
    )
    async with db.transaction():
        await notify([bob.user_id], "system", title_zh=f"{marker}通知", title_en=marker)
    return [marker, carol.login]


def _routes(app) -> list[tuple[str, str, Any]]:
    found = []
    for route in app.routes:
        if route.path.startswith(("/api/schema", "/static")):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(getattr(handler, "http_methods", [])):
                if method in SKIP_METHODS or handler.handler_name == "options_handler":
                    continue
                found.append((method, route.path, handler))
    return found


def _fill(path: str, samples: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in samples:
            raise KeyError(name)
        return samples[name]

    return PARAM.sub(replace, path)


async def _call(client: AsyncClient, method: str, url: str):
    if method == "GET":
        return await client.get(url)
    headers = {"content-type": "application/json"}
    return await client.request(method, url, content=b"{}", headers=headers)


def _leaks(text: str, markers: list[str]) -> list[str]:
    return [m for m in markers if m in text]


@pytest.fixture(scope="module")
async def world(app) -> World:
    return await _build_world(app)


async def _client(app) -> AsyncClient:
    return AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver.local",
        follow_redirects=False,
    )


async def test_matrix_covers_every_route_and_param(app, world):
    unknown = []
    for method, path, _ in _routes(app):
        try:
            _fill(path, world.samples)
        except KeyError as exc:
            unknown.append(f"{method} {path}: no sample for {{{exc.args[0]}}}")
    assert unknown == [], "add samples to the matrix: " + "; ".join(unknown)
    assert len(_routes(app)) >= 5


async def test_anonymous_gets_nothing_of_tenant_a(app, world):
    problems = []
    async with await _client(app) as anon:
        for method, path, handler in _routes(app):
            access = handler.opt.get("access")
            if access == "public" and "{" not in path:
                continue
            url = _fill(path, world.samples)
            response = await _call(anon, method, url)
            to_login = response.status_code in {302, 303} and response.headers.get(
                "location", ""
            ).startswith("/login")
            # A public route with a secret in its path: a guessed secret finds nothing (any
            # 4xx: "this link is invalid or has expired" is a fair answer).
            guessed = access == "public" and 400 <= response.status_code < 500
            if response.status_code not in REFUSED and not to_login and not guessed:
                problems.append(f"{method} {path} -> {response.status_code}")
            elif leaked := _leaks(response.text, world.markers):
                problems.append(f"{method} {path} leaked {leaked}")
    assert problems == []


async def test_other_tenants_owner_gets_nothing_of_tenant_a(app, world):
    from canal.tenants.tables import Invitation, Membership

    problems = []
    async with await _client(app) as bob:
        await sign_in(bob, world.bob)
        for method, path, handler in _routes(app):
            access = handler.opt.get("access")
            if access == "public" and "{" not in path:
                continue
            url = _fill(path, world.samples)
            response = await _call(bob, method, url)
            published = path in world.samples.get("published", ())
            if (access == "user" and "{" not in path) or (published and access == "user"):
                # About Bob himself, or what A published to everyone signed in (with A's name
                # as its publisher): allowed, but nothing else of A may appear.
                text = (
                    response.text.replace(world.tenant_a.name, "") if published else (response.text)
                )
                if leaked := _leaks(text, world.markers):
                    problems.append(f"{method} {path} leaked {leaked}")
                continue
            guessed = access == "public" and 400 <= response.status_code < 500
            if response.status_code not in REFUSED and not guessed:
                problems.append(f"{method} {path} -> {response.status_code}")
            elif leaked := _leaks(response.text, world.markers):
                problems.append(f"{method} {path} leaked {leaked}")
    assert problems == []
    # And Bob changed nothing of A's.
    async with db.tenant_scope(world.tenant_a.id):
        members = await Membership.count().where(Membership.tenant_id == world.tenant_a.id)
        pending = await Invitation.count().where(
            (Invitation.tenant_id == world.tenant_a.id)
            & Invitation.accepted_at.is_null()
            & Invitation.revoked_at.is_null()
        )
    assert (members, pending) == (2, 1)


async def test_tenant_a_owner_can_read_every_page_of_tenant_a(app, world):
    """Positive control: the URLs the outsiders were refused are real."""
    failures = []
    async with await _client(app) as alice:
        await sign_in(alice, world.alice)
        for method, path, handler in _routes(app):
            if method != "GET" or handler.opt.get("access") != "tenant":
                continue
            response = await alice.get(_fill(path, world.samples))
            # A download answers with a redirect to a short-lived presigned S3 URL.
            presigned = response.status_code in {302, 303} and "X-Amz-Signature" in (
                response.headers.get("location", "")
            )
            # A route a sample builder names refuses A by its kind (403), not by tenancy.
            by_kind = path in world.samples.get("refused_by_kind", ()) and (
                response.status_code == 403
            )
            if response.status_code != 200 and not presigned and not by_kind:
                failures.append(f"GET {path} -> {response.status_code}")
    assert failures == []


# Routes whose permission depends on the object, checked by the handler with the guard's own
# refusal: an order moves on, and its thread is written to, with services:buy on the buyer's
# side and services:sell on the provider's (the route itself asks only tenant:read).
SIDE_DEPENDENT = ("/orders/{order_id:uuid}/transition", "/orders/{order_id:uuid}/messages")


async def test_tenant_a_member_gets_what_her_role_allows_and_nothing_of_tenant_b(app, world):
    """Amy, a plain member of A: the route's permission decides, not her membership alone.

    Runs after the owner's control, reads first: the writes her role allows (the data
    bank's; leaving the organisation, last of all) may change A's objects."""
    from canal.platform.access.services import access
    from canal.platform.http.tenancy import forbidden_by_role

    refusal = forbidden_by_role().zh
    calls = []
    for method, path, handler in _routes(app):
        if handler.opt.get("access") == "tenant":
            calls.append((method, path, _fill(path, world.samples)))
    # A filled URL another route also produces goes to the more literal one (the router
    # prefers /t/A/m/policy, the module's own page, to /t/A/m/{module_key}).
    served = {}
    for method, path, url in calls:
        known = served.get((method, url))
        if known is None or path.count("{") < known.count("{"):
            served[(method, url)] = path
    handlers = {(m, p): h for m, p, h in _routes(app)}
    # What her role holds, decided before any call changes it.
    plan = []
    for (method, url), path in served.items():
        permission = handlers[(method, path)].opt.get("permission", ("tenant", "read"))
        allowed = access().enforce(world.amy.user_id, world.tenant_a.id, *permission)
        last = (method != "GET", path.endswith("/leave"))
        plan.append((*last, method, path, url, permission, allowed))
    plan.sort(key=lambda c: c[:2])  # stable: reads, then writes, then leaving
    problems = []
    async with await _client(app) as amy:
        await sign_in(amy, world.amy)
        for _, _, method, path, url, permission, allowed in plan:
            response = await _call(amy, method, url)
            by_role = response.status_code == 403 and refusal in response.text
            if not allowed and not by_role:
                problems.append(
                    f"{method} {path} -> {response.status_code}: her role lacks {permission}"
                )
            elif allowed and by_role and not path.endswith(SIDE_DEPENDENT):
                problems.append(f"{method} {path}: refused though her role holds {permission}")
            elif allowed and method == "GET":
                presigned = response.status_code in {302, 303} and "X-Amz-Signature" in (
                    response.headers.get("location", "")
                )
                by_kind = path in world.samples.get("refused_by_kind", ()) and (
                    response.status_code == 403
                )
                if response.status_code != 200 and not presigned and not by_kind:
                    problems.append(f"GET {path} -> {response.status_code} (her role holds it)")
            if leaked := _leaks(response.text, world.markers_b):
                problems.append(f"{method} {path} leaked tenant B's {leaked}")
    assert problems == []
    # Both kinds were exercised: the member is neither an owner nor an outsider.
    held = sum(1 for c in plan if c[-1])
    assert held >= 10 and len(plan) - held >= 10, (held, len(plan))


def test_markers_are_distinctive(world):
    assert all(len(m) >= 8 for m in world.markers + world.markers_b)
    assert uuid.UUID(world.samples["tenant_id"]) == world.tenant_a.id
