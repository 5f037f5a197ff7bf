"""马上督 and 资金直达 edges: the operator sees every authority's overdue applications and
reminds them; nobody else does; applications outside the window are refused; "as of" works."""

from __future__ import annotations

import datetime as dt

from canal.park.policy import services
from canal.park.policy.tables import Application, Review
from canal.platform import clock, db
from canal.tenants.tables import Tenant
from tests.factories import sign_in
from tests.policy.helpers import CRITERIA, certificate, ctx_of, org, policy_json

FACTS = {
    "region_code": "371502",
    "employees": 30,
    "certifications": [certificate()],
}


async def _applied(gctx, ectx, **over):
    policy_id = await services.create_policy(
        gctx, services.parse_policy(policy_json(CRITERIA, materials=[], **over)), publish=True
    )
    await services.set_facts(ectx, FACTS)
    return policy_id


async def test_operator_sees_and_reminds_overdue_applications(client, operator):
    from canal.tenants.services import set_module

    _, gov, gctx = await org("government")
    _, _ent, ectx = await org("enterprise")
    policy_id = await _applied(gctx, ectx)
    app_id = await services.apply(ectx, policy_id, contact="李", note="", materials=[])
    # Eleven days pass without a decision.
    old = clock.now() - dt.timedelta(days=11)
    async with db.tenant_scope(gov.id):
        await Review.update({Review.submitted_at: old}).where(Review.id == app_id)
    op = await Tenant.select().where(Tenant.kind == "operator").first()
    assert op is not None
    op_ctx = ctx_of(type("T", (), op | {"status": "active"})(), operator)
    await set_module(op_ctx, "policy", enabled=True)
    await sign_in(client, operator)
    api = f"/api/v1/t/{op['slug']}/m/policy/oversight"
    rows = (await client.get(api)).json()
    assert str(app_id) in {r["id"] for r in rows}
    r = await client.post(f"{api}/remind")
    assert r.status_code == 200 and r.json()["reminded"] >= 1
    async with db.tenant_scope(gov.id):
        review = await Review.select().where(Review.id == app_id).first()
    assert review is not None and review["reminded_at"] is not None
    # The authority itself sees it flagged in its own queue, an enterprise sees no oversight.
    assert services.overdue([review])
    assert await services.oversight(ectx) is None
    assert await services.oversight(gctx) is None


async def test_applying_outside_the_window_is_refused_and_nothing_saved():
    _, _, gctx = await org("government")
    _, ent, ectx = await org("enterprise")
    today = clock.today()
    policy_id = await _applied(
        gctx,
        ectx,
        window_opens=(today + dt.timedelta(days=3)).isoformat(),
        window_closes=(today + dt.timedelta(days=40)).isoformat(),
    )
    try:
        await services.apply(ectx, policy_id, contact="李", note="", materials=[])
    except services.CanalError as exc:
        assert exc.code == "window_closed" and exc.status == 422
        assert "申报期" in exc.zh
    else:
        raise AssertionError("applied before the window opened")
    async with db.tenant_scope(ent.id):
        assert await Application.count().where(Application.tenant_id == ent.id) == 0


async def test_matches_as_of_a_later_date_see_the_certificate_expire(client):
    owner, ent, ectx = await org("enterprise")
    _, _, gctx = await org("government")
    today = clock.today()
    policy_id = await services.create_policy(
        gctx,
        services.parse_policy(
            policy_json(
                {"all": [{"op": "certified", "name": "专精特新", "on": "as_of"}]},
                window_closes=(today + dt.timedelta(days=60)).isoformat(),
            )
        ),
        publish=True,
    )
    expires = today + dt.timedelta(days=10)
    await services.set_facts(
        ectx,
        {
            "certifications": [
                {"name": "专精特新", "valid_from": "2024-01-01", "valid_to": expires.isoformat()}
            ]
        },
    )
    await sign_in(client, owner)
    api = f"/api/v1/t/{ent.slug}/m/policy/matches"

    def group(rows):
        return next(m["group"] for m in rows if m["policy_id"] == str(policy_id))

    assert group((await client.get(api)).json()) == "eligible"
    on_expiry = (await client.get(api, params={"as_of": expires.isoformat()})).json()
    assert group(on_expiry) == "eligible"  # valid through its last day
    after = (expires + dt.timedelta(days=1)).isoformat()
    assert group((await client.get(api, params={"as_of": after})).json()) == "nearly"
    r = await client.get(api, params={"as_of": "2026-13-01"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "as_of"
