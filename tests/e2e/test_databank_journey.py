"""The data bank in a real browser: an organisation's admin creates a folder, uploads a file
twice (two versions), restores the first version, shares it by link (an anonymous visitor
downloads it; after revoking, the link is dead), deletes it to the recycle bin (the page asks
first) and restores it, downloads the folder as a ZIP; a member uploads but is offered no share
form; then a verified resident does the basics in /me/bank, cancels a large upload half-way
(its held space is freed at once) and an unverified one is told where to verify.

Same set-up as test_browser_journey (Debian chromium through Playwright against ``canal
serve`` on the test database); screenshots in ``test-artifacts/e2e/bank-*.png``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e import test_browser_journey as journey
from tests.exchange.bank.helpers import make_org, make_resident

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = journey.ARTIFACTS
# The portal process and Chromium, as the first browser journey starts them.
server = journey.server
chromium = journey.chromium


async def _shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"bank-{name}.png"), full_page=True)


async def _sign_in(page, server: str, login: str, password: str) -> None:
    await page.goto(f"{server}/login")
    await page.fill("#f-login", login)
    await page.fill("#f-password", password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/login" not in page.url, await page.inner_text("main")


async def _fits_phone(page) -> None:
    """Nothing pushes a 390 px page sideways."""
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"{page.url} is {width} px wide"


async def _upload(page, name: str, data: bytes) -> None:
    await page.set_input_files(
        "#f-file", files=[{"name": name, "mimeType": "text/csv", "buffer": data}]
    )
    await page.click("form[action$='/upload'] button[type=submit]")
    await page.wait_for_load_state("networkidle")


async def _download(page, selector: str) -> bytes:
    async with page.expect_download() as info:
        await page.click(selector)
    download = await info.value
    return await asyncio.to_thread(Path(await download.path()).read_bytes)


@pytest.fixture
async def browser(server, chromium):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, args=journey.CHROMIUM_FLAGS)
        yield launched
        await launched.close()


async def test_admin_and_resident_use_the_data_bank(app, server, browser):
    org = await make_org()
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, locale="zh-CN", accept_downloads=True
    )
    page = await context.new_page()
    await _sign_in(page, server, org.owner.login, org.owner.password)

    # The tenant menu leads to the bank.
    await page.goto(f"{server}/t/{org.slug}")
    # (On a phone the tenant menu is folded away; the entry is there all the same.)
    assert await page.locator(f"a[href='/t/{org.slug}/bank']").count() == 1
    await page.goto(f"{server}/t/{org.slug}/bank")
    assert "数据银行" in await page.inner_text("h1")

    # A folder name with a path trick is refused beside the field; then a good one.
    await page.fill("#f-name", "../机密")
    await page.click("form[action$='/folders'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "不能包含" in await page.inner_text("#f-name-error")
    await _shot(page, "01-bad-folder-name")
    await page.fill("#f-name", "年度报表")
    await page.click("form[action$='/folders'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/bank/folders/" in page.url
    folder_url = page.url

    # Upload twice under one name: one file, two versions.
    await _upload(page, "销售.csv", "月份,金额\n1,100\n".encode())
    assert "/bank/files/" in page.url, await page.inner_text("main")
    file_url = page.url
    await page.goto(folder_url)
    await _upload(page, "销售.csv", "月份,金额\n1,100\n2,250\n".encode())
    assert page.url == file_url
    assert "2 个版本" in await page.inner_text("main")
    await _shot(page, "02-two-versions")
    await _fits_phone(page)

    # Restore version 1: it becomes current (as v3) and downloads as the first upload.
    await page.click("text=恢复 v1")
    await page.wait_for_load_state("networkidle")
    assert "3 个版本" in await page.inner_text("main")
    assert await _download(page, "a[role=button]:has-text('下载')") == "月份,金额\n1,100\n".encode()
    await _shot(page, "03-restored-v1")

    # Share by link; an anonymous visitor downloads it.
    await page.fill("#f-days", "2")
    await page.click("form[action$='/shares'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    link = await page.input_value("#share-link")
    assert "/bank/s/" in link
    await _shot(page, "04-share-link")
    anon_context = await browser.new_context(accept_downloads=True, locale="zh-CN")
    anon = await anon_context.new_page()
    link = link.replace(link.split("/bank/s/")[0], server)
    await anon.goto(link)
    assert "销售.csv" in await anon.inner_text("main")
    await _shot(anon, "05-anonymous-share-page")
    assert (await _download(anon, "a[role=button]")).startswith("月份".encode())

    # Revoke: the link stops working.
    await page.goto(file_url)
    assert "1" in await page.inner_text("td[data-label='下载次数']")
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))  # "revoke this link?"
    await page.click("text=撤销链接")
    await page.wait_for_load_state("networkidle")
    assert "已撤销" in await page.inner_text("main")
    response = await anon.goto(link)
    assert response is not None and response.status == 404
    await _shot(anon, "06-revoked-link")
    await anon_context.close()

    # Delete to the recycle bin (the page asks first: "no" keeps it), then restore it.
    await page.goto(file_url)
    questions: list[str] = []

    async def answer(dialog, accept: bool) -> None:
        questions.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", lambda d: asyncio.ensure_future(answer(d, False)))
    await page.click("form[action$='/delete'] button[type=submit]")
    await page.wait_for_timeout(300)
    assert page.url == file_url and "销售.csv" in questions[0]
    page.once("dialog", lambda d: asyncio.ensure_future(answer(d, True)))
    await page.click("form[action$='/delete'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert page.url != file_url
    assert "销售.csv" not in await page.inner_text("main")
    await page.goto(f"{server}/t/{org.slug}/bank/trash")
    assert "销售.csv" in await page.inner_text("main")
    await _shot(page, "07-recycle-bin")
    await _fits_phone(page)
    await page.click("form[action*='/trash/'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(folder_url)
    assert "销售.csv" in await page.inner_text("main")
    await _shot(page, "08-restored-from-bin")
    await _fits_phone(page)

    # The folder as one ZIP.
    import io
    import zipfile

    zipped = await _download(page, "a[href$='/zip']")
    assert zipfile.ZipFile(io.BytesIO(zipped)).read("年度报表/销售.csv") == (
        "月份,金额\n1,100\n".encode()
    )
    await context.close()

    # A member: uploads through the page, is offered no share form.
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.tenants.tables import Membership
    from tests.factories import make_user

    member = await make_user("普通成员")
    async with db.tenant_scope(org.ctx.tenant_id):
        await Membership.insert(Membership(tenant_id=org.ctx.tenant_id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", org.ctx.tenant_id)
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True
    )
    page = await context.new_page()
    await _sign_in(page, server, member.login, member.password)
    await page.goto(folder_url.replace(folder_url.split("/t/")[0], server))
    await _shot(page, "11-member-folder-desktop")
    await _upload(page, "会议纪要.txt", "周一例会".encode())
    assert "/bank/files/" in page.url and "会议纪要.txt" in await page.inner_text("h1")
    assert await page.locator("form[action$='/shares']").count() == 0
    await context.close()

    # A verified resident: their own bank from the account menu.
    resident = await make_resident()
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, locale="zh-CN", accept_downloads=True
    )
    page = await context.new_page()
    await _sign_in(page, server, resident.login, resident.password)
    await page.goto(f"{server}/me/bank")
    assert "您自己的文件" in await page.inner_text("main")
    await page.fill("#f-name", "病历")
    await page.click("form[action$='/folders'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await _upload(page, "体检.txt", "血压正常".encode())
    assert "/me/bank/files/" in page.url
    assert await _download(page, "a[role=button]:has-text('下载')") == "血压正常".encode()
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click("form[action$='/delete'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(f"{server}/me/bank/trash")
    await page.click("form[action*='/trash/'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(f"{server}/me/bank")
    await page.click("text=病历")
    await page.wait_for_load_state("networkidle")
    assert "体检.txt" in await page.inner_text("main")
    await _shot(page, "09-resident-bank")

    # A large file goes up in parts through the resumable API (the page's script).
    big = ("编号,读数\n" + "".join(f"{i},{i % 97}\n" for i in range(1_000_000))).encode()
    assert len(big) > 8 * 1024 * 1024
    await page.goto(f"{server}/me/bank")
    parts: list[str] = []
    page.on("request", lambda r: parts.append(r.url) if "/parts/" in r.url else None)
    await page.set_input_files(
        "#f-file", files=[{"name": "电表读数.csv", "mimeType": "text/csv", "buffer": big}]
    )
    await page.click("form[action$='/upload'] button[type=submit]")
    await page.wait_for_url("**/me/bank/files/**", timeout=60_000)
    assert "电表读数.csv" in await page.inner_text("h1")
    assert [u.rsplit("/", 1)[-1] for u in parts] == ["0", "1"]  # two parts, not one post
    assert await _download(page, "a[role=button]:has-text('下载')") == big
    await _shot(page, "10-resident-large-file")

    # Half-way through another large upload, "取消上传": the parts go, the space is free.
    await page.goto(f"{server}/me/bank")
    held = asyncio.Event()

    async def slow_second_part(route) -> None:
        if route.request.url.endswith("/parts/1"):
            held.set()
            await asyncio.sleep(10)  # never arrives: the cancel aborts it
        await route.continue_()

    await page.route("**/parts/*", slow_second_part)
    await page.set_input_files(
        "#f-file", files=[{"name": "水表读数.csv", "mimeType": "text/csv", "buffer": big}]
    )
    await page.click("form[action$='/upload'] button[type=submit]")
    await asyncio.wait_for(held.wait(), 30)
    assert await page.is_visible("[data-bank-cancel]")
    await _shot(page, "12-resident-uploading")
    await page.click("[data-bank-cancel]")
    await page.locator("[data-bank-status]", has_text="已取消上传").wait_for()
    await page.unroute("**/parts/*")
    # The DELETE has gone out before the message shows; ask the API with the same session.
    usage = await (await page.context.request.get(f"{server}/api/v1/me/bank")).json()
    assert usage["usage"]["reserved_bytes"] == 0
    uploads = await page.context.request.get(f"{server}/api/v1/me/bank/uploads")
    assert await uploads.json() == []
    await page.reload()
    assert "未完成的上传" not in await page.inner_text("main")
    await _shot(page, "13-resident-upload-cancelled")
    await context.close()

    # Someone not yet verified is told what to do, on any bank page.
    unverified = await make_resident(verified=False)
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = await context.new_page()
    await _sign_in(page, server, unverified.login, unverified.password)
    await page.goto(f"{server}/me/bank/trash")
    assert "实名认证" in await page.inner_text("main")
    assert await page.locator("a[href='/account/real-name']").count() == 1
    await _shot(page, "14-unverified")
    await context.close()


async def test_backup_move_and_cold_archive_in_the_browser(app, server, browser):
    """An admin schedules a folder's backup and backs it up by hand (a kept copy is listed),
    moves a file into another folder, archives it (asked first) and asks for it back: the
    page shows the retrieval as pending."""
    org = await make_org()
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = await context.new_page()
    await _sign_in(page, server, org.owner.login, org.owner.password)
    for name in ("合同", "归档"):
        await page.goto(f"{server}/t/{org.slug}/bank")
        await page.fill("#f-name", name)
        await page.click("form[action$='/folders'] button[type=submit]")
        await page.wait_for_load_state("networkidle")
    archive_folder = page.url.split(server, 1)[1]
    await page.goto(f"{server}/t/{org.slug}/bank")
    await page.click("a:text-is('合同')")
    await page.wait_for_load_state("networkidle")
    contracts = page.url
    await _upload(page, "租赁合同.csv", "甲方,乙方\n园区,企业\n".encode())
    file_url = page.url

    # Backup: daily, keep 3, then one copy by hand.
    await page.goto(contracts)
    await page.select_option("#f-schedule", "daily")
    await page.fill("#f-keep", "3")
    await page.click("form[action$='/backup'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "保留最新的 3 份" in await page.inner_text("main")
    await page.click("form[action$='/backup/run'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("form[action*='/backups/'][action$='/restore']").count() == 1
    await _shot(page, "15-backup-copy")
    await _fits_phone(page)

    # Move the file into the other folder.
    await page.goto(file_url)
    folder_id = archive_folder.rsplit("/", 1)[1]
    await page.select_option("#f-target", folder_id)
    await page.click("form[action$='/move'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(f"{server}{archive_folder}")
    assert "租赁合同.csv" in await page.inner_text("main")

    # Archive (confirmed), then retrieve: pending until the job has run.
    await page.goto(file_url)
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click("form[action$='/archive'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(file_url)
    assert await page.locator("form[action$='/retrieve']").count() == 1
    await page.click("form[action$='/retrieve'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(file_url)
    assert "正在从冷存储取回此文件" in await page.inner_text("main")
    await _shot(page, "16-retrieving")
    await _fits_phone(page)
    await context.close()
