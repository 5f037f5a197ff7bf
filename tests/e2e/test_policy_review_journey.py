"""The authority's queue, the enterprise's answers and the operator's oversight in a real
browser (Chinese): ask for more → the enterprise resubmits with a file → accept with an amount
→ record the disbursement → the enterprise rates (在线评); a rejection with its reason; the
operator's overdue list and reminders (马上督); statistics as charts; the catalogue's filters;
portrait evidence. Every page on a phone (390 px) and on a desktop, no English left over.

Screenshots in ``test-artifacts/e2e/policy-review-*.png``.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from canal.platform import clock
from tests.e2e.test_browser_journey import ARTIFACTS, chromium, page, server  # noqa: F401
from tests.factories import PASSWORD, unique
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
# Latin words a Chinese page may show: codes, units and names, never sentences.
LATIN_OK = {"GB", "PDF", "Canal", "JSON", "API", "SMS"}


async def _shot(tab, name: str) -> None:
    await tab.screenshot(path=str(ARTIFACTS / f"policy-review-{name}.png"), full_page=True)


async def _both(tab, name: str) -> None:
    """Screenshot at phone width and at desktop width; on the phone nothing is wider than the
    screen (a table may scroll inside its own box)."""
    await _shot(tab, f"{name}-phone")
    overflow = await tab.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390, f"{name}: page is {overflow}px wide on a 390px phone"
    await tab.set_viewport_size({"width": 1280, "height": 900})
    await _shot(tab, f"{name}-desktop")
    await tab.set_viewport_size({"width": 390, "height": 844})


async def _chinese_only(tab, *allowed: str) -> None:
    text = await tab.inner_text("main")
    for word in allowed:
        text = text.replace(word, "")
    # Runs of Latin letters and digits: the test's unique names end in hex (with digits).
    runs = re.findall(r"[A-Za-z0-9]+", text)
    latin = {r for r in runs if len(r) >= 3 and r.isalpha()} - LATIN_OK
    assert not latin, f"English on a zh-CN page: {sorted(latin)}"


async def _sign_in(tab, server_url: str, person) -> None:
    await tab.context.clear_cookies()
    await tab.goto(f"{server_url}/login")
    await tab.fill("#f-login", person.login)
    await tab.fill("#f-password", PASSWORD)
    await tab.click("form[action='/login'] button[type=submit]")
    # Leaving /login is the sign of success; "networkidle" may never come while the unread
    # badge polls on a busy machine.
    await tab.wait_for_url(lambda url: "/login" not in url)
    await tab.wait_for_load_state("load")


async def _operator_sign_in(tab, server_url: str, person) -> None:
    """Operator staff must turn on two-step sign-in first: do it as a person would, with the
    authenticator's code computed from the secret the page shows."""
    import pyotp

    await _sign_in(tab, server_url, person)
    await tab.goto(f"{server_url}/account/security")
    secret = tab.locator(".totp-secret")
    if await secret.count():
        code = pyotp.TOTP((await secret.inner_text()).strip()).now()
        await tab.fill("#f-code", code)
        await _submit(tab, "form[action='/account/security/totp/confirm'] button[type=submit]")


async def _submit(tab, selector: str) -> str:
    await tab.click(selector)
    await tab.wait_for_load_state("networkidle")
    return await tab.inner_text("main")


