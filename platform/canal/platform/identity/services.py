"""Accounts, sign-in, sessions and passwords: the identity operations every other part calls.

Every function takes plain values (ids, strings, the settings), never a request, and opens its
own transaction; the audit event of a change is written in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from asyncpg.exceptions import UniqueViolationError

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.identity import throttle, validators
from canal.platform.identity.passwords import hash_password, needs_rehash, verify_password
from canal.platform.identity.schemas import AccountOut, SessionOut
from canal.platform.identity.secrets import new_token, token_hash
from canal.platform.identity.tables import (
    ApiToken,
    OutboxMessage,
    PasswordReset,
    User,
    UserSession,
)
from canal.platform.jobs.outbox import enqueue_after_commit
from canal.platform.settings import Settings

log = logging.getLogger("canal.identity")

PASSWORD_MIN = 10
PASSWORD_MAX = 256
NAME_MAX = 64
LOGIN_MAX = 254
RESET_MINUTES = 30
LOCALES = ("zh_CN", "en")


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; only its hash is stored
    session_id: uuid.UUID
    csrf_token: str


@dataclass(frozen=True)
class SignedIn:
    user_id: uuid.UUID
    session: NewSession
    # "none" | "required" (TOTP code next) | "setup_required" (operator staff without TOTP)
    mfa: str


def now() -> dt.datetime:
    return clock.now()


# --- errors ----------------------------------------------------------------------------


def login_failed() -> CanalError:
    # The same answer for "no such account" and "wrong password": no account enumeration.
    return CanalError(
        "login_failed", "账号或密码不正确。", "The account or password is incorrect.", status=401
    )


def check_password_strength(password: str, field: str = "password") -> list[FieldError]:
    if len(password) < PASSWORD_MIN:
        return [
            FieldError(
                field,
                "password_too_short",
                f"密码至少需要 {PASSWORD_MIN} 个字符。",
                f"The password needs at least {PASSWORD_MIN} characters.",
            )
        ]
    if len(password) > PASSWORD_MAX:
        return [
            FieldError(
                field,
                "password_too_long",
                f"密码不能超过 {PASSWORD_MAX} 个字符。",
                f"The password may not exceed {PASSWORD_MAX} characters.",
            )
        ]
    if password.strip() == "" or len(set(password)) < 4:
        return [
            FieldError(
                field,
                "password_too_simple",
                "密码过于简单,请使用更多不同的字符。",
                "The password is too simple; use more different characters.",
            )
        ]
    return []


def _display_name_errors(display_name: str) -> list[FieldError]:
    name = display_name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        return [
            FieldError(
                "display_name",
                "display_name_length",
                f"姓名或昵称须为 1–{NAME_MAX} 个可见字符。",
                f"The name must be 1–{NAME_MAX} visible characters.",
            )
        ]
    return []


# --- accounts --------------------------------------------------------------------------


async def create_user(login: str, password: str, display_name: str) -> uuid.UUID:
    """Create an account from a phone number or e-mail address and a password."""
    errors: list[FieldError] = []
    kind_value = validators.classify_login(login) if len(login) <= LOGIN_MAX else None
    if kind_value is None:
        errors.append(
            FieldError(
                "login",
                "login_invalid",
                "请输入有效的手机号(11 位)或电子邮箱。",
                "Enter a valid mobile number (11 digits) or e-mail address.",
            )
        )
    errors += check_password_strength(password)
    errors += _display_name_errors(display_name)
    if errors:
        raise invalid(errors)
    assert kind_value is not None
    kind, value = kind_value
    user = User(
        email=value if kind == "email" else None,
        phone=value if kind == "phone" else None,
        password_hash=hash_password(password),
        display_name=display_name.strip(),
    )
    try:
        async with db.transaction():
            await user.save()
    except UniqueViolationError:
        raise invalid(
            [
                FieldError(
                    "login",
                    "login_taken",
                    "该手机号或邮箱已注册,请直接登录或找回密码。",
                    "This phone number or e-mail is already registered; sign in or reset the "
                    "password.",
                )
            ]
        ) from None
    return user.id


async def sign_up(
    settings: Settings,
    login: str,
    password: str,
    display_name: str,
    *,
    ip: str = "",
    user_agent: str = "",
    locale: str = "zh_CN",
) -> SignedIn:
    """Create the account and sign it in, in one transaction."""
    async with db.transaction():
        user_id = await create_user(login, password, display_name)
        if locale in LOCALES:
            await User.update({User.locale: locale}).where(User.id == user_id)
        session = await start_session(settings, user_id, ip=ip, user_agent=user_agent)
        await record(
            "auth.signup",
            actor_id=user_id,
            target=str(user_id),
            ip=ip,
            data={"kind": "email" if "@" in login else "phone"},
        )
    return SignedIn(user_id, session, "none")


async def find_user_by_login(login: str) -> dict | None:
    if len(login) > LOGIN_MAX:
        return None
    kind_value = validators.classify_login(login)
    if kind_value is None:
        return None
    kind, value = kind_value
    column = User.email if kind == "email" else User.phone
    return await User.select().where(column == value).first()


async def get_user(user_id: uuid.UUID) -> dict[str, Any]:
    row = await User.select().where(User.id == user_id).first()
    if row is None:
        raise not_found()
    return row


def account_out(row: dict[str, Any]) -> AccountOut:
    return AccountOut(
        id=row["id"],
        display_name=row["display_name"],
        email=row["email"],
        phone=validators.mask_phone(row["phone"]) if row["phone"] else None,
        locale=row["locale"],
        totp_enabled=row["totp_enabled"],
        real_name_verified=row["verified_at"] is not None,
        created_at=row["created_at"],
    )


async def get_account(user_id: uuid.UUID) -> AccountOut:
    return account_out(await get_user(user_id))


async def is_operator_staff(user_id: uuid.UUID) -> bool:
    """Anyone holding a role in the operator tenant (they must use TOTP)."""
    from canal.platform.access.services import access
    from canal.platform.http.tenancy import operator_tenant

    operator = await operator_tenant()
    return bool(operator and access().roles_in(user_id, operator.id))


async def update_profile(
    user_id: uuid.UUID, display_name: str, locale: str, *, ip: str = ""
) -> AccountOut:
    errors = _display_name_errors(display_name)
    if locale not in LOCALES:
        errors.append(
            FieldError(
                "locale", "locale_invalid", "请选择中文或英文。", "Choose Chinese or English."
            )
        )
    if errors:
        raise invalid(errors)
    async with db.transaction():
        await User.update({User.display_name: display_name.strip(), User.locale: locale}).where(
            User.id == user_id
        )
        await record(
            "account.updated", actor_id=user_id, target=str(user_id), ip=ip, data={"locale": locale}
        )
        _forget_principals()
    return await get_account(user_id)


# --- sign-in and lockout ---------------------------------------------------------------


async def _record_failure(
    settings: Settings,
    user_id: uuid.UUID,
    *,
    ip: str,
    reason: str,
    session_id: uuid.UUID | None = None,
) -> None:
    """Count one failed attempt (``throttle``): by the account at this address, by the
    address, and by the account everywhere. When it starts a wait, the half-signed-in or
    guessing session ends and the answer says how long to wait (429 ``login_throttled``)."""
    moment = now()
    wait = await throttle.count_failure(
        user_id, ip, threshold=settings.lockout_threshold, cap_seconds=settings.lockout_minutes * 60
    )
    async with db.transaction():
        rows = (
            await User.update({User.failed_logins: User.failed_logins + 1})
            .where(User.id == user_id)
            .returning(User.failed_logins)
        )
        count = rows[0]["failed_logins"] if rows else 0
        await record(
            "auth.login_failed",
            actor_id=user_id,
            target=str(user_id),
            ip=ip,
            data={"reason": reason, "consecutive": count},
        )
        everywhere = throttle.wait_after(
            count, throttle.ACCOUNT_THRESHOLD, throttle.ACCOUNT_CAP_SECONDS
        )
        if everywhere:
            await User.update({User.locked_until: moment + dt.timedelta(seconds=everywhere)}).where(
                User.id == user_id
            )
        wait = max(wait, everywhere)
        if wait:
            if session_id is not None:
                await UserSession.update({UserSession.revoked_at: moment}).where(
                    UserSession.id == session_id
                )
                _forget_principals()
            await record(
                "auth.throttled",
                actor_id=user_id,
                target=str(user_id),
                ip=ip,
                data={"seconds": int(wait), "after": count, "reason": reason},
            )
    if wait:
        raise throttle.throttled(wait)


async def _refuse_while_throttled(
    row: dict[str, Any], ip: str, *, session_id: uuid.UUID | None = None
) -> None:
    """An attempt during a wait is refused before the password or code is looked at."""
    wait = await throttle.remaining(row["id"], ip)
    if row["locked_until"] is not None:
        wait = max(wait, (row["locked_until"] - now()).total_seconds())
    if wait <= 0:
        return
    async with db.transaction():
        await record(
            "auth.login_failed",
            actor_id=row["id"],
            target=str(row["id"]),
            ip=ip,
            data={"reason": "throttled"},
        )
    if session_id is not None:
        await end_session(session_id)
    raise throttle.throttled(wait)


async def sign_in(
    settings: Settings,
    login: str,
    password: str,
    *,
    ip: str = "",
    user_agent: str = "",
    replaces: uuid.UUID | None = None,
) -> SignedIn:
    """Check the password (throttled: ``throttle``) and start a new session; ``replaces`` is
    ended."""
    row = await find_user_by_login(login)
    if row is None or not row["is_active"]:
        if await throttle.remaining(None, ip) > 0:
            raise throttle.throttled(await throttle.remaining(None, ip))
        verify_password(None, password[:PASSWORD_MAX])  # same time as a wrong password
        async with db.transaction():
            await record(
                "auth.login_failed",
                actor_id=row["id"] if row else None,
                ip=ip,
                data={"reason": "inactive" if row else "unknown_account"},
            )
        # An unknown account counts for the address only (and says nothing about accounts).
        wait = await throttle.count_failure(
            None,
            ip,
            threshold=settings.lockout_threshold,
            cap_seconds=settings.lockout_minutes * 60,
        )
        if wait:
            raise throttle.throttled(wait)
        raise login_failed()
    user_id = row["id"]
    await _refuse_while_throttled(row, ip)
    if len(password) > PASSWORD_MAX or not verify_password(row["password_hash"], password):
        await _record_failure(settings, user_id, ip=ip, reason="password")
        raise login_failed()
    staff = await is_operator_staff(user_id)
    mfa = "required" if row["totp_enabled"] else ("setup_required" if staff else "none")
    async with db.transaction():
        changes: dict[Any, Any] = {User.failed_logins: 0, User.locked_until: None}
        if needs_rehash(row["password_hash"]):
            changes[User.password_hash] = hash_password(password)
        await User.update(changes).where(User.id == user_id)
        if replaces is not None:
            await UserSession.update({UserSession.revoked_at: now()}).where(
                UserSession.id == replaces
            )
            _forget_principals()
        session = await start_session(settings, user_id, ip=ip, user_agent=user_agent)
        await record(
            "auth.login", actor_id=user_id, target=str(session.session_id), ip=ip, data={"mfa": mfa}
        )
    await throttle.forget_success(user_id, ip)
    return SignedIn(user_id, session, mfa)


def session_required() -> CanalError:
    return CanalError(
        "session_required",
        "请先使用密码登录。",
        "Sign in with your password first.",
        status=401,
    )


async def pass_second_factor(
    settings: Settings,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    code: str,
    *,
    ip: str = "",
    user_agent: str = "",
) -> NewSession:
    """Second sign-in step: a valid, unused TOTP code replaces the half-signed-in session.

    The pending session is revoked and a new one with ``mfa_passed=True`` (new token, new CSRF
    token) is started in the same transaction: a token captured before the code was entered
    never becomes fully privileged. The caller puts the new token in the cookie.
    """
    from canal.platform.identity import totp

    row = await get_user(user_id)
    if not row["totp_enabled"] or not row["totp_secret"]:
        raise CanalError(
            "totp_not_enabled",
            "该账号未开启两步验证。",
            "Two-factor authentication is not turned on for this account.",
            status=409,
        )
    await _refuse_while_throttled(row, ip, session_id=session_id)
    outcome = await totp.consume_code(user_id, row["totp_secret"], code)
    if outcome != "ok":
        await _record_failure(
            settings, user_id, ip=ip, reason=f"totp_{outcome}", session_id=session_id
        )
        raise totp.code_error(outcome)
    async with db.transaction():
        # Conditional: of two concurrent submissions only one turns the pending session into
        # a new one; a session revoked meanwhile (sign-out, lockout) is not revived.
        pending = (
            await UserSession.update({UserSession.revoked_at: now()})
            .where(
                (UserSession.id == session_id)
                & (UserSession.user == user_id)
                & UserSession.revoked_at.is_null()
                & (UserSession.expires_at > now())
            )
            .returning(UserSession.user_agent)
        )
        if not pending:
            raise session_required()
        await User.update({User.failed_logins: 0, User.locked_until: None}).where(
            User.id == user_id
        )
        session = await start_session(
            settings,
            user_id,
            ip=ip,
            user_agent=user_agent or pending[0]["user_agent"],
            mfa_passed=True,
        )
        await record(
            "auth.mfa_passed",
            actor_id=user_id,
            target=str(session.session_id),
            ip=ip,
            data={"replaces": str(session_id)},
        )
        _forget_principals()
    await throttle.forget_success(user_id, ip)
    return session


# --- sessions --------------------------------------------------------------------------


async def start_session(
    settings: Settings,
    user_id: uuid.UUID,
    *,
    ip: str = "",
    user_agent: str = "",
    mfa_passed: bool = False,
) -> NewSession:
    token = new_token()
    csrf = new_token(24)
    session = UserSession(
        user=user_id,
        token_hash=token_hash(token),
        csrf_token=csrf,
        mfa_passed=mfa_passed,
        ip=ip[:64],
        user_agent=user_agent[:300],
        expires_at=now() + dt.timedelta(days=settings.session_days),
    )
    await session.save()
    return NewSession(token=token, session_id=session.id, csrf_token=csrf)


def _forget_principals() -> None:
    """Drop the resolved sessions and tokens once the current transaction commits.

    Not before: a concurrent request could otherwise look the row up again while it is still
    unchanged for everyone else and cache it for another 15 s. Outside a transaction (the
    change was autocommitted) the cache is cleared at once.
    """
    from canal.platform.http.auth import forget

    db.on_commit(forget)


async def session_live(session_id: uuid.UUID) -> bool:
    row = (
        await UserSession.select(UserSession.id)
        .where((UserSession.id == session_id) & UserSession.revoked_at.is_null())
        .first()
    )
    return row is not None


async def end_session(session_id: uuid.UUID) -> None:
    async with db.transaction():
        await UserSession.update({UserSession.revoked_at: now()}).where(
            UserSession.id == session_id
        )
        _forget_principals()


async def sign_out(user_id: uuid.UUID, session_id: uuid.UUID, *, ip: str = "") -> None:
    async with db.transaction():
        await UserSession.update({UserSession.revoked_at: now()}).where(
            (UserSession.id == session_id) & (UserSession.user == user_id)
        )
        await record("auth.logout", actor_id=user_id, target=str(session_id), ip=ip)
        _forget_principals()


async def list_sessions(user_id: uuid.UUID, current: uuid.UUID | None = None) -> list[SessionOut]:
    rows = (
        await UserSession.select(
            UserSession.id,
            UserSession.user_agent,
            UserSession.ip,
            UserSession.created_at,
            UserSession.last_seen_at,
            UserSession.expires_at,
            UserSession.mfa_passed,
        )
        .where(
            (UserSession.user == user_id)
            & UserSession.revoked_at.is_null()
            & (UserSession.expires_at > now())
        )
        .order_by(UserSession.last_seen_at, ascending=False)
    )
    return [SessionOut(**r, current=r["id"] == current) for r in rows]


async def revoke_session(user_id: uuid.UUID, session_id: uuid.UUID, *, ip: str = "") -> None:
    """End one of the user's own sessions; anyone else's answers like a missing one."""
    async with db.transaction():
        done = (
            await UserSession.update({UserSession.revoked_at: now()})
            .where(
                (UserSession.id == session_id)
                & (UserSession.user == user_id)
                & UserSession.revoked_at.is_null()
            )
            .returning(UserSession.id)
        )
        if not done:
            raise not_found()
        await record("session.revoked", actor_id=user_id, target=str(session_id), ip=ip)
        _forget_principals()


async def revoke_other_sessions(
    user_id: uuid.UUID, keep: uuid.UUID | None, *, ip: str = "", reason: str = "user"
) -> int:
    """End every session of the user except ``keep``; returns how many were ended."""
    async with db.transaction():
        condition = (UserSession.user == user_id) & UserSession.revoked_at.is_null()
        if keep is not None:
            condition = condition & (UserSession.id != keep)
        done = (
            await UserSession.update({UserSession.revoked_at: now()})
            .where(condition)
            .returning(UserSession.id)
        )
        if done:
            await record(
                "session.revoked",
                actor_id=user_id,
                target=str(user_id),
                ip=ip,
                data={"count": len(done), "reason": reason, "kept": str(keep) if keep else ""},
            )
            _forget_principals()
    return len(done)


async def revoke_all_tokens(user_id: uuid.UUID, *, ip: str = "", reason: str = "user") -> int:
    """Revoke every live API token of the user; returns how many were revoked."""
    async with db.transaction():
        done = (
            await ApiToken.update({ApiToken.revoked_at: now()})
            .where((ApiToken.user == user_id) & ApiToken.revoked_at.is_null())
            .returning(ApiToken.id)
        )
        if done:
            await record(
                "token.revoked",
                actor_id=user_id,
                target=str(user_id),
                ip=ip,
                data={"count": len(done), "reason": reason},
            )
            _forget_principals()
    return len(done)


# --- passwords -------------------------------------------------------------------------


async def change_password(
    settings: Settings,
    user_id: uuid.UUID,
    current_password: str,
    new_password: str,
    *,
    keep_session: uuid.UUID | None,
    ip: str = "",
) -> int:
    """Change the password (the current one is required); other sessions are ended and every
    API token is revoked.

    Tokens go too: a password change is what a person does when they fear the account was
    taken over, and a token minted by an intruder would otherwise outlive it. Tokens are
    cheap to mint again from the signed-in browser that made the change.

    A wrong current password counts like a wrong one at sign-in (``throttle``): whoever holds
    a stolen session cannot guess the password here unthrottled; when a wait starts, this
    session ends.
    """
    row = await get_user(user_id)
    # A wait someone else started (e.g. many addresses against the account) refuses, but only
    # this session's own failures end it.
    await _refuse_while_throttled(row, ip)
    errors: list[FieldError] = []
    if len(current_password) > PASSWORD_MAX or not verify_password(
        row["password_hash"], current_password
    ):
        await _record_failure(
            settings, user_id, ip=ip, reason="password_change", session_id=keep_session
        )
        errors.append(
            FieldError(
                "current_password",
                "password_wrong",
                "当前密码不正确。",
                "The current password is incorrect.",
            )
        )
    errors += check_password_strength(new_password, "new_password")
    if not errors and new_password == current_password:
        errors.append(
            FieldError(
                "new_password",
                "password_unchanged",
                "新密码不能与当前密码相同。",
                "The new password must differ from the current one.",
            )
        )
    if errors:
        raise invalid(errors)
    async with db.transaction():
        await User.update({User.password_hash: hash_password(new_password)}).where(
            User.id == user_id
        )
        await record("auth.password_changed", actor_id=user_id, target=str(user_id), ip=ip)
        ended = await revoke_other_sessions(user_id, keep_session, ip=ip, reason="password_changed")
        await revoke_all_tokens(user_id, ip=ip, reason="password_changed")
    return ended


def reset_link_invalid() -> CanalError:
    return CanalError(
        "reset_link_invalid",
        "该重置链接无效或已被使用,请重新申请找回密码。",
        "This reset link is invalid or has already been used; request a new one.",
        status=400,
    )


def reset_link_expired() -> CanalError:
    return CanalError(
        "reset_link_expired",
        f"该重置链接已过期(有效期 {RESET_MINUTES} 分钟),请重新申请找回密码。",
        f"This reset link has expired (links are valid for {RESET_MINUTES} minutes); request "
        "a new one.",
        status=400,
    )


async def request_password_reset(
    settings: Settings, login: str, *, ip: str = ""
) -> uuid.UUID | None:
    """Write a one-time link to the outbox if the account exists.

    The message and its delivery job are committed together (the job outbox pushes it to the
    worker). Returns the outbox message id or None; the caller answers the same either way,
    so nobody learns whether an account exists.
    """
    row = await find_user_by_login(login)
    if row is None or not row["is_active"]:
        return None
    token = new_token()
    link = f"{settings.base_url.rstrip('/')}/password/reset/{token}"
    zh = row["locale"] != "en"
    subject = "数字东昌:重置密码" if zh else "Digital Dongchang: reset your password"
    body = (
        f"您好,{row['display_name']}:\n"
        f"请在 {RESET_MINUTES} 分钟内打开以下链接设置新密码(仅可使用一次):\n"
        f"{link}\n如果不是您本人操作,请忽略本消息。"
        if zh
        else f"Hello {row['display_name']},\nopen this link within {RESET_MINUTES} minutes "
        f"to set a "
        f"new password (it works once):\n{link}\nIf you did not ask for this, ignore this message."
    )
    message = OutboxMessage(
        channel="email" if row["email"] else "sms",
        recipient=row["email"] or row["phone"],
        subject=subject,
        body=body,
    )
    async with db.transaction():
        await PasswordReset.insert(
            PasswordReset(
                user=row["id"],
                token_hash=token_hash(token),
                expires_at=now() + dt.timedelta(minutes=RESET_MINUTES),
            )
        )
        await message.save()
        await enqueue_after_commit("deliver_message", str(message.id), key=f"deliver:{message.id}")
        await record(
            "auth.password_reset_requested",
            actor_id=row["id"],
            target=str(row["id"]),
            ip=ip,
            data={"channel": message.channel},
        )
    return message.id


async def check_reset_token(token: str) -> dict[str, Any]:
    """The unused, unexpired reset row for ``token``; otherwise a clear refusal."""
    if not token or len(token) > 200:
        raise reset_link_invalid()
    row = await PasswordReset.select().where(PasswordReset.token_hash == token_hash(token)).first()
    if row is None or row["used_at"] is not None:
        raise reset_link_invalid()
    if row["expires_at"] <= now():
        raise reset_link_expired()
    return row


async def reset_password(token: str, new_password: str, *, ip: str = "") -> uuid.UUID:
    """Use a reset link once: set the password, unlock, end every session, revoke every API
    token (the caches are cleared after the commit)."""
    row = await check_reset_token(token)
    errors = check_password_strength(new_password)
    if errors:
        raise invalid(errors)
    user_id = row["user"]
    async with db.transaction():
        claimed = (
            await PasswordReset.update({PasswordReset.used_at: now()})
            .where((PasswordReset.id == row["id"]) & PasswordReset.used_at.is_null())
            .returning(PasswordReset.id)
        )
        if not claimed:  # a concurrent request used it first
            raise reset_link_invalid()
        # Every other outstanding link of this account stops working too.
        await PasswordReset.update({PasswordReset.used_at: now()}).where(
            (PasswordReset.user == user_id) & PasswordReset.used_at.is_null()
        )
        await User.update(
            {
                User.password_hash: hash_password(new_password),
                User.failed_logins: 0,
                User.locked_until: None,
            }
        ).where(User.id == user_id)
        await record("auth.password_reset", actor_id=user_id, target=str(user_id), ip=ip)
        await revoke_other_sessions(user_id, None, ip=ip, reason="password_reset")
        await revoke_all_tokens(user_id, ip=ip, reason="password_reset")
    await throttle.forget_account(user_id)
    return user_id
