"""Delivering outbox messages: e-mail over SMTP, SMS through an adapter (``SmsSender``).

The default SMS adapter appends to ``var/outbox.log`` (the demo and tests; a provider's
adapter replaces it in production). Without an SMTP host, e-mail goes to the log too.
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Protocol

from canal.platform import clock, db
from canal.platform.settings import Settings, get_settings


class SmsSender(Protocol):
    """Sends one text message; raises on failure (the job retries)."""

    async def send(self, phone: str, text: str) -> None: ...


class OutboxLogSms:
    """The stand-in SMS gateway: one entry per message in ``var/outbox.log``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, phone: str, text: str) -> None:
        write_log(self.path, "sms", phone, "", text)


_sms_sender: SmsSender | None = None


def use_sms_sender(sender: SmsSender | None) -> None:
    """Install the SMS adapter for this process (None: back to the outbox log)."""
    global _sms_sender
    _sms_sender = sender


def sms_sender(settings: Settings) -> SmsSender:
    return _sms_sender or OutboxLogSms(settings.var_dir / "outbox.log")


def write_log(path: Path, channel: str, recipient: str, subject: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"--- {channel} to {recipient}: {subject}\n{body}\n")


async def send_email(settings: Settings, recipient: str, subject: str, body: str) -> None:
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = recipient
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="canal.local")
    mail.set_content(body)

    def send() -> None:
        with smtplib.SMTP(settings.smtp_host or "", settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)

    await asyncio.to_thread(send)


async def deliver_message(ctx: dict[str, Any], message_id: str) -> str:
    """Send one outbox message (mail over SMTP, SMS through the adapter) exactly once.

    The row is claimed and the message sent inside one transaction: a concurrent duplicate of
    this job waits on the row lock and then finds it sent; a failed send rolls the claim back
    so the retry tries again. (A crash after the send and before the commit sends twice — the
    at-least-once edge every external side effect has.)
    """
    from canal.platform.identity.tables import OutboxMessage

    settings: Settings = ctx.get("settings") or get_settings()
    async with db.transaction():
        claimed = (
            await OutboxMessage.update({OutboxMessage.sent_at: clock.now()})
            .where((OutboxMessage.id == uuid.UUID(message_id)) & OutboxMessage.sent_at.is_null())
            .returning(
                OutboxMessage.channel,
                OutboxMessage.recipient,
                OutboxMessage.subject,
                OutboxMessage.body,
            )
        )
        if not claimed:
            return "skipped"
        await _send(settings, claimed[0])
    return "sent"


async def _send(settings: Settings, row: dict[str, Any]) -> None:
    if row["channel"] == "email":
        if settings.smtp_host:
            await send_email(settings, row["recipient"], row["subject"], row["body"])
        else:
            write_log(
                settings.var_dir / "outbox.log",
                "email",
                row["recipient"],
                row["subject"],
                row["body"],
            )
        return
    text = f"{row['subject']}: {row['body']}" if row["subject"] else row["body"]
    await sms_sender(settings).send(row["recipient"], text)
