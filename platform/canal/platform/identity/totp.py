"""Two-factor authentication with TOTP (RFC 6238): set-up, confirmation, codes, disabling.

A code is accepted for the current 30-second step and one step either side (clock drift), and
never twice: the last accepted step is stored and only later steps pass.
"""

from __future__ import annotations

import hmac
import re
import uuid
from typing import TYPE_CHECKING, Literal

import pyotp
import segno

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.identity.schemas import TotpSetupOut
from canal.platform.identity.tables import User, UserSession

if TYPE_CHECKING:
    from canal.platform.identity.services import NewSession

ISSUER = "Canal 数字东昌"
STEP_SECONDS = 30
Outcome = Literal["ok", "wrong", "reused"]


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The 30-second step whose code is ``code`` (current ±1), or None."""
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int((clock.wall_timestamp() if at is None else at) // STEP_SECONDS)
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


async def consume_code(user_id: uuid.UUID, secret: str, code: str) -> Outcome:
    """Accept ``code`` once: the stored last step moves forward atomically."""
    step = matching_step(secret, code)
    if step is None:
        return "wrong"
    moved = (
        await User.update({User.totp_last_step: step})
        .where(
            (User.id == user_id) & (User.totp_last_step.is_null() | (User.totp_last_step < step))
        )
        .returning(User.id)
    )
    return "ok" if moved else "reused"


def code_error(outcome: Outcome, field: str = "code") -> CanalError:
    if outcome == "reused":
        return invalid(
            [
                FieldError(
                    field,
                    "totp_code_reused",
                    "该验证码已使用过,请等待验证器生成下一个验证码。",
                    "This code has already been used; wait for the next one.",
                )
            ]
        )
    return invalid(
        [
            FieldError(
                field,
                "totp_code_wrong",
                "验证码不正确,请输入验证器当前显示的 6 位数字。",
                "The code is wrong; enter the 6 digits your app shows now.",
            )
        ]
    )


def provisioning_uri(secret: str, account_label: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_label, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """An inline SVG QR code (no external request, allowed by the CSP)."""
    return str(
        segno.make(uri, error="m").svg_inline(scale=4, title="TOTP QR", dark="#000", light="#fff")
    )


def _label(row: dict) -> str:
    return str(row["email"] or row["phone"] or row["id"])


async def begin_setup(user_id: uuid.UUID) -> TotpSetupOut:
    """A fresh secret, kept unconfirmed until the user proves their app has it."""
    row = (
        await User.select(User.id, User.email, User.phone, User.totp_enabled, User.totp_secret)
        .where(User.id == user_id)
        .first()
    )
    if row is None:
        raise CanalError("not_found", "页面或对象不存在。", "Not found.", status=404)
    if row["totp_enabled"]:
        raise CanalError(
            "totp_already_enabled",
            "两步验证已开启。如需更换,请先关闭再重新设置。",
            "Two-factor authentication is already on; turn it off first to replace it.",
            status=409,
        )
    secret = row["totp_secret"] or pyotp.random_base32()
    if row["totp_secret"] is None:
        await User.update({User.totp_secret: secret, User.totp_last_step: None}).where(
            (User.id == user_id) & User.totp_secret.is_null()
        )
        fresh = await User.select(User.totp_secret).where(User.id == user_id).first()
        secret = fresh["totp_secret"] if fresh else secret
    uri = provisioning_uri(secret, _label(row))
    return TotpSetupOut(secret=secret, otpauth_uri=uri, qr_svg=qr_svg(uri))


async def confirm_setup(
    user_id: uuid.UUID,
    code: str,
    *,
    session_id: uuid.UUID | None,
    ip: str = "",
    user_agent: str = "",
) -> NewSession | None:
    """Turn TOTP on once a code from the new secret checks out.

    The browser session that entered the code is replaced by a new one that has passed the
    step (new token, new CSRF token), as at sign-in: a cookie captured before the code never
    becomes fully privileged. Returns the new session for the caller's cookie.
    """
    row = await User.select(User.totp_secret, User.totp_enabled).where(User.id == user_id).first()
    if row is None or row["totp_enabled"]:
        raise CanalError(
            "totp_already_enabled",
            "两步验证已开启。",
            "Two-factor authentication is already on.",
            status=409,
        )
    if not row["totp_secret"]:
        raise CanalError(
            "totp_setup_missing",
            "请先生成两步验证密钥。",
            "Start the set-up first to get a secret.",
            status=409,
        )
    async with db.transaction():
        outcome = await consume_code(user_id, row["totp_secret"], code)
        if outcome != "ok":
            raise code_error(outcome)
        await User.update({User.totp_enabled: True}).where(User.id == user_id)
        fresh = None
        if session_id is not None:
            from canal.platform.identity.services import start_session
            from canal.platform.settings import get_settings

            await UserSession.update({UserSession.revoked_at: clock.now()}).where(
                (UserSession.id == session_id) & (UserSession.user == user_id)
            )
            fresh = await start_session(
                get_settings(), user_id, ip=ip, user_agent=user_agent, mfa_passed=True
            )
        await record("auth.totp_enabled", actor_id=user_id, target=str(user_id), ip=ip)
        _forget()
    return fresh


async def disable(user_id: uuid.UUID, code: str, *, ip: str = "") -> None:
    """Turn TOTP off (a current code is required); operator staff may not."""
    from canal.platform.identity.services import is_operator_staff

    row = await User.select(User.totp_secret, User.totp_enabled).where(User.id == user_id).first()
    if row is None or not row["totp_enabled"] or not row["totp_secret"]:
        raise CanalError(
            "totp_not_enabled",
            "该账号未开启两步验证。",
            "Two-factor authentication is not turned on for this account.",
            status=409,
        )
    if await is_operator_staff(user_id):
        raise CanalError(
            "totp_required_for_staff",
            "运营方工作人员必须保持两步验证开启。",
            "Operator staff must keep two-factor authentication on.",
            status=403,
        )
    async with db.transaction():
        outcome = await consume_code(user_id, row["totp_secret"], code)
        if outcome != "ok":
            raise code_error(outcome)
        await User.update({User.totp_enabled: False, User.totp_secret: None}).where(
            User.id == user_id
        )
        await record("auth.totp_disabled", actor_id=user_id, target=str(user_id), ip=ip)
        _forget()


def _forget() -> None:
    """Clear the resolved sessions once the current transaction commits (see services)."""
    from canal.platform.http.auth import forget

    db.on_commit(forget)
