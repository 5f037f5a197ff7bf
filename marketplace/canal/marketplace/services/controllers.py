"""The service supermarket's routes: pages at /t/{slug}/m/services/… and their JSON twins at
/api/v1/t/{slug}/m/services/… (same path after the prefix), mounted by the module registry.

Buying needs ("services", "buy"), selling ("services", "sell"); owners and admins hold both,
and the module's roles give them to members (a provider's order handlers). The rules live in
``canal.marketplace.market``; handlers only parse, call and render.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect
from litestar.status_codes import HTTP_201_CREATED

from canal.marketplace import catalogue, market, money, orders
from canal.platform import clock
from canal.platform.access.services import access
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.http.tenancy import tenant_context
from canal.platform.storage.services import PURPOSES, object_store
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["service supermarket"]
MODULE = "services"
READ = {"access": "tenant", "permission": ("tenant", "read")}
BUY = {"access": "tenant", "permission": ("services", "buy")}
SELL = {"access": "tenant", "permission": ("services", "sell")}
# The provider's application and its money (payout account, statements): owners, admins and
# the module's "provider manager" role, not every order handler (docs/marketplace.md).
MANAGE = {"access": "tenant", "permission": ("services", "manage")}
UPLOAD_LIMIT = PURPOSES["document"].max_bytes + 1024 * 1024
SEARCH_FACETS = ("category", "area", "provider_name", "price_model")


def _base(slug: str) -> str:
    return f"/t/{slug}/m/{MODULE}"


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _zh(request: Req) -> bool:
    return request_locale(request).startswith("zh")


async def _form(request: Req) -> dict[str, Any]:
    form = await request.form()
    return {k: v for k, v in form.items() if k != "_csrf"}


async def _form_lists(request: Req) -> dict[str, list[str]]:
    """Every value of every field (checkboxes and multi-selects send a name several times)."""
    form = await request.form()
    return {k: [str(v) for v in form.getall(k)] for k in form if k != "_csrf"}


def _require(ctx: TenantContext, action: str) -> None:
    if not access().enforce(ctx.user_id, ctx.tenant_id, MODULE, action):
        raise CanalError(
            "forbidden",
            "您在本组织中没有执行此操作的权限。",
            "Your role in this organisation does not allow this.",
            status=403,
        )


# --- shapes ---------------------------------------------------------------------------------


class ListingOut(msgspec.Struct):
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
    price: str
    status: str
    pending_changes: dict[str, Any] | None
    review_reason: str
    rating_avg: float | None
    rating_count: int
    packages: list[dict[str, Any]]
    image_ids: list[str]
    # Options picked at checkout: {"group": "" (an add-on) or a choice group's name, "name",
    # "price_fen" added}; buy with their positions in this list.
    options: list[dict[str, Any]] = []


def listing_out(v: market.ListingView) -> ListingOut:
    return ListingOut(
        v.id,
        v.provider_id,
        v.provider_name,
        v.category,
        v.subcategory,
        v.title,
        v.description,
        v.area,
        v.delivery_days,
        v.price_model,
        v.price_fen,
        v.price_text,
        v.status,
        v.pending_changes,
        v.review_reason,
        v.rating_avg,
        v.rating_count,
        v.packages,
        v.image_ids,
        v.options,
    )


class ListingIn(msgspec.Struct, forbid_unknown_fields=True):
    category: str
    title: str
    description: str
    area: str
    delivery_days: int
    price_model: str
    price: str = ""
    subcategory: str = ""
    # Extra fixed-price packages: [{"name": "季度版", "price": "800"}, …]
    packages: list[dict[str, str]] = []
    # Options the buyer picks at checkout: [{"name": "加急", "price": "200"},
    # {"group": "发票", "name": "专票", "price": "0"}, …] — the options of one group are a
    # choice (exactly one), the others add-ons; prices are added (≥ 0, two decimals).
    options: list[dict[str, str]] = []
    # Pictures uploaded first through POST /api/v1/t/{slug}/files (JPEG or PNG), up to four.
    image_file_ids: list[uuid.UUID] = []


class ProviderOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    status: str
    business_scope: str
    qualification_file_ids: list[str]
    reason: str


def provider_out(v: market.ProviderView) -> ProviderOut:
    return ProviderOut(
        v.id,
        v.tenant_id,
        v.tenant_name,
        v.status,
        v.business_scope,
        v.qualification_file_ids,
        v.reason,
    )


class ProviderIn(msgspec.Struct, forbid_unknown_fields=True):
    business_scope: str
    qualification_file_ids: list[uuid.UUID]


class QuoteOut(msgspec.Struct):
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
    counter_price_fen: int | None = None  # the buyer's proposed price, if it named one


def quote_out(v: market.QuoteView) -> QuoteOut:
    return QuoteOut(
        v.id,
        v.buyer_id,
        v.buyer_name,
        v.provider_id,
        v.provider_name,
        v.listing_id,
        v.listing_title,
        v.need,
        v.status,
        v.price_fen,
        v.scope,
        v.valid_until,
        v.counter_note,
        v.order_id,
        v.counter_price_fen,
    )


class QuoteRequestIn(msgspec.Struct, forbid_unknown_fields=True):
    need: str


class QuoteAnswerIn(msgspec.Struct, forbid_unknown_fields=True):
    price: str
    scope: str
    valid_until: str


class CounterIn(msgspec.Struct, forbid_unknown_fields=True):
    counter_note: str
    counter_price: str = ""  # yuan, optional: the price the buyer proposes


class OrderOut(msgspec.Struct):
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
    paid: bool
    list_price_fen: int
    commission_rate_bp: int
    commission_fen: int
    payout_fen: int
    buyer_paid_fen: int
    voucher_subsidy_fen: int
    refunded_fen: int
    buyer_refunded_fen: int
    commission_reversed_fen: int
    payout_reversed_fen: int
    allowed_actions: list[str]
    options: list[dict[str, Any]] = []  # the chosen options as priced at checkout
    voucher_refunded_fen: int = 0
    payout_route: str = ""  # connect (Stripe transfer) | platform (paid by the platform)


def order_out(v: market.OrderView, ctx: TenantContext) -> OrderOut:
    return OrderOut(
        v.id,
        v.buyer_id,
        v.buyer_name,
        v.provider_id,
        v.provider_name,
        v.listing_id,
        v.quote_id,
        v.title,
        v.category,
        v.state,
        v.paid,
        v.list_price_fen,
        v.commission_rate_bp,
        v.commission_fen,
        v.payout_fen,
        v.buyer_paid_fen,
        v.voucher_subsidy_fen,
        v.refunded_fen,
        v.buyer_refunded_fen,
        v.commission_reversed_fen,
        v.payout_reversed_fen,
        [a.value for a in orders.allowed_actions(v.state, v.party(ctx))],
        v.options,
        v.voucher_refunded_fen,
        v.payout_route,
    )


class PayOut(msgspec.Struct):
    order: OrderOut
    client_secret: str | None


class TransitionIn(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    note: str = ""


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    body: str = ""
    file_id: uuid.UUID | None = None


class MessageOut(msgspec.Struct):
    id: uuid.UUID
    author_tenant_id: uuid.UUID
    author_name: str
    body: str
    file_id: uuid.UUID | None
    file_name: str
    created_at: dt.datetime


def message_out(v: market.MessageView) -> MessageOut:
    return MessageOut(
        v.id, v.author_tenant_id, v.author_name, v.body, v.file_id, v.file_name, v.created_at
    )


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    rating: int
    text: str = ""


class AnswerIn(msgspec.Struct, forbid_unknown_fields=True):
    answer: str


class ReviewOut(msgspec.Struct):
    id: uuid.UUID
    order_id: uuid.UUID
    listing_id: uuid.UUID
    buyer_name: str
    rating: int
    text: str
    answer: str


def review_out(v: market.ReviewView) -> ReviewOut:
    return ReviewOut(v.id, v.order_id, v.listing_id, v.buyer_name, v.rating, v.text, v.answer)


class SearchOut(msgspec.Struct):
    query: str
    total: int
    page: int
    pages: int
    hits: list[dict[str, Any]]
    facets: dict[str, dict[str, int]]


class StatementOut(msgspec.Struct):
    orders: int
    gross_fen: int
    commission_fen: int
    payout_fen: int
    settled_fen: int
    pending_fen: int
    lines: list[OrderOut]


# --- catalogue search -------------------------------------------------------------------------


def _search_filters(
    category: str | None,
    area: str | None,
    provider: str | None,
    price_min: str | None,
    price_max: str | None,
    rating_min: str | None,
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if category:
        filters["category"] = category
    if area:
        filters["area"] = area
    if provider:
        filters["provider_name"] = provider
    price: dict[str, int] = {}
    errors: list[FieldError] = []
    for key, raw, op in (("price_min", price_min, "gte"), ("price_max", price_max, "lte")):
        if raw:
            try:
                price[op] = money.parse_price(raw)
            except money.PriceError as error:
                errors.append(error.field_error(key))
    if rating_min:
        try:
            stars = float(rating_min)
            if not 0 <= stars <= 5:
                raise ValueError
            filters["rating"] = {"gte": stars}
        except ValueError:
            errors.append(
                FieldError("rating_min", "bad_rating", "评分须在 0–5 之间。", "A rating is 0 to 5.")
            )
    if errors:
        raise invalid(errors)
    if price:
        filters["price_fen"] = price
    return filters


async def _search(
    ctx: TenantContext,
    q: str,
    filters: dict[str, Any],
    page_no: int,
    sort: str | None = None,
) -> SearchOut:
    from canal.platform.search.services import get_service

    order = {"price_asc": ["price_fen:asc"], "price_desc": ["price_fen:desc"]}
    order["rating"] = ["rating:desc"]
    result = await get_service().search(
        market.SEARCH_KIND,
        q,
        caller=ctx,
        filters=filters,
        facets=SEARCH_FACETS,
        sort=order.get(sort or "", []),
        page=page_no,
        per_page=20,
    )
    return SearchOut(
        result.query, result.total, result.page, result.pages, result.hits, result.facets
    )


@get("/", opt=READ, include_in_schema=False)
async def catalogue_page(
    request: Req,
    tenant_slug: FromPath[str],
    q: FromQuery[str] = "",
    category: FromQuery[str | None] = None,
    area: FromQuery[str | None] = None,
    provider: FromQuery[str | None] = None,
    price_min: FromQuery[str | None] = None,
    price_max: FromQuery[str | None] = None,
    rating_min: FromQuery[str | None] = None,
    sort: FromQuery[str | None] = None,
    page_no: FromQuery[int] = 1,
) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    errors: list[dict[str, str]] = []
    result = SearchOut(q, 0, 1, 0, [], {})
    status = 200
    try:
        filters = _search_filters(category, area, provider, price_min, price_max, rating_min)
        result = await _search(ctx, q, filters, page_no, sort)
    except CanalError as error:
        if not error.errors:
            raise
        errors = [e.for_locale(locale) for e in error.errors]
        status = 422
    provider_view = await market.my_provider(ctx)
    return page(
        request,
        "marketplace/catalogue.html",
        {
            "base": _base(tenant_slug),
            "result": result,
            "errors": errors,
            "values": {
                "q": q,
                "category": category or "",
                "area": area or "",
                "provider": provider or "",
                "price_min": price_min or "",
                "price_max": price_max or "",
                "rating_min": rating_min or "",
                "sort": sort or "",
            },
            **_options(locale),
            "category_name": lambda k: catalogue.category_name(k, locale),
            "area_name": lambda k: catalogue.area_name(k, locale),
            "cny": money.format_cny,
            "zh": locale.startswith("zh"),
            "provider": provider_view,
        },
        status=status,
    )


@get("/", opt=READ, tags=TAGS)
async def catalogue_api(
    request: Req,
    tenant_slug: FromPath[str],
    q: FromQuery[str] = "",
    category: FromQuery[str | None] = None,
    area: FromQuery[str | None] = None,
    provider: FromQuery[str | None] = None,
    price_min: FromQuery[str | None] = None,
    price_max: FromQuery[str | None] = None,
    rating_min: FromQuery[str | None] = None,
    sort: FromQuery[str | None] = None,
    page_no: FromQuery[int] = 1,
) -> SearchOut:
    """Search live listings: Chinese full text (``q``) with facets (category, area, provider,
    price model) and filters (category, area, provider, price range in yuan, minimum rating).
    ``sort``: price_asc, price_desc or rating."""
    filters = _search_filters(category, area, provider, price_min, price_max, rating_min)
    return await _search(tenant_context(request), q, filters, page_no, sort)


# --- listings -------------------------------------------------------------------------------


def _options(locale: str) -> dict[str, Any]:
    zh = locale.startswith("zh")
    return {
        "category_options": [(c.key, c.name(locale)) for c in catalogue.CATEGORIES],
        "subcategory_options": [
            (key, f"{c.name(locale)} · {szh if zh else sen}")
            for c in catalogue.CATEGORIES
            for key, szh, sen in c.subcategories
        ],
        "area_options": [(k, azh if zh else aen) for k, azh, aen in catalogue.AREAS],
        "price_model_options": [(k, pzh if zh else pen) for k, pzh, pen in catalogue.PRICE_MODELS],
    }


def _listing_context(request: Req, slug: str) -> dict[str, Any]:
    locale = request_locale(request)
    return {
        **_options(locale),
        "base": _base(slug),
        "categories": catalogue.CATEGORIES,
        "areas": catalogue.AREAS,
        "price_models": catalogue.PRICE_MODELS,
        "category_name": lambda k: catalogue.category_name(k, locale),
        "subcategory_name": lambda c, k: catalogue.subcategory_name(c, k, locale),
        "area_name": lambda k: catalogue.area_name(k, locale),
        "cny": money.format_cny,
        "zh": locale.startswith("zh"),
        "locale": locale,
    }


async def _listing_page(
    request: Req,
    slug: str,
    listing_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
    buy_errors: list[dict[str, str]] | None = None,
) -> Response[str]:
    ctx = tenant_context(request)
    listing = await market.get_listing(listing_id, ctx)
    reviews = await market.listing_reviews(listing_id)
    return page(
        request,
        "marketplace/listing.html",
        {
            **_listing_context(request, slug),
            "listing": listing,
            "reviews": reviews,
            "own": listing.provider_id == ctx.tenant_id,
            "errors": errors or [],
            "values": values or {},
            "buy_errors": buy_errors or [],
        },
        status=status,
    )


@get("/listings/{listing_id:uuid}", opt=READ, include_in_schema=False)
async def listing_page(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> Response[str]:
    return await _listing_page(request, tenant_slug, listing_id)


@get("/listings/{listing_id:uuid}", opt=READ, tags=TAGS)
async def listing_api(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> ListingOut:
    """A live listing (or any of your own, with its review state)."""
    return listing_out(await market.get_listing(listing_id, tenant_context(request)))


@get("/listings/{listing_id:uuid}/images/{image_id:uuid}", opt=READ, include_in_schema=False)
async def listing_image(
    request: Req,
    tenant_slug: FromPath[str],
    listing_id: FromPath[uuid.UUID],
    image_id: FromPath[uuid.UUID],
) -> Response[bytes]:
    """The picture itself, from the portal's origin (the CSP's img-src is 'self')."""
    body, content_type = await market.listing_image_bytes(
        listing_id, image_id, tenant_context(request)
    )
    return Response(
        body,
        media_type=content_type,
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@get("/listings/{listing_id:uuid}/images/{image_id:uuid}", opt=READ, tags=TAGS)
async def listing_image_api(
    request: Req,
    tenant_slug: FromPath[str],
    listing_id: FromPath[uuid.UUID],
    image_id: FromPath[uuid.UUID],
) -> dict[str, str]:
    """A five-minute link to one of the listing's pictures."""
    return {"url": await market.listing_image_url(listing_id, image_id, tenant_context(request))}


