"""The file routes over HTTP (ASGI, no browser): API uploads as raw and multipart bodies,
the storage page's form (both with the CSRF header and the plain-form fallback), downloads
as redirects to presigned URLs, and outsiders getting 404."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.factories import csrf_from, make_user, sign_in
from tests.storage.helpers import keys_for, make_org, rows_for
from tests.storage.test_uploads import EXE, PDF, png_bytes

BOUNDARY = "canalboundary7MA4YWxkTrZu0gW"


def multipart(fields: dict[str, str], filename: str, content: bytes, ctype: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode()
    return b"".join(parts) + head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


async def test_api_raw_upload_metadata_and_download(client, store):
    org = await make_org()
    await sign_in(client, org.owner)
    response = await client.post(
        f"/api/v1/t/{org.slug}/files",
        params={"purpose": "document", "name": "季度报告.pdf"},
        content=PDF,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "季度报告.pdf" and body["content_type"] == "application/pdf"
    file_id = body["id"]

    meta = await client.get(f"/api/v1/t/{org.slug}/files/{file_id}")
    assert meta.status_code == 200 and meta.json()["size"] == len(PDF)

    download = await client.get(f"/t/{org.slug}/files/{file_id}/download")
    assert download.status_code == 302
    location = download.headers["location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    async with httpx.AsyncClient() as s3:
        fetched = await s3.get(location)
    assert fetched.content == PDF
    assert (
        "filename*=UTF-8''%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.pdf"
        in fetched.headers["content-disposition"]
    )

    twin = await client.get(f"/api/v1/t/{org.slug}/files/{file_id}/download")
    assert twin.status_code == 200 and twin.json()["expires_in"] == 300

    usage = await client.get(f"/api/v1/t/{org.slug}/storage")
    assert usage.status_code == 200
    assert usage.json()["used_bytes"] == len(PDF) and usage.json()["objects"] == 1

    deleted = await client.delete(f"/api/v1/t/{org.slug}/files/{file_id}")
    assert deleted.status_code == 204
    assert (await client.get(f"/api/v1/t/{org.slug}/files/{file_id}")).status_code == 404


async def test_api_multipart_upload_streams_the_file_part(client, store):
    org = await make_org()
    await sign_in(client, org.owner)
    response = await client.post(
        f"/api/v1/t/{org.slug}/files?purpose=photo",
        content=multipart({"note": "x"}, "头像.png", png_bytes(), "image/png"),
        headers=MULTIPART,
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "头像.png"
    assert response.json()["content_type"] == "image/png"


async def test_api_refusal_is_problem_json_in_both_languages(client, store):
    org = await make_org()
    await sign_in(client, org.owner)
    response = await client.post(
        f"/api/v1/t/{org.slug}/files?purpose=photo&name=me.png",
        content=EXE,
        headers={"accept-language": "en"},
    )
    assert response.status_code == 415
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "file_type_not_allowed"
    assert problem["detail_zh"].startswith("照片需为 JPG/PNG,且不超过 2 MB")
    assert problem["detail_en"].startswith("The photo must be a JPG or PNG of at most 2 MB")
    assert problem["errors"][0]["field"] == "file"
    assert await rows_for(org.tenant_id) == []


async def test_oversize_body_is_refused_before_it_is_all_read(client, store):
    org = await make_org()
    await sign_in(client, org.owner)
    sent = 0

    async def body():
        nonlocal sent
        chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * (256 * 1024 - 8)
        for _ in range(400):  # 100 MB if it were all read
            sent += len(chunk)
            yield chunk

    response = await client.post(
        f"/api/v1/t/{org.slug}/files?purpose=photo&name=huge.png", content=body()
    )
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
    assert sent <= 2 * 1024 * 1024 + 2 * 256 * 1024  # stopped at the limit, not at 100 MB
    assert await keys_for(store, org.tenant_id) == []


async def test_outsider_gets_404_for_every_file_route(client, store):
    org = await make_org()
    stored = await store.upload_bytes(org.ctx, "document", PDF, filename="a.pdf")
    bob = await make_user("bob")
    other = await make_org("乙方")
    await sign_in(client, other.owner)
    del bob
    for method, url in [
        ("GET", f"/api/v1/t/{org.slug}/files/{stored.id}"),
        ("GET", f"/t/{org.slug}/files/{stored.id}/download"),
        ("GET", f"/api/v1/t/{org.slug}/files/{stored.id}/download"),
        ("DELETE", f"/api/v1/t/{org.slug}/files/{stored.id}"),
        # B's own tenant path with A's id: the scoped lookup answers 404 too.
        ("GET", f"/api/v1/t/{other.slug}/files/{stored.id}"),
        ("GET", f"/t/{other.slug}/files/{stored.id}/download"),
        ("DELETE", f"/api/v1/t/{other.slug}/files/{stored.id}"),
        ("GET", f"/api/v1/t/{other.slug}/files/{uuid.uuid4()}"),
    ]:
        response = await client.request(method, url)
        assert response.status_code == 404, (method, url, response.status_code)
        assert "X-Amz" not in response.text
    assert (await rows_for(org.tenant_id))[0]["id"] == stored.id


async def test_html_form_upload_with_plain_form_csrf(client, store):
    """A browser without JavaScript: multipart with the _csrf field, no header."""
    org = await make_org()
    await sign_in(client, org.owner)
    page = await client.get(f"/t/{org.slug}/storage")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text and 'name="file"' in page.text
    token = csrf_from(page.text)
    del client.headers["X-CSRF-Token"]

    response = await client.post(
        f"/t/{org.slug}/storage",
        content=multipart({"_csrf": token}, "会议纪要.txt", "会议纪要\n".encode(), "text/plain"),
        headers=MULTIPART,
    )
    assert response.status_code == 303, response.text[:500]
    listing = await client.get(f"/t/{org.slug}/storage")
    assert "会议纪要.txt" in listing.text
    assert re.search(rf'href="/t/{org.slug}/files/[0-9a-f-]+/download"', listing.text)

    refused = await client.post(
        f"/t/{org.slug}/storage",
        content=multipart({"_csrf": token}, "invoice.pdf", EXE, "application/pdf"),
        headers=MULTIPART,
    )
    assert refused.status_code == 415
    assert "文档需为 PDF" in refused.text and "field__error" in refused.text
    assert len(await rows_for(org.tenant_id)) == 1


async def test_html_form_upload_with_htmx_header_streams(client, store):
    org = await make_org()
    await sign_in(client, org.owner)  # the CSRF header, as htmx sends it
    response = await client.post(
        f"/t/{org.slug}/storage",
        content=multipart({}, "说明.pdf", PDF, "application/pdf"),
        headers=MULTIPART | {"hx-request": "true"},
    )
    assert (
        response.status_code == 200 and response.headers["hx-redirect"] == f"/t/{org.slug}/storage"
    )
    empty = await client.post(
        f"/t/{org.slug}/storage",
        content=multipart({}, "", b"", "application/octet-stream"),
        headers=MULTIPART,
    )
    assert empty.status_code == 422 and "请选择要上传的文件" in empty.text


async def test_members_without_update_cannot_see_the_storage_page(client, store):
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.tenants.tables import Membership

    org = await make_org()
    member = await make_user("普通成员")
    async with db.tenant_scope(org.tenant_id, org.owner.user_id):
        await Membership.insert(Membership(tenant_id=org.tenant_id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", org.tenant_id)
    stored = await store.upload_bytes(org.ctx, "document", PDF, filename="a.pdf")
    await sign_in(client, member)
    assert (await client.get(f"/t/{org.slug}/storage")).status_code == 403
    assert (await client.post(f"/api/v1/t/{org.slug}/files", content=PDF)).status_code == 403
    # Reading the organisation's files is open to members.
    assert (await client.get(f"/t/{org.slug}/files/{stored.id}/download")).status_code == 302
