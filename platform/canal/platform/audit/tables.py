"""The audit trail: append-only and hash-chained (see docs/audit.md).

Rows are written only by the SQL function ``canal_audit_append`` (created in this app's
migrations); the application role may read them, under row-level security, and nothing else.
"""

from piccolo.columns import UUID, BigInt, SmallInt, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class AuditEvent(Table, tablename="audit_events"):
    append_only = True
    # The app role may SELECT only; rows arrive through canal_audit_append() (SECURITY DEFINER).
    app_writes = False

    seq = BigInt(primary_key=True)
    tenant_id = UUID(null=True, default=None, index=True)
    actor_id = UUID(null=True, default=None)
    action = Varchar(length=64, index=True)
    target = Varchar(length=200, default="")
    ip = Varchar(length=64, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    # The exact canonical JSON that was hashed, and the chain links.
    payload = Text()
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64, unique=True)


class AuditHead(Table, tablename="audit_head"):
    """One row: the last record's seq and hash, so deleting the newest record shows too."""

    app_writes = False

    id = SmallInt(primary_key=True)
    seq = BigInt()
    hash = Varchar(length=64)
