"""The supermarket's other side in a real browser (issue #6): an enterprise applies to become a
provider with a qualification upload (on a phone), the operator rejects with a reason, the
enterprise applies again and is approved; the provider lists a service with a picture, the
operator approves it; a buyer finds it by category, compares it, sees its vouchers; the
provider's team page, payouts and the operator's desk with the charts — every page in Chinese
(no English words left in the page under zh-CN) and fitting a 390 px phone.

Screenshots: ``test-artifacts/e2e/services-2*.png``.
"""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest

from canal.platform import clock
from tests.e2e.test_browser_journey import ARTIFACTS, CHROMIUM_FLAGS, chromium, server  # noqa: F401
from tests.e2e.test_services_journey import _sign_in, _submit
from tests.factories import unique
from tests.marketplace.helpers import PDF, approved_provider, live_listing, make_side, operator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Words that may stay in Latin letters on a Chinese page: names, brands, units, codes.
LATIN_OK = {
    "pdf",
    "png",
    "Stripe",
    "Connect",
    "PDF",
    "PNG",
    "JPEG",
    "Canal",
    "WeChat",
    "Pay",
    "Alipay",
    "CNY",
}


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 200), (30, 110, 190)).save(out, "PNG")
    return out.getvalue()


# Lazy pictures load once scrolled to; 0 for a picture that failed (e.g. blocked by the CSP).
IMAGE_WIDTHS = """Promise.all([...document.querySelectorAll('main img')].map(i => {
    i.scrollIntoView();
    return i.decode().then(() => i.naturalWidth, () => 0);
}))"""


async def _shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"services-{name}.png"), full_page=True)


async def _chinese_only(page) -> None:
    """No English left in the page's main content, and nothing wider than the viewport."""
    text = await page.inner_text("main")
    # Ids and slugs (hex, digits, hyphens) are data; a word is letters only.
    tokens = re.findall(r"[A-Za-z0-9_./:-]+", text)
    words = {t for t in tokens if t.isalpha() and len(t) >= 3} - LATIN_OK
    # Identifiers the page shows as data (voucher codes, slugs) are upper-case or contain digits.
    words = {w for w in words if not w.isupper()}
    assert not words, f"English left on {page.url}: {sorted(words)}"
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    assert width <= viewport + 1, f"{page.url} is {width}px wide on a {viewport}px screen"