@get("/listings/{listing_id:uuid}/reviews", opt=READ, tags=TAGS)
async def listing_reviews_api(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> list[ReviewOut]:
    """The listing's reviews, newest first."""
    await market.get_listing(listing_id, tenant_context(request))
    return [review_out(r) for r in await market.listing_reviews(listing_id)]


@get("/listings/{listing_id:uuid}/reviews", opt=READ, include_in_schema=False)
async def listing_reviews_page(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> Response[str]:
    return await _listing_page(request, tenant_slug, listing_id)


def _listing_form(
    request: Req,
    slug: str,
    *,
    listing: market.ListingView | None,
    values: dict[str, Any],
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response[str]:
    return page(
        request,
        "marketplace/listing_form.html",
        {
            **_listing_context(request, slug),
            "listing": listing,
            "values": values,
            "errors": errors or [],
        },
        status=status,
    )


def _package_lines(packages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{p['name']} | {int(p['price_fen']) / 100:.2f}" for p in packages)


def _option_lines(options: list[dict[str, Any]]) -> str:
    return "\n".join(
        (f"{o['group']}: " if o.get("group") else "")
        + f"{o['name']} | {int(o['price_fen']) / 100:.2f}"
        for o in options
    )


def _listing_values(listing: market.ListingView) -> dict[str, Any]:
    data = {
        "category": listing.category,
        "subcategory": listing.subcategory,
        "title": listing.title,
        "description": listing.description,
        "area": listing.area,
        "delivery_days": listing.delivery_days,
        "price_model": listing.price_model,
        "price": f"{listing.price_fen / 100:.2f}" if listing.price_model == "fixed" else "",
        "packages": _package_lines(listing.packages),
        "options": _option_lines(listing.options),
    }
    if listing.pending_changes:
        changes = dict(listing.pending_changes)
        fen = int(changes.pop("price_fen", 0))
        data["packages"] = _package_lines(changes.pop("package_options", []))
        data["options"] = _option_lines(changes.pop("options", []))
        data.update(changes)
        data["price"] = f"{fen / 100:.2f}" if changes.get("price_model") == "fixed" else ""
    return data


async def _form_errors(
    request: Req, action: Callable[[], Awaitable[Response[Any]]], on_error: Any
) -> Response[Any]:
    """Run a form's action; a validation refusal re-renders the form (422) with the errors."""
    try:
        return await action()
    except CanalError as error:
        if not error.errors:
            raise
        locale = request_locale(request)
        return await on_error([e.for_locale(locale) for e in error.errors], error.status)


@get("/listings/new", opt=SELL, include_in_schema=False)
async def new_listing_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    await market.require_provider(tenant_context(request))
    values = {"price_model": "fixed", "area": "dongchangfu", "delivery_days": 7}
    return _listing_form(request, tenant_slug, listing=None, values=values)


@post("/listings/new", opt=SELL, include_in_schema=False, request_max_body_size=4 * UPLOAD_LIMIT)
async def new_listing_form(request: Req, tenant_slug: FromPath[str]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await request.form()
    data = {k: v for k, v in form.items() if k not in {"_csrf", "images"}}
    uploads = [u for u in form.getall("images", []) if isinstance(u, UploadFile) and u.filename]

    async def act() -> Response[Any]:
        market.validate_listing(data)  # before storing any picture
        market.check_image_count(len(uploads))
        images = []
        for upload in uploads:
            stored = await object_store().upload(
                ctx, "photo", _upload_chunks(upload), filename=upload.filename, ip=_ip(request)
            )
            images.append(stored.id)
        listing = await market.create_listing(ctx, data, ip=_ip(request), image_ids=images)
        return redirect(request, f"{_base(tenant_slug)}/listings/{listing.id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        for error in errors:  # the storage service names its field "file"
            if error["field"] == "file":
                error["field"] = "images"
        return _listing_form(
            request, tenant_slug, listing=None, values=data, errors=errors, status=status
        )

    return await _form_errors(request, act, again)


@post("/listings/new", opt=SELL, tags=TAGS, status_code=HTTP_201_CREATED)
async def new_listing_api(
    request: Req, tenant_slug: FromPath[str], data: JSONBody[ListingIn]
) -> ListingOut:
    """Submit a listing for the operator's review (approved providers only). ``price`` is
    in yuan with at most two decimals (fixed price only)."""
    ctx = tenant_context(request)
    fields = msgspec.structs.asdict(data)
    images = fields.pop("image_file_ids")
    view = await market.create_listing(ctx, fields, ip=_ip(request), image_ids=images)
    return listing_out(view)


@get("/listings/{listing_id:uuid}/edit", opt=SELL, include_in_schema=False)
async def edit_listing_page(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> Response[str]:
    listing = await market.get_own_listing(listing_id, tenant_context(request))
    return _listing_form(request, tenant_slug, listing=listing, values=_listing_values(listing))


@post(
    "/listings/{listing_id:uuid}/edit",
    opt=SELL,
    include_in_schema=False,
    request_max_body_size=4 * UPLOAD_LIMIT,
)
async def edit_listing_form(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> Response[Any]:
    """Edit a listing; pictures ticked "remove" go, new uploads are added (at most four in
    all). An edit of a live listing, pictures included, waits for the operator's review."""
    ctx = tenant_context(request)
    listing = await market.get_own_listing(listing_id, ctx)
    form = await request.form()
    data = {k: v for k, v in form.items() if k not in {"_csrf", "images", "remove_images"}}
    removed = {str(v) for v in form.getall("remove_images", [])}
    uploads = [u for u in form.getall("images", []) if isinstance(u, UploadFile) and u.filename]

    async def act() -> Response[Any]:
        market.validate_listing(data)  # before storing any picture
        kept = [i for i in listing.image_ids if i not in removed]
        images: list[uuid.UUID] | None = None
        if uploads or removed:
            market.check_image_count(len(kept) + len(uploads))
            images = [uuid.UUID(i) for i in kept]
            for upload in uploads:
                stored = await object_store().upload(
                    ctx, "photo", _upload_chunks(upload), filename=upload.filename, ip=_ip(request)
                )
                images.append(stored.id)
        await market.update_listing(listing_id, ctx, data, ip=_ip(request), image_ids=images)
        return redirect(request, f"{_base(tenant_slug)}/listings/{listing_id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        for error in errors:  # the storage service names its field "file"
            if error["field"] == "file":
                error["field"] = "images"
        return _listing_form(
            request, tenant_slug, listing=listing, values=data, errors=errors, status=status
        )

    return await _form_errors(request, act, again)


@post("/listings/{listing_id:uuid}/edit", opt=SELL, tags=TAGS, status_code=200)
async def edit_listing_api(
    request: Req,
    tenant_slug: FromPath[str],
    listing_id: FromPath[uuid.UUID],
    data: JSONBody[ListingIn],
) -> ListingOut:
    """Edit a listing. A live listing's edit waits for review (``pending_changes``); buyers
    keep seeing the reviewed version until then."""
    ctx = tenant_context(request)
    fields = msgspec.structs.asdict(data)
    images = fields.pop("image_file_ids") or None  # empty: the pictures stay as they are
    view = await market.update_listing(listing_id, ctx, fields, ip=_ip(request), image_ids=images)
    return listing_out(view)


# --- provider -------------------------------------------------------------------------------


async def _provider_page(
    request: Req,
    slug: str,
    *,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response[str]:
    ctx = tenant_context(request)
    provider = await market.my_provider(ctx)
    listings = await market.provider_listings(ctx) if provider else []
    return page(
        request,
        "marketplace/provider.html",
        {
            **_listing_context(request, slug),
            "provider": provider,
            "listings": listings,
            "errors": errors or [],
            "values": values or {},
            "accept": ",".join(PURPOSES["document"].content_types),
            "can_manage": access().enforce(ctx.user_id, ctx.tenant_id, MODULE, "manage"),
        },
        status=status,
    )


@get("/provider", opt=READ, include_in_schema=False)
async def provider_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    return await _provider_page(request, tenant_slug)


@get("/provider", opt=READ, tags=TAGS)
async def provider_api(request: Req, tenant_slug: FromPath[str]) -> ProviderOut | None:
    """This organisation's provider application and its status (null if it never applied)."""
    view = await market.my_provider(tenant_context(request))
    return provider_out(view) if view else None


async def _upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    try:
        while chunk := await upload.read(1024 * 1024):
            yield chunk
    finally:
        await upload.close()


@post("/provider", opt=MANAGE, include_in_schema=False, request_max_body_size=UPLOAD_LIMIT)
async def provider_form(request: Req, tenant_slug: FromPath[str]) -> Response[Any]:
    """Apply: business scope and one qualification document (checked by the storage service:
    size, and type by content)."""
    ctx = tenant_context(request)
    form = await request.form()
    scope = str(form.get("business_scope") or "")

    async def act() -> Response[Any]:
        upload = form.get("qualification")
        files: list[uuid.UUID] = []
        if isinstance(upload, UploadFile) and upload.filename:
            stored = await object_store().upload(
                ctx, "document", _upload_chunks(upload), filename=upload.filename, ip=_ip(request)
            )
            files.append(stored.id)
        await market.apply_as_provider(
            ctx, business_scope=scope, qualification_file_ids=files, ip=_ip(request)
        )
        return redirect(request, f"{_base(tenant_slug)}/provider")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        for error in errors:  # the storage service names its field "file"
            if error["field"] == "file":
                error["field"] = "qualifications"
        return await _provider_page(
            request, tenant_slug, errors=errors, values={"business_scope": scope}, status=status
        )

    return await _form_errors(request, act, again)


@post("/provider", opt=MANAGE, tags=TAGS, status_code=HTTP_201_CREATED)
async def provider_apply_api(
    request: Req, tenant_slug: FromPath[str], data: JSONBody[ProviderIn]
) -> ProviderOut:
    """Apply to become a provider: business scope and the ids of qualification documents
    uploaded first through ``POST /api/v1/t/{slug}/files``."""
    view = await market.apply_as_provider(
        tenant_context(request),
        business_scope=data.business_scope,
        qualification_file_ids=data.qualification_file_ids,
        ip=_ip(request),
    )
    return provider_out(view)


# --- quotes ---------------------------------------------------------------------------------


@post("/listings/{listing_id:uuid}/quotes", opt=BUY, include_in_schema=False)
async def request_quote_form(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    data = await _form(request)

    async def act() -> Response[Any]:
        quote = await market.request_quote(
            listing_id, ctx, str(data.get("need") or ""), ip=_ip(request)
        )
        return redirect(request, f"{_base(tenant_slug)}/quotes/{quote.id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _listing_page(
            request, tenant_slug, listing_id, errors=errors, values=data, status=status
        )

    return await _form_errors(request, act, again)


@post("/listings/{listing_id:uuid}/quotes", opt=BUY, tags=TAGS, status_code=HTTP_201_CREATED)
async def request_quote_api(
    request: Req,
    tenant_slug: FromPath[str],
    listing_id: FromPath[uuid.UUID],
    data: JSONBody[QuoteRequestIn],
) -> QuoteOut:
    """Ask the provider for a quote (询价), describing the need."""
    view = await market.request_quote(
        listing_id, tenant_context(request), data.need, ip=_ip(request)
    )
    return quote_out(view)


@get("/quotes", opt=READ, include_in_schema=False)
async def quotes_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    ctx = tenant_context(request)
    quotes = await market.list_quotes(ctx)
    return page(
        request,
        "marketplace/quotes.html",
        {**_listing_context(request, tenant_slug), "quotes": quotes, "me": ctx.tenant_id},
    )


@get("/quotes", opt=READ, tags=TAGS)
async def quotes_api(request: Req, tenant_slug: FromPath[str]) -> list[QuoteOut]:
    """Quotes this organisation asked for or was asked for."""
    return [quote_out(q) for q in await market.list_quotes(tenant_context(request))]


async def _quote_page(
    request: Req,
    slug: str,
    quote_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response[str]:
    ctx = tenant_context(request)
    quote = await market.get_quote(quote_id, ctx)
    default_until = (market._today() + dt.timedelta(days=14)).isoformat()
    return page(
        request,
        "marketplace/quote.html",
        {
            **_listing_context(request, slug),
            "quote": quote,
            "side": quote.side(ctx.tenant_id),
            "errors": errors or [],
            "values": values or {"valid_until": default_until},
        },
        status=status,
    )


@get("/quotes/{quote_id:uuid}", opt=READ, include_in_schema=False)
async def quote_page(
    request: Req, tenant_slug: FromPath[str], quote_id: FromPath[uuid.UUID]
) -> Response[str]:
    return await _quote_page(request, tenant_slug, quote_id)


@get("/quotes/{quote_id:uuid}", opt=READ, tags=TAGS)
async def quote_api(
    request: Req, tenant_slug: FromPath[str], quote_id: FromPath[uuid.UUID]
) -> QuoteOut:
    """One quote (buyer or provider side)."""
    return quote_out(await market.get_quote(quote_id, tenant_context(request)))


@post("/quotes/{quote_id:uuid}/answer", opt=SELL, include_in_schema=False)
async def answer_quote_form(
    request: Req, tenant_slug: FromPath[str], quote_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    data = await _form(request)

    async def act() -> Response[Any]:
        await market.answer_quote(
            quote_id,
            ctx,
            price=str(data.get("price") or ""),
            scope=str(data.get("scope") or ""),
            valid_until=str(data.get("valid_until") or ""),
            ip=_ip(request),
        )
        return redirect(request, f"{_base(tenant_slug)}/quotes/{quote_id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _quote_page(
            request, tenant_slug, quote_id, errors=errors, values=data, status=status
        )

    return await _form_errors(request, act, again)


@post("/quotes/{quote_id:uuid}/answer", opt=SELL, tags=TAGS, status_code=200)
async def answer_quote_api(
    request: Req,
    tenant_slug: FromPath[str],
    quote_id: FromPath[uuid.UUID],
    data: JSONBody[QuoteAnswerIn],
) -> QuoteOut:
    """The provider's quote: price (yuan, two decimals), scope, valid until (YYYY-MM-DD)."""
    view = await market.answer_quote(
        quote_id,
        tenant_context(request),
        price=data.price,
        scope=data.scope,
        valid_until=data.valid_until,
        ip=_ip(request),
    )
    return quote_out(view)


@post("/quotes/{quote_id:uuid}/counter", opt=BUY, include_in_schema=False)
async def counter_quote_form(
    request: Req, tenant_slug: FromPath[str], quote_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    data = await _form(request)

    async def act() -> Response[Any]:
        await market.counter_quote(
            quote_id,
            ctx,
            str(data.get("counter_note") or ""),
            ip=_ip(request),
            price=str(data.get("counter_price") or ""),
        )
        return redirect(request, f"{_base(tenant_slug)}/quotes/{quote_id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _quote_page(
            request, tenant_slug, quote_id, errors=errors, values=data, status=status
        )

    return await _form_errors(request, act, again)


@post("/quotes/{quote_id:uuid}/counter", opt=BUY, tags=TAGS, status_code=200)
async def counter_quote_api(
    request: Req,
    tenant_slug: FromPath[str],
    quote_id: FromPath[uuid.UUID],
    data: JSONBody[CounterIn],
) -> QuoteOut:
    """The buyer counters the provider's quote; the provider answers again."""
    view = await market.counter_quote(
        quote_id,
        tenant_context(request),
        data.counter_note,
        ip=_ip(request),
        price=data.counter_price,
    )
    return quote_out(view)


@post("/quotes/{quote_id:uuid}/accept", opt=BUY, include_in_schema=False)
async def accept_quote_form(
    request: Req, tenant_slug: FromPath[str], quote_id: FromPath[uuid.UUID]
) -> Response[Any]:
    order = await market.accept_quote(quote_id, tenant_context(request), ip=_ip(request))
    return redirect(request, f"{_base(tenant_slug)}/orders/{order.id}")


@post("/quotes/{quote_id:uuid}/accept", opt=BUY, tags=TAGS, status_code=HTTP_201_CREATED)
async def accept_quote_api(
    request: Req, tenant_slug: FromPath[str], quote_id: FromPath[uuid.UUID]
) -> OrderOut:
    """Accept the provider's quote: it becomes an order at the quoted price."""
    ctx = tenant_context(request)
    return order_out(await market.accept_quote(quote_id, ctx, ip=_ip(request)), ctx)


# --- orders ---------------------------------------------------------------------------------


@post("/listings/{listing_id:uuid}/buy", opt=BUY, include_in_schema=False)
async def buy_form(
    request: Req, tenant_slug: FromPath[str], listing_id: FromPath[uuid.UUID]
) -> Response[Any]:
    data = await _form(request)
    choice = str(data.get("package") or "").strip()
    package = None
    if choice:
        # "²" is a digit to str.isdigit() but not to int(); a 5,000-digit number is refused
        # by int() too: both are a wrong choice (422), never a 500.
        if not (choice.isascii() and choice.isdigit() and len(choice) <= 3):
            raise invalid(
                [FieldError("package", "bad_package_choice", "请选择套餐。", "Choose a package.")]
            )
        package = int(choice)
    # Add-ons are checkboxes named "option"; each choice group is a radio set "option_g<n>".
    lists = await _form_lists(request)
    chosen = [
        value
        for key, values in lists.items()
        if key == "option" or key.startswith("option_g")
        for value in values
    ]

    async def act() -> Response[Any]:
        order = await market.buy_listing(
            listing_id, tenant_context(request), ip=_ip(request), package=package, options=chosen
        )
        return redirect(request, f"{_base(tenant_slug)}/orders/{order.id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _listing_page(
            request, tenant_slug, listing_id, buy_errors=errors, status=status
        )

    return await _form_errors(request, act, again)


class BuyIn(msgspec.Struct, forbid_unknown_fields=True):
    package: int | None = None
    options: list[int] = []  # positions in the listing's ``options``


@post("/listings/{listing_id:uuid}/buy", opt=BUY, tags=TAGS, status_code=HTTP_201_CREATED)
async def buy_api(
    request: Req,
    tenant_slug: FromPath[str],
    listing_id: FromPath[uuid.UUID],
    data: JSONBody[BuyIn | None] = None,
) -> OrderOut:
    """Order a fixed-price listing at its list price, or one of its ``packages`` (its
    position in the listing's list), with the chosen ``options`` (positions; exactly one of
    each choice group) added to the price; then pay it."""
    ctx = tenant_context(request)
    package = data.package if data else None
    options = data.options if data else []
    view = await market.buy_listing(
        listing_id, ctx, ip=_ip(request), package=package, options=options
    )
    return order_out(view, ctx)


@get("/compare", opt=READ, tags=TAGS)
async def compare_api(
    request: Req, tenant_slug: FromPath[str], ids: FromQuery[list[uuid.UUID] | None] = None
) -> list[ListingOut]:
    """Up to four live listings side by side (``ids`` repeated)."""
    return [listing_out(v) for v in await _compared(tenant_context(request), ids)]


async def _compared(ctx: TenantContext, ids: list[uuid.UUID] | None) -> list[market.ListingView]:
    found = []
    for listing_id in (ids or [])[:4]:
        try:
            found.append(await market.get_listing(listing_id, ctx))
        except CanalError:
            continue  # gone from the catalogue since it was picked
    return found


@get("/compare", opt=READ, include_in_schema=False)
async def compare_page(
    request: Req, tenant_slug: FromPath[str], ids: FromQuery[list[uuid.UUID] | None] = None
) -> Response[str]:
    return page(
        request,
        "marketplace/compare.html",
        {
            **_listing_context(request, tenant_slug),
            "listings": await _compared(tenant_context(request), ids),
        },
    )


@get("/orders", opt=READ, include_in_schema=False)
async def orders_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    found = await market.list_orders(ctx)
    return page(
        request,
        "marketplace/orders.html",
        {
            **_listing_context(request, tenant_slug),
            "orders": found,
            "me": ctx.tenant_id,
            "state_label": lambda o: o.state_label(locale),
        },
    )


@get("/orders", opt=READ, tags=TAGS)
async def orders_api(
    request: Req, tenant_slug: FromPath[str], side: FromQuery[str | None] = None
) -> list[OrderOut]:
    """Orders this organisation placed (``side=buyer``) or received (``side=provider``)."""
    ctx = tenant_context(request)
    return [order_out(o, ctx) for o in await market.list_orders(ctx, side=side)]


async def _order_page(
    request: Req,
    slug: str,
    order_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    order = await market.refresh_payment(order_id, ctx)
    party = order.party(ctx)
    actions = [
        (a.value, orders.ACTION_LABELS[a][0 if locale.startswith("zh") else 1])
        for a in orders.allowed_actions(order.state, party)
    ]
    return page(
        request,
        "marketplace/order.html",
        {
            **_listing_context(request, slug),
            "order": order,
            "party": party.value,
            "actions": actions,
            "state": order.state_label(locale),
            "history": await market.order_history(order_id, ctx),
            "messages": await market.list_messages(order_id, ctx),
            "reviews": await market.reviews_for_order(order_id),
            "voucher_options": [
                (str(v.id), f"{v.code} · {v.value_text(locale)}")
                for v in (await market.my_vouchers(ctx) if party.value == "buyer" else [])
                if v.usable(clock.now()) and order.category in v.categories
            ],
            "errors": errors or [],
            "values": values or {},
            "me": ctx.tenant_id,
            "accept": ",".join(PURPOSES["document"].content_types),
            "action_label": lambda a: (
                orders.ACTION_LABELS[orders.Action(a)][0 if locale.startswith("zh") else 1]
                if a in orders.Action.__members__.values()
                else a
            ),
            "state_name": lambda s: (
                orders.STATE_LABELS[orders.OrderState(s)][0 if locale.startswith("zh") else 1]
                if s
                else ""
            ),
        },
        status=status,
    )


@get("/orders/{order_id:uuid}", opt=READ, include_in_schema=False)
async def order_page(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[str]:
    return await _order_page(request, tenant_slug, order_id)


@get("/orders/{order_id:uuid}", opt=READ, tags=TAGS)
async def order_api(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> OrderOut:
    """One order, with the actions this side may take now."""
    ctx = tenant_context(request)
    return order_out(await market.refresh_payment(order_id, ctx), ctx)


def _voucher_choices(raw: list[Any]) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(str(r)) for r in raw if r]
    except ValueError:
        raise invalid(
            [FieldError("voucher_id", "voucher_unknown", "找不到该服务券。", "No such voucher.")]
        ) from None


@post("/orders/{order_id:uuid}/pay", opt=BUY, include_in_schema=False)
async def pay_form(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    data = await _form(request)
    vouchers = (await _form_lists(request)).get("voucher_id", [])

    async def act() -> Response[Any]:
        here = f"{str(request.base_url).rstrip('/')}{_base(tenant_slug)}/orders/{order_id}"
        _, checkout_url = await market.pay_order(
            order_id,
            ctx,
            ip=_ip(request),
            voucher_ids=_voucher_choices(vouchers),
            checkout=(here + "?paid=1", here),
        )
        if checkout_url:  # Stripe's hosted page (card, Alipay, WeChat Pay)
            return redirect(request, checkout_url)
        return redirect(request, f"{_base(tenant_slug)}/orders/{order_id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _order_page(
            request, tenant_slug, order_id, errors=errors, values=data, status=status
        )

    return await _form_errors(request, act, again)


class PayIn(msgspec.Struct, forbid_unknown_fields=True):
    voucher_id: uuid.UUID | None = None
    voucher_ids: list[uuid.UUID] = []  # several vouchers stack (money.apply_vouchers)


class VoucherOut(msgspec.Struct):
    id: uuid.UUID
    code: str
    kind: str
    amount_fen: int  # the amount, or a percentage voucher's cap
    categories: list[str]
    valid_through: dt.date
    order_id: uuid.UUID | None
    percent_bp: int = 0  # 0: a fixed amount
    source: str = "operator"  # operator | policy
    applied_fen: int = 0  # what it paid of its order
    source_ref: str = ""  # a policy grant's "policy-application:<id>"


def voucher_out(v: market.VoucherView) -> VoucherOut:
    return VoucherOut(
        v.id,
        v.code,
        v.kind,
        v.amount_fen,
        v.categories,
        v.valid_through,
        v.order_id,
        v.percent_bp,
        v.source,
        v.applied_fen,
        v.source_ref,
    )


@get("/vouchers", opt=BUY, tags=TAGS)
async def vouchers_api(request: Req, tenant_slug: FromPath[str]) -> list[VoucherOut]:
    """This enterprise's service and innovation vouchers (服务券 / 创新券)."""
    return [voucher_out(v) for v in await market.my_vouchers(tenant_context(request))]


@get("/vouchers", opt=BUY, include_in_schema=False)
async def vouchers_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    ctx = tenant_context(request)
    locale = request_locale(request)
    return page(
        request,
        "marketplace/vouchers.html",
        {
            **_listing_context(request, tenant_slug),
            "vouchers": await market.my_vouchers(ctx),
            "policy_base": f"/t/{tenant_slug}/m/policy",
            "kind_name": lambda k: money.VOUCHER_KIND_LABELS[money.VoucherKind(k)][
                0 if locale.startswith("zh") else 1
            ],
        },
    )


@post("/orders/{order_id:uuid}/pay", opt=BUY, tags=TAGS, status_code=200)
async def pay_api(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    data: JSONBody[PayIn | None] = None,
) -> PayOut:
    """Pay the order (CNY; card, Alipay or WeChat Pay). Returns the PaymentIntent's client
    secret to confirm with Stripe.js, or null once paid. Paying a paid order is refused
    (409 ``order_already_paid``). ``voucher_id`` / ``voucher_ids`` apply the buyer's vouchers
    first; several stack (the one lapsing first first; the subsidy never exceeds the price)."""
    ctx = tenant_context(request)
    voucher = data.voucher_id if data else None
    more = data.voucher_ids if data else []
    order, secret = await market.pay_order(
        order_id, ctx, ip=_ip(request), voucher_id=voucher, voucher_ids=more
    )
    return PayOut(order_out(order, ctx), secret)


async def _check_side(ctx: TenantContext, order_id: uuid.UUID) -> None:
    order = await market.get_order(order_id, ctx)
    _require(ctx, "buy" if order.buyer_id == ctx.tenant_id else "sell")


@post("/orders/{order_id:uuid}/transition", opt=READ, include_in_schema=False)
async def transition_form(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    await _check_side(ctx, order_id)
    data = await _form(request)
    await market.transition_order(
        order_id,
        ctx,
        str(data.get("action") or ""),
        note=str(data.get("note") or ""),
        ip=_ip(request),
    )
    return redirect(request, f"{_base(tenant_slug)}/orders/{order_id}")


@post("/orders/{order_id:uuid}/transition", opt=READ, tags=TAGS, status_code=200)
async def transition_api(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    data: JSONBody[TransitionIn],
) -> OrderOut:
    """Move the order on: the provider accepts / declines / starts / delivers, the buyer
    cancels / confirms / disputes. Anything the state machine does not allow from the current
    state, or for this side, is refused with the reason and changes nothing."""
    ctx = tenant_context(request)
    await _check_side(ctx, order_id)
    view = await market.transition_order(
        order_id, ctx, data.action, note=data.note, ip=_ip(request)
    )
    return order_out(view, ctx)


@post(
    "/orders/{order_id:uuid}/messages",
    opt=READ,
    include_in_schema=False,
    request_max_body_size=UPLOAD_LIMIT,
)
async def message_form(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[Any]:
    """A message in the order's thread, with an optional file (checked by storage). The
    thread speaks for the organisation to the other side: the side's permission (buy or
    sell), like every other step of the order."""
    ctx = tenant_context(request)
    await _check_side(ctx, order_id)
    form = await request.form()
    body = str(form.get("body") or "")

    async def act() -> Response[Any]:
        upload = form.get("file")
        file_id = None
        if isinstance(upload, UploadFile) and upload.filename:
            stored = await object_store().upload(
                ctx, "document", _upload_chunks(upload), filename=upload.filename, ip=_ip(request)
            )
            file_id = stored.id
        await market.post_message(order_id, ctx, body, file_id=file_id, ip=_ip(request))
        return redirect(request, f"{_base(tenant_slug)}/orders/{order_id}#messages")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        for error in errors:
            if error["field"] == "file":
                error["field"] = "body"
        return await _order_page(
            request, tenant_slug, order_id, errors=errors, values={"body": body}, status=status
        )

    return await _form_errors(request, act, again)


@post("/orders/{order_id:uuid}/messages", opt=READ, tags=TAGS, status_code=HTTP_201_CREATED)
async def message_api(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    data: JSONBody[MessageIn],
) -> MessageOut:
    """Write in the order's thread (the buyer side needs ``services:buy``, the provider side
    ``services:sell``); ``file_id`` is a file uploaded first through
    ``POST /api/v1/t/{slug}/files`` — one of the organisation's files also needs
    ``files:read``."""
    ctx = tenant_context(request)
    await _check_side(ctx, order_id)
    view = await market.post_message(
        order_id, ctx, data.body, file_id=data.file_id, ip=_ip(request)
    )
    return message_out(view)


@get("/orders/{order_id:uuid}/messages", opt=READ, tags=TAGS)
async def messages_api(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> list[MessageOut]:
    """The order's message thread, oldest first."""
    return [message_out(m) for m in await market.list_messages(order_id, tenant_context(request))]


@get("/orders/{order_id:uuid}/messages", opt=READ, include_in_schema=False)
async def messages_page(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[str]:
    return await _order_page(request, tenant_slug, order_id)


@get("/orders/{order_id:uuid}/messages/{message_id:uuid}/file", opt=READ, include_in_schema=False)
async def message_file(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    message_id: FromPath[uuid.UUID],
) -> Redirect:
    """302 to a five-minute link to the attachment, for either side of the order."""
    url = await market.message_attachment(order_id, message_id, tenant_context(request))
    return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})


@get("/orders/{order_id:uuid}/messages/{message_id:uuid}/file", opt=READ, tags=TAGS)
async def message_file_api(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    message_id: FromPath[uuid.UUID],
) -> dict[str, str]:
    """A five-minute download link for a message's attachment."""
    url = await market.message_attachment(order_id, message_id, tenant_context(request))
    return {"url": url}


@post("/orders/{order_id:uuid}/review", opt=BUY, include_in_schema=False)
async def review_form(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    data = await _form(request)

    async def act() -> Response[Any]:
        await market.review_order(
            order_id,
            ctx,
            str(data.get("rating") or ""),
            str(data.get("text") or ""),
            ip=_ip(request),
        )
        return redirect(request, f"{_base(tenant_slug)}/orders/{order_id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _order_page(
            request, tenant_slug, order_id, errors=errors, values=data, status=status
        )

    return await _form_errors(request, act, again)


@post("/orders/{order_id:uuid}/review", opt=BUY, tags=TAGS, status_code=HTTP_201_CREATED)
async def review_api(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    data: JSONBody[ReviewIn],
) -> ReviewOut:
    """Review a confirmed order (1–5 stars and text), once."""
    view = await market.review_order(
        order_id, tenant_context(request), data.rating, data.text, ip=_ip(request)
    )
    return review_out(view)


@post("/orders/{order_id:uuid}/review/answer", opt=SELL, include_in_schema=False)
async def answer_review_form(
    request: Req, tenant_slug: FromPath[str], order_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    data = await _form(request)

    async def act() -> Response[Any]:
        await market.answer_review(order_id, ctx, str(data.get("answer") or ""), ip=_ip(request))
        return redirect(request, f"{_base(tenant_slug)}/orders/{order_id}")

    async def again(errors: list[dict[str, str]], status: int) -> Response[Any]:
        return await _order_page(
            request, tenant_slug, order_id, errors=errors, values=data, status=status
        )

    return await _form_errors(request, act, again)


@post("/orders/{order_id:uuid}/review/answer", opt=SELL, tags=TAGS, status_code=200)
async def answer_review_api(
    request: Req,
    tenant_slug: FromPath[str],
    order_id: FromPath[uuid.UUID],
    data: JSONBody[AnswerIn],
) -> ReviewOut:
    """The provider answers the order's review, once."""
    view = await market.answer_review(
        order_id, tenant_context(request), data.answer, ip=_ip(request)
    )
    return review_out(view)


# --- provider money -------------------------------------------------------------------------


async def _statement(ctx: TenantContext) -> StatementOut:
    statement, lines = await market.provider_statement(ctx)
    return StatementOut(
        statement.orders,
        statement.gross_fen,
        statement.commission_fen,
        statement.payout_fen,
        statement.settled_fen,
        statement.pending_fen,
        [order_out(o, ctx) for o in lines],
    )


@get("/payouts", opt=MANAGE, include_in_schema=False)
async def payouts_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    from canal.platform.billing.services import no_charge

    ctx = tenant_context(request)
    locale = request_locale(request)
    return page(
        request,
        "marketplace/payouts.html",
        {
            **_listing_context(request, tenant_slug),
            "statement": await _statement(ctx),
            "can_connect": not no_charge(),
            "state_name": lambda s: orders.STATE_LABELS[orders.OrderState(s)][
                0 if locale.startswith("zh") else 1
            ],
        },
    )


@post("/payouts/connect", opt=MANAGE, include_in_schema=False)
async def connect_form(request: Req, tenant_slug: FromPath[str]) -> Response[Any]:
    """Start (or continue) Stripe Connect onboarding: payouts go to this account."""
    url = await _connect_link(request, tenant_slug)
    return Redirect(url, status_code=303)


@post("/payouts/connect", opt=MANAGE, tags=TAGS, status_code=200)
async def connect_api(request: Req, tenant_slug: FromPath[str]) -> dict[str, str]:
    """The provider's Stripe Connect onboarding link (Express account, one per organisation).
    Refused (409 ``billing_no_charge``) while the platform runs without Stripe."""
    return {"url": await _connect_link(request, tenant_slug)}


async def _connect_link(request: Req, slug: str) -> str:
    from canal.platform.billing.services import onboarding_link

    ctx = tenant_context(request)
    await market.require_provider(ctx)
    base = str(request.base_url).rstrip("/")
    return await onboarding_link(ctx, base_url=base)


@get("/payouts", opt=MANAGE, tags=TAGS)
async def payouts_api(request: Req, tenant_slug: FromPath[str]) -> StatementOut:
    """The provider's statement: paid orders, commission, payout, settled and pending."""
    return await _statement(tenant_context(request))


PAGES = [
    catalogue_page,
    listing_page,
    listing_reviews_page,
    new_listing_page,
    new_listing_form,
    edit_listing_page,
    edit_listing_form,
    provider_page,
    provider_form,
    request_quote_form,
    quotes_page,
    quote_page,
    answer_quote_form,
    counter_quote_form,
    accept_quote_form,
    buy_form,
    orders_page,
    order_page,
    pay_form,
    transition_form,
    message_form,
    messages_page,
    message_file,
    review_form,
    answer_review_form,
    payouts_page,
    vouchers_page,
    compare_page,
    listing_image,
    connect_form,
]
API = [
    catalogue_api,
    listing_api,
    listing_reviews_api,
    new_listing_api,
    edit_listing_api,
    provider_api,
    provider_apply_api,
    request_quote_api,
    quotes_api,
    quote_api,
    answer_quote_api,
    counter_quote_api,
    accept_quote_api,
    buy_api,
    orders_api,
    order_api,
    pay_api,
    transition_api,
    message_api,
    messages_api,
    message_file_api,
    review_api,
    answer_review_api,
    payouts_api,
    vouchers_api,
    compare_api,
    listing_image_api,
    connect_api,
]
