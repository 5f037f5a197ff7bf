"""What is stored where: one row per object in S3, and each tenant's storage quota."""

from piccolo.columns import UUID, BigInt, ForeignKey, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from canal.platform.identity.tables import User
from canal.tenants.tables import Tenant


class StoredObject(Table, tablename="stored_objects"):
    """A tenant's file. ``id`` is also the last segment of ``key`` (chosen by the server)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    purpose = Varchar(length=32)
    bucket = Varchar(length=63)
    key = Varchar(length=200, unique=True)
    size = BigInt()
    content_type = Varchar(length=100)  # detected from the bytes, never the client's claim
    sha256 = Varchar(length=64)
    original_name = Varchar(length=200)  # sanitised; only for Content-Disposition
    uploaded_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class PersonalObject(Table, tablename="personal_objects"):
    """A person's own file (an ID-card photo for a resident with no organisation).

    Global like ``users``: no tenant, so no row-level security; every lookup filters on
    ``owner_id`` (``get_personal_object(object_id, user_id)``) and nothing else reads it.
    """

    id = UUID(primary_key=True, default=UUID4())
    owner_id = ForeignKey(references=User, null=False, index=True)
    purpose = Varchar(length=32)
    bucket = Varchar(length=63)
    key = Varchar(length=200, unique=True)
    size = BigInt()
    content_type = Varchar(length=100)
    sha256 = Varchar(length=64)
    original_name = Varchar(length=200)
    created_at = Timestamptz(default=TimestamptzNow())


class StorageQuota(Table, tablename="storage_quotas"):
    """A tenant's quota when it differs from the default (set by the operator)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, unique=True)
    quota_bytes = BigInt()
    updated_by = UUID(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())
