"""The operator's side of the supermarket at /operator/m/services (and its JSON twin): review
queues for providers and listings, disputes, commission settings and monthly figures.

Platform routes: the guard requires operator staff with ("platform.tenants", "manage") and a
session that passed two-factor; the services then read across tenants in platform scope.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect

from canal.marketplace import catalogue, market, money
from canal.marketplace.services.controllers import ListingOut, OrderOut, listing_out
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import current_principal
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["service supermarket (operator)"]
MANAGE = {"access": "platform", "permission": ("platform.tenants", "manage")}
BASE = "/operator/m/services"


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _me(request: Req) -> uuid.UUID:
    return current_principal(request).user_id


class ProviderRow(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    status: str
    business_scope: str
    qualification_file_ids: list[str]
    reason: str


class MonthOut(msgspec.Struct):
    month: str
    category: str
    orders: int
    turnover_fen: int
    commission_fen: int
    voucher_fen: int


class DisputeOut(msgspec.Struct):
    id: uuid.UUID
    title: str
    buyer_name: str
    provider_name: str
    list_price_fen: int
    refundable_fen: int


class VoucherRow(msgspec.Struct):
    id: uuid.UUID
    holder_name: str
    code: str
    kind: str
    amount_fen: int
    categories: list[str]
    valid_through: str
    redeemed: bool
    percent_bp: int = 0  # 0: a fixed amount; else amount_fen is the cap
    source: str = "operator"  # operator | policy (granted by an approved policy application)
    source_ref: str = ""
    applied_fen: int = 0


def voucher_row(v: market.VoucherView) -> VoucherRow:
    return VoucherRow(
        v.id,
        v.holder_name,
        v.code,
        v.kind,
        v.amount_fen,
        v.categories,
        v.valid_through.isoformat(),
        v.order_id is not None,
        v.percent_bp,
        v.source,
        v.source_ref,
        v.applied_fen,
    )


class VoucherReportOut(msgspec.Struct):
    issued: int
    issued_fen: int
    redeemed: int
    subsidy_fen: int
    expired_unused: int
    vouchers: list[VoucherRow]
    by_source: dict[str, list[int]] = {}  # source → [issued, applied fen]


class VoucherIn(msgspec.Struct, forbid_unknown_fields=True):
    holder: str
    kind: str
    amount: str  # the amount, or with ``percent`` the cap, in yuan
    categories: list[str]
    valid_through: str
    percent: str = ""  # e.g. "50" or "12.5": a share of the price up to ``amount``


class DashboardOut(msgspec.Struct):
    vouchers: VoucherReportOut
    providers: list[ProviderRow]
    listings: list[ListingOut]
    disputes: list[DisputeOut]
    commission_bp: dict[str, int]
    months: list[MonthOut]
    auto_confirm_days: int = 7


class SettingsIn(msgspec.Struct, forbid_unknown_fields=True):
    auto_confirm_days: str


class DecisionIn(msgspec.Struct, forbid_unknown_fields=True):
    decision: str
    reason: str = ""


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    outcome: str
    refund: str = ""
    note: str = ""


class CommissionIn(msgspec.Struct, forbid_unknown_fields=True):
    category: str
    rate: str


async def _dashboard(operator_id: uuid.UUID) -> DashboardOut:
    providers = await market.list_providers(operator_id)
    queue = await market.review_queue(operator_id)
    open_disputes = await market.disputes(operator_id)
    report = await market.voucher_report(operator_id)
    return DashboardOut(
        vouchers=VoucherReportOut(
            report.issued,
            report.issued_fen,
            report.redeemed,
            report.subsidy_fen,
            report.expired_unused,
            [voucher_row(v) for v in report.vouchers[:100]],
            {k: list(v) for k, v in report.by_source.items()},
        ),
        providers=[
            ProviderRow(
                p.id,
                p.tenant_id,
                p.tenant_name,
                p.status,
                p.business_scope,
                p.qualification_file_ids,
                p.reason,
            )
            for p in providers
        ],
        listings=[listing_out(v) for v in queue],
        disputes=[
            DisputeOut(
                o.id,
                o.title,
                o.buyer_name,
                o.provider_name,
                o.list_price_fen,
                o.list_price_fen - o.refunded_fen,
            )
            for o in open_disputes
        ],
        commission_bp=await market.commission_rates(),
        months=[MonthOut(**m.__dict__) for m in await market.monthly_figures(operator_id)],
        auto_confirm_days=await market.auto_confirm_days(),
    )


async def _page(
    request: Req, *, errors: list[dict[str, str]] | None = None, status: int = 200
) -> Response[str]:
    locale = request_locale(request)
    board = await _dashboard(_me(request))
    months = sorted({m.month for m in board.months})
    series = []
    for category in catalogue.CATEGORIES:
        values = [
            sum(
                m.turnover_fen for m in board.months if m.month == mo and m.category == category.key
            )
            / 100
            for mo in months
        ]
        if any(values):
            series.append({"name": category.name(locale), "values": values})
    return page(
        request,
        "marketplace/operator.html",
        {
            "board": board,
            "base": BASE,
            "file_names": await market.qualification_file_names(
                _me(request), [f for p in board.providers for f in p.qualification_file_ids]
            ),
            "errors": errors or [],
            "cny": money.format_cny,
            "categories": catalogue.CATEGORIES,
            "category_name": lambda k: catalogue.category_name(k, locale),
            "chart": {"months": months},
            "chart_options": {
                "tooltip": {"trigger": "axis"},
                "legend": {},
                "xAxis": {"type": "category", "data": months},
                "yAxis": {"type": "value", "name": "¥"},
                "series": [
                    {"name": s["name"], "type": "bar", "stack": "turnover", "data": s["values"]}
                    for s in series
                ],
            },
            "category_options": [(c.key, c.name(locale)) for c in catalogue.CATEGORIES],
            "kind_options": [
                (k.value, zh if locale.startswith("zh") else en)
                for k, (zh, en) in money.VOUCHER_KIND_LABELS.items()
            ],
            "zh": locale.startswith("zh"),
        },
        status=status,
    )


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: str(v) for k, v in form.items() if k != "_csrf"}


async def _or_again(request: Req, action: Any) -> Response[Any]:
    try:
        await action
    except CanalError as error:
        if not error.errors:
            raise
        locale = request_locale(request)
        return await _page(
            request, errors=[e.for_locale(locale) for e in error.errors], status=error.status
        )
    return redirect(request, BASE)


@get("/", opt=MANAGE, include_in_schema=False)
async def operator_page(request: Req) -> Response[str]:
    return await _page(request)


@get("/", opt=MANAGE, tags=TAGS)
async def operator_api(request: Req) -> DashboardOut:
    """Review queues, open disputes, commission rates (basis points) and monthly figures."""
    return await _dashboard(_me(request))


@post("/providers/{provider_id:uuid}/decide", opt=MANAGE, include_in_schema=False)
async def decide_provider_form(request: Req, provider_id: FromPath[uuid.UUID]) -> Response[Any]:
    data = await _form(request)
    return await _or_again(
        request,
        market.decide_provider(
            _me(request),
            provider_id,
            data.get("decision", ""),
            data.get("reason", ""),
            ip=_ip(request),
        ),
    )


@post("/providers/{provider_id:uuid}/decide", opt=MANAGE, tags=TAGS, status_code=200)
async def decide_provider_api(
    request: Req, provider_id: FromPath[uuid.UUID], data: JSONBody[DecisionIn]
) -> ProviderRow:
    """Approve, reject (reason required) or suspend (reason required) a provider."""
    p = await market.decide_provider(
        _me(request), provider_id, data.decision, data.reason, ip=_ip(request)
    )
    return ProviderRow(
        p.id,
        p.tenant_id,
        p.tenant_name,
        p.status,
        p.business_scope,
        p.qualification_file_ids,
        p.reason,
    )


@get("/providers/{provider_id:uuid}/files/{file_id:uuid}", opt=MANAGE, include_in_schema=False)
async def qualification_file(
    request: Req, provider_id: FromPath[uuid.UUID], file_id: FromPath[uuid.UUID]
) -> Response[Any]:
    """Open a qualification file: a redirect to a five-minute presigned link (audited)."""
    url = await market.qualification_file_url(_me(request), provider_id, file_id, ip=_ip(request))
    return Redirect(url, status_code=302)


@get("/providers/{provider_id:uuid}/files/{file_id:uuid}", opt=MANAGE, tags=TAGS)
async def qualification_file_api(
    request: Req, provider_id: FromPath[uuid.UUID], file_id: FromPath[uuid.UUID]
) -> dict[str, str]:
    """A five-minute presigned link to one of the provider's qualification files (audited)."""
    return {
        "url": await market.qualification_file_url(
            _me(request), provider_id, file_id, ip=_ip(request)
        )
    }


