"""Object storage for every module: files go into S3 buckets by purpose, rows record them.

Modules call ``object_store()`` (set up by the app's lifespan) and its methods with a
``TenantContext``; they never talk to S3 or choose keys themselves. See docs/storage.md.

* Keys are made here — ``tenants/{tenant_id}/{purpose}/{yyyy}/{mm}/{uuid4}`` or
  ``users/{user_id}/…`` — never from the uploaded name (that is sanitised and kept in the row
  for ``Content-Disposition`` only).
* Uploads arrive as an async iterator of chunks and are spooled to an unlinked temporary file
  while the size limit, the quota and the SHA-256 are checked, so memory stays flat and a
  refused upload never reaches S3. The type comes from the bytes; images are re-encoded.
* The object is PUT first, then the row and the audit event are written in one transaction;
  if that fails, the object is deleted again. Nothing is half-stored.
* A direct (browser) upload PUTs to ``staging/{tenant_id}/{uuid4}``; ``complete`` copies it
  server-side to a fresh final key, removes the staged object and checks the copy. Final keys
  are never signed for writing, so a replayed PUT URL cannot replace a checked file.
* The minio client is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error
from PIL import Image

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, not_found
from canal.platform.settings import Settings
from canal.platform.storage import validation
from canal.platform.storage.tables import PersonalObject, StorageQuota, StoredObject
from canal.platform.storage.validation import MB, Purpose, ZipLimits

log = logging.getLogger("canal.storage")

GB = 1024 * MB
DEFAULT_TENANT_QUOTA = 1 * GB
DEFAULT_GET_EXPIRY = dt.timedelta(minutes=5)
DEFAULT_PUT_EXPIRY = dt.timedelta(minutes=10)
CHUNK = 1024 * 1024
PART_SIZE = 8 * MB  # multipart part size for large objects (S3 minimum: 5 MB)

# --- purposes ------------------------------------------------------------------------------

_IMAGES = ("image/jpeg", "image/png", "image/webp")
_OFFICE = (
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)

PURPOSES: dict[str, Purpose] = {
    p.key: p
    for p in (
        Purpose(
            "document",
            "文档",
            "document",
            max_bytes=20 * MB,
            content_types=("application/pdf", *_OFFICE, *_IMAGES, "text/plain"),
        ),
        Purpose(
            "photo",
            "照片",
            "photo",
            max_bytes=2 * MB,
            content_types=("image/jpeg", "image/png"),
            max_pixels=24_000_000,
            personal=True,
        ),
        Purpose(
            "avatar",
            "头像",
            "avatar",
            max_bytes=1 * MB,
            content_types=_IMAGES,
            max_pixels=16_000_000,
            personal=True,
        ),
        Purpose(
            "bundle",
            "压缩包",
            "archive",
            max_bytes=50 * MB,
            content_types=("application/zip",),
            inspect_archives=True,
            zip_limits=ZipLimits(max_total_uncompressed=500 * MB),
        ),
        Purpose(
            "dataset",
            "数据文件",
            "data file",
            max_bytes=512 * MB,
            content_types=(
                "text/plain",
                "application/json",
                "application/zip",
                "application/vnd.apache.parquet",
            ),
            direct_upload=True,
        ),
        # The data bank (canal.exchange.bank): any kept file; its backups and cold archive.
        *(
            Purpose(
                key,
                label_zh,
                label_en,
                max_bytes=512 * MB,
                content_types=tuple(validation.TYPE_NAMES),
                personal=key == "bank",
                managed_by="bank",
            )
            for key, label_zh, label_en in (
                ("bank", "数据银行文件", "data bank file"),
                ("bank-backup", "数据银行备份", "data bank backup"),
                ("bank-cold", "数据银行归档", "data bank archive"),
            )
        ),
    )
}

# Backstop for any decoder path we do not guard ourselves; the real check is per purpose,
# on the header's dimensions, before decoding (``validation.reencode_image``).
Image.MAX_IMAGE_PIXELS = max(p.max_pixels for p in PURPOSES.values())


def get_purpose(key: str) -> Purpose:
    purpose = PURPOSES.get(key)
    if purpose is None:
        raise validation.unknown_purpose(key)
    return purpose


# --- what callers get back ---------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """A stored object's record. Obtain it only through a scoped lookup."""

    id: uuid.UUID
    tenant_id: uuid.UUID | None  # None for a personal file
    owner_id: uuid.UUID | None  # the person, for a personal file
    purpose: str
    bucket: str
    key: str
    size: int
    content_type: str
    sha256: str
    original_name: str
    uploaded_by: uuid.UUID | None
    created_at: dt.datetime


@dataclass(frozen=True)
class PurposeUsage:
    purpose: str
    objects: int
    bytes: int


