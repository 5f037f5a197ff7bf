"""What the identity API takes and gives (msgspec structs; they also shape the OpenAPI doc)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

# --- in --------------------------------------------------------------------------------


class SignupIn(msgspec.Struct, kw_only=True):
    login: str
    password: str
    display_name: str


class LoginIn(msgspec.Struct, kw_only=True):
    login: str
    password: str


class CodeIn(msgspec.Struct, kw_only=True):
    code: str


class ForgotIn(msgspec.Struct, kw_only=True):
    login: str


class ResetIn(msgspec.Struct, kw_only=True):
    token: str
    password: str


class ProfileIn(msgspec.Struct, kw_only=True):
    display_name: str
    locale: str = "zh_CN"


class PasswordChangeIn(msgspec.Struct, kw_only=True):
    current_password: str
    new_password: str


class TokenIn(msgspec.Struct, kw_only=True):
    name: str
    tenant_id: uuid.UUID | None = None
    expires_in_days: int | None = None


class RealNameIn(msgspec.Struct, kw_only=True):
    name: str
    id_number: str


# --- out -------------------------------------------------------------------------------


class AccountOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    display_name: str
    email: str | None
    phone: str | None  # masked: 138****0000
    locale: str
    totp_enabled: bool
    real_name_verified: bool
    created_at: dt.datetime


class LoginOut(msgspec.Struct, kw_only=True):
    user: AccountOut
    # "none": signed in, no second factor; "required": send the TOTP code next;
    # "setup_required": operator staff must set up TOTP before anything else.
    mfa: str
    csrf_token: str


class CsrfOut(msgspec.Struct, kw_only=True):
    csrf_token: str


class MessageOut(msgspec.Struct, kw_only=True):
    code: str
    detail: str


class MfaPassedOut(msgspec.Struct, kw_only=True):
    """The TOTP step passed: the session cookie was replaced, and with it the CSRF token."""

    code: str
    detail: str
    csrf_token: str


class SessionOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    user_agent: str
    ip: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    mfa_passed: bool
    current: bool = False


class TokenOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    prefix: str
    tenant_id: uuid.UUID | None
    tenant_name: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None


class NewTokenOut(msgspec.Struct, kw_only=True):
    token: str  # shown once; only its hash is kept
    info: TokenOut


class TotpSetupOut(msgspec.Struct, kw_only=True):
    secret: str
    otpauth_uri: str
    qr_svg: str


class SecurityOut(msgspec.Struct, kw_only=True):
    totp_enabled: bool
    totp_required: bool
    # Set when turning TOTP on replaced this browser session: the new session's CSRF token.
    csrf_token: str | None = None


class ConsentOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    purpose: str
    text_version: str
    granted_at: dt.datetime
    withdrawn_at: dt.datetime | None


class RealNameOut(msgspec.Struct, kw_only=True):
    consent_version: str
    consent_text: str
    consented: bool
    verified: bool
    name: str | None = None
    id_number_masked: str | None = None
    birth_date: dt.date | None = None
    gender: str | None = None
    verified_at: dt.datetime | None = None
