"""Matching and reminder jobs of the policy module (run by the arq worker).

Every job is idempotent: an enterprise's matches are one row, rewritten whole, and a notification is
sent only when a match becomes eligible for a version it was not yet announced for.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from canal.park.policy import services
from canal.park.policy.tables import CataloguePolicy, MatchSet
from canal.platform import db
from canal.platform.notifications.services import notify
from canal.tenants.tables import Membership, Tenant

# Reminders go out this many days before an application window closes.
CLOSING_SOON_DAYS = 7


async def policy_match_enterprise(ctx: dict[str, Any], tenant_id: str) -> int:
    """A portrait changed: that enterprise against every open policy."""
    return await services.rematch_enterprise(uuid.UUID(tenant_id))


async def policy_match_policy(ctx: dict[str, Any], policy_id: str) -> int:
    """A policy was published or changed: that policy against every enterprise."""
    return await services.rematch_policy(uuid.UUID(policy_id))


async def policy_match_all(ctx: dict[str, Any]) -> int:
    """Nightly: everyone against everything, for criteria that change with the date alone."""
    return await services.rematch_all()


async def policy_window_reminders(ctx: dict[str, Any], day: str | None = None) -> int:
    """Daily: enterprises with an eligible, undismissed, unapplied match whose window closes in
    exactly ``CLOSING_SOON_DAYS`` days are reminded once (the date makes it once)."""
    today = dt.date.fromisoformat(day) if day else services.today()
    target = today + dt.timedelta(days=CLOSING_SOON_DAYS)
    async with db.transaction():
        closing = await CataloguePolicy.select(CataloguePolicy.id, CataloguePolicy.title).where(
            CataloguePolicy.window_closes == target
        )
    if not closing:
        return 0
    titles = {p["id"]: p["title"] for p in closing}
    sent = 0
    async with db.platform_scope():
        rows = await MatchSet.raw(
            "SELECT s.tenant_id, c.policy_id FROM policy_match_columns c "
            "JOIN policy_match_sets s ON length(s.codes) > c.position "
            "WHERE c.policy_id = ANY({}::uuid[]) AND get_byte(s.codes, c.position) & 127 = 1 "
            "AND NOT EXISTS (SELECT 1 FROM policy_dismissals d WHERE d.tenant_id = s.tenant_id "
            "AND d.policy_id = c.policy_id) AND NOT EXISTS (SELECT 1 FROM policy_applications a "
            "WHERE a.tenant_id = s.tenant_id AND a.policy_id = c.policy_id)",
            list(titles),
        )
        for row in rows:
            members = await Membership.select(Membership.user_id).where(
                Membership.tenant_id == row["tenant_id"]
            )
            tenant = await Tenant.select(Tenant.slug).where(Tenant.id == row["tenant_id"]).first()
            title = titles[row["policy_id"]]
            await notify(
                [m["user_id"] for m in members],
                "policy_match",
                title_zh=f"申报即将截止:{title}({target.isoformat()})",
                title_en=f"Application window closes on {target.isoformat()}: {title}",
                link=f"/t/{tenant['slug'] if tenant else ''}/m/policy/matches",
                tenant_id=row["tenant_id"],
            )
            sent += 1
    return sent


async def eligible_counts() -> list[dict[str, Any]]:
    """Per enterprise, how many eligible pairs are not dismissed (platform scope): counted
    from the bytes with numpy, one pass over the table, instead of a byte lookup per
    (enterprise, column) in SQL."""
    import numpy as np

    conn = db.engine().current_transaction.get().connection  # type: ignore[union-attr]
    rows = await conn.fetch(
        "SELECT s.tenant_id, s.codes, coalesce((SELECT array_agg(c.position) "
        "FROM policy_dismissals d JOIN policy_match_columns c ON c.policy_id = d.policy_id "
        "WHERE d.tenant_id = s.tenant_id), '{}') AS dismissed FROM policy_match_sets s"
    )
    out = []
    for r in rows:
        codes = np.frombuffer(r["codes"], dtype=np.uint8) & 0x7F
        eligible = codes == 1
        eligible[[p for p in r["dismissed"] if p < len(codes)]] = False
        n = int(eligible.sum())
        if n:
            out.append({"tenant_id": r["tenant_id"], "n": n})
    return out


async def policy_weekly_digest(ctx: dict[str, Any]) -> int:
    """Mondays: each enterprise with eligible, undismissed matches gets one summary."""
    async with db.platform_scope():
        rows = await eligible_counts()
        for row in rows:
            members = await Membership.select(Membership.user_id).where(
                Membership.tenant_id == row["tenant_id"]
            )
            tenant = await Tenant.select(Tenant.slug).where(Tenant.id == row["tenant_id"]).first()
            n = int(row["n"])
            await notify(
                [m["user_id"] for m in members],
                "policy_match",
                title_zh=f"本周惠企政策摘要:{n} 项政策符合贵企业条件",
                title_en=f"Weekly policy digest: {n} policies match your enterprise",
                link=f"/t/{tenant['slug'] if tenant else ''}/m/policy/matches",
                tenant_id=row["tenant_id"],
            )
    return len(rows)


JOBS = (
    policy_match_enterprise,
    policy_match_policy,
    policy_match_all,
    policy_window_reminders,
    policy_weekly_digest,
)