@dataclass(frozen=True)
class Usage:
    quota_bytes: int
    used_bytes: int
    objects: int
    by_purpose: list[PurposeUsage]

    @property
    def percent(self) -> float:
        return round(100.0 * self.used_bytes / self.quota_bytes, 1) if self.quota_bytes else 0.0


@dataclass(frozen=True)
class DirectUpload:
    """A browser PUTs the file to ``url`` (before ``expires_at``), then calls complete."""

    object_id: uuid.UUID
    url: str
    token: str
    expires_at: dt.datetime
    max_bytes: int


def _file_from_row(row: dict[str, Any]) -> StoredFile:
    return StoredFile(
        id=row["id"],
        tenant_id=row.get("tenant_id"),
        owner_id=row.get("owner_id"),
        purpose=row["purpose"],
        bucket=row["bucket"],
        key=row["key"],
        size=row["size"],
        content_type=row["content_type"],
        sha256=row["sha256"],
        original_name=row["original_name"],
        uploaded_by=row.get("uploaded_by", row.get("owner_id")),
        created_at=row["created_at"],
    )


# --- refusals that are not about one file's shape --------------------------------------------


def quota_exceeded(quota: int, used: int) -> CanalError:
    zh = (
        f"本组织的存储空间不足(已用 {validation.human_size(used)},"
        f"共 {validation.human_size(quota)}),请删除不需要的文件或联系运营方扩容。"
    )
    en = (
        f"This organisation's storage is full ({validation.human_size(used)} of "
        f"{validation.human_size(quota)} used); delete files you no longer need or ask the "
        "operator for more space."
    )
    return CanalError(
        "storage_quota_exceeded",
        zh,
        en,
        status=413,
        errors=(FieldError("file", "storage_quota_exceeded", zh, en),),
    )


def _upload_invalid(zh: str, en: str) -> CanalError:
    return CanalError(
        "upload_invalid",
        zh,
        en,
        status=422,
        errors=(FieldError("file", "upload_invalid", zh, en),),
    )


# --- spooling an upload ----------------------------------------------------------------------


@dataclass
class Spooled:
    file: IO[bytes]
    size: int
    sha256: str
    head: bytes

    def close(self) -> None:
        self.file.close()


async def spool(
    chunks: AsyncIterable[bytes],
    *,
    limit: int,
    on_limit: CanalError,
    tmp_dir: Path | None = None,
) -> Spooled:
    """Copy the stream into an unlinked temporary file, refusing at ``limit`` + 1 bytes.

    Reading stops at the first chunk past the limit: the rest of the body is never read.
    """
    out = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - closed by the caller
    digest = hashlib.sha256()
    size = 0
    head = bytearray()
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:
                raise on_limit
            digest.update(chunk)
            if len(head) < validation.HEAD_BYTES:
                head += chunk[: validation.HEAD_BYTES - len(head)]
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.flush()
    out.seek(0)
    return Spooled(out, size, digest.hexdigest(), bytes(head))


