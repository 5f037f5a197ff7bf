"""A person's first visit, in a real browser: sign up, create an organisation, invite a
colleague, switch a module on, switch the language.

Headless Chromium from Debian's ``chromium`` package, driven by Playwright through
``executable_path`` (no browser download), against ``canal serve`` running as its own process
on the test database. Screenshots of every step land in ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factories import credit_code, unique

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(runtime, settings):
    """The portal as its own process, on the migrated test database and the test run's Redis
    database. This process publishes invalidation notices too (the in-process app does when it
    is running; otherwise a publisher is attached here): a change a test makes through the
    services (a role, a module, an organisation) reaches the portal's caches at once, as it
    would from another web process."""
    from redis.asyncio import Redis

    from canal.platform import invalidation

    publisher = None
    if not invalidation.attached():
        publisher = Redis.from_url(runtime.redis_url)

        async def publish(message: str) -> None:
            await publisher.publish(invalidation.CHANNEL, message)

        invalidation.attach(publish)
    port = _free_port()
    env = dict(
        os.environ,
        CANAL_DATABASE_NAME=settings.database_name,
        CANAL_REDIS_URL=runtime.redis_url,
        CANAL_ACCESS_LOG="false",
        CANAL_S3_BUCKET_PREFIX=settings.s3_bucket_prefix,
        CANAL_MEILI_INDEX_PREFIX=settings.meili_index_prefix,
        CANAL_LOG_JSON="false",
    )
    log = (ROOT / "var" / "e2e-server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canal.platform.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, (ROOT / "var" / "e2e-server.log").read_text()[-3000:]
        time.sleep(0.1)
    # localhost is a secure context for Chromium, so the __Host- Secure cookies work.
    yield f"http://localhost:{port}"
    proc.terminate()
    proc.wait(timeout=15)
    if publisher is not None:
        invalidation.attach(None)


@pytest.fixture
def chromium() -> str:
    assert Path(CHROMIUM).exists(), "Chromium is missing: ./run test installs Debian's chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture
async def page(server, chromium):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        tab = await context.new_page()
        yield tab
        await browser.close()


async def _shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_sign_up_create_org_invite_enable_module_switch_language(page, server):
    login = f"{unique('web')}@example.cn"
    slug = unique("web-")

    # 1. Sign up (Chinese is the default language).
    await page.goto(f"{server}/signup")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await page.fill("#f-login", login)
    await page.fill("#f-display_name", "浏览器测试员")
    await page.fill("#f-password", "browser-journey-2026")
    await _shot(page, "01-signup")
    await page.click("form[action='/signup'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/signup" not in page.url, await page.inner_text("main")
    assert "浏览器测试员" in await page.content()

    # 2. Create an organisation; a wrong credit code is refused first, with the reason.
    await page.goto(f"{server}/orgs/new")
    await page.fill("#f-name", "聊城浏览器测试科技有限公司")
    await page.select_option("#f-kind", "enterprise")
    await page.fill("#f-slug", slug)
    await page.fill("#f-credit_code", "91371502MA3C8K2Q0A")
    await page.click("form[action='/orgs'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "校验位" in await page.inner_text("main")
    await _shot(page, "02-org-invalid-code")
    await page.fill("#f-credit_code", credit_code())
    await page.click("form[action='/orgs'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert page.url.rstrip("/").endswith(f"/t/{slug}"), page.url
    assert "聊城浏览器测试科技有限公司" in await page.inner_text("main")
    await _shot(page, "03-org-home")

    # 3. Invite a colleague by e-mail.
    colleague = f"{unique('colleague')}@example.cn"
    await page.goto(f"{server}/t/{slug}/invitations")
    await page.fill("#f-recipient", colleague)
    await page.click(f"form[action='/t/{slug}/invitations'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    await page.goto(f"{server}/t/{slug}/invitations")
    listed = await page.inner_text("main")
    assert "c***@example.cn" in listed and colleague not in listed  # pending, shown masked
    await _shot(page, "04-invited")

    # 4. Switch the policy module on; its page opens only then.
    response = await page.goto(f"{server}/t/{slug}/m/policy")
    assert response is not None and response.status == 403
    await page.goto(f"{server}/t/{slug}/modules")
    await page.click(f"form[action='/t/{slug}/modules/policy'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    response = await page.goto(f"{server}/t/{slug}/m/policy")
    assert response is not None and response.status == 200
    assert "惠企政策" in await page.inner_text("main")
    await _shot(page, "05-module-on")

    # 5. Switch to English from the header; the choice sticks on the next page.
    await page.click("a[hreflang='en']")
    await page.wait_for_load_state("networkidle")
    assert await page.get_attribute("html", "lang") == "en"
    await page.goto(f"{server}/t/{slug}/modules")
    assert await page.get_attribute("html", "lang") == "en"
    assert "Policy matching" in await page.inner_text("main")
    await _shot(page, "06-english")


async def test_care_mode_and_keyboard_skip_link(page, server):
    await page.goto(f"{server}/")
    await page.keyboard.press("Tab")
    focused = await page.evaluate("document.activeElement.getAttribute('href')")
    assert focused == "#main"  # the first Tab stop skips to the content
    await page.click("form[action='/preferences/care-mode'] button")
    await page.wait_for_load_state("networkidle")
    assert "care-mode" in (await page.get_attribute("html", "class") or "")
    size = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert size >= 20
    await _shot(page, "07-care-mode")
