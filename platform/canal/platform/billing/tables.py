"""Billing's own rows: the Stripe objects a tenant owns, and the webhook inbox.

A tenant's *entitlement* stays in ``module_subscriptions`` (canal.tenants); these tables only
mirror what Stripe knows so that webhooks and the reconciliation job can decide it.
"""

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
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


class BillingCustomer(Table, tablename="billing_customers"):
    """The tenant's Stripe customer (one per tenant)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, unique=True)
    stripe_customer_id = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())


class BillingSubscription(Table, tablename="billing_subscriptions"):
    """The Stripe subscription (or no-charge grant, or prepaid term) behind one paid module.

    One row per (tenant, module): a new subscription to the same module replaces the old one's
    id here, and only a subscription created later than the stored one may do so.
    """

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    module_key = Varchar(length=32)
    plan = Varchar(length=32)
    # stripe | no_charge | prepaid
    source = Varchar(length=16, default="stripe")
    stripe_subscription_id = Varchar(length=64, null=True, default=None, unique=True)
    # Stripe's status (active, trialing, past_due, canceled, unpaid, incomplete, …) or ours.
    status = Varchar(length=24)
    current_period_start = Timestamptz(null=True, default=None)
    current_period_end = Timestamptz(null=True, default=None)
    stripe_created = BigInt(default=0)  # the subscription's `created` (epoch seconds)
    # When the stored state was true at Stripe: a re-fetch's time, or a snapshot event's
    # `created`. An older snapshot never overwrites a newer state.
    state_seen_at = BigInt(default=0)
    updated_at = Timestamptz(default=TimestamptzNow())


class StripeEvent(Table, tablename="stripe_events"):
    """The webhook inbox: each Stripe event stored once (by its id), handled by a job.

    Global (no tenant yet when it arrives); holds Stripe's payload, read only by the handler.
    """

    id = UUID(primary_key=True, default=UUID4())
    event_id = Varchar(length=64, unique=True)
    event_type = Varchar(length=64)
    event_created = BigInt()
    payload = JSONB()
    status = Varchar(length=16, default="pending", index=True)  # pending | done | failed
    attempts = Integer(default=0)
    error = Text(default="")
    received_at = Timestamptz(default=TimestamptzNow())
    processed_at = Timestamptz(null=True, default=None)


class UsageRecord(Table, tablename="billing_usage"):
    """One metered usage report; unique per (tenant, identifier), so a retry is counted once."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    meter = Varchar(length=64)
    quantity = BigInt()
    identifier = Varchar(length=64)
    sent_at = Timestamptz(null=True, default=None)
    # Priced meters (catalogue.PRICED_METERS): the Stripe invoice item that billed this row.
    invoice_item_id = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Payment(Table, tablename="billing_payments"):
    """A one-off payment (order, dataset purchase): a PaymentIntent in CNY."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    idempotency_key = Varchar(length=64)
    stripe_payment_intent_id = Varchar(length=64, null=True, default=None, unique=True)
    amount_fen = BigInt()
    currency = Varchar(length=3, default="cny")
    description = Varchar(length=200, default="")
    destination_account = Varchar(length=64, null=True, default=None)
    application_fee_fen = BigInt(null=True, default=None)
    status = Varchar(length=32, default="requires_payment_method")
    no_charge = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class ConnectedAccount(Table, tablename="billing_connected_accounts"):
    """A provider's Stripe Connect account, for marketplace payouts (one per tenant)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, unique=True)
    stripe_account_id = Varchar(length=64, unique=True)
    charges_enabled = Boolean(default=False)
    payouts_enabled = Boolean(default=False)
    details_submitted = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
