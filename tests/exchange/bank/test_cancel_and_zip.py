"""Abandoned resumable uploads (cancel from the page or the API frees the reserved space and
drops the parts at once; the usage shows what is held) and folders downloaded as one
streamed ZIP (the tree, current versions, archived files left out and named, limits refused
with a reason, audited, memory flat whatever the size)."""

from __future__ import annotations

import io
import tracemalloc
import uuid
import zipfile

import httpx
import pytest

from canal.platform.storage.services import object_store
from tests.exchange.bank.helpers import make_resident
from tests.factories import csrf_from, sign_in
from tests.tenants.helpers import audit_actions

API = "/api/v1"


async def _upload(client, base: str, name: str, data: bytes, folder: str | None = None):
    params = {"name": name, **({"folder": folder} if folder else {})}
    answer = await client.post(f"{API}{base}/upload", params=params, content=data)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _folder(client, base: str, name: str, parent: str | None = None) -> str:
    made = await client.post(f"{API}{base}/folders", json={"name": name, "parent_id": parent})
    assert made.status_code == 201, made.text
    return made.json()["id"]


# --- cancelling a resumable upload ---------------------------------------------------------


async def test_cancel_frees_the_reserved_space_and_drops_the_parts_at_once(owner_client, org):
    from canal.platform.storage.services import set_tenant_quota

    await set_tenant_quota(org.ctx.tenant_id, 20_000, actor_id=None)
    started = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "半途.csv", "size": 15_000}
    )
    assert started.status_code == 201, started.text
    url = f"{API}{org.base}/uploads/{started.json()['id']}"
    assert (await owner_client.put(f"{url}/parts/0", content=b"a" * 15_000)).status_code == 204
    prefix = f"staging/parts/tenants/{org.ctx.tenant_id}/{started.json()['id']}/"
    assert len(await object_store().list_keys("bank", prefix)) == 1

    usage = (await owner_client.get(f"{API}{org.base}")).json()["usage"]
    assert (usage["reserved_bytes"], usage["open_uploads"]) == (15_000, 1)
    listed = (await owner_client.get(f"{API}{org.base}/uploads")).json()
    assert [(u["name"], u["received"]) for u in listed] == [("半途.csv", [0])]
    # The reservation is real: a second large upload does not fit beside it.
    crowded = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "又一个.csv", "size": 15_000}
    )
    assert crowded.status_code == 413

    assert (await owner_client.delete(url)).status_code == 204
    assert await object_store().list_keys("bank", prefix) == []
    usage = (await owner_client.get(f"{API}{org.base}")).json()["usage"]
    assert (usage["reserved_bytes"], usage["open_uploads"]) == (0, 0)
    assert (await owner_client.get(f"{API}{org.base}/uploads")).json() == []
    # Gone for good: completing, sending a part or cancelling again finds nothing.
    assert (await owner_client.post(f"{url}/complete")).status_code == 404
    assert (await owner_client.put(f"{url}/parts/0", content=b"a" * 15_000)).status_code == 404
    assert (await owner_client.delete(url)).status_code == 404
    # And the space is free at once, without waiting for the clean-up job.
    again = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "又一个.csv", "size": 15_000}
    )
    assert again.status_code == 201


async def test_a_person_cancels_from_the_page_and_sees_the_held_space(client):
    resident = await make_resident()
    await sign_in(client, resident)
    folder = await _folder(client, "/me/bank", "视频")
    started = await client.post(
        f"{API}/me/bank/uploads", json={"name": "家庭录像.csv", "size": 20 * 1024 * 1024}
    )
    assert started.status_code == 201
    upload_id = started.json()["id"]
    page = await client.get(f"/me/bank/folders/{folder}?lang=zh-CN")
    assert "未完成的上传" in page.text and "家庭录像.csv" in page.text
    assert "另有 20 MB 为未完成的上传预留" in page.text
    assert f'action="/me/bank/uploads/{upload_id}/cancel"' in page.text
    assert "data-confirm=" in page.text  # the page asks before it discards

    cancelled = await client.post(
        f"/me/bank/uploads/{upload_id}/cancel",
        data={"_csrf": csrf_from(page.text), "folder": folder},
    )
    assert cancelled.status_code in (302, 303)
    assert cancelled.headers["location"].endswith(f"/me/bank/folders/{folder}")
    after = await client.get(f"/me/bank/folders/{folder}?lang=zh-CN")
    assert "家庭录像.csv" not in after.text and "未完成的上传" not in after.text
    assert (await client.get(f"{API}/me/bank")).json()["usage"]["reserved_bytes"] == 0


