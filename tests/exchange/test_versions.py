"""A grant names its versions (issue 5: "who, which dataset and versions, which delivery
modes, purpose, expiry"): a provider can pin the versions at approval, and every mode then
delivers only those; without a pin the newest reviewed version is delivered. A version added
after the operator's review is delivered only once the dataset is reviewed again."""

from __future__ import annotations

from tests.exchange.helpers import (
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
    assert (await client.post(decide.format(follows), json={"approve": True})).status_code == 204

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
    resubmitted = await client.post(f"{provider.api}/datasets/{dataset_id}/submit")
    assert resubmitted.status_code == 204, resubmitted.text
    await sign_in(client, op.owner)
    reviewed = await client.post(f"{op.api}/review/{dataset_id}", json={"approve": True})
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
