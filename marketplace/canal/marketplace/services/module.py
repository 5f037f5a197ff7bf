"""Registry entry of the enterprise service supermarket module (企业服务超市)."""

from typing import Any

from canal.marketplace import market
from canal.marketplace.services import controllers, operator
from canal.platform.modules import ModuleSpec, NavEntry, Permission, ScheduledJob
from canal.platform.notifications.kinds import NotificationKind, register_kind
from canal.platform.search.indexes import SearchIndex

register_kind(NotificationKind("market.update", "服务超市动态", "Service supermarket updates"))

LISTINGS_INDEX = SearchIndex(
    kind=market.SEARCH_KIND,
    searchable=("title", "category_name", "provider_name", "description"),
    filters=("category", "area", "provider_name", "provider_id", "price_model"),
    ranges=("price_fen", "rating"),
    facets=("category", "area", "provider_name", "price_model"),
    sortable=("price_fen", "rating"),
    chinese=("title", "category_name", "provider_name", "description"),
    loader=market.load_listings,
    dictionary=("代理记账", "纳税申报", "高新技术企业", "知识产权", "数字化改造"),
)


async def _seed(world: Any) -> None:
    from canal.marketplace.services.demo import seed

    await seed(world)


MODULE = ModuleSpec(
    key="services",
    name_zh="企业服务超市",
    name_en="Enterprise service supermarket",
    summary_zh="金融、人才、创业创新、法律、财税、咨询、技术与培训服务,询价下单一站办。",
    summary_en=(
        "Finance, talent, legal, tax, consulting, technology an"
        "d training services: quote, order and pay in one place."
    ),
    status="available",
    tenant_kinds=("enterprise", "park", "operator"),
    route_handlers=controllers.PAGES,
    api_handlers=controllers.API,
    operator_handlers=operator.PAGES,
    operator_api_handlers=operator.API,
    nav=(
        NavEntry("", "找服务", "Find services"),
        NavEntry("/quotes", "询价", "Quotes"),
        NavEntry("/orders", "订单", "Orders"),
        NavEntry("/vouchers", "服务券", "Vouchers", permission=("services", "buy")),
        NavEntry("/provider", "服务商中心", "Provider centre", permission=("services", "sell")),
    ),
    permissions=(
        Permission("services", "buy", "采购服务:询价、下单、付款、评价", "Buy services"),
        Permission("services", "sell", "提供服务:发布服务、报价、处理订单", "Sell services"),
    ),
    roles={
        "service_buyer": (("services", "buy"),),
        "service_agent": (("services", "sell"),),
    },
    role_names={
        "service_buyer": ("服务采购员", "Service buyer"),
        "service_agent": ("服务商客服", "Provider order handler"),
    },
    piccolo_apps=("canal.marketplace.piccolo_app",),
    search_indexes=(LISTINGS_INDEX,),
    # 03:23 Beijing time: delivered orders the buyer left alone for 7 days are confirmed.
    cron=(ScheduledJob(market.auto_confirm_job, minute={23}, hour={19}),),
    audit_labels={
        "market.provider_applied": "Applied to become a service provider",
        "market.provider_approved": "Approved a service provider",
        "market.provider_rejected": "Rejected a service provider",
        "market.provider_suspended": "Suspended a service provider",
        "market.listing_submitted": "Submitted a service listing",
        "market.listing_edited": "Edited a service listing",
        "market.qualification_viewed": "Opened a provider's qualification file",
        "market.listing_approved": "Approved a service listing",
        "market.listing_rejected": "Rejected a service listing",
        "market.quote_requested": "Requested a quote",
        "market.quote_answered": "Answered a quote request",
        "market.quote_countered": "Countered a quote",
        "market.order_placed": "Placed a service order",
        "market.order_paid": "Paid a service order",
        "market.order_accept": "Accepted a service order",
        "market.order_decline": "Declined a service order",
        "market.order_cancel": "Cancelled a service order",
        "market.order_start": "Started a service order",
        "market.order_deliver": "Delivered a service order",
        "market.order_confirm": "Confirmed a service order",
        "market.order_dispute": "Disputed a service order",
        "market.order_resolve_refund_full": "Resolved a dispute with a full refund",
        "market.order_resolve_refund_partial": "Resolved a dispute with a partial refund",
        "market.order_resolve_no_refund": "Resolved a dispute without refund",
        "market.order_reviewed": "Reviewed a service order",
        "market.review_answered": "Answered a review",
        "market.commission_set": "Set a commission rate",
        "market.auto_confirm_set": "Set the days before automatic confirmation",
        "market.voucher_issued": "Issued a service voucher",
        "market.voucher_redeemed": "Redeemed a service voucher",
    },
    seed_demo=_seed,
)
