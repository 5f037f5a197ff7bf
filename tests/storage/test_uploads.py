"""The object store against a real S3 server: the hostile-upload corpus, quotas, presigned
URLs, isolation between tenants, direct uploads, deletion and the audit trail.

Every refusal must name the rule in zh and en, and leave no object and no row behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import struct
import zipfile
import zlib

import httpx
import pytest
from PIL import Image

from canal.platform.http.errors import CanalError
from canal.platform.storage import services
from canal.platform.storage.services import ObjectStore, iterate_bytes, set_tenant_quota
from canal.platform.storage.validation import MB, Purpose
from tests.storage.helpers import Org, keys_for, make_org, rows_for

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\0" * 200


def png_bytes(width: int = 32, height: int = 16, color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg_with_gps(width: int = 40, height: int = 20) -> bytes:
    image = Image.new("RGB", (width, height), (10, 120, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x010F] = "CanalCam"  # Make
    exif[0x8825] = {1: "N", 2: (36.0, 27.0, 5.0), 3: "E", 4: (115.0, 59.0, 7.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def pixel_flood_png(width: int = 50000, height: int = 50000) -> bytes:
    """A valid PNG header claiming width×height, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


async def assert_nothing_stored(store: ObjectStore, org: Org) -> None:
    assert await rows_for(org.tenant_id) == []
    assert await keys_for(store, org.tenant_id) == []


async def refused(coro) -> CanalError:
    with pytest.raises(CanalError) as caught:
        await coro
    error = caught.value
    assert error.zh and error.en and error.errors and error.errors[0].field == "file"
    return error


# --- what is stored ---------------------------------------------------------------------------


async def test_upload_records_the_object_and_key_is_ours(store, org):
    stored = await store.upload_bytes(org.ctx, "document", PDF, filename="年度报告.pdf")
    assert re.fullmatch(
        rf"tenants/{org.tenant_id}/document/\d{{4}}/\d{{2}}/{stored.id}", stored.key
    )
    assert stored.bucket == store.bucket("document")
    assert stored.content_type == "application/pdf"
    assert stored.size == len(PDF)
    import hashlib

    assert stored.sha256 == hashlib.sha256(PDF).hexdigest()
    assert stored.original_name == "年度报告.pdf"
    assert stored.uploaded_by == org.owner.user_id
    assert await store.read_all(stored) == PDF
    again = await services.get_object_in_tenant(stored.id, org.ctx)
    assert again == stored


async def test_upload_and_delete_are_audited(store, org):
    from tests.tenants.helpers import audit_actions

    stored = await store.upload_bytes(org.ctx, "document", PDF, filename="a.pdf")
    await store.delete(stored.id, org.ctx)
    assert (await audit_actions(org.tenant_id))[-2:] == ["file.uploaded", "file.deleted"]
    await asyncio.sleep(0.05)
    await assert_nothing_stored(store, org)
    with pytest.raises(CanalError) as caught:
        await services.get_object_in_tenant(stored.id, org.ctx)
    assert caught.value.status == 404


# --- the hostile corpus -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "seen"), [(PDF, "PDF"), (HTML, "text/html"), (EXE, "application/x-msdownload")]
)
async def test_wrong_magic_bytes_behind_a_png_name(store, org, content, seen):
    error = await refused(store.upload_bytes(org.ctx, "photo", content, filename="me.png"))
    assert error.status == 415 and error.code == "file_type_not_allowed"
    assert error.zh.startswith("照片需为 JPG/PNG,且不超过 2 MB")
    assert error.en.startswith("The photo must be a JPG or PNG of at most 2 MB")
    assert seen in error.en
    await assert_nothing_stored(store, org)


async def test_oversize_stream_is_cut_off_at_the_limit(store, org):
    """The limit triggers while streaming: the body past the limit is never read."""
    consumed = 0
    chunk = b"\xff\xd8\xff\xe0" + b"\0" * (64 * 1024 - 4)

    async def endless() -> object:
        nonlocal consumed
        for _ in range(1600):  # would be 100 MB
            consumed += len(chunk)
            yield chunk

    error = await refused(store.upload(org.ctx, "photo", endless(), filename="big.jpg"))
    assert error.status == 413 and error.code == "file_too_large"
    assert error.zh == "照片需为 JPG/PNG,且不超过 2 MB。"
    assert error.en == "The photo must be a JPG or PNG of at most 2 MB."
    assert consumed <= 2 * MB + len(chunk)
    await assert_nothing_stored(store, org)