@post("/listings/{listing_id:uuid}/review", opt=MANAGE, include_in_schema=False)
async def review_listing_form(request: Req, listing_id: FromPath[uuid.UUID]) -> Response[Any]:
    data = await _form(request)
    return await _or_again(
        request,
        market.review_listing(
            _me(request),
            listing_id,
            data.get("decision", ""),
            data.get("reason", ""),
            ip=_ip(request),
        ),
    )


@post("/listings/{listing_id:uuid}/review", opt=MANAGE, tags=TAGS, status_code=200)
async def review_listing_api(
    request: Req, listing_id: FromPath[uuid.UUID], data: JSONBody[DecisionIn]
) -> ListingOut:
    """Approve or reject (reason required) a new listing or a live listing's edit."""
    view = await market.review_listing(
        _me(request), listing_id, data.decision, data.reason, ip=_ip(request)
    )
    return listing_out(view)


@post("/orders/{order_id:uuid}/resolve", opt=MANAGE, include_in_schema=False)
async def resolve_form(request: Req, order_id: FromPath[uuid.UUID]) -> Response[Any]:
    data = await _form(request)
    return await _or_again(
        request,
        market.resolve_dispute(
            _me(request),
            order_id,
            data.get("outcome", ""),
            refund=data.get("refund", ""),
            note=data.get("note", ""),
            ip=_ip(request),
        ),
    )


