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

import hashlib
import json
import os
import re
import sys
from pathlib import Path
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


async def fresh_database(runtime: Any) -> None:
    """Drop the runtime's database and make it anew, migrated (``canal migrate``'s path).

    A smoke run clones it instead from a migrated template database, which is made once per
    version of the code (its name carries a hash of every Python file under ``*/canal/``) and
    then reused: a clone takes a fraction of a second, a migration several seconds per
    benchmark.
    """
    from canal.platform import db
    from canal.platform.runtime import migrate

    settings = runtime.settings
    await db.drop_database(settings, runtime.server_url)
    if not SMOKE:
        await migrate(runtime)
        return
    import asyncpg

    family = scratch("canal_bench_tpl")
    template = f"{family}_{_code_hash()}"
    making = f"{family}_making"
    admin = await asyncpg.connect(db._with_user_and_db(runtime.server_url, None, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
            # Templates of older code go; "making" is an interrupted build's.
            for (name,) in await admin.fetch("SELECT datname FROM pg_database"):
                if re.fullmatch(re.escape(family) + "_([0-9a-f]{8}|making)", name):
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            # Made under a temporary name and renamed once complete: a half-made template
            # (an interrupted run) is never cloned.
            await migrate(_runtime_for(runtime, making))
            await admin.execute(f'ALTER DATABASE "{making}" RENAME TO "{template}"')
        await admin.execute(f'CREATE DATABASE "{settings.database_name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    db.configure(runtime.owner_dsn)  # where migrate(runtime) leaves the engine


def _code_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parents[1].glob("*/canal/**/*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def _runtime_for(runtime: Any, database_name: str) -> Any:
    """The same servers, another database."""
    import dataclasses

    import msgspec

    from canal.platform import db

    settings = msgspec.structs.replace(runtime.settings, database_name=database_name)
    return dataclasses.replace(
        runtime,
        settings=settings,
        owner_dsn=db.owner_url(settings, runtime.server_url),
        app_dsn=db.app_url(settings, runtime.server_url),
    )


def finish(result: dict[str, Any], *, correct: bool = True) -> int:
    """Print the one JSON line (the last line of output) and give the exit status: non-zero
    when the goal is missed (except in a smoke run) or an answer was wrong (``correct``
    false: a smoke run fails too)."""
    result = {"bench": result["bench"], **({"smoke": True} if SMOKE else {}), **result}
    print(json.dumps(result, ensure_ascii=False), flush=True)
    if not correct:
        return 1
    if SMOKE:
        return 0
    return 0 if result.get("goal_met", True) else 1