async def test_declared_oversize_is_refused_before_reading(store, org):
    async def never() -> object:
        raise AssertionError("the body must not be read")
        yield b""

    error = await refused(
        store.upload(org.ctx, "photo", never(), filename="x.jpg", declared_size=3 * MB)
    )
    assert error.code == "file_too_large"


async def test_pixel_flood_is_refused_without_decoding(store, org):
    data = pixel_flood_png()
    assert len(data) < 200
    error = await refused(store.upload_bytes(org.ctx, "photo", data, filename="flood.png"))
    assert error.code == "image_too_many_pixels" and error.status == 422
    assert "图片尺寸过大" in error.zh and "million pixels" in error.en
    await assert_nothing_stored(store, org)


async def test_pixel_flood_within_pillows_backstop_uses_the_purpose_limit(store, org):
    # 6000×5000 = 30 MP: under Pillow's global backstop (40 MP), over the photo's 24 MP.
    error = await refused(
        store.upload_bytes(org.ctx, "photo", pixel_flood_png(6000, 5000), filename="p.png")
    )
    assert "6000×5000" in error.zh and "24 million pixels" in error.en


async def test_exif_gps_is_gone_and_orientation_applied(store, org):
    original = jpeg_with_gps(40, 20)
    assert b"CanalCam" in original
    with Image.open(io.BytesIO(original)) as check:
        assert check.getexif().get_ifd(0x8825)  # the test image really carries GPS
    stored = await store.upload_bytes(org.ctx, "photo", original, filename="site.jpg")
    data = await store.read_all(stored)
    assert b"CanalCam" not in data and b"Exif" not in data
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif()
        assert image.size == (20, 40)  # rotated as the camera said
    assert stored.size == len(data)


async def test_png_text_chunks_are_dropped(store, org):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "secret-location")
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    stored = await store.upload_bytes(org.ctx, "photo", out.getvalue(), filename="t.png")
    assert b"secret-location" not in await store.read_all(stored)


async def test_damaged_image_is_refused(store, org):
    data = png_bytes()[:60]
    error = await refused(store.upload_bytes(org.ctx, "photo", data, filename="cut.png"))
    assert error.code == "image_unreadable"
    await assert_nothing_stored(store, org)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x", "x"),
        ("a\x00b.txt", "ab.txt"),
        ("\u202etxt.exe", "txt.exe"),
        ("n" * 3000 + ".txt", None),
    ],
)
async def test_path_tricks_never_reach_the_key(store, org, name, shown):
    stored = await store.upload_bytes(org.ctx, "document", "合同正文\n".encode(), filename=name)
    assert re.fullmatch(
        rf"tenants/{org.tenant_id}/document/\d{{4}}/\d{{2}}/[0-9a-f-]{{36}}", stored.key
    )
    for bad in ("..", "\\", "\x00", "\u202e", "passwd", "C:"):
        assert bad not in stored.key
    if shown:
        assert stored.original_name == shown
    else:
        assert len(stored.original_name) == 200 and stored.original_name.endswith(".txt")


async def test_zip_bomb_is_refused_for_inspected_archives(store, org):
    buffer = io.BytesIO()
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)
    with archive, archive.open("zeros.bin", "w") as member:
        for _ in range(20):
            member.write(b"\0" * MB)
    error = await refused(
        store.upload_bytes(org.ctx, "bundle", buffer.getvalue(), filename="bomb.zip")
    )
    assert error.code == "archive_rejected"
    assert "压缩炸弹" in error.zh and "zip bomb" in error.en
    await assert_nothing_stored(store, org)


async def test_empty_file_is_refused(store, org):
    error = await refused(store.upload_bytes(org.ctx, "document", b"", filename="e.txt"))
    assert error.code == "file_empty"


async def test_unknown_purpose(store, org):
    error = await refused(store.upload_bytes(org.ctx, "nope", PDF, filename="a.pdf"))
    assert error.code == "purpose_unknown"


# --- quota ------------------------------------------------------------------------------------


async def test_quota_exceeded_refuses_and_stores_nothing(store, org):
    await set_tenant_quota(org.tenant_id, 10_000, actor_id=None)
    error = await refused(
        store.upload_bytes(org.ctx, "document", b"a" * 20_000, filename="big.txt")
    )
    assert error.code == "storage_quota_exceeded" and error.status == 413
    assert "存储空间不足" in error.zh and "storage is full" in error.en
    await assert_nothing_stored(store, org)


