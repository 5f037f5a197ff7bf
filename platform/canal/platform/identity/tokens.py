"""API tokens: bearer credentials for machines, shown once and stored only as a hash.

A token acts as its user; bound to one organisation it works only on that organisation's
``/api/v1/t/{slug}/…`` routes (``http/tenancy.access_guard`` answers 404 elsewhere).
"""

from __future__ import annotations

import datetime as dt
import uuid

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.identity.schemas import NewTokenOut, TokenOut
from canal.platform.identity.secrets import new_api_token, token_hash
from canal.platform.identity.tables import ApiToken, User

NAME_MAX = 64
MAX_DAYS = 366
MAX_ACTIVE = 50


def _now() -> dt.datetime:
    return clock.now()


async def _tenant_names(user_id: uuid.UUID) -> dict[uuid.UUID, str]:
    from canal.tenants.services import my_tenants

    return {t.id: t.name for t in await my_tenants(user_id)}


def _out(row: dict, names: dict[uuid.UUID, str]) -> TokenOut:
    return TokenOut(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        tenant_id=row["tenant"],
        tenant_name=names.get(row["tenant"]) if row["tenant"] else None,
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
    )


async def list_tokens(user_id: uuid.UUID) -> list[TokenOut]:
    """The user's tokens that still work (not revoked, not expired), newest first."""
    now = _now()
    rows = (
        await ApiToken.select()
        .where((ApiToken.user == user_id) & ApiToken.revoked_at.is_null())
        .order_by(ApiToken.created_at, ascending=False)
    )
    names = await _tenant_names(user_id)
    return [_out(r, names) for r in rows if r["expires_at"] is None or r["expires_at"] > now]


def totp_required_for_tokens() -> CanalError:
    return CanalError(
        "totp_required_for_tokens",
        "运营方工作人员须先开启两步验证(TOTP),才能创建 API 令牌。",
        "Operator staff must turn on two-factor authentication (TOTP) before creating API tokens.",
        status=403,
    )


async def _require_totp_for_staff(user_id: uuid.UUID) -> None:
    """Operator staff sign in with TOTP; a token (which skips the second factor) may only be
    minted once theirs is on, or it would be a way round it."""
    from canal.platform.access.services import access
    from canal.platform.http.tenancy import operator_tenant

    operator = await operator_tenant()
    if operator is None or not access().roles_in(user_id, operator.id):
        return
    row = await User.select(User.totp_enabled).where(User.id == user_id).first()
    if row is None or not row["totp_enabled"]:
        raise totp_required_for_tokens()


async def create_token(
    user_id: uuid.UUID,
    name: str,
    *,
    tenant_id: uuid.UUID | None = None,
    expires_in_days: int | None = None,
    ip: str = "",
) -> NewTokenOut:
    await _require_totp_for_staff(user_id)
    errors: list[FieldError] = []
    clean = name.strip()
    if not clean or len(clean) > NAME_MAX or not clean.isprintable():
        errors.append(
            FieldError(
                "name",
                "token_name_length",
                f"令牌名称须为 1–{NAME_MAX} 个可见字符。",
                f"The token name must be 1–{NAME_MAX} visible characters.",
            )
        )
    names = await _tenant_names(user_id)
    if tenant_id is not None and tenant_id not in names:
        errors.append(
            FieldError(
                "tenant_id",
                "token_tenant_invalid",
                "只能绑定到您所属的组织。",
                "A token can only be bound to an organisation you belong to.",
            )
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        errors.append(
            FieldError(
                "expires_in_days",
                "token_expiry_range",
                f"有效期须为 1–{MAX_DAYS} 天,或留空表示长期有效。",
                f"The validity must be 1–{MAX_DAYS} days, or empty for no expiry.",
            )
        )
    if errors:
        raise invalid(errors)
    token, prefix = new_api_token()
    row = ApiToken(
        user=user_id,
        tenant=tenant_id,
        name=clean,
        prefix=prefix,
        token_hash=token_hash(token),
        expires_at=_now() + dt.timedelta(days=expires_in_days) if expires_in_days else None,
    )
    async with db.transaction():
        active = await ApiToken.count().where(
            (ApiToken.user == user_id) & ApiToken.revoked_at.is_null()
        )
        if active >= MAX_ACTIVE:
            raise CanalError(
                "token_limit",
                f"每个账号最多保留 {MAX_ACTIVE} 个有效令牌,请先撤销不用的令牌。",
                f"An account may keep at most {MAX_ACTIVE} tokens; revoke unused ones first.",
                status=409,
            )
        await row.save()
        await record(
            "token.created",
            actor_id=user_id,
            target=str(row.id),
            ip=ip,
            data={
                "name": clean,
                "prefix": prefix,
                "tenant": str(tenant_id) if tenant_id else "",
                "expires_in_days": expires_in_days,
            },
        )
    saved = await ApiToken.select().where(ApiToken.id == row.id).first()
    assert saved is not None
    return NewTokenOut(token=token, info=_out(saved, names))


async def revoke_token(user_id: uuid.UUID, token_id: uuid.UUID, *, ip: str = "") -> None:
    """Revoke one of the user's own tokens; anyone else's answers like a missing one."""
    async with db.transaction():
        done = (
            await ApiToken.update({ApiToken.revoked_at: _now()})
            .where(
                (ApiToken.id == token_id)
                & (ApiToken.user == user_id)
                & ApiToken.revoked_at.is_null()
            )
            .returning(ApiToken.id)
        )
        if not done:
            raise not_found()
        await record("token.revoked", actor_id=user_id, target=str(token_id), ip=ip)
        from canal.platform.http.auth import forget

        db.on_commit(forget)  # after the commit, or a concurrent request could re-cache it
