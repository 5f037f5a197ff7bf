"""The criteria editor over HTTP: the builder's steps (page fragment and JSON twin), errors at
their node, saving from the builder, the live count as of a day and its reporting threshold."""

from __future__ import annotations

import asyncio
import json

from canal.park.policy import services
from canal.park.policy.criteria import MIN_REPORTABLE
from tests.factories import csrf_from, sign_in, unique
from tests.policy.helpers import org, policy_json

HX = {"HX-Request": "true"}


def _policy_fields(csrf: str, **over: str) -> dict[str, str]:
    data = policy_json({"all": []}) | over
    data.pop("criteria")
    return {k: "\n".join(v) if isinstance(v, list) else str(v) for k, v in data.items()} | {
        "_csrf": csrf
    }


async def test_builder_steps_place_errors_at_their_condition(client):
    owner, gov, _ = await org("government")
    await sign_in(client, owner)
    base = f"/t/{gov.slug}/m/policy"
    page = await client.get(f"{base}/policies/new")
    assert page.status_code == 200 and 'id="criteria-builder"' in page.text
    assert 'name="cb.r.kind"' in page.text  # the builder, not only the JSON
    csrf = csrf_from(page.text)
    state = {
        "_csrf": csrf,
        "cb.r.kind": "all",
        "cb.r-0.kind": "cond",
        "cb.r-0.subject": "employees",
        "cb.r-0.op": "range",
        "cb.r-0.min": "many",
    }
    r = await client.post(f"{base}/criteria/builder", data=state, headers=HX)
    assert r.status_code == 200 and "<html" not in r.text
    # The error sits beside the "from" input of the first condition, in the page's language.
    assert 'id="cb-r-0-min-error"' in r.text and "many" in r.text
    assert 'aria-invalid="true" aria-describedby="cb-r-0-min-error"' in r.text
    # The JSON view follows the builder (out of band).
    assert 'id="f-criteria"' in r.text and 'hx-swap-oob="true"' in r.text
    # Add a condition: a second node appears, focused.
    r = await client.post(
        f"{base}/criteria/builder", data=state | {"_action": "add_cond:r"}, headers=HX
    )
    assert 'name="cb.r-1.kind"' in r.text and "autofocus" in r.text
    # Editing the JSON view rebuilds the builder (no JSON echoed back while typing).
    rule = {"any": [{"op": "certified", "name": "专精特新", "on": "window_open"}]}
    r = await client.post(
        f"{base}/criteria/builder",
        data=state | {"_action": "from_json", "criteria": json.dumps(rule)},
        headers=HX,
    )
    assert 'name="cb.r.kind"' in r.text and 'value="any" selected' in r.text
    assert 'value="专精特新"' in r.text and "hx-swap-oob" not in r.text
    r = await client.post(
        f"{base}/criteria/builder",
        data=state | {"_action": "from_json", "criteria": "{"},
        headers=HX,
    )
    assert "JSON" in r.text and 'name="cb.r-0.min"' in r.text  # builder kept as it was


