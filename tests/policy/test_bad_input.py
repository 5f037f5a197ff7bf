"""An attacker's inputs: malformed ids and bodies, impossible numbers and dates, other tenants'
objects, unpublished policies. Each is a clear refusal (never a 5xx) and nothing changes."""

from __future__ import annotations

import uuid

from canal.park.policy import jobs
from tests.factories import sign_in
from tests.policy.helpers import CRITERIA, org, policy_json

HIGH_TECH = [{"name": "高新技术企业", "valid_from": "2024-01-01", "valid_to": "2099-12-31"}]


async def test_bad_input_is_refused_never_a_server_error(app, client):
    from httpx import ASGITransport, AsyncClient

    gov_owner, gov, _ = await org("government")
    other_owner, other, _ = await org("government")
    ent_owner, ent, _ = await org("enterprise")
    spy_owner, spy, _ = await org("enterprise")

    def browser() -> AsyncClient:
        return AsyncClient(transport=ASGITransport(app=app), base_url="https://testserver.local")

    async with browser() as g, browser() as o, browser() as e, browser() as s:
        for b, who in ((g, gov_owner), (o, other_owner), (e, ent_owner), (s, spy_owner)):
            await sign_in(b, who)
        gapi, oapi = f"/api/v1/t/{gov.slug}/m/policy", f"/api/v1/t/{other.slug}/m/policy"
        eapi, sapi = f"/api/v1/t/{ent.slug}/m/policy", f"/api/v1/t/{spy.slug}/m/policy"
        published = (
            await g.post(f"{gapi}/policies", json=policy_json(CRITERIA) | {"publish": True})
        ).json()["id"]
        draft = (await g.post(f"{gapi}/policies", json=policy_json(CRITERIA))).json()["id"]
        facts = {"region_code": "371502", "employees": 120, "certifications": HIGH_TECH}
        assert (await e.post(f"{eapi}/portrait", json={"facts": facts})).status_code == 200
        await jobs.policy_match_enterprise({}, str(ent.id))
        file_id = (
            await e.post(f"/api/v1/t/{ent.slug}/files?name=a.pdf", content=b"%PDF-1.4\n%%EOF\n")
        ).json()["id"]
        spy_file = (
            await s.post(f"/api/v1/t/{spy.slug}/files?name=b.pdf", content=b"%PDF-1.4\n%%EOF\n")
        ).json()["id"]

        def refused(r, *codes: int) -> None:
            assert r.status_code in codes, (r.request.url, r.status_code, r.text[:300])

        ok = {"contact": "张经理", "materials": [file_id]}
        # Malformed bodies and ids.
        refused(
            await e.post(
                f"{eapi}/apply/{published}",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            400,
        )
        refused(await e.post(f"{eapi}/apply/{published}", json=[1, 2]), 400)
        refused(await e.post(f"{eapi}/apply/{published}", json=ok | {"materials": ["x"]}), 400)
        refused(await e.post(f"{eapi}/apply/not-a-uuid", json=ok), 400, 404)
        refused(await e.post(f"{eapi}/apply/{uuid.uuid4()}", json=ok), 404)
        # An unpublished policy, another enterprise's file.
        refused(await e.post(f"{eapi}/apply/{draft}", json=ok), 404)
        refused(await e.post(f"{eapi}/apply/{published}", json=ok | {"materials": [spy_file]}), 404)
        assert (await e.get(f"{eapi}/applications")).json() == []
        app_id = (await e.post(f"{eapi}/apply/{published}", json=ok)).json()["id"]
        r = await e.post(f"{eapi}/apply/{published}", json=ok)
        refused(r, 409)
        assert r.json()["code"] == "already_applied", r.json()

        # Amounts: negative, huge, not numbers, not finite.
        for amount in (-1, 1e300, "1e400", "十万", "nan", "inf"):
            r = await g.post(
                f"{gapi}/queue/{app_id}/decide", json={"action": "accept", "amount_yuan": amount}
            )
            refused(r, 400, 422)
        refused(await g.post(f"{gapi}/queue/{app_id}/decide", json={"action": "x"}), 400, 422)
        # Another authority cannot see or act on it; the spy enterprise cannot either.
        refused(await o.get(f"{oapi}/queue/{app_id}"), 404)
        refused(
            await o.post(
                f"{oapi}/queue/{app_id}/decide", json={"action": "accept", "amount_yuan": 1}
            ),
            404,
        )
        refused(await s.get(f"{sapi}/applications/{app_id}"), 404)
        refused(await s.post(f"{sapi}/applications/{app_id}/resubmit", json={}), 404)
        refused(await s.post(f"{sapi}/applications/{app_id}/rate", json={"rating": 1}), 404)
        assert (await g.get(f"{gapi}/queue/{app_id}")).json()["status"] == "submitted"

        # Portraits: impossible dates, negative and huge numbers, wrong types.
        bad_facts = [
            {"established_on": "2026-02-30"},
            {"employees": -3},
            {"revenue_wan": 1e300},
            {"employees": 10**400},
            {"patents": "1" + "0" * 400},
            {"employees": "many"},
            {"certifications": [{"name": "高新技术企业", "valid_from": "x", "valid_to": "y"}]},
            {"certifications": "高新"},
        ]
        for bad in bad_facts:
            r = await e.post(f"{eapi}/portrait", json={"facts": bad})
            assert r.status_code in (400, 422), (bad, r.status_code, r.text[:200])
        refused(
            await e.post(f"{eapi}/portrait", json={"facts": {}, "as_of": "2026-13-01"}), 400, 422
        )
        portrait = (await e.get(f"{eapi}/portrait")).json()
        assert {f["fact"]: f["value"] for f in portrait}["employees"] == 120

        # Policies: window closing before it opens, huge amount, criteria not an object.
        for over in (
            {"window_opens": "2026-05-01", "window_closes": "2026-04-01"},
            {"amount_max_yuan": 1e300},
            {"criteria": "all"},
            {"criteria": {"all": []}},
            {"level": "galactic"},
        ):
            refused(await g.post(f"{gapi}/policies", json=policy_json(CRITERIA) | over), 400, 422)
        # The live count answers an authority only: to an enterprise it would be an oracle
        # over other enterprises' facts ("is anyone with credit code X above 10 million?").
        r = await g.get(f"{gapi}/criteria/count", params={"criteria": "]["})
        assert r.status_code == 200 and r.json()["valid"] is False
        rule = '{"fact": "employees", "op": "range", "min": 100}'
        assert (await g.get(f"{gapi}/criteria/count", params={"criteria": rule})).json()["valid"]
        r = await e.get(f"{eapi}/criteria/count", params={"criteria": rule})
        refused(r, 403)
        r = await e.get(f"/t/{ent.slug}/m/policy/criteria/count", params={"criteria": rule})
        refused(r, 403)
