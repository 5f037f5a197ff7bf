"""Sign-up in the browser and over the API: validation in both languages, duplicates, CSRF."""

from __future__ import annotations

from canal.platform.identity.secrets import token_hash
from canal.platform.identity.tables import User, UserSession
from tests.factories import PASSWORD, make_user, unique
from tests.identity.helpers import SESSION_COOKIE, api_csrf, audit_actions, page_csrf


async def _count(email: str) -> int:
    return await User.count().where(User.email == email)


async def test_signup_form_creates_account_and_signs_in(client):
    email = f"{unique('s')}@example.cn"
    csrf = await page_csrf(client, "/signup")
    answer = await client.post(
        "/signup",
        data={
            "_csrf": csrf,
            "login": email.upper(),
            "password": PASSWORD,
            "display_name": " 李华 ",
            "next": "/account",
        },
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/account"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
        assert attribute.lower() in cookie.lower(), cookie
    row = await User.select().where(User.email == email).first()
    assert row is not None and row["display_name"] == "李华"
    assert row["password_hash"].startswith("$argon2id$")
    # Signed in: the account page answers for this person.
    account = await client.get("/account")
    assert account.status_code == 200
    assert "李华" in account.text
    token = client.cookies.get(SESSION_COOKIE)
    session = await UserSession.select().where(UserSession.token_hash == token_hash(token)).first()
    assert session["user"] == row["id"] and session["revoked_at"] is None
    assert "auth.signup" in await audit_actions(row["id"])


async def test_signup_with_phone_number(client):
    digits = "139" + unique("")[:8].translate(str.maketrans("abcdef", "123456"))
    csrf = await page_csrf(client, "/signup")
    answer = await client.post(
        "/signup",
        data={
            "_csrf": csrf,
            "login": f"+86 {digits}",
            "password": PASSWORD,
            "display_name": "王芳",
        },
    )
    assert answer.status_code == 303, answer.text
    assert await User.count().where(User.phone == f"+86{digits}") == 1


async def test_signup_unsafe_next_goes_home(client):
    csrf = await page_csrf(client, "/signup")
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        answer = await client.post(
            "/signup",
            data={
                "_csrf": csrf,
                "login": f"{unique('n')}@example.cn",
                "password": PASSWORD,
                "display_name": "赵敏",
                "next": bad,
            },
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/", bad
        csrf = await page_csrf(client, "/signup")


async def test_signup_api(client):
    email = f"{unique('a')}@example.cn"
    csrf = await api_csrf(client)
    answer = await client.post(
        "/api/v1/auth/signup",
        headers={"X-CSRF-Token": csrf},
        json={"login": email, "password": PASSWORD, "display_name": "Li"},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["user"]["email"] == email and body["mfa"] == "none"
    assert client.cookies.get(SESSION_COOKIE)
    me = await client.get("/api/v1/account")
    assert me.status_code == 200 and me.json()["id"] == body["user"]["id"]


async def test_duplicate_signup_refused(client):
    person = await make_user()
    csrf = await page_csrf(client, "/signup")
    answer = await client.post(
        "/signup",
        data={"_csrf": csrf, "login": person.login, "password": PASSWORD, "display_name": "重复"},
    )
    assert answer.status_code == 422
    assert "该手机号或邮箱已注册" in answer.text
    assert await _count(person.login) == 1
    csrf = await api_csrf(client)
    api = await client.post(
        "/api/v1/auth/signup",
        headers={"X-CSRF-Token": csrf, "Accept-Language": "en"},
        json={"login": person.login, "password": PASSWORD, "display_name": "Dup"},
    )
    assert api.status_code == 422
    assert api.json()["errors"][0]["code"] == "login_taken"
    assert "already registered" in api.json()["errors"][0]["message"]


BAD_INPUT = [
    ({"login": "12345"}, "login", "login_invalid", "请输入有效的手机号", "valid mobile number"),
    (
        {"login": "12012345678"},
        "login",
        "login_invalid",
        "请输入有效的手机号",
        "valid mobile number",
    ),
    ({"login": "someone@"}, "login", "login_invalid", "电子邮箱", "e-mail address"),
    ({"login": "x" * 5000 + "@example.cn"}, "login", "login_invalid", "电子邮箱", "e-mail"),
    (
        {"password": "short"},
        "password",
        "password_too_short",
        "密码至少需要 10 个字符",
        "at least 10 characters",
    ),
    ({"password": "p" * 300}, "password", "password_too_long", "不能超过 256", "256"),
    ({"display_name": "  "}, "display_name", "display_name_length", "姓名或昵称", "The name"),
    ({"display_name": "名" * 65}, "display_name", "display_name_length", "姓名或昵称", "The name"),
]


async def test_bad_input_form_both_languages_and_nothing_created(client):
    for change, field, code, zh, en in BAD_INPUT:
        email = f"{unique('b')}@example.cn"
        fields = {"login": email, "password": PASSWORD, "display_name": "张三", **change}
        csrf = await page_csrf(client, "/signup")
        zh_page = await client.post("/signup", data={"_csrf": csrf, **fields})
        assert zh_page.status_code == 422, (field, zh_page.status_code)
        assert zh in zh_page.text, (field, code)
        assert f'id="f-{field}-error"' in zh_page.text  # the message sits next to its field
        assert 'aria-invalid="true"' in zh_page.text
        csrf = await page_csrf(client, "/signup")
        en_page = await client.post(
            "/signup", data={"_csrf": csrf, **fields}, headers={"Accept-Language": "en"}
        )
        assert en_page.status_code == 422
        assert en in en_page.text, (field, code)
        assert await _count(email) == 0


async def test_bad_input_api_both_languages(client):
    for change, field, code, zh, en in BAD_INPUT:
        email = f"{unique('c')}@example.cn"
        body = {"login": email, "password": PASSWORD, "display_name": "张三", **change}
        csrf = await api_csrf(client)
        zh_answer = await client.post(
            "/api/v1/auth/signup", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert zh_answer.status_code == 422
        assert zh_answer.headers["content-type"].startswith("application/problem+json")
        errors = {e["field"]: e for e in zh_answer.json()["errors"]}
        assert errors[field]["code"] == code and zh in errors[field]["message"]
        en_answer = await client.post(
            "/api/v1/auth/signup",
            json=body,
            headers={"X-CSRF-Token": csrf, "Accept-Language": "en"},
        )
        en_errors = {e["field"]: e for e in en_answer.json()["errors"]}
        assert en in en_errors[field]["message"]
        assert await _count(email) == 0


async def test_garbage_api_bodies_are_400_not_500(client):
    csrf = await api_csrf(client)
    for body in ([1, 2], {"login": 5, "password": None, "display_name": []}, "x", {}):
        answer = await client.post("/api/v1/auth/signup", json=body, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["code"] == "invalid_input"
    raw = await client.post(
        "/api/v1/auth/signup",
        content=b"\xff\xfe{",
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert raw.status_code == 400


async def test_wrong_csrf_refused_and_nothing_created(client):
    email = f"{unique('x')}@example.cn"
    await page_csrf(client, "/signup")  # the browser has its CSRF cookie
    answer = await client.post(
        "/signup",
        data={"_csrf": "forged", "login": email, "password": PASSWORD, "display_name": "某人"},
    )
    assert answer.status_code == 403
    assert "csrf_failed" in answer.text
    api = await client.post(
        "/api/v1/auth/signup",
        headers={"X-CSRF-Token": "forged"},
        json={"login": email, "password": PASSWORD, "display_name": "x"},
    )
    assert api.status_code == 403 and api.json()["code"] == "csrf_failed"
    assert await _count(email) == 0
