"""Identity pages and their JSON twins: sign-up, sign-in (with TOTP), sign-out, password reset.

Account pages (profile, security, sessions, tokens, real name, consents) are in
``account_controllers``; ``ROUTES`` collects both for the app factory.

The JSON sign-in endpoints exist for the browser's own scripts: they set the same HttpOnly
session cookie as the pages and are CSRF-protected like them (double-submit cookie; fetch one
with ``GET /api/v1/auth/csrf``). Machines authenticate with API tokens instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, FromQuery, JSONBody

from canal.platform.http.auth import session_cookie_name
from canal.platform.http.context import Principal
from canal.platform.http.errors import (
    CanalError,
    canal_error_handler,
    navigation_path,
    wants_json,
)
from canal.platform.identity import services
from canal.platform.identity.schemas import (
    CodeIn,
    CsrfOut,
    ForgotIn,
    LoginIn,
    LoginOut,
    MessageOut,
    MfaPassedOut,
    ResetIn,
    SignupIn,
)
from canal.platform.settings import Settings
from canal.web.i18n import gettext, request_locale
from canal.web.render import page, redirect

log = logging.getLogger("canal.identity")

TAGS = ["identity"]
# The TOTP step is where a half-signed-in session goes; a guard that refuses such sessions
# everywhere else must let these through.
MFA_STEP = {"access": "user", "mfa_pending_ok": True}
_UNSAFE_NEXT = re.compile(r"[\\\x00-\x1f\x7f]")


# --- request helpers (shared with account_controllers) ---------------------------------


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings


def client_ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else ""


def user_agent(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("user-agent", "")[:300]


def principal_or_none(request: Request[Any, Any, Any]) -> Principal | None:
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


def safe_next(value: str | None, default: str = "/") -> str:
    """Only a local path: one leading slash, no scheme, no backslashes or control characters."""
    if (
        not value
        or len(value) > 2000
        or not value.startswith("/")
        or value.startswith("//")
        or _UNSAFE_NEXT.search(value)
    ):
        return default
    return value


async def form_values(request: Request[Any, Any, Any], *names: str) -> dict[str, str]:
    """Form fields as strings; anything else (a file, a missing field) reads as empty."""
    form = await request.form()
    values: dict[str, str] = {}
    for name in names:
        value = form.get(name)
        values[name] = value if isinstance(value, str) else ""
    return values


def error_list(request: Request[Any, Any, Any], error: CanalError) -> list[dict[str, str]]:
    """Field errors in the request's language (the form macros' shape); a general one if none."""
    locale = request_locale(request)
    if error.errors:
        return [e.for_locale(locale) for e in error.errors]
    return [{"field": "", "code": error.code, "message": error.message(locale)}]


def t(request: Request[Any, Any, Any], text: str, **params: Any) -> str:
    return gettext(request_locale(request), text, **params)


def set_flash(request: Request[Any, Any, Any], message: str, kind: str = "success") -> None:
    request.scope.setdefault("state", {})["flash"] = {"kind": kind, "message": message}


def set_session_cookie(response: Response[Any], settings: Settings, token: str) -> None:
    response.cookies.append(
        Cookie(
            key=session_cookie_name(settings),
            value=token,
            path="/",
            httponly=True,
            secure=settings.secure_cookies,
            samesite="lax",
            max_age=settings.session_days * 86400,
        )
    )


def clear_session_cookie(response: Response[Any], settings: Settings) -> None:
    # Deleting a __Host- cookie needs the same Secure/Path attributes as setting it.
    response.cookies.append(
        Cookie(
            key=session_cookie_name(settings),
            value="",
            path="/",
            httponly=True,
            secure=settings.secure_cookies,
            samesite="lax",
            max_age=0,
        )
    )


def mfa_redirect(request: Request[Any, Any, Any], error: CanalError) -> Response[Any] | None:
    """For pages: turn ``mfa_required`` into the step that satisfies it.

    Signed in with TOTP on but not yet passed: ``/login/totp``; TOTP not set up (operator
    staff): ``/account/security``. Meant to be called from ``http/errors.render_error`` too.
    """
    if error.code != "mfa_required" or wants_json(request):
        return None
    principal = principal_or_none(request)
    if principal is None:
        return None
    here = navigation_path(request)
    from urllib.parse import quote

    if principal.totp_enabled:
        if here is None:  # a poll, a fragment, a form post: not a place to come back to
            return redirect(request, "/login/totp")
        return redirect(request, f"/login/totp?next={quote(safe_next(here), safe='/')}")
    return redirect(request, "/account/security?required=1")


def identity_error_handler(request: Request[Any, Any, Any], exc: CanalError) -> Response[Any]:
    return mfa_redirect(request, exc) or canal_error_handler(request, exc)


FLASHES = {
    "signed_out": "You have signed out.",
    "reset_done": "Your password has been reset. Sign in with the new password.",
}


def flash_from_query(request: Request[Any, Any, Any], table: dict[str, str]) -> None:
    key = request.query_params.get("done")
    if key in table:
        set_flash(request, t(request, table[key]))


# --- sign-up ---------------------------------------------------------------------------


@get("/signup", opt={"access": "public"}, include_in_schema=False)
async def signup_page(
    request: Request[Any, Any, Any], next: FromQuery[str | None] = None
) -> Response[str]:
    return page(
        request, "identity/signup.html", {"values": {}, "errors": [], "next": safe_next(next)}
    )


@post("/signup", opt={"access": "public"}, include_in_schema=False)
async def signup_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "login", "password", "display_name", "next")
    settings = settings_of(request)
    try:
        signed = await services.sign_up(
            settings,
            values["login"],
            values["password"],
            values["display_name"],
            ip=client_ip(request),
            user_agent=user_agent(request),
            locale=request_locale(request),
        )
    except CanalError as error:
        return page(
            request,
            "identity/signup.html",
            {
                "values": {k: v for k, v in values.items() if k != "password"},
                "errors": error_list(request, error),
                "next": safe_next(values["next"]),
            },
            status=error.status,
        )
    await _end_previous(request)
    response = redirect(request, safe_next(values["next"]))
    set_session_cookie(response, settings, signed.session.token)
    return response


async def _end_previous(request: Request[Any, Any, Any]) -> None:
    principal = principal_or_none(request)
    if principal is not None and principal.session_id is not None:
        await services.end_session(principal.session_id)


@post(
    "/api/v1/auth/signup",
    opt={"access": "public"},
    tags=TAGS,
    status_code=201,
    summary="Create an account and sign in",
)
async def api_signup(
    request: Request[Any, Any, Any], data: JSONBody[SignupIn]
) -> Response[LoginOut]:
    """Phone (mainland, 11 digits) or e-mail, password of at least 10 characters, and a name.

    Sets the session cookie and answers the account. CSRF: send the ``X-CSRF-Token`` header
    (from ``GET /api/v1/auth/csrf``)."""
    settings = settings_of(request)
    signed = await services.sign_up(
        settings,
        data.login,
        data.password,
        data.display_name,
        ip=client_ip(request),
        user_agent=user_agent(request),
        locale=request_locale(request),
    )
    await _end_previous(request)
    body = LoginOut(
        user=await services.get_account(signed.user_id),
        mfa=signed.mfa,
        csrf_token=signed.session.csrf_token,
    )
    response = Response(body, status_code=201)
    set_session_cookie(response, settings, signed.session.token)
    return response


@get("/api/v1/auth/csrf", opt={"access": "public"}, tags=TAGS, summary="A CSRF token")
async def api_csrf(request: Request[Any, Any, Any]) -> CsrfOut:
    """The token to send as ``X-CSRF-Token`` with this browser's next state-changing call."""
    return CsrfOut(csrf_token=str(request.scope.get("state", {}).get("csrf_token") or ""))


