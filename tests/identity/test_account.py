"""The account page: profile and language, password change; bad input never 500s."""

from __future__ import annotations

import re

from canal.platform.identity.services import start_session
from canal.platform.identity.tables import UserSession
from canal.platform.settings import get_settings
from tests.factories import make_user, sign_in
from tests.identity.helpers import audit_actions, form_login, page_csrf, user_row


async def test_profile_and_language(client):
    person = await make_user("旧名字")
    await sign_in(client, person)
    csrf = await page_csrf(client, "/account")
    answer = await client.post(
        "/account/profile", data={"_csrf": csrf, "display_name": "新名字", "locale": "en"}
    )
    assert answer.status_code == 303
    row = await user_row(person.user_id)
    assert row["display_name"] == "新名字" and row["locale"] == "en"
    page = await client.get("/account")
    assert "Account and security" in page.text  # the person's language now applies
    bad = await client.post(
        "/account/profile", data={"_csrf": csrf, "display_name": "", "locale": "fr"}
    )
    assert bad.status_code == 422
    assert "Choose Chinese or English." in bad.text and "The name must be" in bad.text
    assert (await user_row(person.user_id))["locale"] == "en"


async def test_change_password_needs_current_and_ends_other_sessions(client):
    person = await make_user()
    await form_login(client, person.login, person.password)
    elsewhere = await start_session(get_settings(), person.user_id)
    csrf = await page_csrf(client, "/account")
    wrong = await client.post(
        "/account/password",
        data={"_csrf": csrf, "current_password": "not-it", "new_password": "another-good-one"},
    )
    assert wrong.status_code == 422 and "当前密码不正确" in wrong.text
    ok = await client.post(
        "/account/password",
        data={
            "_csrf": csrf,
            "current_password": person.password,
            "new_password": "another-good-one",
        },
    )
    assert ok.status_code == 303
    ended = await UserSession.select().where(UserSession.id == elsewhere.session_id).first()
    assert ended["revoked_at"] is not None
    assert (await client.get("/account")).status_code == 200  # this session stays
    assert "auth.password_changed" in await audit_actions(person.user_id)
    client.cookies.clear()
    assert (await form_login(client, person.login, "another-good-one")).status_code == 303


async def test_account_pages_need_sign_in(client):
    for url in (
        "/account",
        "/account/security",
        "/account/sessions",
        "/account/tokens",
        "/account/real-name",
        "/account/consents",
    ):
        answer = await client.get(url)
        assert answer.status_code in (302, 303), url
        assert answer.headers["location"].startswith("/login?next=")
        api = await client.get("/api/v1" + url)
        assert api.status_code == 401, url


# Each page's heading in Chinese and in English.
ACCOUNT_PAGES = {
    "/account": ("账户与安全", "Account and security"),
    "/account/security": ("两步验证", "Two-factor authentication"),
    "/account/sessions": ("登录设备管理", "Signed-in devices"),
    "/account/tokens": ("API 访问令牌", "API tokens"),
    "/account/real-name": ("实名认证", "Real-name verification"),
    "/account/consents": ("我的授权", "My consents"),
}
PUBLIC_PAGES = {
    "/signup": ("注册账号", "Create an account"),
    "/login": ("登录", "Sign in"),
    "/password/forgot": ("忘记密码?", "Forgot your password?"),
    "/password/reset/nonsense": ("设置新密码", "Set a new password"),  # 400: a bad link
}


def _assert_in_language(page, url: str, lang: str, heading: str) -> None:
    assert f'<html lang="{lang}"' in page.text, (url, lang)
    assert re.search(rf"<h1[^>]*>\s*{re.escape(heading)}\s*</h1>", page.text), (url, lang)
    site = "数字东昌" if lang == "zh-CN" else "Digital Dongchang"
    assert f"<title>{heading} · {site}</title>" in page.text, (url, lang)


async def test_every_page_renders_in_both_languages(client):
    # ?lang= because the person's own language (zh-CN by default) outranks Accept-Language:
    # asking with the header alone rendered Chinese twice.
    person = await make_user()
    await sign_in(client, person)
    for url, headings in ACCOUNT_PAGES.items():
        for lang, heading in zip(("zh-CN", "en"), headings, strict=True):
            page = await client.get(url, params={"lang": lang})
            assert page.status_code == 200, (url, lang)
            _assert_in_language(page, url, lang, heading)
    client.cookies.clear()
    for url, headings in PUBLIC_PAGES.items():
        for lang, heading in zip(("zh-CN", "en"), headings, strict=True):
            page = await client.get(url, params={"lang": lang})
            assert page.status_code == (400 if "reset" in url else 200), (url, lang)
            _assert_in_language(page, url, lang, heading)
