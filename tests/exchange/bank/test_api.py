"""The data bank over its JSON API, for an organisation and for a resident: folders,
uploads as versions, restore, download, share links, the recycle bin, quota and bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.exchange.bank.helpers import make_resident
from tests.factories import make_user, sign_in

API = "/api/v1"


async def _s3_get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as s3:
        return await s3.get(url)


async def _upload(client, base: str, name: str, data: bytes, folder: str | None = None):
    params = {"name": name, **({"folder": folder} if folder else {})}
    return await client.post(f"{API}{base}/upload", params=params, content=data)


@pytest.mark.parametrize("space", ["tenant", "personal"])
async def test_folder_versions_restore_share_and_bin(client, org, space):
    if space == "tenant":
        await sign_in(client, org.owner)
        base = org.base
    else:
        await sign_in(client, await make_resident())
        base = "/me/bank"

    made = await client.post(f"{API}{base}/folders", json={"name": "报表"})
    assert made.status_code == 201, made.text
    folder = made.json()["id"]

    first = await _upload(client, base, "销售.csv", "月份,金额\n1,100\n".encode(), folder)
    assert first.status_code == 201, first.text
    file_id = first.json()["id"]
    second = await _upload(client, base, "销售.csv", "月份,金额\n1,100\n2,200\n".encode(), folder)
    assert second.status_code == 201
    assert second.json()["id"] == file_id  # same name, same folder: a new version
    assert second.json()["versions"] == 2

    detail = (await client.get(f"{API}{base}/files/{file_id}")).json()
    v2, v1 = detail["versions"]
    assert (v1["number"], v2["number"]) == (1, 2)
    assert detail["file"]["current_version_id"] == v2["id"]

    restored = await client.post(f"{API}{base}/files/{file_id}/versions/{v1['id']}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["versions"] == 3
    url = (await client.get(f"{API}{base}/files/{file_id}/download")).json()["url"]
    body = await _s3_get(url)
    assert body.content == "月份,金额\n1,100\n".encode()

    # Share by link: an anonymous download works, counts, and stops after revoke.
    share = await client.post(f"{API}{base}/files/{file_id}/shares", json={"days": 3})
    assert share.status_code == 201, share.text
    link = share.json()["url"]
    token = link.rsplit("/", 1)[-1]
    async with httpx.AsyncClient(
        transport=client._transport, base_url="https://testserver.local"
    ) as anon:
        info = await anon.get(f"{API}/bank/s/{token}")
        assert info.status_code == 200 and info.json()["file"]["name"] == "销售.csv"
        page = await anon.get(f"/bank/s/{token}/download")
        assert page.status_code == 302
        assert (await _s3_get(page.headers["location"])).content.startswith("月份".encode())
        shares = (await client.get(f"{API}{base}/files/{file_id}")).json()["shares"]
        assert shares[0]["downloads"] == 1
        revoked = await client.post(f"{API}{base}/files/{file_id}/shares/{shares[0]['id']}/revoke")
        assert revoked.status_code == 204
        assert (await anon.get(f"/bank/s/{token}/download")).status_code == 404
        assert (await anon.get(f"{API}/bank/s/{token}")).status_code == 404

    # Recycle bin: delete, gone from the folder, restore, back.
    assert (await client.post(f"{API}{base}/files/{file_id}/delete")).status_code == 204
    listing = (await client.get(f"{API}{base}/folders/{folder}")).json()["listing"]
    assert listing["files"] == []
    bin_items = (await client.get(f"{API}{base}/trash")).json()
    assert [i["name"] for i in bin_items] == ["销售.csv"]
    assert (await client.get(f"{API}{base}/files/{file_id}")).status_code == 404
    back = await client.post(f"{API}{base}/trash/{bin_items[0]['trash_id']}/restore")
    assert back.status_code == 204
    listing = (await client.get(f"{API}{base}/folders/{folder}")).json()["listing"]
    assert [f["name"] for f in listing["files"]] == ["销售.csv"]

    # Delete the folder, empty the bin: rows and stored objects gone, usage back to zero.
    usage = (await client.get(f"{API}{base}")).json()["usage"]
    assert usage["bank_bytes"] > 0
    assert (await client.post(f"{API}{base}/folders/{folder}/delete")).status_code == 204
    emptied = await client.post(f"{API}{base}/trash/empty")
    assert emptied.json() == {"count": 1}
    usage = (await client.get(f"{API}{base}")).json()["usage"]
    assert usage["bank_bytes"] == 0 and usage["files"] == 0
    assert (await client.get(f"{API}{base}/trash")).json() == []


async def test_names_with_path_tricks_are_refused(owner_client, org):
    for bad in ["../etc", "a/b", "a\\b", "..", ".", "x\u202ey", "", "  "]:
        response = await owner_client.post(f"{API}{org.base}/folders", json={"name": bad})
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["code"] in {"name_invalid", "name_required"}
    upload = await _upload(owner_client, org.base, "../../passwd.txt", b"hello")
    assert upload.status_code == 422
    assert upload.json()["errors"][0]["code"] == "name_invalid"
    listing = (await owner_client.get(f"{API}{org.base}")).json()
    assert listing["listing"]["folders"] == [] and listing["listing"]["files"] == []
    assert listing["usage"]["bank_bytes"] == 0


async def test_moving_a_folder_into_itself_is_refused(owner_client, org):
    async def mkdir(name: str, parent: str | None = None) -> str:
        made = await owner_client.post(
            f"{API}{org.base}/folders", json={"name": name, "parent_id": parent}
        )
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    top = await mkdir("上级")
    child = await mkdir("下级", top)
    grandchild = await mkdir("再下级", child)
    for target in (top, child, grandchild):
        moved = await owner_client.post(
            f"{API}{org.base}/folders/{top}/move", json={"target_id": target}
        )
        assert moved.status_code == 422
        assert moved.json()["errors"][0]["code"] == "move_into_itself"
    other = await mkdir("别处")
    moved = await owner_client.post(
        f"{API}{org.base}/folders/{top}/move", json={"target_id": other}
    )
    assert moved.status_code == 200 and moved.json()["parent_id"] == other
    again = await owner_client.post(f"{API}{org.base}/folders", json={"name": "别处"})
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == "name_taken"


async def test_over_quota_upload_is_refused_and_changes_nothing(owner_client, org):
    from canal.platform.storage.services import set_tenant_quota

    await set_tenant_quota(org.ctx.tenant_id, 1000, actor_id=None)
    ok = await _upload(owner_client, org.base, "small.txt", b"a" * 600)
    assert ok.status_code == 201
    refused = await _upload(owner_client, org.base, "big.txt", b"b" * 600)
    assert refused.status_code == 413
    assert refused.json()["code"] == "storage_quota_exceeded"
    names = [
        f["name"] for f in (await owner_client.get(f"{API}{org.base}")).json()["listing"]["files"]
    ]
    assert names == ["small.txt"]


async def test_wrong_type_is_refused(owner_client, org):
    html = await _upload(owner_client, org.base, "page.txt", b"<!doctype html><script>x</script>")
    assert html.status_code == 415


async def test_unverified_person_has_no_personal_bank(client):
    person = await make_resident(verified=False)
    await sign_in(client, person)
    response = await client.get(f"{API}/me/bank")
    assert response.status_code == 403
    assert response.json()["code"] == "realname_required"


async def test_outsider_and_member_limits(client, owner_client, org):
    made = await _upload(owner_client, org.base, "a.txt", b"secret")
    file_id = made.json()["id"]
    outsider = await make_user()
    async with httpx.AsyncClient(
        transport=client._transport, base_url="https://testserver.local"
    ) as other:
        await sign_in(other, outsider)
        assert (await other.get(f"{API}{org.base}/files/{file_id}")).status_code == 404
        # A person's own bank never finds an organisation's file by its id.
        resident = await make_resident()
        await sign_in(other, resident)
        assert (await other.get(f"{API}/me/bank/files/{file_id}")).status_code == 404


@pytest.mark.parametrize("space", ["tenant", "personal"])
async def test_chunked_upload_resumes_after_an_interruption(client, org, space):
    from canal.exchange.bank import services

    if space == "tenant":
        await sign_in(client, org.owner)
        base = org.base
    else:
        await sign_in(client, await make_resident())
        base = "/me/bank"
    part = services.PART_SIZE
    data = ("序号,数值\n" + "".join(f"{i},{i * 7}\n" for i in range(1_500_000))).encode()
    assert part * 2 < len(data) < part * 3
    started = await client.post(
        f"{API}{base}/uploads", json={"name": "大表.csv", "size": len(data)}
    )
    assert started.status_code == 201, started.text
    upload = started.json()
    assert upload["parts"] == 3 and upload["received"] == []
    url = f"{API}{base}/uploads/{upload['id']}"

    # Parts 2 and 0 arrive; then "the connection drops". A wrong-sized part is refused.
    assert (await client.put(f"{url}/parts/2", content=data[2 * part :])).status_code == 204
    assert (await client.put(f"{url}/parts/0", content=data[:part])).status_code == 204
    short = await client.put(f"{url}/parts/1", content=data[part : part + 10])
    assert short.status_code == 422 and short.json()["code"] == "part_invalid"
    early = await client.post(f"{url}/complete")
    assert early.status_code == 409 and early.json()["code"] == "parts_missing"

    # Resuming: the status says what is missing; send it and complete.
    status = (await client.get(url)).json()
    assert status["received"] == [0, 2]
    missing = sorted(set(range(status["parts"])) - set(status["received"]))
    for index in missing:
        chunk = data[index * part : (index + 1) * part]
        assert (await client.put(f"{url}/parts/{index}", content=chunk)).status_code == 204
    done = await client.post(f"{url}/complete")
    assert done.status_code == 201, done.text
    assert done.json()["size"] == len(data)
    download = (await client.get(f"{API}{base}/files/{done.json()['id']}/download")).json()
    assert (await _s3_get(download["url"])).content == data
    assert (await client.get(url)).status_code == 404  # the upload record and parts are gone


async def test_chunked_upload_refuses_more_than_the_quota(owner_client, org):
    from canal.platform.storage.services import set_tenant_quota

    await set_tenant_quota(org.ctx.tenant_id, 5000, actor_id=None)
    refused = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "big.csv", "size": 6000}
    )
    assert refused.status_code == 413 and refused.json()["code"] == "storage_quota_exceeded"
    bad_name = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "a/../b.csv", "size": 10}
    )
    assert bad_name.status_code == 422


async def test_chunked_upload_of_a_refused_type_is_judged_at_completion(owner_client, org):
    from canal.platform.storage.services import object_store

    data = b"<!doctype html><html><script>alert(1)</script></html>"
    upload = (
        await owner_client.post(
            f"{API}{org.base}/uploads", json={"name": "page.txt", "size": len(data)}
        )
    ).json()
    url = f"{API}{org.base}/uploads/{upload['id']}"
    assert (await owner_client.put(f"{url}/parts/0", content=data)).status_code == 204
    refused = await owner_client.post(f"{url}/complete")
    assert refused.status_code == 415 and refused.json()["code"] == "file_type_not_allowed"
    prefix = f"staging/parts/tenants/{org.ctx.tenant_id}/{upload['id']}/"
    assert await object_store().list_keys("bank", prefix) == []
    assert (await owner_client.get(f"{API}{org.base}")).json()["listing"]["files"] == []


async def test_every_bank_api_is_in_the_openapi_document(client):
    schema = (await client.get("/api/schema/openapi.json")).json()
    paths = {p for p in schema["paths"] if "/bank" in p}
    for base in ("/api/v1/t/{tenant_slug}/bank", "/api/v1/me/bank"):
        for suffix in ("", "/upload", "/uploads/{upload_id}/parts/{part}", "/trash"):
            assert base + suffix in paths
    assert "/api/v1/t/{tenant_slug}/bank/folders/{bank_folder_id}/backup/run" in paths
    assert not any(p.startswith(("/t/", "/me/")) for p in paths)  # pages stay out


async def test_every_bank_page_has_its_api_twin_and_every_api_is_documented(app, client):
    """Not a hand-picked list: every registered bank route, page ↔ /api/v1 twin (same path,
    same method), every API path and method in the OpenAPI document."""
    import re

    schema = (await client.get("/api/schema/openapi.json")).json()["paths"]

    def plain(path: str) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)

    routes = [
        (plain(r.path), method)
        for r in app.routes
        if "/bank" in r.path and hasattr(r, "route_handler_map")
        for method in r.methods - {"HEAD", "OPTIONS"}
    ]
    apis = {(p, m) for p, m in routes if p.startswith("/api/")}
    pages = {(p, m) for p, m in routes if not p.startswith("/api/")}
    assert len(pages) > 40 and len(apis) > 40
    for path, method in pages:
        assert ("/api/v1" + path, method) in apis, (method, path)
    for path, method in apis:
        assert method.lower() in schema.get(path, {}), (method, path)


async def test_share_limits_expiry_and_validation(client, owner_client, org):
    from canal.platform import db
    from canal.platform.storage.tables import StoredObject

    file_id = (await _upload(owner_client, org.base, "限次.txt", b"once")).json()["id"]
    bad = await owner_client.post(
        f"{API}{org.base}/files/{file_id}/shares", json={"days": 90, "max_downloads": 0}
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"days", "max_downloads"}
    once = await owner_client.post(
        f"{API}{org.base}/files/{file_id}/shares", json={"days": 1, "max_downloads": 1}
    )
    token = once.json()["url"].rsplit("/", 1)[-1]
    async with httpx.AsyncClient(
        transport=client._transport, base_url="https://testserver.local"
    ) as anon:
        assert (await anon.get(f"{API}/bank/s/{token}")).json()["file"]["downloads_left"] == 1
        assert (await anon.get(f"{API}/bank/s/{token}/download")).status_code == 200
        assert (await anon.get(f"{API}/bank/s/{token}/download")).status_code == 404
        later = await owner_client.post(f"{API}{org.base}/files/{file_id}/shares", json={})
        token = later.json()["url"].rsplit("/", 1)[-1]
        async with db.tenant_scope(org.ctx.tenant_id):
            await StoredObject.raw(
                "UPDATE bank_shares SET expires_at = now() - interval '1 second' WHERE id = {}",
                later.json()["share"]["id"],
            )
        assert (await anon.get(f"/bank/s/{token}")).status_code == 404


async def test_same_name_at_once_makes_one_file_with_two_versions(owner_client, org):
    import asyncio

    answers = await asyncio.gather(
        _upload(owner_client, org.base, "并发.txt", b"first"),
        _upload(owner_client, org.base, "并发.txt", b"second"),
    )
    assert {a.status_code for a in answers} == {201}
    files = (await owner_client.get(f"{API}{org.base}")).json()["listing"]["files"]
    assert [(f["name"], f["versions"]) for f in files] == [("并发.txt", 2)]


async def test_rename_move_and_restore_beside_a_newer_namesake(owner_client, org):
    folder = (await owner_client.post(f"{API}{org.base}/folders", json={"name": "档案"})).json()
    old = (await _upload(owner_client, org.base, "合同.pdf.txt", b"v-old")).json()
    moved = await owner_client.post(
        f"{API}{org.base}/files/{old['id']}/move", json={"target_id": folder["id"]}
    )
    assert moved.status_code == 200 and moved.json()["folder_id"] == folder["id"]
    renamed = await owner_client.post(
        f"{API}{org.base}/files/{old['id']}/rename", json={"name": "合同.txt"}
    )
    assert renamed.json()["name"] == "合同.txt"
    await owner_client.post(f"{API}{org.base}/files/{old['id']}/delete")
    await _upload(owner_client, org.base, "合同.txt", b"v-new", folder["id"])
    [item] = (await owner_client.get(f"{API}{org.base}/trash")).json()
    await owner_client.post(f"{API}{org.base}/trash/{item['trash_id']}/restore")
    listing = (await owner_client.get(f"{API}{org.base}/folders/{folder['id']}")).json()
    assert sorted(f["name"] for f in listing["listing"]["files"]) == ["合同 (2).txt", "合同.txt"]
    clash = await owner_client.post(
        f"{API}{org.base}/files/{old['id']}/rename", json={"name": "合同.TXT"}
    )
    assert clash.status_code == 422 and clash.json()["errors"][0]["code"] == "name_taken"
