"""The in-app inbox and each person's channel choices per notification kind.

Both belong to a person, not to a tenant: ``tenant`` on a notification only says which
organisation it is about (no ``tenant_id`` column, so no tenant row-level security); every
query is scoped by ``user_id`` instead (``services.get_notification_for_user``).
"""

from piccolo.columns import UUID, Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from canal.platform.identity.tables import User


class Notification(Table, tablename="notifications"):
    id = UUID(primary_key=True, default=UUID4())
    user_id = ForeignKey(references=User, null=False, index=True)
    tenant = UUID(null=True, default=None)
    kind = Varchar(length=40)
    title_zh = Varchar(length=200)
    title_en = Varchar(length=200)
    body_zh = Text(default="")
    body_en = Text(default="")
    link = Varchar(length=500, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    read_at = Timestamptz(null=True, default=None)


class NotificationPreference(Table, tablename="notification_preferences"):
    """A person's choice for one kind; no row = the kind's defaults. Unique (user_id, kind)."""

    id = UUID(primary_key=True, default=UUID4())
    user_id = ForeignKey(references=User, null=False, index=True)
    kind = Varchar(length=40)
    email = Boolean(default=False)
    sms = Boolean(default=False)
    updated_at = Timestamptz(default=TimestamptzNow())
