"""Billing pages and their JSON twins, and the Stripe webhook endpoint.

``/t/{slug}/billing``: paid plans, this tenant's subscriptions and invoices, subscribe (Stripe
Checkout), manage (the customer portal). Permission ``modules:manage`` for everything: paying
for a module is switching it on. ``POST /webhooks/stripe`` is public and carries no cookie; it
is authenticated by its Stripe signature instead.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import JSONBody
from litestar.response import Redirect
from litestar.status_codes import HTTP_200_OK

from canal.platform.billing import catalogue, services
from canal.platform.billing.webhooks import receive_event
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import tenant_context
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["billing"]
_MANAGE = {"access": "tenant", "permission": ("modules", "manage")}


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _base_url(request: Req) -> str:
    # From the settings, never from the Host header.
    return str(request.app.state.settings.base_url).rstrip("/")


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


# --- API shapes ---------------------------------------------------------------------------------


class PlanOut(msgspec.Struct):
    module_key: str
    module_zh: str
    module_en: str
    plan: str
    name_zh: str
    name_en: str
    monthly_price_fen: int
    currency: str


class SubscriptionOut(msgspec.Struct):
    module_key: str
    plan: str
    source: str  # stripe | no_charge | prepaid
    status: str
    current_period_end: dt.datetime | None


class InvoiceOut(msgspec.Struct):
    id: str
    number: str | None
    status: str | None
    total_fen: int
    currency: str
    created: dt.datetime | None
    hosted_invoice_url: str | None


class BillingOut(msgspec.Struct):
    no_charge: bool
    has_customer: bool
    plans: list[PlanOut]
    subscriptions: list[SubscriptionOut]
    invoices: list[InvoiceOut]


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True):
    module_key: str
    plan: str
    method: str = "card"  # card (recurring) | wallet (Alipay / WeChat Pay, prepaid term)
    months: int = 1


class CheckoutOut(msgspec.Struct):
    url: str | None
    no_charge: bool


class UrlOut(msgspec.Struct):
    url: str


class CancelIn(msgspec.Struct, forbid_unknown_fields=True):
    module_key: str


class Done(msgspec.Struct):
    ok: bool


def _billing_out(o: services.BillingOverview) -> BillingOut:
    return BillingOut(
        no_charge=o.no_charge,
        has_customer=o.has_customer,
        plans=[
            PlanOut(
                f.module_key,
                f.module_zh,
                f.module_en,
                f.plan.key,
                f.plan.zh,
                f.plan.en,
                f.plan.monthly_price_fen,
                catalogue.CURRENCY,
            )
            for f in o.offers
        ],
        subscriptions=[
            SubscriptionOut(s.module_key, s.plan, s.source, s.status, s.current_period_end)
            for s in o.subscriptions
        ],
        invoices=[
            InvoiceOut(
                i.id, i.number, i.status, i.total_fen, i.currency, i.created, i.hosted_invoice_url
            )
            for i in o.invoices
        ],
    )


# --- pages ------------------------------------------------------------------------------------


async def _billing_page(request: Req, status: int = 200) -> Response[str]:
    ctx = tenant_context(request)
    return page(
        request,
        "billing/billing.html",
        {
            "overview": await services.billing_overview(ctx),
            "slug": ctx.tenant.slug,
            "fen": catalogue.format_fen,
            "months_choices": services.PREPAID_MONTHS,
            "checkout_state": request.query_params.get("checkout", ""),
            "lang_zh": request_locale(request).startswith("zh"),
        },
        status=status,
    )


def _flash_error(request: Req, exc: CanalError) -> None:
    locale = request_locale(request)
    details = [e.for_locale(locale)["message"] for e in exc.errors]
    message = " ".join(details) if details else exc.message(locale)
    request.scope.setdefault("state", {})["flash"] = {"kind": "error", "message": message}


@get("/t/{tenant_slug:str}/billing", opt=_MANAGE, include_in_schema=False)
async def billing_page(request: Req) -> Response[str]:
    return await _billing_page(request)


@get(
    "/api/v1/t/{tenant_slug:str}/billing",
    opt=_MANAGE,
    tags=TAGS,
    summary="Paid plans, this organisation's subscriptions and invoices",
)
async def billing_api(request: Req) -> BillingOut:
    return _billing_out(await services.billing_overview(tenant_context(request)))


def _to_stripe(request: Req, url: str) -> Response[Any]:
    if request.headers.get("hx-request") == "true":
        return Response("", status_code=200, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


@post("/t/{tenant_slug:str}/billing/checkout", opt=_MANAGE, include_in_schema=False)
async def checkout_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    raw_months = form.get("months", "1") or "1"
    try:
        started = await services.start_checkout(
            ctx,
            form.get("module_key", ""),
            form.get("plan", ""),
            base_url=_base_url(request),
            method=form.get("method", "card") or "card",
            # ASCII digits only: "²".isdigit() is true, but int("²") raises.
            months=int(raw_months) if re.fullmatch(r"[0-9]{1,4}", raw_months) else 0,
            ip=_ip(request),
        )
    except CanalError as exc:
        if exc.status == 404:
            raise
        _flash_error(request, exc)
        return await _billing_page(request, status=exc.status)
    if started.url:
        return _to_stripe(request, started.url)
    return redirect(request, f"/t/{ctx.tenant.slug}/billing")


@post(
    "/api/v1/t/{tenant_slug:str}/billing/checkout",
    opt=_MANAGE,
    tags=TAGS,
    summary="Start subscribing to a paid plan (a Stripe Checkout URL, or granted at once in "
    "no-charge mode)",
    status_code=HTTP_200_OK,
)
async def checkout_api(request: Req, data: JSONBody[CheckoutIn]) -> CheckoutOut:
    started = await services.start_checkout(
        tenant_context(request),
        data.module_key,
        data.plan,
        base_url=_base_url(request),
        method=data.method,
        months=data.months,
        ip=_ip(request),
    )
    return CheckoutOut(url=started.url, no_charge=started.no_charge)


@post("/t/{tenant_slug:str}/billing/portal", opt=_MANAGE, include_in_schema=False)
async def portal_form(request: Req) -> Response[Any]:
    try:
        url = await services.portal_url(tenant_context(request), base_url=_base_url(request))
    except CanalError as exc:
        _flash_error(request, exc)
        return await _billing_page(request, status=exc.status)
    return _to_stripe(request, url)


@post(
    "/api/v1/t/{tenant_slug:str}/billing/portal",
    opt=_MANAGE,
    tags=TAGS,
    summary="A Stripe customer-portal link (change plan or card, cancel, invoices)",
    status_code=HTTP_200_OK,
)
async def portal_api(request: Req) -> UrlOut:
    return UrlOut(
        url=await services.portal_url(tenant_context(request), base_url=_base_url(request))
    )


@post("/t/{tenant_slug:str}/billing/cancel", opt=_MANAGE, include_in_schema=False)
async def cancel_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    await services.cancel_no_charge(ctx, form.get("module_key", ""), ip=_ip(request))
    return redirect(request, f"/t/{ctx.tenant.slug}/billing")


@post(
    "/api/v1/t/{tenant_slug:str}/billing/cancel",
    opt=_MANAGE,
    tags=TAGS,
    summary="End a no-charge plan (Stripe subscriptions end in the customer portal)",
    status_code=HTTP_200_OK,
)
async def cancel_api(request: Req, data: JSONBody[CancelIn]) -> Done:
    await services.cancel_no_charge(tenant_context(request), data.module_key, ip=_ip(request))
    return Done(ok=True)


# --- webhooks ---------------------------------------------------------------------------------


@post(
    "/webhooks/stripe",
    opt={"access": "public", "csrf_exempt": True},
    include_in_schema=False,
    status_code=HTTP_200_OK,
)
async def stripe_webhook(request: Req) -> dict[str, bool]:
    """Stripe → us. The signature over the raw body is the authentication; 400 otherwise."""
    payload = await request.body()
    runtime = getattr(request.app.state, "runtime", None)
    enqueue = None
    if runtime is not None:
        redis_url = runtime.redis_url

        async def enqueue(event_id: str) -> None:
            from canal.platform.jobs import enqueue as arq_enqueue

            await arq_enqueue(redis_url, "billing_handle_event", event_id)

    new = await receive_event(payload, request.headers.get("stripe-signature"), enqueue)
    return {"received": True, "duplicate": not new}


ROUTES = [
    billing_page,
    billing_api,
    checkout_form,
    checkout_api,
    portal_form,
    portal_api,
    cancel_form,
    cancel_api,
    stripe_webhook,
]
