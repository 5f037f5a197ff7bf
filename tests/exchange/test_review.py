"""The sensitivity grade follows what profiling found, and the operator's review shows what it
decides on (issue #12).

Personal data found by profiling (names, ID numbers, phones…) grades a version "personal"
until the provider states in writing why the declared grade is right; the text is stored with
the version and shown to the operator. The operator's review page shows the findings with a
warning, the masked sample, the licence terms, price and delivery modes; every decision —
approval too — needs a reason, stored with the version and shown in the audit trail."""

from __future__ import annotations

from canal.platform import db
from tests.exchange.helpers import (
    approved_provider,
    create_dataset,
    electricity_csv,
    make_org,
    upload_version,
)
from tests.factories import csrf_from, sign_in

JUSTIFICATION = "联系人与电话是企业公开的业务联系方式,交付前已脱敏;数据描述的是企业而非个人。"


def _clean_csv() -> bytes:
    lines = ["行业,月份,用电量"] + [
        f"{industry},2025-{m:02d},{1000 + 37 * m + i}"
        for i, industry in enumerate(["机械制造", "软件信息", "食品加工"])
        for m in range(1, 13)
    ]
    return ("\n".join(lines) + "\n").encode()


def _section(html: str, marker: str, end: str = "</table>") -> str:
    start = html.index(marker)
    return html[start : html.index(end, start)]


async def _submitted(client, provider, **overrides) -> str:
    dataset = await create_dataset(
        client, provider, price_model="one_off", price_yuan="88.00", **overrides
    )
    version = await upload_version(client, provider, dataset["id"], electricity_csv())
    assert version.status_code == 201, version.text
    return str(dataset["id"])


async def _send(client, provider, dataset_id: str) -> None:
    await sign_in(client, provider.owner)
    confirmed = await client.post(f"{provider.api}/datasets/{dataset_id}/privacy", json={})
    assert confirmed.status_code == 200, confirmed.text
    submitted = await client.post(f"{provider.api}/datasets/{dataset_id}/submit")
    assert submitted.status_code == 204, submitted.text


async def test_personal_data_is_graded_personal_until_justified_in_writing(client, op):
    provider = await approved_provider("联络数据")
    dataset_id = await _submitted(client, provider)
    url = f"{provider.api}/datasets/{dataset_id}"

    shown = (await client.get(url)).json()
    assert shown["dataset"]["sensitivity"] == "internal"  # what the provider declared
    assert shown["sensitivity"] == "personal"  # what profiling found wins
    assert {"联系人", "手机号", "身份证号"} <= {f["name"] for f in shown["findings"]}
    page = await client.get(f"{provider.web}/datasets/{dataset_id}")
    assert 'id="personal-data-warning"' in page.text and "个人信息" in page.text
    assert 'action="' + f"{provider.web}/datasets/{dataset_id}/sensitivity" in page.text

    short = await client.post(f"{url}/sensitivity", json={"justification": "没有问题"})
    assert short.status_code == 422
    assert short.json()["errors"][0]["field"] == "justification"
    assert short.json()["errors"][0]["code"] == "justification_length"
    form = await client.post(
        f"{provider.web}/datasets/{dataset_id}/sensitivity",
        data={"_csrf": csrf_from(page.text), "justification": "太短"},
    )
    assert form.status_code == 422 and "f-justification-error" in form.text
    justified = await client.post(f"{url}/sensitivity", json={"justification": JUSTIFICATION})
    assert justified.status_code == 200, justified.text
    assert justified.json()["sensitivity"] == "internal"
    assert (await client.get(url)).json()["justification"] == JUSTIFICATION

    await _send(client, provider, dataset_id)
    # Under review, the text the operator reads can no longer change.
    late = await client.post(f"{url}/sensitivity", json={"justification": ""})
    assert late.status_code == 409 and late.json()["code"] == "version_reviewed"

    await sign_in(client, op.owner)
    review = await client.get(f"{op.web}/datasets/{dataset_id}")
    assert review.status_code == 200
    text = review.text
    assert 'id="personal-data-warning"' in text and JUSTIFICATION in text
    assert "产业分析与政策研究,不得用于营销。" in text  # licence purpose
    assert "¥88.00" in text  # price
    assert "脱敏文件下载、可用不可见计算、数据接口" in text  # delivery modes
    sample = _section(text, 'id="review-sample"')
    assert "联系人" in sample and "<td>" in sample
    raw = electricity_csv().decode().splitlines()[1].split(",")
    phone, ident = raw[6], raw[7]
    assert phone not in sample and ident not in sample  # masked / hashed, as buyers see it
    assert "****" in sample
    api = (await client.get(f"{op.api}/datasets/{dataset_id}")).json()
    assert api["review_sample"]["rows"] and "联系人" in api["review_sample"]["columns"]

    approved = await client.post(
        f"{op.api}/review/{dataset_id}", json={"approve": True, "reason": "说明成立,脱敏充分。"}
    )
    assert approved.status_code == 204, approved.text
    buyer = await make_org("看目录企业")
    await sign_in(client, buyer.owner)
    listing = (await client.get(f"{buyer.api}/catalogue/{dataset_id}")).json()
    assert listing["sensitivity"] == "internal"