@post("/orders/{order_id:uuid}/resolve", opt=MANAGE, tags=TAGS, status_code=200)
async def resolve_api(
    request: Req, order_id: FromPath[uuid.UUID], data: JSONBody[ResolveIn]
) -> OrderOut:
    """Rule on a dispute: ``full`` refund, ``partial`` (``refund`` in yuan) or ``none``."""
    from canal.marketplace.services.controllers import OrderOut as Out

    o = await market.resolve_dispute(
        _me(request), order_id, data.outcome, refund=data.refund, note=data.note, ip=_ip(request)
    )
    return Out(
        o.id,
        o.buyer_id,
        o.buyer_name,
        o.provider_id,
        o.provider_name,
        o.listing_id,
        o.quote_id,
        o.title,
        o.category,
        o.state,
        o.paid,
        o.list_price_fen,
        o.commission_rate_bp,
        o.commission_fen,
        o.payout_fen,
        o.buyer_paid_fen,
        o.voucher_subsidy_fen,
        o.refunded_fen,
        o.buyer_refunded_fen,
        o.commission_reversed_fen,
        o.payout_reversed_fen,
        [],
    )


@post("/commission", opt=MANAGE, include_in_schema=False)
async def commission_form(request: Req) -> Response[Any]:
    data = await _form(request)
    return await _or_again(
        request,
        market.set_commission_rate(
            _me(request), data.get("category", ""), data.get("rate", ""), ip=_ip(request)
        ),
    )


@post("/commission", opt=MANAGE, tags=TAGS, status_code=200)
async def commission_api(request: Req, data: JSONBody[CommissionIn]) -> dict[str, int]:
    """Set a category's commission as a percentage (0–30, two decimals); answers in bp."""
    bp = await market.set_commission_rate(_me(request), data.category, data.rate, ip=_ip(request))
    return {data.category: bp}


@post("/vouchers", opt=MANAGE, include_in_schema=False)
async def voucher_form(request: Req) -> Response[Any]:
    form = await request.form()
    return await _or_again(
        request,
        market.issue_voucher(
            _me(request),
            holder_slug=str(form.get("holder") or ""),
            kind=str(form.get("kind") or ""),
            amount=str(form.get("amount") or ""),
            percent=str(form.get("percent") or ""),
            categories=[str(c) for c in form.getall("categories", [])],
            valid_through=str(form.get("valid_through") or ""),
            ip=_ip(request),
        ),
    )


@post("/vouchers", opt=MANAGE, tags=TAGS, status_code=201)
async def voucher_api(request: Req, data: JSONBody[VoucherIn]) -> VoucherRow:
    """Issue a voucher (``kind``: service 服务券 or innovation 创新券) to an enterprise
    (``holder`` = its identifier): an amount in yuan — or with ``percent`` that share of the
    price, capped at ``amount`` — for the eligible categories, valid through a date (Beijing
    time)."""
    v = await market.issue_voucher(
        _me(request),
        holder_slug=data.holder,
        kind=data.kind,
        amount=data.amount,
        percent=data.percent,
        categories=data.categories,
        valid_through=data.valid_through,
        ip=_ip(request),
    )
    return voucher_row(v)


@post("/settings", opt=MANAGE, include_in_schema=False)
async def settings_form(request: Req) -> Response[Any]:
    data = await _form(request)
    return await _or_again(
        request,
        market.set_auto_confirm_days(
            _me(request), data.get("auto_confirm_days", ""), ip=_ip(request)
        ),
    )


@post("/settings", opt=MANAGE, tags=TAGS, status_code=200)
async def settings_api(request: Req, data: JSONBody[SettingsIn]) -> dict[str, int]:
    """Set the days after delivery before an order the buyer neither confirmed nor disputed
    is confirmed by the system (whole days, 1–30)."""
    days = await market.set_auto_confirm_days(_me(request), data.auto_confirm_days, ip=_ip(request))
    return {"auto_confirm_days": days}


PAGES = [
    voucher_form,
    operator_page,
    decide_provider_form,
    qualification_file,
    review_listing_form,
    resolve_form,
    commission_form,
    settings_form,
]
API = [
    voucher_api,
    operator_api,
    decide_provider_api,
    qualification_file_api,
    review_listing_api,
    resolve_api,
    commission_api,
    settings_api,
]
