"""The audit trail: ``record()`` appends an event in the caller's transaction; the trail
functions read one tenant's events or, for the operator, everyone's.

Appends go through the SQL function ``canal_audit_append`` (one round trip), which chains
each record to the previous one; see docs/audit.md for the hashed bytes.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from canal.platform import clock, db
from canal.platform.audit.chain import ACTION_MAX, IP_MAX, TARGET_MAX, canonical_payload, clean_text
from canal.platform.audit.tables import AuditEvent
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import FieldError, invalid

PAGE_SIZE = 50
PAGE_SIZE_MAX = 200

# English source text; the Chinese is in locales/zh_CN/LC_MESSAGES/audit.po. An action not
# listed here is shown by its code.
ACTION_LABELS: dict[str, str] = {
    "auth.signup": "Account created",
    "auth.login": "Signed in",
    "auth.login_failed": "Sign-in failed",
    "auth.logout": "Signed out",
    "auth.locked": "Account locked after failed sign-ins",  # before decision 0044; old records
    "auth.throttled": "Further sign-in attempts made to wait after failures",
    "auth.mfa_passed": "Two-factor step passed",
    "auth.mfa_failed": "Two-factor code rejected",
    "auth.totp_enabled": "Two-factor authentication turned on",
    "auth.totp_disabled": "Two-factor authentication turned off",
    "auth.password_changed": "Password changed",
    "auth.password_reset_requested": "Password reset requested",
    "auth.password_reset": "Password reset",
    "account.updated": "Account details changed",
    "session.revoked": "Signed-in device removed",
    "token.created": "API token created",
    "token.revoked": "API token revoked",
    "realname.verified": "Real name verified",
    "consent.granted": "Consent given",
    "consent.withdrawn": "Consent withdrawn",
    "tenant.created": "Organisation created",
    "tenant.updated": "Organisation details changed",
    "tenant.suspended": "Organisation suspended",
    "tenant.reactivated": "Organisation reactivated",
    "member.invited": "Member invited",
    "invitation.revoked": "Invitation withdrawn",
    "invitation.accepted": "Invitation accepted",
    "member.removed": "Member removed",
    "member.left": "Member left",
    "role.granted": "Role granted",
    "role.revoked": "Role removed",
    "module.enabled": "Module switched on",
    "module.disabled": "Module switched off",
    "audit.verified": "Audit chain verified",
    "file.uploaded": "File uploaded",
    "file.deleted": "File deleted",
    "storage.quota_changed": "Storage quota changed",
    "billing.subscribed": "Paid plan subscribed",
    "billing.cancelled": "Paid plan ended",
    "billing.past_due": "Payment overdue (grace period)",
    "billing.invoice_paid": "Invoice paid",
    "billing.usage_invoiced": "Metered usage invoiced",
    "billing.payment_failed": "Payment failed",
    "billing.payment_created": "Payment started",
    "billing.payment_succeeded": "Payment succeeded",
    "billing.payment_refunded": "Payment refunded",
    "billing.account_created": "Payout account created",
    "jobs.rerun": "Failed job run again",
}


def action_labels() -> dict[str, str]:
    """The platform's labels plus every module's ``ModuleSpec.audit_labels``."""
    from canal.exchange.bank.audit import AUDIT_LABELS as bank_labels  # not a module
    from canal.platform.modules import registry

    labels = dict(ACTION_LABELS) | bank_labels
    for module in registry().values():
        labels.update(module.audit_labels)
    return labels


# Offered in the filter's suggestion list.
ACTION_PREFIXES = (
    "auth.",
    "account.",
    "session.",
    "token.",
    "realname.",
    "consent.",
    "tenant.",
    "member.",
    "invitation.",
    "role.",
    "module.",
    "audit.",
)

_ACTION_PREFIX_RE = re.compile(r"^[a-z0-9_.]{0,64}$")


async def record(
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    target: str = "",
    ip: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's current transaction (one round trip).

    A rolled-back transaction leaves no event; a committed one always has its event. The
    chain head stays locked until the transaction ends, so call this late in long ones.
    """
    action = clean_text(action, ACTION_MAX)
    target = clean_text(target or "", TARGET_MAX)
    ip = clean_text(ip or "", IP_MAX)
    payload = canonical_payload(
        action=action, actor_id=actor_id, tenant_id=tenant_id, target=target, ip=ip, data=data
    )
    await AuditEvent.raw(
        "SELECT canal_audit_append({}, {}, {}, {}, {}, {})",
        tenant_id,
        actor_id,
        action,
        target,
        ip,
        payload,
    )


# --- reading the trail --------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    action_prefix: str = ""
    date_from: date | None = None  # inclusive, a day in Asia/Shanghai
    date_to: date | None = None  # inclusive
    before: int | None = None  # keyset cursor: only records with a smaller seq

    def query_args(self) -> dict[str, str]:
        """The filter as query parameters (without the cursor), for links."""
        args = {
            "action": self.action_prefix,
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in args.items() if v}


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    created_at: datetime  # in Asia/Shanghai
    tenant_id: uuid.UUID | None
    tenant_name: str | None
    actor_id: uuid.UUID | None
    actor_name: str | None
    action: str
    target: str
    ip: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        return action_labels().get(self.action)


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # pass as ``before`` for the next (older) page