async def test_without_a_justification_the_listing_says_personal_data(client, op):
    provider = await approved_provider("名单数据")
    dataset_id = await _submitted(client, provider)
    await _send(client, provider, dataset_id)

    await sign_in(client, op.owner)
    queue = (await client.get(f"{op.api}/review")).json()["datasets"]
    [entry] = [d for d in queue if d["id"] == dataset_id]
    assert entry["effective_sensitivity"] == "personal"
    assert {"联系人", "手机号", "身份证号"} <= set(entry["personal_columns"])
    assert "发现个人信息:" in (await client.get(f"{op.web}/review")).text
    review = await client.get(f"{op.web}/datasets/{dataset_id}")
    assert 'id="personal-data-warning"' in review.text
    assert "发现个人信息,提供方未作说明" in review.text
    approved = await client.post(
        f"{op.api}/review/{dataset_id}",
        json={"approve": True, "reason": "按个人信息级别上架,仅脱敏交付。"},
    )
    assert approved.status_code == 204, approved.text

    buyer = await make_org("找数企业")
    await sign_in(client, buyer.owner)
    listing = (await client.get(f"{buyer.api}/catalogue/{dataset_id}")).json()
    assert listing["sensitivity"] == "personal"
    found = await client.get(f"{buyer.api}/catalogue", params={"sensitivity": "personal"})
    assert dataset_id in {r["id"] for r in found.json()}
    internal = await client.get(f"{buyer.api}/catalogue", params={"sensitivity": "internal"})
    assert dataset_id not in {r["id"] for r in internal.json()}
    page = await client.get(f"{buyer.web}/catalogue/{dataset_id}")
    assert "个人信息" in page.text


async def test_every_decision_needs_a_reason_kept_with_the_version_and_in_the_audit(client, op):
    from canal.platform.audit.tables import AuditEvent

    provider = await approved_provider("理由数据")
    dataset_id = await _submitted(client, provider)
    await _send(client, provider, dataset_id)

    await sign_in(client, op.owner)
    for body in ({"approve": True}, {"approve": True, "reason": "  "}, {"approve": False}):
        bare = await client.post(f"{op.api}/review/{dataset_id}", json=body)
        assert bare.status_code == 422, body
        assert bare.json()["errors"][0]["code"] == "reason_required"
    reason = "来源授权齐全,个人信息均已脱敏。"
    approved = await client.post(
        f"{op.api}/review/{dataset_id}", json={"approve": True, "reason": reason}
    )
    assert approved.status_code == 204, approved.text

    async with db.platform_scope():
        events = await AuditEvent.select().where(
            (AuditEvent.action == "exchange.dataset_reviewed") & (AuditEvent.target == dataset_id)
        )
    assert len(events) == 1
    assert reason in str(events[0]) and "personal" in str(events[0])

    await sign_in(client, provider.owner)
    shown = (await client.get(f"{provider.api}/datasets/{dataset_id}")).json()
    assert shown["versions"][0]["review_reason"] == reason
    page = await client.get(f"{provider.web}/datasets/{dataset_id}")
    assert reason in page.text
    trail = await client.get(f"/t/{provider.slug}/audit")
    assert trail.status_code == 200 and reason in trail.text
    entries = (await client.get(f"/api/v1/t/{provider.slug}/audit")).json()
    assert any(e.get("data", {}).get("reason") == reason for e in entries["events"])


async def test_data_without_personal_data_keeps_its_grade_and_needs_no_statement(client, op):
    provider = await approved_provider("干净数据")
    dataset = await create_dataset(client, provider, delivery_modes=["download"])
    version = await upload_version(client, provider, dataset["id"], _clean_csv(), "clean.csv")
    assert version.status_code == 201, version.text
    url = f"{provider.api}/datasets/{dataset['id']}"
    shown = (await client.get(url)).json()
    assert shown["findings"] == [] and shown["sensitivity"] == "internal"
    page = await client.get(f"{provider.web}/datasets/{dataset['id']}")
    assert "personal-data-warning" not in page.text
    refused = await client.post(f"{url}/sensitivity", json={"justification": JUSTIFICATION})
    assert refused.status_code == 409 and refused.json()["code"] == "no_personal_data"


async def test_a_provider_application_needs_a_reason_to_approve_too(client, op):
    applicant = await make_org("申请数据")
    await sign_in(client, applicant.owner)
    applied = await client.post(
        f"{applicant.api}/provider", json={"statement": "本单位运营园区能源平台,持有企业用电数据。"}
    )
    assert applied.status_code == 201, applied.text
    provider_id = applied.json()["id"]
    await sign_in(client, op.owner)
    bare = await client.post(f"{op.api}/providers/{provider_id}/review", json={"approve": True})
    assert bare.status_code == 422 and bare.json()["errors"][0]["code"] == "reason_required"
    approved = await client.post(
        f"{op.api}/providers/{provider_id}/review",
        json={"approve": True, "reason": "资质与数据来源说明齐全。"},
    )
    assert approved.status_code == 204, approved.text
    await sign_in(client, applicant.owner)
    mine = (await client.get(f"{applicant.api}/provider")).json()
    assert mine["status"] == "approved" and mine["reason"] == "资质与数据来源说明齐全。"
