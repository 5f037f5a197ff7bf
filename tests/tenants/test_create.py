"""Creating an organisation: by form and by API, and every way the input can be wrong."""

from __future__ import annotations

import pytest

from canal.tenants.tables import Tenant
from tests.factories import credit_code, csrf_from, make_user, sign_in, unique
from tests.tenants.helpers import audit_actions


def _with(code: str, index: int, char: str) -> str:
    return code[:index] + char + code[index + 1 :]


async def test_create_by_form_makes_creator_owner(client):
    person = await make_user("李创建")
    await sign_in(client, person)
    del client.headers["X-CSRF-Token"]  # the form's own hidden field must be enough
    form = await client.get("/orgs/new")
    assert form.status_code == 200
    assert 'name="credit_code"' in form.text
    slug, code = unique("org-"), credit_code()
    created = await client.post(
        "/orgs",
        data={
            "_csrf": csrf_from(form.text),
            "name": "聊城表单测试有限公司",
            "slug": slug,
            "kind": "enterprise",
            "credit_code": code.lower(),
        },
    )
    assert created.status_code == 303, created.text
    assert created.headers["location"] == f"/t/{slug}"
    home = await client.get(f"/t/{slug}")
    assert home.status_code == 200
    assert "聊城表单测试有限公司" in home.text and code in home.text  # stored upper-case
    assert "所有者" in home.text  # my roles
    row = await Tenant.select().where(Tenant.slug == slug).first()
    assert row["kind"] == "enterprise" and row["created_by"] == person.user_id
    assert await audit_actions(row["id"]) == ["tenant.created"]
    listing = await client.get("/orgs")
    assert f"/t/{slug}" in listing.text


async def test_create_by_api(client):
    person = await make_user()
    await sign_in(client, person)
    slug = unique("api-")
    response = await client.post(
        "/api/v1/orgs", json={"name": "光明社区居委会", "slug": slug, "kind": "community"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["slug"] == slug and body["kind"] == "community" and body["url"] == f"/t/{slug}"
    detail = (await client.get(f"/api/v1/t/{slug}")).json()
    assert detail["my_roles"] == ["owner"] and detail["credit_code"] is None
    assert detail["links"]["members"] == f"/t/{slug}/members"
    mine = (await client.get("/api/v1/orgs")).json()
    assert slug in [t["slug"] for t in mine]


async def test_full_width_credit_code_is_normalised(client):
    await sign_in(client, await make_user())
    code = credit_code()
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code[:9]) + " " + code[9:]
    slug = unique("fw-")
    response = await client.post(
        "/api/v1/orgs",
        json={"name": "全角测试", "slug": slug, "kind": "park", "credit_code": full_width},
    )
    assert response.status_code == 201, response.text
    assert (await client.get(f"/api/v1/t/{slug}")).json()["credit_code"] == code


CODE = credit_code()


def _code(region: str, org9: str, kind: str = "91") -> str:
    """A code whose own check character is right, so the other checks are what fails."""
    from canal.tenants.validators import credit_code_check_char

    body = kind + region + org9
    return body + credit_code_check_char(body)


def _org(body8: str = "MA3C8K2Q") -> str:
    from canal.tenants.validators import org_code_check_char

    return body8 + org_code_check_char(body8)


def _wrong_org(body8: str = "MA3C8K2Q") -> str:
    right = _org(body8)[-1]
    return body8 + ("1" if right != "1" else "2")


MISTAKES = [
    ("short", CODE[:7], "credit_code_length", "您输入了 7 位", "you entered 7"),
    ("long", CODE + "1", "credit_code_length", "您输入了 19 位", "you entered 19"),
    (
        "letter O",
        _with(CODE, 10, "O"),
        "credit_code_charset",
        "不能包含字符:O",
        "may not contain: O",
    ),
    ("symbol", _with(CODE, 12, "#"), "credit_code_charset", "#", "#"),
    ("region", _with(CODE, 4, "A"), "credit_code_region", "行政区划码", "administrative region"),
    (
        "check char",
        CODE[:17] + ("0" if CODE[17] != "0" else "1"),
        "credit_code_checksum",
        "校验位不正确",
        "check character does not match",
    ),
    # GB/T 2260: province 00 and a county Shandong never had.
    ("province 00", _code("001502", _org()), "credit_code_region", "「001502」", "001502"),
    ("no such county", _code("371599", _org()), "credit_code_region", "GB/T 2260", "GB/T 2260"),
    # GB 11714: the organisation code's own check character.
    (
        "organisation code",
        _code("371502", _wrong_org()),
        "credit_code_org_checksum",
        "组织机构代码校验位不正确",
        "organisation code inside",
    ),
]


@pytest.mark.parametrize(
    "code",
    [
        "91110000802100433B",  # as printed on licences of two national firms
        "91440300708461136T",
        _code("371523", _org()),  # 茌平县, a district since 2019: a firm keeps its code
        _code("100000", _org()),  # registered nationally
        _code("371500", _org(), "12"),  # the city's own registration authority
        _code("371571", _org()),  # a development zone of 聊城 (统计用区划代码)
    ],
)
def test_valid_codes_pass_every_check(code):
    from canal.tenants.validators import parse_credit_code

    assert parse_credit_code(code) == code


@pytest.mark.parametrize(
    ("label", "code", "error_code", "zh", "en"), MISTAKES, ids=[m[0] for m in MISTAKES]
)
async def test_each_credit_code_mistake_has_its_message(client, label, code, error_code, zh, en):
    await sign_in(client, await make_user())
    slug = unique("bad-")
    payload = {"name": "错误代码公司", "slug": slug, "kind": "enterprise", "credit_code": code}
    answers = {}
    # A signed-in person's stored language outranks Accept-Language, so ask with ?lang=.
    for lang in ("zh-CN", "en"):
        response = await client.post(
            f"/api/v1/orgs?lang={lang}", json=payload, headers={"Accept-Language": lang}
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        errors = response.json()["errors"]
        assert [e["code"] for e in errors] == [error_code]
        answers[lang] = errors[0]["message"]
    assert zh in answers["zh-CN"] and en in answers["en"]
    assert not await Tenant.exists().where(Tenant.slug == slug)


async def test_form_rerenders_with_errors_and_keeps_values(client):
    await sign_in(client, await make_user())
    slug = unique("keep-")
    response = await client.post(
        "/orgs",
        data={
            "name": "保留输入公司",
            "slug": slug,
            "kind": "enterprise",
            "credit_code": _with(CODE, 4, "A"),
        },
        headers={"Accept-Language": "zh-CN"},
    )
    assert response.status_code == 422
    assert "行政区划码" in response.text
    assert 'value="保留输入公司"' in response.text and f'value="{slug}"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert not await Tenant.exists().where(Tenant.slug == slug)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("slug", "admin", "slug_reserved"),
        ("slug", "Has Spaces", "slug_format"),
        ("slug", "ab", "slug_length"),
        ("slug", "x" * 41, "slug_length"),
        ("slug", "-dash-first", "slug_format"),
        ("slug", "double--dash", "slug_format"),
        ("slug", "中文标识", "slug_format"),
        ("name", "", "name_length"),
        ("name", "名" * 101, "name_length"),
        ("name", "bad\u200bname", "name_characters"),
        ("kind", "operator", "kind_invalid"),
        ("kind", "bank", "kind_invalid"),
        ("credit_code", "", "credit_code_required"),
    ],
)
async def test_bad_fields_are_refused(client, field, value, code):
    await sign_in(client, await make_user())
    payload = {
        "name": "字段测试",
        "slug": unique("f-"),
        "kind": "enterprise",
        "credit_code": credit_code(),
        field: value,
    }
    response = await client.post("/api/v1/orgs", json=payload)
    assert response.status_code == 422, response.text
    assert code in [e["code"] for e in response.json()["errors"]]
    assert not await Tenant.exists().where(Tenant.name == payload["name"])


