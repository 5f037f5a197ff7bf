"""Paid module plans: the billing catalogue, keyed by module key, prices in fen (CNY).

Modules declare their free plan in ``module.py`` (``ModuleSpec.plans``); the paid plans live
here so that prices change in one place, next to the code that sells them. Resident-facing
modules (social-security card, community services) and the policy service (a public benefit
for enterprises) have no paid plans: they stay free.
"""

from __future__ import annotations

from collections.abc import Sequence

from canal.platform.modules import Plan, get_module

CURRENCY = "cny"
INTERVAL = "month"

PAID_PLANS: dict[str, tuple[Plan, ...]] = {
    "smartpark": (
        Plan("standard", "标准版", "Standard", monthly_price_fen=99_900),
        Plan("pro", "专业版", "Professional", monthly_price_fen=299_900),
    ),
    "services": (Plan("pro", "服务商专业版", "Provider Pro", monthly_price_fen=29_900),),
    "modelstore": (Plan("pro", "专业版", "Professional", monthly_price_fen=49_900),),
    "exchange": (Plan("pro", "专业版", "Professional", monthly_price_fen=99_900),),
}

# Usage meters the model store and compute-to-data report through ``record_usage``; each is a
# Stripe Billing Meter with this event name (created in the Stripe Dashboard, see billing.md).
METERS: dict[str, tuple[str, str]] = {
    "model_inference": ("模型调用次数", "Model inference calls"),
    "compute_seconds": ("数据计算秒数", "Compute-to-data seconds"),
}
# Usage already priced by the module that records it (quantity = fen). Not sent to a Stripe
# meter: each period's total is billed as an invoice item (``invoice_priced_usage``).
PRICED_METERS: dict[str, tuple[str, str]] = {
    "exchange_query": ("数据按次查询费", "Per-query data charges"),
}


def paid_plans(module_key: str) -> tuple[Plan, ...]:
    return PAID_PLANS.get(module_key, ())


def all_plans(module_key: str) -> Sequence[Plan]:
    """The module's own (free) plans followed by its paid ones."""
    spec = get_module(module_key)
    own: Sequence[Plan] = spec.plans if spec else ()
    return (*own, *paid_plans(module_key))


def paid_plan(module_key: str, plan_key: str) -> Plan | None:
    return next((p for p in paid_plans(module_key) if p.key == plan_key), None)


def product_id(module_key: str) -> str:
    return f"canal_{module_key}"


def price_id(module_key: str, plan: Plan) -> str:
    """A deterministic id: the amount is part of it, because a price never changes in Stripe —
    a new amount is a new price, and existing subscribers keep theirs."""
    return f"canal_{module_key}_{plan.key}_{CURRENCY}_{plan.monthly_price_fen}_{INTERVAL}"


def format_fen(amount_fen: int) -> str:
    """¥1,234.50 — two decimals only when there are fen."""
    yuan, fen = divmod(amount_fen, 100)
    return f"¥{yuan:,}" + (f".{fen:02d}" if fen else "")
