"""The audit trail: append-only and hash-chained (see canal.platform.audit.services)."""

from piccolo.columns import UUID, BigInt, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class AuditEvent(Table, tablename="audit_events"):
    append_only = True

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
