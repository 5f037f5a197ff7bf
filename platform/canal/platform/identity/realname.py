"""Real-name verification for residents, behind a separate consent (PIPL art. 29).

The raw ID number is never stored: only its masked form (for display) and a keyed hash (so
the same number cannot verify two accounts). Withdrawing the consent erases all of it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from asyncpg.exceptions import UniqueViolationError

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.identity import validators
from canal.platform.identity.schemas import ConsentOut, RealNameOut
from canal.platform.identity.secrets import keyed_hash
from canal.platform.identity.tables import Consent, User
from canal.platform.settings import Settings

PURPOSE_REALNAME = "realname"
REALNAME_CONSENT_V = "2026-11-v1"
REALNAME_CONSENT_ZH = (
    "为完成实名认证,数字东昌平台(Canal)将处理您的姓名和居民身份证号码。身份证号码属于敏感个人信息。"
    "处理目的:核验您的居民身份,以便办理社保卡、社区服务等须实名的业务。"
    "处理方式:平台仅保存脱敏后的号码(如 3715**********123X)、"
    "由号码计算的不可逆校验值、出生日期和性别,"
    "不保存完整号码。保存期限:至您撤回同意或注销账号为止。"
    "您可随时在“我的授权”中撤回同意,撤回后上述信息将立即删除,须实名的业务将无法继续办理。"
)
REALNAME_CONSENT_EN = (
    "To verify your real name, the Digital Dongchang platform (Canal) processes your name and "
    "resident ID number, which is sensitive personal information. Purpose: to confirm your "
    "identity for services that require it, such as the social-security card and community "
    "services. How: the platform keeps only the masked number (e.g. 3715**********123X), an "
    "irreversible check value computed from it, your birth date and gender — never the full "
    "number. How long: until you withdraw this consent or close the account. You can withdraw "
    'at any time under "My consents"; the data above is then erased at once and services that '
    "require a verified name stop working."
)
REAL_NAME_MAX = 64


def consent_text(locale: str) -> str:
    return REALNAME_CONSENT_ZH if locale.startswith("zh") else REALNAME_CONSENT_EN


def _now() -> dt.datetime:
    return clock.now()


def consent_required() -> CanalError:
    return CanalError(
        "consent_required",
        "请先阅读并同意《敏感个人信息处理告知》,再进行实名认证。",
        "First read and agree to the notice on processing sensitive personal "
        "information, then verify your real name.",
        status=409,
    )


async def active_consent(user_id: uuid.UUID, purpose: str = PURPOSE_REALNAME) -> dict | None:
    """The user's consent to the current text version, if granted and not withdrawn."""
    return (
        await Consent.select()
        .where(
            (Consent.user == user_id)
            & (Consent.purpose == purpose)
            & (Consent.text_version == REALNAME_CONSENT_V)
            & Consent.withdrawn_at.is_null()
        )
        .first()
    )


async def grant_consent(user_id: uuid.UUID, *, ip: str = "") -> ConsentOut:
    async with db.transaction():
        existing = await active_consent(user_id)
        if existing is None:
            consent = Consent(
                user=user_id, purpose=PURPOSE_REALNAME, text_version=REALNAME_CONSENT_V
            )
            await consent.save()
            await record(
                "consent.granted",
                actor_id=user_id,
                target=str(consent.id),
                ip=ip,
                data={"purpose": PURPOSE_REALNAME, "text_version": REALNAME_CONSENT_V},
            )
            existing = await Consent.select().where(Consent.id == consent.id).first()
    assert existing is not None
    return _consent_out(existing)


def _consent_out(row: dict) -> ConsentOut:
    return ConsentOut(
        id=row["id"],
        purpose=row["purpose"],
        text_version=row["text_version"],
        granted_at=row["granted_at"],
        withdrawn_at=row["withdrawn_at"],
    )


async def list_consents(user_id: uuid.UUID) -> list[ConsentOut]:
    rows = (
        await Consent.select()
        .where(Consent.user == user_id)
        .order_by(Consent.granted_at, ascending=False)
    )
    return [_consent_out(r) for r in rows]