async def _as_operator(context, server: str, person) -> None:  # noqa: F811
    """The operator's staff sign in with two factors; the session is made as after the code."""
    from canal.platform.identity.services import start_session
    from canal.platform.settings import get_settings

    session = await start_session(get_settings(), person.user_id, mfa_passed=True)
    await context.add_cookies(
        [
            {
                "name": "__Host-canal_session",
                "value": session.token,
                "domain": "localhost",
                "path": "/",
                "secure": True,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


async def test_apply_review_list_approve_browse_compare_in_chinese(app, server, chromium):  # noqa: F811
    from playwright.async_api import async_playwright

    from canal.marketplace import market

    staff = await operator()
    applicant = await make_side(f"临清明德财税{unique('')}")
    rival = await approved_provider(f"东昌代账{unique('')}", staff.user_id)
    # One word shared by the two listings of this run, so the category page shows both
    # whatever other runs left in the catalogue.
    tag = unique("")
    other = await live_listing(
        rival, staff.user_id, title=f"法律顾问年度服务 {tag}", category="legal", subcategory=""
    )
    buyer = await make_side(f"轴承买方{unique('')}")
    await market.issue_voucher(
        staff.user_id,
        holder_slug=buyer.slug,
        kind="service",
        amount="800",
        categories=["legal"],
        valid_through=clock.today() + dt.timedelta(days=90),
    )
    title = f"知识产权合规体检 {tag}"
    # A paid order with a voucher, so the operator's charts have something to draw.
    [voucher] = await market.my_vouchers(buyer.ctx)
    bought = await market.buy_listing(other.id, buyer.ctx)
    await market.pay_order(bought.id, buyer.ctx, voucher_ids=[voucher.id])

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        phone = await (
            await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        ).new_page()
        desk_context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="zh-CN"
        )
        await _as_operator(desk_context, server, staff)
        desk = await desk_context.new_page()
        shopper = await (
            await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        ).new_page()
        try:
            # 1. The enterprise applies on a phone: nothing entered is refused at the fields.
            await _sign_in(phone, server, applicant.person.login)
            await phone.goto(f"{server}{applicant.pages}/provider")
            await _chinese_only(phone)
            await _submit(phone, "form[action$='/provider'] button[type=submit]")
            assert "f-business_scope-error" in await phone.content()
            await phone.fill("#f-business_scope", "知识产权代理、法律咨询、合规体检")
            await phone.set_input_files(
                "#f-qualifications",
                {"name": "营业执照.pdf", "mimeType": "application/pdf", "buffer": PDF},
            )
            await _submit(phone, "form[action$='/provider'] button[type=submit]")
            assert "等待运营方审核" in await phone.inner_text("main")
            await _chinese_only(phone)
            await _shot(phone, "20-provider-applied")

            # 2. The operator rejects with a reason …
            provider = await market.my_provider(applicant.ctx)
            assert provider is not None
            await desk.goto(f"{server}/operator/m/services/")
            assert applicant.tenant.name in await desk.inner_text("main")
            await _chinese_only(desk)
            form = f"form[action$='/providers/{provider.id}/decide']"
            await desk.fill(f"{form} input[name=reason]", "营业执照照片不清晰,请重新上传")
            await _submit(desk, f"{form} button[value=reject]")
            await phone.reload()
            assert "营业执照照片不清晰" in await phone.inner_text("main")
            # … the enterprise applies again, and the operator approves.
            await phone.fill("#f-business_scope", "知识产权代理、法律咨询、合规体检")
            await phone.set_input_files(
                "#f-qualifications",
                {"name": "营业执照-清晰.pdf", "mimeType": "application/pdf", "buffer": PDF},
            )
            await _submit(phone, "form[action$='/provider'] button[type=submit]")
            await desk.goto(f"{server}/operator/m/services/")
            await _submit(desk, f"{form} button[value=approve]")
            await phone.reload()
            assert "已认证服务商" in await phone.inner_text("main")

            # 3. The provider lists a service with a picture, on the phone.
            await phone.goto(f"{server}{applicant.pages}/listings/new")
            await _chinese_only(phone)
            await phone.select_option("#f-category", "legal")
            await phone.fill("#f-title", title)
            await phone.fill("#f-description", "梳理专利、商标与软件著作权,出具合规体检报告。")
            await phone.select_option("#f-area", index=1)
            await phone.fill("#f-delivery_days", "15")
            await phone.select_option("#f-price_model", "fixed")
            await phone.fill("#f-price", "3000.005")
            await phone.set_input_files(
                "#f-images", {"name": "封面.png", "mimeType": "image/png", "buffer": _png()}
            )
            await _submit(phone, "form[action$='/listings/new'] button[type=submit]")
            assert "价格最多保留两位小数" in await phone.inner_text("main")
            await phone.fill("#f-price", "3000")
            await phone.set_input_files(
                "#f-images", {"name": "封面.png", "mimeType": "image/png", "buffer": _png()}
            )
            await _submit(phone, "form[action$='/listings/new'] button[type=submit]")
            assert "/listings/" in phone.url
            # The picture shows (the CSP allows images from the portal only).
            loaded = await phone.evaluate(IMAGE_WIDTHS)
            assert loaded and all(w > 0 for w in loaded), loaded
            await _chinese_only(phone)
            await _shot(phone, "21-listing-pending")
            listing_id = phone.url.split("/listings/")[1].split("?")[0].split("/")[0]

            # 4. The operator sees it (with its picture's listing) and approves.
            await desk.goto(f"{server}/operator/m/services/")
            assert title in await desk.inner_text("main")
            await _submit(
                desk, f"form[action$='/listings/{listing_id}/review'] button[value=approve]"
            )
            await _chinese_only(desk)
            for chart in ("orders", "turnover", "vouchers"):
                await desk.wait_for_selector(f"#chart-{chart} svg", timeout=10_000)
            await _shot(desk, "22-operator-desk")

            # 5. A buyer finds it by category, compares it with another, sees its vouchers.
            await _sign_in(shopper, server, buyer.person.login)
            await shopper.goto(f"{server}{buyer.pages}?category=legal&q={tag}")
            main = await shopper.inner_text("main")
            assert title in main and other.title in main
            await _chinese_only(shopper)
            await shopper.check(f"input[name=ids][value='{listing_id}']")
            await shopper.check(f"input[name=ids][value='{other.id}']")
            await _submit(shopper, "#compare-form button[type=submit]")
            main = await shopper.inner_text("main")
            assert title in main and other.title in main and "¥3,000.00" in main
            await _chinese_only(shopper)
            await _shot(shopper, "23-compare")
            await shopper.goto(f"{server}{buyer.pages}/listings/{listing_id}")
            widths = await shopper.evaluate(IMAGE_WIDTHS)
            assert widths == [320], widths
            await _chinese_only(shopper)
            await shopper.goto(f"{server}{buyer.pages}/vouchers")
            assert "法律" in await shopper.inner_text("main")
            await _chinese_only(shopper)
            await _shot(shopper, "24-vouchers")

            # 6. The provider's own pages on the phone: centre, payouts, orders, quotes.
            for path in ("/provider", "/payouts", "/orders", "/quotes"):
                await phone.goto(f"{server}{applicant.pages}{path}")
                assert phone.url.endswith(path), phone.url
                await _chinese_only(phone)
                if path == "/payouts":
                    await _shot(phone, "25-payouts")
        finally:
            await browser.close()


async def test_dispute_with_an_attachment_resolved_by_the_operator(app, server, chromium):  # noqa: F811
    """On a phone the buyer writes in the thread with a file and disputes a delivered order;
    the operator rules a partial refund on the desk (a bad amount first: refused, nothing
    changed); both sides see the ruling."""
    from playwright.async_api import async_playwright

    from canal.marketplace import market
    from tests.marketplace.helpers import confirm_payment

    staff = await operator()
    provider = await approved_provider(f"争议财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="2000")
    buyer = await make_side(f"争议买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    await market.pay_order(order.id, buyer.ctx)
    await confirm_payment(order.id, buyer)
    for action in ("accept", "start", "deliver"):
        await market.transition_order(order.id, provider.ctx, action)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        phone = await (
            await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        ).new_page()
        desk_context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="zh-CN"
        )
        await _as_operator(desk_context, server, staff)
        desk = await desk_context.new_page()
        try:
            await _sign_in(phone, server, buyer.person.login)
            await phone.goto(f"{server}{buyer.pages}/orders/{order.id}")
            await phone.fill("#f-body", "交付的账簿缺少 10 月份凭证,见附件。")
            await phone.set_input_files(
                "#f-file",
                {"name": "缺失凭证清单.pdf", "mimeType": "application/pdf", "buffer": PDF},
            )
            await _submit(phone, "form[action$='/messages'] button[type=submit]")
            assert "缺失凭证清单.pdf" in await phone.inner_text("main")
            await phone.fill("#f-note", "交付不完整")
            await _submit(phone, "button[name=action][value=dispute]")
            assert await phone.inner_text("#order-state") == "争议处理中"
            await _chinese_only(phone)
            await _shot(phone, "26-disputed")

            await desk.goto(f"{server}/operator/m/services/")
            form = f"form[action$='/orders/{order.id}/resolve']"
            await desk.fill(f"{form} input[name=refund]", "2000.01")
            await _submit(desk, f"{form} button[value=partial]")
            assert "f-refund-error" in await desk.content()
            assert (await market.get_order(order.id, buyer.ctx)).state == "disputed"
            await desk.fill(f"{form} input[name=refund]", "500")
            await desk.fill(f"{form} input[name=note]", "缺少一个月凭证,退还四分之一")
            await _submit(desk, f"{form} button[value=partial]")
            await _chinese_only(desk)
            assert (await market.get_order(order.id, buyer.ctx)).refunded_fen == 50_000

            await phone.reload()
            assert await phone.inner_text("#order-state") == "已裁决:部分退款"
            assert "缺少一个月凭证" in await phone.inner_text("main")
            await _chinese_only(phone)
            await _shot(phone, "27-resolved")
        finally:
            await browser.close()
