"""The signed-in person's own account: profile, password, TOTP, sessions, API tokens, real
name and consents — each page with its JSON twin under ``/api/v1/account/…``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, JSONBody

from canal.platform import clock
from canal.platform.http.context import Principal
from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.http.tenancy import current_principal, mfa_required
from canal.platform.identity import realname, services, tokens, totp
from canal.platform.identity.controllers import (
    clear_session_cookie,
    client_ip,
    error_list,
    flash_from_query,
    form_values,
    set_session_cookie,
    settings_of,
    t,
)
from canal.platform.identity.schemas import (
    AccountOut,
    CodeIn,
    ConsentOut,
    MessageOut,
    NewTokenOut,
    PasswordChangeIn,
    ProfileIn,
    RealNameIn,
    RealNameOut,
    SecurityOut,
    SessionOut,
    TokenIn,
    TokenOut,
    TotpSetupOut,
)
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

TAGS = ["account"]


# --- guards ----------------------------------------------------------------------------


async def full_session(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A session whose owner has TOTP on must have passed it before touching the account."""
    user = connection.scope.get("user")
    if (
        isinstance(user, Principal)
        and user.via == "session"
        and user.totp_enabled
        and not user.mfa_passed
    ):
        raise mfa_required()


async def session_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Credentials are managed by the person in a browser, never by an API token (a token
    that could mint tokens or turn off TOTP would outlive its own revocation)."""
    user = connection.scope.get("user")
    if isinstance(user, Principal) and user.via != "session":
        raise CanalError(
            "session_required",
            "此操作只能在登录后的浏览器中进行,不能使用 API 令牌。",
            "This can only be done in a signed-in browser, not with an API token.",
            status=403,
        )


USER = {"access": "user"}
GUARDS = [full_session]
SESSION_GUARDS = [full_session, session_only]


# --- view helpers ----------------------------------------------------------------------


def when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return clock.local(value).strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def describe_agent(agent: str) -> str:
    """A short, human name for a user agent: "Chrome · Windows"."""
    text = agent.lower()
    browser = next(
        (
            name
            for key, name in (
                ("micromessenger", "WeChat"),
                ("edg/", "Edge"),
                ("firefox/", "Firefox"),
                ("chrome/", "Chrome"),
                ("safari/", "Safari"),
                ("curl/", "curl"),
                ("python-httpx", "httpx"),
                ("python", "Python"),
            )
            if key in text
        ),
        "",
    )
    system = next(
        (
            name
            for key, name in (
                ("android", "Android"),
                ("iphone", "iPhone"),
                ("ipad", "iPad"),
                ("windows", "Windows"),
                ("mac os", "macOS"),
                ("harmonyos", "HarmonyOS"),
                ("linux", "Linux"),
            )
            if key in text
        ),
        "",
    )
    return " · ".join(p for p in (browser, system) if p) or (agent[:60] if agent else "")


def view(extra: dict[str, Any]) -> dict[str, Any]:
    return {"when": when, "describe_agent": describe_agent, **extra}


ACCOUNT_FLASHES = {
    "profile_saved": "Your profile has been saved.",
    "password_changed": (
        "Your password has been changed; other devices have been signed out and your API "
        "tokens revoked."
    ),
    "totp_enabled": "Two-factor authentication is on.",
    "totp_disabled": "Two-factor authentication is off.",
    "session_revoked": "The session has been signed out.",
    "sessions_revoked": "All other sessions have been signed out.",
    "token_revoked": "The token has been revoked.",
    "consented": "Thank you. You can now verify your real name.",
    "verified": "Your real name has been verified.",
    "consent_withdrawn": "The consent has been withdrawn and the related data erased.",
}


def _me(request: Request[Any, Any, Any]) -> Principal:
    return current_principal(request)


# --- overview, profile, password -------------------------------------------------------


async def _account_page(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    profile_errors: list | None = None,
    password_errors: list | None = None,
    values: dict | None = None,
) -> Response[str]:
    me = _me(request)
    account = await services.get_account(me.user_id)
    flash_from_query(request, ACCOUNT_FLASHES)
    return page(
        request,
        "identity/account.html",
        view(
            {
                "account": account,
                "values": values
                or {"display_name": account.display_name, "locale": account.locale},
                "profile_errors": profile_errors or [],
                "password_errors": password_errors or [],
            }
        ),
        status=status,
    )


@get("/account", opt=USER, guards=GUARDS, include_in_schema=False)
async def account_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _account_page(request)


@post("/account/profile", opt=USER, guards=GUARDS, include_in_schema=False)
async def profile_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "display_name", "locale")
    try:
        await services.update_profile(
            _me(request).user_id, values["display_name"], values["locale"], ip=client_ip(request)
        )
    except CanalError as error:
        return await _account_page(
            request, status=error.status, values=values, profile_errors=error_list(request, error)
        )
    request.scope.setdefault("state", {}).pop("locale", None)
    return redirect(request, "/account?done=profile_saved")


@post("/account/password", opt=USER, guards=SESSION_GUARDS, include_in_schema=False)
async def password_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "current_password", "new_password")
    me = _me(request)
    try:
        await services.change_password(
            settings_of(request),
            me.user_id,
            values["current_password"],
            values["new_password"],
            keep_session=me.session_id,
            ip=client_ip(request),
        )
    except CanalError as error:
        # Too many wrong passwords in this session: it has ended; back to signing in.
        if error.code == "login_throttled" and not (
            me.session_id and await services.session_live(me.session_id)
        ):
            response = page(
                request,
                "identity/login.html",
                {"values": {}, "errors": error_list(request, error), "next": "/account"},
                status=error.status,
            )
            clear_session_cookie(response, settings_of(request))
            return response
        return await _account_page(
            request, status=error.status, password_errors=error_list(request, error)
        )
    return redirect(request, "/account?done=password_changed")


@get("/api/v1/account", opt=USER, guards=GUARDS, tags=TAGS, summary="My account")
async def api_account(request: Request[Any, Any, Any]) -> AccountOut:
    return await services.get_account(_me(request).user_id)


@post(
    "/api/v1/account/profile",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Change display name and language",
)
async def api_profile(request: Request[Any, Any, Any], data: JSONBody[ProfileIn]) -> AccountOut:
    """``locale`` is ``zh_CN`` or ``en``."""
    return await services.update_profile(
        _me(request).user_id, data.display_name, data.locale, ip=client_ip(request)
    )


@post(
    "/api/v1/account/password",
    opt=USER,
    guards=SESSION_GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Change password (ends other sessions)",
)
async def api_password(
    request: Request[Any, Any, Any], data: JSONBody[PasswordChangeIn]
) -> MessageOut:
    me = _me(request)
    await services.change_password(
        settings_of(request),
        me.user_id,
        data.current_password,
        data.new_password,
        keep_session=me.session_id,
        ip=client_ip(request),
    )
    return MessageOut(
        code="password_changed", detail=t(request, ACCOUNT_FLASHES["password_changed"])
    )


# --- two-factor authentication ---------------------------------------------------------


async def _security_page(
    request: Request[Any, Any, Any], *, status: int = 200, errors: list | None = None
) -> Response[str]:
    me = _me(request)
    account = await services.get_account(me.user_id)
    staff = await services.is_operator_staff(me.user_id)
    setup = None if account.totp_enabled else await totp.begin_setup(me.user_id)
    flash_from_query(request, ACCOUNT_FLASHES)
    return page(
        request,
        "identity/security.html",
        view(
            {
                "account": account,
                "staff": staff,
                "setup": setup,
                "errors": errors or [],
                "required": staff and not account.totp_enabled,
            }
        ),
        status=status,
    )


@get("/account/security", opt=USER, guards=SESSION_GUARDS, include_in_schema=False)
async def security_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _security_page(request)


@post("/account/security/totp/confirm", opt=USER, guards=SESSION_GUARDS, include_in_schema=False)
async def totp_confirm_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "code")
    me = _me(request)
    try:
        fresh = await totp.confirm_setup(
            me.user_id,
            values["code"],
            session_id=me.session_id,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
        )
    except CanalError as error:
        return await _security_page(request, status=error.status, errors=error_list(request, error))
    response = redirect(request, "/account/security?done=totp_enabled")
    if fresh is not None:
        set_session_cookie(response, settings_of(request), fresh.token)
    return response


@post("/account/security/totp/disable", opt=USER, guards=SESSION_GUARDS, include_in_schema=False)
async def totp_disable_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "code")
    try:
        await totp.disable(_me(request).user_id, values["code"], ip=client_ip(request))
    except CanalError as error:
        return await _security_page(request, status=error.status, errors=error_list(request, error))
    return redirect(request, "/account/security?done=totp_disabled")


@get("/api/v1/account/security", opt=USER, guards=GUARDS, tags=TAGS, summary="Two-factor status")
async def api_security(request: Request[Any, Any, Any]) -> SecurityOut:
    me = _me(request)
    account = await services.get_account(me.user_id)
    staff = await services.is_operator_staff(me.user_id)
    return SecurityOut(
        totp_enabled=account.totp_enabled, totp_required=staff and not account.totp_enabled
    )


@post(
    "/api/v1/account/security/totp/setup",
    opt=USER,
    guards=SESSION_GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Start TOTP set-up: a secret and its QR code",
)
async def api_totp_setup(request: Request[Any, Any, Any]) -> TotpSetupOut:
    return await totp.begin_setup(_me(request).user_id)


@post(
    "/api/v1/account/security/totp/confirm",
    opt=USER,
    guards=SESSION_GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Turn TOTP on with a code from the new secret",
)
async def api_totp_confirm(
    request: Request[Any, Any, Any], data: JSONBody[CodeIn]
) -> Response[SecurityOut]:
    me = _me(request)
    fresh = await totp.confirm_setup(
        me.user_id,
        data.code,
        session_id=me.session_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    body = SecurityOut(
        totp_enabled=True, totp_required=False, csrf_token=fresh.csrf_token if fresh else None
    )
    response = Response(body)
    if fresh is not None:
        set_session_cookie(response, settings_of(request), fresh.token)
    return response


@post(
    "/api/v1/account/security/totp/disable",
    opt=USER,
    guards=SESSION_GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Turn TOTP off (needs a current code)",
)
async def api_totp_disable(request: Request[Any, Any, Any], data: JSONBody[CodeIn]) -> SecurityOut:
    await totp.disable(_me(request).user_id, data.code, ip=client_ip(request))
    return SecurityOut(totp_enabled=False, totp_required=False)


# --- sessions --------------------------------------------------------------------------


@get("/account/sessions", opt=USER, guards=GUARDS, include_in_schema=False)
async def sessions_page(request: Request[Any, Any, Any]) -> Response[str]:
    me = _me(request)
    flash_from_query(request, ACCOUNT_FLASHES)
    return page(
        request,
        "identity/sessions.html",
        view(
            {
                "sessions": await services.list_sessions(me.user_id, me.session_id),
            }
        ),
    )


@post(
    "/account/sessions/{session_id:uuid}/revoke", opt=USER, guards=GUARDS, include_in_schema=False
)
async def session_revoke_submit(
    request: Request[Any, Any, Any], session_id: FromPath[uuid.UUID]
) -> Response[Any]:
    me = _me(request)
    await services.revoke_session(me.user_id, session_id, ip=client_ip(request))
    if session_id == me.session_id:
        response = redirect(request, "/login?done=signed_out")
        clear_session_cookie(response, settings_of(request))
        return response
    return redirect(request, "/account/sessions?done=session_revoked")


@post("/account/sessions/revoke-others", opt=USER, guards=GUARDS, include_in_schema=False)
async def sessions_revoke_others_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    me = _me(request)
    await services.revoke_other_sessions(me.user_id, me.session_id, ip=client_ip(request))
    return redirect(request, "/account/sessions?done=sessions_revoked")


@get("/api/v1/account/sessions", opt=USER, guards=GUARDS, tags=TAGS, summary="My active sessions")
async def api_sessions(request: Request[Any, Any, Any]) -> list[SessionOut]:
    me = _me(request)
    return await services.list_sessions(me.user_id, me.session_id)


@post(
    "/api/v1/account/sessions/{session_id:uuid}/revoke",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Sign out one of my sessions",
)
async def api_session_revoke(
    request: Request[Any, Any, Any], session_id: FromPath[uuid.UUID]
) -> MessageOut:
    """Another person's session id answers 404, like a missing one."""
    await services.revoke_session(_me(request).user_id, session_id, ip=client_ip(request))
    return MessageOut(code="session_revoked", detail=t(request, ACCOUNT_FLASHES["session_revoked"]))


