"""The marketplace's tables: providers, listings, quotes, orders with their history and
messages, reviews, commission rates and vouchers. Shared by the service supermarket and
(later) the AI model store: ``Listing.module`` says which module a listing belongs to.

Who may read what (docs/decisions/0020-marketplace-two-party-rows.md):

* ``providers`` — the provider's own application (qualification files): tenant-owned.
* ``listings`` and ``reviews`` — public to signed-in users by design (the catalogue), so they
  are global tables keyed by ``provider_id``; every write is scoped in code to the provider.
* ``quotes``, ``orders``, ``order_events``, ``order_messages`` — about two organisations:
  ``tenant_id`` is the buyer and ``provider_tenant_id`` the provider; row-level security lets
  both (and nobody else, except the operator in platform scope) see and change them.
"""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from canal.tenants.tables import Tenant


class Provider(Table, tablename="market_providers"):
    """An enterprise's application to sell services, and the operator's decision."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, unique=True)
    status = Varchar(length=16, default="pending")  # pending|approved|rejected|suspended
    business_scope = Text()
    qualification_file_ids = JSONB(default=[])
    reason = Text(default="")  # the operator's reason for a rejection or suspension
    applied_by = UUID(null=True, default=None)
    decided_by = UUID(null=True, default=None)
    decided_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Listing(Table, tablename="market_listings"):
    """A service offered by a provider. A live listing's edit waits in ``pending_changes``
    until the operator approves it, so buyers keep seeing the reviewed version."""

    id = UUID(primary_key=True, default=UUID4())
    module = Varchar(length=32, default="services", index=True)
    provider_id = ForeignKey(references=Tenant, null=False, index=True)
    category = Varchar(length=32, index=True)
    subcategory = Varchar(length=32, default="")
    title = Varchar(length=120)
    description = Text()
    image_file_ids = JSONB(default=[])
    area = Varchar(length=32)
    delivery_days = Integer()
    price_model = Varchar(length=16)  # fixed|quote|free
    price_fen = BigInt(default=0)
    package_options = JSONB(default=[])  # [{"name": ..., "price_fen": ...}]
    # Options the buyer picks at checkout: [{"group": "", "name": ..., "price_fen": delta}];
    # options sharing a non-empty group are a choice (exactly one), the others add-ons.
    options = JSONB(default=[])
    status = Varchar(length=16, default="pending", index=True)  # pending|live|rejected|suspended
    pending_changes = JSONB(null=True, default=None)
    review_reason = Text(default="")
    rating_sum = Integer(default=0)
    rating_count = Integer(default=0)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Quote(Table, tablename="market_quotes"):
    """询价: a buyer's need, the provider's answer, counters, and the acceptance."""

    rls_counterparty_column = "provider_tenant_id"

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)  # the buyer
    provider_tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    listing_id = ForeignKey(references=Listing, null=False)
    need = Text()
    status = Varchar(length=16, default="requested")  # requested|answered|countered|accepted
    price_fen = BigInt(null=True, default=None)
    scope = Text(default="")
    valid_until = Date(null=True, default=None)
    counter_note = Text(default="")
    order_id = UUID(null=True, default=None)
    requested_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Order(Table, tablename="market_orders"):
    """An order and its settlement (all amounts in fen, from ``money.settle``)."""

    rls_counterparty_column = "provider_tenant_id"

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)  # the buyer
    provider_tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    listing_id = ForeignKey(references=Listing, null=False)
    quote_id = UUID(null=True, default=None)
    module = Varchar(length=32, default="services")
    title = Varchar(length=120)
    category = Varchar(length=32)
    state = Varchar(length=32, default="placed", index=True)
    list_price_fen = BigInt()
    commission_rate_bp = Integer()
    commission_fen = BigInt()
    payout_fen = BigInt()
    buyer_paid_fen = BigInt()
    voucher_subsidy_fen = BigInt(default=0)
    voucher_id = UUID(null=True, default=None)  # the first voucher (all: Voucher.order_id)
    options = JSONB(default=[])  # the chosen options, as priced at checkout
    payout_route = Varchar(length=16, default="")  # connect | platform, fixed at payment
    refunded_fen = BigInt(default=0)
    buyer_refunded_fen = BigInt(default=0)
    voucher_refunded_fen = BigInt(default=0)
    commission_reversed_fen = BigInt(default=0)
    payout_reversed_fen = BigInt(default=0)
    payment_key = Varchar(length=64, default="")
    paid_at = Timestamptz(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    placed_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class OrderEvent(Table, tablename="market_order_events"):
    """The order's history: one row per transition (and payment), never changed."""

    rls_counterparty_column = "provider_tenant_id"
    append_only = True

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    provider_tenant_id = ForeignKey(references=Tenant, null=False)
    order_id = ForeignKey(references=Order, null=False, index=True)
    action = Varchar(length=32)
    party = Varchar(length=16)
    from_state = Varchar(length=32)
    to_state = Varchar(length=32)
    actor_id = UUID(null=True, default=None)
    note = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())


class OrderMessage(Table, tablename="market_order_messages"):
    """The order's message thread between buyer and provider, with an optional file."""

    rls_counterparty_column = "provider_tenant_id"
    append_only = True

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    provider_tenant_id = ForeignKey(references=Tenant, null=False)
    order_id = ForeignKey(references=Order, null=False, index=True)
    author_id = UUID()
    author_tenant_id = UUID()
    body = Text()
    file_id = UUID(null=True, default=None)
    file_name = Varchar(length=200, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class Review(Table, tablename="market_reviews"):
    """One review per confirmed order; public on the listing; the provider answers once."""

    id = UUID(primary_key=True, default=UUID4())
    order_id = UUID(unique=True)
    listing_id = ForeignKey(references=Listing, null=False, index=True)
    buyer_tenant_id = ForeignKey(references=Tenant, null=False)
    provider_id = UUID()
    rating = Integer()
    text = Text(default="")
    answer = Text(default="")
    answered_at = Timestamptz(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class CommissionRate(Table, tablename="market_commission_rates"):
    """The operator's commission per category, in basis points (500 = 5 %)."""

    id = UUID(primary_key=True, default=UUID4())
    module = Varchar(length=32, default="services")
    category = Varchar(length=32, unique=True)
    rate_bp = Integer()
    updated_by = UUID(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class Voucher(Table, tablename="market_vouchers"):
    """服务券 / 创新券 issued to an enterprise (the holder, ``tenant_id``) by the operator or
    by a policy's approved application (``source``/``source_ref``): an amount — or a
    percentage of the price up to ``amount_fen`` — for eligible categories until
    ``expires_at``; used once, on one order (several may stack on one order)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    code = Varchar(length=32, unique=True)
    kind = Varchar(length=16, default="service")  # service (服务券) | innovation (创新券)
    amount_fen = BigInt()  # the amount, or a percentage voucher's cap
    percent_bp = Integer(default=0)  # 0: a fixed amount; 5000: 50 % of the price
    categories = JSONB(default=[])
    expires_at = Timestamptz()
    source = Varchar(length=16, default="operator")  # operator | policy
    source_ref = Varchar(length=120, default="")  # e.g. the policy application's id
    issued_by = UUID(null=True, default=None)
    order_id = UUID(null=True, default=None)
    applied_fen = BigInt(default=0)  # what it paid of its order
    redeemed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class MarketSettings(Table, tablename="market_settings"):
    """The operator's settings of a marketplace module (one row per module)."""

    id = UUID(primary_key=True, default=UUID4())
    module = Varchar(length=32, unique=True)
    auto_confirm_days = Integer(default=7)
    updated_by = UUID(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())
