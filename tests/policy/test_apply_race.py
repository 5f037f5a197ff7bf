"""One live application per enterprise and policy, also when two arrive at once.

``services.apply`` counts the enterprise's live applications and then inserts; two requests
at the same moment both counted none and both inserted. The partial unique index
``policy_applications_live_once`` is the backstop, and its violation is answered with the
same bilingual refusal (409 ``already_applied``) as applying twice in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from canal.park.policy import services
from canal.park.policy.tables import Application, Review
from canal.platform import db
from canal.platform.http.errors import CanalError
from tests.policy.helpers import CRITERIA, org, policy_json


class _CountThenWait:
    """``Application.count()`` that, once counted, waits until the other request has counted
    too: the interleaving that lost the race, every time instead of now and then."""

    def __init__(self, query: Any, barrier: asyncio.Barrier) -> None:
        self.query, self.barrier = query, barrier

    def where(self, *where: Any) -> _CountThenWait:
        return _CountThenWait(self.query.where(*where), self.barrier)

    def __await__(self):
        return self._run().__await__()

    async def _run(self) -> int:
        counted = await self.query
        # A fix that serialises the two before they count (a lock) never meets here: go on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.barrier.wait(), 3)
        return counted


async def _published_policy() -> tuple[Any, uuid.UUID]:
    """An authority's context and its published policy (no materials asked for)."""
    _, _, gctx = await org("government")
    policy_id = await services.create_policy(
        gctx, services.parse_policy(policy_json(CRITERIA, materials=[])), publish=True
    )
    return gctx, policy_id


async def test_two_applications_at_once_one_is_refused_like_the_second_in_a_row(
    app, monkeypatch
) -> None:
    _, policy_id = await _published_policy()
    _, ent, ectx = await org("enterprise")

    barrier = asyncio.Barrier(2)
    count = Application.count
    monkeypatch.setattr(
        Application,
        "count",
        classmethod(lambda cls, *a, **kw: _CountThenWait(count(*a, **kw), barrier)),
    )

    async def apply(contact: str) -> uuid.UUID:
        # Each in its own task: its own transaction on its own pooled connection.
        return await services.apply(ectx, policy_id, contact=contact, note="", materials=[])

    outcomes = await asyncio.gather(apply("张经理"), apply("李经理"), return_exceptions=True)
    monkeypatch.undo()

    applied = [o for o in outcomes if isinstance(o, uuid.UUID)]
    refused = [o for o in outcomes if isinstance(o, CanalError)]
    assert len(applied) == 1 and len(refused) == 1, outcomes

    # The refusal is the one the sequential path gives, in both languages.
    try:
        await services.apply(ectx, policy_id, contact="王经理", note="", materials=[])
    except CanalError as exc:
        sequential = exc
    else:
        raise AssertionError("a second application in a row was accepted")
    race = refused[0]
    assert (race.code, race.status, race.zh, race.en) == (
        sequential.code,
        sequential.status,
        sequential.zh,
        sequential.en,
    )
    assert (race.code, race.status) == ("already_applied", 409)

    async with db.tenant_scope(ent.id):
        rows = await Application.select(Application.id).where(
            (Application.tenant_id == ent.id) & (Application.policy_id == policy_id)
        )
    assert [r["id"] for r in rows] == applied
    async with db.platform_scope():
        queued = await Review.select(Review.id).where(Review.policy_id == policy_id)
    assert [r["id"] for r in queued] == applied  # no orphan queue row for the refused one


async def test_a_rejected_application_may_be_followed_by_a_new_one(app) -> None:
    """The index covers live applications only, as the count does."""
    gctx, policy_id = await _published_policy()
    _, ent, ectx = await org("enterprise")
    first = await services.apply(ectx, policy_id, contact="张经理", note="", materials=[])
    await services.decide(gctx, first, "reject", reason="材料不全")
    second = await services.apply(ectx, policy_id, contact="张经理", note="", materials=[])
    assert second != first
    async with db.tenant_scope(ent.id):
        statuses = sorted(
            r["status"]
            for r in await Application.select(Application.status).where(
                (Application.tenant_id == ent.id) & (Application.policy_id == policy_id)
            )
        )
    assert statuses == ["rejected", "submitted"]