@post(
    "/api/v1/account/sessions/revoke-others",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Sign out all my other sessions",
)
async def api_sessions_revoke_others(request: Request[Any, Any, Any]) -> MessageOut:
    me = _me(request)
    await services.revoke_other_sessions(me.user_id, me.session_id, ip=client_ip(request))
    return MessageOut(
        code="sessions_revoked", detail=t(request, ACCOUNT_FLASHES["sessions_revoked"])
    )


# --- API tokens ------------------------------------------------------------------------


async def _tokens_page(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    errors: list | None = None,
    values: dict | None = None,
    new_token: NewTokenOut | None = None,
) -> Response[str]:
    from canal.tenants.services import my_tenants

    me = _me(request)
    flash_from_query(request, ACCOUNT_FLASHES)
    return page(
        request,
        "identity/tokens.html",
        view(
            {
                "tokens": await tokens.list_tokens(me.user_id),
                "tenants": await my_tenants(me.user_id),
                "errors": errors or [],
                "values": values or {},
                "new_token": new_token,
            }
        ),
        status=status,
    )


def _parse_token_form(values: dict[str, str]) -> tuple[uuid.UUID | None, int | None]:
    errors: list[FieldError] = []
    tenant_id = days = None
    if values["tenant_id"].strip():
        try:
            tenant_id = uuid.UUID(values["tenant_id"].strip())
        except ValueError:
            errors.append(
                FieldError(
                    "tenant_id",
                    "token_tenant_invalid",
                    "只能绑定到您所属的组织。",
                    "A token can only be bound to an organisation you belong to.",
                )
            )
    if values["expires_in_days"].strip():
        text = values["expires_in_days"].strip()
        # ASCII digits only: "²".isdigit() is true, but int("²") raises.
        if text.isascii() and text.isdigit() and len(text) <= 4:
            days = int(text)
        else:
            errors.append(
                FieldError(
                    "expires_in_days",
                    "token_expiry_range",
                    f"有效期须为 1–{tokens.MAX_DAYS} 天,或留空表示长期有效。",
                    f"The validity must be 1–{tokens.MAX_DAYS} days, or empty for no expiry.",
                )
            )
    if errors:
        raise invalid(errors)
    return tenant_id, days


