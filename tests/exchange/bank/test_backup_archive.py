"""Organisations' backups (schedule, retention, restore), the cold archive (retrieval is a
job; "retrieving" until it is done) and the automatic purge of the recycle bin."""

from __future__ import annotations

import uuid

import httpx

from canal.exchange.bank import jobs, services
from canal.platform import db
from canal.platform.storage.services import object_store
from canal.platform.storage.tables import StoredObject

API = "/api/v1"


async def _upload(client, base: str, name: str, data: bytes, folder: str | None = None):
    params = {"name": name, **({"folder": folder} if folder else {})}
    answer = await client.post(f"{API}{base}/upload", params=params, content=data)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _content(client, base: str, file_id: str) -> bytes:
    answer = await client.get(f"{API}{base}/files/{file_id}/download")
    assert answer.status_code == 200, answer.text
    async with httpx.AsyncClient() as s3:
        return (await s3.get(answer.json()["url"])).content


async def _purposes(tenant_id: uuid.UUID) -> dict[str, int]:
    async with db.tenant_scope(tenant_id):
        rows = await StoredObject.raw(
            "SELECT purpose, count(*) AS n FROM stored_objects WHERE tenant_id = {} "
            "GROUP BY purpose",
            tenant_id,
        )
    return {r["purpose"]: int(r["n"]) for r in rows}


async def test_archive_then_retrieve_through_the_job(owner_client, org):
    made = await _upload(owner_client, org.base, "年报.txt", "二〇二五年年报".encode())
    file_id = made["id"]
    archived = await owner_client.post(f"{API}{org.base}/files/{file_id}/archive")
    assert archived.status_code == 200 and archived.json()["storage_class"] == "cold"
    assert await _purposes(org.ctx.tenant_id) == {"bank-cold": 1}
    refused = await owner_client.get(f"{API}{org.base}/files/{file_id}/download")
    assert refused.status_code == 409 and refused.json()["code"] == "file_archived"

    pending = await owner_client.post(f"{API}{org.base}/files/{file_id}/retrieve")
    assert pending.json()["storage_class"] == "retrieving"
    page = await owner_client.get(f"{org.base}/files/{file_id}")
    assert "取回中" in page.text  # the owner reads Chinese
    # The worker's job (run here in-process against the same servers).
    done = await jobs.bank_retrieve({}, str(org.ctx.tenant_id), file_id, str(org.owner.user_id))
    assert done == 1
    assert (
        await jobs.bank_retrieve({}, str(org.ctx.tenant_id), file_id, str(org.owner.user_id)) == 0
    )
    assert (await owner_client.get(f"{API}{org.base}/files/{file_id}")).json()["file"][
        "storage_class"
    ] == "standard"
    assert await _content(owner_client, org.base, file_id) == "二〇二五年年报".encode()
    assert await _purposes(org.ctx.tenant_id) == {"bank": 1}


