"""The data bank (数据银行): a file manager on top of ``canal.platform.storage``.

Folders, files in folders, versions (a new upload under the same name is a new version),
download, move, a recycle bin (restore, empty, automatic purge), share links that expire,
quota and usage; for organisations also scheduled folder backups with retention and a cold
archive class whose retrieval is a job. See docs/databank.md.

Every byte goes through the object store (type by content, size, quota, audit of the upload);
this module keeps only rows that point at stored objects. One code path serves both spaces:
``Space`` names the tables and the owner column, and the SQL is written once with
``@folders``/``@files``/``@versions``/``@shares``/``@owner`` placeholders.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import secrets
import unicodedata
import uuid
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.context import TenantContext, TenantRef
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.identity.secrets import token_hash
from canal.platform.identity.tables import User
from canal.platform.jobs.outbox import enqueue_after_commit
from canal.platform.notifications.kinds import NotificationKind, register_kind
from canal.platform.notifications.services import notify
from canal.platform.storage import services as storage
from canal.platform.storage.services import StoredFile, object_store
from canal.platform.storage.validation import MB, human_size
from canal.tenants.tables import Tenant

from .tables import BankBackup, BankFile

PURPOSE = "bank"
BACKUP_PURPOSE = "bank-backup"
COLD_PURPOSE = "bank-cold"
PERSONAL_QUOTA = 1024 * MB  # a resident's bank; organisations share their storage quota
TRASH_DAYS = 30  # the recycle bin empties itself after this many days
SHARE_MAX_DAYS = 30
SCHEDULES = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}
MAX_KEEP = 30
NAME_MAX = {"folder": 120, "file": 200}

# "Your archived file is back" and similar: in-app by default, no e-mail unless chosen.
NOTIFY_KIND = register_kind(NotificationKind("bank", "数据银行", "Data bank", default_email=False))


def _now() -> dt.datetime:
    return clock.now()


# --- whose bank -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """An organisation's bank (``ctx`` set) or a person's own (``ctx`` None)."""

    user_id: uuid.UUID
    ctx: TenantContext | None = None

    @property
    def personal(self) -> bool:
        return self.ctx is None

    @property
    def owner_id(self) -> uuid.UUID:
        return self.ctx.tenant_id if self.ctx else self.user_id

    @property
    def tenant_id(self) -> uuid.UUID | None:
        return self.ctx.tenant_id if self.ctx else None

    @property
    def base_url(self) -> str:
        return f"/t/{self.ctx.tenant.slug}/bank" if self.ctx else "/me/bank"

    def sql(self, text: str) -> str:
        prefix = "bank_personal_" if self.personal else "bank_"
        for name in ("folders", "files", "versions", "shares", "uploads"):
            text = text.replace(f"@{name}", prefix + name)
        return text.replace("@owner", "owner_id" if self.personal else "tenant_id")

    def scope(self) -> Any:
        if self.ctx is not None:
            return db.tenant_scope(self.ctx.tenant_id, self.user_id)
        return db.user_scope(self.user_id)

    @property
    def storage_owner(self) -> str:
        return f"tenants/{self.ctx.tenant_id}" if self.ctx else f"users/{self.user_id}"

    def target(self, kind: str, object_id: uuid.UUID) -> str:
        return f"{'personal_' if self.personal else ''}bank_{kind}:{object_id}"


async def _q(space: Space, text: str, *args: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await BankFile.raw(space.sql(text), *args)
    return rows


def tenant_space(ctx: TenantContext) -> Space:
    return Space(ctx.user_id, ctx)


async def personal_space(user_id: uuid.UUID) -> Space:
    """A person's bank: only after real-name verification (实名认证)."""
    row = await User.select(User.verified_at).where(User.id == user_id).first()
    if row is None or row["verified_at"] is None:
        raise CanalError(
            "realname_required",
            "个人数据银行需先完成实名认证:请到「账户 › 实名认证」(/account/real-name)"
            "认证后再使用。",
            "Your personal data bank needs real-name verification first: verify under "
            "Account › Real-name verification (/account/real-name), then come back.",
            status=403,
        )
    return Space(user_id)


# --- names ------------------------------------------------------------------------------------


def check_name(raw: str | None, kind: str = "file", field: str = "name") -> str:
    """A folder or file name as typed; refused (never silently changed) if it could act as a
    path: separators, "." / "..", control or bidi characters."""
    name = (raw or "").strip()
    what_zh, what_en = ("文件夹", "folder") if kind == "folder" else ("文件", "file")
    if not name:
        raise invalid(
            [
                FieldError(
                    field, "name_required", f"请填写{what_zh}名称。", f"Enter a {what_en} name."
                )
            ]
        )
    if len(name) > NAME_MAX[kind]:
        raise invalid(
            [
                FieldError(
                    field,
                    "name_too_long",
                    f"{what_zh}名称不能超过 {NAME_MAX[kind]} 个字符。",
                    f"A {what_en} name may have at most {NAME_MAX[kind]} characters.",
                )
            ]
        )
    tricky = (
        "/" in name
        or "\\" in name
        or name in {".", ".."}
        or any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in name)
    )
    if tricky:
        raise invalid(
            [
                FieldError(
                    field,
                    "name_invalid",
                    f"{what_zh}名称不能包含 / 或 \\、不能是 . 或 ..,也不能含控制字符。",
                    f"A {what_en} name may not contain / or \\, be . or .., or contain "
                    "control characters.",
                )
            ]
        )
    return name


def _name_taken(field: str = "name") -> CanalError:
    return invalid(
        [
            FieldError(
                field,
                "name_taken",
                "此位置已有同名的文件夹或文件,请换一个名称。",
                "A folder or file with this name is already here; choose another name.",
            )
        ]
    )


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str
    created_at: dt.datetime
    backup_schedule: str = "off"
    backup_keep: int = 7
    backup_next_at: dt.datetime | None = None


@dataclass(frozen=True)
class Version:
    id: uuid.UUID
    number: int
    size: int
    content_type: str
    sha256: str
    storage_class: str
    note: str
    created_at: dt.datetime
    object_id: uuid.UUID


@dataclass(frozen=True)
class File:
    id: uuid.UUID
    folder_id: uuid.UUID | None
    name: str
    current_version_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    size: int = 0
    content_type: str = ""
    versions: int = 0
    storage_class: str = "standard"


@dataclass(frozen=True)
class Share:
    id: uuid.UUID
    file_id: uuid.UUID
    expires_at: dt.datetime
    max_downloads: int | None
    downloads: int
    revoked_at: dt.datetime | None
    created_at: dt.datetime

    @property
    def active(self) -> bool:
        return (
            self.revoked_at is None
            and self.expires_at > _now()
            and (self.max_downloads is None or self.downloads < self.max_downloads)
        )


def _folder(row: dict[str, Any]) -> Folder:
    return Folder(
        row["id"],
        row["parent_id"],
        row["name"],
        row["created_at"],
        row.get("backup_schedule") or "off",
        int(row.get("backup_keep") or 7),
        row.get("backup_next_at"),
    )


_FILE_COLUMNS = (
    "f.id, f.folder_id, f.name, f.current_version_id, f.created_at, f.updated_at, "
    "coalesce(v.size, 0) AS size, coalesce(v.content_type, '') AS content_type, "
    "coalesce(v.storage_class, 'standard') AS storage_class, "
    "(SELECT count(*) FROM @versions c WHERE c.file_id = f.id AND c.@owner = f.@owner) "
    "AS versions"
)
_FILE_FROM = "@files f LEFT JOIN @versions v ON v.id = f.current_version_id AND v.@owner = f.@owner"


def _file(row: dict[str, Any]) -> File:
    return File(
        row["id"],
        row["folder_id"],
        row["name"],
        row["current_version_id"],
        row["created_at"],
        row["updated_at"],
        int(row["size"]),
        row["content_type"],
        int(row["versions"]),
        row["storage_class"],
    )


def _version(row: dict[str, Any]) -> Version:
    return Version(
        row["id"],
        int(row["number"]),
        int(row["size"]),
        row["content_type"],
        row["sha256"],
        row["storage_class"],
        row["note"],
        row["created_at"],
        row["object_id"],
    )


def _share(row: dict[str, Any]) -> Share:
    return Share(
        row["id"],
        row["file_id"],
        row["expires_at"],
        row["max_downloads"],
        int(row["downloads"]),
        row["revoked_at"],
        row["created_at"],
    )


async def _folder_row(space: Space, folder_id: uuid.UUID, *, place: bool = False) -> Folder:
    """``place``: the folder is where something is put (a move's target, an upload's or a
    new folder's parent) — its row is locked until commit, so a delete of that folder at the
    same moment waits and then takes the new item to the bin with it (or, when the delete
    came first, this finds the folder gone) instead of leaving it alive inside a deleted
    folder, where no listing and no bin would ever show it."""
    cols = "*" if not space.personal else "id, parent_id, name, created_at"
    lock = " FOR SHARE" if place else ""
    rows = await _q(
        space,
        f"SELECT {cols} FROM @folders WHERE id = {{}} AND @owner = {{}} AND deleted_at IS NULL"
        + lock,
        folder_id,
        space.owner_id,
    )
    if not rows:
        raise not_found()
    return _folder(rows[0])


async def get_folder(space: Space, folder_id: uuid.UUID) -> Folder:
    """A folder of this space that is not in the bin; 404 for a missing or foreign id."""
    async with space.scope():
        return await _folder_row(space, folder_id)