@get("/account/tokens", opt=USER, guards=GUARDS, include_in_schema=False)
async def tokens_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _tokens_page(request)


@post("/account/tokens", opt=USER, guards=SESSION_GUARDS, include_in_schema=False)
async def token_create_submit(request: Request[Any, Any, Any]) -> Response[str]:
    values = await form_values(request, "name", "tenant_id", "expires_in_days")
    try:
        tenant_id, days = _parse_token_form(values)
        created = await tokens.create_token(
            _me(request).user_id,
            values["name"],
            tenant_id=tenant_id,
            expires_in_days=days,
            ip=client_ip(request),
        )
    except CanalError as error:
        return await _tokens_page(
            request, status=error.status, values=values, errors=error_list(request, error)
        )
    return await _tokens_page(request, status=201, new_token=created)


@post("/account/tokens/{token_id:uuid}/revoke", opt=USER, guards=GUARDS, include_in_schema=False)
async def token_revoke_submit(
    request: Request[Any, Any, Any], token_id: FromPath[uuid.UUID]
) -> Response[Any]:
    await tokens.revoke_token(_me(request).user_id, token_id, ip=client_ip(request))
    return redirect(request, "/account/tokens?done=token_revoked")


@get("/api/v1/account/tokens", opt=USER, guards=GUARDS, tags=TAGS, summary="My API tokens")
async def api_tokens(request: Request[Any, Any, Any]) -> list[TokenOut]:
    return await tokens.list_tokens(_me(request).user_id)


