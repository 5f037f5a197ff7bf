"""The whole test command (``./run test``): lint, format, types, then the test suite.

Each step runs even if an earlier one failed, so one CI run reports every problem; the exit
code is non-zero if any step failed. pytest's "no tests collected" (exit 5) counts as failure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
    if results:
        print("\n" + ", ".join(f"{n}: {'ok' if c == 0 else 'FAILED'}" for n, c in results.items()))
    # pytest runs last and prints nothing after it: its summary ("N passed …") closes the run.
    print(f"\n=== pytest: {' '.join(['pytest', *extra])}", flush=True)
    results["pytest"] = subprocess.call([py, "-m", "pytest", *extra], cwd=ROOT)
    return 1 if any(code != 0 for code in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