async def iterate_bytes(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


# --- the store --------------------------------------------------------------------------------


class ObjectStore:
    """The one way files get into and out of S3."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        signing_key: str,
        secure: bool = False,
        region: str = "cn-east-1",
        bucket_prefix: str = "canal",
        public_endpoint: str | None = None,
        public_secure: bool | None = None,
        purposes: dict[str, Purpose] | None = None,
        tmp_dir: Path | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.bucket_prefix = bucket_prefix
        self.purposes = purposes or PURPOSES
        self.tmp_dir = tmp_dir
        self._signing_key = hashlib.sha256(b"canal-storage:" + signing_key.encode()).digest()
        # region given: presigning needs no round trip to ask for the bucket's location.
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        # Presigned URLs name the host the browser will use (signature V4 covers the host).
        self.presigner = (
            Minio(
                public_endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure if public_secure is None else public_secure,
                region=region,
            )
            if public_endpoint and public_endpoint != endpoint
            else self.client
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> ObjectStore:
        """From the settings, or from the embedded server's (endpoint, access, secret)."""
        public = getattr(settings, "s3_public_endpoint", None)
        return cls(
            endpoint or settings.s3_endpoint or "",
            access_key or settings.s3_access_key,
            secret_key or settings.s3_secret_key,
            signing_key=settings.secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            bucket_prefix=settings.s3_bucket_prefix,
            public_endpoint=public,
        )

    def bucket(self, purpose: str | Purpose) -> str:
        key = purpose.key if isinstance(purpose, Purpose) else get_purpose(purpose).key
        return f"{self.bucket_prefix}-{key}"

    def purpose(self, key: str) -> Purpose:
        purpose = self.purposes.get(key)
        if purpose is None:
            raise validation.unknown_purpose(key)
        return purpose

    async def start(self, *, attempts: int = 50) -> None:
        """Create every purpose's bucket (private: no bucket policy, presigned access only)."""
        for purpose in self.purposes.values():
            name = self.bucket(purpose)
            for attempt in range(attempts):
                try:
                    if not await asyncio.to_thread(self.client.bucket_exists, name):
                        await asyncio.to_thread(self.client.make_bucket, name)
                    break
                except S3Error as exc:
                    if exc.code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        break
                    raise
                except Exception:
                    # A freshly started server may still be finding its volumes.
                    if attempt == attempts - 1:
                        raise
                    await asyncio.sleep(0.1)

    # --- keys and signed tokens ----------------------------------------------------------

    @staticmethod
    def _key(owner: str, purpose: Purpose, object_id: uuid.UUID) -> str:
        now = clock.now()
        return f"{owner}/{purpose.key}/{now:%Y}/{now:%m}/{object_id}"

    def _sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, sort_keys=True).encode()).decode()
        mac = hmac.new(self._signing_key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def _unsign(self, token: str) -> dict[str, Any]:
        body, _, mac = token.rpartition(".")
        expected = hmac.new(self._signing_key, body.encode(), hashlib.sha256).hexdigest()
        if not body or not hmac.compare_digest(mac, expected):
            raise not_found()
        try:
            payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            raise not_found() from None
        return payload

    # --- checking and storing ------------------------------------------------------------

    def _inspect(self, spooled: Spooled, purpose: Purpose) -> tuple[IO[bytes], int, str, str]:
        """Type by content, then the purpose's own checks. Returns what to store."""
        if spooled.size == 0:
            raise validation.empty_file()
        detected = validation.detect_type(spooled.head)
        if detected not in purpose.content_types:
            raise validation.wrong_type(purpose, detected)
        if detected in validation.IMAGE_TYPES:
            encoded = validation.reencode_image(spooled.file, detected, purpose)
            return encoded.file, encoded.size, encoded.sha256, detected
        if detected == "application/zip" and purpose.inspect_archives:
            validation.check_zip(spooled.file, purpose.zip_limits)
        spooled.file.seek(0)
        return spooled.file, spooled.size, spooled.sha256, detected

    async def _put(
        self, bucket: str, key: str, data: IO[bytes], size: int, content_type: str
    ) -> None:
        await asyncio.to_thread(
            self.client.put_object,
            bucket,
            key,
            cast(BinaryIO, data),
            size,
            content_type=content_type,
            # minio's parallel part uploads queue every part in memory ahead of the
            # uploads (a 100 MB file held 86 MB): one part at a time keeps memory flat.
            part_size=PART_SIZE,
            num_parallel_uploads=1,
        )

    async def _remove(self, bucket: str, key: str) -> None:
        try:
            await asyncio.to_thread(self.client.remove_object, bucket, key)
        except Exception:  # the caller's error matters more; the sweep finds leftovers
            log.exception("could not remove %s/%s", bucket, key)

    async def _receive(
        self,
        chunks: AsyncIterable[bytes],
        purpose: Purpose,
        *,
        limit: int,
        on_limit: CanalError,
        declared_size: int | None,
    ) -> tuple[Spooled, IO[bytes], int, str, str]:
        if declared_size is not None and declared_size > limit:
            raise on_limit
        spooled = await spool(chunks, limit=limit, on_limit=on_limit, tmp_dir=self.tmp_dir)
        try:
            data, size, sha256, content_type = await asyncio.to_thread(
                self._inspect, spooled, purpose
            )
        except BaseException:
            spooled.close()
            raise
        return spooled, data, size, sha256, content_type

    async def upload(
        self,
        ctx: TenantContext,
        purpose_key: str,
        chunks: AsyncIterable[bytes],
        *,
        filename: str | None,
        declared_size: int | None = None,
        ip: str = "",
    ) -> StoredFile:
        """Store one tenant file from a stream of chunks; refuses with a zh/en reason."""
        purpose = self.purpose(purpose_key)
        quota, used = await tenant_quota_and_usage(ctx)
        room = quota - used
        if declared_size is not None and declared_size > purpose.max_bytes:
            raise validation.too_large(purpose)
        if room <= 0 or (declared_size is not None and declared_size > room):
            raise quota_exceeded(quota, used)
        # Whichever comes first while reading: the purpose's limit or the quota's.
        limit = min(purpose.max_bytes, room)
        on_limit = (
            validation.too_large(purpose)
            if purpose.max_bytes <= room
            else quota_exceeded(quota, used)
        )
        spooled, data, size, sha256, content_type = await self._receive(
            chunks, purpose, limit=limit, on_limit=on_limit, declared_size=declared_size
        )
        object_id = uuid.uuid4()
        key = self._key(f"tenants/{ctx.tenant_id}", purpose, object_id)
        bucket = self.bucket(purpose)
        name = validation.sanitise_filename(filename)
        try:
            await self._put(bucket, key, data, size, content_type)
        finally:
            data.close()
            spooled.close()
        try:
            return await _record_tenant_object(
                ctx,
                object_id=object_id,
                purpose=purpose.key,
                bucket=bucket,
                key=key,
                size=size,
                content_type=content_type,
                sha256=sha256,
                original_name=name,
                ip=ip,
            )
        except BaseException:
            await self._remove(bucket, key)
            raise

    async def upload_bytes(
        self, ctx: TenantContext, purpose_key: str, data: bytes, *, filename: str, ip: str = ""
    ) -> StoredFile:
        return await self.upload(
            ctx, purpose_key, iterate_bytes(data), filename=filename, declared_size=len(data), ip=ip
        )

    # --- downloads -----------------------------------------------------------------------

    async def presigned_get(
        self,
        stored: StoredFile,
        ctx: TenantContext,
        *,
        expires: dt.timedelta = DEFAULT_GET_EXPIRY,
        inline: bool = False,
    ) -> str:
        """A short-lived download URL for a file obtained from ``get_object_in_tenant``."""
        if stored.tenant_id != ctx.tenant_id:
            raise not_found()
        return await self._presign_get(stored, expires, inline)

    async def _presign_get(self, stored: StoredFile, expires: dt.timedelta, inline: bool) -> str:
        headers = {
            "response-content-disposition": validation.content_disposition(
                stored.original_name, inline=inline
            ),
            "response-content-type": stored.content_type,
        }
        return await asyncio.to_thread(
            self.presigner.presigned_get_object,
            stored.bucket,
            stored.key,
            expires=expires,
            response_headers=headers,  # type: ignore[arg-type]
        )

    async def read_head(self, stored: StoredFile, length: int = validation.HEAD_BYTES) -> bytes:
        return await self._read_range(stored.bucket, stored.key, 0, length)

    async def _read_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        def read() -> bytes:
            response = self.client.get_object(bucket, key, offset=offset, length=length)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(read)

    async def iter_object(
        self, stored: StoredFile, chunk_size: int = CHUNK
    ) -> AsyncIterator[bytes]:
        """The object's bytes in order, ``chunk_size`` at a time, one chunk in memory: for a
        server that must pass a file on (a ZIP of many files) rather than hand out a URL.
        The caller has already found ``stored`` through a scoped lookup."""
        response = await asyncio.to_thread(self.client.get_object, stored.bucket, stored.key)
        try:
            while chunk := await asyncio.to_thread(response.read, chunk_size):
                yield bytes(chunk)
        finally:
            response.close()
            response.release_conn()

    async def read_all(self, stored: StoredFile) -> bytes:
        """The whole object (small files only: tests, thumbnails)."""
        return await self._read_range(stored.bucket, stored.key, 0, 0)

    # --- straight from the browser ---------------------------------------------------------

    async def presigned_put(
        self,
        ctx: TenantContext,
        purpose_key: str,
        *,
        filename: str | None,
        size: int,
        expires: dt.timedelta = DEFAULT_PUT_EXPIRY,
    ) -> DirectUpload:
        """A short-lived URL to PUT one file to a key we chose; then call ``complete``."""
        purpose = self.purpose(purpose_key)
        if not purpose.direct_upload:
            raise _upload_invalid(
                f"{purpose.label_zh}不支持直接上传,请通过表单上传。",
                f"A {purpose.label_en} cannot be uploaded directly; use the upload form.",
            )
        if size <= 0 or size > purpose.max_bytes:
            raise validation.too_large(purpose)
        quota, used = await tenant_quota_and_usage(ctx)
        if used + size > quota:
            raise quota_exceeded(quota, used)
        object_id = uuid.uuid4()
        expires_at = clock.now() + expires
        token = self._sign(
            {
                "o": str(object_id),
                "t": str(ctx.tenant_id),
                "p": purpose.key,
                "n": validation.sanitise_filename(filename),
                "e": int(expires_at.timestamp()),
            }
        )
        # The browser PUTs to a staging key; ``complete`` moves the checked file to a key that
        # is never signed for writing — a second PUT to this URL cannot replace what it kept.
        url = await asyncio.to_thread(
            self.presigner.presigned_put_object,
            self.bucket(purpose),
            _staging_key(ctx.tenant_id, object_id),
            expires=expires,
        )
        return DirectUpload(object_id, url, token, expires_at, purpose.max_bytes)

    async def complete(self, ctx: TenantContext, token: str, *, ip: str = "") -> StoredFile:
        """Check what the browser PUT (size, type from its first bytes) and record it.

        The staged object is copied server-side to a fresh final key (one per attempt) and
        removed from staging; the checks run on that copy, which nobody else can write. A file
        that fails them is deleted. Completing twice returns the same record.
        """
        payload = self._unsign(token)
        if payload.get("t") != str(ctx.tenant_id):
            raise not_found()
        object_id = uuid.UUID(payload["o"])
        existing = await _lookup_tenant_object(object_id, ctx)
        if existing is not None:
            return existing
        # The PUT must have started before expiry; allow the transfer itself an hour.
        if clock.timestamp() > payload["e"] + 3600:
            raise not_found()
        purpose = self.purpose(payload["p"])
        bucket = self.bucket(purpose)
        staging = _staging_key(ctx.tenant_id, object_id)
        # A key of this attempt's own: a concurrent complete of the same upload never writes
        # over a copy that another attempt checked (or recorded).
        key = self._key(f"tenants/{ctx.tenant_id}", purpose, uuid.uuid4())
        try:
            stat = await asyncio.to_thread(self.client.stat_object, bucket, staging)
        except S3Error:
            raise _upload_invalid(
                "没有找到已上传的文件,请重新上传。",
                "The uploaded file was not found; upload it again.",
            ) from None
        staged_size = int(stat.size or 0)
        try:
            if staged_size == 0:
                raise validation.empty_file()
            if staged_size > purpose.max_bytes:
                raise validation.too_large(purpose)
            try:
                await asyncio.to_thread(
                    self.client.copy_object,
                    bucket,
                    key,
                    CopySource(bucket, staging, match_etag=stat.etag),
                )
            except S3Error:
                if (recorded := await _lookup_tenant_object(object_id, ctx)) is not None:
                    return recorded  # a concurrent complete took the staged file first
                log.warning("copying staged upload %s failed", object_id, exc_info=True)
                raise _upload_invalid(
                    "上传的文件在检查期间发生了变化,请重新上传。",
                    "The uploaded file changed while it was being checked; upload it again.",
                ) from None
        finally:
            await self._remove(bucket, staging)
        try:
            # From here on only the final copy counts: a PUT racing the copy changes nothing.
            final = await asyncio.to_thread(self.client.stat_object, bucket, key)
            size = int(final.size or 0)
            if size == 0:
                raise validation.empty_file()
            if size > purpose.max_bytes:
                raise validation.too_large(purpose)
            head = await self._read_range(bucket, key, 0, validation.HEAD_BYTES)
            detected = validation.detect_type(head)
            if detected not in purpose.content_types or detected in validation.IMAGE_TYPES:
                raise validation.wrong_type(purpose, detected)
            sha256 = await asyncio.to_thread(self._hash_object, bucket, key)
            return await _record_tenant_object(
                ctx,
                object_id=object_id,
                purpose=purpose.key,
                bucket=bucket,
                key=key,
                size=size,
                content_type=detected,
                sha256=sha256,
                original_name=payload["n"],
                ip=ip,
            )
        except Exception:
            await self._remove(bucket, key)
            # A concurrent complete of the same upload may have recorded it first: that one.
            recorded = await _lookup_tenant_object(object_id, ctx)
            if recorded is not None:
                return recorded
            raise
        except BaseException:
            await self._remove(bucket, key)
            raise

    def _hash_object(self, bucket: str, key: str) -> str:
        digest = hashlib.sha256()
        response = self.client.get_object(bucket, key)
        try:
            for chunk in response.stream(CHUNK):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest()

    async def copy(
        self, stored: StoredFile, ctx: TenantContext, purpose_key: str, *, ip: str = ""
    ) -> StoredFile:
        """A server-side copy of a tenant file into another purpose's bucket (backups, cold
        archive), recorded like an upload: quota, row and audit event in one transaction.

        The bytes never pass through this process, and an image is not re-encoded again.
        """
        if stored.tenant_id != ctx.tenant_id:
            raise not_found()
        purpose = self.purpose(purpose_key)
        if stored.content_type not in purpose.content_types:
            raise validation.wrong_type(purpose, stored.content_type)
        if stored.size > purpose.max_bytes:
            raise validation.too_large(purpose)
        object_id = uuid.uuid4()
        key = self._key(f"tenants/{ctx.tenant_id}", purpose, object_id)
        bucket = self.bucket(purpose)
        await asyncio.to_thread(
            self.client.copy_object, bucket, key, CopySource(stored.bucket, stored.key)
        )
        try:
            return await _record_tenant_object(
                ctx,
                object_id=object_id,
                purpose=purpose.key,
                bucket=bucket,
                key=key,
                size=stored.size,
                content_type=stored.content_type,
                sha256=stored.sha256,
                original_name=stored.original_name,
                ip=ip,
            )
        except BaseException:
            await self._remove(bucket, key)
            raise

    # --- staged parts of a chunked (resumable) upload ------------------------------------
    # The caller keeps the upload's record; the parts wait under staging/ unchecked, and are
    # read back in order into ``upload``/``upload_personal``, which runs every check.

    def _parts_prefix(self, owner: str, upload_id: uuid.UUID) -> str:
        return f"staging/parts/{owner}/{upload_id}/"

    async def stage_part(
        self, purpose_key: str, owner: str, upload_id: uuid.UUID, index: int, data: bytes
    ) -> None:
        """Keep one part (``owner`` is ``tenants/{id}`` or ``users/{id}``); re-sending it
        replaces it."""
        key = f"{self._parts_prefix(owner, upload_id)}{index:05d}"
        await self._put(
            self.bucket(purpose_key), key, io.BytesIO(data), len(data), "application/octet-stream"
        )

    async def staged_parts(
        self, purpose_key: str, owner: str, upload_id: uuid.UUID
    ) -> dict[int, int]:
        """The parts received so far: index -> size."""
        bucket, prefix = self.bucket(purpose_key), self._parts_prefix(owner, upload_id)

        def listing() -> dict[int, int]:
            return {
                int(str(o.object_name).rsplit("/", 1)[-1]): int(o.size or 0)
                for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)
            }

        return await asyncio.to_thread(listing)

    async def read_staged(
        self, purpose_key: str, owner: str, upload_id: uuid.UUID, count: int
    ) -> AsyncIterator[bytes]:
        """Parts 0 … count-1 in order, one part in memory at a time."""
        bucket, prefix = self.bucket(purpose_key), self._parts_prefix(owner, upload_id)
        for index in range(count):
            yield await self._read_range(bucket, f"{prefix}{index:05d}", 0, 0)

    async def drop_staged(self, purpose_key: str, owner: str, upload_id: uuid.UUID) -> None:
        bucket, prefix = self.bucket(purpose_key), self._parts_prefix(owner, upload_id)
        for key in await self.list_keys(purpose_key, prefix):
            await self._remove(bucket, key)

    # --- deleting ------------------------------------------------------------------------

    async def delete(self, object_id: uuid.UUID, ctx: TenantContext, *, ip: str = "") -> None:
        """Delete a tenant file: the row (audited) now, the object once that commits."""
        async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
            stored = await get_object_in_tenant(object_id, ctx)
            await StoredObject.delete().where(
                (StoredObject.id == object_id) & (StoredObject.tenant_id == ctx.tenant_id)
            )
            await record(
                "file.deleted",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=f"file:{object_id}",
                ip=ip,
                data={"purpose": stored.purpose, "size": stored.size, "name": stored.original_name},
            )

            async def remove() -> None:
                await self._remove(stored.bucket, stored.key)

            db.on_commit(remove)

    # --- personal files ------------------------------------------------------------------

    async def upload_personal(
        self,
        user_id: uuid.UUID,
        purpose_key: str,
        chunks: AsyncIterable[bytes],
        *,
        filename: str | None,
        declared_size: int | None = None,
        ip: str = "",
    ) -> StoredFile:
        """Store a person's own file (purposes marked ``personal`` only)."""
        purpose = self.purpose(purpose_key)
        if not purpose.personal:
            raise validation.unknown_purpose(purpose_key)
        spooled, data, size, sha256, content_type = await self._receive(
            chunks,
            purpose,
            limit=purpose.max_bytes,
            on_limit=validation.too_large(purpose),
            declared_size=declared_size,
        )
        object_id = uuid.uuid4()
        key = self._key(f"users/{user_id}", purpose, object_id)
        bucket = self.bucket(purpose)
        try:
            await self._put(bucket, key, data, size, content_type)
        finally:
            data.close()
            spooled.close()
        row = PersonalObject(
            id=object_id,
            owner_id=user_id,
            purpose=purpose.key,
            bucket=bucket,
            key=key,
            size=size,
            content_type=content_type,
            sha256=sha256,
            original_name=validation.sanitise_filename(filename),
        )
        try:
            async with db.user_scope(user_id):
                await row.save()
                await record(
                    "file.uploaded",
                    actor_id=user_id,
                    target=f"personal_file:{object_id}",
                    ip=ip,
                    data={"purpose": purpose.key, "size": size, "type": content_type},
                )
        except BaseException:
            await self._remove(bucket, key)
            raise
        found = await get_personal_object(object_id, user_id)
        return found

    async def presigned_get_granted(
        self, stored: StoredFile, *, expires: dt.timedelta = DEFAULT_GET_EXPIRY
    ) -> str:
        """A short-lived download URL for another tenant's file (``get_object_granted``).

        Only for a domain that has already decided the caller may read this file (an authority
        reading the material of an application to its own policy) and audited the access.
        """
        return await self._presign_get(stored, expires, False)

    async def presigned_get_personal(
        self, stored: StoredFile, user_id: uuid.UUID, *, expires: dt.timedelta = DEFAULT_GET_EXPIRY
    ) -> str:
        if stored.owner_id != user_id:
            raise not_found()
        return await self._presign_get(stored, expires, False)

    async def delete_personal(
        self, object_id: uuid.UUID, user_id: uuid.UUID, *, ip: str = ""
    ) -> None:
        async with db.user_scope(user_id):
            stored = await get_personal_object(object_id, user_id)
            await PersonalObject.delete().where(
                (PersonalObject.id == object_id) & (PersonalObject.owner_id == user_id)
            )
            await record(
                "file.deleted",
                actor_id=user_id,
                target=f"personal_file:{object_id}",
                ip=ip,
                data={"purpose": stored.purpose, "size": stored.size},
            )

            async def remove() -> None:
                await self._remove(stored.bucket, stored.key)

            db.on_commit(remove)

    # --- for tests and the sweep ---------------------------------------------------------

    async def list_keys(self, purpose_key: str, prefix: str) -> list[str]:
        bucket = self.bucket(purpose_key)

        def listing() -> list[str]:
            return [
                str(o.object_name)
                for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)
            ]

        return await asyncio.to_thread(listing)