async def _file_row(space: Space, file_id: uuid.UUID, *, trashed: bool = False) -> File:
    condition = "" if trashed else " AND f.deleted_at IS NULL"
    rows = await _q(
        space,
        f"SELECT {_FILE_COLUMNS} FROM {_FILE_FROM} WHERE f.id = {{}} AND f.@owner = {{}}"
        + condition,
        file_id,
        space.owner_id,
    )
    if not rows:
        raise not_found()
    return _file(rows[0])


async def get_file(space: Space, file_id: uuid.UUID) -> File:
    async with space.scope():
        return await _file_row(space, file_id)


async def _breadcrumbs(space: Space, folder_id: uuid.UUID | None) -> list[Folder]:
    if folder_id is None:
        return []
    rows = await _q(
        space,
        "WITH RECURSIVE up(id, parent_id, name, created_at, depth) AS ("
        " SELECT id, parent_id, name, created_at, 0 FROM @folders"
        " WHERE id = {} AND @owner = {}"
        " UNION ALL SELECT p.id, p.parent_id, p.name, p.created_at, up.depth + 1"
        " FROM @folders p JOIN up ON p.id = up.parent_id WHERE p.@owner = {} AND up.depth < 64"
        ") SELECT id, parent_id, name, created_at FROM up ORDER BY depth DESC",
        folder_id,
        space.owner_id,
        space.owner_id,
    )
    return [_folder(r) for r in rows]


@dataclass(frozen=True)
class Listing:
    folder: Folder | None
    path: list[Folder]
    folders: list[Folder]
    files: list[File]
    all_folders: list[tuple[uuid.UUID, str]]  # every folder as a path, for move targets


async def _all_folder_paths(space: Space) -> list[tuple[uuid.UUID, str]]:
    rows = await _q(
        space,
        "SELECT id, parent_id, name FROM @folders WHERE @owner = {} AND deleted_at IS NULL",
        space.owner_id,
    )
    by_id = {r["id"]: r for r in rows}

    def path(row: dict[str, Any]) -> str:
        parts, seen = [row["name"]], {row["id"]}
        parent = row["parent_id"]
        while parent in by_id and parent not in seen:
            seen.add(parent)
            parts.append(by_id[parent]["name"])
            parent = by_id[parent]["parent_id"]
        return "/".join(reversed(parts))

    return sorted(((r["id"], path(r)) for r in rows), key=lambda item: item[1])


async def list_folder(space: Space, folder_id: uuid.UUID | None) -> Listing:
    async with space.scope():
        folder = await _folder_row(space, folder_id) if folder_id else None
        cols = "*" if not space.personal else "id, parent_id, name, created_at"
        parent = "parent_id = {}" if folder_id else "parent_id IS NULL"
        folder_rows = await _q(
            space,
            f"SELECT {cols} FROM @folders WHERE @owner = {{}} AND {parent} "
            "AND deleted_at IS NULL ORDER BY name",
            *([space.owner_id, folder_id] if folder_id else [space.owner_id]),
        )
        where = "f.folder_id = {}" if folder_id else "f.folder_id IS NULL"
        file_rows = await _q(
            space,
            f"SELECT {_FILE_COLUMNS} FROM {_FILE_FROM} WHERE f.@owner = {{}} AND {where} "
            "AND f.deleted_at IS NULL ORDER BY f.name",
            *([space.owner_id, folder_id] if folder_id else [space.owner_id]),
        )
        path = await _breadcrumbs(space, folder_id)
        paths = await _all_folder_paths(space)
    return Listing(
        folder, path, [_folder(r) for r in folder_rows], [_file(r) for r in file_rows], paths
    )


@dataclass(frozen=True)
class FileDetail:
    file: File
    path: list[Folder]
    versions: list[Version]
    shares: list[Share]
    all_folders: list[tuple[uuid.UUID, str]]


async def file_detail(space: Space, file_id: uuid.UUID) -> FileDetail:
    async with space.scope():
        file = await _file_row(space, file_id)
        versions = await _q(
            space,
            "SELECT * FROM @versions WHERE file_id = {} AND @owner = {} ORDER BY number DESC",
            file_id,
            space.owner_id,
        )
        shares = await _q(
            space,
            "SELECT * FROM @shares WHERE file_id = {} AND @owner = {} ORDER BY created_at DESC",
            file_id,
            space.owner_id,
        )
        path = await _breadcrumbs(space, file.folder_id)
        paths = await _all_folder_paths(space)
    return FileDetail(
        file, path, [_version(v) for v in versions], [_share(s) for s in shares], paths
    )


# --- folders ----------------------------------------------------------------------------------


async def _sibling_taken(
    space: Space,
    parent_id: uuid.UUID | None,
    name: str,
    *,
    except_id: uuid.UUID | None = None,
) -> bool:
    """A folder or file of that name (case-insensitive) already in ``parent_id``."""
    # One lock per (owner, place, name): two requests creating the same name wait in turn.
    await _q(
        space,
        "SELECT pg_advisory_xact_lock(hashtextextended({}, 41))",
        f"{space.owner_id}/{parent_id}/{name.lower()}",
    )
    where = "parent_id = {}" if parent_id else "parent_id IS NULL"
    fwhere = "folder_id = {}" if parent_id else "folder_id IS NULL"
    args: list[Any] = [space.owner_id, *([parent_id] if parent_id else []), name]
    rows = await _q(
        space,
        f"SELECT id FROM @folders WHERE @owner = {{}} AND {where} AND lower(name) = lower({{}}) "
        f"AND deleted_at IS NULL UNION ALL SELECT id FROM @files WHERE @owner = {{}} AND "
        f"{fwhere} AND lower(name) = lower({{}}) AND deleted_at IS NULL",
        *args,
        *args,
    )
    return any(r["id"] != except_id for r in rows)


async def create_folder(space: Space, parent_id: uuid.UUID | None, raw_name: str) -> Folder:
    name = check_name(raw_name, "folder")
    async with space.scope():
        if parent_id:
            await _folder_row(space, parent_id, place=True)
        if await _sibling_taken(space, parent_id, name):
            raise _name_taken()
        folder_id = uuid.uuid4()
        await _q(
            space,
            "INSERT INTO @folders (id, @owner, parent_id, name, created_by, created_at"
            + (", backup_schedule, backup_keep" if not space.personal else "")
            + ") VALUES ({}, {}, {}, {}, {}, {}"
            + (", 'off', 7" if not space.personal else "")
            + ")",
            folder_id,
            space.owner_id,
            parent_id,
            name,
            space.user_id,
            _now(),
        )
        return await _folder_row(space, folder_id)


async def rename_folder(space: Space, folder_id: uuid.UUID, raw_name: str) -> Folder:
    name = check_name(raw_name, "folder")
    async with space.scope():
        folder = await _folder_row(space, folder_id)
        if await _sibling_taken(space, folder.parent_id, name, except_id=folder_id):
            raise _name_taken()
        await _q(
            space,
            "UPDATE @folders SET name = {} WHERE id = {} AND @owner = {}",
            name,
            folder_id,
            space.owner_id,
        )
        return await _folder_row(space, folder_id)