async def status(user_id: uuid.UUID, locale: str) -> RealNameOut:
    row = (
        await User.select(
            User.real_name, User.id_number_masked, User.birth_date, User.gender, User.verified_at
        )
        .where(User.id == user_id)
        .first()
    )
    if row is None:
        raise not_found()
    return RealNameOut(
        consent_version=REALNAME_CONSENT_V,
        consent_text=consent_text(locale),
        consented=await active_consent(user_id) is not None,
        verified=row["verified_at"] is not None,
        name=row["real_name"],
        id_number_masked=row["id_number_masked"],
        birth_date=row["birth_date"],
        gender=row["gender"],
        verified_at=row["verified_at"],
    )


def _name_errors(name: str) -> list[FieldError]:
    clean = name.strip()
    if not 2 <= len(clean) <= REAL_NAME_MAX or not all(
        ch.isalpha() or ch in "·• -." for ch in clean
    ):
        return [
            FieldError(
                "name",
                "real_name_invalid",
                f"请填写身份证上的姓名(2–{REAL_NAME_MAX} 个字,只含文字、间隔号“·”或空格)。",
                f"Enter the name as on the ID card (2–{REAL_NAME_MAX} characters: "
                'letters, the middle dot "·" or spaces).',
            )
        ]
    return []


async def verify(
    settings: Settings,
    user_id: uuid.UUID,
    name: str,
    id_number: str,
    *,
    ip: str = "",
    today: dt.date | None = None,
) -> RealNameOut:
    """Check name and ID number (GB 11643) and record the verification; consent first."""
    if await active_consent(user_id) is None:
        raise consent_required()
    errors = _name_errors(name)
    parsed = None
    if len(id_number) > 40:
        id_number = id_number[:40]
    try:
        parsed = validators.parse_id_number(id_number, today=today)
    except ValueError as exc:
        errors.append(exc.args[0])
    if errors:
        raise invalid(errors)
    assert parsed is not None
    number, birth, gender = parsed
    current = await User.select(User.verified_at).where(User.id == user_id).first()
    if current is None:
        raise not_found()
    if current["verified_at"] is not None:
        raise CanalError(
            "already_verified",
            "您已完成实名认证。如需更换,请先在“我的授权”中撤回同意。",
            "Your real name is already verified; to change it, withdraw the consent "
            'under "My consents" first.',
            status=409,
        )
    masked = validators.mask_id_number(number)
    try:
        async with db.transaction():
            await User.update(
                {
                    User.real_name: name.strip(),
                    User.id_number_masked: masked,
                    User.id_number_hmac: keyed_hash(settings.secret_key, number),
                    User.birth_date: birth,
                    User.gender: gender,
                    User.verified_at: _now(),
                }
            ).where(User.id == user_id)
            await record(
                "realname.verified",
                actor_id=user_id,
                target=str(user_id),
                ip=ip,
                data={"id_number_masked": masked},
            )
    except UniqueViolationError:
        raise invalid(
            [
                FieldError(
                    "id_number",
                    "id_number_taken",
                    "该身份证号已用于其他账号的实名认证。如有疑问,请联系客服。",
                    "This ID number has already verified another account; contact support if this "
                    "is wrong.",
                )
            ]
        ) from None
    return await status(user_id, "zh_CN")


async def withdraw_consent(user_id: uuid.UUID, consent_id: uuid.UUID, *, ip: str = "") -> None:
    """Withdraw a consent; for real-name processing this erases the real-name data at once."""
    async with db.transaction():
        done = (
            await Consent.update({Consent.withdrawn_at: _now()})
            .where(
                (Consent.id == consent_id)
                & (Consent.user == user_id)
                & Consent.withdrawn_at.is_null()
            )
            .returning(Consent.purpose, Consent.text_version)
        )
        if not done:
            raise not_found()
        erased = False
        if done[0]["purpose"] == PURPOSE_REALNAME:
            await User.update(
                {
                    User.real_name: None,
                    User.id_number_masked: None,
                    User.id_number_hmac: None,
                    User.birth_date: None,
                    User.gender: None,
                    User.verified_at: None,
                }
            ).where(User.id == user_id)
            erased = True
        await record(
            "consent.withdrawn",
            actor_id=user_id,
            target=str(consent_id),
            ip=ip,
            data={
                "purpose": done[0]["purpose"],
                "text_version": done[0]["text_version"],
                "erased": erased,
            },
        )
