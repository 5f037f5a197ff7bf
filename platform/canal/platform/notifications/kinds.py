"""The registry of notification kinds: what each is called and which channels it uses.

The platform registers its kinds here; a module registers its own at import time of its
``module.py`` (``register_kind(NotificationKind("park.alarm", ...))``). In-app is always on;
``default_email`` / ``default_sms`` apply until a person chooses; ``forced_email`` kinds
(security) always go out by e-mail whatever the person chose.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class NotificationKind:
    key: str
    name_zh: str
    name_en: str
    default_email: bool = True
    default_sms: bool = False
    forced_email: bool = False

    def name(self, locale: str) -> str:
        return self.name_en if locale == "en" else self.name_zh


_kinds: dict[str, NotificationKind] = {}


def register_kind(kind: NotificationKind) -> NotificationKind:
    existing = _kinds.get(kind.key)
    if existing is not None and existing != kind:
        raise ValueError(f"notification kind {kind.key!r} is already registered differently")
    _kinds[kind.key] = kind
    return kind


def get_kind(key: str) -> NotificationKind:
    try:
        return _kinds[key]
    except KeyError:
        raise ValueError(f"unknown notification kind {key!r}: register it first") from None


def all_kinds() -> list[NotificationKind]:
    return sorted(_kinds.values(), key=lambda k: (not k.forced_email, k.key))


SECURITY = register_kind(
    NotificationKind("security", "账号安全", "Account security", forced_email=True)
)
INVITATION = register_kind(NotificationKind("invitation", "组织邀请", "Organisation invitations"))
MEMBERSHIP = register_kind(
    NotificationKind("membership", "成员与角色变更", "Membership and role changes")
)
POLICY_MATCH = register_kind(
    NotificationKind(
        "policy_match", "惠企政策匹配", "Matching business policies", default_sms=False
    )
)
SYSTEM = register_kind(
    NotificationKind("system", "平台公告", "Platform announcements", default_email=False)
)
