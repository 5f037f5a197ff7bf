"""Bad input is refused with a specific bilingual reason and changes nothing: malformed
files, bad listings, loosened masking, requests on one's own data, out-of-range pages."""

from __future__ import annotations

import json

import pytest

from canal.exchange import pii
from canal.exchange.masking import generalise, mask_rows, spreadsheet_safe
from canal.exchange.tables import DatasetVersion
from canal.platform import clock, db
from canal.platform.http.errors import CanalError
from tests.exchange.helpers import (
    DATASET,
    active_grant,
    approved_provider,
    create_dataset,
    electricity_csv,
    make_org,
    published_dataset,
    upload_version,
)
from tests.factories import csrf_from, sign_in


async def _versions(dataset_id: str) -> int:
    async with db.platform_scope():
        return await DatasetVersion.count().where(DatasetVersion.dataset_id == dataset_id)


async def test_gbk_csv_is_read_and_reported(client):
    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    response = await upload_version(
        client, provider, dataset["id"], electricity_csv(48, encoding="gbk")
    )
    assert response.status_code == 201, response.text
    assert response.json()["encoding"] == "GB18030" and response.json()["rows"] == 48
    columns = {c["name"]: c for c in response.json()["profile"]["columns"]}
    assert columns["行业"]["min"] in {"机械制造", "钢管加工", "软件信息", "食品加工"}


async def test_ragged_rows_are_refused_with_the_line(client):
    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    data = "企业,行业,用电量\nE1,机械,100\nE2,机械\nE3,钢管,300\n".encode()
    response = await upload_version(client, provider, dataset["id"], data)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "dataset_ragged"
    assert "第 3 行" in response.text  # zh-CN first
    assert await _versions(dataset["id"]) == 0


async def test_unclosed_quote_and_bad_header_are_refused(client):
    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    quoted = await upload_version(client, provider, dataset["id"], b'a,b\n1,"2\n3,4\n')
    assert quoted.status_code == 422 and quoted.json()["code"] in {
        "dataset_malformed",
        "dataset_ragged",
    }
    header = await upload_version(client, provider, dataset["id"], b"a,a\n1,2\n")
    assert header.status_code == 422 and header.json()["code"] == "dataset_header"
    assert await _versions(dataset["id"]) == 0


