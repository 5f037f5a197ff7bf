"""Demo data for the service supermarket, through the same services the pages use: the
consultancy 临清明德财税 and the software firm 数智软件 as approved providers with live
listings, a completed and reviewed order, a quote under way, and a commission setting."""

from __future__ import annotations

import datetime as dt
from typing import Any

from canal.marketplace import market
from canal.marketplace.tables import Provider
from canal.platform import clock

# The smallest well-formed PDF: stands in for a scanned business licence.
LICENCE = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

LISTINGS: dict[str, list[dict[str, Any]]] = {
    "lc-mingde": [
        {
            "category": "tax",
            "subcategory": "bookkeeping",
            "title": "小规模纳税人代理记账(全年)",
            "description": "每月记账、纳税申报,季度财务报表,年度汇算清缴;专属会计一对一服务。",
            "area": "dongchangfu",
            "delivery_days": 365,
            "price_model": "fixed",
            "price": "2400",
            "options": [
                {"group": "发票", "name": "增值税普通发票", "price": "0"},
                {"group": "发票", "name": "增值税专用发票", "price": "100"},
                {"name": "加急建账(3 个工作日)", "price": "300"},
            ],
        },
        {
            "category": "startup",
            "subcategory": "ip",
            "title": "高新技术企业认定辅导",
            "description": "研发费用归集、知识产权梳理、申报材料撰写与专家答辩辅导。",
            "area": "liaocheng",
            "delivery_days": 60,
            "price_model": "quote",
        },
        {
            "category": "tax",
            "subcategory": "tax_filing",
            "title": "研发费用加计扣除政策咨询",
            "description": "免费解读研发费用加计扣除政策,评估企业可享受的优惠。",
            "area": "online",
            "delivery_days": 3,
            "price_model": "free",
        },
    ],
    "shuzhi-soft": [
        {
            "category": "technology",
            "subcategory": "digital",
            "title": "轴承生产线数字化改造方案",
            "description": "设备联网、产线数据采集与看板,按企业现场情况定制改造方案。",
            "area": "shandong",
            "delivery_days": 90,
            "price_model": "quote",
        },
        {
            "category": "exchange",
            "subcategory": "training",
            "title": "中小企业数字化转型培训(半天)",
            "description": "面向企业管理层的数字化转型入门培训,含案例研讨。",
            "area": "dongchangfu",
            "delivery_days": 14,
            "price_model": "fixed",
            "price": "3800",
        },
    ],
}


async def seed(world: Any) -> None:
    from canal.platform import db
    from canal.platform.runtime import close_services, open_services
    from canal.platform.storage.services import object_store

    async with db.platform_scope():
        if await Provider.exists():
            return  # seeded already
    opened = False
    try:
        object_store()
    except RuntimeError:  # ``canal demo`` seeds before the app opens storage and search
        await open_services(world.runtime)
        opened = True
    try:
        await _seed(world)
        # Rebuild the catalogue's index from the table: documents left in it by an earlier
        # database (dropped and seeded again) would show as duplicates of the new listings.
        await market.rebuild_search()
    finally:
        if opened:
            close_services()


async def _a_year_of_orders(world: Any, listing: Any) -> None:
    """Orders placed and completed over the last twelve months (written "as of" each month
    through the same services), so the operator's charts by month and the provider's
    statement have a history on whatever day the demo is seeded."""
    buyers = (world.ctx("lc-bearing"), world.ctx("dc-steelpipe"))
    seller = world.ctx("lc-mingde")
    for months_ago in (11, 10, 8, 7, 5, 4, 3, 2):
        placed = clock.now() - dt.timedelta(days=30 * months_ago + 5)
        buyer = buyers[months_ago % 2]
        with clock.as_of(placed):
            order = await market.buy_listing(listing.id, buyer, options=[1])
            order, _ = await market.pay_order(order.id, buyer)
        if not order.paid:
            continue
        with clock.as_of(placed + dt.timedelta(days=2)):
            for action in ("accept", "start", "deliver"):
                await market.transition_order(order.id, seller, action)
        with clock.as_of(placed + dt.timedelta(days=4)):
            await market.transition_order(order.id, buyer, "confirm")


async def _seed(world: Any) -> None:
    from canal.platform.storage.services import object_store

    operator_id = world.ctx("szdc").user_id
    listings: dict[str, list[Any]] = {}
    for slug, items in LISTINGS.items():
        ctx = world.ctx(slug)
        licence = await object_store().upload_bytes(
            ctx, "document", LICENCE, filename="营业执照.pdf"
        )
        provider = await market.apply_as_provider(
            ctx,
            business_scope="财税代理、企业咨询" if slug == "lc-mingde" else "软件开发、数字化改造",
            qualification_file_ids=[licence.id],
        )
        await market.decide_provider(operator_id, provider.id, "approve")
        listings[slug] = []
        for item in items:
            listing = await market.create_listing(ctx, item)
            listings[slug].append(await market.review_listing(operator_id, listing.id, "approve"))
    await market.set_commission_rate(operator_id, "technology", "8")
    await _a_year_of_orders(world, listings["lc-mingde"][0])
    # An innovation voucher for the bearing maker: half of a service's price, up to ¥1,000.
    await market.issue_voucher(
        operator_id,
        holder_slug="lc-bearing",
        kind="innovation",
        amount="1000",
        percent="50",
        categories=["tax", "technology", "exchange"],
        valid_through=(market._today() + dt.timedelta(days=180)).isoformat(),
    )

    # A completed order with a review and the provider's answer, placed five weeks ago.
    buyer, seller = world.ctx("lc-bearing"), world.ctx("lc-mingde")
    with clock.as_of(clock.now() - dt.timedelta(days=36)):
        order = await market.buy_listing(listings["lc-mingde"][0].id, buyer, options=[1])
        order, _ = await market.pay_order(order.id, buyer)
    if order.paid:
        with clock.as_of(clock.now() - dt.timedelta(days=30)):
            for action in ("accept", "start", "deliver"):
                await market.transition_order(order.id, seller, action)
            await market.post_message(
                order.id, seller, "一季度账目已整理完毕,报表已发至贵司财务邮箱。"
            )
        with clock.as_of(clock.now() - dt.timedelta(days=27)):
            await market.transition_order(order.id, buyer, "confirm")
            await market.review_order(order.id, buyer, 5, "记账及时,报税零差错,沟通顺畅。")
        await market.answer_review(order.id, seller, "感谢信任,我们会继续做好服务。")

    # A quote under way: the steel-pipe maker asks the software firm.
    quote = await market.request_quote(
        listings["shuzhi-soft"][0].id,
        world.ctx("dc-steelpipe"),
        "两条焊管生产线,约 40 台设备,希望实现产量与能耗实时看板。",
    )
    await market.answer_quote(
        quote.id,
        world.ctx("shuzhi-soft"),
        price="186000",
        scope="设备联网、数据采集网关、产线看板与三个月运维",
        valid_until=(market._today() + dt.timedelta(days=30)).isoformat(),
    )