# --- sign-in ---------------------------------------------------------------------------


def _after_sign_in(signed: services.SignedIn, next_url: str) -> str:
    from urllib.parse import quote

    if signed.mfa == "required":
        return f"/login/totp?next={quote(next_url, safe='/')}"
    if signed.mfa == "setup_required":
        return "/account/security?required=1"
    return next_url


@get("/login", opt={"access": "public"}, include_in_schema=False)
async def login_page(
    request: Request[Any, Any, Any], next: FromQuery[str | None] = None
) -> Response[str]:
    flash_from_query(request, FLASHES)
    return page(
        request, "identity/login.html", {"values": {}, "errors": [], "next": safe_next(next)}
    )


@post("/login", opt={"access": "public"}, include_in_schema=False)
async def login_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "login", "password", "next")
    settings = settings_of(request)
    principal = principal_or_none(request)
    try:
        signed = await services.sign_in(
            settings,
            values["login"],
            values["password"],
            ip=client_ip(request),
            user_agent=user_agent(request),
            replaces=principal.session_id if principal else None,
        )
    except CanalError as error:
        return page(
            request,
            "identity/login.html",
            {
                "values": {"login": values["login"][:254]},
                "errors": error_list(request, error),
                "next": safe_next(values["next"]),
            },
            status=error.status,
        )
    response = redirect(request, _after_sign_in(signed, safe_next(values["next"])))
    set_session_cookie(response, settings, signed.session.token)
    return response