async def test_quota_counts_what_is_already_stored_while_streaming(store, org):
    await set_tenant_quota(org.tenant_id, 10_000, actor_id=None)
    await store.upload_bytes(org.ctx, "document", b"a" * 6_000, filename="one.txt")
    error = await refused(
        store.upload(org.ctx, "document", iterate_bytes(b"b" * 6_000, 1000), filename="two.txt")
    )
    assert error.code == "storage_quota_exceeded"
    usage = await services.tenant_usage(org.ctx)
    assert (usage.used_bytes, usage.objects, usage.quota_bytes) == (6_000, 1, 10_000)
    assert len(await keys_for(store, org.tenant_id)) == 1


async def test_concurrent_uploads_cannot_overshoot_the_quota(store, org):
    await set_tenant_quota(org.tenant_id, 10_000, actor_id=None)
    results = await asyncio.gather(
        *(
            store.upload_bytes(org.ctx, "document", b"c" * 4_000, filename=f"{i}.txt")
            for i in range(4)
        ),
        return_exceptions=True,
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert len(stored) == 2
    await asyncio.sleep(0.05)
    assert len(await keys_for(store, org.tenant_id)) == 2
    assert (await services.tenant_usage(org.ctx)).used_bytes == 8_000


async def test_a_failed_insert_removes_the_object(store, org, monkeypatch):
    async def broken_audit(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "record", broken_audit)
    with pytest.raises(RuntimeError):
        await store.upload_bytes(org.ctx, "document", PDF, filename="a.pdf")
    await assert_nothing_stored(store, org)


# --- downloads and isolation ------------------------------------------------------------------


@pytest.mark.slow  # waits 5.5 s for the link to expire
async def test_presigned_get_carries_the_name_and_expires(store, org):
    stored = await store.upload_bytes(org.ctx, "document", PDF, filename="营业执照.pdf")
    # The signature's time has whole seconds, so a very short expiry can end almost at once on
    # a busy machine: 4 s is short enough to wait out, long enough to use first.
    url = await store.presigned_get(stored, org.ctx, expires=dt.timedelta(seconds=4))
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200 and response.content == PDF
        disposition = response.headers["content-disposition"]
        assert "filename*=UTF-8''%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7.pdf" in disposition
        assert response.headers["content-type"] == "application/pdf"
        await asyncio.sleep(5.5)
        assert (await client.get(url)).status_code == 403
        # The bucket is private: the object without a signature is refused.
        bare = url.split("?", 1)[0]
        assert (await client.get(bare)).status_code == 403


async def test_another_tenant_never_gets_a_url(store, org):
    stored = await store.upload_bytes(org.ctx, "document", PDF, filename="a.pdf")
    other = await make_org("乙方")
    with pytest.raises(CanalError) as caught:
        await services.get_object_in_tenant(stored.id, other.ctx)
    assert caught.value.status == 404
    with pytest.raises(CanalError) as caught:
        await store.presigned_get(stored, other.ctx)
    assert caught.value.status == 404
    with pytest.raises(CanalError) as caught:
        await store.delete(stored.id, other.ctx)
    assert caught.value.status == 404
    assert (await services.get_object_in_tenant(stored.id, org.ctx)).id == stored.id


# --- straight from the browser ------------------------------------------------------------------


async def test_direct_upload_then_complete(store, org):
    csv = "企业,用电量\n甲,12\n".encode() * 100
    direct = await store.presigned_put(org.ctx, "dataset", filename="用电.csv", size=len(csv))
    async with httpx.AsyncClient() as client:
        assert (await client.put(direct.url, content=csv)).status_code == 200
    stored = await store.complete(org.ctx, direct.token)
    assert stored.id == direct.object_id and stored.size == len(csv)
    assert stored.content_type == "text/plain" and stored.original_name == "用电.csv"
    assert (await store.complete(org.ctx, direct.token)).id == stored.id  # idempotent
    other = await make_org("乙方")
    with pytest.raises(CanalError) as caught:
        await store.complete(other.ctx, direct.token)
    assert caught.value.status == 404


async def test_a_second_put_after_complete_cannot_replace_the_checked_file(store, org):
    """The PUT URL stays valid until it expires: replaying it with other bytes (bigger, of a
    refused type) must not touch the object ``complete`` checked and recorded."""
    import hashlib

    first = "企业,用电量\n甲,12\n".encode() * 10
    direct = await store.presigned_put(org.ctx, "dataset", filename="用电.csv", size=len(first))
    async with httpx.AsyncClient() as client:
        assert (await client.put(direct.url, content=first)).status_code == 200
        stored = await store.complete(org.ctx, direct.token)
        assert await store.list_keys("dataset", f"staging/{org.tenant_id}/") == []
        second = EXE + b"\0" * (len(first) * 4)
        await client.put(direct.url, content=second)
    assert await store.read_all(stored) == first
    [row] = await rows_for(org.tenant_id)
    assert row["key"] == stored.key and row["size"] == len(first)
    assert row["sha256"] == hashlib.sha256(first).hexdigest()
    assert row["content_type"] == "text/plain"
    again = await store.complete(org.ctx, direct.token)
    assert again.id == stored.id and await store.read_all(again) == first
    assert stored.key not in direct.url


async def test_concurrent_completes_record_one_file_and_leave_one_object(store, org):
    csv = b"a,b\n1,2\n" * 50
    direct = await store.presigned_put(org.ctx, "dataset", filename="x.csv", size=len(csv))
    async with httpx.AsyncClient() as client:
        assert (await client.put(direct.url, content=csv)).status_code == 200
    results = await asyncio.gather(
        *(store.complete(org.ctx, direct.token) for _ in range(3)), return_exceptions=True
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert stored and {s.id for s in stored} == {direct.object_id}
    [row] = await rows_for(org.tenant_id)
    assert await keys_for(store, org.tenant_id) == [row["key"]]
    assert await store.read_all(stored[0]) == csv


async def test_direct_upload_of_the_wrong_type_is_deleted(store, org):
    direct = await store.presigned_put(org.ctx, "dataset", filename="x.csv", size=len(EXE))
    async with httpx.AsyncClient() as client:
        await client.put(direct.url, content=EXE)
    error = await refused(store.complete(org.ctx, direct.token))
    assert error.code == "file_type_not_allowed"
    await assert_nothing_stored(store, org)
    assert await store.list_keys("dataset", f"staging/{org.tenant_id}/") == []


async def test_direct_upload_larger_than_allowed_is_deleted(store, org, settings, s3_server):
    endpoint, access, secret = s3_server
    tiny = ObjectStore(
        endpoint,
        access,
        secret,
        signing_key=settings.secret_key,
        region=settings.s3_region,
        bucket_prefix=store.bucket_prefix,
        purposes={
            "dataset": Purpose(
                "dataset", "数据文件", "data file", 1000, ("text/plain",), direct_upload=True
            )
        },
    )
    direct = await tiny.presigned_put(org.ctx, "dataset", filename="x.csv", size=900)
    async with httpx.AsyncClient() as client:
        await client.put(direct.url, content=b"a,b\n" * 1000)  # 4000 bytes, not 900
    error = await refused(tiny.complete(org.ctx, direct.token))
    assert error.code == "file_too_large"
    await assert_nothing_stored(store, org)


async def test_direct_upload_is_only_for_purposes_that_allow_it(store, org):
    error = await refused(store.presigned_put(org.ctx, "photo", filename="a.jpg", size=100))
    assert error.code == "upload_invalid"


async def test_forged_token_finds_nothing(store, org):
    direct = await store.presigned_put(org.ctx, "dataset", filename="x.csv", size=10)
    body, _, mac = direct.token.rpartition(".")
    with pytest.raises(CanalError) as caught:
        await store.complete(org.ctx, body + "." + "0" * len(mac))
    assert caught.value.status == 404


# --- personal files ---------------------------------------------------------------------------


async def test_personal_photo_is_the_owners_only(store, app):
    from tests.factories import make_user

    alice = await make_user("个人用户")
    bob = await make_user("别人")
    stored = await store.upload_personal(
        alice.user_id, "photo", iterate_bytes(png_bytes()), filename="证件照.png"
    )
    assert stored.key.startswith(f"users/{alice.user_id}/photo/")
    assert (await services.get_personal_object(stored.id, alice.user_id)).id == stored.id
    with pytest.raises(CanalError):
        await services.get_personal_object(stored.id, bob.user_id)
    with pytest.raises(CanalError):
        await store.presigned_get_personal(stored, bob.user_id)
    assert await store.presigned_get_personal(stored, alice.user_id)
    await store.delete_personal(stored.id, alice.user_id)
    with pytest.raises(CanalError):
        await services.get_personal_object(stored.id, alice.user_id)
    # A tenant-only purpose is not a personal one.
    with pytest.raises(CanalError):
        await store.upload_personal(alice.user_id, "document", iterate_bytes(PDF), filename="a")


async def test_iter_object_streams_the_bytes_in_chunks(store, org):
    """``iter_object`` (the data bank's ZIP download) hands the object on in order, no chunk
    larger than asked."""
    body = b"%PDF-1.4\n" + bytes(range(256)) * 400  # 102 KB behind a PDF header
    stored = await store.upload_bytes(org.ctx, "document", body, filename="流.pdf")
    chunks = [c async for c in store.iter_object(stored, chunk_size=4096)]
    assert b"".join(chunks) == body
    assert len(chunks) > 20 and max(len(c) for c in chunks) <= 4096
