"""Real-name verification: consent first, GB 11643 checks, masked storage, one ID per
account, and erasure when the consent is withdrawn."""

from __future__ import annotations

from canal.platform.identity.realname import REALNAME_CONSENT_V
from canal.platform.identity.secrets import keyed_hash
from canal.platform.identity.tables import Consent
from canal.platform.settings import get_settings
from tests.factories import make_user, sign_in
from tests.identity.helpers import audit_actions, id_number, page_csrf, user_row


async def _consent(client) -> None:
    csrf = await page_csrf(client, "/account/real-name")
    answer = await client.post("/account/real-name/consent", data={"_csrf": csrf, "agree": "1"})
    assert answer.status_code == 303, answer.text


async def _verify(client, name: str, number: str, lang: str = "zh_CN"):
    # A signed-in person's own language choice outranks Accept-Language: ask with ?lang=.
    csrf = await page_csrf(client, "/account/real-name")
    return await client.post(
        "/account/real-name",
        params={"lang": lang},
        data={"_csrf": csrf, "name": name, "id_number": number},
    )


async def test_consent_is_required_first(client):
    person = await make_user()
    csrf = await sign_in(client, person)
    page = await client.get("/account/real-name")
    assert "敏感个人信息" in page.text and REALNAME_CONSENT_V in page.text
    api = await client.post(
        "/api/v1/account/real-name",
        headers={"X-CSRF-Token": csrf},
        json={"name": "张三", "id_number": id_number()},
    )
    assert api.status_code == 409 and api.json()["code"] == "consent_required"
    unticked = await client.post("/account/real-name/consent", data={"_csrf": csrf})
    assert unticked.status_code == 422
    assert await Consent.count().where(Consent.user == person.user_id) == 0
    await _consent(client)
    consent = await Consent.select().where(Consent.user == person.user_id).first()
    assert consent["purpose"] == "realname" and consent["text_version"] == REALNAME_CONSENT_V
    assert "consent.granted" in await audit_actions(person.user_id)


async def test_valid_id_is_accepted_and_only_masked(client):
    person = await make_user()
    await sign_in(client, person)
    await _consent(client)
    number = id_number(female=True)
    answer = await _verify(client, "欧阳·娜娜", number.lower())
    assert answer.status_code == 303, answer.text
    row = await user_row(person.user_id)
    masked = number[:4] + "*" * 10 + number[-4:]
    assert row["id_number_masked"] == masked and row["real_name"] == "欧阳·娜娜"
    assert row["id_number_hmac"] == keyed_hash(get_settings().secret_key, number)
    assert row["gender"] == "female" and str(row["birth_date"]).replace("-", "") == number[6:14]
    assert all(number not in str(value) for value in row.values())
    page = await client.get("/account/real-name")
    assert masked in page.text and number not in page.text
    api = (await client.get("/api/v1/account/real-name")).json()
    assert api["verified"] and api["id_number_masked"] == masked
    assert "realname.verified" in await audit_actions(person.user_id)


async def test_invalid_numbers_refused_with_specific_messages(client):
    person = await make_user()
    await sign_in(client, person)
    await _consent(client)
    good = id_number()
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    bad_date = good[:10] + "1332" + good[14:17]
    from canal.platform.identity.validators import id_number_check_char

    bad_date += id_number_check_char(bad_date)
    # GB/T 2260: 00 and 99 are no province (each with a right check digit).
    no_province = [p + good[2:17] for p in ("00", "99")]
    no_province = [n + id_number_check_char(n) for n in no_province]
    cases = [
        (no_province[0], "前两位「00」不是有效的省级行政区划代码", "first two digits, 00"),
        (no_province[1], "前两位「99」不是有效的省级行政区划代码", "not a province code"),
        (wrong_check, "身份证号校验位不正确", "check digit does not match"),
        (bad_date, "出生日期无效", "not a real date"),
        (good[:17], "应为 18 位", "must be 18 characters"),
        (good + "1", "应为 18 位", "must be 18 characters"),
        ("1" * 5000, "应为 18 位", "must be 18 characters"),
    ]
    for number, zh, en in cases:
        zh_answer = await _verify(client, "张三", number)
        assert zh_answer.status_code == 422 and zh in zh_answer.text, number[:20]
        assert 'id="f-id_number-error"' in zh_answer.text
        en_answer = await _verify(client, "张三", number, lang="en")
        assert en_answer.status_code == 422 and en in en_answer.text
    bad_name = await _verify(client, "<script>", good)
    assert bad_name.status_code == 422 and "请填写身份证上的姓名" in bad_name.text
    assert (await user_row(person.user_id))["verified_at"] is None


async def test_same_id_cannot_verify_two_accounts(client):
    first, second = await make_user(), await make_user()
    number = id_number()
    await sign_in(client, first)
    await _consent(client)
    assert (await _verify(client, "李四", number)).status_code == 303
    client.cookies.clear()
    csrf = await sign_in(client, second)
    await _consent(client)
    answer = await client.post(
        "/api/v1/account/real-name",
        headers={"X-CSRF-Token": csrf},
        json={"name": "李四", "id_number": number},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["code"] == "id_number_taken"
    assert (await user_row(second.user_id))["verified_at"] is None


async def test_withdrawing_consent_erases_data(client):
    person = await make_user()
    await sign_in(client, person)
    await _consent(client)
    number = id_number()
    assert (await _verify(client, "王五", number)).status_code == 303
    consent = await Consent.select().where(Consent.user == person.user_id).first()
    listing = await client.get("/account/consents")
    assert REALNAME_CONSENT_V in listing.text
    csrf = await page_csrf(client, "/account/consents")
    answer = await client.post(f"/account/consents/{consent['id']}/withdraw", data={"_csrf": csrf})
    assert answer.status_code == 303
    row = await user_row(person.user_id)
    for column in (
        "real_name",
        "id_number_masked",
        "id_number_hmac",
        "birth_date",
        "gender",
        "verified_at",
    ):
        assert row[column] is None, column
    withdrawn = await Consent.select().where(Consent.id == consent["id"]).first()
    assert withdrawn["withdrawn_at"] is not None
    assert "consent.withdrawn" in await audit_actions(person.user_id)
    # The number is free again (its hash went with the data), but only after a new consent.
    again = await client.post(
        "/api/v1/account/real-name",
        headers={"X-CSRF-Token": csrf},
        json={"name": "王五", "id_number": number},
    )
    assert again.status_code == 409


def test_an_id_keeps_the_county_of_its_first_issue():
    """Only the province is checked: an ID issued in 聊城地区 (3725, renumbered 3715 in 1998)
    or to a Taiwan resident's residence permit (83) is a real number."""
    from canal.platform.identity.validators import id_number_check_char, parse_id_number

    for first17 in ("37252319580304001", "83000019900101002", "81000019900101003"):
        number = first17 + id_number_check_char(first17)
        assert parse_id_number(number)[0] == number
