"""The one clock: every reading of the time in Canal goes through here.

Stored timestamps are aware UTC datetimes (``now()``). Every date a person sees and every date
a rule decides on — application windows, deadlines, voucher and grant expiries, "today" — is a
day in the display time zone (``CANAL_DISPLAY_TIMEZONE``, Asia/Shanghai), from ``today()``:
between 16:00 and 24:00 UTC it is already tomorrow in Beijing.

Nothing else calls ``datetime.now()``, ``date.today()`` or ``time.time()`` (ruff's banned-API
and DTZ rules keep it so, ``tests/test_clock.py`` proves the rule bites), and SQL compares with
a parameter from ``now()`` rather than the database's own ``now()``, which no test can move.

Two ways to move it: ``time-machine`` in a test (it moves every clock of the process, ours
included), or ``CANAL_CLOCK_OFFSET_SECONDS`` for a whole process tree (``./run test`` runs the
date-sensitive tests and the demo seeding again with the clock a few months and a year and a
half ahead). The offset moves only Canal's clock — the servers and the libraries that sign
requests for them keep real time, as they do in production — so it is for rehearsing a date,
never for production.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from zoneinfo import ZoneInfo

from canal.platform.settings import get_settings

UTC = dt.UTC


@lru_cache(maxsize=1)
def display_tz() -> dt.tzinfo:
    """The time zone people here read and rules decide in (one for the whole product)."""
    return ZoneInfo(get_settings().display_timezone)


def zone_name() -> str:
    """The display time zone's IANA name, for SQL's ``AT TIME ZONE {}`` (a parameter)."""
    return get_settings().display_timezone


@lru_cache(maxsize=1)
def _offset() -> dt.timedelta:
    return dt.timedelta(seconds=get_settings().clock_offset_seconds)


# A block of code that runs "as of" another moment (``as_of``); per task, so it never leaks.
_shift: ContextVar[dt.timedelta] = ContextVar("canal_clock_shift", default=dt.timedelta(0))


def now() -> dt.datetime:
    """This moment, as an aware UTC datetime (what is stored)."""
    return dt.datetime.now(UTC) + _offset() + _shift.get()


def timestamp() -> float:
    """This moment as seconds since the epoch (rate windows, signed links of our own)."""
    return time.time() + (_offset() + _shift.get()).total_seconds()


@contextmanager
def as_of(moment: dt.datetime) -> Iterator[None]:
    """Run a block as if Canal's clock read ``moment`` when it started (it ticks on from
    there). The demo seeding writes a year of history through the real services with it;
    nothing that serves a request uses it."""
    token = _shift.set(_shift.get() + (moment - now()))
    try:
        yield
    finally:
        _shift.reset(token)


def wall_timestamp() -> float:
    """The real time, which ``CANAL_CLOCK_OFFSET_SECONDS`` never moves: for what is checked
    against someone else's clock — TOTP codes from a person's phone, Stripe's event times and
    signatures, Meilisearch's token expiry, arq's queue scores. (time-machine moves it too.)"""
    return time.time()


def wall_now() -> dt.datetime:
    """``wall_timestamp()`` as an aware UTC datetime."""
    return dt.datetime.now(UTC)


def local_now() -> dt.datetime:
    """This moment in the display time zone."""
    return now().astimezone(display_tz())


def today() -> dt.date:
    """Today as a person here says it: the date in the display time zone, not the machine's
    and not UTC's."""
    return local_now().date()


def local(moment: dt.datetime) -> dt.datetime:
    """A stored moment in the display time zone (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(display_tz())


def local_date(moment: dt.datetime) -> dt.date:
    """The day, in the display time zone, on which a stored moment fell."""
    return local(moment).date()


def start_of_day(day: dt.date) -> dt.datetime:
    """The first moment of a local day, as UTC (e.g. 2026-12-08 → 2026-12-07T16:00Z)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=display_tz()).astimezone(UTC)


def end_of_day(day: dt.date) -> dt.datetime:
    """The first moment *after* a local day, as UTC: something valid through ``day`` is valid
    while ``now() < end_of_day(day)``."""
    return start_of_day(day + dt.timedelta(days=1))


def days_from_today(days: int) -> dt.date:
    """A local date ``days`` after (negative: before) today."""
    return today() + dt.timedelta(days=days)
