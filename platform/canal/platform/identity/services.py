"""Accounts and sessions: the identity operations every other part calls."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from asyncpg.exceptions import UniqueViolationError

from canal.platform import db
from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.identity import validators
from canal.platform.identity.passwords import hash_password
from canal.platform.identity.secrets import new_token, token_hash
from canal.platform.identity.tables import User, UserSession
from canal.platform.settings import Settings

PASSWORD_MIN = 10
NAME_MAX = 64


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; only its hash is stored
    session_id: uuid.UUID
    csrf_token: str


def check_password_strength(password: str) -> list[FieldError]:
    if len(password) < PASSWORD_MIN:
        return [FieldError("password", "password_too_short",
                           f"密码至少需要 {PASSWORD_MIN} 个字符。",
                           f"The password needs at least {PASSWORD_MIN} characters.")]
    if len(password) > 256:
        return [FieldError("password", "password_too_long", "密码不能超过 256 个字符。",
                           "The password may not exceed 256 characters.")]
    return []


async def create_user(login: str, password: str, display_name: str) -> uuid.UUID:
    """Create an account from a phone number or e-mail address and a password."""
    errors: list[FieldError] = []
    kind_value = validators.classify_login(login)
    if kind_value is None:
        errors.append(FieldError("login", "login_invalid",
                                 "请输入有效的手机号(11 位)或电子邮箱。",
                                 "Enter a valid mobile number (11 digits) or e-mail address."))
    errors += check_password_strength(password)
    name = display_name.strip()
    if not name or len(name) > NAME_MAX:
        errors.append(FieldError("display_name", "display_name_length",
                                 f"姓名或昵称须为 1–{NAME_MAX} 个字符。",
                                 f"The name must be 1–{NAME_MAX} characters."))
    if errors:
        raise invalid(errors)
    assert kind_value is not None
    kind, value = kind_value
    user = User(
        email=value if kind == "email" else None,
        phone=value if kind == "phone" else None,
        password_hash=hash_password(password),
        display_name=name,
    )
    try:
        async with db.transaction():
            await user.save()
    except UniqueViolationError:
        raise invalid([FieldError(
            "login", "login_taken", "该手机号或邮箱已注册,请直接登录或找回密码。",
            "This phone number or e-mail is already registered; sign in or reset the password.",
        )]) from None
    return user.id


async def find_user_by_login(login: str) -> dict | None:
    kind_value = validators.classify_login(login)
    if kind_value is None:
        return None
    kind, value = kind_value
    column = User.email if kind == "email" else User.phone
    return await User.select().where(column == value).first()


async def start_session(settings: Settings, user_id: uuid.UUID, *, ip: str = "",
                        user_agent: str = "", mfa_passed: bool = False) -> NewSession:
    token = new_token()
    csrf = new_token(24)
    session = UserSession(
        user=user_id, token_hash=token_hash(token), csrf_token=csrf, mfa_passed=mfa_passed,
        ip=ip[:64], user_agent=user_agent[:300],
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.session_days),
    )
    await session.save()
    return NewSession(token=token, session_id=session.id, csrf_token=csrf)


async def end_session(session_id: uuid.UUID) -> None:
    from canal.platform.http.auth import forget

    await UserSession.update({UserSession.revoked_at: dt.datetime.now(dt.UTC)}).where(
        UserSession.id == session_id
    )
    forget()


def account_locked() -> CanalError:
    return CanalError("account_locked", "登录失败次数过多,账号已暂时锁定,请稍后再试或找回密码。",
                      "Too many failed sign-ins: the account is locked for a while. Try later "
                      "or reset your password.", status=429)
