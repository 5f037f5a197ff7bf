"""The criteria builder in a real browser (phone-sized, Chinese): an authority builds a rule by
clicking — a condition, a group, values fitting each fact — watches the live count change,
sees an error beside its condition, saves, and the stored criteria are the rule it built.

Screenshots in ``test-artifacts/e2e/policy-builder-*.png``.
"""

from __future__ import annotations

import json

import pytest

from canal.platform import clock
from tests.e2e.test_browser_journey import ARTIFACTS, chromium, page, server  # noqa: F401
from tests.e2e.test_policy_journey import _sign_in
from tests.factories import unique
from tests.policy.helpers import org

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def _shot(tab, name: str) -> None:
    await tab.screenshot(path=str(ARTIFACTS / f"policy-builder-{name}.png"), full_page=True)


async def _settled(tab) -> None:
    await tab.wait_for_load_state("networkidle")
    await tab.wait_for_timeout(150)


async def test_build_a_rule_by_clicking_and_save_it(app, page, server):  # noqa: F811
    from canal.park.policy import services

    gov_owner, gov, gctx = await org("government", unique("东昌府区构建器测试局"))
    marker = unique("37")
    for employees in (10, 30, 60, 90, 120, 150):
        _, _, ectx = await org("enterprise")
        await services.set_facts(ectx, {"region_code": marker, "employees": employees})

    await _sign_in(page, server, gov_owner)
    await page.goto(f"{server}/t/{gov.slug}/m/policy/policies/new")
    await _settled(page)
    await page.fill("#f-title", "构建器测试政策")
    await page.fill("#f-issuer", "东昌府区科学技术局")
    await page.fill("#f-window_opens", clock.days_from_today(-30).isoformat())
    await page.fill("#f-window_closes", clock.days_from_today(60).isoformat())

    # A new policy starts from a sample rule of two conditions: drop the second one.
    assert await page.input_value("#cb-r-1-subject") == "established_on"
    await page.locator("#cb-r-1").get_by_role("button", name="删除条件").click()
    await _settled(page)
    assert await page.locator("#cb-r-1").count() == 0
    # The first condition: region code equals the marker (a text input for a text fact).
    await page.select_option("#cb-r-0-subject", "region_code")
    await _settled(page)
    await page.select_option("#cb-r-0-op", "eq")
    await _settled(page)
    await page.fill("#cb-r-0-value", marker)
    await page.press("#cb-r-0-value", "Tab")  # change → the builder posts
    await page.locator("#live-count", has_text="符合条件 6 家").wait_for()

    # Add a condition: employees (number) between 50 and …: the count narrows.
    await page.get_by_role("button", name="+ 条件").first.click()
    await _settled(page)
    assert await page.evaluate("document.activeElement.id") == "cb-r-1-subject"
    await page.select_option("#cb-r-1-subject", "employees")
    await _settled(page)
    assert await page.input_value("#cb-r-1-op") == "range"
    await page.fill("#cb-r-1-min", "很多")
    await page.press("#cb-r-1-min", "Tab")
    # A wrong value: the error sits beside the condition, nothing counted.
    await page.locator("#cb-r-1-min-error").wait_for()
    assert "很多" in await page.inner_text("#cb-r-1-min-error")
    await _shot(page, "01-error-at-condition")
    await page.fill("#cb-r-1-min", "50")
    await page.press("#cb-r-1-min", "Tab")
    await page.locator("#live-count", has_text="差一项").wait_for()
    await page.locator("#live-count", has_text="符合条件 少于 5 家").wait_for()
    await page.fill("#cb-r-1-min", "20")
    await page.press("#cb-r-1-min", "Tab")
    await page.locator("#live-count", has_text="符合条件 5 家").wait_for()
    # The count on another day.
    await page.fill("#f-count-as-of", "2025-06-30")
    await page.press("#f-count-as-of", "Tab")
    await page.locator("#live-count", has_text="统计截至 2025-06-30").wait_for()

    # A group "any of": a certificate or a tax grade ticked from its list.
    await page.get_by_role("button", name="+ 组合(任一)").first.click()
    await _settled(page)
    await page.select_option("#cb-r-2-0-subject", "certifications")
    await _settled(page)
    await page.fill("#cb-r-2-0-name", "专精特新")
    await page.select_option("#cb-r-2-0-ref", "window_open")
    await _settled(page)
    await page.locator("#cb-r-2 .cb-actions").get_by_role("button", name="+ 条件").click()
    await _settled(page)
    await page.select_option("#cb-r-2-1-subject", "tax_credit_grade")
    await _settled(page)
    await page.select_option("#cb-r-2-1-op", "in")
    await _settled(page)
    await page.check("#cb-r-2-1-values-0")  # A
    await _settled(page)
    await page.check("#cb-r-2-1-values-1")  # B
    await _settled(page)
    await page.locator("#live-count", has_text="符合条件 少于 5 家").wait_for()
    await _shot(page, "02-built")
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.locator("#criteria-builder").screenshot(
        path=str(ARTIFACTS / "policy-builder-02-built-desktop.png")
    )
    await page.set_viewport_size({"width": 390, "height": 844})

    # The JSON view follows the builder.
    await page.click("details.criteria-json summary")
    shown = json.loads(await page.input_value("#f-criteria"))
    expected = {
        "all": [
            {"fact": "region_code", "op": "eq", "value": marker},
            {"fact": "employees", "op": "range", "min": 20},
            {
                "any": [
                    {"op": "certified", "name": "专精特新", "on": "window_open"},
                    {"fact": "tax_credit_grade", "op": "in", "values": ["A", "B"]},
                ]
            },
        ]
    }
    assert shown == expected
    # Remove the group again by keyboard: focus its button and press Enter.
    await page.locator("#cb-r-2 > .cb-actions").get_by_role("button", name="删除组合").focus()
    await page.keyboard.press("Enter")
    await _settled(page)
    assert await page.locator("#cb-r-2").count() == 0
    assert json.loads(await page.input_value("#f-criteria")) == {"all": expected["all"][:2]}

    await page.click("form[novalidate] > button[type=submit], form[novalidate] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/policies/" in page.url and "new" not in page.url
    await _shot(page, "03-saved")
    [row] = await services.list_policies(gctx)
    view = await services.get_policy(gctx, row["id"])
    assert services.version_to_json(view.current)["criteria"] == {"all": expected["all"][:2]}


async def test_save_a_catalogue_search_in_the_browser(app, page, server):  # noqa: F811
    from tests.factories import make_user

    person = await make_user(unique("订阅浏览器"))
    word = unique("llq")
    await _sign_in(page, server, person)
    await page.goto(f"{server}/policies?q={word}&level=city")
    await page.click("details.save-search summary")
    await page.fill("#f-name", f"市级 {word}")
    await page.click("details.save-search button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert page.url.endswith("/policies/saved")
    main = await page.inner_text("main")
    assert f"市级 {word}" in main and word in main
    await _shot(page, "04-saved-searches")
    # Rename by keyboard, then open it: the catalogue with its keyword and level.
    field = page.locator("input[name=name]").first
    await field.fill("改名后的搜索")
    await field.press("Enter")
    await page.wait_for_load_state("networkidle")
    assert "改名后的搜索" in await page.inner_text("main")
    await page.click("text=改名后的搜索")
    await page.wait_for_load_state("networkidle")
    assert f"q={word}" in page.url and "level=city" in page.url
