"""Policy matching in a real browser (phone-sized, Chinese): an enterprise sees why a policy
matches, applies with a material file; the authority accepts it with an amount; the authority's
criteria editor reports a rule error at its path and shows the live count.

Uses the server and browser fixtures of ``test_browser_journey``; screenshots in
``test-artifacts/e2e/policy-*.png``.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_browser_journey import ARTIFACTS, chromium, page, server  # noqa: F401
from tests.factories import PASSWORD
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def _shot(tab, name: str) -> None:
    await tab.screenshot(path=str(ARTIFACTS / f"policy-{name}.png"), full_page=True)


async def _sign_in(tab, server_url: str, person) -> None:
    await tab.context.clear_cookies()
    await tab.goto(f"{server_url}/login")
    await tab.fill("#f-login", person.login)
    await tab.fill("#f-password", PASSWORD)
    await tab.click("form[action='/login'] button[type=submit]")
    await tab.wait_for_load_state("networkidle")
    assert "/login" not in tab.url, await tab.inner_text("main")


async def test_match_apply_accept_in_the_browser(app, page, server, tmp_path):  # noqa: F811
    # `app` attaches the Redis publisher: the server process learns of the new roles.
    from canal.park.policy import services

    gov_owner, gov, gctx = await org("government", "东昌府区浏览器测试局")
    ent_owner, ent, ectx = await org("enterprise", "聊城浏览器轴承有限公司")
    data = policy_json(CRITERIA, title="东昌府区高企研发补贴(浏览器测试)")
    policy_id = await services.create_policy(gctx, services.parse_policy(data), publish=True)
    await services.set_facts(
        ectx,
        {
            "region_code": "371502",
            "employees": 88,
            "certifications": [certificate()],
        },
    )
    await services.rematch_enterprise(ent.id)

    # The enterprise: the match, with the reasons behind it.
    await _sign_in(page, server, ent_owner)
    await page.goto(f"{server}/t/{ent.slug}/m/policy/matches")
    main = await page.inner_text("main")
    assert "符合条件" in main and data["title"] in main
    card = page.locator("article.match", has_text=data["title"])
    await card.locator("summary").click()
    reasons = await card.inner_text()
    assert "高新技术企业" in reasons and "企业自报" in reasons
    await _shot(page, "01-matches")

    # Apply: the form is pre-filled from the portrait; the material is required.
    await card.get_by_role("button", name="申报").click()
    await page.wait_for_load_state("networkidle")
    assert "88" in await page.inner_text("main")
    await page.fill("#f-contact", "王经理 13806350000")
    await page.click("form[enctype] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "请上传申报材料" in await page.inner_text("main")
    await _shot(page, "02-apply-missing-material")
    material = tmp_path / "申报书.pdf"
    material.write_bytes(PDF)
    await page.set_input_files("#f-materials", str(material))
    await page.click("form[enctype] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/applications/" in page.url
    assert "待审核" in await page.inner_text("main")
    await _shot(page, "03-applied")

    # The authority: its queue, accept with an amount.
    await _sign_in(page, server, gov_owner)
    await page.goto(f"{server}/t/{gov.slug}/m/policy/queue")
    await page.click(f"text={ent.name}")
    await page.wait_for_load_state("networkidle")
    assert "王经理" in await page.inner_text("main")
    await page.fill("#f-amount_yuan", "50000")
    await page.click("button[value=accept]")
    await page.wait_for_load_state("networkidle")
    main = await page.inner_text("main")
    assert "已通过" in main and "50,000.00" in main
    await _shot(page, "04-accepted")

    # The criteria editor's JSON view: a wrong rule is shown at its path; the builder follows
    # a right one and the live count answers.
    await page.goto(f"{server}/t/{gov.slug}/m/policy/policies/{policy_id}")
    await page.click("details.criteria-json summary")
    await page.fill(
        "#f-criteria", json.dumps({"all": [{"fact": "employes", "op": "eq", "value": 1}]})
    )
    await page.wait_for_selector("#criteria-json-errors .field__error")
    assert "$.all[0].fact" in await page.inner_text("#criteria-json-errors")
    await page.fill("#f-criteria", json.dumps({"all": CRITERIA["all"][:2]}))
    # (The page's CSP forbids eval, so wait with a locator rather than wait_for_function.)
    await page.locator("#cb-r-2").wait_for(state="detached")  # the third criterion is gone
    assert await page.input_value("#cb-r-1-name") == "高新技术企业"
    await page.locator("#live-count", has_text="符合条件").wait_for()
    await _shot(page, "05-criteria-live-count")