async def test_backups_keep_the_newest_copies_and_restore(owner_client, org):
    folder = (await owner_client.post(f"{API}{org.base}/folders", json={"name": "财务"})).json()
    sub = (
        await owner_client.post(
            f"{API}{org.base}/folders", json={"name": "凭证", "parent_id": folder["id"]}
        )
    ).json()
    a = await _upload(owner_client, org.base, "a.csv", b"x,y\n1,2\n", folder["id"])
    b = await _upload(owner_client, org.base, "b.csv", b"k\n9\n", sub["id"])
    bad = await owner_client.post(
        f"{API}{org.base}/folders/{folder['id']}/backup", json={"schedule": "hourly", "keep": 0}
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"schedule", "keep"}
    settings = await owner_client.post(
        f"{API}{org.base}/folders/{folder['id']}/backup", json={"schedule": "daily", "keep": 2}
    )
    assert settings.status_code == 200 and settings.json()["backup_schedule"] == "daily"

    for _ in range(3):
        run = await owner_client.post(f"{API}{org.base}/folders/{folder['id']}/backup/run")
        assert run.status_code == 201 and run.json()["files"] == 2
    kept = (await owner_client.get(f"{API}{org.base}/folders/{folder['id']}")).json()["backups"]
    assert len(kept) == 2  # retention: the oldest copy was pruned, objects included
    assert (await _purposes(org.ctx.tenant_id))["bank-backup"] == 4

    # Change a file, delete the other, then restore from the newest kept copy.
    await _upload(owner_client, org.base, "a.csv", b"x,y\nchanged\n", folder["id"])
    await owner_client.post(f"{API}{org.base}/files/{b['id']}/delete")
    restored = await owner_client.post(f"{API}{org.base}/backups/{kept[0]['id']}/restore")
    assert restored.status_code == 200 and restored.json() == {"count": 2}
    assert await _content(owner_client, org.base, a["id"]) == b"x,y\n1,2\n"
    detail = (await owner_client.get(f"{API}{org.base}/files/{a['id']}")).json()
    assert detail["versions"][0]["note"].startswith("backup ")
    listing = (await owner_client.get(f"{API}{org.base}/folders/{folder['id']}")).json()
    assert sorted(f["name"] for f in listing["listing"]["files"]) == ["a.csv", "b.csv"]


async def test_scheduled_backup_runs_when_due(owner_client, org):
    folder = (await owner_client.post(f"{API}{org.base}/folders", json={"name": "日备"})).json()
    await _upload(owner_client, org.base, "d.txt", b"daily", folder["id"])
    await owner_client.post(
        f"{API}{org.base}/folders/{folder['id']}/backup", json={"schedule": "daily", "keep": 3}
    )
    fid = uuid.UUID(folder["id"])
    assert (org.ctx.tenant_id, fid) not in await services.due_backups()
    async with db.tenant_scope(org.ctx.tenant_id):
        await StoredObject.raw(
            "UPDATE bank_folders SET backup_next_at = now() - interval '1 minute' WHERE id = {}",
            fid,
        )
    assert (org.ctx.tenant_id, fid) in await services.due_backups()
    assert await jobs.bank_backup_folder({}, str(org.ctx.tenant_id), str(fid)) == "done"
    # Done: the next one is a day away, so a second run of the same job does nothing.
    assert await jobs.bank_backup_folder({}, str(org.ctx.tenant_id), str(fid)) == "not due"
    kept = (await owner_client.get(f"{API}{org.base}/folders/{fid}")).json()["backups"]
    assert [b["trigger"] for b in kept] == ["schedule"]


async def test_bin_items_are_purged_after_the_retention(owner_client, org):
    old = await _upload(owner_client, org.base, "old.txt", b"old")
    new = await _upload(owner_client, org.base, "new.txt", b"new")
    for made in (old, new):
        await owner_client.post(f"{API}{org.base}/files/{made['id']}/delete")
    async with db.tenant_scope(org.ctx.tenant_id):
        await StoredObject.raw(
            "UPDATE bank_files SET deleted_at = now() - interval '31 days' WHERE id = {}",
            uuid.UUID(old["id"]),
        )
    keys_before = await object_store().list_keys("bank", f"tenants/{org.ctx.tenant_id}/")
    assert await jobs.bank_purge_trash({}) >= 1
    names = [i["name"] for i in (await owner_client.get(f"{API}{org.base}/trash")).json()]
    assert names == ["new.txt"]
    keys_after = await object_store().list_keys("bank", f"tenants/{org.ctx.tenant_id}/")
    assert len(keys_after) == len(keys_before) - 1


