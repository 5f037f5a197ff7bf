"""Demo data of the policy module: 21 district, city and provincial policies (demo/policies.json,
loaded through the same import code as the JSON import route) and three enterprise portraits.

Their dates are written as of ``DEMO_WRITTEN_ON`` and moved to the day of seeding
(``canal.platform.demo.shift_dates``): windows open a few weeks ago close in a few weeks, on
any date the demo is started."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from canal.platform import clock
from canal.platform.demo import shift_dates

POLICIES_FILE = Path(__file__).parent / "demo" / "policies.json"

PORTRAITS: dict[str, dict[str, Any]] = {
    # A bearing-cage maker: high-tech, specialised, a certification about to lapse.
    "lc-bearing": {
        "industry_code": "C3451",
        "region_code": "371502",
        "established_on": "2012-05-18",
        "registered_capital_wan": 3000,
        "employees": 186,
        "revenue_wan": 21500,
        "tax_paid_wan": 860,
        "rd_spend_wan": 780,
        "tax_credit_grade": "A",
        "patents": 27,
        "certifications": [
            {"name": "高新技术企业", "valid_from": "2024-12-01", "valid_to": "2027-11-30"},
            {"name": "专精特新", "valid_from": "2023-06-01", "valid_to": "2026-05-31"},
            {"name": "规上企业", "valid_from": "2015-01-01", "valid_to": "2030-12-31"},
        ],
    },
    # A steel-pipe maker: large, little R&D, tax credit B.
    "dc-steelpipe": {
        "industry_code": "C3130",
        "region_code": "371502",
        "established_on": "2006-03-09",
        "registered_capital_wan": 8000,
        "employees": 420,
        "revenue_wan": 56000,
        "tax_paid_wan": 1900,
        "rd_spend_wan": 560,
        "tax_credit_grade": "B",
        "patents": 6,
        "certifications": [
            {"name": "规上企业", "valid_from": "2010-01-01", "valid_to": "2030-12-31"},
        ],
    },
    # A young software company: tech SME, no revenue threshold yet for some policies.
    "shuzhi-soft": {
        "industry_code": "I6513",
        "region_code": "371502",
        "established_on": "2021-09-01",
        "registered_capital_wan": 500,
        "employees": 48,
        "revenue_wan": 1260,
        "tax_paid_wan": 65,
        "rd_spend_wan": 310,
        "tax_credit_grade": "A",
        "patents": 2,
        "certifications": [
            {"name": "科技型中小企业", "valid_from": "2026-03-01", "valid_to": "2026-12-31"},
        ],
    },
}


def load_policies(days: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """The demo policies by issuing organisation, dated from today (or moved by ``days``)."""
    data: dict[str, list[dict[str, Any]]] = shift_dates(
        json.loads(POLICIES_FILE.read_text("utf-8")), days
    )
    for items in data.values():
        for policy in items:
            # The year in a document number (东科发〔2026〕12号) follows its publication date.
            year = str(policy.get("published_on") or "")[:4]
            if year:
                policy["doc_number"] = re.sub(r"〔\d{4}〕", f"〔{year}〕", policy["doc_number"])
    return data


def portraits(days: int | None = None) -> dict[str, dict[str, Any]]:
    """The demo enterprises' facts, dated from today (or moved by ``days``)."""
    moved: dict[str, dict[str, Any]] = shift_dates(PORTRAITS, days)
    return moved


async def seed_demo(world: Any) -> None:
    from canal.park.policy import services

    for slug, items in load_policies().items():
        await services.import_policies(world.ctx(slug), items, publish=True)
    for slug, facts in portraits().items():
        await services.set_facts(world.ctx(slug), facts, source="verified")
    # Match now so the demo opens with results (the worker's jobs repeat it idempotently).
    for slug in PORTRAITS:
        await services.rematch_enterprise(world.ctx(slug).tenant_id)
    await _demo_applications(world)


async def _demo_applications(world: Any) -> None:
    """Two applications to 东昌府区科学技术局: one waiting in its queue, one accepted."""
    from canal.platform.runtime import close_services, open_services
    from canal.platform.storage.services import object_store

    # The seeding process has no object store of its own yet (the app and worker open theirs).
    try:
        object_store()
        opened = False
    except RuntimeError:
        await open_services(world.runtime)
        opened = True
    try:
        await _apply_and_decide(world, object_store())
    finally:
        if opened:
            close_services()


async def _apply_and_decide(world: Any, store: Any) -> None:
    from canal.park.policy import services

    by_title = {p["title"]: p["id"] for p in await services.open_catalogue(services.today())}
    kjj = world.ctx("dc-kjj")
    # (enterprise, policy, days ago it applied, days ago it was decided, approved amount):
    # the innovation voucher five weeks ago, approved three weeks ago; the high-tech award
    # nine days ago, still waiting. Both windows were open on those days.
    for slug, title, applied, decided, amount in (
        ("lc-bearing", "东昌府区高新技术企业认定奖励", 9, None, None),
        ("shuzhi-soft", "东昌府区科技型中小企业创新券", 36, 22, 50000),
    ):
        ctx = world.ctx(slug)
        stored = await store.upload_bytes(ctx, "document", DEMO_PDF, filename=f"{title}-申报书.pdf")
        with clock.as_of(clock.now() - dt.timedelta(days=applied)):
            app_id = await services.apply(
                ctx,
                by_title[title],
                contact=f"{ctx.tenant.name} 财务部",
                note="演示数据",
                materials=[stored.id],
            )
        if decided is not None:
            with clock.as_of(clock.now() - dt.timedelta(days=decided)):
                await services.decide(kjj, app_id, "accept", amount_yuan=amount)


DEMO_PDF = b"%PDF-1.4\n1 0 obj<< /Type /Catalog >>endobj\ntrailer<< /Root 1 0 R >>\n%%EOF\n"