# The days a filter may name: the ends of the range still convert to UTC and gain a day
# (``date_to`` is inclusive) without leaving what datetime can hold.
DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(9999, 12, 30)
# ``seq`` is a bigint: a cursor beyond it cannot be sent to the database.
SEQ_MAX = 2**63 - 1


def _parse_date(name: str, value: str | None) -> tuple[date | None, FieldError | None]:
    if not value or not value.strip():
        return None, None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return None, FieldError(
            name, "date_invalid", "日期格式应为 YYYY-MM-DD。", "Dates are written YYYY-MM-DD."
        )
    if not DATE_MIN <= day <= DATE_MAX:
        return None, FieldError(
            name,
            "date_out_of_range",
            f"日期须在 {DATE_MIN.isoformat()} 至 {DATE_MAX.isoformat()} 之间。",
            f"Dates must lie between {DATE_MIN.isoformat()} and {DATE_MAX.isoformat()}.",
        )
    return day, None


def parse_filter(
    *,
    action: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    before: int | None = None,
) -> AuditFilter:
    """Query parameters → a filter; bad input raises ``invalid`` naming the field."""
    errors: list[FieldError] = []
    prefix = (action or "").strip().lower()
    if not _ACTION_PREFIX_RE.match(prefix):
        errors.append(
            FieldError(
                "action",
                "action_invalid",
                "操作类型只能包含小写字母、数字、点和下划线。",
                "The action may contain only a–z, 0–9, dots and underscores.",
            )
        )
    start, error = _parse_date("date_from", date_from)
    if error:
        errors.append(error)
    end, error = _parse_date("date_to", date_to)
    if error:
        errors.append(error)
    if start and end and end < start:
        errors.append(
            FieldError(
                "date_to",
                "date_range",
                "结束日期不能早于开始日期。",
                "The end date cannot be before the start date.",
            )
        )
    if before is not None and not 1 <= before <= SEQ_MAX:
        errors.append(
            FieldError(
                "before", "cursor_invalid", "分页参数无效。", "The page cursor is not valid."
            )
        )
    if errors:
        raise invalid(errors)
    return AuditFilter(prefix, start, end, before)


_SELECT = """
SELECT e.seq, e.created_at, e.tenant_id, t.name AS tenant_name, e.actor_id,
       u.display_name AS actor_name, e.action, e.target, e.ip, e.payload
FROM audit_events e
LEFT JOIN users u ON u.id = e.actor_id
LEFT JOIN tenants t ON t.id = e.tenant_id
"""


async def _page(tenant_id: uuid.UUID | None, flt: AuditFilter, limit: int) -> AuditPage:
    limit = max(1, min(limit, PAGE_SIZE_MAX))
    conditions: list[str] = []
    args: list[Any] = []
    if tenant_id is not None:
        conditions.append("e.tenant_id = {}")
        args.append(tenant_id)
    if flt.before is not None:
        conditions.append("e.seq < {}")
        args.append(flt.before)
    if flt.action_prefix:
        conditions.append("e.action LIKE {}")
        escaped = flt.action_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.append(escaped + "%")
    if flt.date_from:
        conditions.append("e.created_at >= {}")
        args.append(clock.start_of_day(flt.date_from))
    if flt.date_to:
        conditions.append("e.created_at < {}")
        args.append(clock.end_of_day(flt.date_to))
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    rows = await AuditEvent.raw(f"{_SELECT} {where} ORDER BY e.seq DESC LIMIT {limit + 1}", *args)
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [_entry(r) for r in rows]
    return AuditPage(entries, entries[-1].seq if more and entries else None)


def _entry(row: dict[str, Any]) -> AuditEntry:
    try:
        data = json.loads(row["payload"]).get("data") or {}
    except (ValueError, AttributeError):
        data = {}
    return AuditEntry(
        seq=row["seq"],
        created_at=clock.local(row["created_at"]),
        tenant_id=row["tenant_id"],
        tenant_name=row["tenant_name"],
        actor_id=row["actor_id"],
        actor_name=row["actor_name"],
        action=row["action"],
        target=row["target"],
        ip=row["ip"],
        data=data if isinstance(data, dict) else {"value": data},
    )


async def tenant_trail(
    ctx: TenantContext, flt: AuditFilter, *, limit: int = PAGE_SIZE
) -> AuditPage:
    """One tenant's events, newest first (row-level security is the backstop)."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        return await _page(ctx.tenant_id, flt, limit)


async def platform_trail(
    user_id: uuid.UUID, flt: AuditFilter, *, limit: int = PAGE_SIZE
) -> AuditPage:
    """Every event, newest first. Only after a ("platform.audit", "read") check."""
    async with db.platform_scope(user_id):
        return await _page(None, flt, limit)
