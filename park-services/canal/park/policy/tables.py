"""Policy matching tables (惠企政策). Who sees which row is decided by ``tenant_id`` (RLS):

* ``policy_policies`` / ``policy_versions`` belong to the authority that wrote them;
* ``policy_catalogue`` is the public projection of published policies (no ``tenant_id``: it is
  readable by everyone by design, and written only by ``services.publish_policy``);
* ``policy_facts`` / ``policy_match_sets`` / ``policy_dismissals`` / ``policy_applications``
  belong to the enterprise;
* ``policy_reviews`` is the authority's queue row of an application (same id), so each side
  reads its own row under its own tenant's RLS — see docs/decisions/0010-policy-applications.md.
"""

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Bytea,
    Date,
    ForeignKey,
    Integer,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.constraints import Unique
from piccolo.table import Table

from canal.tenants.tables import Tenant


class Policy(Table, tablename="policy_policies"):
    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    status = Varchar(length=16, default="draft")  # draft | published | withdrawn
    current_version = Integer(default=1)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class PolicyVersion(Table, tablename="policy_versions"):
    """One immutable version of a policy: editing adds a version, never rewrites one."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    policy_id = UUID(index=True)
    number = Integer()
    title = Varchar(length=200)
    issuer = Varchar(length=100)
    level = Varchar(length=16)
    doc_number = Varchar(length=100, default="")
    support_type = Varchar(length=16)
    published_on = Date(null=True, default=None)
    effective_on = Date(null=True, default=None)
    window_opens = Date()
    window_closes = Date()
    expires_on = Date(null=True, default=None)
    summary = Text(default="")
    full_text = Text(default="")
    amount_text = Varchar(length=200, default="")
    amount_max_fen = BigInt(null=True, default=None)
    materials = JSONB(default=[])
    criteria = JSONB(default={})
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class CataloguePolicy(Table, tablename="policy_catalogue"):
    """The published version of a policy, public by design (``id`` is the policy's id)."""

    id = UUID(primary_key=True)
    authority_id = ForeignKey(references=Tenant, null=False, index=True)
    authority_name = Varchar(length=100)
    version_id = UUID()
    version_number = Integer()
    title = Varchar(length=200)
    issuer = Varchar(length=100)
    level = Varchar(length=16)
    doc_number = Varchar(length=100, default="")
    support_type = Varchar(length=16)
    published_on = Date(null=True, default=None)
    effective_on = Date(null=True, default=None)
    window_opens = Date()
    window_closes = Date()
    expires_on = Date(null=True, default=None)
    summary = Text(default="")
    full_text = Text(default="")
    amount_text = Varchar(length=200, default="")
    amount_max_fen = BigInt(null=True, default=None)
    materials = JSONB(default=[])
    criteria = JSONB(default={})
    updated_at = Timestamptz(default=TimestamptzNow())


class Fact(Table, tablename="policy_facts"):
    """One fact of an enterprise's portrait, with where it came from and as of when."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    fact = Varchar(length=40)
    value = JSONB(null=True, default=None)
    source = Varchar(length=40, default="self")  # self | verified | module:<key>
    as_of = Date()
    evidence = JSONB(default=[])  # stored_objects ids of the tenant
    updated_by = UUID(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class MatchColumn(Table, tablename="policy_match_columns"):
    """Which policy byte ``position`` of every ``policy_match_sets.codes`` stands for.

    Policy ids and version numbers only (public in the catalogue anyway), so no ``tenant_id``.
    ``version_number`` is the version the column was last matched at: the "announced" bits of
    its bytes record announcements of that version. See docs/decisions/0015."""

    id = UUID(primary_key=True, default=UUID4())
    policy_id = UUID(unique=True)
    position = Integer(unique=True)
    version_number = Integer()


class MatchSet(Table, tablename="policy_match_sets"):
    """One enterprise's latest group for every policy column, one byte each.

    A full re-match writes 100,000 rows of ~1,000 bytes by binary COPY instead of 11.7 million
    pair rows (docs/decisions/0015-policy-match-sets.md). Byte ``k`` of ``codes`` is the pair
    with the policy of column ``k``: the low seven bits are 0 not eligible (also any byte past
    the end), 1 eligible, 2 + i nearly eligible with criterion i missing; the high bit says the
    pair was announced at the column's version. Reasons are re-derived when a page shows them."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, unique=True)
    codes = Bytea(default=b"")
    as_of = Date()
    updated_at = Timestamptz(default=TimestamptzNow())


class Dismissal(Table, tablename="policy_dismissals"):
    """An enterprise marked a policy "not relevant": it stays dismissed across re-matching
    (and is not announced) until the enterprise shows it again or the policy closes."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False)
    policy_id = UUID()
    created_at = Timestamptz(default=TimestamptzNow())

    policy_dismissals_once = Unique([tenant_id, policy_id])


class Application(Table, tablename="policy_applications"):
    """An enterprise's application, as the applicant sees it."""

    id = UUID(primary_key=True, default=UUID4())
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    authority_id = UUID()
    policy_id = UUID(index=True)
    version_id = UUID()
    version_number = Integer()
    policy_title = Varchar(length=200)
    status = Varchar(length=16, default="submitted")
    form = JSONB(default={})
    materials = JSONB(default=[])
    amount_fen = BigInt(null=True, default=None)
    reason = Text(default="")
    disbursed_at = Timestamptz(null=True, default=None)
    history = JSONB(default=[])
    rating = SmallInt(null=True, default=None)
    rating_comment = Text(default="")
    submitted_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Review(Table, tablename="policy_reviews"):
    """The authority's queue row of the same application (same id), kept in step with it."""

    id = UUID(primary_key=True)
    tenant_id = ForeignKey(references=Tenant, null=False, index=True)
    applicant_id = UUID()
    applicant_name = Varchar(length=100)
    industry_code = Varchar(length=20, default="")
    policy_id = UUID(index=True)
    version_id = UUID()
    version_number = Integer()
    policy_title = Varchar(length=200)
    status = Varchar(length=16, default="submitted")
    form = JSONB(default={})
    materials = JSONB(default=[])
    amount_fen = BigInt(null=True, default=None)
    reason = Text(default="")
    disbursed_at = Timestamptz(null=True, default=None)
    history = JSONB(default=[])
    rating = SmallInt(null=True, default=None)
    reminded_at = Timestamptz(null=True, default=None)
    submitted_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
