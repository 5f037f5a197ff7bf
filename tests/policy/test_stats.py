"""Statistics for the authority and the operator: matches, applications, approval rates and
amounts by policy and by industry section, as charts on the page and figures in the API."""

from __future__ import annotations

import json

from canal.park.policy import services
from canal.tenants.tables import Tenant
from tests.factories import sign_in, unique
from tests.policy.helpers import ctx_of, org, policy_json


async def test_stats_by_policy_and_industry_for_the_authority_and_the_operator(client, operator):
    from canal.tenants.services import set_module

    gov_owner, gov, gctx = await org("government")
    # A region code of this run only: the counts below are this test's enterprises alone.
    region = str(900000 + int(unique("")[-5:], 16) % 99999)
    rule = {"all": [{"fact": "region_code", "op": "prefix_in", "prefixes": [region]}]}
    title1 = unique("统计甲")
    first = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(rule, title=title1, materials=[])),
        publish=True,
    )
    second = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(rule, title=unique("统计乙"), materials=[])),
        publish=True,
    )
    makers = []
    for i in range(6):  # five manufacturers and one software firm
        _, _ent, ectx = await org("enterprise")
        code = "C3451" if i < 5 else "I6513"
        await services.set_facts(ectx, {"region_code": region, "industry_code": code})
        makers.append(ectx)
    a1 = await services.apply(makers[0], first, contact="甲", note="", materials=[])
    a2 = await services.apply(makers[1], first, contact="乙", note="", materials=[])
    a3 = await services.apply(makers[5], second, contact="丙", note="", materials=[])
    await services.decide(gctx, a1, "accept", amount_yuan="30000")
    await services.decide(gctx, a1, "disburse", reference="ZJZD-1")
    await services.decide(gctx, a2, "reject", reason="材料不全")
    assert a3  # still waiting: counted, not decided

    await sign_in(client, gov_owner)
    api = f"/api/v1/t/{gov.slug}/m/policy/stats"
    stats = (await client.get(api)).json()
    assert stats["scope"] == "authority"
    assert (stats["applications"], stats["decided"], stats["approval_rate"]) == (3, 2, 0.5)
    p1 = stats["by_policy"][title1]
    assert (p1["applications"], p1["accepted"], p1["approval_rate"], p1["amount_fen"]) == (
        2,
        1,
        0.5,
        3_000_000,
    )
    c, i = stats["by_industry"]["C"], stats["by_industry"]["I"]
    assert (c["applications"], c["decided"], c["approval_rate"]) == (2, 2, 0.5)
    assert (i["applications"], i["decided"], i["approval_rate"]) == (1, 0, None)
    # Eligible now: each policy finds the six; by industry 5 + 5 manufacturers, and the one
    # software firm twice — fewer than 5, so not exact.
    assert stats["eligible_by_policy"][title1] == 6
    assert stats["eligible_by_industry"]["C"] == 10
    assert stats["eligible_by_industry"]["I"] is None

    page = await client.get(f"/t/{gov.slug}/m/policy/stats")
    assert page.status_code == 200
    html = page.text
    assert "制造业" in html and "信息传输、软件和信息技术服务业" in html and "50%" in html
    assert "少于 5 家" in html and "30,000.00" in html
    # Three charts (by policy, by industry, amounts), their options in the page.
    assert html.count('class="chart"') == 3 and "data-chart=" in html
    assert "全部政策主管部门" not in html  # no platform view for an authority
    r = await client.get(f"{api}?scope=platform")
    assert r.status_code == 403 and r.json()["code"] == "operator_only"

    # The operator: every authority's figures (at least this test's), and the same page.
    op = await Tenant.select().where(Tenant.kind == "operator").first()
    assert op is not None
    op_ctx = ctx_of(type("T", (), op | {"status": "active"})(), operator)
    await set_module(op_ctx, "policy", enabled=True)
    await sign_in(client, operator)
    op_api = f"/api/v1/t/{op['slug']}/m/policy/stats"
    everyone = (await client.get(f"{op_api}?scope=platform")).json()
    assert everyone["scope"] == "platform"
    assert everyone["by_policy"][title1]["amount_fen"] == 3_000_000
    assert everyone["applications"] >= 3
    assert everyone["eligible_by_policy"][title1] == 6
    page = await client.get(f"/t/{op['slug']}/m/policy/stats?scope=platform")
    assert page.status_code == 200 and title1 in page.text and "全部政策主管部门" in page.text
    json.dumps(everyone)  # plain JSON figures


async def test_queue_filters_by_status_page_and_api(client):
    gov_owner, gov, gctx = await org("government")
    rule = {"all": [{"fact": "employees", "op": "range", "min": 1}]}
    pid = await services.create_policy(
        gctx, services.parse_policy(policy_json(rule, materials=[])), publish=True
    )
    ids = {}
    for name in ("甲", "乙"):
        _, ent, ectx = await org("enterprise", unique(f"队列{name}") + "有限公司")
        await services.set_facts(ectx, {"employees": 5})
        ids[name] = (ent, await services.apply(ectx, pid, contact=name, note="", materials=[]))
    await services.decide(gctx, ids["乙"][1], "reject", reason="不符合")
    await sign_in(client, gov_owner)
    api = f"/api/v1/t/{gov.slug}/m/policy/queue"
    assert {r["id"] for r in (await client.get(api)).json()} == {
        str(ids["甲"][1]),
        str(ids["乙"][1]),
    }
    rejected = (await client.get(api, params={"status": "rejected"})).json()
    assert [r["id"] for r in rejected] == [str(ids["乙"][1])]
    everything = (await client.get(api, params={"status": "nonsense"})).json()
    assert len(everything) == 2  # an unknown status filters nothing, never an error
    page = await client.get(f"/t/{gov.slug}/m/policy/queue", params={"status": "submitted"})
    assert page.status_code == 200
    assert ids["甲"][0].name in page.text and ids["乙"][0].name not in page.text
    assert '<strong aria-current="page">待审核</strong>' in page.text