async def test_nobody_cancels_another_persons_upload(client):
    owner, other = await make_resident(), await make_resident()
    await sign_in(client, owner)
    upload_id = (
        await client.post(f"{API}/me/bank/uploads", json={"name": "a.csv", "size": 10})
    ).json()["id"]
    async with httpx.AsyncClient(
        transport=client._transport, base_url="https://testserver.local"
    ) as stranger:
        await sign_in(stranger, other)
        assert (await stranger.delete(f"{API}/me/bank/uploads/{upload_id}")).status_code == 404
        assert (await stranger.post(f"{API}/me/bank/uploads/{upload_id}/cancel")).status_code == 404
    assert (await client.get(f"{API}/me/bank/uploads/{upload_id}")).status_code == 200


# --- a folder as a ZIP ----------------------------------------------------------------------


async def test_a_folder_downloads_as_a_zip_of_its_tree(owner_client, org):
    top = await _folder(owner_client, org.base, "年报")
    sub = await _folder(owner_client, org.base, "2026", top)
    binned = await _folder(owner_client, org.base, "草稿", top)
    await _upload(owner_client, org.base, "汇总.csv", "版本一".encode(), top)
    await _upload(owner_client, org.base, "汇总.csv", "月,额\n1,2\n".encode(), top)  # current
    await _upload(owner_client, org.base, "一月.txt", "一月数据".encode(), sub)
    await _upload(owner_client, org.base, "废稿.txt", "不要".encode(), binned)
    cold = await _upload(owner_client, org.base, "旧档.txt", "冷".encode(), top)
    await _upload(owner_client, org.base, "外面.txt", "不在这个文件夹".encode())
    assert (await owner_client.post(f"{API}{org.base}/folders/{binned}/delete")).status_code == 204
    archived = await owner_client.post(f"{API}{org.base}/files/{cold['id']}/archive")
    assert archived.status_code == 200

    page = await owner_client.get(f"{org.base}/folders/{top}?lang=zh-CN")
    assert f'href="{org.base}/folders/{top}/zip"' in page.text
    assert "2 个文件" in page.text and "1 个已归档文件未包含" in page.text

    answer = await owner_client.get(f"{API}{org.base}/folders/{top}/zip")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert "filename*=UTF-8''%E5%B9%B4%E6%8A%A5.zip" in answer.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert archive.testzip() is None
    names = sorted(archive.namelist())
    note = "年报/未包含的归档文件 (archived, not included).txt"
    assert names == sorted(["年报/汇总.csv", "年报/2026/一月.txt", note])
    assert archive.read("年报/汇总.csv") == "月,额\n1,2\n".encode()
    assert archive.read("年报/2026/一月.txt") == "一月数据".encode()
    assert "年报/旧档.txt" in archive.read(note).decode()
    assert archive.getinfo("年报/汇总.csv").compress_type == zipfile.ZIP_DEFLATED
    assert "bank.folder_downloaded" in await audit_actions(org.ctx.tenant_id)

    # The page link streams the same ZIP; a subfolder's ZIP starts at that subfolder.
    from_page = await owner_client.get(f"{org.base}/folders/{top}/zip")
    assert from_page.status_code == 200 and from_page.content[:2] == b"PK"
    inner = await owner_client.get(f"{API}{org.base}/folders/{sub}/zip")
    assert zipfile.ZipFile(io.BytesIO(inner.content)).namelist() == ["2026/一月.txt"]


