"""The one clock: Beijing dates for rules, UTC for storage, a lint that keeps it the only one."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine

from canal.platform import clock
from canal.platform.demo import DEMO_WRITTEN_ON, shift_dates

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC


def test_today_is_the_beijing_date_not_the_machines_or_utcs() -> None:
    # 15:59:59 UTC is 23:59:59 in Beijing: still the same day; a second later it is tomorrow.
    with time_machine.travel(dt.datetime(2027, 6, 30, 15, 59, 59, tzinfo=UTC), tick=False):
        assert clock.today() == dt.date(2027, 6, 30)
        assert clock.now() == dt.datetime(2027, 6, 30, 15, 59, 59, tzinfo=UTC)
    with time_machine.travel(dt.datetime(2027, 6, 30, 16, 0, 0, tzinfo=UTC), tick=False):
        assert clock.today() == dt.date(2027, 7, 1)
    with time_machine.travel(dt.datetime(2027, 6, 30, 23, 30, tzinfo=UTC), tick=False):
        assert clock.today() == dt.date(2027, 7, 1)
        assert clock.local_now().hour == 7 and clock.local_now().utcoffset() == dt.timedelta(
            hours=8
        )


def test_today_ignores_the_machines_time_zone(monkeypatch) -> None:
    # TZ decides what a naive datetime.now() says; the clock must not care.
    import time

    for zone in ("UTC", "America/Los_Angeles", "Asia/Shanghai", "Pacific/Kiritimati"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        with time_machine.travel(dt.datetime(2028, 2, 28, 20, 0, tzinfo=UTC), tick=False):
            assert clock.today() == dt.date(2028, 2, 29)  # a leap day, already, in Beijing
    monkeypatch.delenv("TZ")
    time.tzset()


def test_days_have_beijing_edges() -> None:
    day = dt.date(2026, 12, 8)
    assert clock.start_of_day(day) == dt.datetime(2026, 12, 7, 16, 0, tzinfo=UTC)
    assert clock.end_of_day(day) == dt.datetime(2026, 12, 8, 16, 0, tzinfo=UTC)
    assert clock.local_date(dt.datetime(2026, 12, 7, 17, 32, tzinfo=UTC)) == day
    assert clock.local_date(dt.datetime(2026, 12, 7, 15, 59, tzinfo=UTC)) == dt.date(2026, 12, 7)
    naive = dt.datetime(2026, 12, 7, 17, 32)  # noqa: DTZ001 — a naive value is taken as UTC
    assert clock.local(naive).isoformat() == "2026-12-08T01:32:00+08:00"


def test_the_offset_setting_moves_canals_clock_only(monkeypatch) -> None:
    from canal.platform.settings import get_settings

    ahead = 400 * 86400.0
    real = clock.wall_now()  # the offset never moves the wall time
    get_settings.cache_clear()
    clock._offset.cache_clear()
    monkeypatch.setenv("CANAL_CLOCK_OFFSET_SECONDS", str(ahead))
    try:
        moved = clock.now()
        assert abs((moved - real).total_seconds() - ahead) < 60
        assert abs(clock.timestamp() - moved.timestamp()) < 60
    finally:
        monkeypatch.delenv("CANAL_CLOCK_OFFSET_SECONDS")
        get_settings.cache_clear()
        clock._offset.cache_clear()
    assert abs((clock.now() - real).total_seconds()) < 60


def test_demo_dates_move_to_the_day_of_seeding() -> None:
    data = {
        "window_opens": "2026-11-10",
        "items": [{"valid_to": "2028-02-29"}, "not a date", "2026-13-40"],
        "amount": 5,
    }
    moved = shift_dates(data, 30)
    assert moved == {
        "window_opens": "2026-12-10",
        "items": [{"valid_to": "2028-03-30"}, "not a date", "2026-13-40"],
        "amount": 5,
    }
    with time_machine.travel(dt.datetime(2031, 3, 1, 2, 0, tzinfo=UTC), tick=False):
        today = shift_dates({"d": DEMO_WRITTEN_ON.isoformat()})["d"]
    assert today == "2031-03-01"


@pytest.mark.slow  # runs ruff in a subprocess
def test_the_lint_refuses_a_second_clock(tmp_path) -> None:
    """ruff (in ./run test) flags every way of reading the time outside the clock module."""
    offender = tmp_path / "offender.py"
    offender.write_text(
        "import datetime as dt\n"
        "import time\n"
        "from datetime import date, datetime\n\n"
        "a = dt.date.today()\n"
        "b = datetime.now(dt.UTC)\n"
        "c = date.today()\n"
        "d = time.time()\n"
        "e = dt.datetime.utcnow()\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--no-cache",
            "--output-format",
            "concise",
            str(offender),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    flagged = {int(line.split(":")[1]) for line in done.stdout.splitlines() if "TID251" in line}
    assert flagged == {5, 6, 7, 8, 9}, done.stdout
