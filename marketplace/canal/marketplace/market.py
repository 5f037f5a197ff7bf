"""The marketplace's services: providers, listings, quotes, orders, payment, messages,
reviews, commission and vouchers. They take plain values and a ``TenantContext`` (or an
operator's user id), open their own scopes, and raise ``CanalError`` with both languages.

The order state machine and the money rules are the pure core (``orders.py``, ``money.py``);
this module stores what they return. ``module`` ("services" here, "modelstore" later) keeps
the two markets' rows apart.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from canal.marketplace import catalogue, money, orders
from canal.marketplace.orders import Action, OrderState, Party
from canal.marketplace.tables import (
    CommissionRate,
    Listing,
    MarketSettings,
    Order,
    OrderEvent,
    OrderMessage,
    Provider,
    Quote,
    Review,
    Voucher,
)
from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.notifications.services import notify
from canal.platform.text import check_text
from canal.tenants.tables import Membership, Tenant

log = logging.getLogger("canal.marketplace")

MODULE = "services"
SEARCH_KIND = "service_listings"
TITLE_MAX = 120
TEXT_MAX = 5000
MAX_QUALIFICATIONS = 5


def _json(value: Any) -> Any:
    """Piccolo returns JSONB columns as text unless asked to load them."""
    return json.loads(value) if isinstance(value, str) else value


def _now() -> dt.datetime:
    return clock.now()


def _text(
    errors: list[FieldError],
    field: str,
    value: str | None,
    *,
    zh: str,
    en: str,
    limit: int,
    multiline: bool = True,
) -> str:
    """A required text field: at most ``limit`` characters, no control or text-direction
    characters (``canal.platform.text``); titles are single lines."""
    return check_text(
        errors,
        field,
        value,
        limit=limit,
        required=True,
        multiline=multiline,
        zh=zh,
        en=f"The {en}",
    )


def _price(errors: list[FieldError], field: str, value: str | int | None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            errors.append(
                FieldError(field, "price_negative", "价格不能为负数", "Prices cannot be negative")
            )
        return value
    try:
        return money.parse_price(str(value or ""))
    except money.PriceError as error:
        errors.append(error.field_error(field))
        return 0


# --- providers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderView:
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    status: str
    business_scope: str
    qualification_file_ids: list[str]
    reason: str
    created_at: dt.datetime


def _provider_view(row: dict[str, Any], name: str) -> ProviderView:
    return ProviderView(
        id=row["id"],
        tenant_id=row["tenant_id"],
        tenant_name=name,
        status=row["status"],
        business_scope=row["business_scope"],
        qualification_file_ids=[str(f) for f in _json(row["qualification_file_ids"]) or []],
        reason=row["reason"],
        created_at=row["created_at"],
    )


async def _tenant_names(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await Tenant.select(Tenant.id, Tenant.name).where(Tenant.id.is_in(list(set(ids))))
    return {r["id"]: r["name"] for r in rows}


async def my_provider(ctx: TenantContext) -> ProviderView | None:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await Provider.select().where(Provider.tenant_id == ctx.tenant_id).first()
    return _provider_view(row, ctx.tenant.name) if row else None


async def apply_as_provider(
    ctx: TenantContext,
    *,
    business_scope: str,
    qualification_file_ids: Sequence[uuid.UUID],
    ip: str = "",
) -> ProviderView:
    """An enterprise applies (or re-applies after a rejection) to sell services."""
    errors: list[FieldError] = []
    scope = _text(
        errors, "business_scope", business_scope, zh="经营范围", en="business scope", limit=2000
    )
    if not qualification_file_ids:
        errors.append(
            FieldError(
                "qualifications",
                "qualifications_missing",
                "请上传至少一份资质证明文件。",
                "Upload at least one qualification document.",
            )
        )
    if len(qualification_file_ids) > MAX_QUALIFICATIONS:
        errors.append(
            FieldError(
                "qualifications",
                "too_many_files",
                f"资质文件最多 {MAX_QUALIFICATIONS} 份。",
                f"At most {MAX_QUALIFICATIONS} qualification documents.",
            )
        )
    if ctx.tenant.kind != "enterprise":
        errors.append(
            FieldError(
                "business_scope",
                "not_an_enterprise",
                "只有企业可以申请成为服务商。",
                "Only enterprises can apply to become providers.",
            )
        )
    if errors:
        raise invalid(errors)
    from canal.platform.storage.services import get_object_to_share

    for file_id in qualification_file_ids:
        await get_object_to_share(file_id, ctx)  # the applicant's own files, for the operator
    files = [str(f) for f in qualification_file_ids]
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        existing = await Provider.select().where(Provider.tenant_id == ctx.tenant_id).first()
        if existing and existing["status"] in {"pending", "approved", "suspended"}:
            raise CanalError(
                "provider_already_applied",
                "本组织已提交过服务商申请。",
                "This organisation has already applied to be a provider.",
                status=409,
            )
        if existing:
            await Provider.update(
                {
                    Provider.status: "pending",
                    Provider.business_scope: scope,
                    Provider.qualification_file_ids: files,
                    Provider.reason: "",
                    Provider.applied_by: ctx.user_id,
                }
            ).where(Provider.id == existing["id"])
        else:
            await Provider.insert(
                Provider(
                    tenant_id=ctx.tenant_id,
                    business_scope=scope,
                    qualification_file_ids=files,
                    applied_by=ctx.user_id,
                )
            )
        await record(
            "market.provider_applied",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(ctx.tenant_id),
            ip=ip,
            data={"files": len(files)},
        )
    view = await my_provider(ctx)
    assert view is not None
    return view


async def require_provider(ctx: TenantContext) -> ProviderView:
    view = await my_provider(ctx)
    if view is None or view.status != "approved":
        raise CanalError(
            "provider_not_approved",
            "本组织还不是经批准的服务商。",
            "This organisation is not an approved provider.",
            status=403,
        )
    return view


async def list_providers(
    operator_id: uuid.UUID, *, status: str | None = None
) -> list[ProviderView]:
    async with db.platform_scope(operator_id):
        query = Provider.select().order_by(Provider.created_at, ascending=False)
        if status:
            query = query.where(Provider.status == status)
        rows = await query
        names = await _tenant_names([r["tenant_id"] for r in rows])
    return [_provider_view(r, names.get(r["tenant_id"], "")) for r in rows]


PROVIDER_DECISIONS = {"approve": "approved", "reject": "rejected", "suspend": "suspended"}


async def qualification_file_names(
    operator_id: uuid.UUID, file_ids: Sequence[str]
) -> dict[str, str]:
    """Original names of qualification files, for the operator's desk."""
    from canal.platform.storage.tables import StoredObject

    if not file_ids:
        return {}
    async with db.platform_scope(operator_id):
        rows = await StoredObject.select(StoredObject.id, StoredObject.original_name).where(
            StoredObject.id.is_in([uuid.UUID(str(f)) for f in file_ids])
        )
    return {str(r["id"]): r["original_name"] for r in rows}


async def qualification_file_url(
    operator_id: uuid.UUID, provider_id: uuid.UUID, file_id: uuid.UUID, ip: str = ""
) -> str:
    """A five-minute link to one of a provider application's qualification files, for the
    operator reviewing it (the caller checked the platform role). Only a file the application
    names; each opening is audited in the provider's trail."""
    from canal.platform.http.context import TenantRef
    from canal.platform.storage.services import get_object_in_tenant, object_store

    async with db.platform_scope(operator_id):
        row = await Provider.select().where(Provider.id == provider_id).first()
        if row is None or str(file_id) not in [
            str(f) for f in _json(row["qualification_file_ids"]) or []
        ]:
            raise not_found()
        owner = TenantContext(
            TenantRef(row["tenant_id"], "", "", "enterprise", "active"), operator_id, ()
        )
        stored = await get_object_in_tenant(file_id, owner)
        await record(
            "market.qualification_viewed",
            actor_id=operator_id,
            tenant_id=row["tenant_id"],
            target=str(file_id),
            ip=ip,
            data={"provider": str(provider_id), "name": stored.original_name},
        )
    return await object_store().presigned_get(stored, owner)


async def decide_provider(
    operator_id: uuid.UUID, provider_id: uuid.UUID, decision: str, reason: str = "", ip: str = ""
) -> ProviderView:
    """The operator approves, rejects (with a reason) or suspends (with a reason)."""
    reason = (reason or "").strip()
    if decision not in PROVIDER_DECISIONS:
        raise invalid(
            [
                FieldError(
                    "decision",
                    "bad_decision",
                    "请选择批准、驳回或暂停。",
                    "Choose approve, reject or suspend.",
                )
            ]
        )
    if decision != "approve" and not reason:
        raise invalid(
            [
                FieldError(
                    "reason",
                    "reason_required",
                    "驳回或暂停须填写原因。",
                    "A rejection or suspension needs a reason.",
                )
            ]
        )
    async with db.platform_scope(operator_id):
        row = await Provider.select().where(Provider.id == provider_id).first()
        if row is None:
            raise not_found()
        allowed = {
            "approve": {"pending", "suspended", "rejected"},
            "reject": {"pending"},
            "suspend": {"approved"},
        }[decision]
        if row["status"] not in allowed:
            raise CanalError(
                "provider_decision_not_allowed",
                "该服务商当前状态不能执行此操作。",
                f"A provider that is {row['status']} cannot be given this decision.",
                status=409,
            )
        status = PROVIDER_DECISIONS[decision]
        await Provider.update(
            {
                Provider.status: status,
                Provider.reason: reason[:2000],
                Provider.decided_by: operator_id,
                Provider.decided_at: _now(),
            }
        ).where(Provider.id == provider_id)
        if decision == "suspend":
            # A suspended provider's listings leave the catalogue until it is approved again.
            live = await Listing.select(Listing.id).where(
                (Listing.provider_id == row["tenant_id"]) & (Listing.status == "live")
            )
            await Listing.update({Listing.status: "suspended"}).where(
                (Listing.provider_id == row["tenant_id"]) & (Listing.status == "live")
            )
            _unindex_after_commit([r["id"] for r in live])
        elif decision == "approve" and row["status"] == "suspended":
            back = await Listing.select(Listing.id).where(
                (Listing.provider_id == row["tenant_id"]) & (Listing.status == "suspended")
            )
            await Listing.update({Listing.status: "live"}).where(
                (Listing.provider_id == row["tenant_id"]) & (Listing.status == "suspended")
            )
            _index_after_commit([r["id"] for r in back])
        await record(
            f"market.provider_{status}",
            actor_id=operator_id,
            tenant_id=row["tenant_id"],
            target=str(provider_id),
            ip=ip,
            data={"reason": reason[:200]},
        )
        await _notify_tenant(
            row["tenant_id"],
            title_zh={
                "approved": "服务商申请已通过",
                "rejected": "服务商申请被驳回",
                "suspended": "服务商资格已暂停",
            }[status],
            title_en={
                "approved": "Provider application approved",
                "rejected": "Provider application rejected",
                "suspended": "Provider suspended",
            }[status],
            body_zh=reason,
            body_en=reason,
            link="",
        )
        names = await _tenant_names([row["tenant_id"]])
        row = await Provider.select().where(Provider.id == provider_id).first()
    assert row is not None
    return _provider_view(row, names.get(row["tenant_id"], ""))


async def _members(tenant_id: uuid.UUID) -> list[uuid.UUID]:
    async with db.tenant_scope(tenant_id):
        rows = await Membership.select(Membership.user_id).where(Membership.tenant_id == tenant_id)
    return [r["user_id"] for r in rows]


async def _notify_tenant(
    tenant_id: uuid.UUID,
    *,
    title_zh: str,
    title_en: str,
    body_zh: str = "",
    body_en: str = "",
    link: str = "",
) -> None:
    """Tell an organisation's members (inside the caller's transaction: a rollback tells nobody).
    ``link`` is a path inside the module (``/orders/…``), made absolute for that organisation."""
    if link.startswith("/") and not link.startswith("/t/"):
        row = await Tenant.select(Tenant.slug).where(Tenant.id == tenant_id).first()
        link = f"/t/{row['slug']}/m/{MODULE}{link}" if row else ""
    people = await _members(tenant_id)
    if people:
        await notify(
            people,
            "market.update",
            title_zh=title_zh,
            title_en=title_en,
            body_zh=body_zh,
            body_en=body_en,
            link=link,
            tenant_id=tenant_id,
        )


