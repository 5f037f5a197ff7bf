"""Delivery per each person's choices: real SMTP to the sink, SMS to the outbox log."""

from __future__ import annotations

import random

from canal.platform.identity.tables import OutboxMessage, User
from canal.platform.notifications.services import notify
from tests.factories import csrf_from, make_user, sign_in, unique
from tests.notifications.helpers import deliver_all


async def _messages(recipient: str) -> list[dict]:
    return await OutboxMessage.select().where(OutboxMessage.recipient == recipient)


async def test_email_goes_over_smtp_to_the_sink(app, mailing_runtime, mail_sink):
    person = await make_user("邮件用户")
    title = unique("邀请您加入-")
    await notify(
        [person.user_id],
        "invitation",
        title_zh=title,
        title_en="Invitation",
        body_zh="请查看邀请。",
        body_en="See the invitation.",
        link="/orgs",
    )
    [message] = await _messages(person.login)
    assert message["channel"] == "email" and message["sent_at"] is None
    await deliver_all(mailing_runtime)
    [mail] = mail_sink.to(person.login)
    assert mail.subject == title  # the person's language (zh_CN by default)
    assert "请查看邀请。" in mail.text and "/orgs" in mail.text
    assert mail.text.count("http") == 1  # the link is absolute, from the settings' base URL
    sent = await OutboxMessage.select().where(OutboxMessage.id == message["id"]).first()
    assert sent["sent_at"] is not None
    # Delivered once: running the queue again sends nothing more.
    await deliver_all(mailing_runtime)
    assert len(mail_sink.to(person.login)) == 1
    assert list(mail_sink.directory.glob("*.eml"))  # kept on disk too (var/mail/ in the demo)


async def test_preferences_turn_email_off_but_not_for_security(app, client, mailing_runtime):
    person = await make_user("偏好用户")
    await sign_in(client, person)
    prefs = (await client.get("/api/v1/account/notifications")).json()
    by_kind = {p["kind"]: p for p in prefs}
    assert by_kind["invitation"]["email"] is True and by_kind["security"]["email_required"]
    saved = await client.put(
        "/api/v1/account/notifications",
        json={"invitation": {"email": False}, "security": {"email": False}},
    )
    assert saved.status_code == 200, saved.text
    by_kind = {p["kind"]: p for p in saved.json()}
    assert by_kind["invitation"]["email"] is False
    assert by_kind["security"]["email"] is True  # security mail cannot be switched off
    unknown = await client.put("/api/v1/account/notifications", json={"nonsense": {}})
    assert unknown.status_code == 422 and unknown.json()["code"] == "invalid_input"

    await notify([person.user_id], "invitation", title_zh="邀请", title_en="Invitation")
    assert await _messages(person.login) == []  # in the inbox only
    await notify([person.user_id], "security", title_zh="新设备登录", title_en="New sign-in")
    [message] = await _messages(person.login)
    assert message["subject"] == "新设备登录"
    inbox = (await client.get("/api/v1/notifications")).json()
    assert {n["kind"] for n in inbox["items"]} == {"invitation", "security"}


async def test_sms_goes_to_the_outbox_log_when_chosen(app, client, mailing_runtime, settings):
    phone = "138" + "".join(random.choice("0123456789") for _ in range(8))
    person = await make_user("短信用户", login=phone)
    stored = await User.select(User.phone).where(User.id == person.user_id).first()
    await sign_in(client, person)
    page = await client.get("/account/notifications")
    assert page.status_code == 200 and "policy_match:sms" in page.text
    # The form: tick SMS for policy matches (unticked boxes are simply absent).
    form = {"_csrf": csrf_from(page.text), "policy_match:sms": "on", "security:email": "on"}
    saved = await client.post("/account/notifications", data=form)
    assert saved.status_code == 303
    prefs = {p["kind"]: p for p in (await client.get("/api/v1/account/notifications")).json()}
    assert prefs["policy_match"]["sms"] is True and prefs["invitation"]["sms"] is False

    title = unique("新政策匹配-")
    await notify([person.user_id], "policy_match", title_zh=title, title_en="New match")
    await notify([person.user_id], "invitation", title_zh="不发短信", title_en="No SMS")
    messages = await _messages(stored["phone"])
    assert [m["channel"] for m in messages] == ["sms"]
    await deliver_all(mailing_runtime)
    log = (settings.var_dir / "outbox.log").read_text(encoding="utf-8")
    assert f"sms to {stored['phone']}" in log and title in log
    assert "不发短信" not in log
