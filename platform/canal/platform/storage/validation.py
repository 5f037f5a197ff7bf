"""What an upload must be: purposes and their rules, type detection from the bytes, image
re-encoding with a pixel-flood guard, the zip-bomb checker, safe file names.

Everything here is synchronous and takes plain values (files, bytes), so it runs in a worker
thread and is tested without a server. Every refusal is a ``CanalError`` naming the rule in
Chinese and English, with a ``FieldError`` on the ``file`` field for forms.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote

import filetype
from PIL import Image, ImageOps

from canal.platform.http.errors import CanalError, FieldError

MB = 1024 * 1024
HEAD_BYTES = 8192  # filetype looks at most this far (Office files are found inside the zip)

# What a detected type is called on screen, and its file-name extension.
TYPE_NAMES: dict[str, str] = {
    "image/jpeg": "JPG",
    "image/png": "PNG",
    "image/webp": "WebP",
    "application/pdf": "PDF",
    "application/zip": "ZIP",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word (DOCX)",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel (XLSX)",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PPTX",
    "text/plain": "TXT/CSV",
    "application/json": "JSON",
    "application/vnd.apache.parquet": "Parquet",
}
IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


@dataclass(frozen=True)
class ZipLimits:
    """Zip-bomb limits: what an archive may expand to before anyone unpacks it."""

    max_entries: int = 1000
    max_total_uncompressed: int = 500 * MB
    max_entry_uncompressed: int = 200 * MB
    max_ratio: float = 100.0  # uncompressed / compressed, per entry and overall


@dataclass(frozen=True)
class Purpose:
    """What files of one kind may be, and where they go (bucket ``{prefix}-{key}``)."""

    key: str
    label_zh: str
    label_en: str
    max_bytes: int
    content_types: tuple[str, ...]
    # JPEG/PNG/WebP are decoded and re-encoded (drops EXIF/GPS, applies orientation).
    max_pixels: int = 40_000_000
    # Zip uploads are opened and checked against these limits (never unpacked into storage).
    inspect_archives: bool = False
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    # Large files may go straight from the browser to S3 (presigned PUT + complete).
    direct_upload: bool = False
    # A person's own file (no organisation): keys under users/{user_id}/.
    personal: bool = False
    # Kept by another service (the data bank), whose rows point at these objects: the
    # generic file routes neither upload nor delete them (that would leave rows dangling).
    managed_by: str = ""

    @property
    def images(self) -> bool:
        return any(t in IMAGE_TYPES for t in self.content_types)

    def types_text(self, locale: str) -> str:
        names = list(dict.fromkeys(TYPE_NAMES.get(t, t) for t in self.content_types))
        if locale.startswith("zh"):
            return "/".join(names)
        if len(names) == 1:
            return names[0]
        return ", ".join(names[:-1]) + " or " + names[-1]

    def rule(self) -> tuple[str, str]:
        """The whole rule in one sentence: 「照片需为 JPG/PNG,且不超过 2 MB」."""
        size = human_size(self.max_bytes)
        zh = f"{self.label_zh}需为 {self.types_text('zh')},且不超过 {size}"
        types_en = self.types_text("en")
        article = "an" if types_en[:1] in "AEFHILMNORSX" else "a"
        en = f"The {self.label_en} must be {article} {types_en} of at most {size}"
        return zh, en


def human_size(size: int) -> str:
    if size >= 1024 * MB and size % (1024 * MB) == 0:
        return f"{size // (1024 * MB)} GB"
    if size >= MB:
        value = size / MB
        return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} B"


# --- refusals ---------------------------------------------------------------------------------


def _refusal(code: str, zh: str, en: str, status: int) -> CanalError:
    return CanalError(code, zh, en, status=status, errors=(FieldError("file", code, zh, en),))


def too_large(purpose: Purpose) -> CanalError:
    zh, en = purpose.rule()
    return _refusal("file_too_large", zh + "。", en + ".", 413)


def wrong_type(purpose: Purpose, detected: str | None) -> CanalError:
    zh, en = purpose.rule()
    seen = TYPE_NAMES.get(detected or "", detected or "")
    if detected:
        zh += f"(收到的文件内容是 {seen})"
        en += f" (the file's content is {seen})"
    else:
        zh += "(无法识别收到的文件内容)"
        en += " (the file's content is not a recognised type)"
    return _refusal("file_type_not_allowed", zh + "。", en + ".", 415)


def empty_file() -> CanalError:
    return _refusal("file_empty", "文件是空的。", "The file is empty.", 422)


def too_many_pixels(purpose: Purpose, width: int = 0, height: int = 0) -> CanalError:
    limit = f"{purpose.max_pixels / 1_000_000:g}"
    dims_zh = f"({width}×{height})" if width else ""
    dims_en = f" ({width}×{height})" if width else ""
    return _refusal(
        "image_too_many_pixels",
        f"图片尺寸过大{dims_zh},{purpose.label_zh}最多 {limit} 百万像素。",
        f"The image is too large{dims_en}; a {purpose.label_en} may have at most "
        f"{limit} million pixels.",
        422,
    )


def unreadable_image() -> CanalError:
    return _refusal(
        "image_unreadable",
        "图片已损坏或无法读取,请重新导出后再上传。",
        "The image is damaged or cannot be read; export it again and retry.",
        422,
    )


def archive_refused(zh_reason: str, en_reason: str) -> CanalError:
    return _refusal(
        "archive_rejected",
        f"压缩包未通过安全检查:{zh_reason}。",
        f"The archive failed the safety check: {en_reason}.",
        422,
    )


def unknown_purpose(key: str) -> CanalError:
    return _refusal(
        "purpose_unknown",
        f"不支持的文件用途「{key[:40]}」。",
        f"Unknown file purpose '{key[:40]}'.",
        422,
    )


# --- names ------------------------------------------------------------------------------------

NAME_MAX = 200
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def sanitise_filename(raw: str | None, fallback: str = "file") -> str:
    """A file name safe to show and to put in Content-Disposition — never used in a key.

    Keeps the last path segment (either slash), drops control and bidi-override characters
    (NUL, U+202E …), leading dots and spaces, and caps the length keeping the extension.
    """
    text = unicodedata.normalize("NFC", raw or "")
    text = _WINDOWS_DRIVE.sub("", text)
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(c for c in text if unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co"})
    text = text.strip().lstrip(". ").strip()
    if not text:
        return fallback
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10 and stem:
            text = stem[: NAME_MAX - len(ext) - 1] + "." + ext
        else:
            text = text[:NAME_MAX]
    return text


def content_disposition(name: str, *, inline: bool = False) -> str:
    """RFC 6266: an ASCII fallback plus ``filename*=UTF-8''…`` for any other name."""
    name = sanitise_filename(name)
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# --- detecting the type -----------------------------------------------------------------------

_HTML_HINT = re.compile(rb"^\s*(<!doctype|<html|<script|<svg|<\?xml|<body|<head|<iframe)", re.I)
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _text_type(head: bytes) -> str | None:
    if _HTML_HINT.match(head[:512]):
        return "text/html"
    if b"\x00" in head:
        return None
    body = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    for encoding in ("utf-8", "gb18030"):
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(body, final=False)
        except UnicodeDecodeError:
            continue
        if _TEXT_CONTROL.search(text):
            return None
        stripped = text.lstrip()
        if stripped[:1] in {"{", "["} and encoding == "utf-8":
            return "application/json"
        return "text/plain"
    return None


def detect_type(head: bytes) -> str | None:
    """The content type from the first bytes (magic numbers), never from name or header."""
    if not head:
        return None
    if head.startswith(b"PAR1"):
        return "application/vnd.apache.parquet"
    kind = filetype.guess(head)
    if kind is not None:
        mime = str(kind.mime)
        return "image/png" if mime == "image/apng" else mime
    return _text_type(head)


# --- images -----------------------------------------------------------------------------------


@dataclass
class Encoded:
    file: IO[bytes]
    size: int
    sha256: str
    content_type: str
    width: int
    height: int


def reencode_image(source: IO[bytes], content_type: str, purpose: Purpose) -> Encoded:
    """Decode and re-encode an image so no metadata (EXIF, GPS, text chunks) survives.

    The dimensions are checked from the header before any pixel is decoded (a tiny PNG may
    claim 50000×50000); only the detected format's decoder is allowed to open it.
    """
    fmt = IMAGE_TYPES[content_type]
    source.seek(0)
    try:
        opened = Image.open(source, formats=[fmt])
        width, height = opened.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels(purpose) from None
    except (OSError, ValueError, SyntaxError):
        raise unreadable_image() from None
    if width * height > purpose.max_pixels:
        raise too_many_pixels(purpose, width, height)
    try:
        image: Image.Image = ImageOps.exif_transpose(opened)
        out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
        options: dict[str, Any] = {}
        if fmt == "JPEG":
            if image.mode not in {"RGB", "L"}:
                image = image.convert("RGB")
            options = {"quality": 88, "optimize": True}
        elif fmt == "WEBP":
            options = {"quality": 88}
        elif image.mode not in {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}:
            image = image.convert("RGBA")
        image.save(out, format=fmt, **options)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise unreadable_image() from None
    size = out.tell()
    out.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: out.read(1024 * 1024), b""):
        digest.update(chunk)
    out.seek(0)
    return Encoded(out, size, digest.hexdigest(), content_type, image.width, image.height)


# --- archives ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipSummary:
    entries: int
    total_uncompressed: int
    total_compressed: int


def _unsafe_member_name(name: str) -> bool:
    if "\x00" in name or name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name):
        return True
    return any(part == ".." for part in re.split(r"[\\/]", name))


def check_zip(source: IO[bytes], limits: ZipLimits | None = None) -> ZipSummary:
    """Refuse a zip that would be dangerous to unpack; never writes anything to disk.

    Checks entry count, paths (absolute, drive letters, ``..``, NUL), the declared sizes and
    compression ratios — then decompresses every entry into nothing, counting, so a header
    that lies about its size is caught too.
    """
    limits = limits or ZipLimits()
    source.seek(0)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise archive_refused("文件不是有效的 ZIP", "it is not a valid ZIP file") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise archive_refused(
                f"文件数超过 {limits.max_entries} 个",
                f"it holds more than {limits.max_entries} entries",
            )
        declared = compressed = 0
        for info in infos:
            if _unsafe_member_name(info.filename):
                raise archive_refused(
                    "包含绝对路径或「..」路径", "it contains an absolute or '..' path"
                )
            if info.flag_bits & 0x1:
                raise archive_refused("包含加密文件", "it contains encrypted entries")
            declared += info.file_size
            compressed += info.compress_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits.max_entry_uncompressed or ratio > limits.max_ratio:
                raise archive_refused(
                    "压缩比异常(疑似压缩炸弹)", "its compression ratio is suspicious (a zip bomb)"
                )
        if declared > limits.max_total_uncompressed:
            raise archive_refused(
                f"解压后超过 {human_size(limits.max_total_uncompressed)}",
                f"it would expand beyond {human_size(limits.max_total_uncompressed)}",
            )
        if declared / max(compressed, 1) > limits.max_ratio:
            raise archive_refused(
                "压缩比异常(疑似压缩炸弹)", "its compression ratio is suspicious (a zip bomb)"
            )
        actual = 0
        for info in infos:
            if info.is_dir():
                continue
            seen = 0
            try:
                with archive.open(info) as member:
                    while chunk := member.read(64 * 1024):
                        seen += len(chunk)
                        actual += len(chunk)
                        if seen > info.file_size or actual > limits.max_total_uncompressed:
                            raise archive_refused(
                                "实际解压大小与声明不符", "an entry expands beyond its stated size"
                            )
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
                raise archive_refused("内容已损坏", "an entry is damaged") from None
    return ZipSummary(len(infos), actual, compressed)


def check_zip_bytes(data: bytes, limits: ZipLimits | None = None) -> ZipSummary:
    return check_zip(io.BytesIO(data), limits)
