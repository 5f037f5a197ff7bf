"""The whole test command (``./run test``): lint, format, types, import contracts, the
date-sensitive tests with the clock moved, then the test suite.

Each step runs even if an earlier one failed, so one CI run reports every problem; the exit
code is non-zero if any step failed. pytest's "no tests collected" (exit 5) counts as failure.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from canal.platform import clock

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [
    "platform",
    "tenants",
    "marketplace",
    "park-services",
    "data-exchange",
    "frontend",
    "tests",
    "bench",
]


def _step(name: str, argv: list[str]) -> int:
    started = time.monotonic()
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    code = subprocess.call(argv, cwd=ROOT)
    print(
        f"=== {name}: {'ok' if code == 0 else f'FAILED ({code})'} "
        f"in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    return code


# The packages mypy checks (their roots are on ``mypy_path`` in pyproject.toml).
TYPED = (
    "canal.platform",
    "canal.tenants",
    "canal.park",
    "canal.exchange",
    "canal.marketplace",
)


# Tests of rules that turn on a date (policy windows and deadlines, vouchers, quotes and
# auto-confirm days, subscriptions and renewals, grants and their expiry, backups, sessions,
# tokens, invitations), run again with Canal's clock moved (decision 0005). The demo seeding
# moves its own clock (tests/test_demo.py); tests/test_clock.py checks the real one.
DATE_SENSITIVE = [
    "tests/policy",
    "tests/marketplace/test_policy_vouchers.py",
    "tests/marketplace/test_services_options_vouchers.py",
    "tests/marketplace/test_services_orders.py",
    "tests/marketplace/stripe/test_services_money.py",
    "tests/exchange/test_journey.py",
    "tests/exchange/stripe/test_paying.py",
    "tests/exchange/bank/test_backup_archive.py",
    "tests/exchange/bank/test_api.py",
    "tests/billing",
    "tests/identity/test_tokens.py",
    "tests/identity/test_password_reset.py",
    "tests/tenants/test_invitations.py",
    "tests/tenants/test_modules_operator.py",
]


def moved_clocks(now: dt.datetime) -> list[tuple[str, float, str]]:
    """(label, clock offset in seconds, TZ) for the moved runs: 2027-06-30 23:30 UTC, already
    1 July in Beijing (a month, a quarter and a half-year turn there first), with the machine in
    Beijing's zone; and a year and a half from now, with the machine in UTC."""
    july = dt.datetime(2027, 6, 30, 23, 30, tzinfo=dt.UTC)
    return [
        ("2027-06-30T23:30Z", (july - now).total_seconds(), "Asia/Shanghai"),
        ("+18 months", 548 * 86400.0, "UTC"),
    ]


def _moved_step(label: str, offset: float, zone: str) -> int:
    env = dict(
        os.environ,
        CANAL_CLOCK_OFFSET_SECONDS=f"{offset:.0f}",
        TZ=zone,
        CANAL_TEST_DATABASE=os.environ.get("CANAL_TEST_DATABASE", "canal_test") + "_moved",
    )
    # A subscription's period comes from Stripe's clock, which stays real (like S3's and
    # Meilisearch's): those few tests rehearse nothing here and are left to the real-clock run.
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += ["-m", "not stripe_clock", *DATE_SENSITIVE]
    started = time.monotonic()
    print(f"\n=== pytest, clock at {label} (TZ={zone}): {' '.join(argv[2:])}", flush=True)
    code = subprocess.call(argv, cwd=ROOT, env=env)
    print(
        f"=== pytest, clock at {label}: {'ok' if code == 0 else f'FAILED ({code})'} "
        f"in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    return code


# lint-imports, run with this interpreter (its console script may not be on PATH).
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    py = sys.executable
    results: dict[str, int] = {}
    if not extra:  # a focused run (./run test tests/x.py) skips the whole-tree checks
        present = [s for s in SOURCES if (ROOT / s).exists()]
        results["ruff check"] = _step("ruff check", [py, "-m", "ruff", "check", *present])
        results["ruff format"] = _step(
            "ruff format", [py, "-m", "ruff", "format", "--check", *present]
        )
        results["mypy"] = _step("mypy", [py, "-m", "mypy", *(a for p in TYPED for a in ("-p", p))])
        # The layering's import contracts ([tool.importlinter] in pyproject.toml).
        results["import contracts"] = _step(
            "import contracts", [py, "-c", LINT_IMPORTS, "--no-logo", "--no-cache"]
        )
        # The real-clock check of the same tests is the whole suite below.
        for label, offset, zone in moved_clocks(clock.wall_now()):
            results[f"pytest at {label}"] = _moved_step(label, offset, zone)
    if results:
        print("\n" + ", ".join(f"{n}: {'ok' if c == 0 else 'FAILED'}" for n, c in results.items()))
    # pytest runs last and prints nothing after it: its summary ("N passed …") closes the run.
    print(f"\n=== pytest: {' '.join(['pytest', *extra])}", flush=True)
    results["pytest"] = subprocess.call([py, "-m", "pytest", *extra], cwd=ROOT)
    return 1 if any(code != 0 for code in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