async def _subtree(space: Space, folder_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await _q(
        space,
        "WITH RECURSIVE sub(id) AS (SELECT id FROM @folders WHERE id = {} AND @owner = {}"
        " UNION SELECT c.id FROM @folders c JOIN sub ON c.parent_id = sub.id"
        " WHERE c.@owner = {}) SELECT id FROM sub",
        folder_id,
        space.owner_id,
        space.owner_id,
    )
    return [r["id"] for r in rows]


async def move_folder(space: Space, folder_id: uuid.UUID, target_id: uuid.UUID | None) -> Folder:
    async with space.scope():
        # Folder moves of one owner wait in turn: two crossing moves (A into B, B into A)
        # would each pass the cycle check alone and leave both cut off from the tree.
        await _q(
            space,
            "SELECT pg_advisory_xact_lock(hashtextextended({}, 44))",
            f"moves/{space.owner_id}",
        )
        folder = await _folder_row(space, folder_id)
        if target_id is not None:
            await _folder_row(space, target_id, place=True)
            if target_id in await _subtree(space, folder_id):
                raise invalid(
                    [
                        FieldError(
                            "target",
                            "move_into_itself",
                            "不能把文件夹移动到它自己或它的子文件夹中。",
                            "A folder cannot be moved into itself or one of its subfolders.",
                        )
                    ]
                )
        if await _sibling_taken(space, target_id, folder.name, except_id=folder_id):
            raise _name_taken("target")
        await _q(
            space,
            "UPDATE @folders SET parent_id = {} WHERE id = {} AND @owner = {}",
            target_id,
            folder_id,
            space.owner_id,
        )
        return await _folder_row(space, folder_id)


# --- uploads and versions ---------------------------------------------------------------------


def _quota_full(quota: int, used: int) -> CanalError:
    zh = (
        f"您的数据银行空间不足(已用 {human_size(used)},共 {human_size(quota)}),"
        "请删除不需要的文件并清空回收站。"
    )
    en = (
        f"Your data bank is full ({human_size(used)} of {human_size(quota)} used); delete "
        "files you no longer need and empty the recycle bin."
    )
    return CanalError(
        "storage_quota_exceeded",
        zh,
        en,
        status=413,
        errors=(FieldError("file", "storage_quota_exceeded", zh, en),),
    )


async def _personal_used(space: Space) -> int:
    rows = await _q(
        space,
        "SELECT coalesce(sum(size), 0) AS used FROM (SELECT DISTINCT object_id, size "
        "FROM @versions WHERE @owner = {}) AS distinct_objects",
        space.owner_id,
    )
    return int(rows[0]["used"])


async def _store(
    space: Space,
    chunks: AsyncIterable[bytes],
    name: str,
    declared_size: int | None,
    ip: str,
) -> StoredFile:
    store = object_store()
    if space.ctx is not None:
        return await store.upload(
            space.ctx, PURPOSE, chunks, filename=name, declared_size=declared_size, ip=ip
        )
    async with space.scope():
        used = await _personal_used(space)
    if used >= PERSONAL_QUOTA or (
        declared_size is not None and used + declared_size > PERSONAL_QUOTA
    ):
        raise _quota_full(PERSONAL_QUOTA, used)
    return await store.upload_personal(
        space.user_id, PURPOSE, chunks, filename=name, declared_size=declared_size, ip=ip
    )


async def _unstore(space: Space, object_id: uuid.UUID, ip: str = "") -> None:
    store = object_store()
    try:
        if space.ctx is not None:
            await store.delete(object_id, space.ctx, ip=ip)
        else:
            await store.delete_personal(object_id, space.user_id, ip=ip)
    except CanalError as error:
        if error.status != 404:  # already gone: the goal is reached
            raise


async def _add_version(
    space: Space,
    file_id: uuid.UUID,
    *,
    object_id: uuid.UUID,
    size: int,
    content_type: str,
    sha256: str,
    note: str = "",
    storage_class: str = "standard",
) -> uuid.UUID:
    rows = await _q(
        space,
        "SELECT coalesce(max(number), 0) + 1 AS n FROM @versions "
        "WHERE file_id = {} AND @owner = {}",
        file_id,
        space.owner_id,
    )
    version_id = uuid.uuid4()
    await _q(
        space,
        "INSERT INTO @versions (id, @owner, file_id, number, object_id, storage_class, size, "
        "content_type, sha256, note, created_by, created_at) "
        "VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        version_id,
        space.owner_id,
        file_id,
        int(rows[0]["n"]),
        object_id,
        storage_class,
        size,
        content_type,
        sha256,
        note[:200],
        space.user_id,
        _now(),
    )
    await _q(
        space,
        "UPDATE @files SET current_version_id = {}, updated_at = {} WHERE id = {} AND @owner = {}",
        version_id,
        _now(),
        file_id,
        space.owner_id,
    )
    return version_id


async def upload(
    space: Space,
    folder_id: uuid.UUID | None,
    chunks: AsyncIterable[bytes],
    *,
    filename: str | None,
    declared_size: int | None = None,
    ip: str = "",
    into_file: uuid.UUID | None = None,
) -> File:
    """Store an upload in ``folder_id``: a new file, or a new version of the file of the same
    name there (or of ``into_file``). Refusals (type, size, quota, name) change nothing."""
    if into_file is not None:
        existing = await get_file(space, into_file)
        name, folder_id = existing.name, existing.folder_id
    else:
        name = check_name(filename, "file", field="file")
        if folder_id is not None:
            await get_folder(space, folder_id)
    stored = await _store(space, chunks, name, declared_size, ip)
    try:
        async with space.scope():
            if space.personal:
                # Under the per-person lock: two uploads at once cannot both squeeze in.
                await _q(
                    space,
                    "SELECT pg_advisory_xact_lock(hashtextextended({}, 42))",
                    str(space.owner_id),
                )
                used = await _personal_used(space)
                if used + stored.size > PERSONAL_QUOTA:
                    raise _quota_full(PERSONAL_QUOTA, used)
            if folder_id is not None:
                await _folder_row(space, folder_id, place=True)
            if into_file is not None:
                await _file_row(space, into_file)
                file_id = into_file
            else:
                await _sibling_taken(space, folder_id, name)  # takes the name's lock
                where = "folder_id = {}" if folder_id else "folder_id IS NULL"
                same = await _q(
                    space,
                    f"SELECT id FROM @files WHERE @owner = {{}} AND {where} "
                    "AND lower(name) = lower({}) AND deleted_at IS NULL",
                    *([space.owner_id, folder_id] if folder_id else [space.owner_id]),
                    name,
                )
                if same:
                    file_id = same[0]["id"]
                else:
                    clash = await _q(
                        space,
                        "SELECT id FROM @folders WHERE @owner = {} AND "
                        + ("parent_id = {}" if folder_id else "parent_id IS NULL")
                        + " AND lower(name) = lower({}) AND deleted_at IS NULL",
                        *([space.owner_id, folder_id] if folder_id else [space.owner_id]),
                        name,
                    )
                    if clash:
                        raise _name_taken("file")
                    file_id = uuid.uuid4()
                    await _q(
                        space,
                        "INSERT INTO @files (id, @owner, folder_id, name, created_by, "
                        "created_at, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {})",
                        file_id,
                        space.owner_id,
                        folder_id,
                        name,
                        space.user_id,
                        *(_now(),) * 2,
                    )
            await _add_version(
                space,
                file_id,
                object_id=stored.id,
                size=stored.size,
                content_type=stored.content_type,
                sha256=stored.sha256,
            )
            return await _file_row(space, file_id)
    except BaseException:
        await _unstore(space, stored.id, ip)
        raise


async def _version_row(space: Space, file_id: uuid.UUID, version_id: uuid.UUID) -> Version:
    rows = await _q(
        space,
        "SELECT * FROM @versions WHERE id = {} AND file_id = {} AND @owner = {}",
        version_id,
        file_id,
        space.owner_id,
    )
    if not rows:
        raise not_found()
    return _version(rows[0])


async def restore_version(
    space: Space, file_id: uuid.UUID, version_id: uuid.UUID, *, ip: str = ""
) -> File:
    """Make an older version current again, as a new version pointing at the same stored
    object (no copy: the bytes are already kept, and the quota counts them once)."""
    async with space.scope():
        await _file_row(space, file_id)
        old = await _version_row(space, file_id, version_id)
        await _add_version(
            space,
            file_id,
            object_id=old.object_id,
            size=old.size,
            content_type=old.content_type,
            sha256=old.sha256,
            note=f"v{old.number}",
            storage_class=old.storage_class,
        )
        await record(
            "bank.version_restored",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("file", file_id),
            ip=ip,
            data={"version": old.number},
        )
        return await _file_row(space, file_id)


def archived_error() -> CanalError:
    return CanalError(
        "file_archived",
        "该文件已归档到冷存储,请先取回(取回需要一些时间),完成后即可下载。",
        "This file is in the cold archive: retrieve it first (this takes a while), then "
        "download it.",
        status=409,
    )


async def _stored_for(space: Space, version: Version) -> StoredFile:
    if space.ctx is not None:
        return await storage.get_object_in_tenant(version.object_id, space.ctx)
    return await storage.get_personal_object(version.object_id, space.user_id)


async def download_url(
    space: Space, file_id: uuid.UUID, version_id: uuid.UUID | None = None, *, ip: str = ""
) -> str:
    """A five-minute presigned URL for the current (or a given) version, under the file's
    current name. Audited (``bank.downloaded``) like share-link and folder downloads."""
    async with space.scope():
        file = await _file_row(space, file_id)
        target = version_id or file.current_version_id
        if target is None:
            raise not_found()
        version = await _version_row(space, file_id, target)
        if version.storage_class != "standard":
            raise archived_error()
        await record(
            "bank.downloaded",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("file", file_id),
            ip=ip,
            data={"version": version.number},
        )
    stored = dataclasses.replace(await _stored_for(space, version), original_name=file.name)
    store = object_store()
    if space.ctx is not None:
        return await store.presigned_get(stored, space.ctx)
    return await store.presigned_get_personal(stored, space.user_id)


# --- a folder as one ZIP ----------------------------------------------------------------------
# Streamed: each file is read from storage a chunk at a time and written through zipfile into
# a small buffer that is handed on at once, so memory stays flat whatever the folder's size
# (the entries use data descriptors, which need no seeking back). Limits keep one request
# from tying a worker up for long; above them the page says what to download instead.

ZIP_MAX_FILES = 1000
ZIP_MAX_BYTES = 1024 * MB
_COMPRESSIBLE = ("text/", "application/json")  # everything else we accept is compressed


@dataclass(frozen=True)
class ZipEntry:
    path: str  # inside the ZIP: "年报/2026/一月.csv" (the folder's own name first)
    object_id: uuid.UUID
    size: int
    content_type: str
    changed: dt.datetime


@dataclass(frozen=True)
class ZipPlan:
    folder: Folder
    entries: list[ZipEntry]
    archived: list[str]  # in the cold class: left out, listed in a note inside the ZIP

    @property
    def files(self) -> int:
        return len(self.entries)

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def within_limits(self) -> bool:
        return 0 < self.files <= ZIP_MAX_FILES and self.bytes <= ZIP_MAX_BYTES


async def plan_folder_zip(space: Space, folder_id: uuid.UUID) -> ZipPlan:
    """What a ZIP of the folder would hold: the current version of every file under it."""
    async with space.scope():
        folder = await _folder_row(space, folder_id)
        ids = await _subtree(space, folder_id)
        rows = await _q(
            space,
            "SELECT f.folder_id, f.name, f.updated_at, v.object_id, v.size, v.content_type, "
            "v.storage_class FROM @files f JOIN @versions v ON v.id = f.current_version_id "
            "AND v.@owner = f.@owner WHERE f.@owner = {} AND f.folder_id = ANY({}::uuid[]) "
            "AND f.deleted_at IS NULL",
            space.owner_id,
            ids,
        )
        paths = dict(await _all_folder_paths(space))
    # Paths are made relative to the chosen folder, which becomes the ZIP's top directory.
    cut = len(paths[folder_id]) - len(folder.name)
    entries: list[ZipEntry] = []
    archived: list[str] = []
    for row in rows:
        path = f"{paths.get(row['folder_id'], paths[folder_id])[cut:]}/{row['name']}"
        if row["storage_class"] != "standard":
            archived.append(path)
            continue
        entries.append(
            ZipEntry(
                path,
                row["object_id"],
                int(row["size"]),
                row["content_type"],
                row["updated_at"],
            )
        )
    return ZipPlan(folder, sorted(entries, key=lambda e: e.path), sorted(archived))


def zip_refusal(plan: ZipPlan) -> CanalError | None:
    """Why this folder cannot go out as one ZIP, or None."""
    if plan.files == 0:
        return CanalError(
            "folder_empty",
            "该文件夹(含子文件夹)中没有可下载的文件。",
            "There are no files to download in this folder or its subfolders.",
            status=409,
        )
    if plan.files > ZIP_MAX_FILES or plan.bytes > ZIP_MAX_BYTES:
        return CanalError(
            "zip_too_large",
            f"该文件夹有 {plan.files} 个文件,共 {human_size(plan.bytes)},超过打包下载的上限"
            f"({ZIP_MAX_FILES} 个文件、{human_size(ZIP_MAX_BYTES)}),请分别下载其中的子文件夹。",
            f"This folder holds {plan.files} files, {human_size(plan.bytes)}: more than one ZIP "
            f"may hold ({ZIP_MAX_FILES} files, {human_size(ZIP_MAX_BYTES)}). Download its "
            "subfolders one by one instead.",
            status=413,
        )
    return None


class _Sink(io.RawIOBase):
    """Where zipfile writes: collects what was written until it is handed on."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


async def _object_for(space: Space, object_id: uuid.UUID) -> StoredFile:
    if space.ctx is not None:
        return await storage.get_object_in_tenant(object_id, space.ctx)
    return await storage.get_personal_object(object_id, space.user_id)


async def _zip_stream(space: Space, plan: ZipPlan) -> AsyncIterator[bytes]:
    store = object_store()
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w")
    writer: IO[bytes] | None = None
    try:
        for entry in plan.entries:
            info = zipfile.ZipInfo(entry.path, date_time=clock.local(entry.changed).timetuple()[:6])
            info.external_attr = 0o644 << 16
            info.file_size = entry.size  # lets zipfile choose ZIP64 up front when needed
            info.compress_type = (
                zipfile.ZIP_DEFLATED
                if entry.content_type.startswith(_COMPRESSIBLE)
                else zipfile.ZIP_STORED
            )
            stored = await _object_for(space, entry.object_id)
            writer = archive.open(info, mode="w")
            async for chunk in store.iter_object(stored):
                await asyncio.to_thread(writer.write, chunk)  # deflate off the event loop
                if sink.parts:
                    yield sink.drain()
            await asyncio.to_thread(writer.close)
            writer = None
            yield sink.drain()
        if plan.archived:
            note = "以下文件在冷存储归档中,未包含在本压缩包内;请先取回再下载。\n"
            note += "These files are in the cold archive, not in this ZIP: retrieve them first.\n"
            archive.writestr(
                f"{plan.folder.name}/未包含的归档文件 (archived, not included).txt",
                note + "\n" + "\n".join(plan.archived) + "\n",
            )
        archive.close()
        yield sink.drain()
    finally:
        # A client that went away mid-file leaves a writer open; closing it (and the archive)
        # only writes into the sink, which nobody reads any more.
        with contextlib.suppress(Exception):
            if writer is not None:
                writer.close()
            archive.close()


async def folder_zip(
    space: Space, folder_id: uuid.UUID, *, ip: str = ""
) -> tuple[str, AsyncIterator[bytes]]:
    """The folder as a ZIP stream and its download name; refused (nothing sent) when empty
    or above the limits. Audited like the other downloads."""
    plan = await plan_folder_zip(space, folder_id)
    refusal = zip_refusal(plan)
    if refusal is not None:
        raise refusal
    async with space.scope():
        await record(
            "bank.folder_downloaded",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("folder", folder_id),
            ip=ip,
            data={"files": plan.files, "bytes": plan.bytes, "left_out": len(plan.archived)},
        )
    return f"{plan.folder.name}.zip", _zip_stream(space, plan)


# --- files: rename, move ----------------------------------------------------------------------


async def rename_file(space: Space, file_id: uuid.UUID, raw_name: str) -> File:
    name = check_name(raw_name, "file")
    async with space.scope():
        file = await _file_row(space, file_id)
        if await _sibling_taken(space, file.folder_id, name, except_id=file_id):
            raise _name_taken()
        await _q(
            space,
            "UPDATE @files SET name = {}, updated_at = {} WHERE id = {} AND @owner = {}",
            name,
            _now(),
            file_id,
            space.owner_id,
        )
        return await _file_row(space, file_id)


async def move_file(space: Space, file_id: uuid.UUID, target_id: uuid.UUID | None) -> File:
    async with space.scope():
        file = await _file_row(space, file_id)
        if target_id is not None:
            await _folder_row(space, target_id, place=True)
        if await _sibling_taken(space, target_id, file.name, except_id=file_id):
            raise _name_taken("target")
        await _q(
            space,
            "UPDATE @files SET folder_id = {}, updated_at = {} WHERE id = {} AND @owner = {}",
            target_id,
            _now(),
            file_id,
            space.owner_id,
        )
        return await _file_row(space, file_id)


# --- the recycle bin --------------------------------------------------------------------------


async def _revoke_links(space: Space, file_ids: list[uuid.UUID]) -> None:
    """Deleting revokes the files' share links for good: restoring from the bin must not
    bring back a link its owner may have deleted the file to stop."""
    await _q(
        space,
        "UPDATE @shares SET revoked_at = {} WHERE @owner = {} AND file_id = ANY({}::uuid[]) "
        "AND revoked_at IS NULL",
        _now(),
        space.owner_id,
        file_ids,
    )


async def delete_file(space: Space, file_id: uuid.UUID, *, ip: str = "") -> None:
    async with space.scope():
        file = await _file_row(space, file_id)
        await _q(
            space,
            "UPDATE @files SET deleted_at = {}, trash_id = {}, trash_root = true, "
            "deleted_by = {} WHERE id = {} AND @owner = {}",
            _now(),
            uuid.uuid4(),
            space.user_id,
            file_id,
            space.owner_id,
        )
        await _revoke_links(space, [file_id])
        await record(
            "bank.deleted",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("file", file_id),
            ip=ip,
            data={"name": file.name},
        )


async def delete_folder(space: Space, folder_id: uuid.UUID, *, ip: str = "") -> None:
    """The folder and everything in it go to the bin together (one trash id)."""
    async with space.scope():
        folder = await _folder_row(space, folder_id)
        trash_id = uuid.uuid4()
        ids = await _subtree(space, folder_id)
        await _q(
            space,
            "UPDATE @folders SET deleted_at = {}, trash_id = {}, trash_root = (id = {}), "
            "deleted_by = {} WHERE @owner = {} AND id = ANY({}::uuid[]) AND deleted_at IS NULL",
            _now(),
            trash_id,
            folder_id,
            space.user_id,
            space.owner_id,
            ids,
        )
        binned = await _q(
            space,
            "UPDATE @files SET deleted_at = {}, trash_id = {}, trash_root = false, "
            "deleted_by = {} WHERE @owner = {} AND folder_id = ANY({}::uuid[]) "
            "AND deleted_at IS NULL RETURNING id",
            _now(),
            trash_id,
            space.user_id,
            space.owner_id,
            ids,
        )
        await _revoke_links(space, [r["id"] for r in binned])
        await record(
            "bank.deleted",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("folder", folder_id),
            ip=ip,
            data={"name": folder.name, "folders": len(ids)},
        )


@dataclass(frozen=True)
class TrashItem:
    trash_id: uuid.UUID
    kind: str  # "folder" | "file"
    id: uuid.UUID
    name: str
    deleted_at: dt.datetime
    purge_at: dt.datetime
    files: int


async def list_trash(space: Space) -> list[TrashItem]:
    async with space.scope():
        rows = await _q(
            space,
            "SELECT 'folder' AS kind, id, name, deleted_at, trash_id FROM @folders "
            "WHERE @owner = {} AND trash_root AND deleted_at IS NOT NULL "
            "UNION ALL SELECT 'file', id, name, deleted_at, trash_id FROM @files "
            "WHERE @owner = {} AND trash_root AND deleted_at IS NOT NULL ORDER BY deleted_at DESC",
            space.owner_id,
            space.owner_id,
        )
        counts = await _q(
            space,
            "SELECT trash_id, count(*) AS n FROM @files WHERE @owner = {} "
            "AND trash_id IS NOT NULL GROUP BY trash_id",
            space.owner_id,
        )
    per = {r["trash_id"]: int(r["n"]) for r in counts}
    return [
        TrashItem(
            r["trash_id"],
            r["kind"],
            r["id"],
            r["name"],
            r["deleted_at"],
            r["deleted_at"] + dt.timedelta(days=TRASH_DAYS),
            per.get(r["trash_id"], 0),
        )
        for r in rows
    ]


async def _free_name(space: Space, parent_id: uuid.UUID | None, name: str, kind: str) -> str:
    """``name``, or ``name (2)``… if the place already has it (restoring beside a new one)."""
    candidate, n = name, 1
    stem, dot, ext = name.rpartition(".") if kind == "file" and "." in name[1:] else (name, "", "")
    while await _sibling_taken(space, parent_id, candidate):
        n += 1
        candidate = f"{stem} ({n}){dot}{ext}"[: NAME_MAX[kind]]
    return candidate


async def restore_trash(space: Space, trash_id: uuid.UUID, *, ip: str = "") -> None:
    """Put a bin item back where it was (at the top if that folder is gone), renamed with
    " (2)" if its place has a new item of the same name meanwhile."""
    async with space.scope():
        roots = await _q(
            space,
            "SELECT 'folder' AS kind, id, name, parent_id AS place FROM @folders "
            "WHERE @owner = {} AND trash_id = {} AND trash_root "
            "UNION ALL SELECT 'file', id, name, folder_id FROM @files "
            "WHERE @owner = {} AND trash_id = {} AND trash_root",
            space.owner_id,
            trash_id,
            space.owner_id,
            trash_id,
        )
        if not roots:
            raise not_found()
        root = roots[0]
        place = root["place"]
        if place is not None:
            alive = await _q(
                space,
                "SELECT id FROM @folders WHERE id = {} AND @owner = {} AND deleted_at IS NULL "
                "FOR SHARE",  # like _folder_row(place=True): a delete at once waits
                place,
                space.owner_id,
            )
            place = place if alive else None
        name = await _free_name(space, place, root["name"], root["kind"])
        table = "@folders" if root["kind"] == "folder" else "@files"
        column = "parent_id" if root["kind"] == "folder" else "folder_id"
        await _q(
            space,
            f"UPDATE {table} SET {column} = {{}}, name = {{}} WHERE id = {{}} AND @owner = {{}}",
            place,
            name,
            root["id"],
            space.owner_id,
        )
        for table in ("@folders", "@files"):
            await _q(
                space,
                f"UPDATE {table} SET deleted_at = NULL, trash_id = NULL, trash_root = false, "
                "deleted_by = NULL WHERE @owner = {} AND trash_id = {}",
                space.owner_id,
                trash_id,
            )
        await record(
            "bank.restored",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target(root["kind"], root["id"]),
            ip=ip,
            data={"name": name},
        )


async def _purge(space: Space, trash_ids: Sequence[uuid.UUID], *, ip: str = "") -> int:
    """Delete bin items for good: their rows, share links and every stored version."""
    if not trash_ids:
        return 0
    ids = list(trash_ids)
    async with space.scope():
        files = await _q(
            space,
            "SELECT id FROM @files WHERE @owner = {} AND trash_id = ANY({}::uuid[])",
            space.owner_id,
            ids,
        )
        file_ids = [r["id"] for r in files]
        objects = await _q(
            space,
            "SELECT DISTINCT object_id FROM @versions WHERE @owner = {} "
            "AND file_id = ANY({}::uuid[])",
            space.owner_id,
            file_ids,
        )
        for table in ("@versions", "@shares"):
            await _q(
                space,
                f"DELETE FROM {table} WHERE @owner = {{}} AND file_id = ANY({{}}::uuid[])",
                space.owner_id,
                file_ids,
            )
        for table in ("@files", "@folders"):
            await _q(
                space,
                f"DELETE FROM {table} WHERE @owner = {{}} AND trash_id = ANY({{}}::uuid[])",
                space.owner_id,
                ids,
            )
        # Stored objects go in the same transaction (rows + audit now, bytes after commit).
        for row in objects:
            await _unstore(space, row["object_id"], ip)
        await record(
            "bank.purged",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("trash", ids[0]),
            ip=ip,
            data={"items": len(ids), "files": len(file_ids), "objects": len(objects)},
        )
    return len(file_ids)


async def empty_trash(space: Space, *, ip: str = "") -> int:
    async with space.scope():
        rows = await _q(
            space,
            "SELECT DISTINCT trash_id FROM @folders WHERE @owner = {} AND trash_id IS NOT NULL "
            "UNION SELECT DISTINCT trash_id FROM @files WHERE @owner = {} AND trash_id IS NOT NULL",
            space.owner_id,
            space.owner_id,
        )
    return await _purge(space, [r["trash_id"] for r in rows], ip=ip)


# --- chunked (resumable) uploads ---------------------------------------------------------------
# The client announces name and size, sends parts of PART_SIZE bytes in any order (again
# after an interruption: the status lists what arrived), then completes. The parts wait in
# storage's staging area; completing streams them in order through ``upload``, so every check
# (type by content, size, quota, name) is the same as for a one-piece upload.

PART_SIZE = 8 * MB
UPLOAD_TTL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class ChunkedUpload:
    id: uuid.UUID
    folder_id: uuid.UUID | None
    into_file: uuid.UUID | None
    name: str
    size: int
    part_size: int
    parts: int
    received: list[int]
    created_at: dt.datetime

    @property
    def expires_at(self) -> dt.datetime:
        return self.created_at + UPLOAD_TTL


def _parts(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


async def _chunked_row(space: Space, upload_id: uuid.UUID) -> dict[str, Any]:
    rows = await _q(
        space,
        "SELECT * FROM @uploads WHERE id = {} AND @owner = {} AND created_at > {}",
        upload_id,
        space.owner_id,
        _now() - UPLOAD_TTL,
    )
    if not rows:
        raise not_found()
    return rows[0]


async def _chunked(space: Space, row: dict[str, Any]) -> ChunkedUpload:
    received = await object_store().staged_parts(PURPOSE, space.storage_owner, row["id"])
    return ChunkedUpload(
        row["id"],
        row["folder_id"],
        row["into_file"],
        row["name"],
        int(row["size"]),
        int(row["part_size"]),
        _parts(int(row["size"]), int(row["part_size"])),
        sorted(received),
        row["created_at"],
    )


async def start_upload(
    space: Space,
    *,
    name: str,
    size: int,
    folder_id: uuid.UUID | None = None,
    into_file: uuid.UUID | None = None,
) -> ChunkedUpload:
    limit = PERSONAL_QUOTA if space.personal else object_store().purpose(PURPOSE).max_bytes
    limit = min(limit, object_store().purpose(PURPOSE).max_bytes)
    if size <= 0 or size > limit:
        raise invalid(
            [
                FieldError(
                    "size",
                    "size_invalid",
                    f"文件大小需在 1 字节到 {human_size(limit)} 之间。",
                    f"The file must be between 1 byte and {human_size(limit)}.",
                )
            ]
        )
    if into_file is not None:
        existing = await get_file(space, into_file)
        name, folder_id = existing.name, existing.folder_id
    else:
        name = check_name(name, "file")
    upload_id = uuid.uuid4()
    async with space.scope():
        # Open uploads reserve their size: parts staged for many uploads at once could
        # otherwise hold far more than the quota. One lock per owner keeps two starts in turn.
        await _q(
            space,
            "SELECT pg_advisory_xact_lock(hashtextextended({}, 43))",
            f"uploads/{space.owner_id}",
        )
        usage_now = await usage(space)
        used = usage_now.used_bytes + usage_now.reserved_bytes
        if used + size > usage_now.quota_bytes:
            if space.personal:
                raise _quota_full(usage_now.quota_bytes, used)
            raise storage.quota_exceeded(usage_now.quota_bytes, used)
        if folder_id is not None:
            await _folder_row(space, folder_id)
        await _q(
            space,
            "INSERT INTO @uploads (id, @owner, folder_id, into_file, name, size, part_size, "
            "created_by, created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
            upload_id,
            space.owner_id,
            folder_id,
            into_file,
            name,
            size,
            PART_SIZE,
            space.user_id,
            _now(),
        )
        row = await _chunked_row(space, upload_id)
    return await _chunked(space, row)


async def upload_status(space: Space, upload_id: uuid.UUID) -> ChunkedUpload:
    async with space.scope():
        row = await _chunked_row(space, upload_id)
    return await _chunked(space, row)


async def put_part(space: Space, upload_id: uuid.UUID, index: int, data: bytes) -> None:
    async with space.scope():
        row = await _chunked_row(space, upload_id)
    size, part_size = int(row["size"]), int(row["part_size"])
    count = _parts(size, part_size)
    expected = part_size if index < count - 1 else size - part_size * (count - 1)
    if not 0 <= index < count or len(data) != expected:
        raise CanalError(
            "part_invalid",
            f"分片编号需为 0 至 {count - 1},且本片应为 {expected} 字节。",
            f"The part number must be 0 to {count - 1}, and this part must be {expected} bytes.",
            status=422,
        )
    await object_store().stage_part(PURPOSE, space.storage_owner, upload_id, index, data)


async def complete_upload(space: Space, upload_id: uuid.UUID, *, ip: str = "") -> File:
    """Assemble the parts through ``upload``; the staged parts and the record go once the
    file is judged (kept, or refused with the reason)."""
    status = await upload_status(space, upload_id)
    missing = sorted(set(range(status.parts)) - set(status.received))
    if missing:
        raise CanalError(
            "parts_missing",
            f"还有 {len(missing)} 个分片未上传(第一个缺少的是第 {missing[0]} 片),请继续上传。",
            f"{len(missing)} parts have not arrived yet (the first missing is part "
            f"{missing[0]}); send them, then complete again.",
            status=409,
        )
    store = object_store()
    # Claim the upload: a second "complete" at the same time finds nothing (404) instead of
    # assembling the same parts into a second version.
    async with space.scope():
        claimed = await _q(
            space,
            "DELETE FROM @uploads WHERE id = {} AND @owner = {} RETURNING *",
            upload_id,
            space.owner_id,
        )
    if not claimed:
        raise not_found()
    try:
        made = await upload(
            space,
            status.folder_id,
            store.read_staged(PURPOSE, space.storage_owner, upload_id, status.parts),
            filename=status.name,
            declared_size=status.size,
            ip=ip,
            into_file=status.into_file,
        )
    except CanalError:
        # Judged and refused (type, quota, name): the parts are of no use.
        await store.drop_staged(PURPOSE, space.storage_owner, upload_id)
        raise
    except BaseException:
        # Any other failure (a storage hiccup) keeps the parts: completing again may succeed.
        row = claimed[0]
        async with space.scope():
            await _q(
                space,
                "INSERT INTO @uploads (id, @owner, folder_id, into_file, name, size, part_size, "
                "created_by, created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
                *(row[c] for c in ("id", "tenant_id" if not space.personal else "owner_id")),
                *(
                    row[c]
                    for c in (
                        "folder_id",
                        "into_file",
                        "name",
                        "size",
                        "part_size",
                        "created_by",
                        "created_at",
                    )
                ),
            )
        raise
    await store.drop_staged(PURPOSE, space.storage_owner, upload_id)
    return made


async def list_uploads(space: Space) -> list[ChunkedUpload]:
    """Resumable uploads started and not yet completed (each reserves its size)."""
    async with space.scope():
        rows = await _q(
            space,
            "SELECT * FROM @uploads WHERE @owner = {} AND created_at > {} ORDER BY created_at",
            space.owner_id,
            _now() - UPLOAD_TTL,
        )
    return [await _chunked(space, row) for row in rows]


async def cancel_upload(space: Space, upload_id: uuid.UUID) -> None:
    """Give up a resumable upload: its staged parts go and its reserved space is free at
    once (the record goes in the same statement that finds it, so a ``complete`` racing
    with the cancel either claims the upload first or finds nothing)."""
    async with space.scope():
        dropped = await _q(
            space,
            "DELETE FROM @uploads WHERE id = {} AND @owner = {} AND created_at > {} RETURNING id",
            upload_id,
            space.owner_id,
            _now() - UPLOAD_TTL,
        )
    if not dropped:
        raise not_found()
    await object_store().drop_staged(PURPOSE, space.storage_owner, upload_id)


async def drop_stale_uploads(now: dt.datetime | None = None) -> int:
    """Uploads never completed within a day: their parts and records go (the nightly job)."""
    cutoff = (now or _now()) - UPLOAD_TTL
    dropped = 0
    async with db.platform_scope():
        stale: list[tuple[str, uuid.UUID, uuid.UUID]] = []
        for kind, owner, table in (
            ("t", "tenant_id", "bank_uploads"),
            ("u", "owner_id", "bank_personal_uploads"),
        ):
            rows = await BankBackup.raw(
                f"DELETE FROM {table} WHERE created_at <= {{}} RETURNING id, {owner} AS owner",
                cutoff,
            )
            stale.extend((kind, r["owner"], r["id"]) for r in rows)
    for space_kind, owner_id, upload_id in stale:
        prefix = f"tenants/{owner_id}" if space_kind == "t" else f"users/{owner_id}"
        await object_store().drop_staged(PURPOSE, prefix, upload_id)
        dropped += 1
    return dropped


# --- share links ------------------------------------------------------------------------------


def _share_token(space: Space) -> str:
    # The owner is in the token so the public lookup can open the right (RLS) scope; the
    # random part is what makes it unguessable (192 bits).
    return f"{'u' if space.personal else 't'}{space.owner_id.hex}{secrets.token_urlsafe(24)}"


@dataclass(frozen=True)
class NewShare:
    share: Share
    token: str


async def create_share(
    space: Space,
    file_id: uuid.UUID,
    *,
    days: int,
    max_downloads: int | None = None,
    ip: str = "",
) -> NewShare:
    errors = []
    if not 1 <= days <= SHARE_MAX_DAYS:
        errors.append(
            FieldError(
                "days",
                "share_days_invalid",
                f"有效期需为 1 至 {SHARE_MAX_DAYS} 天。",
                f"A link may last from 1 to {SHARE_MAX_DAYS} days.",
            )
        )
    if max_downloads is not None and not 1 <= max_downloads <= 10_000:
        errors.append(
            FieldError(
                "max_downloads",
                "share_downloads_invalid",
                "下载次数上限需为 1 至 10000,或留空表示不限。",
                "The download limit must be 1 to 10,000, or empty for no limit.",
            )
        )
    if errors:
        raise invalid(errors)
    token = _share_token(space)
    share_id = uuid.uuid4()
    async with space.scope():
        file = await _file_row(space, file_id)
        await _q(
            space,
            "INSERT INTO @shares (id, @owner, file_id, token_hash, expires_at, max_downloads, "
            "downloads, created_by, created_at) VALUES ({}, {}, {}, {}, {}, {}, 0, {}, {})",
            share_id,
            space.owner_id,
            file_id,
            token_hash(token),
            _now() + dt.timedelta(days=days),
            max_downloads,
            space.user_id,
            _now(),
        )
        await record(
            "bank.share_created",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("file", file_id),
            ip=ip,
            data={"share": str(share_id), "days": days, "name": file.name},
        )
        rows = await _q(space, "SELECT * FROM @shares WHERE id = {}", share_id)
    return NewShare(_share(rows[0]), token)


async def revoke_share(
    space: Space, file_id: uuid.UUID, share_id: uuid.UUID, *, ip: str = ""
) -> None:
    async with space.scope():
        await _file_row(space, file_id)
        rows = await _q(
            space,
            "UPDATE @shares SET revoked_at = coalesce(revoked_at, {}) "
            "WHERE id = {} AND file_id = {} AND @owner = {} RETURNING id",
            _now(),
            share_id,
            file_id,
            space.owner_id,
        )
        if not rows:
            raise not_found()
        await record(
            "bank.share_revoked",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("file", file_id),
            ip=ip,
            data={"share": str(share_id)},
        )


@dataclass(frozen=True)
class SharedFile:
    name: str
    size: int
    content_type: str
    expires_at: dt.datetime
    downloads_left: int | None


def _link_gone() -> CanalError:
    return CanalError(
        "share_link_invalid",
        "此分享链接无效、已过期或已被撤销。",
        "This share link is invalid, has expired or was revoked.",
        status=404,
    )


async def _space_of_token(token: str) -> Space:
    if len(token) < 40 or len(token) > 80 or token[0] not in "tu":
        raise _link_gone()
    try:
        owner = uuid.UUID(hex=token[1:33])
    except ValueError:
        raise _link_gone() from None
    if token[0] == "u":
        return Space(owner)
    tenant = (
        await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind, Tenant.status)
        .where(Tenant.id == owner)
        .first()
    )
    if tenant is None or tenant["status"] != "active":
        raise _link_gone()
    ref = TenantRef(tenant["id"], tenant["slug"], tenant["name"], tenant["kind"], tenant["status"])
    # The link acts for nobody: no user, only the owning tenant's scope.
    return Space(uuid.UUID(int=0), TenantContext(ref, uuid.UUID(int=0)))


async def _open_share(space: Space, token: str, *, count: bool) -> tuple[File, Version, Share]:
    share_sql = (
        "UPDATE @shares SET downloads = downloads + 1 WHERE token_hash = {} AND @owner = {} "
        "AND revoked_at IS NULL AND expires_at > {} "
        "AND (max_downloads IS NULL OR downloads < max_downloads) RETURNING *"
        if count
        else "SELECT * FROM @shares WHERE token_hash = {} AND @owner = {} "
        "AND revoked_at IS NULL AND expires_at > {} "
        "AND (max_downloads IS NULL OR downloads < max_downloads)"
    )
    rows = await _q(space, share_sql, token_hash(token), space.owner_id, _now())
    if not rows:
        raise _link_gone()
    share = _share(rows[0])
    try:
        file = await _file_row(space, share.file_id)
    except CanalError:
        raise _link_gone() from None  # the file is in the bin: the link stops working
    if file.current_version_id is None:
        raise _link_gone()
    version = await _version_row(space, file.id, file.current_version_id)
    return file, version, share


async def shared_file(token: str) -> SharedFile:
    space = await _space_of_token(token)
    scope = (
        db.tenant_scope(space.ctx.tenant_id)
        if space.ctx is not None
        else db.user_scope(space.user_id)
    )
    async with scope:
        file, version, share = await _open_share(space, token, count=False)
    left = None if share.max_downloads is None else share.max_downloads - share.downloads
    return SharedFile(file.name, version.size, version.content_type, share.expires_at, left)


async def shared_download(token: str, *, ip: str = "") -> str:
    """Count one download and hand out a five-minute URL (audited, with no actor)."""
    space = await _space_of_token(token)
    scope = (
        db.tenant_scope(space.ctx.tenant_id)
        if space.ctx is not None
        else db.user_scope(space.user_id)
    )
    async with scope:
        file, version, share = await _open_share(space, token, count=True)
        if version.storage_class != "standard":
            raise archived_error()
        if space.ctx is not None:
            stored = await storage.get_object_in_tenant(version.object_id, space.ctx)
        else:
            stored = await storage.get_personal_object(version.object_id, space.user_id)
        await record(
            "bank.share_downloaded",
            tenant_id=space.tenant_id,
            target=space.target("file", file.id),
            ip=ip,
            data={"share": str(share.id), "downloads": share.downloads},
        )
    stored = dataclasses.replace(stored, original_name=file.name)
    store = object_store()
    if space.ctx is not None:
        return await store.presigned_get(stored, space.ctx)
    return await store.presigned_get_personal(stored, space.user_id)


# --- usage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankUsage:
    quota_bytes: int
    used_bytes: int  # everything counted against the quota (an organisation: all its files)
    bank_bytes: int  # this bank's current and older versions, bin included
    cold_bytes: int
    backup_bytes: int
    trash_bytes: int
    files: int
    versions: int
    # Declared sizes of resumable uploads still open: held back from the quota (not yet
    # in ``used_bytes``) until they complete, are cancelled or expire.
    reserved_bytes: int = 0
    open_uploads: int = 0

    @property
    def percent(self) -> float:
        return round(100.0 * self.used_bytes / self.quota_bytes, 1) if self.quota_bytes else 0.0


async def usage(space: Space) -> BankUsage:
    async with space.scope():
        rows = await _q(
            space,
            "SELECT coalesce(sum(size) FILTER (WHERE storage_class = 'standard'), 0) AS standard,"
            " coalesce(sum(size) FILTER (WHERE storage_class <> 'standard'), 0) AS cold,"
            " count(*) AS objects FROM (SELECT DISTINCT object_id, size, storage_class"
            " FROM @versions WHERE @owner = {}) AS o",
            space.owner_id,
        )
        trash = await _q(
            space,
            "SELECT coalesce(sum(size), 0) AS bytes FROM (SELECT DISTINCT v.object_id, v.size "
            "FROM @versions v JOIN @files f ON f.id = v.file_id AND f.@owner = v.@owner "
            "WHERE v.@owner = {} AND f.deleted_at IS NOT NULL) AS t",
            space.owner_id,
        )
        counts = await _q(
            space,
            "SELECT (SELECT count(*) FROM @files WHERE @owner = {} AND deleted_at IS NULL)"
            " AS files,"
            " (SELECT count(*) FROM @versions WHERE @owner = {}) AS versions",
            space.owner_id,
            space.owner_id,
        )
        pending = await _q(
            space,
            "SELECT coalesce(sum(size), 0) AS bytes, count(*) AS n FROM @uploads "
            "WHERE @owner = {} AND created_at > {}",
            space.owner_id,
            _now() - UPLOAD_TTL,
        )
        backup = 0
        if space.ctx is not None:
            backup_rows = await BankBackup.raw(
                "SELECT coalesce(sum(bytes), 0) AS bytes FROM bank_backups WHERE tenant_id = {}",
                space.owner_id,
            )
            backup = int(backup_rows[0]["bytes"])
    standard, cold = int(rows[0]["standard"]), int(rows[0]["cold"])
    if space.ctx is not None:
        quota, used = await storage.tenant_quota_and_usage(space.ctx)
    else:
        quota, used = PERSONAL_QUOTA, standard + cold
    return BankUsage(
        quota,
        used,
        standard + cold,
        cold,
        backup,
        int(trash[0]["bytes"]),
        int(counts[0]["files"]),
        int(counts[0]["versions"]),
        int(pending[0]["bytes"]),
        int(pending[0]["n"]),
    )


# --- cold archive (organisations) -------------------------------------------------------------


def _org_only(space: Space) -> TenantContext:
    if space.ctx is None:
        raise not_found()
    return space.ctx


async def archive_file(space: Space, file_id: uuid.UUID, *, ip: str = "") -> File:
    """Move every version of a file to the cold class: a server-side copy into the archive
    bucket, then the standard copy is deleted. Downloads need a retrieval afterwards."""
    ctx = _org_only(space)
    store = object_store()
    async with space.scope():
        await _file_row(space, file_id)
        rows = await _q(
            space,
            "SELECT DISTINCT object_id FROM @versions WHERE file_id = {} AND @owner = {} "
            "AND storage_class = 'standard'",
            file_id,
            space.owner_id,
        )
    if not rows:
        raise CanalError(
            "already_archived",
            "该文件已在冷存储中。",
            "This file is already in the cold archive.",
            status=409,
        )
    for row in rows:
        stored = await storage.get_object_in_tenant(row["object_id"], ctx)
        cold = await store.copy(stored, ctx, COLD_PURPOSE, ip=ip)
        async with space.scope():
            await _q(
                space,
                "UPDATE @versions SET object_id = {}, storage_class = 'cold' "
                "WHERE object_id = {} AND @owner = {}",
                cold.id,
                stored.id,
                space.owner_id,
            )
            await _unstore(space, stored.id, ip)
    async with space.scope():
        await record(
            "bank.archived",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("file", file_id),
            ip=ip,
            data={"objects": len(rows)},
        )
        return await _file_row(space, file_id)


async def retrieve_file(space: Space, file_id: uuid.UUID, *, ip: str = "") -> File:
    """Ask for an archived file back: its versions show "retrieving" until the job is done."""
    ctx = _org_only(space)
    async with space.scope():
        await _file_row(space, file_id)
        rows = await _q(
            space,
            "UPDATE @versions SET storage_class = 'retrieving' WHERE file_id = {} AND @owner = {} "
            "AND storage_class = 'cold' RETURNING id",
            file_id,
            space.owner_id,
        )
        if rows:
            await enqueue_after_commit(
                "bank_retrieve",
                str(ctx.tenant_id),
                str(file_id),
                str(space.user_id),
                key=f"bank-retrieve:{file_id}:{uuid.uuid4()}",
            )
            await record(
                "bank.retrieval_requested",
                actor_id=space.user_id,
                tenant_id=space.tenant_id,
                target=space.target("file", file_id),
                ip=ip,
                data={"versions": len(rows)},
            )
        return await _file_row(space, file_id)


async def tenant_ctx(tenant_id: uuid.UUID, user_id: uuid.UUID) -> TenantContext:
    row = (
        await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind, Tenant.status)
        .where(Tenant.id == tenant_id)
        .first()
    )
    if row is None:
        raise not_found()
    ref = TenantRef(row["id"], row["slug"], row["name"], row["kind"], row["status"])
    return TenantContext(ref, user_id)


async def finish_retrieval(ctx: TenantContext, file_id: uuid.UUID) -> int:
    """The retrieval job's work: copy each retrieving version back to the standard class.
    Safe to run twice: a version already back is no longer "retrieving"."""
    space = tenant_space(ctx)
    store = object_store()
    async with space.scope():
        rows = await _q(
            space,
            "SELECT DISTINCT object_id FROM @versions WHERE file_id = {} AND @owner = {} "
            "AND storage_class = 'retrieving'",
            file_id,
            space.owner_id,
        )
    for row in rows:
        cold = await storage.get_object_in_tenant(row["object_id"], ctx)
        back = await store.copy(cold, ctx, PURPOSE)
        async with space.scope():
            await _q(
                space,
                "UPDATE @versions SET object_id = {}, storage_class = 'standard' "
                "WHERE object_id = {} AND @owner = {}",
                back.id,
                cold.id,
                space.owner_id,
            )
            await _unstore(space, cold.id)
    if rows:
        async with space.scope():
            file = await _file_row(space, file_id)
            await notify(
                [ctx.user_id],
                NOTIFY_KIND.key,
                title_zh=f"「{file.name}」已从归档取回,可以下载了。",
                title_en=f"“{file.name}” is back from the archive and can be downloaded.",
                link=f"/t/{ctx.tenant.slug}/bank/files/{file_id}",
                tenant_id=ctx.tenant_id,
            )
    return len(rows)


# --- scheduled backups (organisations) --------------------------------------------------------


async def set_backup(
    space: Space, folder_id: uuid.UUID, *, schedule: str, keep: int, ip: str = ""
) -> Folder:
    _org_only(space)
    errors = []
    if schedule not in {"off", *SCHEDULES}:
        errors.append(
            FieldError(
                "schedule",
                "schedule_invalid",
                "请选择备份频率:关闭、每天或每周。",
                "Choose how often to back up: off, daily or weekly.",
            )
        )
    if not 1 <= keep <= MAX_KEEP:
        errors.append(
            FieldError(
                "keep",
                "keep_invalid",
                f"保留份数需为 1 至 {MAX_KEEP}。",
                f"Keep between 1 and {MAX_KEEP} copies.",
            )
        )
    if errors:
        raise invalid(errors)
    async with space.scope():
        await _folder_row(space, folder_id)
        next_at = _now() + SCHEDULES[schedule] if schedule in SCHEDULES else None
        await BankBackup.raw(
            "UPDATE bank_folders SET backup_schedule = {}, backup_keep = {}, backup_next_at = {}, "
            "backup_by = {} WHERE id = {} AND tenant_id = {}",
            schedule,
            keep,
            next_at,
            space.user_id,
            folder_id,
            space.owner_id,
        )
        await record(
            "bank.backup_scheduled",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("folder", folder_id),
            ip=ip,
            data={"schedule": schedule, "keep": keep},
        )
        return await _folder_row(space, folder_id)


@dataclass(frozen=True)
class Backup:
    id: uuid.UUID
    folder_id: uuid.UUID
    files: int
    bytes: int
    trigger: str
    created_at: dt.datetime


def _backup(row: dict[str, Any]) -> Backup:
    return Backup(
        row["id"],
        row["folder_id"],
        int(row["files"]),
        int(row["bytes"]),
        row["trigger"],
        row["created_at"],
    )


async def list_backups(space: Space, folder_id: uuid.UUID) -> list[Backup]:
    if space.ctx is None:
        return []
    async with space.scope():
        rows = await BankBackup.raw(
            "SELECT * FROM bank_backups WHERE tenant_id = {} AND folder_id = {} "
            "ORDER BY created_at DESC",
            space.owner_id,
            folder_id,
        )
    return [_backup(r) for r in rows]


async def run_backup(
    ctx: TenantContext, folder_id: uuid.UUID, *, trigger: str = "manual", ip: str = ""
) -> Backup:
    """Copy the current version of every file under the folder into the backup class, record
    the copy, then drop the oldest copies beyond the folder's retention."""
    space = tenant_space(ctx)
    store = object_store()
    async with space.scope():
        folder = await _folder_row(space, folder_id)
        ids = await _subtree(space, folder_id)
        rows = await _q(
            space,
            "SELECT f.id AS file_id, f.folder_id, f.name, v.id AS version_id, v.object_id "
            "FROM @files f JOIN @versions v ON v.id = f.current_version_id AND v.@owner = f.@owner "
            "WHERE f.@owner = {} AND f.folder_id = ANY({}::uuid[]) AND f.deleted_at IS NULL",
            space.owner_id,
            ids,
        )
        paths = dict(await _all_folder_paths(space))
    copies: list[tuple[dict[str, Any], StoredFile]] = []
    try:
        for row in rows:
            source = await storage.get_object_in_tenant(row["object_id"], ctx)
            copies.append((row, await store.copy(source, ctx, BACKUP_PURPOSE, ip=ip)))
    except BaseException:
        for _, copy in copies:
            await store.delete(copy.id, ctx)
        raise
    backup_id = uuid.uuid4()
    async with space.scope():
        await BankBackup.insert(
            BankBackup(
                id=backup_id,
                tenant_id=ctx.tenant_id,
                folder_id=folder_id,
                files=len(copies),
                bytes=sum(c.size for _, c in copies),
                trigger=trigger,
                created_by=ctx.user_id,
            )
        )
        for row, copy in copies:
            await BankBackup.raw(
                "INSERT INTO bank_backup_items (id, tenant_id, backup_id, file_id, version_id, "
                "path, object_id, size) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
                uuid.uuid4(),
                ctx.tenant_id,
                backup_id,
                row["file_id"],
                row["version_id"],
                f"{paths.get(row['folder_id'], '')}/{row['name']}"[:1000],
                copy.id,
                copy.size,
            )
        if folder.backup_schedule in SCHEDULES:
            await BankBackup.raw(
                "UPDATE bank_folders SET backup_next_at = {} WHERE id = {} AND tenant_id = {}",
                _now() + SCHEDULES[folder.backup_schedule],
                folder_id,
                ctx.tenant_id,
            )
        stale = await BankBackup.raw(
            "SELECT id FROM bank_backups WHERE tenant_id = {} AND folder_id = {} "
            "ORDER BY created_at DESC OFFSET {}",
            ctx.tenant_id,
            folder_id,
            folder.backup_keep,
        )
        for old in stale:
            await _drop_backup(ctx, old["id"])
        await record(
            "bank.backup_made",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=space.target("folder", folder_id),
            ip=ip,
            data={"backup": str(backup_id), "files": len(copies), "pruned": len(stale)},
        )
        result = await BankBackup.raw("SELECT * FROM bank_backups WHERE id = {}", backup_id)
    return _backup(result[0])


async def _drop_backup(ctx: TenantContext, backup_id: uuid.UUID) -> None:
    items = await BankBackup.raw(
        "DELETE FROM bank_backup_items WHERE tenant_id = {} AND backup_id = {} RETURNING object_id",
        ctx.tenant_id,
        backup_id,
    )
    await BankBackup.raw(
        "DELETE FROM bank_backups WHERE tenant_id = {} AND id = {}", ctx.tenant_id, backup_id
    )
    for item in items:
        await _unstore(tenant_space(ctx), item["object_id"])


async def restore_backup(space: Space, backup_id: uuid.UUID, *, ip: str = "") -> int:
    """Bring every file of a kept copy back as a new version (a file since deleted comes back
    as a new file in the backed-up folder, renamed if its name is taken)."""
    ctx = _org_only(space)
    store = object_store()
    async with space.scope():
        backups = await BankBackup.raw(
            "SELECT * FROM bank_backups WHERE id = {} AND tenant_id = {}", backup_id, ctx.tenant_id
        )
        if not backups:
            raise not_found()
        backup = _backup(backups[0])
        items = await BankBackup.raw(
            "SELECT * FROM bank_backup_items WHERE backup_id = {} AND tenant_id = {}",
            backup_id,
            ctx.tenant_id,
        )
    restored = 0
    for item in items:
        source = await storage.get_object_in_tenant(item["object_id"], ctx)
        copy = await store.copy(source, ctx, PURPOSE, ip=ip)
        try:
            async with space.scope():
                alive = await _q(
                    space,
                    "SELECT id FROM @files WHERE id = {} AND @owner = {} AND deleted_at IS NULL",
                    item["file_id"],
                    space.owner_id,
                )
                if alive:
                    file_id = item["file_id"]
                else:
                    place: uuid.UUID | None = backup.folder_id
                    try:
                        await _folder_row(space, backup.folder_id, place=True)
                    except CanalError:
                        place = None
                    name = await _free_name(
                        space, place, item["path"].rsplit("/", 1)[-1] or "file", "file"
                    )
                    file_id = uuid.uuid4()
                    await _q(
                        space,
                        "INSERT INTO @files (id, @owner, folder_id, name, created_by, created_at, "
                        "updated_at) VALUES ({}, {}, {}, {}, {}, {}, {})",
                        file_id,
                        space.owner_id,
                        place,
                        name,
                        space.user_id,
                        *(_now(),) * 2,
                    )
                await _add_version(
                    space,
                    file_id,
                    object_id=copy.id,
                    size=copy.size,
                    content_type=copy.content_type,
                    sha256=copy.sha256,
                    note=f"backup {backup.created_at:%Y-%m-%d %H:%M}",
                )
        except BaseException:
            await store.delete(copy.id, ctx)
            raise
        restored += 1
    async with space.scope():
        await record(
            "bank.backup_restored",
            actor_id=space.user_id,
            tenant_id=space.tenant_id,
            target=space.target("folder", backup.folder_id),
            ip=ip,
            data={"backup": str(backup_id), "files": restored},
        )
    return restored


# --- what the cron jobs find across organisations ---------------------------------------------


async def due_backups(now: dt.datetime | None = None) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, folder) pairs whose scheduled backup is due. The worker's own read across
    tenants (no person asked for it): the platform scope, for these ids only."""
    async with db.platform_scope():
        rows = await BankBackup.raw(
            "SELECT tenant_id, id FROM bank_folders WHERE backup_schedule <> 'off' "
            "AND deleted_at IS NULL AND backup_next_at <= {}",
            now or _now(),
        )
    return [(r["tenant_id"], r["id"]) for r in rows]


async def folder_backup_actor(tenant_id: uuid.UUID, folder_id: uuid.UUID) -> uuid.UUID | None:
    async with db.tenant_scope(tenant_id):
        rows = await BankBackup.raw(
            "SELECT coalesce(backup_by, created_by) AS actor FROM bank_folders "
            "WHERE id = {} AND tenant_id = {}",
            folder_id,
            tenant_id,
        )
    return rows[0]["actor"] if rows else None


async def expired_trash(
    now: dt.datetime | None = None,
) -> list[tuple[str, uuid.UUID, uuid.UUID, uuid.UUID]]:
    """(space kind, owner, deleted_by, trash_id) of bin items older than ``TRASH_DAYS``."""
    cutoff = (now or _now()) - dt.timedelta(days=TRASH_DAYS)
    found: list[tuple[str, uuid.UUID, uuid.UUID, uuid.UUID]] = []
    async with db.platform_scope():
        for kind, owner, prefix in (
            ("t", "tenant_id", "bank_"),
            ("u", "owner_id", "bank_personal_"),
        ):
            rows = await BankBackup.raw(
                f"SELECT DISTINCT {owner} AS owner, deleted_by, trash_id FROM {prefix}folders "
                "WHERE trash_root AND deleted_at < {} UNION "
                f"SELECT DISTINCT {owner}, deleted_by, trash_id FROM {prefix}files "
                "WHERE trash_root AND deleted_at < {}",
                cutoff,
                cutoff,
            )
            found.extend((kind, r["owner"], r["deleted_by"], r["trash_id"]) for r in rows)
    return found


async def purge_expired(now: dt.datetime | None = None) -> int:
    """Empty what has been in any bin for longer than ``TRASH_DAYS`` (the nightly job)."""
    purged = 0
    for kind, owner, deleted_by, trash_id in await expired_trash(now):
        actor = deleted_by or uuid.UUID(int=0)
        space = Space(actor, await tenant_ctx(owner, actor)) if kind == "t" else Space(owner)
        purged += await _purge(space, [trash_id])
        await asyncio.sleep(0)
    return purged