async def test_unfinished_chunked_uploads_are_dropped_after_a_day(owner_client, org):
    started = (
        await owner_client.post(f"{API}{org.base}/uploads", json={"name": "半途.csv", "size": 5})
    ).json()
    url = f"{API}{org.base}/uploads/{started['id']}"
    assert (await owner_client.put(f"{url}/parts/0", content=b"a,b\n1")).status_code == 204
    prefix = f"staging/parts/tenants/{org.ctx.tenant_id}/{started['id']}/"
    assert len(await object_store().list_keys("bank", prefix)) == 1
    async with db.tenant_scope(org.ctx.tenant_id):
        await StoredObject.raw(
            "UPDATE bank_uploads SET created_at = now() - interval '25 hours' WHERE id = {}",
            uuid.UUID(started["id"]),
        )
    # Past the deadline the reservation no longer counts, even before the clean-up runs.
    usage = (await owner_client.get(f"{API}{org.base}")).json()["usage"]
    assert usage["reserved_bytes"] == 0 and usage["open_uploads"] == 0
    assert await jobs.bank_drop_stale_uploads({}) >= 1
    assert (await owner_client.get(url)).status_code == 404
    assert await object_store().list_keys("bank", prefix) == []
    assert await jobs.bank_drop_stale_uploads({}) == 0  # a second run finds nothing


async def test_retrieval_runs_in_the_real_worker_and_crons_are_registered(
    runtime, owner_client, org
):
    from canal.platform.jobs import make_worker
    from canal.platform.jobs.worker import cron_jobs

    names = {job.name for job in cron_jobs()}
    assert {
        "cron:bank:bank_due_backups",
        "cron:bank:bank_purge_trash",
        "cron:bank:bank_drop_stale_uploads",
    } <= names
    # The platform's own crons are still there, each once.
    assert {"cron:cleanup_expired", "cron:reconcile_subscriptions"} <= names
    assert len(names) == len(cron_jobs())

    made = await _upload(owner_client, org.base, "冷.txt", "冷数据".encode())
    await owner_client.post(f"{API}{org.base}/files/{made['id']}/archive")
    pending = await owner_client.post(f"{API}{org.base}/files/{made['id']}/retrieve")
    assert pending.json()["storage_class"] == "retrieving"
    worker = make_worker(runtime, burst=True)
    await worker.main()
    await worker.close()
    detail = (await owner_client.get(f"{API}{org.base}/files/{made['id']}")).json()
    assert detail["file"]["storage_class"] == "standard"
    assert await _content(owner_client, org.base, made["id"]) == "冷数据".encode()
    inbox = await owner_client.get("/notifications")
    assert "「冷.txt」已从归档取回" in inbox.text  # the requester is told it is back


async def test_emptying_the_bin_leaves_backup_copies_and_they_restore_the_file(owner_client, org):
    """The purge deletes the purged versions' objects only: a backup copy of the file is its
    own object, still there, and restoring the backup brings the file back."""
    folder = (await owner_client.post(f"{API}{org.base}/folders", json={"name": "合同"})).json()
    made = await _upload(owner_client, org.base, "甲方.txt", "甲方合同".encode(), folder["id"])
    restored_v = await owner_client.post(
        f"{API}{org.base}/files/{made['id']}/versions/{made['current_version_id']}/restore"
    )
    assert restored_v.json()["versions"] == 2  # two versions, one object
    backup = (await owner_client.post(f"{API}{org.base}/folders/{folder['id']}/backup/run")).json()
    before = await _purposes(org.ctx.tenant_id)
    assert before == {"bank": 1, "bank-backup": 1}
    await owner_client.post(f"{API}{org.base}/files/{made['id']}/delete")
    assert (await owner_client.post(f"{API}{org.base}/trash/empty")).json() == {"count": 1}
    assert await _purposes(org.ctx.tenant_id) == {"bank-backup": 1}
    back = await owner_client.post(f"{API}{org.base}/backups/{backup['id']}/restore")
    assert back.json() == {"count": 1}
    files = (await owner_client.get(f"{API}{org.base}/folders/{folder['id']}")).json()
    [again] = files["listing"]["files"]
    assert again["name"] == "甲方.txt"
    assert await _content(owner_client, org.base, again["id"]) == "甲方合同".encode()