async def test_queue_decisions_rating_oversight_stats_catalogue(
    app,
    page,  # noqa: F811
    server,  # noqa: F811
    tmp_path,
):
    from canal.park.policy import services
    from canal.park.policy.tables import Review
    from canal.platform import db
    from canal.tenants.services import set_module
    from canal.tenants.tables import Tenant
    from tests.policy.helpers import ctx_of

    dept = unique("东昌府区审批测试局")
    gov_owner, gov, gctx = await org("government", dept)
    ent_owner, ent, ectx = await org("enterprise", unique("聊城审批测试机械") + "有限公司")
    title = unique("技改设备补助")
    policy_id = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title=title, issuer=dept, materials=[])),
        publish=True,
    )
    other_title = unique("研发费用奖励")
    other_id = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title=other_title, materials=[])),
        publish=True,
    )
    material = tmp_path / "研发台账.pdf"
    material.write_bytes(PDF)

    # The enterprise corrects its portrait with an evidence file.
    await _sign_in(page, server, ent_owner)
    await page.goto(f"{server}/t/{ent.slug}/m/policy/portrait")
    await page.fill("#f-region_code", "371502")
    await page.fill("#f-employees", "66")
    await page.fill("#f-industry_code", "C3451")
    await page.set_input_files("#f-evidence", str(material))
    main = await _submit(page, "form[enctype] button[type=submit]")
    assert "已保存" in main
    row = page.locator("tr", has_text="从业人数")
    assert "企业自报" in await row.inner_text()
    await row.locator("a").first.wait_for()  # the evidence file is linked
    await _chinese_only(page, "C3451")
    await _both(page, "01-portrait")
    await services.set_facts(
        ectx,
        {"certifications": [certificate()]},
    )
    first = await services.apply(ectx, policy_id, contact="王经理 138", note="", materials=[])
    second = await services.apply(ectx, other_id, contact="王经理 138", note="", materials=[])

    # The authority asks for more material: the reason is required.
    await _sign_in(page, server, gov_owner)
    await page.goto(f"{server}/t/{gov.slug}/m/policy/queue")
    await _chinese_only(page, ent.name, title, other_title)
    await _both(page, "02-queue")
    await page.goto(f"{server}/t/{gov.slug}/m/policy/queue/{first}")
    main = await _submit(page, "button[value=more]")
    assert "请说明理由" in main
    await page.fill("#f-reason", "请补充近三年研发台账")
    main = await _submit(page, "button[value=more]")
    assert "需补充材料" in main
    await _both(page, "03-asked-for-more")
    # The other application is rejected with its reason.
    await page.goto(f"{server}/t/{gov.slug}/m/policy/queue/{second}")
    await page.fill("#f-reason", "研发投入占比不足")
    main = await _submit(page, "button[value=reject]")
    assert "未通过" in main

    # The enterprise: told, sees the reason, resubmits with a file.
    await _sign_in(page, server, ent_owner)
    await page.goto(f"{server}/notifications")
    notes = await page.inner_text("main")
    assert "需补充材料" in notes and "研发投入占比不足" in notes
    await page.goto(f"{server}/t/{ent.slug}/m/policy/applications/{first}")
    assert "请补充近三年研发台账" in await page.inner_text("main")
    await page.fill("#f-note", "已补充研发台账")
    await page.set_input_files("#f-files", str(material))
    main = await _submit(page, "form[enctype] button[type=submit]")
    assert "待审核" in main and "研发台账.pdf" in main
    await _chinese_only(page, title, "研发台账.pdf")
    await _both(page, "04-resubmitted")

    # The authority accepts with an amount and records the disbursement (资金直达).
    await _sign_in(page, server, gov_owner)
    await page.goto(f"{server}/t/{gov.slug}/m/policy/queue/{first}")
    assert "研发台账.pdf" in await page.inner_text("main")
    await page.fill("#f-amount_yuan", "-1")
    assert "金额" in await _submit(page, "button[value=accept]")
    await page.fill("#f-amount_yuan", "120000")
    main = await _submit(page, "button[value=accept]")
    assert "已通过" in main and "120,000.00" in main
    main = await _submit(page, "button[value=disburse]")
    assert "请填写拨付凭证号" in main  # the voucher number is required
    await page.fill("#f-reference", "LC-ZJZD-2026-0042")
    main = await _submit(page, "button[value=disburse]")
    assert "资金已拨付" in main and "LC-ZJZD-2026-0042" in main
    await _chinese_only(page, ent.name, title, "研发台账.pdf", "LC-ZJZD-2026-0042")
    await _both(page, "05-disbursed")

    # The enterprise sees the disbursement and rates the service (在线评).
    await _sign_in(page, server, ent_owner)
    await page.goto(f"{server}/t/{ent.slug}/m/policy/applications/{first}")
    main = await page.inner_text("main")
    assert "120,000.00" in main and clock.today().isoformat() in main
    assert "拨付凭证号: LC-ZJZD-2026-0042" in main
    await page.check("input[name=rating][value='4']")
    await page.fill("#f-comment", "办理很快")
    main = await _submit(page, "form[action$='/rate'] button[type=submit]")
    assert "★★★★☆" in main
    await _both(page, "06-rated")

    # Statistics as charts (the charts draw as SVG).
    await _sign_in(page, server, gov_owner)
    await page.goto(f"{server}/t/{gov.slug}/m/policy/stats")
    await page.locator("#by-policy svg").first.wait_for()
    await page.locator("#by-industry-counts svg").first.wait_for()
    main = await page.inner_text("main")
    assert "制造业" in main and "50%" in main and "120,000.00" in main
    await _chinese_only(page, title, other_title)
    await _both(page, "07-stats")

    # The operator: an application waiting 11 days is listed; reminders go out (马上督).
    late_policy = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title=unique("逾期"), materials=[])),
        publish=True,
    )
    late = await services.apply(ectx, late_policy, contact="王", note="", materials=[])
    old = clock.now() - dt.timedelta(days=11)
    async with db.tenant_scope(gov.id):
        await Review.update({Review.submitted_at: old}).where(Review.id == late)
    # A fresh staff member (the session's shared one may have two-step sign-in on already).
    from tests.factories import make_operator_staff

    operator = (await make_operator_staff())["admin"]
    op = await Tenant.select().where(Tenant.kind == "operator").first()
    assert op is not None
    op_ctx = ctx_of(type("T", (), op | {"status": "active"})(), operator)
    await set_module(op_ctx, "policy", enabled=True)
    await _operator_sign_in(page, server, operator)
    await page.goto(f"{server}/t/{op['slug']}/m/policy/oversight")
    assert dept in await page.inner_text("main")
    await _both(page, "08-oversight")
    await _submit(page, "form[action$='/oversight/remind'] button[type=submit]")
    await page.goto(f"{server}/t/{op['slug']}/m/policy/stats?scope=platform")
    await page.locator("#by-policy svg").first.wait_for()
    assert title in await page.inner_text("main")
    await _both(page, "09-platform-stats")
    async with db.tenant_scope(gov.id):
        review = await Review.select().where(Review.id == late).first()
    assert review is not None and review["reminded_at"] is not None

    # The public catalogue: department + open now; a keyword in Chinese.
    from canal.platform.search.services import get_service

    await get_service().upsert(
        "policies", [d async for d in services.load_search_documents()], wait=True
    )
    await page.context.clear_cookies()
    await page.goto(f"{server}/policies")
    await page.select_option("#f-issuer", dept)
    await page.check("input[name=open]")
    main = await _submit(page, "form[action='/policies'] button[type=submit]")
    assert title in main and other_title not in main
    await _both(page, "10-catalogue-department")