# --- the process's store ---------------------------------------------------------------------

_store: ObjectStore | None = None


def set_object_store(store: ObjectStore | None) -> None:
    """Called by the app's lifespan (and the worker) once the store has started."""
    global _store
    _store = store


def object_store() -> ObjectStore:
    if _store is None:
        raise RuntimeError("object storage is not configured (set up in the app's lifespan)")
    return _store


# --- rows -------------------------------------------------------------------------------------


def _staging_key(tenant_id: uuid.UUID, object_id: uuid.UUID) -> str:
    """Where a direct upload's browser PUT lands, until ``complete`` checks and moves it."""
    return f"staging/{tenant_id}/{object_id}"


_COLUMNS = (
    "id, tenant_id, purpose, bucket, key, size, content_type, sha256, original_name, "
    "uploaded_by, created_at"
)


async def _lookup_tenant_object(object_id: uuid.UUID, ctx: TenantContext) -> StoredFile | None:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await StoredObject.raw(
            f"SELECT {_COLUMNS} FROM stored_objects WHERE id = {{}} AND tenant_id = {{}}",
            object_id,
            ctx.tenant_id,
        )
    return _file_from_row(rows[0]) if rows else None


async def get_object_in_tenant(object_id: uuid.UUID, ctx: TenantContext) -> StoredFile:
    """The tenant's file, or 404 — the same answer for a missing and a foreign id."""
    found = await _lookup_tenant_object(object_id, ctx)
    if found is None:
        raise not_found()
    return found


