"""The supermarket's main journey in a real browser (issue #6): an enterprise finds a service
by a Chinese keyword, requests a quote, the provider answers, the enterprise accepts and pays,
the provider delivers, the enterprise confirms and reviews.

Two browser contexts (buyer and provider) against ``canal serve``; the provider and its live
listing are made through the services first (their own review flow is tested over the API).
Screenshots land in ``test-artifacts/e2e/services-*.png``.
"""

from __future__ import annotations

import random

import pytest

from tests.e2e.test_browser_journey import ARTIFACTS, CHROMIUM_FLAGS, chromium, server  # noqa: F401
from tests.factories import PASSWORD, unique
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator

pytestmark = pytest.mark.browser

# Heavenly stems and earthly branches: a Chinese keyword no other test's listing contains.
HAN = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"


async def _shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"services-{name}.png"), full_page=True)


async def _sign_in(page, server: str, login: str) -> None:  # noqa: F811
    await page.goto(f"{server}/login")
    await page.fill("#f-login", login)
    await page.fill("#f-password", PASSWORD)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/login" not in page.url, await page.inner_text("main")


async def _submit(page, selector: str) -> None:
    await page.click(selector)
    await page.wait_for_load_state("networkidle")


async def test_find_quote_accept_pay_deliver_confirm_review(app, server, chromium):  # noqa: F811
    from playwright.async_api import async_playwright

    staff = await operator()
    keyword = "".join(random.choice(HAN) for _ in range(4))
    provider = await approved_provider(f"明德财税{unique('')}", staff.user_id)
    title = f"高新技术企业认定辅导{keyword}"
    listing = await live_listing(
        provider,
        staff.user_id,
        title=title,
        category="startup",
        subcategory="ip",
        price_model="quote",
        price="",
        description="协助整理知识产权与研发费用归集,准备高新技术企业认定材料。",
    )
    buyer = await make_side(f"轴承保持架{unique('')}")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        buyer_tab = await (
            await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        ).new_page()
        seller_tab = await (
            await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        ).new_page()
        try:
            # 1. The buyer finds the service by a Chinese keyword.
            await _sign_in(buyer_tab, server, buyer.person.login)
            await buyer_tab.goto(f"{server}{buyer.pages}")
            await buyer_tab.fill("#f-q", f"高新 {keyword}")
            await _submit(buyer_tab, "#catalogue-search button[type=submit]")
            await _shot(buyer_tab, "01-search")
            await _submit(buyer_tab, f"a[href$='/listings/{listing.id}']")
            assert title in await buyer_tab.inner_text("main")

            # 2. A quote request: empty is refused next to the field, then sent.
            await _submit(buyer_tab, "form[action$='/quotes'] button[type=submit]")
            assert "请填写需求描述" in await buyer_tab.inner_text("main")
            await buyer_tab.fill("#f-need", "今年准备申报高新技术企业,已有 6 项实用新型专利。")
            await _submit(buyer_tab, "form[action$='/quotes'] button[type=submit]")
            assert "/quotes/" in buyer_tab.url
            quote_path = buyer_tab.url.split("/quotes/")[1]
            assert await buyer_tab.inner_text("#quote-status") == "待报价"
            await _shot(buyer_tab, "02-quote-requested")

            # 3. The provider answers with a price, scope and deadline.
            await _sign_in(seller_tab, server, provider.person.login)
            await seller_tab.goto(f"{server}{provider.pages}/quotes/{quote_path}")
            await seller_tab.fill("#f-price", "12.345")
            await seller_tab.fill("#f-scope", "材料梳理、申报书撰写、答辩辅导")
            await _submit(seller_tab, "form[action$='/answer'] button[type=submit]")
            assert "价格最多保留两位小数" in await seller_tab.inner_text("main")
            await seller_tab.fill("#f-price", "8,800.00")
            await _submit(seller_tab, "form[action$='/answer'] button[type=submit]")
            await _shot(seller_tab, "03-quote-answered")

            # 4. The buyer accepts and pays.
            await buyer_tab.reload()
            assert await buyer_tab.inner_text("#quote-price") == "¥8,800.00"
            await _submit(buyer_tab, "form[action$='/accept'] button[type=submit]")
            assert "/orders/" in buyer_tab.url
            order_path = buyer_tab.url.split("/orders/")[1]
            await _shot(buyer_tab, "04-order-placed")
            await _submit(buyer_tab, "form[action$='/pay'] button[type=submit]")
            assert "已付款" in await buyer_tab.inner_text("main")
            assert await buyer_tab.locator("form[action$='/pay']").count() == 0  # no second pay

            # 5. The provider accepts, starts and delivers, writing in the thread.
            await seller_tab.goto(f"{server}{provider.pages}/orders/{order_path}")
            for action in ("accept", "start"):
                await _submit(seller_tab, f"button[name=action][value={action}]")
            await seller_tab.fill("#f-body", "申报材料初稿已上传,请查收。")
            await _submit(seller_tab, "form[action$='/messages'] button[type=submit]")
            await seller_tab.fill("#f-note", "全部材料已交付")
            await _submit(seller_tab, "button[name=action][value=deliver]")
            assert await seller_tab.inner_text("#order-state") == "已交付"
            await _shot(seller_tab, "05-delivered")

            # 6. The buyer confirms and reviews.
            await buyer_tab.reload()
            assert "申报材料初稿已上传" in await buyer_tab.inner_text("main")
            await _submit(buyer_tab, "button[name=action][value=confirm]")
            assert await buyer_tab.inner_text("#order-state") == "已确认"
            await buyer_tab.select_option("#f-rating", "5")
            await buyer_tab.fill("#f-text", "辅导细致,一次通过认定。")
            await _submit(buyer_tab, "form[action$='/review'] button[type=submit]")
            assert "辅导细致" in await buyer_tab.inner_text("main")
            await _shot(buyer_tab, "06-reviewed")

            # The rating shows on the listing.
            await buyer_tab.goto(f"{server}{buyer.pages}/listings/{listing.id}")
            assert "★ 5.0" in await buyer_tab.inner_text("main")
            await _shot(buyer_tab, "07-listing-rated")
        finally:
            await browser.close()
