"""Under zh-CN every policy page's main content is Chinese: no English sentence or label left
untranslated (codes, units and the test's own names aside)."""

from __future__ import annotations

import html as html_lib
import re

from canal.park.policy import services
from tests.factories import sign_in
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

# Latin a Chinese page may show: codes and abbreviations, never words of a sentence.
LATIN_OK = {"GB", "PDF", "JSON", "API", "SMS", "OpenAPI", "Canal"}
# The rule language's own keywords, named in the JSON editor's help (docs/policy-rules.md).
RULE_WORDS = {"all", "any", "not", "eq", "in", "range", "certified"}


def _latin_words(page: str) -> set[str]:
    main = page.split('<main id="main"', 1)[1].split(">", 1)[1].split("</main>", 1)[0]
    main = re.sub(r"<(script|style)\b.*?</\1>", " ", main, flags=re.S)
    main = re.sub(r"<textarea\b.*?</textarea>", " ", main, flags=re.S)  # the JSON editor
    main = re.sub(r"<code\b.*?</code>", " ", main, flags=re.S)  # rule-language names are code
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", main))
    runs = re.findall(r"[A-Za-z0-9_.@/-]+", text)
    # Runs with digits are codes, dates, ids and the tests' unique names.
    return {r for r in runs if len(r) >= 3 and r.isalpha()} - LATIN_OK - RULE_WORDS


async def test_policy_pages_are_chinese(client):
    gov_owner, gov, gctx = await org("government", "东昌府区中文检查局")
    ent_owner, ent, ectx = await org("enterprise", "聊城中文检查机械有限公司")
    policy_id = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title="中文检查政策", materials=[])),
        publish=True,
    )
    await services.set_facts(
        ectx,
        {
            "region_code": "371502",
            "employees": 30,
            "industry_code": "C3451",
            "certifications": [certificate()],
        },
    )
    await services.rematch_enterprise(ent.id)
    app_id = await services.apply(ectx, policy_id, contact="王", note="", materials=[])
    await services.decide(gctx, app_id, "accept", amount_yuan="1000")

    headers = {"Accept-Language": "zh-CN"}
    await sign_in(client, ent_owner)
    base = f"/t/{ent.slug}/m/policy"
    for path in (
        base,
        f"{base}/portrait",
        f"{base}/matches",
        f"{base}/applications",
        f"{base}/applications/{app_id}",
        "/policies",
        f"/policies/{policy_id}",
        "/policies/saved",
    ):
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code)
        assert _latin_words(r.text) == set(), path
    await sign_in(client, gov_owner)
    base = f"/t/{gov.slug}/m/policy"
    for path in (
        base,
        f"{base}/policies",
        f"{base}/policies/new",
        f"{base}/policies/{policy_id}",
        f"{base}/queue",
        f"{base}/queue/{app_id}",
        f"{base}/stats",
        f"{base}/oversight",
    ):
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code)
        assert _latin_words(r.text) == set(), path