async def get_object_to_share(object_id: uuid.UUID, ctx: TenantContext) -> StoredFile:
    """The tenant's file, to be attached to something another organisation reads (an order's
    message thread, a policy application, a provider application, a listing, a dataset).

    Attaching hands the file to the other side, so it takes the permission that reads the
    organisation's files (``files:read``) on top of the route's own permission to write the
    thing it is attached to — except for a file this person uploaded themselves, which gives
    nobody anything they did not have. Otherwise 403 ``files_read_required``; a foreign or
    missing id is 404 as always.
    """
    from canal.platform.access.services import access

    stored = await get_object_in_tenant(object_id, ctx)
    if stored.uploaded_by != ctx.user_id and not access().enforce(
        ctx.user_id, ctx.tenant_id, "files", "read"
    ):
        raise CanalError(
            "files_read_required",
            "附加本组织的文件需要“查看与下载文件”权限;您可以上传自己的文件。",
            "Attaching one of the organisation's files needs the permission to view and "
            "download files; you may upload a file of your own.",
            status=403,
        )
    return stored


async def get_object_granted(
    object_id: uuid.UUID, owner_tenant_id: uuid.UUID, user_id: uuid.UUID
) -> StoredFile:
    """A file of ``owner_tenant_id`` read for someone outside it, or 404.

    The caller (a domain service) has checked that this person may see this very file — for
    example an authority opening the material of an application to one of its own policies.
    """
    async with db.tenant_scope(owner_tenant_id, user_id):
        rows = await StoredObject.raw(
            f"SELECT {_COLUMNS} FROM stored_objects WHERE id = {{}} AND tenant_id = {{}}",
            object_id,
            owner_tenant_id,
        )
    if not rows:
        raise not_found()
    return _file_from_row(rows[0])


