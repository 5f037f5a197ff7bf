"""The inbox and the preferences: ``notify`` writes inbox rows in the caller's transaction
and, per each person's choices, e-mail/SMS messages delivered through the job outbox.

Every read and write is scoped to one person (``user_id``): another person's notification
answers exactly like a missing one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from canal.platform import clock, db
from canal.platform.http.errors import FieldError, invalid, not_found
from canal.platform.identity.tables import OutboxMessage, User
from canal.platform.jobs.outbox import enqueue_after_commit
from canal.platform.notifications.kinds import NotificationKind, all_kinds, get_kind
from canal.platform.notifications.tables import Notification, NotificationPreference
from canal.platform.settings import get_settings

PAGE_SIZE = 30


@dataclass(frozen=True)
class NotificationView:
    id: uuid.UUID
    kind: str
    tenant: uuid.UUID | None
    title: str
    body: str
    link: str
    created_at: dt.datetime
    read_at: dt.datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None


@dataclass(frozen=True)
class InboxPage:
    items: list[NotificationView]
    unread: int
    next_before: dt.datetime | None


@dataclass(frozen=True)
class PreferenceView:
    kind: str
    name: str
    email: bool
    sms: bool
    forced_email: bool


@asynccontextmanager
async def _in_transaction() -> AsyncIterator[None]:
    """Join the caller's transaction (keeping its scope), or open a plain one."""
    if db.engine().current_transaction.get() is not None:
        yield
        return
    async with db.transaction():
        yield


def _safe_link(link: str) -> str:
    # Only paths on this site: a notification must never become an open redirect.
    if link and (not link.startswith("/") or link.startswith("//") or "\\" in link):
        raise ValueError(f"notification links are site paths, not {link!r}")
    return link[:500]


def _channels(kind: NotificationKind, pref: Mapping[str, Any] | None) -> tuple[bool, bool]:
    email = bool(pref["email"]) if pref else kind.default_email
    sms = bool(pref["sms"]) if pref else kind.default_sms
    return email or kind.forced_email, sms