async def test_saving_from_the_builder_stores_its_rule(client):
    owner, gov, ctx = await org("government")
    await sign_in(client, owner)
    base = f"/t/{gov.slug}/m/policy"
    csrf = csrf_from((await client.get(f"{base}/policies/new")).text)
    builder_fields = {
        "cb.r.kind": "all",
        "cb.r-0.kind": "cond",
        "cb.r-0.subject": "industry_code",
        "cb.r-0.op": "prefix_in",
        "cb.r-0.values": ["C34", "C35", ""],
        "cb.r-1.kind": "not",
        "cb.r-1-0.kind": "cond",
        "cb.r-1-0.subject": "tax_credit_grade",
        "cb.r-1-0.op": "in",
        "cb.r-1-0.values": ["C", "D"],
        "cb.r-2.kind": "cond",
        "cb.r-2.subject": "established_on",
        "cb.r-2.op": "years_before",
        "cb.r-2.years": "2",
        "cb.r-2.ref": "window_open",
    }
    # A "not" group holding two items is refused at the group, nothing saved.
    two = builder_fields | {
        "cb.r-1-1.kind": "cond",
        "cb.r-1-1.subject": "employees",
        "cb.r-1-1.op": "eq",
        "cb.r-1-1.value": "3",
    }
    fields = _policy_fields(csrf)
    r = await client.post(f"{base}/policies", data=fields | two)
    assert r.status_code == 422 and "$.all[1]" in r.text
    assert 'id="cb-r-1-node-error"' in r.text  # shown at the group in the builder too
    assert await services.list_policies(ctx) == []
    # Stale JSON in the textarea does not matter: the builder is what is saved.
    r = await client.post(
        f"{base}/policies", data=fields | builder_fields | {"criteria": '{"all": []}'}
    )
    assert r.status_code == 303, r.text
    [row] = await services.list_policies(ctx)
    view = await services.get_policy(ctx, row["id"])
    stored = services.version_to_json(view.current)["criteria"]
    assert stored == {
        "all": [
            {"fact": "industry_code", "op": "prefix_in", "prefixes": ["C34", "C35"]},
            {"not": {"fact": "tax_credit_grade", "op": "in", "values": ["C", "D"]}},
            {"fact": "established_on", "op": "years_before", "years": 2, "date": "window_open"},
        ]
    }
    # The edit page shows it in the builder (grades ticked) and as JSON.
    page = await client.get(f"{base}/policies/{row['id']}")
    assert 'name="cb.r-1-0.values" value="C" checked' in page.text
    assert "&#34;prefix_in&#34;" in page.text  # the JSON view, escaped inside its textarea


async def test_builder_api_twin_converts_both_ways(client):
    owner, gov, _ = await org("government")
    await sign_in(client, owner)
    api = f"/api/v1/t/{gov.slug}/m/policy/criteria/builder"
    rule = {
        "all": [
            {
                "op": "ratio_min",
                "numerator": "rd_spend_wan",
                "denominator": "revenue_wan",
                "min": 0.03,
            },
            {"op": "certified", "name": "高新技术企业", "on": "2025-03-01"},
        ]
    }
    r = await client.post(api, json={"criteria": rule})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["valid"] and out["criteria"] == rule
    assert out["form"]["cb.r-1.ref"] == ["=date"] and out["form"]["cb.r-1.ref_date"] == [
        "2025-03-01"
    ]
    r = await client.post(api, json={"form": out["form"], "action": "add_group:r:any"})
    out = r.json()
    assert out["focus"] == "r-2-0" and out["criteria"]["all"][2] == {"any": [{"fact": ""}]}
    assert not out["valid"]
    [err] = out["errors"]
    assert err["node"] == "r-2-0" and err["path"].startswith("$.all[2].any[0]")
    # Bad JSON is named, in the request's language.
    r = await client.post(api, json={"criteria": "[1,"})
    assert not r.json()["valid"] and r.json()["errors"][0]["field"] == "criteria"
    # An enterprise may not use it (the count would be an oracle over other enterprises).
    e_owner, ent, _ = await org("enterprise")
    await sign_in(client, e_owner)
    r = await client.post(
        f"/api/v1/t/{ent.slug}/m/policy/criteria/builder", json={"criteria": rule}
    )
    assert r.status_code == 403