async def get_personal_object(object_id: uuid.UUID, user_id: uuid.UUID) -> StoredFile:
    async with db.user_scope(user_id):
        rows = await PersonalObject.raw(
            "SELECT id, owner_id, purpose, bucket, key, size, content_type, sha256, "
            "original_name, created_at FROM personal_objects WHERE id = {} AND owner_id = {}",
            object_id,
            user_id,
        )
    if not rows:
        raise not_found()
    return _file_from_row(rows[0])


async def list_objects_in_tenant(
    ctx: TenantContext, *, purpose: str | None = None, limit: int = 50
) -> list[StoredFile]:
    limit = max(1, min(limit, 200))
    condition = "tenant_id = {}"
    args: list[Any] = [ctx.tenant_id]
    if purpose:
        condition += " AND purpose = {}"
        args.append(purpose)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await StoredObject.raw(
            f"SELECT {_COLUMNS} FROM stored_objects WHERE {condition} "
            f"ORDER BY created_at DESC LIMIT {limit}",
            *args,
        )
    return [_file_from_row(r) for r in rows]


async def _quota_bytes(tenant_id: uuid.UUID) -> int:
    row = (
        await StorageQuota.select(StorageQuota.quota_bytes)
        .where(StorageQuota.tenant_id == tenant_id)
        .first()
    )
    return int(row["quota_bytes"]) if row else DEFAULT_TENANT_QUOTA


