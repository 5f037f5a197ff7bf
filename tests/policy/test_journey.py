"""The main path through HTTP: an authority publishes a policy, an enterprise's portrait
matches it (the matching job), the enterprise applies with materials, the authority works its
queue, the enterprise is notified, resubmits, is paid and rates — and nobody else sees it."""

from __future__ import annotations

import uuid

from canal.park.policy import jobs
from canal.platform import db
from canal.platform.notifications.tables import Notification
from tests.factories import sign_in
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

HIGH_TECH = [certificate()]


async def _notes(user_id: uuid.UUID) -> list[str]:
    async with db.user_scope(user_id):
        rows = await Notification.select(Notification.title_zh, Notification.body_zh).where(
            Notification.user_id == user_id
        )
    return [f"{r['title_zh']} {r['body_zh']}" for r in rows]


async def test_publish_match_apply_review_rate(app, client):
    from httpx import ASGITransport, AsyncClient

    gov_owner, gov, _ = await org("government", "东昌府区测试局")
    ent_owner, ent, _ = await org("enterprise")
    near_owner, near, _ = await org("enterprise")

    def browser() -> AsyncClient:
        return AsyncClient(transport=ASGITransport(app=app), base_url="https://testserver.local")

    async with browser() as g, browser() as e, browser() as n:
        await sign_in(g, gov_owner)
        await sign_in(e, ent_owner)
        await sign_in(n, near_owner)
        gapi = f"/api/v1/t/{gov.slug}/m/policy"
        eapi = f"/api/v1/t/{ent.slug}/m/policy"
        napi = f"/api/v1/t/{near.slug}/m/policy"

        # A rule with an unknown fact is refused at its exact location; nothing is saved.
        bad = policy_json({"all": [CRITERIA["all"][0], {"fact": "staff", "op": "eq", "value": 1}]})
        r = await g.post(f"{gapi}/policies", json=bad | {"publish": True})
        assert r.status_code == 422, r.text
        [error] = r.json()["errors"]
        assert error["field"] == "criteria" and "$.all[1].fact" in error["message"]
        assert (await g.get(f"{gapi}/policies")).json() == []

        # An enterprise is no policy authority.
        r = await e.post(f"{eapi}/policies", json=policy_json(CRITERIA))
        assert r.status_code == 403 and r.json()["code"] == "not_policy_authority"

        good = policy_json(CRITERIA)
        r = await g.post(f"{gapi}/policies", json=good | {"publish": True})
        assert r.status_code == 201, r.text
        policy_id = r.json()["id"]

        # Portraits: one fully eligible, one with too few employees (nearly eligible).
        facts = {"region_code": "371502", "employees": 120, "certifications": HIGH_TECH}
        r = await e.post(f"{eapi}/portrait", json={"facts": facts})
        assert r.status_code == 200, r.text
        r = await n.post(f"{napi}/portrait", json={"facts": facts | {"employees": 8}})
        assert r.status_code == 200
        # The jobs the changes enqueued, run here as the worker would.
        await jobs.policy_match_policy({}, policy_id)
        await jobs.policy_match_enterprise({}, str(ent.id))
        await jobs.policy_match_enterprise({}, str(near.id))

        [mine] = [m for m in (await e.get(f"{eapi}/matches")).json() if m["policy_id"] == policy_id]
        assert mine["group"] == "eligible" and mine["version_number"] == 1
        cert = mine["criteria"][1]
        assert cert["met"] and cert["facts"][0]["source"] == "self"
        [theirs] = [
            m for m in (await n.get(f"{napi}/matches")).json() if m["policy_id"] == policy_id
        ]
        assert theirs["group"] == "nearly" and theirs["missing_criterion"] == 2
        assert theirs["criteria"][2]["requirement_en"] == "employees ≥ 20"
        assert theirs["criteria"][2]["facts"][0]["value"] == 8

        # New eligible match → the enterprise's members were told (once).
        # (Other tests' published policies may match too: count the ones naming this policy.)
        def told(notes: list[str]) -> int:
            return sum("符合贵企业条件" in t and good["title"] in t for t in notes)

        assert told(await _notes(ent_owner.user_id)) == 1
        await jobs.policy_match_enterprise({}, str(ent.id))
        assert told(await _notes(ent_owner.user_id)) == 1
        assert told(await _notes(near_owner.user_id)) == 0

        # Apply: materials are required; a file uploaded through the storage API is accepted.
        r = await e.post(f"{eapi}/apply/{policy_id}", json={"contact": "张经理 13800000000"})
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "materials_missing"
        up = await e.post(
            f"/api/v1/t/{ent.slug}/files?name=申报书.pdf",
            content=b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        )
        assert up.status_code == 201, up.text
        r = await e.post(
            f"{eapi}/apply/{policy_id}",
            json={"contact": "张经理 13800000000", "materials": [up.json()["id"]]},
        )
        assert r.status_code == 201, r.text
        app_id = r.json()["id"]
        assert r.json()["form"]["portrait"]["employees"] == 120
        assert r.json()["version_number"] == 1
        r = await e.post(
            f"{eapi}/apply/{policy_id}",
            json={"contact": "张经理", "materials": [up.json()["id"]]},
        )
        assert r.status_code == 409

        # The authority sees it in its queue; the other enterprise sees nothing of it.
        queue = (await g.get(f"{gapi}/queue")).json()
        assert [q["id"] for q in queue] == [app_id]
        assert queue[0]["applicant_name"] == ent.name
        assert (await n.get(f"{napi}/applications/{app_id}")).status_code == 404
        assert (await e.get(f"{eapi}/queue/{app_id}")).status_code == 404

        # Ask for more → resubmit → accept with an amount → disburse → rate.
        r = await g.post(f"{gapi}/queue/{app_id}/decide", json={"action": "more"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
        r = await g.post(
            f"{gapi}/queue/{app_id}/decide", json={"action": "more", "reason": "请补充研发台账"}
        )
        assert r.json()["status"] == "more_info"
        assert (await e.get(f"{eapi}/applications/{app_id}")).json()["status"] == "more_info"
        assert any("需补充材料" in t for t in await _notes(ent_owner.user_id))
        r = await e.post(f"{eapi}/applications/{app_id}/resubmit", json={"note": "已补充"})
        assert r.json()["status"] == "submitted"
        r = await g.post(
            f"{gapi}/queue/{app_id}/decide", json={"action": "accept", "amount_yuan": -5}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "amount_negative"
        r = await g.post(
            f"{gapi}/queue/{app_id}/decide", json={"action": "accept", "amount_yuan": 80000}
        )
        assert r.json()["status"] == "accepted" and r.json()["amount_fen"] == 8_000_000
        assert r.json()["reason"] == ""  # the "more material" note stays in the history only
        # The disbursement needs its payment voucher number; nothing changes without one.
        r = await g.post(f"{gapi}/queue/{app_id}/decide", json={"action": "disburse"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reference"
        r = await g.post(
            f"{gapi}/queue/{app_id}/decide",
            json={"action": "disburse", "reference": "x" * 101},
        )
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "too_long"
        assert (await e.get(f"{eapi}/applications/{app_id}")).json()["status"] == "accepted"
        r = await g.post(
            f"{gapi}/queue/{app_id}/decide",
            json={"action": "disburse", "reference": "LC-ZJZD-2026-0042"},
        )
        assert r.json()["status"] == "disbursed"
        assert r.json()["disbursement_ref"] == "LC-ZJZD-2026-0042"
        paid = (await e.get(f"{eapi}/applications/{app_id}")).json()
        assert paid["disbursement_ref"] == "LC-ZJZD-2026-0042" and paid["disbursed_at"]
        assert any("LC-ZJZD-2026-0042" in t for t in await _notes(ent_owner.user_id))
        r = await g.post(f"{gapi}/queue/{app_id}/decide", json={"action": "reject", "reason": "x"})
        assert r.status_code == 409
        r = await e.post(f"{eapi}/applications/{app_id}/rate", json={"rating": 6})
        assert r.status_code == 422
        r = await e.post(f"{eapi}/applications/{app_id}/rate", json={"rating": 5})
        assert r.json()["rating"] == 5
        mine = (await e.get(f"{eapi}/applications/{app_id}")).json()
        assert [h["status"] for h in mine["history"]] == [
            "submitted",
            "more_info",
            "submitted",
            "accepted",
            "disbursed",
        ]
        stats = (await g.get(f"{gapi}/stats")).json()
        assert stats["applications"] == 1 and stats["amount_fen"] == 8_000_000
        assert stats["approval_rate"] == 1.0

        # Editing makes version 2; the application keeps version 1.
        r = await g.post(
            f"{gapi}/policies/{policy_id}", json=policy_json(CRITERIA, title="新版本标题")
        )
        assert r.status_code == 200, r.text
        detail = (await g.get(f"{gapi}/policies/{policy_id}")).json()
        assert detail["current_version"] == 2 and len(detail["versions"]) == 2
        assert (await e.get(f"{eapi}/applications/{app_id}")).json()["version_number"] == 1
        public = (await e.get(f"/api/v1/policies/{policy_id}")).json()
        assert public["version"] == 2 and public["title"] == "新版本标题"


async def test_dismissed_match_stays_dismissed(app, client):
    _gov_owner, _gov, gctx = await org("government")
    owner, ent, ectx = await org("enterprise")
    from canal.park.policy import services

    policy_id = await services.create_policy(
        gctx, services.parse_policy(policy_json(CRITERIA)), publish=True
    )
    await services.set_facts(
        ectx, {"region_code": "371502", "employees": 50, "certifications": HIGH_TECH}
    )
    await services.rematch_enterprise(ent.id)
    await sign_in(client, owner)
    api = f"/api/v1/t/{ent.slug}/m/policy"
    assert (await client.post(f"{api}/matches/{policy_id}/dismiss")).status_code == 200
    # A later portrait change re-matches, and the dismissal holds.
    await services.set_facts(ectx, {"employees": 60})
    await services.rematch_enterprise(ent.id)
    [m] = [
        m for m in (await client.get(f"{api}/matches")).json() if m["policy_id"] == str(policy_id)
    ]
    assert m["dismissed"] is True and m["group"] == "eligible"
    page = await client.get(f"/t/{ent.slug}/m/policy/matches")
    assert page.status_code == 200
    assert page.text.count(f"/matches/{policy_id}/restore") == 1