@post(
    "/api/v1/auth/login",
    opt={"access": "public"},
    tags=TAGS,
    status_code=200,
    summary="Sign in (browser session)",
)
async def api_login(request: Request[Any, Any, Any], data: JSONBody[LoginIn]) -> Response[LoginOut]:
    """Starts a new session (cookie) and answers the account. ``mfa`` says what comes next:
    ``required`` — send the TOTP code to ``/api/v1/auth/login/totp``; ``setup_required`` —
    operator staff must set up TOTP first. Failures make the next attempt wait, longer and
    longer (429 ``login_throttled``): by the account at this address, by the address, and by
    the account everywhere."""
    settings = settings_of(request)
    principal = principal_or_none(request)
    signed = await services.sign_in(
        settings,
        data.login,
        data.password,
        ip=client_ip(request),
        user_agent=user_agent(request),
        replaces=principal.session_id if principal else None,
    )
    body = LoginOut(
        user=await services.get_account(signed.user_id),
        mfa=signed.mfa,
        csrf_token=signed.session.csrf_token,
    )
    response = Response(body)
    set_session_cookie(response, settings, signed.session.token)
    return response


@get("/login/totp", opt=MFA_STEP, include_in_schema=False)
async def totp_page(
    request: Request[Any, Any, Any], next: FromQuery[str | None] = None
) -> Response[Any]:
    principal = principal_or_none(request)
    if principal is None or principal.mfa_passed or not principal.totp_enabled:
        return redirect(request, safe_next(next))
    return page(request, "identity/login_totp.html", {"errors": [], "next": safe_next(next)})