async def _usage_rows(tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    return await StoredObject.raw(
        "SELECT purpose, count(*) AS objects, coalesce(sum(size), 0) AS bytes "
        "FROM stored_objects WHERE tenant_id = {} GROUP BY purpose ORDER BY purpose",
        tenant_id,
    )


async def tenant_quota_and_usage(ctx: TenantContext) -> tuple[int, int]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        quota = await _quota_bytes(ctx.tenant_id)
        rows = await _usage_rows(ctx.tenant_id)
    return quota, sum(int(r["bytes"]) for r in rows)


async def tenant_usage(ctx: TenantContext) -> Usage:
    """Bytes and object counts by purpose, against the quota (for the storage page)."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        quota = await _quota_bytes(ctx.tenant_id)
        rows = await _usage_rows(ctx.tenant_id)
    by_purpose = [PurposeUsage(r["purpose"], int(r["objects"]), int(r["bytes"])) for r in rows]
    return Usage(
        quota_bytes=quota,
        used_bytes=sum(p.bytes for p in by_purpose),
        objects=sum(p.objects for p in by_purpose),
        by_purpose=by_purpose,
    )


async def set_tenant_quota(
    tenant_id: uuid.UUID, quota_bytes: int, *, actor_id: uuid.UUID | None, ip: str = ""
) -> None:
    """The operator changes a tenant's quota (call only after a platform-role check)."""
    if quota_bytes < 0:
        raise _upload_invalid("配额不能为负数。", "A quota cannot be negative.")
    async with db.platform_scope(actor_id):
        existing = await StorageQuota.select(StorageQuota.id).where(
            StorageQuota.tenant_id == tenant_id
        )
        if existing:
            await StorageQuota.update(
                {
                    StorageQuota.quota_bytes: quota_bytes,
                    StorageQuota.updated_by: actor_id,
                    StorageQuota.updated_at: clock.now(),
                }
            ).where(StorageQuota.tenant_id == tenant_id)
        else:
            await StorageQuota.insert(
                StorageQuota(tenant_id=tenant_id, quota_bytes=quota_bytes, updated_by=actor_id)
            )
        await record(
            "storage.quota_changed",
            actor_id=actor_id,
            tenant_id=tenant_id,
            target=f"tenant:{tenant_id}",
            ip=ip,
            data={"quota_bytes": quota_bytes},
        )


async def _record_tenant_object(
    ctx: TenantContext,
    *,
    object_id: uuid.UUID,
    purpose: str,
    bucket: str,
    key: str,
    size: int,
    content_type: str,
    sha256: str,
    original_name: str,
    ip: str,
) -> StoredFile:
    """Quota check under a per-tenant lock, the row and its audit event: one transaction."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        # Two uploads at once must not both squeeze under the quota.
        await StoredObject.raw(
            "SELECT pg_advisory_xact_lock(hashtextextended({}, 7))", str(ctx.tenant_id)
        )
        quota = await _quota_bytes(ctx.tenant_id)
        used = sum(int(r["bytes"]) for r in await _usage_rows(ctx.tenant_id))
        if used + size > quota:
            raise quota_exceeded(quota, used)
        await StoredObject.insert(
            StoredObject(
                id=object_id,
                tenant_id=ctx.tenant_id,
                purpose=purpose,
                bucket=bucket,
                key=key,
                size=size,
                content_type=content_type,
                sha256=sha256,
                original_name=original_name,
                uploaded_by=ctx.user_id,
            )
        )
        await record(
            "file.uploaded",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=f"file:{object_id}",
            ip=ip,
            data={"purpose": purpose, "size": size, "type": content_type, "name": original_name},
        )
        found = await get_object_in_tenant(object_id, ctx)
    return found


def purposes_for_display(keys: Iterable[str] | None = None) -> list[Purpose]:
    return [PURPOSES[k] for k in (keys or PURPOSES) if k in PURPOSES]
