"""Scheduled pushes (温馨提醒办) and facts supplied by other modules."""

from __future__ import annotations

import datetime as dt
import uuid

from canal.park.policy import jobs, services
from canal.platform import clock, db
from canal.platform.notifications.tables import Notification
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

FACTS = {
    "region_code": "371502",
    "employees": 30,
    "certifications": [certificate()],
}


async def _titles(user_id: uuid.UUID) -> list[str]:
    async with db.user_scope(user_id):
        rows = await Notification.select(Notification.title_zh).where(
            Notification.user_id == user_id
        )
    return [r["title_zh"] for r in rows]


async def test_window_closing_reminder_only_for_unapplied_eligible_matches():
    _, _, gctx = await org("government")
    owner, _ent, ectx = await org("enterprise")
    applied_owner, _applied, actx = await org("enterprise")
    today = clock.today()
    closes = today + dt.timedelta(days=jobs.CLOSING_SOON_DAYS)
    title = f"即将截止的政策{uuid.uuid4().hex[:6]}"
    policy_id = await services.create_policy(
        gctx,
        services.parse_policy(
            policy_json(CRITERIA, title=title, materials=[], window_closes=closes.isoformat())
        ),
        publish=True,
    )
    for ctx in (ectx, actx):
        await services.set_facts(ctx, FACTS)
        await services.rematch_enterprise(ctx.tenant_id)
    await services.apply(actx, policy_id, contact="赵", note="", materials=[])
    sent = await jobs.policy_window_reminders({}, today.isoformat())
    assert sent >= 1
    assert any(title in t and "即将截止" in t for t in await _titles(owner.user_id))
    assert not any(title in t and "即将截止" in t for t in await _titles(applied_owner.user_id))
    # Another day: this policy is not closing in exactly seven days, so nothing more about it.
    await jobs.policy_window_reminders({}, (today + dt.timedelta(days=1)).isoformat())
    assert sum(title in t and "即将截止" in t for t in await _titles(owner.user_id)) == 1


async def test_weekly_digest_counts_eligible_undismissed_matches():
    _, _, gctx = await org("government")
    owner, ent, ectx = await org("enterprise")
    ids = [
        await services.create_policy(
            gctx, services.parse_policy(policy_json(CRITERIA)), publish=True
        )
        for _ in range(2)
    ]
    await services.set_facts(ectx, FACTS)
    await services.rematch_enterprise(ent.id)
    await services.set_dismissed(ectx, ids[0], True)
    eligible = [
        m for m in await services.matches_view(ectx) if m.group == "eligible" and not m.dismissed
    ]
    await jobs.policy_weekly_digest({})
    digest = [t for t in await _titles(owner.user_id) if t.startswith("本周惠企政策摘要")]
    assert digest == [f"本周惠企政策摘要:{len(eligible)} 项政策符合贵企业条件"]


async def test_facts_from_another_module_carry_their_source():
    _owner, ent, ectx = await org("enterprise")
    changed = await services.supply_facts(
        ent.id, "smartpark", {"employees": 77}, as_of=dt.date(2026, 10, 31)
    )
    assert changed == ["employees"]
    rows = await services.portrait_rows(ectx)
    assert rows["employees"]["source"] == "module:smartpark"
    assert rows["employees"]["as_of"] == dt.date(2026, 10, 31)
    assert rows["employees"]["value"] == 77
