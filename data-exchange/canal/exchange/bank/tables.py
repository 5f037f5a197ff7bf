"""The data bank's file manager: folders, files, versions, share links, backups.

Two spaces share one shape: an organisation's (``bank_*``, ``tenant_id`` → row-level security)
and a person's (``bank_personal_*``, ``owner_id``; global like ``personal_objects``, every
lookup filters on the owner). The services address both through ``Space`` with the same SQL,
so the column names match except the owner column.

The bytes live in object storage: a version keeps the ``StoredObject``/``PersonalObject`` id
(no foreign key across domains, as docs/storage.md asks).
"""

from piccolo.columns import UUID, BigInt, Boolean, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from canal.platform.identity.tables import User
from canal.tenants.tables import Tenant

# --- an organisation's bank ---------------------------------------------------------------------


class BankFolder(Table, tablename="bank_folders"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    parent_id = UUID(null=True, default=None, index=True)  # None: at the top
    name = Varchar(length=120)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    # In the recycle bin: everything deleted together shares trash_id; trash_root marks the
    # item the person chose (the bin lists those), deleted_by acts for the automatic purge.
    deleted_at = Timestamptz(null=True, default=None)
    trash_id = UUID(null=True, default=None, index=True)
    trash_root = Boolean(default=False)
    deleted_by = UUID(null=True, default=None)
    # Scheduled backup: "off" | "daily" | "weekly"; keep the newest `backup_keep` copies.
    backup_schedule = Varchar(length=8, default="off")
    backup_keep = Integer(default=7)
    backup_next_at = Timestamptz(null=True, default=None)
    backup_by = UUID(null=True, default=None)  # who set the schedule: the backups' actor


class BankFile(Table, tablename="bank_files"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    folder_id = UUID(null=True, default=None, index=True)
    name = Varchar(length=200)
    current_version_id = UUID(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)
    trash_id = UUID(null=True, default=None, index=True)
    trash_root = Boolean(default=False)
    deleted_by = UUID(null=True, default=None)


class BankVersion(Table, tablename="bank_versions"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    file_id = UUID(index=True)
    number = Integer()
    object_id = UUID()  # the stored object (purpose "bank", or "bank-cold" when archived)
    # "standard" | "cold" (archived: a download needs a retrieval first) | "retrieving"
    storage_class = Varchar(length=12, default="standard")
    size = BigInt()
    content_type = Varchar(length=100)
    sha256 = Varchar(length=64)
    note = Varchar(length=200, default="")  # "restored from version 1", "restored from backup"
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class BankShare(Table, tablename="bank_shares"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    file_id = UUID(index=True)
    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()
    max_downloads = Integer(null=True, default=None)
    downloads = Integer(default=0)
    revoked_at = Timestamptz(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class BankBackup(Table, tablename="bank_backups"):
    """One kept copy of a folder (its files' current versions, recursively)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    folder_id = UUID(index=True)
    files = Integer(default=0)
    bytes = BigInt(default=0)
    trigger = Varchar(length=12, default="schedule")  # "schedule" | "manual"
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class BankBackupItem(Table, tablename="bank_backup_items"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    backup_id = UUID(index=True)
    file_id = UUID()
    version_id = UUID()
    path = Varchar(length=1000)  # where the file was, for the page ("报表/2026/a.csv")
    object_id = UUID()  # the copy (purpose "bank-backup")
    size = BigInt()


class BankUpload(Table, tablename="bank_uploads"):
    """A chunked (resumable) upload in progress; its parts wait in storage's staging area."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    folder_id = UUID(null=True, default=None)
    into_file = UUID(null=True, default=None)  # a new version of this file
    name = Varchar(length=200)
    size = BigInt()
    part_size = Integer()
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


# --- a person's bank ---------------------------------------------------------------------------


class BankPersonalFolder(Table, tablename="bank_personal_folders"):
    id = UUID(primary_key=True, default=UUID4())
    owner_id = ForeignKey(references=User, null=False, index=True)
    parent_id = UUID(null=True, default=None, index=True)
    name = Varchar(length=120)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)
    trash_id = UUID(null=True, default=None, index=True)
    trash_root = Boolean(default=False)
    deleted_by = UUID(null=True, default=None)


class BankPersonalFile(Table, tablename="bank_personal_files"):
    id = UUID(primary_key=True, default=UUID4())
    owner_id = ForeignKey(references=User, null=False, index=True)
    folder_id = UUID(null=True, default=None, index=True)
    name = Varchar(length=200)
    current_version_id = UUID(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)
    trash_id = UUID(null=True, default=None, index=True)
    trash_root = Boolean(default=False)
    deleted_by = UUID(null=True, default=None)


class BankPersonalVersion(Table, tablename="bank_personal_versions"):
    id = UUID(primary_key=True, default=UUID4())
    owner_id = ForeignKey(references=User, null=False, index=True)
    file_id = UUID(index=True)
    number = Integer()
    object_id = UUID()
    storage_class = Varchar(length=12, default="standard")  # personal files are never archived
    size = BigInt()
    content_type = Varchar(length=100)
    sha256 = Varchar(length=64)
    note = Varchar(length=200, default="")
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class BankPersonalShare(Table, tablename="bank_personal_shares"):
    id = UUID(primary_key=True, default=UUID4())
    owner_id = ForeignKey(references=User, null=False, index=True)
    file_id = UUID(index=True)
    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()
    max_downloads = Integer(null=True, default=None)
    downloads = Integer(default=0)
    revoked_at = Timestamptz(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class BankPersonalUpload(Table, tablename="bank_personal_uploads"):
    id = UUID(primary_key=True, default=UUID4())
    owner_id = ForeignKey(references=User, null=False, index=True)
    folder_id = UUID(null=True, default=None)
    into_file = UUID(null=True, default=None)
    name = Varchar(length=200)
    size = BigInt()
    part_size = Integer()
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
