"""Organisations and who belongs to them."""

from piccolo.columns import UUID, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from canal.platform.identity.tables import User

TENANT_KINDS = ("operator", "enterprise", "park", "community", "government")


class Tenant(Table, tablename="tenants"):
    """An organisation. Global (not tenant-owned): the path's slug is resolved against it."""

    id = UUID(primary_key=True, default=UUID4())
    slug = Varchar(length=40, unique=True, index=True)
    name = Varchar(length=100)
    kind = Varchar(length=16)
    credit_code = Varchar(length=18, null=True, default=None, unique=True)
    status = Varchar(length=16, default="active")
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Membership(Table, tablename="memberships"):
    # Members see their own memberships across tenants (to switch between organisations).
    rls_user_column = "user_id"

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    user_id = ForeignKey(references=User, null=False)
    created_at = Timestamptz(default=TimestamptzNow())


class Invitation(Table, tablename="invitations"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    recipient = Varchar(length=254)  # email or phone as typed, normalised
    role = Varchar(length=40, default="member")
    token_hash = Varchar(length=64, unique=True)
    invited_by = UUID()
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    accepted_at = Timestamptz(null=True, default=None)
    accepted_by = UUID(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class ModuleSubscription(Table, tablename="module_subscriptions"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    module_key = Varchar(length=32)
    plan = Varchar(length=32, default="free")
    status = Varchar(length=16, default="active")  # active | cancelled
    active_until = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    note = Text(default="")
