"""Rules turn on Beijing midnight, not UTC's and not the machine's (issue #11).

The policy module used the UTC date: an application window that closed on day D stayed open
until 08:00 on D+1 in Beijing, and one that opened on D refused applications until 08:00 on D.
Each test sets the clock on either side of 16:00 UTC (Beijing's midnight) with time-machine.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from canal.marketplace import market
from canal.park.policy import services
from canal.platform import clock
from canal.platform.http.errors import CanalError
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

SECOND = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
async def _no_job_left_in_the_travelled_future(runtime):
    """A job enqueued while time-machine moves the time (a notification's mail) is scored at
    that moment, days ahead; left in the queue, it keeps every later burst worker waiting for
    it (tests/test_jobs.py hung). Drop what was queued beyond the real now."""
    yield
    from arq.constants import default_queue_name
    from redis.asyncio import Redis

    redis = Redis.from_url(runtime.redis_url)
    try:
        real_now_ms = int(clock.wall_timestamp() * 1000)
        await redis.zremrangebyscore(default_queue_name, f"({real_now_ms + 60_000}", "+inf")
    finally:
        await redis.aclose()


def at(moment: dt.datetime) -> time_machine.travel:
    """Set Canal's clock to ``moment`` (whatever offset this run moves it by) and let it tick."""
    return time_machine.travel(moment - clock._offset(), tick=True)


async def _eligible_enterprise():
    _, ent, ectx = await org("enterprise")
    await services.set_facts(
        ectx,
        {"region_code": "371502", "employees": 30, "certifications": [certificate()]},
    )
    await services.rematch_enterprise(ent.id)
    return ectx


async def test_an_application_window_opens_and_closes_at_beijing_midnight(app):
    opens = clock.days_from_today(10)
    closes = clock.days_from_today(20)
    _, _, gctx = await org("government")
    policy_id = await services.create_policy(
        gctx,
        services.parse_policy(
            policy_json(
                CRITERIA,
                materials=[],
                window_opens=opens.isoformat(),
                window_closes=closes.isoformat(),
            )
        ),
        publish=True,
    )
    early, first, last, late = [await _eligible_enterprise() for _ in range(4)]

    # 23:59:59 the evening before it opens (15:59:59 UTC): not yet.
    with at(clock.start_of_day(opens) - SECOND), pytest.raises(CanalError) as refused:
        await services.apply(early, policy_id, contact="王", note="", materials=[])
    assert refused.value.code == "window_closed"
    # Midnight in Beijing (16:00 UTC the day before, when UTC's date is still the eve): open.
    with at(clock.start_of_day(opens)):
        assert clock.today() == opens
        await services.apply(first, policy_id, contact="王", note="", materials=[])
    # The last second of the closing day, 15:59:59 UTC: still open.
    with at(clock.end_of_day(closes) - SECOND):
        await services.apply(last, policy_id, contact="王", note="", materials=[])
    # Midnight after it (16:00 UTC of the closing day, UTC's date still the closing day): closed.
    with at(clock.end_of_day(closes)), pytest.raises(CanalError) as closed:
        assert clock.now().date() == closes  # what the UTC rule used to decide on
        await services.apply(late, policy_id, contact="王", note="", materials=[])
    assert closed.value.code == "window_closed"


async def test_a_voucher_valid_through_a_day_lasts_to_its_beijing_midnight(app):
    staff = await operator()
    provider = await approved_provider(f"券时限{clock.timestamp():.0f}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="500")
    buyer = await make_side(f"券时限买方{clock.timestamp():.0f}")
    day = clock.days_from_today(10)
    vouchers = [
        await market.issue_voucher(
            staff.user_id,
            holder_slug=buyer.slug,
            kind="service",
            amount="100",
            categories=["tax"],
            valid_through=day.isoformat(),
        )
        for _ in range(2)
    ]
    first, second = [await market.buy_listing(listing.id, buyer.ctx) for _ in range(2)]
    with at(clock.end_of_day(day) - SECOND):  # 23:59:59 in Beijing on its last day
        paid, _ = await market.pay_order(first.id, buyer.ctx, voucher_id=vouchers[0].id)
    assert paid.voucher_id == vouchers[0].id and paid.buyer_paid_fen == 40000
    with at(clock.end_of_day(day)), pytest.raises(CanalError) as expired:
        await market.pay_order(second.id, buyer.ctx, voucher_id=vouchers[1].id)
    assert expired.value.status in (409, 422), expired.value.code
    unpaid = await market.get_order(second.id, buyer.ctx)
    assert (unpaid.paid, unpaid.voucher_id) == (False, None)
    # Issuing one "valid through" a day that has already ended in Beijing is refused, though
    # UTC's date is still that day.
    with at(clock.end_of_day(day) + dt.timedelta(minutes=30)), pytest.raises(CanalError) as past:
        await market.issue_voucher(
            staff.user_id,
            holder_slug=buyer.slug,
            kind="service",
            amount="100",
            categories=["tax"],
            valid_through=day.isoformat(),
        )
    assert {e.code for e in past.value.errors} == {"date_past"}


async def test_an_application_shows_its_history_in_beijing_time(client):
    """The history read 17:32 on 12-07 (UTC) where the order pages read 01:32 on 12-08."""
    from tests.factories import sign_in

    _, _, gctx = await org("government")
    policy_id = await services.create_policy(
        gctx, services.parse_policy(policy_json(CRITERIA, materials=[])), publish=True
    )
    owner, ent, ectx = await org("enterprise")
    await services.set_facts(
        ectx, {"region_code": "371502", "employees": 30, "certifications": [certificate()]}
    )
    await services.rematch_enterprise(ent.id)
    # 17:32 UTC the day before today, which is 01:32 today in Beijing.
    evening = clock.start_of_day(clock.today()) + dt.timedelta(hours=1, minutes=32)
    with at(evening):
        app_id = await services.apply(ectx, policy_id, contact="王", note="", materials=[])
    await sign_in(client, owner)
    page = await client.get(f"/t/{ent.slug}/m/policy/applications/{app_id}")
    assert page.status_code == 200
    shown = clock.local(evening).strftime("%Y-%m-%d %H:%M")
    assert shown.endswith("01:32") and shown in page.text
    assert evening.strftime("%Y-%m-%d %H:%M") not in page.text