async def test_binary_file_is_refused_by_storage(client):
    provider = await approved_provider()
    await sign_in(client, provider.owner)
    response = await client.post(
        f"/api/v1/t/{provider.slug}/files",
        params={"purpose": "dataset", "name": "x.csv"},
        content=b"MZ\x90\x00\x03" + bytes(range(256)) * 4,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 415


async def test_listing_validation_names_each_field(client):
    provider = await approved_provider()
    await sign_in(client, provider.owner)
    response = await client.post(
        f"{provider.api}/datasets",
        json={
            **DATASET,
            "title": "x",
            "source_statement": "",
            "sensitivity": "core",
            "delivery_modes": [],
        },
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"title", "source_statement", "sensitivity", "delivery_modes"} <= fields
    sensitive = await client.post(
        f"{provider.api}/datasets", json={**DATASET, "sensitivity": "sensitive"}
    )
    assert sensitive.status_code == 422
    assert sensitive.json()["errors"][0]["code"] == "sensitive_no_download"


async def test_only_approved_providers_list_datasets(client):
    org = await make_org("未审核企业")
    await sign_in(client, org.owner)
    response = await client.post(f"{org.api}/datasets", json=DATASET)
    assert response.status_code == 403 and response.json()["code"] == "provider_not_approved"
    applied = await client.post(
        f"{org.api}/provider", json={"statement": "本公司持有园区企业能耗数据,来自自建平台。"}
    )
    assert applied.status_code == 201 and applied.json()["status"] == "pending"


async def test_personal_data_cannot_be_kept(client, op):
    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    await upload_version(client, provider, dataset["id"], electricity_csv())
    response = await client.post(
        f"{provider.api}/datasets/{dataset['id']}/masking", json={"rules": {"手机号": "keep"}}
    )
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "rule_too_loose"
    tighter = await client.post(
        f"{provider.api}/datasets/{dataset['id']}/masking",
        json={"rules": {"电费": "generalise", "联系人": "drop"}},
    )
    assert tighter.status_code == 200 and tighter.json()["联系人"] == "drop"


async def test_requests_and_pages_out_of_bounds(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方")
    dataset_id = await published_dataset(client, provider, op)
    await sign_in(client, provider.owner)
    own = await client.post(
        f"{provider.api}/catalogue/{dataset_id}/request",
        json={"purpose": "自己用自己的数据做分析", "modes": ["api"]},
    )
    assert own.status_code == 409 and own.json()["code"] == "own_dataset"
    await sign_in(client, buyer.owner)
    short = await client.post(
        f"{buyer.api}/catalogue/{dataset_id}/request",
        json={"purpose": "看看", "modes": ["teleport"]},
    )
    assert short.status_code == 422
    assert {e["field"] for e in short.json()["errors"]} == {"purpose", "modes"}
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["api"])
    await sign_in(client, buyer.owner)
    big = await client.get(f"{buyer.api}/grants/{grant_id}/rows", params={"size": 10_000})
    assert big.status_code == 422
    not_granted = await client.post(f"{buyer.api}/grants/{grant_id}/download")
    assert not_granted.status_code == 403 and not_granted.json()["code"] == "mode_not_granted"
    # A page number whose offset DuckDB cannot hold was a 500; now a refusal on both twins.
    for page in (2**62, 10**20):
        far = await client.get(f"{buyer.api}/grants/{grant_id}/rows", params={"page_no": page})
        assert far.status_code == 422 and far.json()["errors"][0]["code"] == "page_range"
        web = await client.get(f"{buyer.web}/grants/{grant_id}/rows", params={"page_no": page})
        assert web.status_code == 422
    last = await client.get(f"{buyer.api}/grants/{grant_id}/rows", params={"page_no": 10_000_000})
    assert last.status_code == 200 and last.json()["rows"] == []


async def test_a_query_with_a_nul_byte_is_refused_before_it_runs(client, op):
    """PostgreSQL cannot store NUL: recording such a query was a 500. A NUL byte is now refused
    for every JSON body before any handler (canal.platform.http.input), so the query never
    reaches the sandbox and there is no query run to record."""
    from canal.exchange.tables import QueryRun

    provider = await approved_provider()
    buyer = await make_org("买方")
    dataset_id = await published_dataset(client, provider, op)
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["compute"])
    await sign_in(client, buyer.owner)
    answer = await client.post(
        f"{buyer.api}/grants/{grant_id}/queries", json={"sql": "SELECT count(*) FROM data\x00"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "nul_character"
    assert [e["field"] for e in answer.json()["errors"]] == ["sql"]
    async with db.platform_scope():
        runs = await QueryRun.select(QueryRun.sql, QueryRun.status).where(
            QueryRun.grant_id == grant_id
        )
    assert runs == []


def test_detectors_and_masks():
    assert pii.id_card_valid("11010519491231002X")
    assert not pii.id_card_valid("110105194912310021")
    assert pii.luhn_valid("6222021234567890128") is pii.luhn_valid("6222021234567890128")
    assert pii.luhn_valid("4111111111111111") and not pii.luhn_valid("4111111111111112")
    assert pii.detect_column("电话", ["13812345678", "13987654321", "15011112222"]) == "mobile"
    assert pii.detect_column("姓名", ["张伟", "李娜", "王芳"]) == "name"
    assert (
        pii.detect_column("地址", ["山东省聊城市东昌府区柳园路12号", "聊城市古楼街道光明小区3栋"])
        == "address"
    )
    assert pii.detect_column("行业", ["机械制造", "软件信息"]) is None
    assert pii.mask_value("mobile", "13812345678") == "138****5678"
    assert pii.mask_value("id_card", "37150219800101123X") == "3715**********123X"
    assert generalise("2025-03-17") == "2025-03" and generalise("4567") == "[4000, 5000)"
    rows = mask_rows(["a", "m"], [["x", "13812345678"]], {"m": "hash"}, {"m": "mobile"}, b"s1")
    again = mask_rows(["a", "m"], [["x", "13812345678"]], {"m": "hash"}, {"m": "mobile"}, b"s2")
    assert rows[0][1] != again[0][1] and len(rows[0][1]) == 16  # salted per grant
    assert spreadsheet_safe('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert spreadsheet_safe("-12.5") == "-12.5" and spreadsheet_safe(-3) == -3


async def test_a_file_over_the_quota_is_refused_and_nothing_recorded(client):
    from canal.platform.storage.services import set_tenant_quota

    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    await set_tenant_quota(provider.tenant.id, 10_000, actor_id=None)
    await sign_in(client, provider.owner)
    response = await client.post(
        f"/api/v1/t/{provider.slug}/files",
        params={"purpose": "dataset", "name": "大.csv"},
        content=electricity_csv(),
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 413 and response.json()["code"] == "storage_quota_exceeded"
    assert await _versions(dataset["id"]) == 0


async def test_expiry_stops_every_mode_and_the_api_is_rate_limited(client, op):
    import datetime as dt

    from canal.exchange.services import API_RATE_PER_MINUTE
    from canal.exchange.tables import Grant

    provider = await approved_provider()
    buyer = await make_org("买方")
    dataset_id = await published_dataset(client, provider, op)
    grant_id = await active_grant(client, provider, buyer, dataset_id)
    await sign_in(client, buyer.owner)
    url = f"{buyer.api}/grants/{grant_id}/rows"
    statuses = [
        (await client.get(url, params={"size": 1})).status_code
        for _ in range(API_RATE_PER_MINUTE + 1)
    ]
    assert statuses[:-1] == [200] * API_RATE_PER_MINUTE
    assert statuses[-1] == 429
    async with db.platform_scope():
        await Grant.update({Grant.expires_at: clock.now() - dt.timedelta(seconds=1)}).where(
            Grant.id == grant_id
        )
    answers = [
        await client.post(f"{buyer.api}/grants/{grant_id}/download"),
        await client.post(
            f"{buyer.api}/grants/{grant_id}/queries", json={"sql": "SELECT count(*) FROM data"}
        ),
        await client.get(url),
    ]
    assert [a.json()["code"] for a in answers] == ["grant_inactive"] * 3


async def test_large_files_are_profiled_by_the_job(client, monkeypatch):
    from canal.exchange import services
    from canal.exchange.jobs import exchange_profile_version
    from canal.platform.jobs.tables import JobOutbox

    monkeypatch.setattr(services, "INLINE_PROFILE_BYTES", 0)  # every file counts as large
    provider = await approved_provider()
    dataset = await create_dataset(client, provider)
    good = await upload_version(client, provider, dataset["id"], electricity_csv(24))
    bad = await upload_version(client, provider, dataset["id"], b"a,b\n1,2\n3\n")
    assert good.status_code == bad.status_code == 201
    assert good.json()["status"] == bad.json()["status"] == "profiling"
    async with db.transaction():
        queued = await JobOutbox.select(JobOutbox.args).where(
            JobOutbox.function == "exchange_profile_version"
        )
    assert [str(provider.tenant.id), good.json()["id"]] in [json.loads(q["args"]) for q in queued]
    tenant = str(provider.tenant.id)
    assert await exchange_profile_version({}, tenant, good.json()["id"]) == "ready"
    assert await exchange_profile_version({}, tenant, good.json()["id"]) == "skipped"
    assert await exchange_profile_version({}, tenant, bad.json()["id"]) == "failed"
    detail = (await client.get(f"{provider.api}/datasets/{dataset['id']}")).json()
    by_number = {v["number"]: v for v in detail["versions"]}
    assert by_number[1]["status"] == "ready" and by_number[1]["rows"] == 24
    assert by_number[2]["status"] == "failed" and "第 3 行" in by_number[2]["error_zh"]


async def test_paying_and_cancelling_what_cannot_be_paid_or_cancelled(client, op):
    """Free grants have nothing to pay; a grant without a subscription has nothing to
    cancel; another organisation's grant is not found — each refused in both languages,
    nothing changed."""
    from canal.exchange.tables import Grant

    provider = await approved_provider()
    buyer = await make_org("退款买方")
    dataset_id = await published_dataset(client, provider, op)
    grant_id = await active_grant(client, provider, buyer, dataset_id)
    await sign_in(client, buyer.owner)
    pay = await client.post(f"{buyer.api}/grants/{grant_id}/payment")
    assert pay.status_code == 409 and pay.json()["code"] == "nothing_to_pay"
    # In the buyer's language, with both texts beside it (the problem carries zh and en).
    problem = pay.json()
    assert problem["detail"] == problem["detail_zh"] == "该授权无需付款。", problem
    assert problem["detail_en"] == "There is nothing to pay for this grant.", problem
    cancel = await client.post(f"{buyer.api}/grants/{grant_id}/subscription/cancel")
    assert cancel.status_code == 409 and cancel.json()["code"] == "no_subscription"
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    shown = await client.post(
        f"{buyer.web}/grants/{grant_id}/subscription/cancel",
        data={"_csrf": csrf_from(page.text)},
    )
    assert shown.status_code == 409 and "该授权没有可取消的订阅" in shown.text
    stranger = await make_org("无关单位")
    await sign_in(client, stranger.owner)
    assert (
        await client.post(f"{stranger.api}/grants/{grant_id}/subscription/cancel")
    ).status_code == 404
    assert (await client.post(f"{stranger.api}/grants/{grant_id}/payment")).status_code == 404
    async with db.platform_scope():
        row = await Grant.select().where(Grant.id == grant_id).first()
    assert row["paid_at"] is None and row["subscription_status"] == ""


async def test_the_api_rate_is_per_sixty_seconds_not_per_clock_minute(app):
    """A burst either side of a minute boundary was let through at twice the rate."""
    import uuid

    import time_machine

    from canal.exchange.services import API_RATE_PER_MINUTE, rate_limit

    redis = app.state.redis
    grant_id = uuid.uuid4()
    # Half a second before a minute turns (on Canal's clock, wherever it has been moved to).
    start = 1_800_000_059.5 - clock.timestamp() + clock.wall_timestamp()
    with time_machine.travel(start, tick=False) as traveller:
        for _ in range(API_RATE_PER_MINUTE):
            await rate_limit(redis, grant_id)
        traveller.shift(1.0)  # the next clock minute
        with pytest.raises(CanalError) as refused:
            await rate_limit(redis, grant_id)
        assert refused.value.status == 429
        traveller.shift(59.0)  # sixty seconds after the burst, the allowance is back
        await rate_limit(redis, grant_id)