# --- listings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListingView:
    id: uuid.UUID
    provider_id: uuid.UUID
    provider_name: str
    category: str
    subcategory: str
    title: str
    description: str
    area: str
    delivery_days: int
    price_model: str
    price_fen: int
    status: str
    pending_changes: dict[str, Any] | None
    review_reason: str
    rating_count: int
    rating_avg: float | None
    created_at: dt.datetime
    packages: list[dict[str, Any]]
    image_ids: list[str]
    options: list[dict[str, Any]] = field(default_factory=list)

    @property
    def price_text(self) -> str:
        return money.format_cny(self.price_fen)

    @property
    def addons(self) -> list[tuple[int, dict[str, Any]]]:
        """The options without a group (each may be added), with their positions."""
        return [(i, o) for i, o in enumerate(self.options) if not o.get("group")]

    @property
    def choice_groups(self) -> list[tuple[str, list[tuple[int, dict[str, Any]]]]]:
        """The choice groups (pick exactly one of each), in order, with positions."""
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, o in enumerate(self.options):
            if o.get("group"):
                groups.setdefault(str(o["group"]), []).append((i, o))
        return list(groups.items())


LISTING_FIELDS = (
    "category",
    "subcategory",
    "title",
    "description",
    "area",
    "delivery_days",
    "price_model",
    "price_fen",
    "package_options",
    "options",
)


def _listing_view(row: dict[str, Any], provider_name: str) -> ListingView:
    count = row["rating_count"] or 0
    return ListingView(
        id=row["id"],
        provider_id=row["provider_id"],
        provider_name=provider_name,
        category=row["category"],
        subcategory=row["subcategory"],
        title=row["title"],
        description=row["description"],
        area=row["area"],
        delivery_days=row["delivery_days"],
        price_model=row["price_model"],
        price_fen=row["price_fen"],
        status=row["status"],
        pending_changes=_json(row["pending_changes"]),
        review_reason=row["review_reason"],
        rating_count=count,
        rating_avg=round(row["rating_sum"] / count, 1) if count else None,
        created_at=row["created_at"],
        packages=list(_json(row["package_options"]) or []),
        image_ids=[str(i) for i in _json(row["image_file_ids"]) or []],
        options=list(_json(row.get("options")) or []),
    )