@post(
    "/api/v1/account/tokens",
    opt=USER,
    guards=SESSION_GUARDS,
    tags=TAGS,
    status_code=201,
    summary="Create an API token (shown once)",
)
async def api_token_create(request: Request[Any, Any, Any], data: JSONBody[TokenIn]) -> NewTokenOut:
    """``tenant_id`` binds the token to one of my organisations; ``expires_in_days`` 1–366 or
    null. The ``token`` (``cnl_…``) is in this answer only; send it as
    ``Authorization: Bearer <token>``."""
    return await tokens.create_token(
        _me(request).user_id,
        data.name,
        tenant_id=data.tenant_id,
        expires_in_days=data.expires_in_days,
        ip=client_ip(request),
    )


@post(
    "/api/v1/account/tokens/{token_id:uuid}/revoke",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Revoke an API token",
)
async def api_token_revoke(
    request: Request[Any, Any, Any], token_id: FromPath[uuid.UUID]
) -> MessageOut:
    await tokens.revoke_token(_me(request).user_id, token_id, ip=client_ip(request))
    return MessageOut(code="token_revoked", detail=t(request, ACCOUNT_FLASHES["token_revoked"]))


# --- real name and consents ------------------------------------------------------------


async def _realname_page(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    errors: list | None = None,
    values: dict | None = None,
) -> Response[str]:
    flash_from_query(request, ACCOUNT_FLASHES)
    state = await realname.status(_me(request).user_id, request_locale(request))
    return page(
        request,
        "identity/realname.html",
        view(
            {
                "state": state,
                "errors": errors or [],
                "values": values or {},
            }
        ),
        status=status,
    )


@get("/account/real-name", opt=USER, guards=GUARDS, include_in_schema=False)
async def realname_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _realname_page(request)


