"""The rules without a server: names, Content-Disposition, type detection, the zip checker."""

from __future__ import annotations

import io
import zipfile

import pytest

from canal.platform.http.errors import CanalError
from canal.platform.storage.services import PURPOSES
from canal.platform.storage.validation import (
    ZipLimits,
    check_zip_bytes,
    content_disposition,
    detect_type,
    sanitise_filename,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x", "x"),
        ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
        ("a\x00b.png", "ab.png"),
        ("\u202egnp.exe", "gnp.exe"),
        ("..", "file"),
        ("", "file"),
        (None, "file"),
        ("  .hidden", "hidden"),
        ("营业执照 2024.pdf", "营业执照 2024.pdf"),
    ],
)
def test_sanitise_filename(raw, expected):
    assert sanitise_filename(raw) == expected


def test_very_long_name_keeps_its_extension():
    name = sanitise_filename("x" * 5000 + ".png")
    assert len(name) == 200 and name.endswith(".png")


def test_content_disposition_is_rfc6266_with_utf8_name():
    header = content_disposition("营业执照.pdf")
    assert header.startswith('attachment; filename="____.pdf"; ')
    assert "filename*=UTF-8''%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7.pdf" in header
    # Quotes and separators cannot break out of the header value.
    assert content_disposition('a";b.txt').count('"') == 2


def test_photo_rule_reads_like_the_spec():
    assert PURPOSES["photo"].rule() == (
        "照片需为 JPG/PNG,且不超过 2 MB",
        "The photo must be a JPG or PNG of at most 2 MB",
    )


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 30, "image/jpeg"),
        (b"MZ\x90\x00" + b"\0" * 60, "application/x-msdownload"),
        (b"<!DOCTYPE html><html><script>alert(1)</script>", "text/html"),
        (b"  <svg onload=alert(1)>", "text/html"),
        ("企业名称,信用代码\n甲,1\n".encode(), "text/plain"),
        ("企业名称,信用代码\n".encode("gb18030"), "text/plain"),
        (b'{"a": 1}', "application/json"),
        (b"PAR1\x15\x04", "application/vnd.apache.parquet"),
        (b"\x00\x01\x02binary", None),
        (b"", None),
    ],
)
def test_type_comes_from_the_bytes(head, expected):
    assert detect_type(head) == expected


# --- zip bombs and friends ------------------------------------------------------------------


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _refusal(data: bytes, limits: ZipLimits | None = None) -> CanalError:
    with pytest.raises(CanalError) as caught:
        check_zip_bytes(data, limits)
    assert caught.value.code == "archive_rejected"
    return caught.value


def test_an_ordinary_zip_passes():
    summary = check_zip_bytes(_zip({"a.csv": b"x,y\n1,2\n" * 100, "dir/b.txt": b"hello"}))
    assert summary.entries == 2
    assert summary.total_uncompressed == 800 + 5


def test_high_ratio_bomb_is_refused():
    buffer = io.BytesIO()
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)
    with archive, archive.open("zeros.bin", "w") as member:
        for _ in range(20):
            member.write(b"\0" * (1024 * 1024))
    data = buffer.getvalue()
    assert len(data) < 100_000  # 20 MB of zeros in a few KB
    error = _refusal(data)
    assert "压缩炸弹" in error.zh and "zip bomb" in error.en


def test_total_uncompressed_limit():
    data = _zip({f"f{i}.txt": bytes(range(256)) * 40 for i in range(5)}, zipfile.ZIP_STORED)
    error = _refusal(data, ZipLimits(max_total_uncompressed=20_000))
    assert "expand beyond" in error.en


def test_too_many_entries():
    error = _refusal(_zip({f"{i}.txt": b"x" for i in range(11)}), ZipLimits(max_entries=10))
    assert "more than 10 entries" in error.en and "10 个" in error.zh


@pytest.mark.parametrize("name", ["../evil.sh", "a/../../evil", "/etc/cron.d/x", "C:\\x", "..\\x"])
def test_paths_that_escape_are_refused(name):
    error = _refusal(_zip({name: b"x"}))
    assert "'..'" in error.en


def test_not_a_zip():
    error = _refusal(b"PK\x03\x04 but not really a zip")
    assert "not a valid ZIP" in error.en