def validate_listing(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a listing form or API body, checked; raises ``invalid`` with every problem."""
    errors: list[FieldError] = []
    category = str(data.get("category") or "")
    if category not in catalogue.BY_KEY:
        errors.append(
            FieldError("category", "bad_category", "请选择服务类别。", "Choose a category.")
        )
    subcategory = str(data.get("subcategory") or "")
    if (
        category in catalogue.BY_KEY
        and subcategory
        and subcategory not in {s[0] for s in catalogue.BY_KEY[category].subcategories}
    ):
        errors.append(
            FieldError(
                "subcategory",
                "bad_subcategory",
                "子类别不属于所选类别。",
                "That sub-category is not in the category.",
            )
        )
    title = _text(
        errors,
        "title",
        data.get("title"),
        zh="服务名称",
        en="title",
        limit=TITLE_MAX,
        multiline=False,
    )
    description = _text(
        errors,
        "description",
        data.get("description"),
        zh="服务介绍",
        en="description",
        limit=TEXT_MAX,
    )
    area = str(data.get("area") or "")
    if area not in catalogue.AREA_KEYS:
        errors.append(FieldError("area", "bad_area", "请选择服务区域。", "Choose a service area."))
    raw_days = data.get("delivery_days")
    try:
        days = int(str(raw_days).strip())
        if not 1 <= days <= 365:
            raise ValueError
    except ValueError:
        days = 0
        errors.append(
            FieldError(
                "delivery_days",
                "bad_days",
                "交付周期须为 1–365 天。",
                "Delivery time is 1 to 365 days.",
            )
        )
    price_model = str(data.get("price_model") or "")
    price_fen = 0
    if price_model not in {m[0] for m in catalogue.PRICE_MODELS}:
        errors.append(
            FieldError(
                "price_model", "bad_price_model", "请选择价格方式。", "Choose a price model."
            )
        )
    elif price_model == "fixed":
        price_fen = _price(errors, "price", data.get("price"))
        if price_fen == 0 and not any(e.field == "price" for e in errors):
            errors.append(
                FieldError(
                    "price",
                    "price_zero",
                    "固定价格须大于零;免费请选择“免费咨询”。",
                    "A fixed price is above zero; choose free consultation instead.",
                )
            )
    packages = _packages(errors, data.get("packages"), price_model)
    options = _listing_options(errors, data.get("options"), price_model)
    if errors:
        raise invalid(errors)
    return {
        "package_options": packages,
        "options": options,
        "category": category,
        "subcategory": subcategory,
        "title": title,
        "description": description,
        "area": area,
        "delivery_days": days,
        "price_model": price_model,
        "price_fen": price_fen,
    }


MAX_PACKAGES = 6


def _unsafe_name(name: str) -> bool:
    """A package or option name the catalogue would show as something else: control or
    text-direction characters (the message asks for a plain name)."""
    found: list[FieldError] = []
    check_text(found, "name", name, limit=len(name) or 1)
    return bool(found)


def _packages(errors: list[FieldError], raw: Any, price_model: str) -> list[dict[str, Any]]:
    """Extra fixed-price packages (套餐): from the API a list of {name, price}, from the form
    one "name | price" per line. Only for fixed-price listings."""
    if not raw:
        return []
    if isinstance(raw, str):
        items = []
        for line in raw.splitlines():
            if line.strip():
                name, _, price = line.replace("|", "|").rpartition("|")
                items.append({"name": name, "price": price})
    else:
        items = [dict(i) if isinstance(i, dict) else {} for i in raw]
    if price_model != "fixed":
        errors.append(
            FieldError(
                "packages",
                "packages_need_fixed_price",
                "只有固定价格的服务可以设置套餐。",
                "Only fixed-price services have packages.",
            )
        )
        return []
    if len(items) > MAX_PACKAGES:
        errors.append(
            FieldError(
                "packages",
                "too_many_packages",
                f"最多 {MAX_PACKAGES} 个套餐。",
                f"At most {MAX_PACKAGES} packages.",
            )
        )
        return []
    packages = []
    for number, item in enumerate(items, start=1):
        name = str(item.get("name") or "").strip()
        if not name or len(name) > 40 or _unsafe_name(name):
            errors.append(
                FieldError(
                    "packages",
                    "bad_package",
                    f"第 {number} 个套餐:请写“名称 | 价格”,名称不超过 40 字。",
                    f"Package {number}: write “name | price”, a name of at most 40 characters.",
                )
            )
            continue
        try:
            fen = money.parse_price(str(item.get("price") or ""))
        except money.PriceError as error:
            errors.append(
                FieldError(
                    "packages",
                    error.code,
                    f"第 {number} 个套餐:{error.zh}",
                    f"Package {number}: {error.en}",
                )
            )
            continue
        if fen == 0:
            errors.append(
                FieldError(
                    "packages",
                    "price_zero",
                    f"第 {number} 个套餐:价格须大于零。",
                    f"Package {number}: the price is above zero.",
                )
            )
            continue
        packages.append({"name": name, "price_fen": fen})
    return packages


MAX_OPTIONS = 12
OPTION_NAME_MAX = 40
OPTION_GROUP_MAX = 20


def _listing_options(errors: list[FieldError], raw: Any, price_model: str) -> list[dict[str, Any]]:
    """Options the buyer picks at checkout, each with a price added (≥ 0): from the API a list
    of {group, name, price}, from the form one per line — "name | price" for an add-on,
    "group: name | price" for one choice of a group (the buyer picks exactly one per group)."""
    if not raw:
        return []
    if isinstance(raw, str):
        items = []
        for line in raw.splitlines():
            if line.strip():
                text, _, price = line.replace("|", "|").rpartition("|")
                group, sep, name = text.replace(":", ":").partition(":")
                if not sep:
                    group, name = "", text
                items.append({"group": group, "name": name, "price": price})
    elif isinstance(raw, list):
        items = [dict(i) if isinstance(i, dict) else {} for i in raw]
    else:
        items = [{}]
    if price_model != "fixed":
        errors.append(
            FieldError(
                "options",
                "options_need_fixed_price",
                "只有固定价格的服务可以设置选项。",
                "Only fixed-price services have options.",
            )
        )
        return []
    if len(items) > MAX_OPTIONS:
        errors.append(
            FieldError(
                "options",
                "too_many_options",
                f"最多 {MAX_OPTIONS} 个选项。",
                f"At most {MAX_OPTIONS} options.",
            )
        )
        return []
    options: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for number, item in enumerate(items, start=1):
        group = str(item.get("group") or "").strip()
        name = str(item.get("name") or "").strip()
        if (
            not name
            or len(name) > OPTION_NAME_MAX
            or len(group) > OPTION_GROUP_MAX
            or _unsafe_name(name)
            or _unsafe_name(group)
        ):
            errors.append(
                FieldError(
                    "options",
                    "bad_option",
                    f"第 {number} 个选项:请写“名称 | 加价”或“组名: 名称 | 加价”,"
                    f"名称不超过 {OPTION_NAME_MAX} 字,组名不超过 {OPTION_GROUP_MAX} 字。",
                    f"Option {number}: write “name | price” or “group: name | price”; a name "
                    f"of at most {OPTION_NAME_MAX} characters, a group of at most "
                    f"{OPTION_GROUP_MAX}.",
                )
            )
            continue
        if (group, name) in seen:
            errors.append(
                FieldError(
                    "options",
                    "duplicate_option",
                    f"第 {number} 个选项与前面的选项重名。",
                    f"Option {number} has the same name as an earlier one.",
                )
            )
            continue
        seen.add((group, name))
        try:
            fen = money.parse_price(str(item.get("price") if item.get("price") is not None else ""))
        except money.PriceError as error:
            errors.append(
                FieldError(
                    "options",
                    error.code,
                    f"第 {number} 个选项:{error.zh}",
                    f"Option {number}: {error.en}",
                )
            )
            continue
        options.append({"group": group, "name": name, "price_fen": fen})
    return options


def choose_options(listing: ListingView, chosen: Sequence[int | str]) -> list[dict[str, Any]]:
    """The buyer's choice of the listing's options (by position), checked: each known, none
    twice, exactly one of each choice group. Returns the chosen options as priced now."""

    def refuse(code: str, zh: str, en: str) -> CanalError:
        return invalid([FieldError("options", code, zh, en)])

    positions: list[int] = []
    for raw in chosen:
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 3):
            raise refuse("option_unknown", "所选选项不存在。", "That option does not exist.")
        position = int(text)
        if position >= len(listing.options):
            raise refuse("option_unknown", "所选选项不存在。", "That option does not exist.")
        if position in positions:
            raise refuse("option_twice", "同一选项只能选一次。", "Each option can be chosen once.")
        positions.append(position)
    picked = [listing.options[i] for i in sorted(positions)]
    for group, _members in listing.choice_groups:
        count = sum(1 for o in picked if o.get("group") == group)
        if count != 1:
            raise refuse(
                "option_group_choice",
                f"“{group}”请选择且只选择一项。",
                f"Choose exactly one for “{group}”.",
            )
    return [
        {"group": str(o.get("group") or ""), "name": o["name"], "price_fen": int(o["price_fen"])}
        for o in picked
    ]


MAX_IMAGES = 4
IMAGE_TYPES = ("image/jpeg", "image/png")


def check_image_count(count: int) -> None:
    if count > MAX_IMAGES:
        raise invalid(
            [
                FieldError(
                    "images",
                    "too_many_images",
                    f"最多 {MAX_IMAGES} 张图片。",
                    f"At most {MAX_IMAGES} pictures.",
                )
            ]
        )


async def _check_images(ctx: TenantContext, image_ids: Sequence[uuid.UUID]) -> list[str]:
    """The provider's own uploaded pictures (type checked by the storage service): shown to
    every buyer, so attached like any file another organisation reads."""
    from canal.platform.storage.services import get_object_to_share

    check_image_count(len(image_ids))
    for image_id in image_ids:
        stored = await get_object_to_share(image_id, ctx)
        if stored.content_type not in IMAGE_TYPES:
            raise invalid(
                [
                    FieldError(
                        "images",
                        "not_an_image",
                        "图片须为 JPEG 或 PNG。",
                        "Pictures are JPEG or PNG.",
                    )
                ]
            )
    return [str(i) for i in image_ids]


async def create_listing(
    ctx: TenantContext,
    data: dict[str, Any],
    ip: str = "",
    *,
    image_ids: Sequence[uuid.UUID] = (),
) -> ListingView:
    await require_provider(ctx)
    fields = validate_listing(data)
    fields["image_file_ids"] = await _check_images(ctx, image_ids)
    listing = Listing(
        module=MODULE, provider_id=ctx.tenant_id, status="pending", created_by=ctx.user_id, **fields
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await listing.save()
        await record(
            "market.listing_submitted",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(listing.id),
            ip=ip,
            data={"title": fields["title"]},
        )
    return await get_listing(listing.id, ctx)


async def get_listing(listing_id: uuid.UUID, ctx: TenantContext) -> ListingView:
    """A live listing for anyone signed in; any state for its own provider."""
    row = (
        await Listing.select()
        .where((Listing.id == listing_id) & (Listing.module == MODULE))
        .first()
    )
    if row is None or (row["status"] != "live" and row["provider_id"] != ctx.tenant_id):
        raise not_found()
    names = await _tenant_names([row["provider_id"]])
    return _listing_view(row, names.get(row["provider_id"], ""))


async def _listing_image(
    listing_id: uuid.UUID, image_id: uuid.UUID, ctx: TenantContext
) -> tuple[Any, TenantContext]:
    from canal.platform.http.context import TenantRef
    from canal.platform.storage.services import get_object_in_tenant

    listing = await get_listing(listing_id, ctx)
    if str(image_id) not in listing.image_ids:
        raise not_found()
    owner = TenantContext(
        TenantRef(listing.provider_id, "", "", "enterprise", "active"), ctx.user_id, ()
    )
    return await get_object_in_tenant(image_id, owner), owner


async def listing_image_url(listing_id: uuid.UUID, image_id: uuid.UUID, ctx: TenantContext) -> str:
    """A five-minute link to one of a listing's pictures, for anyone who may see the listing
    (the pictures are the provider's objects; the listing is the permission)."""
    from canal.platform.storage.services import object_store

    stored, owner = await _listing_image(listing_id, image_id, ctx)
    return await object_store().presigned_get(stored, owner)


async def listing_image_bytes(
    listing_id: uuid.UUID, image_id: uuid.UUID, ctx: TenantContext
) -> tuple[bytes, str]:
    """One of a listing's pictures (a re-encoded photo, ≤ 2 MB) and its content type, for the
    page's ``<img>``: the portal's CSP allows images from itself only, so a redirect to the
    object store's presigned URL would show a broken picture."""
    from canal.platform.storage.services import object_store

    stored, _owner = await _listing_image(listing_id, image_id, ctx)
    return await object_store().read_all(stored), stored.content_type


async def get_own_listing(listing_id: uuid.UUID, ctx: TenantContext) -> ListingView:
    view = await get_listing(listing_id, ctx)
    if view.provider_id != ctx.tenant_id:
        raise not_found()
    return view


async def update_listing(
    listing_id: uuid.UUID,
    ctx: TenantContext,
    data: dict[str, Any],
    ip: str = "",
    *,
    image_ids: Sequence[uuid.UUID] | None = None,
) -> ListingView:
    """A provider edits its listing. A live listing keeps its reviewed text until the operator
    approves the edit (``pending_changes``); any other one goes (back) to review as a whole.
    ``image_ids`` (the provider's own pictures) replaces the pictures; None keeps them."""
    await require_provider(ctx)
    current = await get_own_listing(listing_id, ctx)
    fields = validate_listing(data)
    if image_ids is not None:
        fields["image_file_ids"] = await _check_images(ctx, image_ids)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        if current.status == "live":
            await Listing.update(
                {Listing.pending_changes: fields, Listing.updated_at: _now()}
            ).where((Listing.id == listing_id) & (Listing.provider_id == ctx.tenant_id))
        else:
            await Listing.update(
                {
                    **{getattr(Listing, k): v for k, v in fields.items()},
                    Listing.status: "pending",
                    Listing.pending_changes: None,
                    Listing.review_reason: "",
                    Listing.updated_at: _now(),
                }
            ).where((Listing.id == listing_id) & (Listing.provider_id == ctx.tenant_id))
        await record(
            "market.listing_edited",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(listing_id),
            ip=ip,
            data={"was": current.status},
        )
    return await get_own_listing(listing_id, ctx)


async def provider_listings(ctx: TenantContext) -> list[ListingView]:
    rows = (
        await Listing.select()
        .where((Listing.provider_id == ctx.tenant_id) & (Listing.module == MODULE))
        .order_by(Listing.created_at, ascending=False)
    )
    return [_listing_view(r, ctx.tenant.name) for r in rows]


async def review_queue(operator_id: uuid.UUID) -> list[ListingView]:
    """Listings waiting for the operator: new ones and edits of live ones."""
    rows = (
        await Listing.select()
        .where(
            (Listing.module == MODULE)
            & ((Listing.status == "pending") | Listing.pending_changes.is_not_null())
        )
        .order_by(Listing.updated_at)
    )
    names = await _tenant_names([r["provider_id"] for r in rows])
    return [_listing_view(r, names.get(r["provider_id"], "")) for r in rows]


async def review_listing(
    operator_id: uuid.UUID, listing_id: uuid.UUID, decision: str, reason: str = "", ip: str = ""
) -> ListingView:
    reason = (reason or "").strip()
    if decision not in {"approve", "reject"}:
        raise invalid(
            [
                FieldError(
                    "decision", "bad_decision", "请选择通过或驳回。", "Choose approve or reject."
                )
            ]
        )
    if decision == "reject" and not reason:
        raise invalid(
            [
                FieldError(
                    "reason", "reason_required", "驳回须填写原因。", "A rejection needs a reason."
                )
            ]
        )
    async with db.platform_scope(operator_id):
        row = await Listing.select().where(Listing.id == listing_id).first()
        if row is None:
            raise not_found()
        edit = _json(row["pending_changes"])
        if row["status"] != "pending" and edit is None:
            raise CanalError(
                "listing_not_in_review",
                "该服务不在审核中。",
                "This listing is not waiting for review.",
                status=409,
            )
        updates: dict[Any, Any] = {Listing.review_reason: reason[:2000], Listing.updated_at: _now()}
        if decision == "approve":
            if edit is not None:
                updates.update(
                    {
                        getattr(Listing, k): v
                        for k, v in edit.items()
                        if k in LISTING_FIELDS or k == "image_file_ids"
                    }
                )
            updates[Listing.status] = "live"
            updates[Listing.pending_changes] = None
        elif edit is not None:
            updates[Listing.pending_changes] = None  # the reviewed version stays live
        else:
            updates[Listing.status] = "rejected"
        await Listing.update(updates).where(Listing.id == listing_id)
        await record(
            f"market.listing_{'approved' if decision == 'approve' else 'rejected'}",
            actor_id=operator_id,
            tenant_id=row["provider_id"],
            target=str(listing_id),
            ip=ip,
            data={"edit": edit is not None, "reason": reason[:200]},
        )
        await _notify_tenant(
            row["provider_id"],
            title_zh=f"服务「{row['title']}」审核{'通过' if decision == 'approve' else '未通过'}",
            title_en=f"Listing “{row['title']}” "
            + ("approved" if decision == "approve" else "rejected"),
            body_zh=reason,
            body_en=reason,
        )
        if decision == "approve":
            _index_after_commit([listing_id])
        names = await _tenant_names([row["provider_id"]])
        row = await Listing.select().where(Listing.id == listing_id).first()
    assert row is not None
    return _listing_view(row, names.get(row["provider_id"], ""))


# --- search documents -------------------------------------------------------------------------


def listing_document(row: dict[str, Any], provider_name: str) -> dict[str, Any]:
    count = row["rating_count"] or 0
    return {
        "id": str(row["id"]),
        "tenant_id": str(row["provider_id"]),
        "visibility": "public",
        "title": row["title"],
        "description": row["description"][:2000],
        "provider_name": provider_name,
        "provider_id": str(row["provider_id"]),
        "category": row["category"],
        "category_name": catalogue.category_name(row["category"], "zh"),
        "subcategory": row["subcategory"],
        "area": row["area"],
        "price_model": row["price_model"],
        "price_fen": row["price_fen"],
        "delivery_days": row["delivery_days"],
        "rating": round(row["rating_sum"] / count, 2) if count else 0,
        "rating_count": count,
    }


async def listing_documents(ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    rows = await Listing.select().where(Listing.id.is_in(list(ids)) & (Listing.status == "live"))
    names = await _tenant_names([r["provider_id"] for r in rows])
    return [listing_document(r, names.get(r["provider_id"], "")) for r in rows]


async def load_listings() -> Any:
    """The index's loader (``canal search reindex``): every live supermarket listing."""
    rows = await Listing.select().where((Listing.status == "live") & (Listing.module == MODULE))
    names = await _tenant_names([r["provider_id"] for r in rows])
    for row in rows:
        yield listing_document(row, names.get(row["provider_id"], ""))


async def sync_search(ids: Sequence[uuid.UUID]) -> None:
    """Put the listings' current state into the index (live ones) or take them out."""
    from canal.platform.search.services import get_service

    service = get_service()
    docs = await listing_documents(ids)
    live = {d["id"] for d in docs}
    gone = [str(i) for i in ids if str(i) not in live]
    if docs:
        await service.upsert(SEARCH_KIND, docs, wait=True)
    if gone:
        await service.delete(SEARCH_KIND, gone, wait=True)


async def rebuild_search() -> int:
    """Rebuild the catalogue's index from the table (a fresh index swapped in), so it holds
    exactly the live listings — nothing left from an earlier database."""
    from canal.platform.search.services import get_service

    return await get_service().reindex(SEARCH_KIND)


def _index_after_commit(ids: Sequence[uuid.UUID]) -> None:
    # Indexed right after the commit so the catalogue shows the change at once. The change
    # itself is committed either way: a search server that is down or not configured only
    # delays the catalogue, and ``canal search reindex service_listings`` rebuilds it.
    keys = list(ids)

    async def sync() -> None:
        try:
            await sync_search(keys)
        except Exception:
            log.warning("service listings not indexed: %s", keys, exc_info=True)

    if keys:
        db.on_commit(sync)


_unindex_after_commit = _index_after_commit


# --- quotes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteView:
    id: uuid.UUID
    buyer_id: uuid.UUID
    buyer_name: str
    provider_id: uuid.UUID
    provider_name: str
    listing_id: uuid.UUID
    listing_title: str
    need: str
    status: str
    price_fen: int | None
    scope: str
    valid_until: dt.date | None
    counter_note: str
    order_id: uuid.UUID | None
    created_at: dt.datetime
    counter_price_fen: int | None = None  # the buyer's proposed price (the provider decides)

    def side(self, tenant_id: uuid.UUID) -> str:
        return "buyer" if tenant_id == self.buyer_id else "provider"

    @property
    def price_text(self) -> str:
        return money.format_cny(self.price_fen) if self.price_fen is not None else ""


async def _quote_views(rows: list[dict[str, Any]]) -> list[QuoteView]:
    names = await _tenant_names(
        [r["tenant_id"] for r in rows] + [r["provider_tenant_id"] for r in rows]
    )
    titles = {}
    if rows:
        listing_rows = await Listing.select(Listing.id, Listing.title).where(
            Listing.id.is_in([r["listing_id"] for r in rows])
        )
        titles = {r["id"]: r["title"] for r in listing_rows}
    return [
        QuoteView(
            id=r["id"],
            buyer_id=r["tenant_id"],
            buyer_name=names.get(r["tenant_id"], ""),
            provider_id=r["provider_tenant_id"],
            provider_name=names.get(r["provider_tenant_id"], ""),
            listing_id=r["listing_id"],
            listing_title=titles.get(r["listing_id"], ""),
            need=r["need"],
            status=r["status"],
            price_fen=r["price_fen"],
            scope=r["scope"],
            valid_until=r["valid_until"],
            counter_note=r["counter_note"],
            order_id=r["order_id"],
            created_at=r["created_at"],
            counter_price_fen=r.get("counter_price_fen"),
        )
        for r in rows
    ]


async def request_quote(
    listing_id: uuid.UUID, ctx: TenantContext, need: str, ip: str = ""
) -> QuoteView:
    listing = await get_listing(listing_id, ctx)
    errors: list[FieldError] = []
    text = _text(errors, "need", need, zh="需求描述", en="description of your need", limit=TEXT_MAX)
    if errors:
        raise invalid(errors)
    if listing.status != "live":
        raise not_found()
    if listing.provider_id == ctx.tenant_id:
        raise CanalError(
            "own_listing",
            "不能向自己的服务询价或下单。",
            "You cannot buy your own service.",
            status=409,
        )
    quote = Quote(
        tenant_id=ctx.tenant_id,
        provider_tenant_id=listing.provider_id,
        listing_id=listing.id,
        need=text,
        requested_by=ctx.user_id,
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await quote.save()
        await record(
            "market.quote_requested",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(quote.id),
            ip=ip,
            data={"listing": str(listing.id)},
        )
        await _notify_tenant(
            listing.provider_id,
            title_zh=f"新询价:{listing.title}",
            title_en=f"New quote request: {listing.title}",
            link=f"/quotes/{quote.id}",
            body_zh=text[:200],
            body_en=text[:200],
        )
    return await get_quote(quote.id, ctx)


async def get_quote(quote_id: uuid.UUID, ctx: TenantContext) -> QuoteView:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await Quote.select().where(Quote.id == quote_id).first()
        if row is None:
            raise not_found()
        [view] = await _quote_views([row])
    return view


async def list_quotes(ctx: TenantContext) -> list[QuoteView]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await Quote.select().order_by(Quote.created_at, ascending=False).limit(200)
        return await _quote_views(rows)


def _quote_state_error(status: str) -> CanalError:
    labels = {
        "requested": ("待报价", "waiting for a quote"),
        "answered": ("已报价", "answered"),
        "countered": ("买方已还价", "countered by the buyer"),
        "accepted": ("已接受", "accepted"),
    }
    zh, en = labels.get(status, (status, status))
    return CanalError(
        "quote_action_not_allowed",
        f"询价当前为“{zh}”,不能执行此操作。",
        f"The quote is {en}, so this is not possible.",
        status=409,
    )


async def answer_quote(
    quote_id: uuid.UUID,
    ctx: TenantContext,
    *,
    price: str | int,
    scope: str,
    valid_until: str | dt.date | None,
    ip: str = "",
) -> QuoteView:
    """The provider answers a request (or a counter) with a price, scope and deadline."""
    await require_provider(ctx)
    quote = await get_quote(quote_id, ctx)
    if quote.provider_id != ctx.tenant_id:
        raise not_found()
    errors: list[FieldError] = []
    price_fen = _price(errors, "price", price)
    scope_text = _text(errors, "scope", scope, zh="服务范围", en="scope", limit=TEXT_MAX)
    deadline: dt.date | None = None
    try:
        deadline = (
            valid_until
            if isinstance(valid_until, dt.date)
            else dt.date.fromisoformat(str(valid_until or "").strip())
        )
    except ValueError:
        errors.append(
            FieldError(
                "valid_until",
                "bad_date",
                "请填写报价有效期(日期)。",
                "Enter the date the quote is valid until.",
            )
        )
    if deadline is not None and deadline < _today():
        errors.append(
            FieldError(
                "valid_until",
                "date_past",
                "报价有效期不能早于今天。",
                "The quote's deadline cannot be in the past.",
            )
        )
    if price_fen == 0 and not any(e.field == "price" for e in errors):
        errors.append(FieldError("price", "price_zero", "报价须大于零。", "A quote is above zero."))
    if errors:
        raise invalid(errors)
    if quote.status not in {"requested", "countered"}:
        raise _quote_state_error(quote.status)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        changed = (
            await Quote.update(
                {
                    Quote.status: "answered",
                    Quote.price_fen: price_fen,
                    Quote.scope: scope_text,
                    Quote.valid_until: deadline,
                    Quote.updated_at: _now(),
                }
            )
            .where((Quote.id == quote_id) & Quote.status.is_in(["requested", "countered"]))
            .returning(Quote.id)
        )
        if not changed:
            raise _quote_state_error("answered")
        await record(
            "market.quote_answered",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(quote_id),
            ip=ip,
            data={"price_fen": price_fen},
        )
        await _notify_tenant(
            quote.buyer_id,
            title_zh=f"服务商已报价:{quote.listing_title}",
            title_en=f"Quote answered: {quote.listing_title}",
            link=f"/quotes/{quote.id}",
            body_zh=money.format_cny(price_fen),
            body_en=money.format_cny(price_fen),
        )
    return await get_quote(quote_id, ctx)


def _today() -> dt.date:
    # Deadlines are dates in China's time zone (a quote valid "until 3 December" means there).
    return clock.today()


def _refuse_expired(quote: QuoteView) -> None:
    if quote.valid_until is not None and quote.valid_until < _today():
        raise CanalError(
            "quote_expired",
            f"该报价已于 {quote.valid_until.isoformat()} 过期,请服务商重新报价。",
            f"This quote expired on {quote.valid_until.isoformat()}; "
            "ask the provider for a new one.",
            status=409,
        )


async def counter_quote(
    quote_id: uuid.UUID, ctx: TenantContext, note: str, ip: str = "", *, price: str = ""
) -> QuoteView:
    """The buyer counters an answered quote: a note, and optionally the price it proposes
    (yuan, two decimals, above zero). The provider answers again; only a provider's answer
    is ever accepted into an order."""
    quote = await get_quote(quote_id, ctx)
    if quote.buyer_id != ctx.tenant_id:
        raise not_found()
    errors: list[FieldError] = []
    text = _text(errors, "counter_note", note, zh="还价说明", en="counter-offer", limit=TEXT_MAX)
    counter_fen: int | None = None
    if str(price or "").strip():
        counter_fen = _price(errors, "counter_price", str(price))
        if counter_fen == 0 and not any(e.field == "counter_price" for e in errors):
            errors.append(
                FieldError(
                    "counter_price",
                    "price_zero",
                    "还价金额须大于零。",
                    "The price you propose is above zero.",
                )
            )
    if errors:
        raise invalid(errors)
    if quote.status != "answered":
        raise _quote_state_error(quote.status)
    _refuse_expired(quote)  # a lapsed quote is neither accepted nor countered
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        changed = (
            await Quote.update(
                {
                    Quote.status: "countered",
                    Quote.counter_note: text,
                    Quote.counter_price_fen: counter_fen,
                    Quote.updated_at: _now(),
                }
            )
            .where((Quote.id == quote_id) & (Quote.status == "answered"))
            .returning(Quote.id)
        )
        if not changed:  # accepted (or countered) by a concurrent request meanwhile
            raise _quote_state_error("accepted")
        await record(
            "market.quote_countered",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(quote_id),
            ip=ip,
            data={"counter_price_fen": counter_fen} if counter_fen is not None else {},
        )
        proposed = f"{money.format_cny(counter_fen)} · " if counter_fen is not None else ""
        await _notify_tenant(
            quote.provider_id,
            title_zh=f"买方还价:{quote.listing_title}",
            title_en=f"Counter-offer: {quote.listing_title}",
            link=f"/quotes/{quote.id}",
            body_zh=(proposed + text)[:200],
            body_en=(proposed + text)[:200],
        )
    return await get_quote(quote_id, ctx)


async def accept_quote(quote_id: uuid.UUID, ctx: TenantContext, ip: str = "") -> OrderView:
    """The buyer accepts the provider's answer; the quote becomes an order at its price."""
    quote = await get_quote(quote_id, ctx)
    if quote.buyer_id != ctx.tenant_id:
        raise not_found()
    if quote.status != "answered" or quote.price_fen is None:
        raise _quote_state_error(quote.status)
    _refuse_expired(quote)
    listing_row = await Listing.select().where(Listing.id == quote.listing_id).first()
    assert listing_row is not None
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        order = await _place_order(
            ctx,
            listing_row,
            price_fen=quote.price_fen,
            quote_id=quote.id,
            title=listing_row["title"],
            ip=ip,
        )
        changed = (
            await Quote.update(
                {Quote.status: "accepted", Quote.order_id: order.id, Quote.updated_at: _now()}
            )
            .where((Quote.id == quote_id) & (Quote.status == "answered"))
            .returning(Quote.id)
        )
        if not changed:
            raise _quote_state_error("accepted")
    return await get_order(order.id, ctx)


# --- orders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderView:
    id: uuid.UUID
    buyer_id: uuid.UUID
    buyer_name: str
    provider_id: uuid.UUID
    provider_name: str
    listing_id: uuid.UUID
    quote_id: uuid.UUID | None
    title: str
    category: str
    state: str
    list_price_fen: int
    commission_rate_bp: int
    commission_fen: int
    payout_fen: int
    buyer_paid_fen: int
    voucher_subsidy_fen: int
    refunded_fen: int
    buyer_refunded_fen: int
    voucher_refunded_fen: int
    commission_reversed_fen: int
    payout_reversed_fen: int
    paid_at: dt.datetime | None
    voucher_id: uuid.UUID | None
    payment_key: str
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    options: list[dict[str, Any]] = field(default_factory=list)
    payout_route: str = ""

    @property
    def options_fen(self) -> int:
        return sum(int(o["price_fen"]) for o in self.options)

    @property
    def base_price_fen(self) -> int:
        """The listing's (or package's, or quote's) price before the options."""
        return self.list_price_fen - self.options_fen

    def party(self, ctx: TenantContext) -> Party:
        return Party.BUYER if ctx.tenant_id == self.buyer_id else Party.PROVIDER

    def routes(self) -> money.PayoutRoutes:
        """How the remaining payout travels: Stripe's transfer and the platform's own part.

        Orders paid before the route was recorded (``payout_route`` empty) count as paid to the
        platform; should a destination charge's split ever not add up (a bug, logged), the
        statement shows it as the platform's part instead of failing."""
        settlement = _settlement(self)
        if self.payout_route == "connect":
            try:
                return money.payout_routes(settlement, connect=True)
            except ValueError:
                log.error("payout routes of order %s do not add up", self.id)
        return money.payout_routes(settlement, connect=False)

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    def state_label(self, locale: str) -> str:
        zh, en = orders.STATE_LABELS[OrderState(self.state)]
        return zh if locale.startswith("zh") else en


async def commission_rate(category: str) -> int:
    row = (
        await CommissionRate.select(CommissionRate.rate_bp)
        .where(CommissionRate.category == category)
        .first()
    )
    return int(row["rate_bp"]) if row else catalogue.DEFAULT_COMMISSION_BP


async def commission_rates() -> dict[str, int]:
    rows = await CommissionRate.select(CommissionRate.category, CommissionRate.rate_bp)
    found = {r["category"]: r["rate_bp"] for r in rows}
    return {
        c.key: int(found.get(c.key, catalogue.DEFAULT_COMMISSION_BP)) for c in catalogue.CATEGORIES
    }


async def set_commission_rate(
    operator_id: uuid.UUID, category: str, rate: str | int, ip: str = ""
) -> int:
    """The operator's rate for a category, entered as a percentage with up to two decimals."""
    errors: list[FieldError] = []
    if category not in catalogue.BY_KEY:
        errors.append(
            FieldError("category", "bad_category", "请选择服务类别。", "Choose a category.")
        )
    bp = 0
    try:
        # A percentage has the same shape as a price (two decimals): 5.25 % = 525 bp.
        bp = money.parse_price(str(rate))
    except money.PriceError:
        errors.append(
            FieldError(
                "rate",
                "bad_rate",
                "佣金比例须为 0–30 之间的数字,最多两位小数。",
                "The rate is a number from 0 to 30 with at most two decimals.",
            )
        )
    else:
        if bp > 3000:
            errors.append(
                FieldError(
                    "rate", "rate_too_high", "佣金比例不能超过 30%。", "The rate cannot exceed 30%."
                )
            )
    if errors:
        raise invalid(errors)
    async with db.transaction():
        old = await commission_rate(category)
        await CommissionRate.insert(
            CommissionRate(category=category, rate_bp=bp, updated_by=operator_id)
        ).on_conflict(
            target=CommissionRate.category,
            action="DO UPDATE",
            values=[CommissionRate.rate_bp, CommissionRate.updated_by],
        )
        await record(
            "market.commission_set",
            actor_id=operator_id,
            target=category,
            ip=ip,
            data={"from_bp": old, "to_bp": bp},
        )
    return bp


def _order_view(row: dict[str, Any], names: dict[uuid.UUID, str]) -> OrderView:
    return OrderView(
        id=row["id"],
        buyer_id=row["tenant_id"],
        buyer_name=names.get(row["tenant_id"], ""),
        provider_id=row["provider_tenant_id"],
        provider_name=names.get(row["provider_tenant_id"], ""),
        listing_id=row["listing_id"],
        quote_id=row["quote_id"],
        title=row["title"],
        category=row["category"],
        state=row["state"],
        list_price_fen=row["list_price_fen"],
        commission_rate_bp=row["commission_rate_bp"],
        commission_fen=row["commission_fen"],
        payout_fen=row["payout_fen"],
        buyer_paid_fen=row["buyer_paid_fen"],
        voucher_subsidy_fen=row["voucher_subsidy_fen"],
        refunded_fen=row["refunded_fen"],
        buyer_refunded_fen=row["buyer_refunded_fen"],
        voucher_refunded_fen=row["voucher_refunded_fen"],
        commission_reversed_fen=row["commission_reversed_fen"],
        payout_reversed_fen=row["payout_reversed_fen"],
        paid_at=row["paid_at"],
        voucher_id=row["voucher_id"],
        payment_key=row["payment_key"],
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
        options=list(_json(row.get("options")) or []),
        payout_route=row.get("payout_route") or "",
    )


async def _place_order(
    ctx: TenantContext,
    listing_row: dict[str, Any],
    *,
    price_fen: int,
    quote_id: uuid.UUID | None,
    title: str,
    ip: str,
    options: Sequence[dict[str, Any]] = (),
) -> Order:
    """Insert the order (inside the caller's buyer-scoped transaction) with its settlement;
    ``price_fen`` already includes the chosen ``options``."""
    rate = await commission_rate(listing_row["category"])
    settlement = money.settle(
        price_fen, commission_rate_bp=rate, voucher=None, category=listing_row["category"]
    )
    order = Order(
        tenant_id=ctx.tenant_id,
        provider_tenant_id=listing_row["provider_id"],
        listing_id=listing_row["id"],
        quote_id=quote_id,
        module=listing_row["module"],
        title=title[:TITLE_MAX],
        category=listing_row["category"],
        state=OrderState.PLACED.value,
        list_price_fen=settlement.list_price_fen,
        commission_rate_bp=rate,
        commission_fen=settlement.commission_fen,
        payout_fen=settlement.payout_fen,
        buyer_paid_fen=settlement.buyer_paid_fen,
        voucher_subsidy_fen=settlement.voucher_subsidy_fen,
        options=list(options),
        placed_by=ctx.user_id,
    )
    await order.save()
    await OrderEvent.insert(
        OrderEvent(
            tenant_id=ctx.tenant_id,
            provider_tenant_id=listing_row["provider_id"],
            order_id=order.id,
            action="place",
            party=Party.BUYER.value,
            from_state="",
            to_state=OrderState.PLACED.value,
            actor_id=ctx.user_id,
        )
    )
    await record(
        "market.order_placed",
        actor_id=ctx.user_id,
        tenant_id=ctx.tenant_id,
        target=str(order.id),
        ip=ip,
        data={"list_price_fen": price_fen, "commission_fen": settlement.commission_fen},
    )
    await _notify_tenant(
        listing_row["provider_id"],
        title_zh=f"新订单:{title}",
        title_en=f"New order: {title}",
        link=f"/orders/{order.id}",
        body_zh=money.format_cny(price_fen),
        body_en=money.format_cny(price_fen),
    )
    return order


async def buy_listing(
    listing_id: uuid.UUID,
    ctx: TenantContext,
    ip: str = "",
    *,
    package: int | None = None,
    options: Sequence[int | str] = (),
) -> OrderView:
    """Order a fixed-price listing at its list price, or one of its packages (by position),
    with the chosen options (by position) added to the price."""
    listing = await get_listing(listing_id, ctx)
    if listing.status != "live":
        raise not_found()
    if listing.provider_id == ctx.tenant_id:
        raise CanalError(
            "own_listing",
            "不能向自己的服务询价或下单。",
            "You cannot buy your own service.",
            status=409,
        )
    if listing.price_model != "fixed":
        raise CanalError(
            "listing_not_fixed_price",
            "该服务需先询价,不能直接下单。",
            "This service is sold by quote; request a quote first.",
            status=409,
        )
    price_fen, title = listing.price_fen, listing.title
    if package is not None:
        if not 0 <= package < len(listing.packages):
            raise invalid(
                [FieldError("package", "bad_package_choice", "请选择套餐。", "Choose a package.")]
            )
        chosen = listing.packages[package]
        price_fen, title = int(chosen["price_fen"]), f"{listing.title} · {chosen['name']}"
    picked = choose_options(listing, options)
    price_fen += sum(o["price_fen"] for o in picked)
    if price_fen > money.MAX_PRICE_FEN:
        raise invalid(
            [
                FieldError(
                    "options",
                    "price_too_large",
                    "价格不能超过 ¥10,000,000.00",
                    "Prices cannot exceed ¥10,000,000.00",
                )
            ]
        )
    row = await Listing.select().where(Listing.id == listing_id).first()
    assert row is not None
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        order = await _place_order(
            ctx, row, price_fen=price_fen, quote_id=None, title=title, ip=ip, options=picked
        )
    return await get_order(order.id, ctx)


async def get_order(order_id: uuid.UUID, ctx: TenantContext) -> OrderView:
    """The order if ``ctx`` is its buyer or its provider; 404 for anyone else."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await Order.select().where(Order.id == order_id).first()
        if row is None:
            raise not_found()
        names = await _tenant_names([row["tenant_id"], row["provider_tenant_id"]])
    return _order_view(row, names)


async def list_orders(ctx: TenantContext, *, side: str | None = None) -> list[OrderView]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        query = Order.select().order_by(Order.created_at, ascending=False).limit(200)
        if side == "buyer":
            query = query.where(Order.tenant_id == ctx.tenant_id)
        elif side == "provider":
            query = query.where(Order.provider_tenant_id == ctx.tenant_id)
        rows = await query
        names = await _tenant_names(
            [r["tenant_id"] for r in rows] + [r["provider_tenant_id"] for r in rows]
        )
    return [_order_view(r, names) for r in rows]


@dataclass(frozen=True)
class EventView:
    action: str
    party: str
    from_state: str
    to_state: str
    note: str
    created_at: dt.datetime


async def order_history(order_id: uuid.UUID, ctx: TenantContext) -> list[EventView]:
    await get_order(order_id, ctx)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await OrderEvent.select()
            .where(OrderEvent.order_id == order_id)
            .order_by(OrderEvent.created_at)
        )
    return [
        EventView(
            r["action"], r["party"], r["from_state"], r["to_state"], r["note"], r["created_at"]
        )
        for r in rows
    ]


async def _provider_account(provider_id: uuid.UUID) -> str | None:
    """The provider's Stripe Connect account, when it has finished onboarding."""
    from canal.platform.billing.tables import ConnectedAccount

    async with db.tenant_scope(provider_id):
        row = (
            await ConnectedAccount.select().where(ConnectedAccount.tenant_id == provider_id).first()
        )
    if row is None:
        return None
    return str(row.get("stripe_account_id") or "") or None


async def pay_order(
    order_id: uuid.UUID,
    ctx: TenantContext,
    ip: str = "",
    *,
    voucher_id: uuid.UUID | None = None,
    voucher_ids: Sequence[uuid.UUID] = (),
    checkout: tuple[str, str] | None = None,
) -> tuple[OrderView, str | None]:
    """The buyer pays: a CNY PaymentIntent through billing (card, Alipay, WeChat Pay), a
    destination charge to the provider's Connect account keeping the commission. Returns the
    order and the client secret the browser confirms with (None once paid / in no-charge mode).
    Paying a paid order is refused; the order id is the idempotency key, so a retry never
    charges twice.

    ``checkout=(success_url, cancel_url)`` (the order page) uses a Stripe-hosted Checkout page
    instead and returns its URL in place of the client secret; the webhook marks the order
    paid (``_order_payment_succeeded``)."""
    from canal.platform.billing.services import create_payment, no_charge, start_payment_checkout

    order = await get_order(order_id, ctx)
    if order.buyer_id != ctx.tenant_id:
        raise not_found()
    order = await refresh_payment(order_id, ctx)
    if order.paid:
        raise CanalError(
            "order_already_paid",
            "该订单已付款,不能重复支付。",
            "This order has already been paid.",
            status=409,
        )
    if order.state != OrderState.PLACED.value:
        raise CanalError(
            "order_not_payable",
            "该订单当前状态不能付款。",
            "This order cannot be paid in its current state.",
            status=409,
        )
    vouchers = [*([voucher_id] if voucher_id is not None else []), *voucher_ids]
    if vouchers:
        if order.payment_key:
            raise CanalError(
                "voucher_after_payment",
                "付款已发起,不能再使用服务券。",
                "Payment has started; a voucher can no longer be applied.",
                status=409,
            )
        await _apply_vouchers(order, ctx, vouchers)
        order = await get_order(order_id, ctx)
    if order.buyer_paid_fen == 0:
        await _mark_paid_by_voucher(order, ctx)
        return await get_order(order_id, ctx), None
    destination = await _provider_account(order.provider_id)
    # The commission is on the list price; when a voucher pays most of it, the buyer's cash may
    # be less than the commission: Stripe keeps what it can (the fee cannot exceed the charge)
    # and the rest is kept from the voucher subsidy the platform forwards to the provider
    # (docs/marketplace.md, "Money").
    fee = money.stripe_fee(_settlement(order)) if destination else None
    if checkout is not None and not no_charge():
        url = await start_payment_checkout(
            ctx,
            order.buyer_paid_fen,
            f"企业服务超市订单 {order.title}",
            f"market-order-{order.id}",
            success_url=checkout[0],
            cancel_url=checkout[1],
            destination_account=destination,
            application_fee_fen=fee,
        )
        await _payment_started(order, destination, ctx)
        return await get_order(order_id, ctx), url
    payment = await create_payment(
        ctx,
        order.buyer_paid_fen,
        f"企业服务超市订单 {order.title}",
        f"market-order-{order.id}",
        destination_account=destination,
        application_fee_fen=fee,
    )
    await _payment_started(order, destination, ctx)
    order = await refresh_payment(order_id, ctx, ip=ip)
    return order, None if order.paid else payment.client_secret


async def _payment_started(order: OrderView, destination: str | None, ctx: TenantContext) -> None:
    """Record the payment's key and how the provider will be paid: ``connect`` (a destination
    charge: Stripe transfers the cash less the fee) or ``platform`` (the platform holds the
    cash and pays the provider itself) — refunds and statements follow it (0024)."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await Order.update(
            {
                Order.payment_key: f"market-order-{order.id}",
                Order.payout_route: "connect" if destination else "platform",
            }
        ).where(Order.id == order.id)


async def refresh_payment(order_id: uuid.UUID, ctx: TenantContext, ip: str = "") -> OrderView:
    """Mark the order paid once billing's payment for it succeeded (at once in no-charge
    mode; after Stripe's webhook otherwise)."""
    order = await get_order(order_id, ctx)
    if order.paid:
        return order
    await _mark_paid_if_settled(order, ctx.user_id, ip)
    return await get_order(order_id, ctx)


async def _order_payment_succeeded(tenant_id: uuid.UUID, key: str) -> None:
    """billing's hook: the order's payment succeeded (webhook job) — mark it paid and tell the
    provider now, in the same transaction."""
    try:
        order_id = uuid.UUID(key.removeprefix("market-order-"))
    except ValueError:
        return
    order = await _order_for_scope(order_id, tenant_id, None)
    if order.buyer_id == tenant_id and not order.paid:
        await _mark_paid_if_settled(order, None, "")


async def _mark_paid_if_settled(order: OrderView, user_id: uuid.UUID | None, ip: str) -> None:
    from canal.platform.billing.tables import Payment

    async with db.tenant_scope(order.buyer_id, user_id):
        payment = (
            await Payment.select(Payment.status, Payment.amount_fen)
            .where(
                (Payment.tenant_id == order.buyer_id)
                & (Payment.idempotency_key == f"market-order-{order.id}")
            )
            .first()
        )
        if payment is None or payment["status"] != "succeeded":
            return
        if payment["amount_fen"] != order.buyer_paid_fen:
            raise CanalError(
                "payment_mismatch",
                "付款金额与订单不符,请联系运营方。",
                "The payment does not match the order; contact the operator.",
                status=409,
            )
        changed = (
            await Order.update({Order.paid_at: _now(), Order.updated_at: _now()})
            .where((Order.id == order.id) & Order.paid_at.is_null())
            .returning(Order.id)
        )
        if changed:
            await OrderEvent.insert(
                OrderEvent(
                    tenant_id=order.buyer_id,
                    provider_tenant_id=order.provider_id,
                    order_id=order.id,
                    action="pay",
                    party=Party.BUYER.value,
                    from_state=order.state,
                    to_state=order.state,
                    actor_id=user_id,
                    note=money.format_cny(order.buyer_paid_fen),
                )
            )
            await record(
                "market.order_paid",
                actor_id=user_id,
                tenant_id=order.buyer_id,
                target=str(order.id),
                ip=ip,
                data={"buyer_paid_fen": order.buyer_paid_fen},
            )
            await _notify_tenant(
                order.provider_id,
                title_zh=f"订单已付款:{order.title}",
                title_en=f"Order paid: {order.title}",
                link=f"/orders/{order.id}",
            )


async def transition_order(
    order_id: uuid.UUID, ctx: TenantContext, action: str, *, note: str = "", ip: str = ""
) -> OrderView:
    """Buyer or provider moves the order on (accept, start, deliver, confirm, dispute …)."""
    order = await get_order(order_id, ctx)
    party = order.party(ctx)
    if party == Party.PROVIDER:
        # A suspended provider takes no new work (accept) but may finish or decline what it
        # already has: the buyers' paid orders would otherwise be stuck (decision 0029).
        if action == Action.ACCEPT.value:
            await require_provider(ctx)
        else:
            own = await my_provider(ctx)
            if own is None or own.status not in {"approved", "suspended"}:
                await require_provider(ctx)  # raises provider_not_approved
    if action == Action.ACCEPT.value and not order.paid:
        order = await refresh_payment(order_id, ctx)
        if not order.paid:
            raise CanalError(
                "order_not_paid",
                "买方尚未付款,暂不能接单。",
                "The buyer has not paid yet, so the order cannot be accepted.",
                status=409,
            )
    return await _apply_transition(
        order, action, party, actor_id=ctx.user_id, note=note, ip=ip, scope_tenant=ctx.tenant_id
    )


async def _apply_transition(
    order: OrderView,
    action: str,
    party: Party,
    *,
    actor_id: uuid.UUID | None,
    note: str,
    ip: str,
    scope_tenant: uuid.UUID | None,
    extra: dict[Any, Any] | None = None,
) -> OrderView:
    rule = orders.rule_for(order.state, action, party)  # refuses with the reason, nothing changed
    updates: dict[Any, Any] = {Order.state: rule.next_state.value, Order.updated_at: _now()}
    if rule.next_state == OrderState.DELIVERED:
        updates[Order.delivered_at] = _now()
    updates.update(extra or {})
    scope = db.tenant_scope(scope_tenant, actor_id) if scope_tenant else db.platform_scope(actor_id)
    async with scope:
        changed = (
            await Order.update(updates)
            .where((Order.id == order.id) & (Order.state == order.state))
            .returning(Order.id)
        )
        if not changed:
            raise CanalError(
                "order_changed",
                "订单刚被对方更新,请刷新后再试。",
                "The order was just changed by the other side; reload and try again.",
                status=409,
            )
        await OrderEvent.insert(
            OrderEvent(
                tenant_id=order.buyer_id,
                provider_tenant_id=order.provider_id,
                order_id=order.id,
                action=str(action),
                party=party.value,
                from_state=order.state,
                to_state=rule.next_state.value,
                actor_id=actor_id,
                note=(note or "")[:2000],
            )
        )
        await record(
            f"market.order_{action}",
            actor_id=actor_id,
            tenant_id=scope_tenant or order.buyer_id,
            target=str(order.id),
            ip=ip,
            data={"from": order.state, "to": rule.next_state.value, "party": party.value},
        )
        zh_state, en_state = orders.STATE_LABELS[rule.next_state]
        for who in rule.notify:
            if who == Party.OPERATOR:
                continue  # the operator sees disputes in its queue
            target = order.buyer_id if who == Party.BUYER else order.provider_id
            await _notify_tenant(
                target,
                title_zh=f"订单「{order.title}」{zh_state}",
                title_en=f"Order “{order.title}” is {en_state}",
                link=f"/orders/{order.id}",
                body_zh=note[:200],
                body_en=note[:200],
            )
    return await _order_for_scope(order.id, scope_tenant, actor_id)


async def _order_for_scope(
    order_id: uuid.UUID, tenant_id: uuid.UUID | None, user_id: uuid.UUID | None
) -> OrderView:
    scope = db.tenant_scope(tenant_id, user_id) if tenant_id else db.platform_scope(user_id)
    async with scope:
        row = await Order.select().where(Order.id == order_id).first()
        if row is None:
            raise not_found()
        names = await _tenant_names([row["tenant_id"], row["provider_tenant_id"]])
    return _order_view(row, names)


def _settlement(order: OrderView) -> money.Settlement:
    return money.Settlement(
        list_price_fen=order.list_price_fen,
        category=order.category,
        commission_rate_bp=order.commission_rate_bp,
        buyer_paid_fen=order.buyer_paid_fen,
        voucher_subsidy_fen=order.voucher_subsidy_fen,
        commission_fen=order.commission_fen,
        payout_fen=order.payout_fen,
        refunded_fen=order.refunded_fen,
        buyer_refunded_fen=order.buyer_refunded_fen,
        voucher_refunded_fen=order.voucher_refunded_fen,
        commission_reversed_fen=order.commission_reversed_fen,
        payout_reversed_fen=order.payout_reversed_fen,
    )


async def disputes(operator_id: uuid.UUID) -> list[OrderView]:
    async with db.platform_scope(operator_id):
        rows = (
            await Order.select()
            .where(Order.state == OrderState.DISPUTED.value)
            .order_by(Order.updated_at)
        )
        names = await _tenant_names(
            [r["tenant_id"] for r in rows] + [r["provider_tenant_id"] for r in rows]
        )
    return [_order_view(r, names) for r in rows]


async def resolve_dispute(
    operator_id: uuid.UUID,
    order_id: uuid.UUID,
    outcome: str,
    *,
    refund: str | int = "",
    note: str = "",
    ip: str = "",
) -> OrderView:
    """The operator rules on a dispute: full refund, partial refund (an amount) or none. The
    split of the refund (buyer cash / voucher issuer, commission / payout) is ``money.refund``."""
    async with db.platform_scope(operator_id):
        # One ruling at a time: the row stays locked while the refund goes to Stripe, so two
        # operators ruling at once cannot both refund; a failure at Stripe changes nothing.
        await Order.raw("SELECT id FROM market_orders WHERE id = {} FOR UPDATE", order_id)
        return await _resolve_locked(operator_id, order_id, outcome, refund, note, ip)


async def _resolve_locked(
    operator_id: uuid.UUID, order_id: uuid.UUID, outcome: str, refund: str | int, note: str, ip: str
) -> OrderView:
    from canal.platform.billing.services import refund_payment

    order = await _order_for_scope(order_id, None, operator_id)
    actions = {
        "full": Action.RESOLVE_REFUND_FULL,
        "partial": Action.RESOLVE_REFUND_PARTIAL,
        "none": Action.RESOLVE_NO_REFUND,
    }
    if outcome not in actions:
        raise invalid(
            [FieldError("outcome", "bad_outcome", "请选择裁决结果。", "Choose an outcome.")]
        )
    orders.rule_for(order.state, actions[outcome], Party.OPERATOR)
    settlement = _settlement(order)
    extra: dict[Any, Any] = {}
    if outcome in {"full", "partial"}:
        if outcome == "full":
            amount = settlement.remaining_fen
        else:
            errors: list[FieldError] = []
            amount = _price(errors, "refund", refund)
            if errors:
                raise invalid(errors)
            if amount >= settlement.remaining_fen:
                raise invalid(
                    [
                        FieldError(
                            "refund",
                            "partial_not_partial",
                            "部分退款须小于订单可退金额;全额退款请选择“全额退款”。",
                            "A partial refund is less than the refundable amount; "
                            "choose a full refund instead.",
                        )
                    ]
                )
        try:
            split = money.refund(settlement, amount)
        except money.RefundError as error:
            raise invalid([FieldError("refund", error.code, error.zh, error.en)]) from None
        after = split.after
        if split.to_buyer_fen > 0 and order.payment_key:
            # The buyer's cash share goes back through Stripe (destination charge: the
            # provider's transfer is reversed and the fee returned in proportion); the voucher
            # share is the platform's own subsidy and never left the platform (0022).
            await refund_payment(
                order.buyer_id,
                order.payment_key,
                split.to_buyer_fen,
                f"market-refund-{order.id}",
                actor_id=operator_id,
            )
        extra = {
            Order.refunded_fen: after.refunded_fen,
            Order.buyer_refunded_fen: after.buyer_refunded_fen,
            Order.voucher_refunded_fen: after.voucher_refunded_fen,
            Order.commission_reversed_fen: after.commission_reversed_fen,
            Order.payout_reversed_fen: after.payout_reversed_fen,
        }
        note = note or money.format_cny(amount)
    return await _apply_transition(
        order,
        actions[outcome],
        Party.OPERATOR,
        actor_id=operator_id,
        note=note,
        ip=ip,
        scope_tenant=None,
        extra=extra,
    )


# --- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageView:
    id: uuid.UUID
    author_tenant_id: uuid.UUID
    author_name: str
    body: str
    file_id: uuid.UUID | None
    file_name: str
    created_at: dt.datetime


async def post_message(
    order_id: uuid.UUID,
    ctx: TenantContext,
    body: str,
    *,
    file_id: uuid.UUID | None = None,
    ip: str = "",
) -> MessageView:
    order = await get_order(order_id, ctx)
    errors: list[FieldError] = []
    text = (body or "").strip()
    if not text and file_id is None:
        errors.append(
            FieldError(
                "body", "required", "请填写留言或附上文件。", "Write a message or attach a file."
            )
        )
    if len(text) > TEXT_MAX:
        errors.append(
            FieldError(
                "body",
                "too_long",
                f"留言最多 {TEXT_MAX} 个字。",
                f"A message has at most {TEXT_MAX} characters.",
            )
        )
    if errors:
        raise invalid(errors)
    file_name = ""
    if file_id is not None:
        from canal.platform.storage.services import get_object_to_share

        # The other side downloads it: one of the organisation's files needs files:read.
        file_name = (await get_object_to_share(file_id, ctx)).original_name
    message = OrderMessage(
        tenant_id=order.buyer_id,
        provider_tenant_id=order.provider_id,
        order_id=order.id,
        author_id=ctx.user_id,
        author_tenant_id=ctx.tenant_id,
        body=text,
        file_id=file_id,
        file_name=file_name,
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await message.save()
        other = order.provider_id if ctx.tenant_id == order.buyer_id else order.buyer_id
        await _notify_tenant(
            other,
            title_zh=f"订单「{order.title}」有新留言",
            title_en=f"New message on “{order.title}”",
            link=f"/orders/{order.id}",
            body_zh=text[:200],
            body_en=text[:200],
        )
    names = await _tenant_names([ctx.tenant_id])
    return MessageView(
        message.id,
        ctx.tenant_id,
        names.get(ctx.tenant_id, ""),
        text,
        file_id,
        file_name,
        message.created_at,
    )


async def list_messages(order_id: uuid.UUID, ctx: TenantContext) -> list[MessageView]:
    await get_order(order_id, ctx)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await OrderMessage.select()
            .where(OrderMessage.order_id == order_id)
            .order_by(OrderMessage.created_at)
        )
    names = await _tenant_names([r["author_tenant_id"] for r in rows])
    return [
        MessageView(
            r["id"],
            r["author_tenant_id"],
            names.get(r["author_tenant_id"], ""),
            r["body"],
            r["file_id"],
            r["file_name"],
            r["created_at"],
        )
        for r in rows
    ]


async def message_attachment(order_id: uuid.UUID, message_id: uuid.UUID, ctx: TenantContext) -> str:
    """A presigned link to a message's file, for either side of the order. The file is the
    author's organisation's object; the order (which both sides see) is the permission."""
    from canal.platform.http.context import TenantRef
    from canal.platform.storage.services import get_object_in_tenant, object_store

    await get_order(order_id, ctx)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await OrderMessage.select()
            .where((OrderMessage.id == message_id) & (OrderMessage.order_id == order_id))
            .first()
        )
    if row is None or row["file_id"] is None:
        raise not_found()
    author = TenantContext(
        TenantRef(row["author_tenant_id"], "", "", "enterprise", "active"), ctx.user_id, ()
    )
    stored = await get_object_in_tenant(row["file_id"], author)
    return await object_store().presigned_get(stored, author)


# --- reviews --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewView:
    id: uuid.UUID
    order_id: uuid.UUID
    listing_id: uuid.UUID
    buyer_name: str
    rating: int
    text: str
    answer: str
    created_at: dt.datetime


def _review_view(row: dict[str, Any], names: dict[uuid.UUID, str]) -> ReviewView:
    return ReviewView(
        row["id"],
        row["order_id"],
        row["listing_id"],
        names.get(row["buyer_tenant_id"], ""),
        row["rating"],
        row["text"],
        row["answer"],
        row["created_at"],
    )


async def review_order(
    order_id: uuid.UUID, ctx: TenantContext, rating: str | int, text: str, ip: str = ""
) -> ReviewView:
    """The buyer reviews a confirmed order, once; the listing's rating follows."""
    order = await get_order(order_id, ctx)
    if order.buyer_id != ctx.tenant_id:
        raise CanalError(
            "review_not_buyer",
            "只有买方可以评价订单。",
            "Only the buyer can review an order.",
            status=403,
        )
    errors: list[FieldError] = []
    try:
        stars = int(str(rating).strip())
        if not 1 <= stars <= 5:
            raise ValueError
    except ValueError:
        stars = 0
        errors.append(
            FieldError("rating", "bad_rating", "评分须为 1–5 星。", "The rating is 1 to 5 stars.")
        )
    body = (text or "").strip()
    if len(body) > 2000:
        errors.append(
            FieldError(
                "text", "too_long", "评价最多 2000 字。", "A review has at most 2000 characters."
            )
        )
    if errors:
        raise invalid(errors)
    if order.state != OrderState.CONFIRMED.value:
        raise CanalError(
            "review_order_not_completed",
            "订单确认完成后才能评价。",
            "You can review an order once it is confirmed as completed.",
            status=409,
        )
    review = Review(
        order_id=order.id,
        listing_id=order.listing_id,
        buyer_tenant_id=order.buyer_id,
        provider_id=order.provider_id,
        rating=stars,
        text=body,
        created_by=ctx.user_id,
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        inserted = await Review.insert(review).on_conflict(action="DO NOTHING").returning(Review.id)
        if not inserted:
            raise CanalError(
                "review_exists",
                "该订单已评价过。",
                "This order has already been reviewed.",
                status=409,
            )
        await Listing.update(
            {
                Listing.rating_sum: Listing.rating_sum + stars,
                Listing.rating_count: Listing.rating_count + 1,
            }
        ).where(Listing.id == order.listing_id)
        await record(
            "market.order_reviewed",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(order.id),
            ip=ip,
            data={"rating": stars},
        )
        await _notify_tenant(
            order.provider_id,
            title_zh=f"订单「{order.title}」收到 {stars} 星评价",
            title_en=f"“{order.title}” was rated {stars} stars",
            link=f"/orders/{order.id}",
            body_zh=body[:200],
            body_en=body[:200],
        )
        _index_after_commit([order.listing_id])
    return (await reviews_for_order(order.id))[0]


async def answer_review(
    order_id: uuid.UUID, ctx: TenantContext, answer: str, ip: str = ""
) -> ReviewView:
    order = await get_order(order_id, ctx)
    if order.provider_id != ctx.tenant_id:
        raise CanalError(
            "answer_not_provider",
            "只有服务商可以回复评价。",
            "Only the provider can answer a review.",
            status=403,
        )
    errors: list[FieldError] = []
    text = _text(errors, "answer", answer, zh="回复", en="answer", limit=2000)
    if errors:
        raise invalid(errors)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        changed = (
            await Review.update({Review.answer: text, Review.answered_at: _now()})
            .where(
                (Review.order_id == order.id)
                & (Review.provider_id == ctx.tenant_id)
                & Review.answered_at.is_null()
            )
            .returning(Review.id)
        )
        if not changed:
            exists = await Review.exists().where(Review.order_id == order.id)
            raise CanalError(
                "review_answered" if exists else "review_missing",
                "该评价已回复过,只能回复一次。" if exists else "该订单还没有评价。",
                "This review has already been answered (once only)."
                if exists
                else "This order has no review yet.",
                status=409,
            )
        await record(
            "market.review_answered",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(order.id),
            ip=ip,
        )
    return (await reviews_for_order(order.id))[0]


async def reviews_for_order(order_id: uuid.UUID) -> list[ReviewView]:
    rows = await Review.select().where(Review.order_id == order_id)
    names = await _tenant_names([r["buyer_tenant_id"] for r in rows])
    return [_review_view(r, names) for r in rows]


async def listing_reviews(listing_id: uuid.UUID, limit: int = 50) -> list[ReviewView]:
    rows = (
        await Review.select()
        .where(Review.listing_id == listing_id)
        .order_by(Review.created_at, ascending=False)
        .limit(limit)
    )
    names = await _tenant_names([r["buyer_tenant_id"] for r in rows])
    return [_review_view(r, names) for r in rows]


# --- provider money ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    orders: int
    gross_fen: int  # list prices of paid orders
    commission_fen: int
    payout_fen: int  # what the provider earns after commission and refunds
    settled_fen: int  # payouts of confirmed / resolved orders (payable)
    pending_fen: int  # payouts of paid orders still in progress
    through_stripe_fen: int = 0  # of the payout: what Stripe's transfers carry
    forwarded_fen: int = 0  # of the payout: what the platform pays itself (subsidy, no Connect)


SETTLED = {
    OrderState.CONFIRMED.value,
    OrderState.RESOLVED_NO_REFUND.value,
    OrderState.RESOLVED_REFUNDED_PARTIAL.value,
    OrderState.RESOLVED_REFUNDED_FULL.value,
}


async def provider_statement(ctx: TenantContext) -> tuple[Statement, list[OrderView]]:
    mine = [o for o in await list_orders(ctx, side="provider") if o.paid]
    settled = sum(o.payout_fen - o.payout_reversed_fen for o in mine if o.state in SETTLED)
    pending = sum(o.payout_fen for o in mine if o.state not in SETTLED and o.state != "cancelled")
    routes = [o.routes() for o in mine]
    return (
        Statement(
            through_stripe_fen=sum(r.through_stripe_fen for r in routes),
            forwarded_fen=sum(r.forwarded_fen for r in routes),
            orders=len(mine),
            gross_fen=sum(o.list_price_fen for o in mine),
            commission_fen=sum(o.commission_fen - o.commission_reversed_fen for o in mine),
            payout_fen=sum(o.payout_fen - o.payout_reversed_fen for o in mine),
            settled_fen=settled,
            pending_fen=pending,
        ),
        mine,
    )


# --- operator charts --------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthRow:
    month: str
    category: str
    orders: int
    turnover_fen: int
    commission_fen: int
    voucher_fen: int


async def monthly_figures(operator_id: uuid.UUID) -> list[MonthRow]:
    async with db.platform_scope(operator_id):
        rows = await Order.raw(
            "SELECT to_char(created_at AT TIME ZONE {}, 'YYYY-MM') AS month, "
            "category, "
            "count(*) AS orders, coalesce(sum(list_price_fen - refunded_fen), 0) AS turnover, "
            "coalesce(sum(commission_fen - commission_reversed_fen), 0) AS commission, "
            "coalesce(sum(voucher_subsidy_fen - voucher_refunded_fen), 0) AS voucher "
            "FROM market_orders WHERE paid_at IS NOT NULL AND module = {} "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            clock.zone_name(),
            MODULE,
        )
    return [
        MonthRow(
            r["month"],
            r["category"],
            int(r["orders"]),
            int(r["turnover"]),
            int(r["commission"]),
            int(r["voucher"]),
        )
        for r in rows
    ]


def new_voucher_code() -> str:
    return "QJ" + secrets.token_hex(6).upper()


# --- vouchers (服务券 / 创新券) ---------------------------------------------------------------


@dataclass(frozen=True)
class VoucherView:
    id: uuid.UUID
    holder_id: uuid.UUID
    holder_name: str
    code: str
    kind: str
    amount_fen: int  # the amount, or a percentage voucher's cap
    categories: list[str]
    expires_at: dt.datetime
    order_id: uuid.UUID | None
    redeemed_at: dt.datetime | None
    percent_bp: int = 0
    source: str = "operator"
    source_ref: str = ""
    applied_fen: int = 0

    @property
    def valid_through(self) -> dt.date:
        return clock.local_date(self.expires_at - dt.timedelta(seconds=1))

    def usable(self, at: dt.datetime) -> bool:
        return self.order_id is None and at < self.expires_at

    @property
    def percent_text(self) -> str:
        """``50%`` / ``12.5%`` for a percentage voucher, "" for a fixed amount."""
        if not self.percent_bp:
            return ""
        whole, part = divmod(self.percent_bp, 100)
        return f"{whole}.{part:02d}".rstrip("0").rstrip(".") + "%"

    def value_text(self, locale: str) -> str:
        """What it is worth, in words: ``¥300.00`` or ``50%, up to ¥800.00``."""
        if not self.percent_bp:
            return money.format_cny(self.amount_fen)
        cap = money.format_cny(self.amount_fen)
        if locale.startswith("zh"):
            return f"{self.percent_text},最高 {cap}"
        return f"{self.percent_text}, up to {cap}"

    def as_money(self) -> money.Voucher:
        return money.Voucher(
            code=self.code,
            kind=money.VoucherKind(self.kind),
            amount_fen=self.amount_fen,
            eligible_categories=frozenset(self.categories),
            expires_at=self.expires_at,
            percent_bp=self.percent_bp,
        )


VOUCHER_SOURCES = ("operator", "policy")


def _voucher_view(row: dict[str, Any], names: dict[uuid.UUID, str]) -> VoucherView:
    return VoucherView(
        id=row["id"],
        holder_id=row["tenant_id"],
        holder_name=names.get(row["tenant_id"], ""),
        code=row["code"],
        kind=row["kind"],
        amount_fen=row["amount_fen"],
        categories=[str(c) for c in _json(row["categories"]) or []],
        expires_at=row["expires_at"],
        order_id=row["order_id"],
        redeemed_at=row["redeemed_at"],
        percent_bp=int(row.get("percent_bp") or 0),
        source=row.get("source") or "operator",
        source_ref=row.get("source_ref") or "",
        applied_fen=int(row.get("applied_fen") or 0),
    )


async def issue_voucher(
    operator_id: uuid.UUID | None,
    *,
    holder_slug: str = "",
    holder_id: uuid.UUID | None = None,
    kind: str,
    amount: str | int,
    categories: Sequence[str],
    valid_through: str | dt.date,
    percent: str | int = "",
    source: str = "operator",
    source_ref: str = "",
    ip: str = "",
) -> VoucherView:
    """Issue a voucher to an enterprise: a fixed ``amount`` — or, with ``percent`` (0–100, two
    decimals), that share of the price up to ``amount`` — for the eligible categories, usable
    until the end of ``valid_through`` (Beijing time).

    The operator's desk calls it with ``operator_id`` and ``holder_slug``. Another module
    grants one with ``source="policy"``, ``source_ref`` (its own stable id, e.g. the approved
    application's) and ``holder_id``; ``operator_id`` is then the deciding official or None.
    A grant is idempotent on ``(source, source_ref)``: calling again (a retried job) returns
    the voucher already issued and issues nothing. Bad input raises ``invalid`` (bilingual,
    per field); the caller has authorised the grant (the operator's role, or the policy's
    approved application)."""
    errors: list[FieldError] = []
    if source not in VOUCHER_SOURCES:
        raise ValueError(f"unknown voucher source {source!r}")  # a caller's bug
    source_ref = (source_ref or "").strip()
    if source != "operator" and not source_ref:
        raise ValueError("a voucher granted by another module names its source_ref")
    if source_ref:
        async with db.platform_scope(operator_id):
            existing = (
                await Voucher.select()
                .where((Voucher.source == source) & (Voucher.source_ref == source_ref[:120]))
                .first()
            )
            if existing is not None:
                names = await _tenant_names([existing["tenant_id"]])
                return _voucher_view(existing, names)
    query = Tenant.select(Tenant.id, Tenant.kind, Tenant.name)
    holder = (
        await query.where(Tenant.id == holder_id).first()
        if holder_id is not None
        else await query.where(Tenant.slug == (holder_slug or "").strip()).first()
    )
    if holder is None or holder["kind"] != "enterprise":
        errors.append(
            FieldError(
                "holder",
                "bad_holder",
                "请填写企业的组织标识。",
                "Enter an enterprise's identifier.",
            )
        )
    if kind not in {k.value for k in money.VoucherKind}:
        errors.append(FieldError("kind", "bad_kind", "请选择券种。", "Choose a kind of voucher."))
    amount_fen = _price(errors, "amount", amount)
    if amount_fen == 0 and not any(e.field == "amount" for e in errors):
        errors.append(
            FieldError("amount", "amount_zero", "面额须大于零。", "The amount is above zero.")
        )
    percent_bp = 0
    if str(percent).strip():
        try:
            # A percentage has the shape of a price (two decimals): 12.5 % = 1250 bp.
            percent_bp = money.parse_price(str(percent).removesuffix("%"))
        except money.PriceError:
            percent_bp = -1
        if not 0 < percent_bp <= 10_000:
            errors.append(
                FieldError(
                    "percent",
                    "bad_percent",
                    "抵扣比例须为大于 0、不超过 100 的数字,最多两位小数。",
                    "The percentage is above 0 and at most 100, with at most two decimals.",
                )
            )
            percent_bp = 0
    chosen = [c for c in categories if c]
    if not chosen or any(c not in catalogue.BY_KEY for c in chosen):
        errors.append(
            FieldError(
                "categories",
                "bad_categories",
                "请选择至少一个适用类别。",
                "Choose at least one eligible category.",
            )
        )
    try:
        through = (
            valid_through
            if isinstance(valid_through, dt.date)
            else dt.date.fromisoformat(str(valid_through).strip())
        )
        if through < _today():
            errors.append(
                FieldError(
                    "valid_through",
                    "date_past",
                    "有效期不能早于今天。",
                    "The voucher cannot expire in the past.",
                )
            )
    except ValueError:
        through = _today()
        errors.append(
            FieldError(
                "valid_through", "bad_date", "请填写有效期(日期)。", "Enter a valid-through date."
            )
        )
    if errors:
        raise invalid(errors)
    assert holder is not None
    # "Valid through 31 December" in China ends at midnight starting 1 January, +08:00.
    expires_at = clock.end_of_day(through)
    voucher = Voucher(
        tenant_id=holder["id"],
        code=new_voucher_code(),
        kind=kind,
        amount_fen=amount_fen,
        percent_bp=percent_bp,
        categories=sorted(set(chosen)),
        expires_at=expires_at,
        source=source,
        source_ref=source_ref[:120],
        issued_by=operator_id,
    )
    async with db.platform_scope(operator_id):
        if source_ref:  # one grant per source reference, even when two jobs race
            await Voucher.raw(
                "SELECT pg_advisory_xact_lock(hashtext({}))", f"{source}:{source_ref}"
            )
            again = (
                await Voucher.select()
                .where((Voucher.source == source) & (Voucher.source_ref == source_ref[:120]))
                .first()
            )
            if again is not None:
                return _voucher_view(again, {holder["id"]: holder["name"]})
        await voucher.save()
        await record(
            "market.voucher_issued",
            actor_id=operator_id,
            tenant_id=holder["id"],
            target=voucher.code,
            ip=ip,
            data={
                "amount_fen": amount_fen,
                "percent_bp": percent_bp,
                "categories": sorted(set(chosen)),
                "source": source,
                "source_ref": source_ref[:120],
            },
        )
        kind_zh, kind_en = money.VOUCHER_KIND_LABELS[money.VoucherKind(kind)]
        view = _voucher_view(
            {
                "id": voucher.id,
                "tenant_id": holder["id"],
                "code": voucher.code,
                "kind": kind,
                "amount_fen": amount_fen,
                "percent_bp": percent_bp,
                "categories": sorted(set(chosen)),
                "expires_at": expires_at,
                "order_id": None,
                "redeemed_at": None,
                "source": source,
                "source_ref": source_ref[:120],
            },
            {holder["id"]: holder["name"]},
        )
        await _notify_tenant(
            holder["id"],
            title_zh=f"您获得一张{kind_zh}:{view.value_text('zh')}",
            title_en=f"You received a {kind_en}: {view.value_text('en')}",
            body_zh=f"有效期至 {through.isoformat()}",
            body_en=f"Valid through {through.isoformat()}",
        )
    return view


async def my_vouchers(ctx: TenantContext) -> list[VoucherView]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await Voucher.select()
            .where(Voucher.tenant_id == ctx.tenant_id)
            .order_by(Voucher.expires_at)
        )
    return [_voucher_view(r, {ctx.tenant_id: ctx.tenant.name}) for r in rows]


async def _apply_vouchers(
    order: OrderView, ctx: TenantContext, voucher_ids: Sequence[uuid.UUID]
) -> None:
    """Re-settle an unpaid order with more of the buyer's vouchers, stacked with any already on
    it (``money.apply_vouchers``: the stacking order, each capped by what is still unpaid), in
    the same transaction as their redemption. Refused, with nothing changed: an unknown or used
    voucher, an expired or ineligible one, one not needed, a concurrent change of the order."""
    now = _now()
    wanted = list(dict.fromkeys(voucher_ids))
    if not wanted:
        return
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await Voucher.select().where(
            (Voucher.tenant_id == ctx.tenant_id)
            & (Voucher.id.is_in(wanted) | (Voucher.order_id == order.id))
        )
        by_id = {r["id"]: _voucher_view(r, {}) for r in rows}
        for voucher_id in wanted:
            view = by_id.get(voucher_id)
            if view is None:
                raise invalid(
                    [
                        FieldError(
                            "voucher_id", "voucher_unknown", "找不到该服务券。", "No such voucher."
                        )
                    ]
                )
            if view.order_id is not None:
                raise CanalError(
                    "voucher_used",
                    "该服务券已使用过。",
                    "This voucher has already been used.",
                    status=409,
                )
        on_order = [v for v in by_id.values() if v.order_id == order.id]
        stack = [*on_order, *(by_id[i] for i in wanted)]
        applied = money.apply_vouchers(
            order.list_price_fen,
            [v.as_money() for v in stack],
            category=order.category,
            at=now,
        )
        subsidy = sum(pays for _, pays in applied)
        by_code = {v.code: v for v in stack}
        for voucher, pays in applied:
            view = by_code[voucher.code]
            taken = (
                await Voucher.update(
                    {
                        Voucher.order_id: order.id,
                        Voucher.redeemed_at: view.redeemed_at or now,
                        Voucher.applied_fen: pays,
                    }
                )
                .where(
                    (Voucher.id == view.id)
                    & (Voucher.order_id.is_null() | (Voucher.order_id == order.id))
                )
                .returning(Voucher.id)
            )
            if not taken:
                raise CanalError(
                    "voucher_used",
                    "该服务券已使用过。",
                    "This voucher has already been used.",
                    status=409,
                )
        first = applied[0][0].code
        settled = (
            await Order.update(
                {
                    Order.buyer_paid_fen: order.list_price_fen - subsidy,
                    Order.voucher_subsidy_fen: subsidy,
                    Order.voucher_id: order.voucher_id or by_code[first].id,
                    Order.updated_at: now,
                }
            )
            .where(
                (Order.id == order.id)
                # Nothing changed the order since it was read: a concurrent request applying
                # another voucher (or starting the payment) makes this one roll back.
                & (Order.voucher_subsidy_fen == order.voucher_subsidy_fen)
                & (
                    Order.voucher_id.is_null()
                    if order.voucher_id is None
                    else Order.voucher_id == order.voucher_id
                )
                & Order.paid_at.is_null()
                & (Order.payment_key == "")
            )
            .returning(Order.id)
        )
        if not settled:
            # This voucher's redemption is rolled back with the error (it stays unused).
            raise CanalError(
                "order_has_voucher",
                "该订单的服务券或付款刚刚发生变化,请刷新后再试。",
                "This order's vouchers or payment just changed; reload and try again.",
                status=409,
            )
        await record(
            "market.voucher_redeemed",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=",".join(by_id[i].code for i in wanted),
            data={
                "order": str(order.id),
                "subsidy_fen": subsidy,
                "stack": [[v.code, pays] for v, pays in applied],
            },
        )


async def _mark_paid_by_voucher(order: OrderView, ctx: TenantContext) -> None:
    """A voucher that covers the whole price: nothing to charge, the order is paid."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        changed = (
            await Order.update(
                {Order.paid_at: _now(), Order.updated_at: _now(), Order.payout_route: "platform"}
            )
            .where((Order.id == order.id) & Order.paid_at.is_null() & (Order.buyer_paid_fen == 0))
            .returning(Order.id)
        )
        if changed:
            await OrderEvent.insert(
                OrderEvent(
                    tenant_id=order.buyer_id,
                    provider_tenant_id=order.provider_id,
                    order_id=order.id,
                    action="pay",
                    party=Party.BUYER.value,
                    from_state=order.state,
                    to_state=order.state,
                    actor_id=ctx.user_id,
                    note=money.format_cny(order.voucher_subsidy_fen),
                )
            )
            await record(
                "market.order_paid",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=str(order.id),
                data={"buyer_paid_fen": 0, "voucher_fen": order.voucher_subsidy_fen},
            )


@dataclass(frozen=True)
class VoucherReport:
    issued: int
    issued_fen: int  # face values (a percentage voucher counts its cap)
    redeemed: int
    subsidy_fen: int  # voucher share of paid orders, net of refunds to the issuer
    expired_unused: int
    vouchers: list[VoucherView]
    by_source: dict[str, tuple[int, int]] = field(default_factory=dict)  # issued, applied fen


async def voucher_report(operator_id: uuid.UUID) -> VoucherReport:
    now = _now()
    async with db.platform_scope(operator_id):
        rows = await Voucher.select().order_by(Voucher.created_at, ascending=False)
        names = await _tenant_names([r["tenant_id"] for r in rows])
        subsidy = await Order.raw(
            "SELECT coalesce(sum(voucher_subsidy_fen - voucher_refunded_fen), 0) AS s "
            "FROM market_orders WHERE paid_at IS NOT NULL AND voucher_id IS NOT NULL"
        )
    views = [_voucher_view(r, names) for r in rows]
    return VoucherReport(
        issued=len(views),
        issued_fen=sum(v.amount_fen for v in views),
        redeemed=sum(1 for v in views if v.order_id is not None),
        subsidy_fen=int(subsidy[0]["s"]) if subsidy else 0,
        expired_unused=sum(1 for v in views if v.order_id is None and v.expires_at <= now),
        vouchers=views,
        by_source={
            source: (
                sum(1 for v in views if v.source == source),
                sum(v.applied_fen for v in views if v.source == source),
            )
            for source in VOUCHER_SOURCES
        },
    )


# --- scheduled ------------------------------------------------------------------------------


AUTO_CONFIRM_MIN_DAYS = 1
AUTO_CONFIRM_MAX_DAYS = 30


async def auto_confirm_days() -> int:
    """The operator's number of days after delivery before the system confirms an order."""
    row = (
        await MarketSettings.select(MarketSettings.auto_confirm_days)
        .where(MarketSettings.module == MODULE)
        .first()
    )
    return int(row["auto_confirm_days"]) if row else orders.DEFAULT_AUTO_CONFIRM_DAYS


async def set_auto_confirm_days(operator_id: uuid.UUID, days: str | int, ip: str = "") -> int:
    """The operator sets the auto-confirm days (whole days, 1–30). Orders already delivered
    follow the new number from the next run of the daily job."""
    text = str(days).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or not (
        AUTO_CONFIRM_MIN_DAYS <= int(text) <= AUTO_CONFIRM_MAX_DAYS
    ):
        raise invalid(
            [
                FieldError(
                    "auto_confirm_days",
                    "bad_auto_confirm_days",
                    f"自动确认天数须为 {AUTO_CONFIRM_MIN_DAYS}–{AUTO_CONFIRM_MAX_DAYS} "
                    "之间的整数。",
                    f"Auto-confirm days are a whole number from {AUTO_CONFIRM_MIN_DAYS} "
                    f"to {AUTO_CONFIRM_MAX_DAYS}.",
                )
            ]
        )
    value = int(text)
    async with db.transaction():
        old = await auto_confirm_days()
        await MarketSettings.insert(
            MarketSettings(
                module=MODULE, auto_confirm_days=value, updated_by=operator_id, updated_at=_now()
            )
        ).on_conflict(
            target=MarketSettings.module,
            action="DO UPDATE",
            values=[
                MarketSettings.auto_confirm_days,
                MarketSettings.updated_by,
                MarketSettings.updated_at,
            ],
        )
        await record(
            "market.auto_confirm_set",
            actor_id=operator_id,
            target=MODULE,
            ip=ip,
            data={"from_days": old, "to_days": value},
        )
    return value


async def auto_confirm_delivered(*, days: int | None = None, now: dt.datetime | None = None) -> int:
    """Confirm (as the system) orders delivered ``days`` (default: the operator's setting)
    ago that the buyer neither confirmed nor disputed; returns how many. Each goes through the
    state machine like any other move."""
    now = now or _now()
    if days is None:
        days = await auto_confirm_days()
    async with db.platform_scope():
        rows = await Order.select().where(
            (Order.state == OrderState.DELIVERED.value) & Order.delivered_at.is_not_null()
        )
        names = await _tenant_names(
            [r["tenant_id"] for r in rows] + [r["provider_tenant_id"] for r in rows]
        )
    done = 0
    for row in rows:
        if not orders.auto_confirm_due(row["delivered_at"], now, days=days):
            continue
        try:
            await _apply_transition(
                _order_view(row, names),
                Action.CONFIRM,
                Party.SYSTEM,
                actor_id=None,
                note=f"交付 {days} 天后自动确认",
                ip="",
                scope_tenant=None,
            )
            done += 1
        except CanalError:
            continue  # the buyer acted meanwhile: their move stands
    return done


async def auto_confirm_job(ctx: dict[str, Any]) -> int:
    """Daily (cron): the auto-confirmation of delivered orders."""
    return await auto_confirm_delivered()


def _register_payment_hook() -> None:
    from canal.platform.billing.services import on_payment_succeeded

    on_payment_succeeded("market-order-", _order_payment_succeeded)


_register_payment_hook()
