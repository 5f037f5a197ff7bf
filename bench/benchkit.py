"""What every benchmark shares: the smoke switch, scratch names, and the one JSON line.

A benchmark run with ``--smoke`` (or ``CANAL_BENCH_SMOKE=1`` in its environment) runs its
whole path at a tiny size: it checks that the benchmark still runs and still prints its JSON
line, not that it meets its goal, so it exits 0 whatever the figures say.
``tests/test_bench_smoke.py`` runs every benchmark that way; ``./run bench`` runs them all at
full size.

A smoke run keeps its scratch database, search indexes and buckets apart from a full run's
(``scratch()``), so it never spoils a kept 100,000-document index, and from other smoke runs
(``CANAL_BENCH_TAG``, which the smoke test sets from its own test database name).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TypeVar

T = TypeVar("T")

if "--smoke" in sys.argv[1:]:
    sys.argv.remove("--smoke")
    # Child processes (servers, workers) a benchmark starts inherit the switch.
    os.environ["CANAL_BENCH_SMOKE"] = "1"
SMOKE = os.environ.get("CANAL_BENCH_SMOKE", "") not in ("", "0", "false")


def size(full: T, smoke: T) -> T:
    """The full workload, or the tiny one in a smoke run."""
    return smoke if SMOKE else full


def scratch(name: str) -> str:
    """The name of a scratch database or search-index prefix: ``name`` itself in a full run,
    ``name_<tag>`` in a smoke run (tag ``smoke`` unless ``CANAL_BENCH_TAG`` says otherwise)."""
    if not SMOKE:
        return name
    tag = os.environ.get("CANAL_BENCH_TAG", "smoke")
    return f"{name}_{tag}".lower()


def bucket_prefix(full: str) -> str:
    """An S3 bucket-name prefix (no underscores allowed there) for ``scratch`` resources."""
    return scratch(full).replace("_", "-")


def finish(result: dict[str, Any]) -> int:
    """Print the one JSON line (the last line of output) and give the exit status: non-zero
    when the goal is missed, except in a smoke run."""
    result = {"bench": result["bench"], **({"smoke": True} if SMOKE else {}), **result}
    print(json.dumps(result, ensure_ascii=False), flush=True)
    if SMOKE:
        return 0
    return 0 if result.get("goal_met", True) else 1
