"""HTTP baseline: a bare Litestar JSON endpoint vs Canal's full tenant-scoped path.

The tenant-scoped request (`GET /api/v1/t/{slug}/context`) resolves the tenant from the path,
authenticates a bearer API token, runs the casbin check, and reads the tenant's module
subscriptions with one Piccolo query under row-level security. Both servers run as single
uvicorn processes on loopback, loaded in turn by wrk (1 thread, 32 connections) for several
rounds in one run; the figures are the median round. Goal: tenant rps ≥ 0.5 × bare rps.
A third figure, ``stack_rps`` (``/healthz`` on the full app: every middleware and the guard,
no database), splits the gap into framework overhead and the tenant work itself.

Run: ./run bench http_baseline   (or .venv/bin/python bench/http_baseline.py; ``--smoke``:
one 1-second round on each side, its own scratch database)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchkit
import msgspec

ROOT = Path(__file__).resolve().parents[1]
DATABASE = benchkit.scratch("canal_bench")
CONNECTIONS = 32
SECONDS = benchkit.size(int(os.environ.get("BENCH_SECONDS", "8")), 1)
ROUNDS = benchkit.size(int(os.environ.get("BENCH_ROUNDS", "3")), 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def prepare_data() -> tuple[str, str]:
    """A fresh database with one user, one enterprise tenant and one API token."""
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.platform.identity.secrets import new_api_token, token_hash
    from canal.platform.identity.services import create_user
    from canal.platform.identity.tables import ApiToken
    from canal.platform.runtime import prepare
    from canal.platform.settings import load_settings
    from canal.tenants.services import create_tenant
    from canal.tenants.tables import ModuleSubscription
    from canal.tenants.validators import credit_code_check_char

    settings = msgspec.structs.replace(load_settings(), database_name=DATABASE)
    runtime = prepare(settings)
    await benchkit.fresh_database(runtime)
    await db.start_pool(runtime.app_dsn, min_size=1, max_size=2)
    try:
        await access().reload()
        user_id = await create_user("bench@example.cn", "bench-password-123", "压测用户")
        code17 = "91371502MA3BENCH7"
        tenant = await create_tenant(
            creator_id=user_id,
            name="压测企业",
            slug="bench-co",
            kind="enterprise",
            credit_code=code17 + credit_code_check_char(code17),
        )
        async with db.tenant_scope(tenant.id, user_id):
            for key in ("policy", "services"):
                await ModuleSubscription.insert(
                    ModuleSubscription(tenant_id=tenant.id, module_key=key)
                )
        token, prefix = new_api_token()
        await ApiToken.insert(
            ApiToken(
                user=user_id,
                tenant=tenant.id,
                name="bench",
                prefix=prefix,
                token_hash=token_hash(token),
            )
        )
    finally:
        await db.close_pool()
    return tenant.slug, token


def start_server(which: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CANAL_DATABASE_NAME=DATABASE, CANAL_LOG_JSON="false")
    # The server's log goes to a file: an unread pipe would fill up and stall the server.
    logfile = (ROOT / "var" / f"bench-{which}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "http_server.py"), which, str(port)],
        env=env,
        stdout=logfile,
        stderr=logfile,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError((ROOT / "var" / f"bench-{which}.log").read_text()[-3000:])
        time.sleep(0.1)
    raise RuntimeError(f"{which} server did not start")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(url: str, headers: list[str]) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency"]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url} answered {non2xx.group(1)} errors:\n{out}")
    return {"rps": rps, "p99_ms": p99}


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed (./run bench installs it from Debian's packages)")
        return 2
    slug, token = asyncio.run(prepare_data())
    bare_port, app_port = free_port(), free_port()
    servers = [start_server("bare", bare_port), start_server("app", app_port)]
    try:
        tenant_url = f"http://127.0.0.1:{app_port}/api/v1/t/{slug}/context"
        auth = [f"Authorization: Bearer {token}"]
        probe = subprocess.run(
            ["wrk", "-t1", "-c1", "-d1s", "-H", auth[0], tenant_url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "Non-2xx" in probe:
            raise RuntimeError(f"tenant endpoint refused the bench token:\n{probe}")
        bare_runs, stack_runs, tenant_runs = [], [], []
        for _ in range(ROUNDS):  # interleaved, so drift on a noisy machine hits every side
            bare_runs.append(load(f"http://127.0.0.1:{bare_port}/bare", []))
            # The whole middleware stack and guard, no database: where the rest goes.
            stack_runs.append(load(f"http://127.0.0.1:{app_port}/healthz", []))
            tenant_runs.append(load(tenant_url, auth))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=10)
    bare_rps = statistics.median(r["rps"] for r in bare_runs)
    tenant_rps = statistics.median(r["rps"] for r in tenant_runs)
    return benchkit.finish(
        {
            "bench": "http_baseline",
            "workload": f"wrk 1 thread x {CONNECTIONS} connections x {SECONDS}s, "
            f"{ROUNDS} rounds each",
            "bare_rps": round(bare_rps),
            "bare_p99_ms": round(statistics.median(r["p99_ms"] for r in bare_runs), 2),
            "stack_rps": round(statistics.median(r["rps"] for r in stack_runs)),
            "tenant_rps": round(tenant_rps),
            "tenant_p99_ms": round(statistics.median(r["p99_ms"] for r in tenant_runs), 2),
            "ratio": round(tenant_rps / bare_rps, 3),
            "goal_ratio_min": 0.5,
            "goal_met": tenant_rps / bare_rps >= 0.5,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
