"""The authority opens an applicant's material from its queue: a five-minute presigned link,
only for files of applications to its own policies, every opening audited on both sides."""

from __future__ import annotations

import uuid

import httpx

from canal.park.policy import jobs
from canal.platform import db
from canal.platform.audit.tables import AuditEvent
from tests.factories import sign_in
from tests.policy.helpers import CRITERIA, org, policy_json

HIGH_TECH = [{"name": "高新技术企业", "valid_from": "2024-01-01", "valid_to": "2099-12-31"}]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def _opened(tenant_id: uuid.UUID, application_id: str) -> list[dict]:
    async with db.tenant_scope(tenant_id):
        return await AuditEvent.select(AuditEvent.action, AuditEvent.payload).where(
            (AuditEvent.tenant_id == tenant_id)
            & (AuditEvent.action == "policy.material_opened")
            & (AuditEvent.target == application_id)
        )


async def test_authority_opens_material_of_its_own_applications_only(app, client):
    from httpx import ASGITransport, AsyncClient

    gov_owner, gov, _ = await org("government")
    other_owner, other, _ = await org("government")
    ent_owner, ent, _ = await org("enterprise")

    def browser() -> AsyncClient:
        return AsyncClient(transport=ASGITransport(app=app), base_url="https://testserver.local")

    async with browser() as g, browser() as o, browser() as e:
        await sign_in(g, gov_owner)
        await sign_in(o, other_owner)
        await sign_in(e, ent_owner)
        gapi, oapi = f"/api/v1/t/{gov.slug}/m/policy", f"/api/v1/t/{other.slug}/m/policy"
        eapi = f"/api/v1/t/{ent.slug}/m/policy"
        r = await g.post(f"{gapi}/policies", json=policy_json(CRITERIA) | {"publish": True})
        policy_id = r.json()["id"]
        facts = {"region_code": "371502", "employees": 120, "certifications": HIGH_TECH}
        await e.post(f"{eapi}/portrait", json={"facts": facts})
        await jobs.policy_match_enterprise({}, str(ent.id))
        attached = (
            await e.post(f"/api/v1/t/{ent.slug}/files?name=申报书.pdf", content=PDF)
        ).json()["id"]
        private = (
            await e.post(f"/api/v1/t/{ent.slug}/files?name=内部账目.pdf", content=PDF)
        ).json()["id"]
        r = await e.post(
            f"{eapi}/apply/{policy_id}", json={"contact": "张经理", "materials": [attached]}
        )
        assert r.status_code == 201, r.text
        app_id = r.json()["id"]

        # The review page links the file; the link is a short-lived presigned URL.
        html = (await g.get(f"/t/{gov.slug}/m/policy/queue/{app_id}")).text
        assert f"/queue/{app_id}/materials/{attached}" in html
        # The reviewer sees the material before the decision buttons, and exactly once.
        assert html.count(f"/materials/{attached}") == 1
        assert html.index(f"/materials/{attached}") < html.index("/decide")
        r = await g.get(f"/t/{gov.slug}/m/policy/queue/{app_id}/materials/{attached}")
        assert r.status_code == 302 and "X-Amz-Signature" in r.headers["location"]
        assert "X-Amz-Expires=300" in r.headers["location"]
        r = await g.get(f"{gapi}/queue/{app_id}/materials/{attached}")
        assert r.status_code == 200 and r.json()["expires_in"] == 300
        async with httpx.AsyncClient() as s3:
            assert (await s3.get(r.json()["url"])).content == PDF

        # Each opening is audited for the authority and for the applicant.
        assert len(await _opened(gov.id, app_id)) == 2
        [seen, _] = await _opened(ent.id, app_id)
        assert attached in seen["payload"] and str(gov.id) in seen["payload"]

        # Not an attached file, not this authority's application, not an authority at all.
        refused = [
            (g, f"{gapi}/queue/{app_id}/materials/{private}"),
            (g, f"{gapi}/queue/{app_id}/materials/{uuid.uuid4()}"),
            (g, f"{gapi}/queue/{uuid.uuid4()}/materials/{attached}"),
            (o, f"{oapi}/queue/{app_id}/materials/{attached}"),
            (o, f"/t/{other.slug}/m/policy/queue/{app_id}/materials/{attached}"),
            (e, f"{eapi}/queue/{app_id}/materials/{attached}"),
            (g, f"{gapi}/queue/{app_id}/materials/not-a-uuid"),
        ]
        for who, path in refused:
            r = await who.get(path, follow_redirects=False)
            assert r.status_code in {403, 404}, (path, r.status_code)
            assert "X-Amz" not in r.headers.get("location", "")
        assert len(await _opened(gov.id, app_id)) == 2
        assert len(await _opened(other.id, app_id)) == 0
