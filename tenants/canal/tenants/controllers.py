"""Organisation pages and their JSON twins: create, home, members, invitations, roles, modules,
and the operator's list of every organisation.

Controllers parse input, call one service function and pick a template or a struct; the rules
live in ``canal.tenants.services``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from canal.platform.access.roles import role_catalog
from canal.platform.access.services import access
from canal.platform.http.context import Principal, TenantContext
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import current_principal, tenant_context
from canal.platform.modules import ModuleSpec, get_module, visible_nav
from canal.tenants import services
from canal.tenants.services import CREATABLE_KINDS, kind_name
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["organisations"]


# --- helpers ---------------------------------------------------------------------------------


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _field_errors(request: Req, exc: CanalError) -> list[dict[str, str]]:
    locale = request_locale(request)
    return [e.for_locale(locale) for e in exc.errors]


def _flash_error(request: Req, exc: CanalError) -> None:
    """Show a refusal at the top of the re-rendered page (the shell's #flash region)."""
    locale = request_locale(request)
    details = [e.for_locale(locale)["message"] for e in exc.errors]
    message = " ".join(details) if details else exc.message(locale)
    request.scope.setdefault("state", {})["flash"] = {"kind": "error", "message": message}


def _can(ctx: TenantContext, resource: str, action: str) -> bool:
    return access().enforce(ctx.user_id, ctx.tenant_id, resource, action)


def _base_url(request: Req) -> str:
    # From the settings, never from the Host header (a forged Host would poison the link).
    return str(request.app.state.settings.base_url)


def _role_names(kind: str, locale: str) -> dict[str, str]:
    return {key: role.name(locale) for key, role in role_catalog(kind).items()}


# --- API shapes ------------------------------------------------------------------------------


class OrgIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: str
    slug: str = ""
    credit_code: str | None = None


class OrgOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    url: str


class ModuleLink(msgspec.Struct):
    key: str
    name_zh: str
    name_en: str
    url: str


class OrgDetail(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    credit_code: str | None
    status: str
    created_at: dt.datetime
    member_count: int
    my_roles: list[str]
    modules: list[ModuleLink]
    links: dict[str, str]


class MemberOut(msgspec.Struct):
    user_id: uuid.UUID
    display_name: str
    contact: str
    roles: list[str]
    joined_at: dt.datetime


class RoleOut(msgspec.Struct):
    key: str
    name_zh: str
    name_en: str
    module: str | None


class RolesOut(msgspec.Struct):
    roles: list[RoleOut]
    members: list[MemberOut]


class InviteIn(msgspec.Struct, forbid_unknown_fields=True):
    recipient: str
    role: str = "member"


class InvitationOut(msgspec.Struct):
    id: uuid.UUID
    recipient: str
    role: str
    status: str
    created_at: dt.datetime
    expires_at: dt.datetime


class InvitationCreated(msgspec.Struct):
    invitation: InvitationOut
    link: str
    channel: str


class InvitationPreviewOut(msgspec.Struct):
    organisation: OrgOut
    role: str
    role_zh: str
    role_en: str
    recipient: str
    status: str
    expires_at: dt.datetime


class RoleIn(msgspec.Struct, forbid_unknown_fields=True):
    role: str


class ModuleIn(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool
    plan: str = "free"


class NavOut(msgspec.Struct):
    href: str
    label_zh: str
    label_en: str


class ModuleOut(msgspec.Struct):
    key: str
    name_zh: str
    name_en: str
    summary_zh: str
    summary_en: str
    status: str
    allowed: bool
    enabled: bool
    plan: str | None
    plans: list[str]
    url: str
    # The module's menu as this person in this organisation sees it (module home only).
    nav: list[NavOut] = msgspec.field(default_factory=list)


class Done(msgspec.Struct):
    ok: bool
    changed: bool = True


class OperatorTenantOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    credit_code: str | None
    status: str
    created_at: dt.datetime
    member_count: int
    modules_on: int


def _org_out(t: services.TenantSummary) -> OrgOut:
    return OrgOut(id=t.id, slug=t.slug, name=t.name, kind=t.kind, url=f"/t/{t.slug}")


def _member_out(m: services.MemberView) -> MemberOut:
    return MemberOut(
        user_id=m.user_id,
        display_name=m.display_name,
        contact=m.contact,
        roles=m.roles,
        joined_at=m.joined_at,
    )


def _invitation_out(i: services.InvitationView) -> InvitationOut:
    return InvitationOut(
        id=i.id,
        recipient=i.recipient,
        role=i.role,
        status=i.status,
        created_at=i.created_at,
        expires_at=i.expires_at,
    )


def _module_out(slug: str, e: services.ModuleEntry) -> ModuleOut:
    s = e.spec
    return ModuleOut(
        key=s.key,
        name_zh=s.name_zh,
        name_en=s.name_en,
        summary_zh=s.summary_zh,
        summary_en=s.summary_en,
        status=s.status,
        allowed=e.allowed,
        enabled=e.enabled,
        plan=e.plan,
        plans=e.plans,
        url=f"/t/{slug}/m/{s.key}",
    )


# --- organisations: list and create ----------------------------------------------------------

_USER = {"access": "user"}


@get("/orgs", opt=_USER, include_in_schema=False)
async def orgs_page(request: Req) -> Response[str]:
    principal = current_principal(request)
    tenants = await services.my_tenants(principal.user_id)
    return page(request, "tenants/orgs.html", {"orgs": tenants, "kind_name": kind_name})


@get("/api/v1/orgs", opt=_USER, tags=TAGS, summary="My organisations")
async def orgs_api(request: Req) -> list[OrgOut]:
    principal = current_principal(request)
    return [_org_out(t) for t in await services.my_tenants(principal.user_id)]


def _new_org_page(
    request: Req, values: dict[str, str], errors: list[dict[str, str]], status: int = 200
) -> Response[str]:
    locale = request_locale(request)
    kinds = [(k, kind_name(k, locale)) for k in CREATABLE_KINDS]
    return page(
        request,
        "tenants/org_new.html",
        {"values": values, "errors": errors, "kinds": kinds},
        status=status,
    )


@get("/orgs/new", opt=_USER, include_in_schema=False)
async def new_org_page(request: Req) -> Response[str]:
    return _new_org_page(
        request, {"name": "", "slug": "", "kind": "enterprise", "credit_code": ""}, []
    )


@post("/orgs", opt=_USER, include_in_schema=False)
async def create_org_form(request: Req) -> Response[Any]:
    principal = current_principal(request)
    form = await _form(request)
    values = {k: form.get(k, "") for k in ("name", "slug", "kind", "credit_code")}
    try:
        tenant = await services.create_tenant(
            creator_id=principal.user_id,
            name=values["name"],
            slug=values["slug"],
            kind=values["kind"],
            credit_code=values["credit_code"],
            ip=_ip(request),
        )
    except CanalError as exc:
        if exc.status != 422:
            raise
        return _new_org_page(request, values, _field_errors(request, exc), status=422)
    return redirect(request, f"/t/{tenant.slug}")


@post(
    "/api/v1/orgs",
    opt=_USER,
    tags=TAGS,
    summary="Create an organisation",
    status_code=HTTP_201_CREATED,
)
async def create_org_api(request: Req, data: JSONBody[OrgIn]) -> OrgOut:
    """Kinds: enterprise, park, community, government. The creator becomes its owner."""
    principal = current_principal(request)
    tenant = await services.create_tenant(
        creator_id=principal.user_id,
        name=data.name,
        slug=data.slug,
        kind=data.kind,
        credit_code=data.credit_code,
        ip=_ip(request),
    )
    return _org_out(tenant)


# --- the organisation's home -----------------------------------------------------------------


def _tenant(permission: tuple[str, str] = ("tenant", "read"), **extra: Any) -> dict[str, Any]:
    return {"access": "tenant", "permission": permission, **extra}


def _links(slug: str) -> dict[str, str]:
    base = f"/t/{slug}"
    return {
        "home": base,
        "members": f"{base}/members",
        "invitations": f"{base}/invitations",
        "roles": f"{base}/roles",
        "modules": f"{base}/modules",
        "audit": f"{base}/audit",
    }


@get("/t/{tenant_slug:str}", opt=_tenant(), include_in_schema=False)
async def home_page(request: Req) -> Response[str]:
    return await _home_page(request)


async def _home_page(request: Req, status: int = 200) -> Response[str]:
    ctx = tenant_context(request)
    overview = await services.tenant_overview(ctx)
    locale = request_locale(request)
    modules = [m for m in (get_module(k) for k in overview.enabled_modules) if m]
    return page(
        request,
        "tenants/home.html",
        {
            "org": overview,
            "kind_label": kind_name(overview.kind, locale),
            "role_names": _role_names(overview.kind, locale),
            "modules": modules,
            "links": _links(overview.slug),
            "can": {
                "members": _can(ctx, "members", "read"),
                "roles": _can(ctx, "members", "manage"),
                "invite": _can(ctx, "members", "invite"),
                "modules": _can(ctx, "modules", "read"),
                "audit": _can(ctx, "audit", "read"),
            },
        },
        status=status,
    )


@get("/api/v1/t/{tenant_slug:str}", opt=_tenant(), tags=TAGS, summary="An organisation")
async def home_api(request: Req) -> OrgDetail:
    ctx = tenant_context(request)
    o = await services.tenant_overview(ctx)
    modules = [
        ModuleLink(key=m.key, name_zh=m.name_zh, name_en=m.name_en, url=f"/t/{o.slug}/m/{m.key}")
        for m in (get_module(k) for k in o.enabled_modules)
        if m
    ]
    return OrgDetail(
        id=o.id,
        slug=o.slug,
        name=o.name,
        kind=o.kind,
        credit_code=o.credit_code,
        status=o.status,
        created_at=o.created_at,
        member_count=o.member_count,
        my_roles=o.my_roles,
        modules=modules,
        links=_links(o.slug),
    )


@post("/t/{tenant_slug:str}/leave", opt=_tenant(), include_in_schema=False)
async def leave_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    try:
        await services.leave_tenant(ctx, ip=_ip(request))
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _home_page(request, status=exc.status)
    return redirect(request, "/orgs")


@post(
    "/api/v1/t/{tenant_slug:str}/leave",
    opt=_tenant(),
    tags=TAGS,
    summary="Leave the organisation",
    status_code=HTTP_200_OK,
)
async def leave_api(request: Req) -> Done:
    await services.leave_tenant(tenant_context(request), ip=_ip(request))
    return Done(ok=True)


# --- members ---------------------------------------------------------------------------------


async def _members_page(request: Req, status: int = 200) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    members = await services.list_members(ctx)
    return page(
        request,
        "tenants/members.html",
        {
            "members": members,
            "role_names": _role_names(ctx.tenant.kind, locale),
            "me": ctx.user_id,
            "links": _links(ctx.tenant.slug),
            "can": {
                "invite": _can(ctx, "members", "invite"),
                "manage": _can(ctx, "members", "manage"),
            },
        },
        status=status,
    )


@get("/t/{tenant_slug:str}/members", opt=_tenant(("members", "read")), include_in_schema=False)
async def members_page(request: Req) -> Response[str]:
    return await _members_page(request)


@get(
    "/api/v1/t/{tenant_slug:str}/members",
    opt=_tenant(("members", "read")),
    tags=TAGS,
    summary="Members and their roles",
)
async def members_api(request: Req) -> list[MemberOut]:
    return [_member_out(m) for m in await services.list_members(tenant_context(request))]


@post(
    "/t/{tenant_slug:str}/members/{user_id:uuid}/remove",
    opt=_tenant(("members", "manage")),
    include_in_schema=False,
)
async def remove_member_form(request: Req, user_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    try:
        await services.remove_member(ctx, user_id, ip=_ip(request))
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _members_page(request, status=exc.status)
    return redirect(request, f"/t/{ctx.tenant.slug}/members")


@post(
    "/api/v1/t/{tenant_slug:str}/members/{user_id:uuid}/remove",
    opt=_tenant(("members", "manage")),
    tags=TAGS,
    summary="Remove a member",
    status_code=HTTP_200_OK,
)
async def remove_member_api(request: Req, user_id: FromPath[uuid.UUID]) -> Done:
    await services.remove_member(tenant_context(request), user_id, ip=_ip(request))
    return Done(ok=True)


# --- invitations -----------------------------------------------------------------------------


async def _invitations_page(
    request: Req,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    created: services.NewInvitation | None = None,
    status: int = 200,
) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    roles = role_catalog(ctx.tenant.kind)
    is_owner = "owner" in access().roles_in(ctx.user_id, ctx.tenant_id)
    offered = [(k, r.name(locale)) for k, r in roles.items() if k != "owner" or is_owner]
    return page(
        request,
        "tenants/invitations.html",
        {
            "pending": await services.pending_invitations(ctx),
            "role_names": _role_names(ctx.tenant.kind, locale),
            "roles": offered,
            "values": values or {"recipient": "", "role": "member"},
            "errors": errors or [],
            "created": created,
            "links": _links(ctx.tenant.slug),
        },
        status=status,
    )


@get(
    "/t/{tenant_slug:str}/invitations", opt=_tenant(("members", "invite")), include_in_schema=False
)
async def invitations_page(request: Req) -> Response[str]:
    return await _invitations_page(request)


@get(
    "/api/v1/t/{tenant_slug:str}/invitations",
    opt=_tenant(("members", "invite")),
    tags=TAGS,
    summary="Pending invitations",
)
async def invitations_api(request: Req) -> list[InvitationOut]:
    pending = await services.pending_invitations(tenant_context(request))
    return [_invitation_out(i) for i in pending]


@post(
    "/t/{tenant_slug:str}/invitations", opt=_tenant(("members", "invite")), include_in_schema=False
)
async def invite_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    values = {"recipient": form.get("recipient", ""), "role": form.get("role", "member")}
    try:
        created = await services.invite_member(
            ctx,
            recipient=values["recipient"],
            role=values["role"],
            base_url=_base_url(request),
            ip=_ip(request),
        )
    except CanalError as exc:
        if exc.status == 404:
            raise
        if exc.errors:
            return await _invitations_page(
                request, values=values, errors=_field_errors(request, exc), status=exc.status
            )
        _flash_error(request, exc)
        return await _invitations_page(request, values=values, status=exc.status)
    # Not a redirect: the link is shown this once, for the inviter to pass on another way.
    return await _invitations_page(request, created=created, status=HTTP_201_CREATED)


@post(
    "/api/v1/t/{tenant_slug:str}/invitations",
    opt=_tenant(("members", "invite")),
    tags=TAGS,
    summary="Invite someone by phone or e-mail",
    status_code=HTTP_201_CREATED,
)
async def invite_api(request: Req, data: JSONBody[InviteIn]) -> InvitationCreated:
    """Sends the invitation (e-mail or SMS) and returns the link once; valid 7 days."""
    created = await services.invite_member(
        tenant_context(request),
        recipient=data.recipient,
        role=data.role,
        base_url=_base_url(request),
        ip=_ip(request),
    )
    return InvitationCreated(
        invitation=_invitation_out(created.invitation), link=created.link, channel=created.channel
    )


@post(
    "/t/{tenant_slug:str}/invitations/{invitation_id:uuid}/revoke",
    opt=_tenant(("members", "invite")),
    include_in_schema=False,
)
async def revoke_invitation_form(request: Req, invitation_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    try:
        await services.revoke_invitation(ctx, invitation_id, ip=_ip(request))
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _invitations_page(request, status=exc.status)
    return redirect(request, f"/t/{ctx.tenant.slug}/invitations")


@post(
    "/api/v1/t/{tenant_slug:str}/invitations/{invitation_id:uuid}/revoke",
    opt=_tenant(("members", "invite")),
    tags=TAGS,
    summary="Revoke an invitation",
    status_code=HTTP_200_OK,
)
async def revoke_invitation_api(request: Req, invitation_id: FromPath[uuid.UUID]) -> Done:
    await services.revoke_invitation(tenant_context(request), invitation_id, ip=_ip(request))
    return Done(ok=True)


# --- accepting an invitation (the link in the message) ---------------------------------------


async def _invite_page(
    request: Req, tenant_id: uuid.UUID, token: str, status: int = 200
) -> Response[str]:
    preview = await services.preview_invitation(tenant_id, token)
    principal = request.scope.get("user")
    locale = request_locale(request)
    return page(
        request,
        "tenants/invite.html",
        {
            "invite": preview,
            "signed_in": isinstance(principal, Principal),
            "role_name": preview.role_zh if locale.startswith("zh") else preview.role_en,
            "kind_label": kind_name(preview.tenant.kind, locale),
            "next": request.url.path,
        },
        status=status,
    )


@get("/invite/{tenant_id:uuid}/{token:str}", opt={"access": "public"}, include_in_schema=False)
async def invite_page(
    request: Req, tenant_id: FromPath[uuid.UUID], token: FromPath[str]
) -> Response[str]:
    return await _invite_page(request, tenant_id, token)


@get(
    "/api/v1/invite/{tenant_id:uuid}/{token:str}",
    opt={"access": "public"},
    tags=TAGS,
    summary="What an invitation offers",
)
async def invite_preview_api(
    tenant_id: FromPath[uuid.UUID], token: FromPath[str]
) -> InvitationPreviewOut:
    p = await services.preview_invitation(tenant_id, token)
    return InvitationPreviewOut(
        organisation=_org_out(p.tenant),
        role=p.role,
        role_zh=p.role_zh,
        role_en=p.role_en,
        recipient=p.recipient,
        status=p.status,
        expires_at=p.expires_at,
    )


@post("/invite/{tenant_id:uuid}/{token:str}", opt=_USER, include_in_schema=False)
async def accept_invite_form(
    request: Req, tenant_id: FromPath[uuid.UUID], token: FromPath[str]
) -> Response[Any]:
    principal = current_principal(request)
    try:
        tenant = await services.accept_invitation(
            tenant_id, token, principal.user_id, ip=_ip(request)
        )
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _invite_page(request, tenant_id, token, status=exc.status)
    return redirect(request, f"/t/{tenant.slug}")


@post(
    "/api/v1/invite/{tenant_id:uuid}/{token:str}",
    opt=_USER,
    tags=TAGS,
    summary="Accept an invitation",
    status_code=HTTP_200_OK,
)
async def accept_invite_api(
    request: Req, tenant_id: FromPath[uuid.UUID], token: FromPath[str]
) -> OrgOut:
    """Only the account whose phone or e-mail the invitation was sent to may accept it."""
    principal = current_principal(request)
    tenant = await services.accept_invitation(tenant_id, token, principal.user_id, ip=_ip(request))
    return _org_out(tenant)


# --- roles -----------------------------------------------------------------------------------

_MANAGE = ("members", "manage")


async def _roles_page(request: Req, status: int = 200) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    catalog = role_catalog(ctx.tenant.kind)
    return page(
        request,
        "tenants/roles.html",
        {
            "members": await services.list_members(ctx),
            "catalog": [(k, r.name(locale), r.module) for k, r in catalog.items()],
            "role_names": _role_names(ctx.tenant.kind, locale),
            "is_owner": "owner" in access().roles_in(ctx.user_id, ctx.tenant_id),
            "me": ctx.user_id,
            "links": _links(ctx.tenant.slug),
        },
        status=status,
    )


@get("/t/{tenant_slug:str}/roles", opt=_tenant(_MANAGE), include_in_schema=False)
async def roles_page(request: Req) -> Response[str]:
    return await _roles_page(request)


@get(
    "/api/v1/t/{tenant_slug:str}/roles",
    opt=_tenant(_MANAGE),
    tags=TAGS,
    summary="The role catalogue and who holds what",
)
async def roles_api(request: Req) -> RolesOut:
    ctx = tenant_context(request)
    roles = [
        RoleOut(key=k, name_zh=r.zh, name_en=r.en, module=r.module)
        for k, r in role_catalog(ctx.tenant.kind).items()
    ]
    return RolesOut(roles=roles, members=[_member_out(m) for m in await services.list_members(ctx)])


async def _change_role_form(request: Req, user_id: uuid.UUID, grant: bool) -> Response[Any]:
    ctx = tenant_context(request)
    role = (await _form(request)).get("role", "")
    try:
        if grant:
            await services.grant_role(ctx, user_id, role, ip=_ip(request))
        else:
            await services.revoke_role(ctx, user_id, role, ip=_ip(request))
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _roles_page(request, status=exc.status)
    return redirect(request, f"/t/{ctx.tenant.slug}/roles")


@post(
    "/t/{tenant_slug:str}/roles/{user_id:uuid}/grant", opt=_tenant(_MANAGE), include_in_schema=False
)
async def grant_role_form(request: Req, user_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _change_role_form(request, user_id, grant=True)


@post(
    "/t/{tenant_slug:str}/roles/{user_id:uuid}/revoke",
    opt=_tenant(_MANAGE),
    include_in_schema=False,
)
async def revoke_role_form(request: Req, user_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _change_role_form(request, user_id, grant=False)


@post(
    "/api/v1/t/{tenant_slug:str}/roles/{user_id:uuid}/grant",
    opt=_tenant(_MANAGE),
    tags=TAGS,
    summary="Grant a role to a member",
    status_code=HTTP_200_OK,
)
async def grant_role_api(
    request: Req, user_id: FromPath[uuid.UUID], data: JSONBody[RoleIn]
) -> Done:
    changed = await services.grant_role(
        tenant_context(request), user_id, data.role, ip=_ip(request)
    )
    return Done(ok=True, changed=changed)


@post(
    "/api/v1/t/{tenant_slug:str}/roles/{user_id:uuid}/revoke",
    opt=_tenant(_MANAGE),
    tags=TAGS,
    summary="Revoke a role from a member",
    status_code=HTTP_200_OK,
)
async def revoke_role_api(
    request: Req, user_id: FromPath[uuid.UUID], data: JSONBody[RoleIn]
) -> Done:
    changed = await services.revoke_role(
        tenant_context(request), user_id, data.role, ip=_ip(request)
    )
    return Done(ok=True, changed=changed)


# --- modules ---------------------------------------------------------------------------------


async def _modules_page(request: Req, status: int = 200) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    return page(
        request,
        "tenants/modules.html",
        {
            "entries": await services.module_catalogue(ctx),
            "can_manage": _can(ctx, "modules", "manage"),
            "slug": ctx.tenant.slug,
            "kind_label": kind_name(ctx.tenant.kind, locale),
        },
        status=status,
    )


@get("/t/{tenant_slug:str}/modules", opt=_tenant(("modules", "read")), include_in_schema=False)
async def modules_page(request: Req) -> Response[str]:
    return await _modules_page(request)


@get(
    "/api/v1/t/{tenant_slug:str}/modules",
    opt=_tenant(("modules", "read")),
    tags=TAGS,
    summary="The module catalogue for this organisation",
)
async def modules_api(request: Req) -> list[ModuleOut]:
    ctx = tenant_context(request)
    return [_module_out(ctx.tenant.slug, e) for e in await services.module_catalogue(ctx)]


@post(
    "/t/{tenant_slug:str}/modules/{module_key:str}",
    opt=_tenant(("modules", "manage")),
    include_in_schema=False,
)
async def switch_module_form(request: Req, module_key: FromPath[str]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        await services.set_module(
            ctx,
            module_key,
            enabled=form.get("enabled") == "1",
            plan=form.get("plan", "free") or "free",
            ip=_ip(request),
        )
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _modules_page(request, status=exc.status)
    return redirect(request, f"/t/{ctx.tenant.slug}/modules")


@post(
    "/api/v1/t/{tenant_slug:str}/modules/{module_key:str}",
    opt=_tenant(("modules", "manage")),
    tags=TAGS,
    summary="Switch a module on or off",
    status_code=HTTP_200_OK,
)
async def switch_module_api(
    request: Req, module_key: FromPath[str], data: JSONBody[ModuleIn]
) -> Done:
    changed = await services.set_module(
        tenant_context(request), module_key, enabled=data.enabled, plan=data.plan, ip=_ip(request)
    )
    return Done(ok=True, changed=changed)


_MODULE_HOME = _tenant(module="{module_key}")


def _module_spec(module_key: str) -> ModuleSpec:
    return services.module_or_404(module_key)


@get("/t/{tenant_slug:str}/m/{module_key:str}", opt=_MODULE_HOME, include_in_schema=False)
async def module_home_page(request: Req, module_key: FromPath[str]) -> Response[str]:
    ctx = tenant_context(request)
    spec = _module_spec(module_key)
    base = f"/t/{ctx.tenant.slug}/m/{spec.key}"
    return page(
        request,
        "tenants/module_home.html",
        {
            "spec": spec,
            "base": base,
            "slug": ctx.tenant.slug,
            "nav_entries": [
                (base + e.path, e.label(request_locale(request))) for e in visible_nav(spec, ctx)
            ],
        },
    )


@get(
    "/api/v1/t/{tenant_slug:str}/m/{module_key:str}",
    opt=_MODULE_HOME,
    tags=TAGS,
    summary="A module switched on for this organisation",
)
async def module_home_api(request: Req, module_key: FromPath[str]) -> ModuleOut:
    ctx = tenant_context(request)
    spec = _module_spec(module_key)
    entry = services.ModuleEntry(
        spec=spec,
        allowed=ctx.tenant.kind in spec.tenant_kinds,
        enabled=True,
        plan=None,
        plans=[p.key for p in spec.plans],
    )
    out = _module_out(ctx.tenant.slug, entry)
    out.nav = [NavOut(out.url + e.path, e.zh, e.en) for e in visible_nav(spec, ctx)]
    return out


# --- operator console ------------------------------------------------------------------------

_OP_READ = {"access": "platform", "permission": ("platform.tenants", "read")}
_OP_MANAGE = {"access": "platform", "permission": ("platform.tenants", "manage")}
OP_TAGS = ["operator"]


async def _operator_page(request: Req, status: int = 200) -> Response[str]:
    principal = current_principal(request)
    query = request.query_params.get("q", "") or ""
    rows = await services.operator_list_tenants(principal.user_id, query)
    operator = request.scope.get("state", {}).get("operator")
    can_manage = operator is not None and access().enforce(
        principal.user_id, operator.id, "platform.tenants", "manage"
    )
    return page(
        request,
        "tenants/operator_tenants.html",
        {
            "rows": rows,
            "q": query,
            "can_manage": can_manage,
            "kind_name": kind_name,
            "locale": request_locale(request),
        },
        status=status,
    )


@get("/operator/tenants", opt=_OP_READ, include_in_schema=False)
async def operator_tenants_page(request: Req) -> Response[str]:
    return await _operator_page(request)


@get("/api/v1/operator/tenants", opt=_OP_READ, tags=OP_TAGS, summary="Every organisation")
async def operator_tenants_api(request: Req, q: FromQuery[str] = "") -> list[OperatorTenantOut]:
    principal = current_principal(request)
    rows = await services.operator_list_tenants(principal.user_id, q)
    return [OperatorTenantOut(**vars(r)) for r in rows]


async def _set_status_form(request: Req, tenant_id: uuid.UUID, suspended: bool) -> Response[Any]:
    principal = current_principal(request)
    try:
        await services.set_tenant_status(
            principal.user_id, tenant_id, suspended=suspended, ip=_ip(request)
        )
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _operator_page(request, status=exc.status)
    return redirect(request, "/operator/tenants")


@post("/operator/tenants/{tenant_id:uuid}/suspend", opt=_OP_MANAGE, include_in_schema=False)
async def suspend_form(request: Req, tenant_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _set_status_form(request, tenant_id, suspended=True)


@post("/operator/tenants/{tenant_id:uuid}/reactivate", opt=_OP_MANAGE, include_in_schema=False)
async def reactivate_form(request: Req, tenant_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _set_status_form(request, tenant_id, suspended=False)


@post(
    "/api/v1/operator/tenants/{tenant_id:uuid}/suspend",
    opt=_OP_MANAGE,
    tags=OP_TAGS,
    summary="Suspend an organisation",
    status_code=HTTP_200_OK,
)
async def suspend_api(request: Req, tenant_id: FromPath[uuid.UUID]) -> Done:
    changed = await services.set_tenant_status(
        current_principal(request).user_id, tenant_id, suspended=True, ip=_ip(request)
    )
    return Done(ok=True, changed=changed)


@post(
    "/api/v1/operator/tenants/{tenant_id:uuid}/reactivate",
    opt=_OP_MANAGE,
    tags=OP_TAGS,
    summary="Reactivate an organisation",
    status_code=HTTP_200_OK,
)
async def reactivate_api(request: Req, tenant_id: FromPath[uuid.UUID]) -> Done:
    changed = await services.set_tenant_status(
        current_principal(request).user_id, tenant_id, suspended=False, ip=_ip(request)
    )
    return Done(ok=True, changed=changed)


ROUTES = [
    orgs_page,
    orgs_api,
    new_org_page,
    create_org_form,
    create_org_api,
    home_page,
    home_api,
    leave_form,
    leave_api,
    members_page,
    members_api,
    remove_member_form,
    remove_member_api,
    invitations_page,
    invitations_api,
    invite_form,
    invite_api,
    revoke_invitation_form,
    revoke_invitation_api,
    invite_page,
    invite_preview_api,
    accept_invite_form,
    accept_invite_api,
    roles_page,
    roles_api,
    grant_role_form,
    revoke_role_form,
    grant_role_api,
    revoke_role_api,
    modules_page,
    modules_api,
    switch_module_form,
    switch_module_api,
    module_home_page,
    module_home_api,
    operator_tenants_page,
    operator_tenants_api,
    suspend_form,
    reactivate_form,
    suspend_api,
    reactivate_api,
]
