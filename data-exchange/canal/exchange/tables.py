"""Data trading tables. Who owns which row (docs/decisions/0030-exchange-two-tenant-rows.md):

* provider-side rows (providers, datasets, versions, grants, queries) have
  ``tenant_id`` = the provider, so row-level security shows them to the provider only;
* the buyer's side of a grant is a ``GrantHolding`` in the buyer's tenant; a buyer reaches the
  grant only through its own holding, then reads the grant row in the provider's scope with
  ``buyer_tenant_id`` = itself — both conditions, one transaction;
* usage events are written twice, once into each party's tenant, so each side's audit is
  ordinary tenant data; the operator reads all of them in platform scope;
* ``Listing`` is the published catalogue entry (approved datasets only): public to signed-in
  people by design, so it is a global table without ``tenant_id``; the provider's dataset row
  stays private.
"""

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    DoublePrecision,
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


class Provider(Table, tablename="exchange_providers"):
    """A tenant's application to sell data, and the operator's decision."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, unique=True)
    statement = Text()  # what data the organisation holds and where it comes from
    status = Varchar(length=16, default="pending")  # pending | approved | rejected
    reason = Text(default="")
    applied_by = UUID(null=True, default=None)
    reviewed_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    reviewed_at = Timestamptz(null=True, default=None)


class Dataset(Table, tablename="exchange_datasets"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    title = Varchar(length=120)
    description = Text()
    category = Varchar(length=32)
    tags = JSONB(default=[])
    update_frequency = Varchar(length=16)
    source_statement = Text()
    sensitivity = Varchar(length=16)  # public | internal | sensitive | core
    licence_purpose = Text()
    licence_days = Integer(default=365)
    redistribution = Boolean(default=False)
    price_model = Varchar(length=16, default="free")  # free | one_off | subscription | per_query
    price_fen = BigInt(default=0)
    delivery_modes = JSONB(default=[])  # download | compute | api
    min_cohort = Integer(default=10)
    daily_query_budget = Integer(default=50)
    # Differential privacy (decision 0043): the ε every compute-to-data answer costs, and the
    # total all buyers together may spend per period, across every version.
    epsilon_per_query = DoublePrecision(default=0.25)
    epsilon_total = DoublePrecision(default=10.0)
    budget_period_days = Integer(default=365)
    masking_rules = JSONB(default={})  # column -> action
    sample_salt = Varchar(length=64)
    status = Varchar(length=16, default="draft")  # draft | pending | approved | rejected
    review_reason = Text(default="")
    reviewed_by = UUID(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class DatasetVersion(Table, tablename="exchange_versions"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    dataset_id = UUID(index=True)
    number = Integer()
    source_file_id = UUID()  # the upload as received (storage, purpose "dataset")
    parquet_file_id = UUID(null=True, default=None)  # normalised copy made by profiling
    file_format = Varchar(length=16)
    status = Varchar(length=16, default="profiling")  # profiling | ready | failed
    encoding = Varchar(length=16, default="")
    rows = BigInt(default=0)
    profile = JSONB(default={})
    error_zh = Text(default="")
    error_en = Text(default="")
    # Per-version compliance review: "" (not submitted) | pending | approved | rejected.
    review_status = Varchar(length=16, default="")
    review_reason = Text(default="")
    # What compute-to-data answers are calibrated to (canal.exchange.privacy.Settings):
    # bounds, public categories, rows per person; proposed by profiling, confirmed by the
    # provider.
    privacy = JSONB(default={})
    # Profiling found personal data: the version is labelled "personal" unless the provider
    # states in writing why the declared grade is right (shown to the operator in review).
    sensitivity_justification = Text(default="")
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Listing(Table, tablename="exchange_listings"):
    """The published face of an approved dataset: masked sample, schema, profile and terms."""

    id = UUID(primary_key=True, default=UUID4())  # = the dataset's id
    provider_tenant_id = UUID(index=True)
    provider_name = Varchar(length=200)
    title = Varchar(length=120)
    description = Text()
    category = Varchar(length=32)
    tags = JSONB(default=[])
    update_frequency = Varchar(length=16)
    source_statement = Text()
    sensitivity = Varchar(length=16)
    licence_purpose = Text()
    licence_days = Integer()
    redistribution = Boolean()
    price_model = Varchar(length=16)
    price_fen = BigInt()
    delivery_modes = JSONB(default=[])
    version_id = UUID()
    rows = BigInt(default=0)
    columns = JSONB(default=[])  # profile columns with the masking action
    sample = JSONB(default=[])  # masked rows
    published_at = Timestamptz(default=TimestamptzNow())
    withdrawn = Boolean(default=False)


class Grant(Table, tablename="exchange_grants"):
    """An access request and, once approved, the grant (provider's row)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)  # the provider
    dataset_id = UUID(index=True)
    buyer_tenant_id = UUID(index=True)
    buyer_name = Varchar(length=200)
    requested_by = UUID()
    purpose = Text()
    status = Varchar(length=16, default="requested")  # requested|active|declined|revoked
    modes = JSONB(default=[])
    expires_at = Timestamptz(null=True, default=None)
    reason = Text(default="")
    decided_by = UUID(null=True, default=None)
    fingerprint_secret = Varchar(length=64)
    hash_salt = Varchar(length=64)
    fingerprint_columns = JSONB(default={})  # column -> decimal scale, set at first download
    # Version numbers the grant covers, fixed at approval; empty: every version, later ones too.
    versions = JSONB(default=[])
    created_at = Timestamptz(default=TimestamptzNow())
    decided_at = Timestamptz(null=True, default=None)
    # Paid datasets: when the (first) payment succeeded — set once, by billing's hook or at
    # once in no-charge mode. A subscription's periods move ``expires_at`` (billing webhooks).
    paid_at = Timestamptz(null=True, default=None)
    subscription_id = Varchar(length=64, null=True, default=None)
    subscription_status = Varchar(length=24, default="")
    cancel_at_period_end = Boolean(default=False)
    billing_seen_at = BigInt(default=0)  # when the applied subscription state was true (epoch)


class GrantHolding(Table, tablename="exchange_holdings"):
    """The buyer's side of a grant: proof, inside the buyer's tenant, that it asked for it."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)  # the buyer
    grant_id = UUID(unique=True)
    provider_tenant_id = UUID()
    dataset_id = UUID()
    title = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())


class QueryRun(Table, tablename="exchange_queries"):
    """One compute-to-data query (provider's tenant; the buyer sees its own via the grant)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    grant_id = UUID(index=True)
    buyer_tenant_id = UUID()
    user_id = UUID()
    sql = Text()
    status = Varchar(length=16)  # done | refused | failed
    error_code = Varchar(length=48, default="")
    result_rows = Integer(default=0)
    suppressed_groups = Integer(default=0)  # no longer counted (decision 0043); always 0
    elapsed_ms = Integer(default=0)
    epsilon = DoublePrecision(default=0.0)  # charged to the dataset's budget (0 when cached)
    cached = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class PrivacyBudget(Table, tablename="exchange_privacy_budgets"):
    """A dataset's privacy budget for the current period (provider's row): what every buyer's
    answers together have spent. Spending locks the row; a CHECK constraint keeps
    ``epsilon_spent`` within ``epsilon_total`` whatever the code does (migration)."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    dataset_id = UUID(unique=True)
    epsilon_total = DoublePrecision(default=10.0)
    epsilon_spent = DoublePrecision(default=0.0)
    delta_spent = DoublePrecision(default=0.0)
    period_days = Integer(default=365)
    period_started_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class CachedAnswer(Table, tablename="exchange_dp_answers"):
    """A released noisy answer, kept so that asking the same query again gets the same noise
    (and costs nothing) instead of a fresh draw to average."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    dataset_id = UUID(index=True)
    query_key = Varchar(length=64, unique=True)
    answer = JSONB(default={})
    epsilon = DoublePrecision(default=0.0)
    created_at = Timestamptz(default=TimestamptzNow())


class UsageEvent(Table, tablename="exchange_usage"):
    """Every use: sample view, download, query, API page. One row per party (see above)."""

    append_only = True

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    side = Varchar(length=8)  # provider | buyer | viewer
    provider_tenant_id = UUID()
    buyer_tenant_id = UUID(null=True, default=None)
    dataset_id = UUID(index=True)
    grant_id = UUID(null=True, default=None)
    user_id = UUID()
    action = Varchar(length=16)  # sample | download | query | api_page
    rows = BigInt(default=0)
    amount_fen = BigInt(default=0)
    detail = Varchar(length=200, default="")
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
