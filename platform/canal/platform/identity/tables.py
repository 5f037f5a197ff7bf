"""Shared identity: one account per person across all tenants."""

from piccolo.columns import (
    UUID,
    BigInt,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table


class User(Table, tablename="users"):
    id = UUID(primary_key=True, default=UUID4())
    email = Varchar(length=254, null=True, default=None, unique=True, index=True)
    phone = Varchar(length=20, null=True, default=None, unique=True, index=True)
    password_hash = Text()
    display_name = Varchar(length=64)
    locale = Varchar(length=8, default="zh_CN")
    care_mode = Boolean(default=False)
    is_active = Boolean(default=True)
    totp_secret = Varchar(length=64, null=True, default=None)
    totp_enabled = Boolean(default=False)
    # The last 30-second TOTP step accepted: a code is never accepted twice.
    totp_last_step = BigInt(null=True, default=None)
    failed_logins = Integer(default=0)
    locked_until = Timestamptz(null=True, default=None)
    # Real-name verification (PIPL: the raw ID number is never stored).
    real_name = Varchar(length=64, null=True, default=None)
    id_number_masked = Varchar(length=18, null=True, default=None)
    id_number_hmac = Varchar(length=64, null=True, default=None, unique=True)
    birth_date = Date(null=True, default=None)
    gender = Varchar(length=8, null=True, default=None)
    verified_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class UserSession(Table, tablename="user_sessions"):
    """Server-side sessions: listable and revocable; the cookie holds only a random token."""

    id = UUID(primary_key=True, default=UUID4())
    user = ForeignKey(references=User, null=False)
    token_hash = Varchar(length=64, unique=True, index=True)
    csrf_token = Varchar(length=64)
    mfa_passed = Boolean(default=False)
    active_tenant = UUID(null=True, default=None)
    ip = Varchar(length=64, default="")
    user_agent = Varchar(length=300, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)


class ApiToken(Table, tablename="api_tokens"):
    """Hashed bearer tokens for machines, each bound to one user and (optionally) one tenant."""

    id = UUID(primary_key=True, default=UUID4())
    user = ForeignKey(references=User, null=False)
    tenant = UUID(null=True, default=None)
    name = Varchar(length=64)
    prefix = Varchar(length=12)
    token_hash = Varchar(length=64, unique=True, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class PasswordReset(Table, tablename="password_resets"):
    id = UUID(primary_key=True, default=UUID4())
    user = ForeignKey(references=User, null=False)
    token_hash = Varchar(length=64, unique=True, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class Consent(Table, tablename="consents"):
    """A recorded consent (PIPL): which purpose, which text version, when; withdrawable."""

    id = UUID(primary_key=True, default=UUID4())
    user = ForeignKey(references=User, null=False)
    purpose = Varchar(length=64)
    text_version = Varchar(length=32)
    granted_at = Timestamptz(default=TimestamptzNow())
    withdrawn_at = Timestamptz(null=True, default=None)


class OutboxMessage(Table, tablename="outbox_messages"):
    """Mail and SMS the platform sent; the demo's mail sink and SMS log read from here."""

    id = UUID(primary_key=True, default=UUID4())
    channel = Varchar(length=8)  # email | sms
    recipient = Varchar(length=254)
    subject = Varchar(length=200)
    body = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)