async def test_too_large_or_empty_folders_are_refused_with_a_reason(owner_client, org, monkeypatch):
    from canal.exchange.bank import services

    folder = await _folder(owner_client, org.base, "大量")
    empty = await _folder(owner_client, org.base, "空的")
    for n in range(3):
        await _upload(owner_client, org.base, f"{n}.txt", b"x", folder)
    monkeypatch.setattr(services, "ZIP_MAX_FILES", 2)
    refused = await owner_client.get(f"{API}{org.base}/folders/{folder}/zip")
    assert refused.status_code == 413
    body = refused.json()
    assert body["code"] == "zip_too_large" and "3 个文件" in body["detail"]
    assert "请分别下载其中的子文件夹" in body["detail"]
    assert "3 files" in body["detail_en"]
    page = await owner_client.get(f"{org.base}/folders/{folder}?lang=zh-CN")
    assert '/zip"' not in page.text and "超过打包下载的上限" in page.text
    nothing = await owner_client.get(f"{API}{org.base}/folders/{empty}/zip")
    assert nothing.status_code == 409 and nothing.json()["code"] == "folder_empty"
    assert "bank.folder_downloaded" not in await audit_actions(org.ctx.tenant_id)


async def test_a_person_zips_their_own_folder_and_nobody_elses(client):
    owner, other = await make_resident(), await make_resident()
    await sign_in(client, owner)
    folder = await _folder(client, "/me/bank", "家庭健康")
    await _upload(client, "/me/bank", "体检.txt", "血压正常".encode(), folder)
    answer = await client.get(f"{API}/me/bank/folders/{folder}/zip")
    assert answer.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(answer.content)).read("家庭健康/体检.txt") == (
        "血压正常".encode()
    )
    async with httpx.AsyncClient(
        transport=client._transport, base_url="https://testserver.local"
    ) as stranger:
        await sign_in(stranger, other)
        assert (await stranger.get(f"{API}/me/bank/folders/{folder}/zip")).status_code == 404
        assert (await stranger.get(f"/me/bank/folders/{folder}/zip")).status_code == 404


def _stored_zip(size: int) -> bytes:
    """A ZIP holding ``size`` random (incompressible) bytes, stored: the bank keeps it as is
    and the folder ZIP stores it again, so the download is as large as the files."""
    import os

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as inner:
        inner.writestr("data.bin", os.urandom(size))
    return out.getvalue()


async def test_the_zip_stream_keeps_memory_flat(org):
    """Three 12 MB files go out as a 36 MB ZIP while the process holds a few MB at most."""
    from canal.exchange.bank import services
    from canal.platform.storage.services import iterate_bytes

    space = services.tenant_space(org.ctx)
    folder = await services.create_folder(space, None, "大文件")
    for n in range(3):
        data = _stored_zip(12 * 1024 * 1024)
        await services.upload(
            space, folder.id, iterate_bytes(data), filename=f"{n}.zip", declared_size=len(data)
        )
    name, chunks = await services.folder_zip(space, folder.id)
    assert name == "大文件.zip"
    tracemalloc.start()
    try:
        total = 0
        async for chunk in chunks:
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 36 * 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {total / 1e6:.0f} MB ZIP"


@pytest.mark.parametrize("path", ["/me/bank/trash", "/me/bank/folders/{id}", "/me/bank/files/{id}"])
async def test_an_unverified_person_is_told_how_to_get_verified_on_every_page(client, path):
    await sign_in(client, await make_resident(verified=False))
    page = await client.get(path.format(id=uuid.uuid4()) + "?lang=zh-CN")
    assert page.status_code == 403
    assert 'href="/account/real-name"' in page.text
    api = await client.get(f"{API}/me/bank/trash")
    assert api.status_code == 403 and api.json()["code"] == "realname_required"


async def test_single_downloads_are_audited_too(owner_client, org):
    made = await _upload(owner_client, org.base, "记录.txt", "审计".encode())
    before = (await audit_actions(org.ctx.tenant_id)).count("bank.downloaded")
    assert (
        await owner_client.get(f"{API}{org.base}/files/{made['id']}/download")
    ).status_code == 200
    page = await owner_client.get(f"{org.base}/files/{made['id']}/download")
    assert page.status_code == 302
    assert (await audit_actions(org.ctx.tenant_id)).count("bank.downloaded") == before + 2
    # A refused download (archived) records nothing.
    await owner_client.post(f"{API}{org.base}/files/{made['id']}/archive")
    refused = await owner_client.get(f"{API}{org.base}/files/{made['id']}/download")
    assert refused.status_code == 409
    assert (await audit_actions(org.ctx.tenant_id)).count("bank.downloaded") == before + 2