async def test_count_as_of_a_day_and_small_counts_are_not_exact(client):
    owner, gov, _ = await org("government")
    marker = unique("R")
    ents = await asyncio.gather(*(org("enterprise") for _ in range(MIN_REPORTABLE)))
    for i, (_, _, ectx) in enumerate(ents):
        facts = {"region_code": marker}
        if i < MIN_REPORTABLE - 1:
            facts["certifications"] = [
                {"name": "高新技术企业", "valid_from": "2020-01-01", "valid_to": "2020-12-31"}
            ]
        await services.set_facts(ectx, facts)
    await sign_in(client, owner)
    api = f"/api/v1/t/{gov.slug}/m/policy/criteria/count"
    region = {"fact": "region_code", "op": "eq", "value": marker}
    cert = {"op": "certified", "name": "高新技术企业"}
    r = (await client.get(api, params={"criteria": json.dumps(region)})).json()
    assert r["valid"] and r["eligible"] == MIN_REPORTABLE and r["eligible_text"] in ("5 家", "5")
    # Four certified in 2020: exact on no day — "fewer than 5".
    # (The region twice: other tests' enterprises then miss two criteria, never "nearly".)
    again = {"fact": "region_code", "op": "prefix_in", "prefixes": [marker]}
    both = json.dumps({"all": [region, again, cert]})
    r = (await client.get(api, params={"criteria": both, "as_of": "2020-06-01"})).json()
    assert r["as_of"] == "2020-06-01"
    assert r["eligible"] is None and r["fewer_than"] == MIN_REPORTABLE
    assert r["eligible_text"] in ("少于 5 家", "fewer than 5")
    # Nearly eligible (region met, certificate missing) today: all five.
    r = (await client.get(api, params={"criteria": both})).json()
    assert r["eligible"] is None and r["nearly"] == MIN_REPORTABLE
    # As of 2020 only one lacks the certificate: nearly is not exact either.
    r = (await client.get(api, params={"criteria": both, "as_of": "2020-06-01"})).json()
    assert r["nearly"] is None
    # A bad day is named, nothing counted.
    r = await client.get(api, params={"criteria": both, "as_of": "2020-02-30"})
    assert r.status_code == 200 and not r.json()["valid"]
    assert r.json()["errors"][0]["field"] == "as_of"
    # The page fragment says it in words.
    frag = await client.get(
        f"/t/{gov.slug}/m/policy/criteria/count",
        params={"criteria": both, "as_of": "2020-06-01"},
        headers=HX,
    )
    assert "少于 5 家" in frag.text


async def test_absurd_builder_input_is_refused_not_a_500(client):
    owner, gov, _ = await org("government")
    await sign_in(client, owner)
    base = f"/api/v1/t/{gov.slug}/m/policy/criteria"
    deep = "[" * 5000 + "]" * 5000
    r = await client.get(f"{base}/count", params={"criteria": deep})
    assert r.status_code == 200 and not r.json()["valid"]
    leaf = '{"fact": "employees", "op": "eq", "value": 1}'
    nested = '{"not": ' * 3000 + leaf + "}" * 3000
    r = await client.post(f"{base}/builder", json={"criteria": nested})
    assert r.status_code in (200, 400, 422) and not r.json().get("valid", False)
    # A form naming a node 50 levels down: ignored (the builder shows what it can).
    deep_id = "r" + "-0" * 50
    form = {"cb.r.kind": ["all"], f"cb.{deep_id}.kind": ["cond"], "cb.r-0.kind": ["cond"]}
    r = await client.post(f"{base}/builder", json={"form": form, "action": f"remove:{deep_id}"})
    assert r.status_code == 200 and f"cb.{deep_id}.kind" not in r.json()["form"]


async def test_a_rule_too_deep_for_the_builder_is_edited_as_json(client):
    owner, gov, ctx = await org("government")
    await sign_in(client, owner)
    leaf = {"fact": "employees", "op": "range", "min": 1}
    deep: dict = leaf
    for _ in range(13):
        deep = {"any": [deep]}
    api = f"/api/v1/t/{gov.slug}/m/policy"
    r = await client.post(f"{api}/policies", json=policy_json(deep))
    assert r.status_code == 201, r.text
    policy_id = r.json()["id"]
    page = await client.get(f"/t/{gov.slug}/m/policy/policies/{policy_id}")
    assert page.status_code == 200 and 'name="cb.r.kind"' not in page.text
    assert "嵌套超过 12 层" in page.text
    # The builder refuses to load it from the JSON view, saying why.
    r = await client.post(f"{api}/criteria/builder", json={"criteria": deep})
    assert not r.json()["valid"] and "12" in r.json()["errors"][0]["message"]
    # Saving the page's JSON-only form keeps the rule.
    csrf = csrf_from(page.text)
    fields = _policy_fields(csrf) | {"criteria": json.dumps(deep)}
    r = await client.post(f"/t/{gov.slug}/m/policy/policies/{policy_id}", data=fields)
    assert r.status_code == 303, r.text
    view = await services.get_policy(ctx, policy_id)
    assert services.version_to_json(view.current)["criteria"] == deep
