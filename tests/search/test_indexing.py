"""Indexing jobs through a real arq worker, rebuilding from the database, and the pinned binary."""

from __future__ import annotations

import shutil
import uuid

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from canal.platform import db
from canal.platform.http.context import TenantContext, TenantRef
from canal.platform.search import jobs
from canal.platform.search.local import (
    DEFAULT_BINARY,
    EmbeddedMeilisearch,
    MeilisearchBinaryError,
)
from canal.platform.search.services import SearchService
from tests.factories import make_tenant, make_user, unique


def context(tenant_id: uuid.UUID) -> TenantContext:
    ref = TenantRef(id=tenant_id, slug="x", name="x", kind="enterprise", status="active")
    return TenantContext(tenant=ref, user_id=uuid.uuid4())


async def _found(search: SearchService, tag: str, caller: TenantContext | None) -> dict:
    result = await search.search("listings", "", caller=caller, filters={"tags": tag})
    return {hit["id"]: hit for hit in result.hits}


async def _run_worker(runtime, queue: str) -> None:
    worker = Worker(
        functions=list(jobs.JOBS),
        redis_settings=RedisSettings.from_dsn(runtime.redis_url),
        queue_name=queue,
        burst=True,
        handle_signals=False,
        max_tries=3,
    )
    await worker.main()
    await worker.close()


async def test_jobs_index_update_unpublish_and_delete_idempotently(search, runtime):
    tag, owner = unique("job"), context(uuid.uuid4())
    doc = {
        "id": f"{tag}-1",
        "tenant_id": str(owner.tenant_id),
        "visibility": "public",
        "title": "园区停车服务",
        "tags": [tag],
        "category": "service",
        "region": "苏州",
        "price": 10,
    }
    queue = unique("q")
    pool = await create_pool(RedisSettings.from_dsn(runtime.redis_url))
    try:
        # The same job twice (arq may retry): one document.
        for _ in range(2):
            await pool.enqueue_job("search_index", "listings", [doc], _queue_name=queue)
        await _run_worker(runtime, queue)
        assert set(await _found(search, tag, None)) == {doc["id"]}
        # Un-publishing: the owner still finds it, nobody else does.
        await pool.enqueue_job(
            "search_index", "listings", [{**doc, "visibility": "tenant"}], _queue_name=queue
        )
        await _run_worker(runtime, queue)
        assert await _found(search, tag, None) == {}
        assert await _found(search, tag, context(uuid.uuid4())) == {}
        assert set(await _found(search, tag, owner)) == {doc["id"]}
        for _ in range(2):
            await pool.enqueue_job("search_delete", "listings", [doc["id"]], _queue_name=queue)
        await _run_worker(runtime, queue)
        assert await _found(search, tag, owner) == {}
    finally:
        await pool.aclose()


async def test_index_documents_waits_for_commit(search, runtime, app):
    tag, owner = unique("commit"), context(uuid.uuid4())
    doc = {
        "id": f"{tag}-1",
        "tenant_id": str(owner.tenant_id),
        "visibility": "public",
        "title": "commit",
        "tags": [tag],
        "category": "office",
        "region": "常州",
        "price": 1,
    }
    # Through the transactional outbox and the platform's own worker, like production.
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await jobs.index_documents("listings", [doc])
            raise RuntimeError("rolled back")
    await _run_platform_worker(runtime)
    assert await _found(search, tag, None) == {}
    async with db.transaction():
        await jobs.index_documents("listings", [doc])
    await _run_platform_worker(runtime)
    assert set(await _found(search, tag, None)) == {doc["id"]}
    async with db.transaction():
        await jobs.delete_documents("listings", [doc["id"]])
    await _run_platform_worker(runtime)
    assert await _found(search, tag, None) == {}


async def _run_platform_worker(runtime) -> None:
    from canal.platform.jobs import make_worker

    worker = make_worker(runtime, burst=True)
    await worker.main()
    await worker.close()


async def test_reindex_rebuilds_organisations_from_the_database(search, app):
    owner = await make_user()
    name = f"运河科技{unique('')[:6]}有限公司"
    tenant = await make_tenant(owner, name=name)
    tenant_id = tenant.id
    counts = await search.reindex_all()
    assert counts["organisations"] >= 1 and "listings" not in counts
    hits = (await search.search("organisations", name, caller=None)).hits
    assert [h["id"] for h in hits][:1] == [str(tenant_id)]
    # Only public fields: never the credit code, status or creator.
    assert set(hits[0]) == {"id", "tenant_id", "visibility", "name", "slug", "kind"}
    # Lose the index entirely; the rebuild brings everything back.
    await search.drop("organisations")
    await search.reindex("organisations")
    found = (await search.search("organisations", "运河科技", caller=None)).hits
    assert str(tenant_id) in {h["id"] for h in found}
    # The job does the same.
    assert (await jobs.search_reindex({"search": search}, "organisations"))["organisations"] >= 1


def test_tampered_binary_is_refused(tmp_path):
    if not DEFAULT_BINARY.exists():
        pytest.skip("Meilisearch binary not installed (cd frontend && npm ci)")
    copy = tmp_path / "meilisearch"
    shutil.copyfile(DEFAULT_BINARY, copy)
    with copy.open("ab") as handle:
        handle.write(b"\0")
    server = EmbeddedMeilisearch(tmp_path / "var", binary=copy)
    with pytest.raises(MeilisearchBinaryError, match="SHA-256") as caught:
        server.start()
    assert "Refusing to run" in str(caught.value)
    assert not (tmp_path / "var" / "meilisearch" / "meilisearch.pid").exists()
    missing = EmbeddedMeilisearch(tmp_path / "var", binary=tmp_path / "nope")
    with pytest.raises(MeilisearchBinaryError, match="npm ci"):
        missing.start()
