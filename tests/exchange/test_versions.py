"""A grant names its versions (issue 5: "who, which dataset and versions, which delivery
modes, purpose, expiry"): a provider can pin the versions at approval, and every mode then
delivers only those; without a pin the newest reviewed version is delivered. A version added
after the operator's review is delivered only once the operator reviews that version; the
dataset stays listed, and grants on the approved version, meanwhile."""

from __future__ import annotations

import uuid

from tests.exchange.helpers import (
    active_grant,
    approved_provider,
    electricity_csv,
    make_org,
    published_dataset,
    upload_version,
)
from tests.factories import csrf_from, sign_in


async def _request(client, buyer, dataset_id) -> str:
    await sign_in(client, buyer.owner)
    requested = await client.post(
        f"{buyer.api}/catalogue/{dataset_id}/request",
        json={"purpose": "比较两个版本的用电数据。", "modes": ["download", "compute", "api"]},
    )
    assert requested.status_code == 201, requested.text
    return str(requested.json()["id"])


async def test_pinned_versions_are_the_only_ones_delivered(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方企业")
    other = await make_org("另一买方")
    dataset_id = await published_dataset(client, provider, op)  # v1: 240 rows
    v2 = await upload_version(client, provider, dataset_id, electricity_csv(rows=120, seed=9))
    assert v2.status_code == 201, v2.text

    pinned = await _request(client, buyer, dataset_id)
    follows = await _request(client, other, dataset_id)
    await sign_in(client, provider.owner)
    decide = f"{provider.api}/grants/{{}}/decision"
    refused = await client.post(decide.format(pinned), json={"approve": True, "versions": [7]})
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_input"
    assert "versions_invalid" in refused.text
    ok = await client.post(decide.format(pinned), json={"approve": True, "versions": [1]})
    assert ok.status_code == 204, ok.text
    assert (
        await client.post(decide.format(follows), json={"approve": True, "reason": "已核对。"})
    ).status_code == 204

    await sign_in(client, buyer.owner)
    shown = (await client.get(f"{buyer.api}/grants/{pinned}")).json()
    assert shown["versions"] == [1]

    def rows(grant: str, **params):  # the pinned buyer's view
        return client.get(f"{buyer.api}/grants/{grant}/rows", params={"size": 5, **params})

    assert (await rows(pinned)).json()["total"] == 240  # v1, though v2 is newer
    await sign_in(client, other.owner)
    follow = f"{other.api}/grants/{follows}/rows"
    # v2 came after the operator's review: not delivered until reviewed too.
    assert (await client.get(follow)).json()["total"] == 240
    unreviewed = await client.get(follow, params={"version": 2})
    assert unreviewed.status_code == 403 and unreviewed.json()["code"] == "version_not_granted"
    await sign_in(client, provider.owner)
    # A new version's privacy settings are confirmed on their own before review.
    unconfirmed = await client.post(f"{provider.api}/datasets/{dataset_id}/submit")
    assert unconfirmed.status_code == 409 and unconfirmed.json()["code"] == "privacy_unconfirmed"
    confirmed = await client.post(f"{provider.api}/datasets/{dataset_id}/privacy", json={})
    assert confirmed.status_code == 200 and confirmed.json()["version"] == 2, confirmed.text
    resubmitted = await client.post(f"{provider.api}/datasets/{dataset_id}/submit")
    assert resubmitted.status_code == 204, resubmitted.text
    # Waiting for review takes nothing offline: v1 is still delivered and still listed.
    await sign_in(client, other.owner)
    assert (await client.get(follow)).json()["total"] == 240
    assert (await client.get(f"{other.api}/catalogue/{dataset_id}")).status_code == 200
    await sign_in(client, op.owner)
    reviewed = await client.post(
        f"{op.api}/review/{dataset_id}", json={"approve": True, "reason": "已核对。"}
    )
    assert reviewed.status_code == 204, reviewed.text
    await sign_in(client, other.owner)
    assert (await client.get(follow)).json()["total"] == 120  # newest, now reviewed
    assert (await client.get(follow, params={"version": 1})).json()["total"] == 240
    await sign_in(client, buyer.owner)
    for answer in [
        await rows(pinned, version=2),
        await client.post(f"{buyer.api}/grants/{pinned}/download", params={"version": 2}),
        await client.post(
            f"{buyer.api}/grants/{pinned}/queries",
            json={"sql": "SELECT count(*) FROM data", "version": 2},
        ),
    ]:
        assert answer.status_code == 403 and answer.json()["code"] == "version_not_granted"
    counted = await client.post(
        f"{buyer.api}/grants/{pinned}/queries", json={"sql": "SELECT count(*) AS n FROM data"}
    )
    assert counted.status_code == 201, counted.text
    assert abs(counted.json()["rows"][0][0] - 240) <= 12  # v1's count, with noise
    download = await client.post(f"{buyer.api}/grants/{pinned}/download")
    assert download.status_code == 201 and "-v1.csv" in download.json()["url"]


async def test_decision_form_pins_versions_and_rerenders_bad_input(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方企业")
    dataset_id = await published_dataset(client, provider, op)
    grant_id = await _request(client, buyer, dataset_id)
    await sign_in(client, provider.owner)
    page = await client.get(f"{provider.web}/grants/{grant_id}")
    assert 'name="versions"' in page.text
    url = f"{provider.web}/grants/{grant_id}/decision"
    bad = await client.post(
        url, data={"_csrf": csrf_from(page.text), "decision": "approve", "versions": "一, x"}
    )
    assert bad.status_code == 422 and 'name="versions"' in bad.text
    good = await client.post(
        url, data={"_csrf": csrf_from(page.text), "decision": "approve", "versions": "1，1"}
    )
    assert good.status_code in (302, 303), good.text
    shown = await client.get(f"{provider.web}/grants/{grant_id}")
    assert "v1" in shown.text


async def test_a_new_version_is_reviewed_on_its_own_and_rejection_keeps_the_old_one(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方企业")
    dataset_id = await published_dataset(client, provider, op)  # v1 approved: 240 rows
    grant = await active_grant(client, provider, buyer, dataset_id)
    await sign_in(client, provider.owner)
    nothing = await client.post(f"{provider.api}/datasets/{dataset_id}/submit")
    assert nothing.status_code == 409 and nothing.json()["code"] == "nothing_to_review"
    v2 = await upload_version(client, provider, dataset_id, electricity_csv(rows=120, seed=3))
    assert v2.status_code == 201, v2.text
    page = await client.get(f"{provider.web}/datasets/{dataset_id}")
    assert "提交新版本进行合规审核" in page.text
    confirmed = await client.post(
        f"{provider.web}/datasets/{dataset_id}/privacy",
        data={"_csrf": csrf_from(page.text), "max_rows_per_person": "12"},
    )
    assert confirmed.status_code == 303, confirmed.text
    submitted = await client.post(
        f"{provider.web}/datasets/{dataset_id}/submit", data={"_csrf": csrf_from(page.text)}
    )
    assert submitted.status_code == 303, submitted.text
    again = await client.post(f"{provider.api}/datasets/{dataset_id}/submit")
    assert again.status_code == 409 and again.json()["code"] == "already_pending"
    shown = (await client.get(f"{provider.api}/datasets/{dataset_id}")).json()
    assert shown["dataset"]["status"] == "approved"  # still listed
    assert shown["pending_version"]["number"] == 2

    await sign_in(client, op.owner)
    queue = (await client.get(f"{op.api}/review")).json()["datasets"]
    [entry] = [d for d in queue if d["id"] == dataset_id]
    assert entry["review_version"] == 2
    review = await client.get(f"{op.web}/datasets/{dataset_id}")
    # The operator sees the version under review: its profile and the personal data found.
    assert "v2" in review.text and "身份证号" in review.text and "/review/" in review.text
    bare = await client.post(f"{op.api}/review/{dataset_id}", json={"approve": False})
    assert bare.status_code == 422 and "reason_required" in bare.text
    rejected = await client.post(
        f"{op.api}/review/{dataset_id}",
        json={"approve": False, "reason": "第 2 版来源说明与文件内容不符。"},
    )
    assert rejected.status_code == 204, rejected.text
    # Rejecting the version leaves the dataset listed and the grant on v1.
    await sign_in(client, buyer.owner)
    rows = f"{buyer.api}/grants/{grant}/rows"
    assert (await client.get(rows)).json()["total"] == 240
    assert (await client.get(rows, params={"version": 2})).status_code == 403
    await sign_in(client, provider.owner)
    shown = (await client.get(f"{provider.api}/datasets/{dataset_id}")).json()
    assert shown["dataset"]["status"] == "approved" and shown["pending_version"] is None
    versions = {v["number"]: v for v in await _versions(dataset_id, provider)}
    assert versions[2]["review_status"] == "rejected" and versions[1]["review_status"] == "approved"
    # Sent again (e.g. with tighter masking) and approved: v2 becomes the current version.
    assert (await client.post(f"{provider.api}/datasets/{dataset_id}/submit")).status_code == 204
    await sign_in(client, op.owner)
    approved = await client.post(
        f"{op.api}/review/{dataset_id}", json={"approve": True, "reason": "已核对。"}
    )
    assert approved.status_code == 204, approved.text
    await sign_in(client, buyer.owner)
    assert (await client.get(rows)).json()["total"] == 120
    listing = (await client.get(f"{buyer.api}/catalogue/{dataset_id}")).json()
    assert listing["rows"] == 120


async def _versions(dataset_id: str, org) -> list[dict]:
    from canal.exchange.tables import DatasetVersion
    from canal.platform import db

    async with db.tenant_scope(org.tenant.id):
        return await DatasetVersion.select().where(
            DatasetVersion.dataset_id == uuid.UUID(dataset_id)
        )