def _pending_session(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_or_none(request)
    if principal is None or principal.session_id is None:
        raise services.session_required()
    return principal


@post("/login/totp", opt=MFA_STEP, include_in_schema=False)
async def totp_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    values = await form_values(request, "code", "next")
    principal = _pending_session(request)
    next_url = safe_next(values["next"])
    if principal.mfa_passed:
        return redirect(request, next_url)
    try:
        session = await services.pass_second_factor(
            settings_of(request),
            principal.user_id,
            principal.session_id,  # type: ignore[arg-type]
            values["code"],
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
    except CanalError as error:
        if error.code == "login_throttled":  # the pending session has ended
            response = page(
                request,
                "identity/login.html",
                {
                    "values": {},
                    "errors": error_list(request, error),
                    "next": next_url,
                },
                status=error.status,
            )
            clear_session_cookie(response, settings_of(request))
            return response
        return page(
            request,
            "identity/login_totp.html",
            {"errors": error_list(request, error), "next": next_url},
            status=error.status,
        )
    # The pending session was replaced by a new one: the cookie carries the new token.
    response = redirect(request, next_url)
    set_session_cookie(response, settings_of(request), session.token)
    return response


@post(
    "/api/v1/auth/login/totp",
    opt=MFA_STEP,
    tags=TAGS,
    status_code=200,
    summary="Second sign-in step: TOTP code",
)
async def api_totp(
    request: Request[Any, Any, Any], data: JSONBody[CodeIn]
) -> Response[MfaPassedOut]:
    """The 6-digit code from the authenticator app; a code is accepted once only.

    Passing it ends the half-signed-in session and starts a new one: the answer sets a new
    session cookie, and ``csrf_token`` is the new session's CSRF token."""
    principal = _pending_session(request)
    detail = t(request, "Two-factor check passed.")
    if principal.mfa_passed:
        return Response(
            MfaPassedOut(code="mfa_passed", detail=detail, csrf_token=principal.csrf_token or "")
        )
    settings = settings_of(request)
    session = await services.pass_second_factor(
        settings,
        principal.user_id,
        principal.session_id,  # type: ignore[arg-type]
        data.code,
        ip=client_ip(request),
        user_agent=user_agent(request),
    )
    response = Response(
        MfaPassedOut(code="mfa_passed", detail=detail, csrf_token=session.csrf_token)
    )
    set_session_cookie(response, settings, session.token)
    return response


# --- sign-out --------------------------------------------------------------------------


async def _sign_out(request: Request[Any, Any, Any]) -> None:
    principal = principal_or_none(request)
    if principal is not None and principal.session_id is not None:
        await services.sign_out(principal.user_id, principal.session_id, ip=client_ip(request))


@post("/logout", opt={"access": "public"}, include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    await _sign_out(request)
    response = redirect(request, "/login?done=signed_out")
    clear_session_cookie(response, settings_of(request))
    return response


@post(
    "/api/v1/auth/logout",
    opt={"access": "public"},
    tags=TAGS,
    status_code=200,
    summary="Sign out (end this browser session)",
)
async def api_logout(request: Request[Any, Any, Any]) -> Response[MessageOut]:
    await _sign_out(request)
    response = Response(MessageOut(code="signed_out", detail=t(request, "You have signed out.")))
    clear_session_cookie(response, settings_of(request))
    return response


# --- forgotten password ----------------------------------------------------------------


async def _request_reset(request: Request[Any, Any, Any], login: str) -> None:
    # The message and its delivery job are committed together (the job outbox).
    await services.request_password_reset(settings_of(request), login, ip=client_ip(request))


RESET_SENT = (
    "If an account with this phone number or e-mail exists, we have sent it a link "
    "to reset the password. The link works once, within 30 minutes."
)


@get("/password/forgot", opt={"access": "public"}, include_in_schema=False)
async def forgot_page(request: Request[Any, Any, Any]) -> Response[str]:
    return page(
        request, "identity/password_forgot.html", {"values": {}, "errors": [], "sent": False}
    )


@post("/password/forgot", opt={"access": "public"}, include_in_schema=False)
async def forgot_submit(request: Request[Any, Any, Any]) -> Response[str]:
    values = await form_values(request, "login")
    if not values["login"].strip():
        errors = [
            {
                "field": "login",
                "code": "login_required",
                "message": t(request, "Enter your phone number or e-mail address."),
            }
        ]
        return page(
            request,
            "identity/password_forgot.html",
            {"values": values, "errors": errors, "sent": False},
            status=422,
        )
    await _request_reset(request, values["login"])
    set_flash(request, t(request, RESET_SENT))
    return page(
        request, "identity/password_forgot.html", {"values": {}, "errors": [], "sent": True}
    )


@post(
    "/api/v1/password/forgot",
    opt={"access": "public"},
    tags=TAGS,
    status_code=202,
    summary="Send a password-reset link",
)
async def api_forgot(request: Request[Any, Any, Any], data: JSONBody[ForgotIn]) -> MessageOut:
    """Always answers the same, whether or not the account exists."""
    await _request_reset(request, data.login)
    return MessageOut(code="reset_sent", detail=t(request, RESET_SENT))


@get("/password/reset/{token:str}", opt={"access": "public"}, include_in_schema=False)
async def reset_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[str]:
    try:
        await services.check_reset_token(token)
    except CanalError as error:
        return page(
            request,
            "identity/password_reset.html",
            {"errors": error_list(request, error), "usable": False},
            status=error.status,
        )
    return page(request, "identity/password_reset.html", {"errors": [], "usable": True})


@post("/password/reset/{token:str}", opt={"access": "public"}, include_in_schema=False)
async def reset_submit(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[Any]:
    values = await form_values(request, "password")
    try:
        await services.reset_password(token, values["password"], ip=client_ip(request))
    except CanalError as error:
        usable = error.code == "invalid_input"
        return page(
            request,
            "identity/password_reset.html",
            {"errors": error_list(request, error), "usable": usable},
            status=422 if usable else error.status,
        )
    response = redirect(request, "/login?done=reset_done")
    clear_session_cookie(response, settings_of(request))
    return response


@post(
    "/api/v1/password/reset",
    opt={"access": "public"},
    tags=TAGS,
    status_code=200,
    summary="Set a new password with a reset link's token",
)
async def api_reset(request: Request[Any, Any, Any], data: JSONBody[ResetIn]) -> MessageOut:
    """The token is the last part of the link. It works once, within 30 minutes; every session
    of the account is ended."""
    await services.reset_password(data.token, data.password, ip=client_ip(request))
    return MessageOut(
        code="password_reset",
        detail=t(request, "Your password has been reset. Sign in with the new password."),
    )


def _routes() -> list[Any]:
    from canal.platform.identity.account_controllers import ACCOUNT_API, ACCOUNT_PAGES

    pages = [
        signup_page,
        signup_submit,
        login_page,
        login_submit,
        totp_page,
        totp_submit,
        logout,
        forgot_page,
        forgot_submit,
        reset_page,
        reset_submit,
        *ACCOUNT_PAGES,
    ]
    api = [
        api_signup,
        api_csrf,
        api_login,
        api_totp,
        api_logout,
        api_forgot,
        api_reset,
        *ACCOUNT_API,
    ]
    return [
        Router(
            path="/", route_handlers=pages, exception_handlers={CanalError: identity_error_handler}
        ),
        Router(path="/", route_handlers=api),
    ]


ROUTES: list[Any] = _routes()