async def notify(
    user_ids: Iterable[uuid.UUID],
    kind: str,
    *,
    title_zh: str,
    title_en: str,
    body_zh: str = "",
    body_en: str = "",
    link: str = "",
    tenant_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Put a notification in each person's inbox and schedule their e-mail / SMS copies.

    Runs in the caller's transaction when there is one: a rolled-back change notifies
    nobody, and a committed one always has its messages (the outbox delivers them).
    Returns the new notifications' ids.
    """
    spec = get_kind(kind)
    link = _safe_link(link)
    people = list(dict.fromkeys(user_ids))
    if not people:
        return []
    base_url = get_settings().base_url.rstrip("/")
    rows = [
        Notification(
            id=uuid.uuid4(),
            user_id=user_id,
            tenant=tenant_id,
            kind=kind,
            title_zh=title_zh[:200],
            title_en=title_en[:200],
            body_zh=body_zh,
            body_en=body_en,
            link=link,
        )
        for user_id in people
    ]
    async with _in_transaction():
        await Notification.insert(*rows)
        users = await User.select(
            User.id, User.email, User.phone, User.locale, User.is_active
        ).where(User.id.is_in(people))
        prefs = {
            p["user_id"]: p
            for p in await NotificationPreference.select(
                NotificationPreference.user_id,
                NotificationPreference.email,
                NotificationPreference.sms,
            ).where(
                NotificationPreference.user_id.is_in(people) & (NotificationPreference.kind == kind)
            )
        }
        messages: list[OutboxMessage] = []
        for user in users:
            if not user["is_active"]:
                continue
            email_on, sms_on = _channels(spec, prefs.get(user["id"]))
            en = user["locale"] == "en"
            title, body = (title_en, body_en) if en else (title_zh, body_zh)
            full_link = f"{base_url}{link}" if link else ""
            if email_on and user["email"]:
                text = "\n\n".join(part for part in (body, full_link) if part)
                messages.append(
                    OutboxMessage(
                        channel="email", recipient=user["email"], subject=title[:200], body=text
                    )
                )
            if sms_on and user["phone"]:
                text = " ".join(part for part in (body, full_link) if part)
                messages.append(
                    OutboxMessage(
                        channel="sms", recipient=user["phone"], subject=title[:200], body=text
                    )
                )
        if messages:
            await OutboxMessage.insert(*messages)
            for message in messages:
                await enqueue_after_commit(
                    "deliver_message", str(message.id), key=f"deliver:{message.id}"
                )
    return [row.id for row in rows]


def _view(row: Mapping[str, Any], locale: str) -> NotificationView:
    en = locale == "en"
    return NotificationView(
        id=row["id"],
        kind=row["kind"],
        tenant=row["tenant"],
        title=row["title_en"] if en else row["title_zh"],
        body=row["body_en"] if en else row["body_zh"],
        link=row["link"],
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


async def unread_count(user_id: uuid.UUID) -> int:
    return int(
        await Notification.count().where(
            (Notification.user_id == user_id) & Notification.read_at.is_null()
        )
    )


def _cursor(before: dt.datetime) -> dt.datetime:
    """The ``before`` cursor in UTC (a naive one is taken as UTC); 422 for a moment that
    cannot be expressed in UTC (``0001-01-01T00:00:00+05:00``) instead of a server error."""
    try:
        if before.tzinfo is None:
            return before.replace(tzinfo=dt.UTC)
        return before.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise invalid(
            [
                FieldError(
                    "before",
                    "cursor_invalid",
                    "分页参数无效。",
                    "The page cursor is not valid.",
                )
            ]
        ) from None


async def inbox(
    user_id: uuid.UUID,
    locale: str,
    *,
    unread_only: bool = False,
    before: dt.datetime | None = None,
    limit: int = PAGE_SIZE,
) -> InboxPage:
    """One page of a person's notifications, newest first, and their unread count."""
    limit = max(1, min(limit, 100))
    where: Any = Notification.user_id == user_id
    if unread_only:
        where &= Notification.read_at.is_null()
    if before is not None:
        where &= Notification.created_at < _cursor(before)
    async with db.user_scope(user_id):
        rows = (
            await Notification.select()
            .where(where)
            .order_by(Notification.created_at, ascending=False)
            .limit(limit + 1)
        )
        unread = await unread_count(user_id)
    more = len(rows) > limit
    rows = rows[:limit]
    return InboxPage(
        items=[_view(r, locale) for r in rows],
        unread=unread,
        next_before=rows[-1]["created_at"] if more and rows else None,
    )


async def get_notification_for_user(
    notification_id: uuid.UUID, user_id: uuid.UUID, locale: str
) -> NotificationView:
    row = (
        await Notification.select()
        .where((Notification.id == notification_id) & (Notification.user_id == user_id))
        .first()
    )
    if row is None:
        raise not_found()
    return _view(row, locale)


async def mark_read(notification_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Mark one of the person's notifications read; 404 for anyone else's. True if it was
    unread."""
    async with db.user_scope(user_id):
        row = (
            await Notification.select(Notification.read_at)
            .where((Notification.id == notification_id) & (Notification.user_id == user_id))
            .first()
        )
        if row is None:
            raise not_found()
        if row["read_at"] is not None:
            return False
        await Notification.update({Notification.read_at: clock.now()}).where(
            (Notification.id == notification_id) & (Notification.user_id == user_id)
        )
    return True


async def mark_all_read(user_id: uuid.UUID) -> int:
    async with db.user_scope(user_id):
        changed = (
            await Notification.update({Notification.read_at: clock.now()})
            .where((Notification.user_id == user_id) & Notification.read_at.is_null())
            .returning(Notification.id)
        )
    return len(changed)


# --- preferences ------------------------------------------------------------------------------


async def preferences(user_id: uuid.UUID, locale: str) -> list[PreferenceView]:
    """Every registered kind with the person's choice (or the kind's default)."""
    async with db.user_scope(user_id):
        rows = await NotificationPreference.select().where(
            NotificationPreference.user_id == user_id
        )
    chosen = {r["kind"]: r for r in rows}
    views = []
    for kind in all_kinds():
        email, sms = _channels(kind, chosen.get(kind.key))
        views.append(PreferenceView(kind.key, kind.name(locale), email, sms, kind.forced_email))
    return views


async def set_preferences(user_id: uuid.UUID, choices: Mapping[str, Mapping[str, bool]]) -> None:
    """Save the person's channels per kind: ``{"invitation": {"email": True, "sms": False}}``.

    Kinds not mentioned keep their current setting; e-mail stays on for forced kinds.
    """
    known = {k.key: k for k in all_kinds()}
    errors = [
        FieldError(
            key,
            "kind_unknown",
            "没有这种通知类型。",
            "There is no such kind of notification.",
        )
        for key in choices
        if key not in known
    ]
    if errors:
        raise invalid(errors)
    async with db.user_scope(user_id):
        connection = db.engine().current_transaction.get().connection  # type: ignore[union-attr]
        for key, channels in choices.items():
            kind = known[key]
            email = bool(channels.get("email", False)) or kind.forced_email
            sms = bool(channels.get("sms", False))
            await connection.execute(
                "INSERT INTO notification_preferences (id, user_id, kind, email, sms, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, kind) "
                "DO UPDATE SET email = EXCLUDED.email, sms = EXCLUDED.sms, updated_at = $6",
                uuid.uuid4(),
                user_id,
                key,
                email,
                sms,
                clock.now(),
            )
