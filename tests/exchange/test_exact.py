"""Exact answers only where the provider opts a non-personal column out of noise (issue #12).

The per-column "exact" flag releases that column's sums and value counts as computed (no ε
spent on them); row counts keep their noise. It is refused for columns profiling flagged as
personal, and the operator sees it in the compliance review (page and audit event)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import pytest

from canal.exchange import privacy
from canal.platform import db
from tests.exchange.helpers import (
    active_grant,
    approved_provider,
    create_dataset,
    electricity_csv,
    make_org,
    published_dataset,
    upload_version,
)
from tests.factories import csrf_from, sign_in


def test_an_exact_column_is_released_as_computed_and_the_row_count_keeps_its_noise():
    spec = privacy.Spec(
        groups=[],
        measures=[privacy.Measure("sum", "v", "s"), privacy.Measure("rows", None, "n")],
        outputs=[("measure", 0), ("measure", 1)],
        names=["s", "n"],
    )
    exact = {(): {"rows:": 50.0, "sum:v": 1234.5}}
    noisy_cfg = privacy.Settings(1, {"v": (0.0, 100.0)}, {}, True)
    exact_cfg = privacy.Settings(1, {"v": (0.0, 100.0)}, {}, True, ["v"])
    assert exact_cfg.as_json()["exact"] == ["v"] and "exact" not in noisy_cfg.as_json()
    assert privacy.Settings.from_json(exact_cfg.as_json()).exact == ["v"]
    sums, counts = set(), set()
    for _ in range(20):
        noisy = privacy.measure(spec, exact, exact_cfg, epsilon=0.5)
        out = privacy.present(spec, noisy, exact_cfg, min_cohort=1)
        sums.add(out.rows[0][0])
        counts.add(out.rows[0][1])
        assert out.margins[0][0] == 0 and out.margins[0][1] > 0
        # The whole ε goes to the one noisy statistic left (the row count).
        assert noisy.scales["rows:"] == pytest.approx(1 / 0.5)
        assert noisy.epsilon == pytest.approx(0.5)
    assert sums == {1234.5} and len(counts) > 1
    plain = privacy.measure(spec, exact, noisy_cfg, epsilon=0.5)
    assert plain.scales["sum:v"] > 0 and plain.values["sum:v"][()] != 1234.5


async def test_exact_is_refused_for_personal_columns_and_answers_exactly_otherwise(client, op):
    provider = await approved_provider("精确数据")
    dataset = await create_dataset(client, provider)
    version = await upload_version(client, provider, dataset["id"], electricity_csv())
    assert version.status_code == 201, version.text
    url = f"{provider.api}/datasets/{dataset['id']}/privacy"

    personal = await client.post(url, json={"exact": ["手机号"]})
    assert personal.status_code == 422
    [error] = personal.json()["errors"]
    assert error["code"] == "exact_personal" and error["field"] == "exact-手机号"
    unknown = await client.post(url, json={"exact": ["不存在的列"]})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["code"] == "exact_invalid"

    # The page's form: a checkbox per numeric column; unticked boxes clear the flag.
    page = await client.get(f"{provider.web}/datasets/{dataset['id']}")
    assert 'name="exact-用电量"' in page.text and 'name="exact-手机号"' not in page.text
    token = csrf_from(page.text)
    ticked = await client.post(
        f"{provider.web}/datasets/{dataset['id']}/privacy",
        data={"_csrf": token, "exact_shown": "1", "exact-电费": "1", "max_rows_per_person": "12"},
    )
    assert ticked.status_code == 303, ticked.text
    shown = (await client.get(f"{provider.api}/datasets/{dataset['id']}")).json()
    assert shown["privacy"]["exact"] == ["电费"]
    # A large ε per query, so that the groups' noisy counts clear the minimum cohort.
    confirmed = await client.post(
        url,
        json={
            "exact": ["用电量"],
            "max_rows_per_person": 12,
            "epsilon_per_query": 5,
            "epsilon_total": 100,
        },
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["settings"]["exact"] == ["用电量"]

    submitted = await client.post(f"{provider.api}/datasets/{dataset['id']}/submit")
    assert submitted.status_code == 204, submitted.text
    await sign_in(client, op.owner)
    queue = (await client.get(f"{op.api}/review")).json()["datasets"]
    [entry] = [d for d in queue if d["id"] == str(dataset["id"])]
    assert entry["exact_columns"] == ["用电量"]
    review = await client.get(f"{op.web}/datasets/{dataset['id']}")
    assert 'id="review-exact"' in review.text and "用电量" in review.text
    approved = await client.post(
        f"{op.api}/review/{dataset['id']}",
        json={"approve": True, "reason": "用电量为企业计量数据,不涉及个人,同意精确回答。"},
    )
    assert approved.status_code == 204, approved.text
    from canal.platform.audit.tables import AuditEvent

    async with db.platform_scope():
        [event] = await AuditEvent.select().where(
            (AuditEvent.action == "exchange.dataset_reviewed")
            & (AuditEvent.target == str(dataset["id"]))
        )
    assert "exact_columns" in str(event) and "用电量" in str(event)

    buyer = await make_org("精确买方")
    grant = await active_grant(client, provider, buyer, str(dataset["id"]), modes=["compute"])
    await sign_in(client, buyer.owner)
    answer = await client.post(
        f"{buyer.api}/grants/{grant}/queries",
        json={
            "sql": "SELECT 行业, sum(用电量) AS 总量, sum(电费) AS 总电费, count(*) AS 企业月数 "
            "FROM data GROUP BY 行业"
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    truth: dict[str, float] = defaultdict(float)
    for row in csv.DictReader(io.StringIO(electricity_csv().decode())):
        truth[row["行业"]] += float(row["用电量"])
    shown = [
        (r, m)
        for r, m, h in zip(body["rows"], body["margins"], body["hidden"], strict=True)
        if not h
    ]
    assert len(shown) >= 3, body
    for row, margins in shown:
        industry, total = row[0], row[1]
        assert margins[1] == 0 and total == pytest.approx(truth[industry], abs=0.011)
        assert margins[2] > 0 and margins[3] > 0  # the bill and the row count keep their noise
    page = await client.get(f"{buyer.web}/grants/{grant}")
    assert page.status_code == 200


async def test_without_the_flag_every_sum_carries_noise(client, op):
    provider = await approved_provider("加噪数据")
    buyer = await make_org("加噪买方")
    dataset_id = await published_dataset(
        client,
        provider,
        op,
        privacy={"max_rows_per_person": 12, "epsilon_per_query": 5, "epsilon_total": 100},
        delivery_modes=["compute"],
    )
    grant = await active_grant(client, provider, buyer, dataset_id, modes=["compute"])
    await sign_in(client, buyer.owner)
    answer = await client.post(
        f"{buyer.api}/grants/{grant}/queries",
        json={"sql": "SELECT 行业, sum(用电量) AS 总量 FROM data GROUP BY 行业"},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    shown = [m for m, hidden in zip(body["margins"], body["hidden"], strict=True) if not hidden]
    assert shown and all(m[1] > 0 for m in shown)
