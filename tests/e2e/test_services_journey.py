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

from canal.platform import clock
from tests.e2e.test_browser_journey import ARTIFACTS, CHROMIUM_FLAGS, chromium, server  # noqa: F401
from tests.factories import PASSWORD, unique
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Heavenly stems and earthly branches: a Chinese keyword no other test's listing contains.
HAN = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"


async def _chinese_only(page) -> None:
    from tests.e2e.test_services_desk import _chinese_only as check

    await check(page)


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
            await _chinese_only(buyer_tab)
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
            await _chinese_only(buyer_tab)
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
            await _chinese_only(seller_tab)
            await _shot(seller_tab, "03-quote-answered")

            # 4. The buyer counters with a price, the provider answers again; the buyer
            #    accepts and pays.
            await buyer_tab.reload()
            assert await buyer_tab.inner_text("#quote-price") == "¥8,800.00"
            await buyer_tab.fill("#f-counter_note", "预算有限,8000 元可以吗?")
            await buyer_tab.fill("#f-counter_price", "8000")
            await _submit(buyer_tab, "form[action$='/counter'] button[type=submit]")
            assert await buyer_tab.inner_text("#quote-status") == "买方还价"
            await seller_tab.reload()
            assert await seller_tab.inner_text("#quote-counter-price") == "¥8,000.00"
            await seller_tab.fill("#f-price", "8,200")
            await seller_tab.fill("#f-scope", "材料梳理、申报书撰写、答辩辅导")
            await _submit(seller_tab, "form[action$='/answer'] button[type=submit]")
            await buyer_tab.reload()
            assert await buyer_tab.inner_text("#quote-price") == "¥8,200.00"
            await _submit(buyer_tab, "form[action$='/accept'] button[type=submit]")
            assert "/orders/" in buyer_tab.url
            order_path = buyer_tab.url.split("/orders/")[1]
            await _chinese_only(buyer_tab)
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
            await _chinese_only(seller_tab)
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
            await _chinese_only(buyer_tab)
            await _shot(buyer_tab, "06-reviewed")

            # The rating shows on the listing.
            await buyer_tab.goto(f"{server}{buyer.pages}/listings/{listing.id}")
            assert "★ 5.0" in await buyer_tab.inner_text("main")
            await _chinese_only(buyer_tab)
            await _shot(buyer_tab, "07-listing-rated")
        finally:
            await browser.close()


async def test_options_and_stacked_vouchers_in_the_browser(app, server, chromium):  # noqa: F811
    """On a phone: the buyer picks a choice and an add-on on the listing, sees the styled price
    block on the order, pays with two vouchers stacked; the provider sees its payout."""
    import datetime as dt

    from playwright.async_api import async_playwright

    from canal.marketplace import market

    staff = await operator()
    provider = await approved_provider(f"选项财税{unique('')}", staff.user_id)
    listing = await live_listing(
        provider,
        staff.user_id,
        title=f"小规模纳税人代理记账(全年){unique('')}",
        price="2400",
        options=[
            {"group": "发票", "name": "增值税普通发票", "price": "0"},
            {"group": "发票", "name": "增值税专用发票", "price": "100"},
            {"name": "加急建账(3 个工作日)", "price": "300"},
        ],
    )
    buyer = await make_side(f"轴承选项{unique('')}")
    later = (clock.today() + dt.timedelta(days=60)).isoformat()
    for amount, percent in (("500", ""), ("1000", "50")):
        await market.issue_voucher(
            staff.user_id,
            holder_slug=buyer.slug,
            kind="innovation",
            amount=amount,
            percent=percent,
            categories=["tax"],
            valid_through=later,
        )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        phone = await (
            await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        ).new_page()
        desk = await (
            await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        ).new_page()
        try:
            await _sign_in(phone, server, buyer.person.login)
            await phone.goto(f"{server}{buyer.pages}/listings/{listing.id}")
            main = await phone.inner_text("main")
            assert "增值税专用发票" in main and "+¥300.00" in main
            await _chinese_only(phone)
            await _shot(phone, "10-listing-options")
            await phone.check("input[name=option_g0][value='1']")
            await phone.check("input[name=option][value='2']")
            await _submit(phone, "form.buy-form button[type=submit]")
            assert "/orders/" in phone.url
            block = await phone.inner_text(".price-block")
            assert "¥2,800.00" in block and "+¥100.00" in block and "+¥300.00" in block
            box = await phone.locator(".price-block").bounding_box()
            assert box is not None and box["width"] <= 390  # fits the phone
            await _chinese_only(phone)
            await _shot(phone, "11-checkout")
            for box_ in await phone.locator("input[name=voucher_id]").all():
                await box_.check()
            await _submit(phone, "form.pay-form button[type=submit]")
            assert "已付款" in await phone.inner_text("main")
            block = await phone.inner_text(".price-block")
            # 50 % of ¥2,800 = ¥1,400, capped at ¥1,000; plus ¥500: the buyer pays ¥1,300.
            assert "−¥1,500.00" in block and "¥1,300.00" in block
            await _chinese_only(phone)
            await _shot(phone, "12-order-paid")
            order_path = phone.url.split("/orders/")[1].split("?")[0]

            await _sign_in(desk, server, provider.person.login)
            await desk.goto(f"{server}{provider.pages}/orders/{order_path}")
            block = await desk.inner_text(".price-block")
            assert "¥2,660.00" in block  # payout: ¥2,800 less 5 % commission
            await _chinese_only(desk)
            await _shot(desk, "13-order-provider")
        finally:
            await browser.close()