async def test_all_problems_are_reported_at_once(client):
    await sign_in(client, await make_user())
    response = await client.post(
        "/api/v1/orgs", json={"name": "", "slug": "api", "kind": "bank", "credit_code": "123"}
    )
    codes = {e["field"]: e["code"] for e in response.json()["errors"]}
    assert codes == {
        "name": "name_length",
        "slug": "slug_reserved",
        "kind": "kind_invalid",
        "credit_code": "credit_code_length",
    }


async def test_taken_slug_and_credit_code(client):
    await sign_in(client, await make_user())
    slug, code = unique("dup-"), credit_code()
    first = await client.post(
        "/api/v1/orgs",
        json={"name": "先到公司", "slug": slug, "kind": "enterprise", "credit_code": code},
    )
    assert first.status_code == 201
    again = await client.post(
        "/api/v1/orgs",
        json={"name": "后到公司", "slug": slug, "kind": "enterprise", "credit_code": credit_code()},
    )
    assert again.status_code == 422
    assert [e["code"] for e in again.json()["errors"]] == ["slug_taken"]
    same_code = await client.post(
        "/api/v1/orgs",
        json={
            "name": "后到公司",
            "slug": unique("dup-"),
            "kind": "enterprise",
            "credit_code": code,
        },
    )
    assert [e["code"] for e in same_code.json()["errors"]] == ["credit_code_taken"]
    assert not await Tenant.exists().where(Tenant.name == "后到公司")


async def test_malformed_json_is_a_400_not_a_500(client):
    await sign_in(client, await make_user())
    wrong_type = await client.post("/api/v1/orgs", json={"name": 5, "kind": "park"})
    assert wrong_type.status_code == 400
    unknown_field = await client.post(
        "/api/v1/orgs", json={"name": "x公司", "kind": "park", "tenant_id": "spoof"}
    )
    assert unknown_field.status_code == 400


async def test_anonymous_cannot_create(client):
    response = await client.post("/api/v1/orgs", json={"name": "匿名", "kind": "park"})
    assert response.status_code in {401, 403}
    page = await client.get("/orgs/new")
    assert page.status_code in {302, 303} and page.headers["location"].startswith("/login")


async def test_slug_is_suggested_from_a_latin_name(client):
    await sign_in(client, await make_user())
    name = f"Liaocheng Bearing {unique('')}"
    made = await client.post("/api/v1/orgs", json={"name": name, "kind": "community"})
    assert made.status_code == 201, made.text
    assert made.json()["slug"] == name.lower().replace(" ", "-")
    chinese = await client.post("/api/v1/orgs", json={"name": "纯中文名称", "kind": "community"})
    assert [e["code"] for e in chinese.json()["errors"]] == ["slug_required"]


def test_demo_and_factory_codes_pass_every_check():
    """The demo's organisations are created through the same check: a code of theirs that
    fails it would stop ``canal demo``."""
    from canal.platform.demo import ORGS, _credit_code
    from canal.tenants.validators import parse_credit_code

    for org in ORGS:
        code = _credit_code(org["code17"])
        assert parse_credit_code(code) == code, org["slug"]
    for _ in range(200):
        code = credit_code()
        assert parse_credit_code(code) == code