@post("/account/real-name/consent", opt=USER, guards=GUARDS, include_in_schema=False)
async def consent_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "agree")
    if values["agree"] != "1":
        return await _realname_page(
            request,
            status=422,
            errors=[
                {
                    "field": "agree",
                    "code": "consent_not_given",
                    "message": t(request, "Tick the box to agree before continuing."),
                }
            ],
        )
    await realname.grant_consent(_me(request).user_id, ip=client_ip(request))
    return redirect(request, "/account/real-name?done=consented")


@post("/account/real-name", opt=USER, guards=GUARDS, include_in_schema=False)
async def realname_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "name", "id_number")
    try:
        await realname.verify(
            settings_of(request),
            _me(request).user_id,
            values["name"],
            values["id_number"],
            ip=client_ip(request),
        )
    except CanalError as error:
        # The typed number is not echoed back: it is sensitive and the person can retype it.
        return await _realname_page(
            request,
            status=error.status,
            errors=error_list(request, error),
            values={"name": values["name"][:64]},
        )
    return redirect(request, "/account/real-name?done=verified")


@get("/account/consents", opt=USER, guards=GUARDS, include_in_schema=False)
async def consents_page(request: Request[Any, Any, Any]) -> Response[str]:
    flash_from_query(request, ACCOUNT_FLASHES)
    return page(
        request,
        "identity/consents.html",
        view(
            {
                "consents": await realname.list_consents(_me(request).user_id),
            }
        ),
    )


@post(
    "/account/consents/{consent_id:uuid}/withdraw", opt=USER, guards=GUARDS, include_in_schema=False
)
async def consent_withdraw_submit(
    request: Request[Any, Any, Any], consent_id: FromPath[uuid.UUID]
) -> Response[Any]:
    await realname.withdraw_consent(_me(request).user_id, consent_id, ip=client_ip(request))
    return redirect(request, "/account/consents?done=consent_withdrawn")


@get(
    "/api/v1/account/real-name",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    summary="Real-name status and the consent text",
)
async def api_realname(request: Request[Any, Any, Any]) -> RealNameOut:
    return await realname.status(_me(request).user_id, request_locale(request))


@post(
    "/api/v1/account/real-name/consent",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=201,
    summary="Agree to the processing of sensitive personal information",
)
async def api_consent(request: Request[Any, Any, Any]) -> ConsentOut:
    """Records consent to the current text version (``consent_version`` in
    ``GET /api/v1/account/real-name``)."""
    return await realname.grant_consent(_me(request).user_id, ip=client_ip(request))


@post(
    "/api/v1/account/real-name",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Verify real name (name + 18-character resident ID number)",
)
async def api_realname_verify(
    request: Request[Any, Any, Any], data: JSONBody[RealNameIn]
) -> RealNameOut:
    """Consent first. The number is checked (GB 11643) and never stored: only its masked form
    and a keyed hash are kept."""
    me = _me(request)
    await realname.verify(
        settings_of(request), me.user_id, data.name, data.id_number, ip=client_ip(request)
    )
    return await realname.status(me.user_id, request_locale(request))


@get("/api/v1/account/consents", opt=USER, guards=GUARDS, tags=TAGS, summary="My consents")
async def api_consents(request: Request[Any, Any, Any]) -> list[ConsentOut]:
    return await realname.list_consents(_me(request).user_id)


@post(
    "/api/v1/account/consents/{consent_id:uuid}/withdraw",
    opt=USER,
    guards=GUARDS,
    tags=TAGS,
    status_code=200,
    summary="Withdraw a consent (erases the data it covered)",
)
async def api_consent_withdraw(
    request: Request[Any, Any, Any], consent_id: FromPath[uuid.UUID]
) -> MessageOut:
    await realname.withdraw_consent(_me(request).user_id, consent_id, ip=client_ip(request))
    return MessageOut(
        code="consent_withdrawn", detail=t(request, ACCOUNT_FLASHES["consent_withdrawn"])
    )


ACCOUNT_PAGES = [
    account_page,
    profile_submit,
    password_submit,
    security_page,
    totp_confirm_submit,
    totp_disable_submit,
    sessions_page,
    session_revoke_submit,
    sessions_revoke_others_submit,
    tokens_page,
    token_create_submit,
    token_revoke_submit,
    realname_page,
    consent_submit,
    realname_submit,
    consents_page,
    consent_withdraw_submit,
]
ACCOUNT_API = [
    api_account,
    api_profile,
    api_password,
    api_security,
    api_totp_setup,
    api_totp_confirm,
    api_totp_disable,
    api_sessions,
    api_session_revoke,
    api_sessions_revoke_others,
    api_tokens,
    api_token_create,
    api_token_revoke,
    api_realname,
    api_consent,
    api_realname_verify,
    api_consents,
    api_consent_withdraw,
]
