"""Data trading: providers, datasets and versions, review, catalogue, masking, grants, the
three delivery modes and the usage audit. Functions take a ``TenantContext`` and open their
own scopes; rows of two tenants are reached as described in ``tables.py``."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import secrets
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canal.exchange import fingerprint, masking, privacy, profiling, sandbox
from canal.exchange.tables import (
    CachedAnswer,
    Dataset,
    DatasetVersion,
    Grant,
    GrantHolding,
    Listing,
    PrivacyBudget,
    Provider,
    QueryRun,
    UsageEvent,
)
from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.context import TenantContext, TenantRef
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.settings import get_settings
from canal.platform.storage.services import (
    StoredFile,
    get_object_in_tenant,
    get_object_to_share,
    object_store,
)
from canal.platform.text import check_text

log = logging.getLogger(__name__)

CATEGORIES = {
    "energy": ("能源电力", "Energy"),
    "enterprise": ("企业经营", "Enterprise operations"),
    "industry": ("产业经济", "Industry & economy"),
    "transport": ("交通物流", "Transport & logistics"),
    "environment": ("生态环境", "Environment"),
    "public": ("公共服务", "Public services"),
    "other": ("其他", "Other"),
}
FREQUENCIES = {
    "once": ("一次性", "One-off"),
    "daily": ("每日", "Daily"),
    "weekly": ("每周", "Weekly"),
    "monthly": ("每月", "Monthly"),
    "quarterly": ("每季度", "Quarterly"),
    "yearly": ("每年", "Yearly"),
}
SENSITIVITIES = {
    "public": ("公开", "Public"),
    "internal": ("内部", "Internal"),
    "sensitive": ("敏感", "Sensitive"),
    # Set by profiling: personal data was found and the provider has not justified another
    # grade in writing (a provider may also choose it).
    "personal": ("个人信息", "Personal data"),
    "core": ("核心", "Core"),
}
JUSTIFICATION_MIN, JUSTIFICATION_MAX = 20, 2000
PRICE_MODELS = {
    "free": ("免费", "Free"),
    "one_off": ("一次性购买", "One-off purchase"),
    "subscription": ("订阅", "Subscription"),
    "per_query": ("按次计费", "Per query"),
}
MODES = {
    "download": ("脱敏文件下载", "Masked file download"),
    "compute": ("可用不可见计算", "Compute-to-data"),
    "api": ("数据接口", "Data API"),
}
SAMPLE_ROWS = 20
API_PAGE_MAX = 500
API_PAGE_LIMIT = 10_000_000  # page numbers beyond any dataset (an offset DuckDB can hold)
API_RATE_PER_MINUTE = 60
INLINE_PROFILE_BYTES = 16 * 1024 * 1024  # smaller files are profiled in the request
QUERY_TIMEOUT = 10.0
IDENTIFYING_RATIO = 0.5
# Paid before use: one payment per grant (one_off), or a Stripe subscription per grant whose
# paid periods set the grant's expiry (subscription; in no-charge mode one grant period).
PAID_UP_FRONT = ("one_off", "subscription")
SUBSCRIPTION_KIND = "exchange_grant"  # billing's metadata.kind for dataset subscriptions
LIVE_SUBSCRIPTION = ("active", "trialing")
ENDED_SUBSCRIPTION = ("canceled", "unpaid", "incomplete_expired")


def _now() -> dt.datetime:
    return clock.now()


def _err(field: str, code: str, zh: str, en: str) -> FieldError:
    return FieldError(field, code, zh, en)


def is_operator(ctx: TenantContext) -> bool:
    return ctx.tenant.kind == "operator"


def _require_operator(ctx: TenantContext) -> None:
    if not is_operator(ctx):
        raise not_found()


async def _tell(
    user_id: uuid.UUID | None,
    tenant_id: uuid.UUID,
    path: str,
    title_zh: str,
    title_en: str,
    body_zh: str = "",
    body_en: str = "",
) -> None:
    """A notification to one person, in the caller's transaction (nobody hears of a change
    that rolled back). ``path`` is relative to the tenant's exchange pages."""
    if user_id is None:
        return
    from canal.platform.notifications.services import notify
    from canal.tenants.tables import Tenant

    row = await Tenant.select(Tenant.slug).where(Tenant.id == tenant_id).first()
    if row is None:
        return
    await notify(
        [user_id],
        "exchange",
        title_zh=title_zh[:200],
        title_en=title_en[:200],
        body_zh=body_zh,
        body_en=body_en,
        link=f"/t/{row['slug']}/m/exchange{path}",
        tenant_id=tenant_id,
    )


# --- providers ------------------------------------------------------------------------------


async def provider_of(tenant_id: uuid.UUID) -> dict[str, Any] | None:
    async with db.tenant_scope(tenant_id):
        return await Provider.select().where(Provider.tenant_id == tenant_id).first()


async def apply_as_provider(ctx: TenantContext, statement: str, *, ip: str = "") -> dict[str, Any]:
    statement = statement.strip()
    if len(statement) < 10 or len(statement) > 2000:
        raise invalid(
            [
                _err(
                    "statement",
                    "statement_length",
                    "请用 10 至 2000 字说明贵单位持有的数据及其来源。",
                    "Describe the data you hold and where it comes from in 10 to 2000 characters.",
                )
            ]
        )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        existing = await Provider.select().where(Provider.tenant_id == ctx.tenant_id).first()
        if existing and existing["status"] in ("pending", "approved"):
            raise CanalError(
                "provider_exists",
                "已提交过数据提供方申请。",
                "This organisation has already applied to be a data provider.",
                status=409,
            )
        if existing:
            await Provider.update(
                {Provider.status: "pending", Provider.statement: statement, Provider.reason: ""}
            ).where(Provider.id == existing["id"])
        else:
            await Provider.insert(
                Provider(tenant_id=ctx.tenant_id, statement=statement, applied_by=ctx.user_id)
            )
        await record(
            "exchange.provider_applied", actor_id=ctx.user_id, tenant_id=ctx.tenant_id, ip=ip
        )
        row = await Provider.select().where(Provider.tenant_id == ctx.tenant_id).first()
    assert row is not None
    return row


async def pending_providers(ctx: TenantContext) -> list[dict[str, Any]]:
    _require_operator(ctx)
    from canal.tenants.tables import Tenant

    async with db.platform_scope(ctx.user_id):
        rows = (
            await Provider.select()
            .where(Provider.status == "pending")
            .order_by(Provider.created_at)
        )
        names = {
            t["id"]: t["name"]
            for t in await Tenant.select(Tenant.id, Tenant.name).where(
                Tenant.id.is_in([r["tenant_id"] for r in rows] or [uuid.uuid4()])
            )
        }
    for r in rows:
        r["tenant_name"] = names.get(r["tenant_id"], "")
    return rows


async def review_provider(
    ctx: TenantContext, provider_id: uuid.UUID, *, approve: bool, reason: str, ip: str = ""
) -> None:
    _require_operator(ctx)
    reason = reason.strip()
    # Every decision states its reason, approval too: stored with the application and in the
    # audit trail.
    if len(reason) < 2:
        raise invalid(
            [
                _err(
                    "reason",
                    "reason_required",
                    "请填写审核理由:通过和驳回都需要。",
                    "Give the reason for your decision: approving and rejecting both need one.",
                )
            ]
        )
    async with db.platform_scope(ctx.user_id):
        row = await Provider.select().where(Provider.id == provider_id).first()
        if row is None:
            raise not_found()
        await Provider.update(
            {
                Provider.status: "approved" if approve else "rejected",
                Provider.reason: reason,
                Provider.reviewed_by: ctx.user_id,
                Provider.reviewed_at: _now(),
            }
        ).where(Provider.id == provider_id)
        await record(
            "exchange.provider_reviewed",
            actor_id=ctx.user_id,
            tenant_id=row["tenant_id"],
            target=str(provider_id),
            ip=ip,
            data={"approved": approve, "reason": reason},
        )


async def approve_provider_directly(tenant_id: uuid.UUID, actor_id: uuid.UUID) -> None:
    """Demo seeding and tests: a provider approved by the operator without the round trip."""
    async with db.tenant_scope(tenant_id, actor_id):
        await Provider.insert(
            Provider(
                tenant_id=tenant_id,
                statement="企业自有业务系统产生的数据。",
                status="approved",
                applied_by=actor_id,
                reviewed_by=actor_id,
                reviewed_at=_now(),
            )
        )
        await record("exchange.provider_reviewed", actor_id=actor_id, tenant_id=tenant_id)


# --- datasets -------------------------------------------------------------------------------


@dataclass
class DatasetInput:
    title: str = ""
    description: str = ""
    category: str = ""
    tags: str = ""
    update_frequency: str = ""
    source_statement: str = ""
    sensitivity: str = ""
    licence_purpose: str = ""
    licence_days: str = "365"
    redistribution: bool = False
    price_model: str = "free"
    price_yuan: str = "0"
    delivery_modes: Sequence[str] = ()
    min_cohort: str = "10"


def _validate(data: DatasetInput) -> dict[str, Any]:
    errors: list[FieldError] = []
    # Catalogue text: shown to every buyer, so bounded and free of direction controls.
    title = check_text(errors, "title", data.title, limit=120, minimum=2, zh="标题", en="The title")
    description = check_text(
        errors,
        "description",
        data.description,
        limit=5000,
        minimum=10,
        multiline=True,
        zh="数据描述",
        en="The description",
    )
    if data.category not in CATEGORIES:
        errors.append(_err("category", "category_unknown", "请选择分类。", "Choose a category."))
    if data.update_frequency not in FREQUENCIES:
        errors.append(
            _err(
                "update_frequency",
                "frequency_unknown",
                "请选择更新频率。",
                "Choose an update frequency.",
            )
        )
    source = check_text(
        errors,
        "source_statement",
        data.source_statement,
        limit=2000,
        minimum=10,
        multiline=True,
        zh="数据来源说明(《数据安全法》要求)",
        en="The statement of where the data comes from (required by the Data Security Law)",
    )
    if data.sensitivity not in SENSITIVITIES:
        errors.append(
            _err(
                "sensitivity",
                "sensitivity_unknown",
                "请选择敏感级别。",
                "Choose a sensitivity grade.",
            )
        )
    if data.sensitivity == "core":
        errors.append(
            _err(
                "sensitivity",
                "sensitivity_core",
                "核心数据不得上架交易。",
                "Core data may not be listed for trading.",
            )
        )
    purpose = check_text(
        errors,
        "licence_purpose",
        data.licence_purpose,
        limit=2000,
        minimum=4,
        multiline=True,
        zh="许可的使用目的",
        en="The purposes the licence allows",
    )
    days = _int(data.licence_days)
    if days is None or not 1 <= days <= 3650:
        errors.append(
            _err(
                "licence_days",
                "licence_days_range",
                "许可期限为 1 至 3650 天。",
                "The licence lasts 1 to 3650 days.",
            )
        )
    if data.price_model not in PRICE_MODELS:
        errors.append(
            _err("price_model", "price_model_unknown", "请选择计价方式。", "Choose a price model.")
        )
    price_fen = _fen(data.price_yuan)
    if price_fen is None or price_fen < 0 or price_fen > 100_000_000:
        errors.append(
            _err(
                "price_yuan",
                "price_invalid",
                "价格须为 0 至 100 万元的金额。",
                "The price must be 0 to 1,000,000 yuan.",
            )
        )
    elif data.price_model == "free":
        price_fen = 0
    elif price_fen == 0:
        errors.append(
            _err(
                "price_yuan",
                "price_required",
                "收费数据请填写价格。",
                "Enter a price for a paid dataset.",
            )
        )
    modes = [m for m in data.delivery_modes if m in MODES]
    if not modes or len(modes) != len(set(data.delivery_modes)):
        errors.append(
            _err(
                "delivery_modes",
                "modes_required",
                "请至少选择一种交付方式。",
                "Choose at least one delivery mode.",
            )
        )
    if data.sensitivity == "sensitive" and "download" in modes:
        errors.append(
            _err(
                "delivery_modes",
                "sensitive_no_download",
                "敏感级数据只能以可用不可见计算或接口方式交付,不能下载。",
                "Sensitive data can only be delivered by compute-to-data or the API, not download.",
            )
        )
    cohort = _int(data.min_cohort)
    if cohort is None or not 5 <= cohort <= 1000:
        errors.append(
            _err(
                "min_cohort",
                "cohort_range",
                "最小分组人数为 5 至 1000。",
                "The minimum cohort is 5 to 1000.",
            )
        )
    tags = [t.strip() for t in data.tags.replace(",", ",").split(",") if t.strip()][:10]
    if any(len(t) > 20 for t in tags):
        errors.append(
            _err(
                "tags", "tag_length", "每个标签不超过 20 字。", "Each tag is at most 20 characters."
            )
        )
    else:
        tag_errors: list[FieldError] = []
        for tag in tags:
            check_text(tag_errors, "tags", tag, limit=20, zh="标签", en="A tag")
        errors.extend(tag_errors[:1])
    if errors:
        raise invalid(errors)
    return {
        "title": title,
        "description": description,
        "category": data.category,
        "tags": tags,
        "update_frequency": data.update_frequency,
        "source_statement": source,
        "sensitivity": data.sensitivity,
        "licence_purpose": purpose,
        "licence_days": days,
        "redistribution": bool(data.redistribution),
        "price_model": data.price_model,
        "price_fen": price_fen,
        "delivery_modes": modes,
        "min_cohort": cohort,
    }


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _fen(value: Any) -> int | None:
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(str(value).strip() or "0")
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        return None
    return int(amount * 100)


async def _require_provider(ctx: TenantContext) -> None:
    provider = await provider_of(ctx.tenant_id)
    if provider is None or provider["status"] != "approved":
        raise CanalError(
            "provider_not_approved",
            "贵单位尚未获批为数据提供方,请先提交申请并等待运营方审核。",
            "This organisation is not an approved data provider yet: apply and wait for the "
            "operator's review.",
            status=403,
        )


async def create_dataset(ctx: TenantContext, data: DatasetInput, *, ip: str = "") -> dict[str, Any]:
    values = _validate(data)
    await _require_provider(ctx)
    dataset = Dataset(
        tenant_id=ctx.tenant_id,
        sample_salt=secrets.token_hex(16),
        created_by=ctx.user_id,
        **values,
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await dataset.save()
        await record(
            "exchange.dataset_created",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(dataset.id),
            ip=ip,
            data={"title": values["title"]},
        )
    return await get_dataset(dataset.id, ctx)


async def get_dataset(dataset_id: uuid.UUID, ctx: TenantContext) -> dict[str, Any]:
    """The provider's own dataset; the operator may read any (for review)."""
    if is_operator(ctx):
        async with db.platform_scope(ctx.user_id):
            row = (
                await Dataset.select()
                .output(load_json=True)
                .where(Dataset.id == dataset_id)
                .first()
            )
    else:
        async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
            row = (
                await Dataset.select()
                .output(load_json=True)
                .where((Dataset.id == dataset_id) & (Dataset.tenant_id == ctx.tenant_id))
                .first()
            )
    if row is None:
        raise not_found()
    return row


async def list_datasets(ctx: TenantContext) -> list[dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        return (
            await Dataset.select()
            .output(load_json=True)
            .where(Dataset.tenant_id == ctx.tenant_id)
            .order_by(Dataset.created_at, ascending=False)
        )


async def versions_of(dataset: dict[str, Any], ctx: TenantContext) -> list[dict[str, Any]]:
    scope = (
        db.platform_scope(ctx.user_id)
        if is_operator(ctx)
        else db.tenant_scope(ctx.tenant_id, ctx.user_id)
    )
    async with scope:
        return (
            await DatasetVersion.select()
            .output(load_json=True)
            .where(
                (DatasetVersion.dataset_id == dataset["id"])
                & (DatasetVersion.tenant_id == dataset["tenant_id"])
            )
            .order_by(DatasetVersion.number, ascending=False)
        )


def latest_ready(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((v for v in versions if v["status"] == "ready"), None)


async def add_version(
    ctx: TenantContext, dataset_id: uuid.UUID, file_id: uuid.UUID, *, ip: str = ""
) -> dict[str, Any]:
    dataset = await get_dataset(dataset_id, ctx)
    if dataset["tenant_id"] != ctx.tenant_id:
        raise not_found()
    # Buyers get (masked) copies of it: attaching the organisation's file needs files:read.
    stored = await get_object_to_share(file_id, ctx)
    if stored.purpose != "dataset":
        raise invalid(
            [
                _err(
                    "file_id",
                    "file_not_dataset",
                    "请上传数据集文件(CSV、JSON Lines 或 Parquet)。",
                    "Upload a dataset file (CSV, JSON Lines or Parquet).",
                )
            ]
        )
    head = await object_store().read_head(stored, 64)
    file_format = profiling.sniff_format(head, stored.original_name)
    inline = stored.size <= INLINE_PROFILE_BYTES
    # Small files are profiled before anything is written: a malformed file is refused with
    # its reason and leaves no version behind. Large ones get a version in "profiling" and a job.
    profiled = await _profile_stored(ctx, stored, file_format) if inline else None
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        number = (await DatasetVersion.count().where(DatasetVersion.dataset_id == dataset_id)) + 1
        version = DatasetVersion(
            tenant_id=ctx.tenant_id,
            dataset_id=dataset_id,
            number=number,
            source_file_id=stored.id,
            file_format=file_format,
            created_by=ctx.user_id,
        )
        await version.save()
        await record(
            "exchange.version_added",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(version.id),
            ip=ip,
            data={"dataset": str(dataset_id), "number": number, "file": str(stored.id)},
        )
        if profiled is not None:
            await _store_profile(dataset_id, version.id, *profiled)
        else:
            from canal.platform.jobs import enqueue_after_commit

            await enqueue_after_commit(
                "exchange_profile_version",
                str(ctx.tenant_id),
                str(version.id),
                key=f"exchange-profile:{version.id}",
            )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await DatasetVersion.select()
            .output(load_json=True)
            .where(DatasetVersion.id == version.id)
            .first()
        )
    assert row is not None
    return row


async def _fetch(stored: StoredFile, path: Path) -> None:
    store = object_store()
    await asyncio.to_thread(store.client.fget_object, stored.bucket, stored.key, str(path))


def _system_ctx(tenant_id: uuid.UUID, user_id: uuid.UUID | None) -> TenantContext:
    ref = TenantRef(tenant_id, "", "", "enterprise", "active")
    return TenantContext(ref, user_id or uuid.UUID(int=0), ("owner",))


async def _profile_stored(
    ctx: TenantContext, stored: StoredFile, file_format: str
) -> tuple[str, dict[str, Any], uuid.UUID]:
    """(encoding, profile, id of the normalised Parquet in storage); DatasetError if unreadable."""
    with tempfile.TemporaryDirectory(prefix="canal-profile-") as tmp:
        src, out = Path(tmp) / "source", Path(tmp) / "data.parquet"
        await _fetch(stored, src)
        encoding = await asyncio.to_thread(profiling.normalise, src, file_format, out)
        summary = await asyncio.to_thread(profiling.profile, out)
        parquet = await object_store().upload_bytes(
            ctx, "dataset", out.read_bytes(), filename=f"{Path(stored.original_name).stem}.parquet"
        )
    return encoding, summary, parquet.id


async def _store_profile(
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    encoding: str,
    summary: dict[str, Any],
    parquet_id: uuid.UUID,
) -> None:
    """Inside the caller's tenant scope: the version becomes ready, masking gets defaults."""
    dataset = await Dataset.select().output(load_json=True).where(Dataset.id == dataset_id).first()
    assert dataset is not None
    rules = dict(dataset["masking_rules"] or {})
    for column in summary["columns"]:
        rule = rules.get(column["name"])
        if rule is None or not masking.rule_allowed(column["pii"], rule):
            rules[column["name"]] = masking.default_rule(column["pii"])
    # Profiling proposes the privacy settings; compute-to-data waits for the provider to
    # confirm them (decision 0043).
    values = summary.pop("proposed_categories", {}) or {}
    usable = {
        c["name"] for c in summary["columns"] if rules.get(c["name"]) == "keep" and not c["pii"]
    }
    proposal = privacy.propose(summary, usable, values)
    # A new version of the same people starts from what the provider confirmed before
    # (columns still there); it is confirmed again on its own.
    earlier = (
        await DatasetVersion.select(DatasetVersion.privacy)
        .output(load_json=True)
        .where((DatasetVersion.dataset_id == dataset_id) & (DatasetVersion.id != version_id))
        .order_by(DatasetVersion.number, ascending=False)
    )
    confirmed = next(
        (
            privacy.Settings.from_json(v["privacy"])
            for v in earlier
            if (v["privacy"] or {}).get("confirmed")
        ),
        None,
    )
    if confirmed is not None:
        proposal["max_rows_per_person"] = confirmed.max_rows_per_person
        for name, pair in confirmed.bounds.items():
            if name in proposal["bounds"]:
                proposal["bounds"][name] = list(pair)
        for name, cats in confirmed.categories.items():
            if name in usable:
                proposal["categories"][name] = cats
    await Dataset.update({Dataset.masking_rules: rules, Dataset.updated_at: _now()}).where(
        Dataset.id == dataset_id
    )
    await DatasetVersion.update(
        {
            DatasetVersion.status: "ready",
            DatasetVersion.encoding: encoding,
            DatasetVersion.rows: summary["rows"],
            DatasetVersion.profile: summary,
            DatasetVersion.parquet_file_id: parquet_id,
            DatasetVersion.privacy: proposal,
        }
    ).where(DatasetVersion.id == version_id)


async def profile_version(tenant_id: uuid.UUID, version_id: uuid.UUID) -> str:
    """The job for large files: profile a version left in "profiling". Idempotent."""
    async with db.tenant_scope(tenant_id):
        version = (
            await DatasetVersion.select()
            .output(load_json=True)
            .where(DatasetVersion.id == version_id)
            .first()
        )
    if version is None or version["status"] != "profiling":
        return "skipped"
    ctx = _system_ctx(tenant_id, version["created_by"])
    stored = await get_object_in_tenant(version["source_file_id"], ctx)
    try:
        profiled = await _profile_stored(ctx, stored, version["file_format"])
    except CanalError as error:
        async with db.tenant_scope(tenant_id):
            await DatasetVersion.update(
                {
                    DatasetVersion.status: "failed",
                    DatasetVersion.error_zh: error.zh,
                    DatasetVersion.error_en: error.en,
                }
            ).where(DatasetVersion.id == version_id)
        return "failed"
    async with db.tenant_scope(tenant_id):
        await _store_profile(version["dataset_id"], version_id, *profiled)
    return "ready"


def personal_findings(version: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The columns in which profiling found personal data (name, kind), in file order."""
    return [
        {"name": c["name"], "pii": c["pii"]}
        for c in ((version or {}).get("profile") or {}).get("columns", [])
        if c.get("pii")
    ]


def effective_sensitivity(dataset: dict[str, Any], version: dict[str, Any] | None) -> str:
    """The grade a version is listed and reviewed under: "personal" when profiling found
    personal data, until the provider has justified the declared grade in writing."""
    if personal_findings(version) and not (version or {}).get("sensitivity_justification"):
        return "personal"
    return str(dataset["sensitivity"])


async def justify_sensitivity(
    ctx: TenantContext,
    dataset_id: uuid.UUID,
    justification: str,
    *,
    version: int | None = None,
    ip: str = "",
) -> dict[str, Any]:
    """The provider's written reason why a version in which profiling found personal data
    keeps the declared grade instead of "personal" (e.g. the columns are dropped or hashed,
    the people are enterprises' public contacts). Stored with the version, shown to the
    operator in review; an empty text withdraws it (the version is "personal" again)."""
    dataset = await get_dataset(dataset_id, ctx)
    if dataset["tenant_id"] != ctx.tenant_id:
        raise not_found()
    versions = await versions_of(dataset, ctx)
    target = (
        next((v for v in versions if v["number"] == version and v["status"] == "ready"), None)
        if version is not None
        else latest_ready(versions)
    )
    if target is None:
        raise CanalError(
            "no_ready_version",
            "没有已完成分析的该版本。",
            "There is no profiled version with that number.",
            status=404 if version is not None else 409,
        )
    if not personal_findings(target):
        raise CanalError(
            "no_personal_data",
            f"第 {target['number']} 版未发现个人信息,无需说明。",
            f"Profiling found no personal data in version {target['number']}: there is "
            "nothing to justify.",
            status=409,
        )
    if target["review_status"] in ("pending", "approved"):
        raise CanalError(
            "version_reviewed",
            f"第 {target['number']} 版已提交审核,不能再修改说明。",
            f"Version {target['number']} has been sent for review: its justification can no "
            "longer change.",
            status=409,
        )
    text = justification.strip()
    if text and not JUSTIFICATION_MIN <= len(text) <= JUSTIFICATION_MAX:
        raise invalid(
            [
                _err(
                    "justification",
                    "justification_length",
                    f"请用 {JUSTIFICATION_MIN} 至 {JUSTIFICATION_MAX} 字说明为何该数据不属于"
                    "个人信息级别。",
                    f"Explain in {JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters why this "
                    "data is not personal data.",
                )
            ]
        )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await DatasetVersion.update({DatasetVersion.sensitivity_justification: text}).where(
            DatasetVersion.id == target["id"]
        )
        await record(
            "exchange.sensitivity_justified",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(dataset_id),
            ip=ip,
            data={
                "version": target["number"],
                "declared": dataset["sensitivity"],
                "justification": text,
            },
        )
    target = {**target, "sensitivity_justification": text}
    return {
        "version": target["number"],
        "findings": personal_findings(target),
        "declared_sensitivity": dataset["sensitivity"],
        "sensitivity": effective_sensitivity(dataset, target),
        "justification": text,
    }


def pending_version(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((v for v in versions if v["review_status"] == "pending"), None)


async def submit_for_review(ctx: TenantContext, dataset_id: uuid.UUID, *, ip: str = "") -> None:
    """Send the newest ready version for the operator's review. A listed (approved) dataset
    stays listed meanwhile: grants keep the version last approved until this one is (the
    per-version review); an unlisted one waits for its first review as a whole."""
    dataset = await get_dataset(dataset_id, ctx)
    if dataset["tenant_id"] != ctx.tenant_id:
        raise not_found()
    versions = await versions_of(dataset, ctx)
    newest = latest_ready(versions)
    if newest is None:
        raise CanalError(
            "no_ready_version",
            "请先上传并完成分析至少一个数据版本。",
            "Upload at least one version and let its profiling finish first.",
            status=409,
        )
    if (
        "compute" in dataset["delivery_modes"]
        and not privacy.Settings.from_json(newest.get("privacy")).confirmed
    ):
        raise CanalError(
            "privacy_unconfirmed",
            f"请先确认第 {newest['number']} 版的隐私设置(取值范围、公开分类、每人最多行数),"
            "再提交审核:可用不可见计算依据它们添加噪声。",
            f"Confirm the privacy settings of version {newest['number']} (value ranges, public "
            "categories, rows per person) before sending it for review: compute-to-data "
            "answers are calibrated to them.",
            status=409,
        )
    if dataset["status"] == "pending" or pending_version(versions) is not None:
        raise CanalError(
            "already_pending",
            "该数据集已在审核中。",
            "This dataset is already under review.",
            status=409,
        )
    listed = dataset["status"] == "approved"
    if listed and newest["review_status"] == "approved":
        raise CanalError(
            "nothing_to_review",
            f"没有待审核的新版本:最新的第 {newest['number']} 版已通过审核。",
            f"There is no new version to review: the newest, version {newest['number']}, "
            "is already approved.",
            status=409,
        )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await DatasetVersion.update(
            {DatasetVersion.review_status: "pending", DatasetVersion.review_reason: ""}
        ).where(DatasetVersion.id == newest["id"])
        if not listed:
            await Dataset.update({Dataset.status: "pending", Dataset.review_reason: ""}).where(
                Dataset.id == dataset_id
            )
        await record(
            "exchange.version_submitted" if listed else "exchange.dataset_submitted",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(dataset_id),
            ip=ip,
            data={"version": newest["number"]},
        )


async def review_queue(ctx: TenantContext) -> list[dict[str, Any]]:
    """Datasets waiting for their first review, and listed ones with a new version waiting
    (``review_version``: the number under review)."""
    _require_operator(ctx)
    from canal.tenants.tables import Tenant

    async with db.platform_scope(ctx.user_id):
        under_review = {
            v["dataset_id"]: v
            for v in await DatasetVersion.select(
                DatasetVersion.dataset_id,
                DatasetVersion.number,
                DatasetVersion.profile,
                DatasetVersion.privacy,
                DatasetVersion.sensitivity_justification,
            )
            .output(load_json=True)
            .where(DatasetVersion.review_status == "pending")
        }
        waiting = {k: v["number"] for k, v in under_review.items()}
        rows = (
            await Dataset.select()
            .output(load_json=True)
            .where(
                (Dataset.status == "pending") | Dataset.id.is_in(list(waiting) or [uuid.uuid4()])
            )
            .order_by(Dataset.updated_at)
        )
        names = {
            t["id"]: t["name"]
            for t in await Tenant.select(Tenant.id, Tenant.name).where(
                Tenant.id.is_in([r["tenant_id"] for r in rows] or [uuid.uuid4()])
            )
        }
    for r in rows:
        r["provider_name"] = names.get(r["tenant_id"], "")
        r["review_version"] = waiting.get(r["id"])
        # At a glance in the queue: the grade the version would be listed under, the columns
        # with personal data, and those the provider wants answered without noise.
        version = under_review.get(r["id"])
        r["effective_sensitivity"] = effective_sensitivity(r, version)
        r["personal_columns"] = [f["name"] for f in personal_findings(version)]
        r["exact_columns"] = privacy.Settings.from_json((version or {}).get("privacy")).exact
    return rows


async def review_dataset(
    ctx: TenantContext, dataset_id: uuid.UUID, *, approve: bool, reason: str, ip: str = ""
) -> None:
    """The operator's decision on what waits: a dataset's first review (approval lists it),
    or a listed dataset's new version (approval makes it the current one; rejection leaves
    the listing and every grant on the version approved before)."""
    _require_operator(ctx)
    reason = reason.strip()
    # Every decision states its reason: it is stored with the version and in the audit trail.
    if len(reason) < 2:
        raise invalid(
            [
                _err(
                    "reason",
                    "reason_required",
                    "请填写审核理由:通过和驳回都需要。",
                    "Give the reason for your decision: approving and rejecting both need one.",
                )
            ]
        )
    dataset = await get_dataset(dataset_id, ctx)
    versions = await versions_of(dataset, ctx)
    waiting = pending_version(versions)
    version_only = dataset["status"] == "approved" and waiting is not None
    if dataset["status"] != "pending" and not version_only:
        raise CanalError(
            "not_pending",
            "该数据集不在待审状态。",
            "This dataset is not awaiting review.",
            status=409,
        )
    version = waiting or latest_ready(versions)
    sample: list[list[Any]] = []
    if approve and version is not None:
        sample = await _masked_sample(dataset, version)
    what_zh = (
        f"「{dataset['title']}」第 {version['number']} 版"
        if version_only and version
        else (f"数据集「{dataset['title']}」")
    )
    what_en = (
        f"Version {version['number']} of '{dataset['title']}'"
        if version_only and version
        else f"Dataset '{dataset['title']}'"
    )
    async with db.platform_scope(ctx.user_id):
        if not version_only:
            await Dataset.update(
                {
                    Dataset.status: "approved" if approve else "rejected",
                    Dataset.review_reason: reason,
                    Dataset.reviewed_by: ctx.user_id,
                }
            ).where(Dataset.id == dataset_id)
        if version is not None:
            await DatasetVersion.update(
                {
                    DatasetVersion.review_status: "approved" if approve else "rejected",
                    DatasetVersion.review_reason: reason,
                }
            ).where(DatasetVersion.id == version["id"])
        if approve and version is not None:
            await _publish(dataset, version, sample)
        await _tell(
            dataset["created_by"],
            dataset["tenant_id"],
            f"/datasets/{dataset_id}",
            what_zh + ("已通过合规审核并发布" if approve else "未通过合规审核"),
            what_en + (" was approved and published" if approve else " was rejected in review"),
            reason,
            reason,
        )
        await record(
            "exchange.version_reviewed" if version_only else "exchange.dataset_reviewed",
            actor_id=ctx.user_id,
            tenant_id=dataset["tenant_id"],
            target=str(dataset_id),
            ip=ip,
            data={
                "approved": approve,
                "reason": reason,
                "version": version["number"] if version else None,
                "sensitivity": effective_sensitivity(dataset, version),
                "personal_columns": [f["name"] for f in personal_findings(version)],
                # Columns answered without noise, as the operator saw them in review.
                "exact_columns": privacy.Settings.from_json((version or {}).get("privacy")).exact,
            },
        )
    if approve:
        await _index_listing(dataset_id)


async def _local_parquet(version: dict[str, Any]) -> Path:
    """The version's normalised Parquet, cached on local disk by its (immutable) file id."""
    cache = get_settings().var_dir / "exchange-cache"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{version['parquet_file_id']}.parquet"
    if not path.exists():
        ctx = _system_ctx(version["tenant_id"], None)
        stored = await get_object_in_tenant(version["parquet_file_id"], ctx)
        partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
        await _fetch(stored, partial)
        partial.replace(path)
    return path


def _kinds(version: dict[str, Any]) -> dict[str, str | None]:
    return {c["name"]: c.get("pii") for c in (version["profile"] or {}).get("columns", [])}


async def review_sample(dataset: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """What buyers would see of a version, for the operator's review: the masked sample with
    its column names (dropped columns left out, as in the listing)."""
    if not version.get("parquet_file_id"):
        return {"columns": [], "rows": []}
    rules = dataset["masking_rules"] or {}
    names = [c["name"] for c in (version["profile"] or {}).get("columns", [])]
    return {
        "columns": [n for n in names if rules.get(n, "keep") != "drop"],
        "rows": await _masked_sample(dataset, version),  # dropped columns already left out
    }


async def _masked_sample(dataset: dict[str, Any], version: dict[str, Any]) -> list[list[Any]]:
    path = await _local_parquet(version)
    columns, rows = await asyncio.to_thread(profiling.read_rows, path, limit=SAMPLE_ROWS)
    masked = masking.mask_rows(
        columns, rows, dataset["masking_rules"], _kinds(version), dataset["sample_salt"].encode()
    )
    return [[_json_value(v) for v in r] for r in masked]


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def _publish(
    dataset: dict[str, Any], version: dict[str, Any], sample: list[list[Any]]
) -> None:
    from canal.tenants.tables import Tenant

    provider = await Tenant.select(Tenant.name).where(Tenant.id == dataset["tenant_id"]).first()
    rules = dataset["masking_rules"] or {}
    # A column's exact minimum and maximum are two people's values: buyers see the range the
    # provider declared for compute-to-data instead (decision 0043), or nothing.
    bounds = privacy.Settings.from_json(version.get("privacy")).bounds
    columns = [
        {
            **c,
            "action": rules.get(c["name"], "keep"),
            "min": _json_value(bounds[c["name"]][0]) if c["name"] in bounds else None,
            "max": _json_value(bounds[c["name"]][1]) if c["name"] in bounds else None,
        }
        for c in (version["profile"] or {}).get("columns", [])
        if rules.get(c["name"], "keep") != "drop"
    ]
    values = {
        "provider_tenant_id": dataset["tenant_id"],
        "provider_name": provider["name"] if provider else "",
        "title": dataset["title"],
        "description": dataset["description"],
        "category": dataset["category"],
        "tags": dataset["tags"],
        "update_frequency": dataset["update_frequency"],
        "source_statement": dataset["source_statement"],
        "sensitivity": effective_sensitivity(dataset, version),
        "licence_purpose": dataset["licence_purpose"],
        "licence_days": dataset["licence_days"],
        "redistribution": dataset["redistribution"],
        "price_model": dataset["price_model"],
        "price_fen": dataset["price_fen"],
        "delivery_modes": dataset["delivery_modes"],
        "version_id": version["id"],
        "rows": version["rows"],
        "columns": columns,
        "sample": sample,
        "withdrawn": False,
    }
    await Listing.delete().where(Listing.id == dataset["id"])
    await Listing.insert(Listing(id=dataset["id"], **values))


async def _index_listing(dataset_id: uuid.UUID) -> None:
    from canal.exchange.search import index_listing

    await index_listing(dataset_id)


@dataclass
class PrivacyInput:
    """The provider's privacy settings for a version and the dataset's budget. Omitted parts
    keep what is there (profiling's proposal at first)."""

    version: int | None = None
    max_rows_per_person: int | None = None
    bounds: dict[str, list[float]] | None = None
    categories: dict[str, list[str]] | None = None
    epsilon_per_query: float | None = None
    epsilon_total: float | None = None
    budget_period_days: int | None = None
    # Non-personal columns whose sums and value counts are released without noise.
    exact: list[str] | None = None


def compute_columns(dataset: dict[str, Any], version: dict[str, Any]) -> list[dict[str, Any]]:
    """Profile columns that enter the sandbox: kept as is and without personal data."""
    rules = dataset["masking_rules"] or {}
    return [
        c
        for c in (version["profile"] or {}).get("columns", [])
        if rules.get(c["name"], "keep") == "keep" and not c.get("pii")
    ]


def _privacy_errors(
    data: PrivacyInput, columns: list[dict[str, Any]], personal: set[str] | None = None
) -> tuple[list[FieldError], privacy.Settings | None]:
    errors: list[FieldError] = []
    by_name = {c["name"]: c for c in columns}
    exact: list[str] = []
    for name in dict.fromkeys(str(n) for n in data.exact or []):
        if name in (personal or set()):
            errors.append(
                _err(
                    f"exact-{name}",
                    "exact_personal",
                    f"列「{name}」经分析含个人信息,只能以加噪方式回答,不能提供精确结果。",
                    f"Profiling found personal data in '{name}': its answers always carry "
                    "noise, never exact figures.",
                )
            )
        elif name not in by_name:
            errors.append(
                _err(
                    f"exact-{name}",
                    "exact_invalid",
                    f"列「{name}」不是可计算的列,不能设为精确结果。",
                    f"'{name}' is not a column compute-to-data holds, so it cannot be exact.",
                )
            )
        else:
            exact.append(name)
    rows = data.max_rows_per_person
    if rows is not None and not 1 <= int(rows) <= 1_000_000:
        errors.append(
            _err(
                "max_rows_per_person",
                "rows_per_person_range",
                "每人最多行数为 1 至 1,000,000。",
                "Rows per person must be 1 to 1,000,000.",
            )
        )
    bounds: dict[str, tuple[float, float]] = {}
    for name, pair in (data.bounds or {}).items():
        column = by_name.get(name)
        ok = column is not None and privacy.is_numeric(column["type"])
        try:
            lo, hi = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            ok = False
        else:
            ok = ok and all(map(math.isfinite, (lo, hi))) and lo < hi and abs(lo) + abs(hi) < 1e15
        if not ok:
            errors.append(
                _err(
                    f"bounds-{name}",
                    "bounds_invalid",
                    f"列「{name}」的取值范围无效:须为可计算的数值列,下限小于上限。",
                    f"The range of '{name}' is not valid: it must be a numeric column the "
                    "sandbox holds, with the lower bound below the upper.",
                )
            )
        else:
            bounds[name] = (lo, hi)
    categories: dict[str, list[str]] = {}
    for name, values in (data.categories or {}).items():
        cleaned = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
        if name not in by_name or len(cleaned) > privacy.MAX_CATEGORIES:
            errors.append(
                _err(
                    f"categories-{name}",
                    "categories_invalid",
                    f"列「{name}」的公开分类无效:"
                    f"须为可计算的列,最多 {privacy.MAX_CATEGORIES} 个取值。",
                    f"The public categories of '{name}' are not valid: a column the sandbox "
                    f"holds, at most {privacy.MAX_CATEGORIES} values.",
                )
            )
        elif cleaned:
            categories[name] = cleaned
    per_query, total, days = data.epsilon_per_query, data.epsilon_total, data.budget_period_days
    if per_query is not None and not 0.01 <= float(per_query) <= 5:
        errors.append(
            _err(
                "epsilon_per_query",
                "epsilon_range",
                "每次查询的 ε 为 0.01 至 5。",
                "The ε per query must be 0.01 to 5.",
            )
        )
    if total is not None and not 0.01 <= float(total) <= 100:
        errors.append(
            _err(
                "epsilon_total",
                "epsilon_total_range",
                "每期总预算 ε 为 0.01 至 100。",
                "The total ε per period must be 0.01 to 100.",
            )
        )
    if days is not None and not 1 <= int(days) <= 3650:
        errors.append(
            _err(
                "budget_period_days",
                "period_range",
                "预算周期为 1 至 3650 天。",
                "The budget period must be 1 to 3650 days.",
            )
        )
    if errors:
        return errors, None
    return errors, privacy.Settings(int(rows or 1), bounds, categories, True, sorted(exact))


async def confirm_privacy(
    ctx: TenantContext, dataset_id: uuid.UUID, data: PrivacyInput, *, ip: str = ""
) -> dict[str, Any]:
    """The provider confirms (and may edit) a version's privacy settings and sets the
    dataset's budget. Returns the settings and the budget as now in force."""
    dataset = await get_dataset(dataset_id, ctx)
    if dataset["tenant_id"] != ctx.tenant_id:
        raise not_found()
    versions = await versions_of(dataset, ctx)
    ready = [v for v in versions if v["status"] == "ready"]
    version = (
        next((v for v in ready if v["number"] == data.version), None)
        if data.version
        else (ready[0] if ready else None)
    )
    if version is None:
        raise CanalError(
            "no_ready_version",
            "请先上传并完成分析至少一个数据版本。",
            "Upload at least one version and let its profiling finish first.",
            status=409,
        )
    current = privacy.Settings.from_json(version.get("privacy"))
    merged = PrivacyInput(
        version=version["number"],
        max_rows_per_person=(
            data.max_rows_per_person
            if data.max_rows_per_person is not None
            else current.max_rows_per_person
        ),
        bounds=data.bounds
        if data.bounds is not None
        else {k: list(v) for k, v in current.bounds.items()},
        categories=data.categories if data.categories is not None else current.categories,
        epsilon_per_query=data.epsilon_per_query,
        epsilon_total=data.epsilon_total,
        budget_period_days=data.budget_period_days,
        exact=data.exact if data.exact is not None else current.exact,
    )
    errors, settings = _privacy_errors(
        merged,
        compute_columns(dataset, version),
        {f["name"] for f in personal_findings(version)},
    )
    per_query = float(data.epsilon_per_query or dataset["epsilon_per_query"])
    total = float(data.epsilon_total or dataset["epsilon_total"])
    if not errors and per_query > total:
        errors.append(
            _err(
                "epsilon_per_query",
                "epsilon_above_total",
                "每次查询的 ε 不能超过每期总预算。",
                "The ε per query cannot exceed the total for the period.",
            )
        )
    if errors or settings is None:
        raise invalid(errors)
    days = int(data.budget_period_days or dataset["budget_period_days"])
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await DatasetVersion.update({DatasetVersion.privacy: settings.as_json()}).where(
            DatasetVersion.id == version["id"]
        )
        await Dataset.update(
            {
                Dataset.epsilon_per_query: per_query,
                Dataset.epsilon_total: total,
                Dataset.budget_period_days: days,
                Dataset.updated_at: _now(),
            }
        ).where(Dataset.id == dataset_id)
        # The running period keeps what was spent; a lower total can end it early, never
        # un-spend it.
        await PrivacyBudget.raw(
            "UPDATE exchange_privacy_budgets SET epsilon_total = GREATEST({}, epsilon_spent), "
            "period_days = {} WHERE dataset_id = {}",
            total,
            days,
            dataset_id,
        )
        await record(
            "exchange.privacy_confirmed",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(dataset_id),
            ip=ip,
            data={
                "version": version["number"],
                "settings": settings.as_json(),
                "epsilon_per_query": per_query,
                "epsilon_total": total,
                "period_days": days,
            },
        )
    dataset = await get_dataset(dataset_id, ctx)
    return {
        "version": version["number"],
        "settings": settings.as_json(),
        "budget": await privacy_budget(ctx.tenant_id, dataset),
    }


async def set_masking(
    ctx: TenantContext, dataset_id: uuid.UUID, rules: dict[str, str], *, ip: str = ""
) -> dict[str, str]:
    dataset = await get_dataset(dataset_id, ctx)
    if dataset["tenant_id"] != ctx.tenant_id:
        raise not_found()
    version = latest_ready(await versions_of(dataset, ctx))
    if version is None:
        raise CanalError(
            "no_ready_version",
            "请先上传并完成分析至少一个数据版本。",
            "Upload at least one version and let its profiling finish first.",
            status=409,
        )
    kinds = _kinds(version)
    errors = []
    new = dict(dataset["masking_rules"] or {})
    for column, action in rules.items():
        if column not in kinds:
            errors.append(
                _err(
                    f"rule-{column}",
                    "column_unknown",
                    f"没有列「{column}」。",
                    f"There is no column '{column}'.",
                )
            )
        elif not masking.rule_allowed(kinds[column], action):
            errors.append(
                _err(
                    f"rule-{column}",
                    "rule_too_loose",
                    f"列「{column}」含个人信息,不能原样保留。",
                    f"Column '{column}' holds personal data and cannot be kept as is.",
                )
            )
        else:
            new[column] = action
    if errors:
        raise invalid(errors)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await Dataset.update({Dataset.masking_rules: new, Dataset.updated_at: _now()}).where(
            Dataset.id == dataset_id
        )
        await record(
            "exchange.masking_changed",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(dataset_id),
            ip=ip,
            data={"rules": new},
        )
    listed = await _listed_version(dataset, ctx) if dataset["status"] == "approved" else None
    if listed is not None:
        # The listing keeps showing the approved version (a newer one waits for review).
        dataset["masking_rules"] = new
        sample = await _masked_sample(dataset, listed)
        async with db.platform_scope(ctx.user_id):
            await _publish(dataset, listed, sample)
    return new


async def _listed_version(dataset: dict[str, Any], ctx: TenantContext) -> dict[str, Any] | None:
    async with db.transaction():
        listing = (
            await Listing.select(Listing.version_id).where(Listing.id == dataset["id"]).first()
        )
    if listing is None:
        return None
    return next(
        (v for v in await versions_of(dataset, ctx) if v["id"] == listing["version_id"]), None
    )


# --- catalogue ------------------------------------------------------------------------------


@dataclass
class CatalogueFilter:
    q: str = ""
    category: str = ""
    sensitivity: str = ""
    price_model: str = ""
    provider: str = ""
    # Price range in fen, inclusive (None = open); the form and the API take yuan.
    price_min_fen: int | None = None
    price_max_fen: int | None = None
    price_min: str = ""
    price_max: str = ""


def price_range(flt: CatalogueFilter, price_min: str, price_max: str) -> CatalogueFilter:
    """``flt`` with the price range from the yuan the person typed (blank = open);
    refused field by field if either is not an amount or the range is upside down."""
    errors = []
    bounds: dict[str, int | None] = {}
    for field, value in (("price_min", price_min), ("price_max", price_max)):
        text = value.strip()[:20]
        fen = _fen(text) if text else None
        if text and (fen is None or fen < 0):
            errors.append(
                _err(
                    field,
                    "price_filter_invalid",
                    "价格须为不小于 0 的金额(元,最多两位小数)。",
                    "A price must be an amount of 0 or more (yuan, at most two decimals).",
                )
            )
        bounds[field] = fen
    low, high = bounds["price_min"], bounds["price_max"]
    if not errors and low is not None and high is not None and low > high:
        errors.append(
            _err(
                "price_max",
                "price_range_reversed",
                "最高价不能低于最低价。",
                "The highest price cannot be below the lowest.",
            )
        )
    if errors:
        raise invalid(errors)
    flt.price_min_fen, flt.price_max_fen = low, high
    flt.price_min, flt.price_max = price_min.strip()[:20], price_max.strip()[:20]
    return flt


# Meilisearch pages read for one full-text search at most (100 hits each): hits whose listing
# PostgreSQL filters out (the provider filter, a listing withdrawn since) do not use up the
# page, the next one is read until the page is full.
SEARCH_PAGES = 10


def _catalogue_query(flt: CatalogueFilter) -> Any:
    """A fresh query each time (piccolo's ``where`` adds to the query it is called on)."""
    query = Listing.select().output(load_json=True).where(Listing.withdrawn == False)  # noqa: E712
    if flt.category:
        query = query.where(Listing.category == flt.category)
    if flt.sensitivity:
        query = query.where(Listing.sensitivity == flt.sensitivity)
    if flt.price_model:
        query = query.where(Listing.price_model == flt.price_model)
    if flt.provider:
        query = query.where(Listing.provider_name.ilike(f"%{_like(flt.provider)}%"))
    if flt.price_min_fen is not None:
        query = query.where(Listing.price_fen >= flt.price_min_fen)
    if flt.price_max_fen is not None:
        query = query.where(Listing.price_fen <= flt.price_max_fen)
    return query


async def search_catalogue(flt: CatalogueFilter, *, limit: int = 50) -> list[dict[str, Any]]:
    if not flt.q.strip():
        async with db.transaction():
            return (
                await _catalogue_query(flt)
                .order_by(Listing.published_at, ascending=False)
                .limit(limit)
            )
    from canal.exchange.search import search_ids

    filters = {
        "category": flt.category,
        "sensitivity": flt.sensitivity,
        "price_model": flt.price_model,
    }
    found: list[dict[str, Any]] = []
    for page in range(1, SEARCH_PAGES + 1):
        ids, pages = await search_ids(flt.q.strip(), filters=filters, page=page)
        if ids:
            async with db.transaction():
                rows = await _catalogue_query(flt).where(Listing.id.is_in(ids))
            order = {i: n for n, i in enumerate(ids)}
            found.extend(sorted(rows, key=lambda r: order[r["id"]]))
        if len(found) >= limit or page >= pages:
            break
    return found[:limit]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def get_listing(dataset_id: uuid.UUID) -> dict[str, Any]:
    async with db.transaction():
        row = (
            await Listing.select()
            .output(load_json=True)
            .where(
                (Listing.id == dataset_id) & (Listing.withdrawn == False)  # noqa: E712
            )
            .first()
        )
    if row is None:
        raise not_found()
    return row


async def view_listing(ctx: TenantContext, dataset_id: uuid.UUID) -> dict[str, Any]:
    """A listing as a signed-in member sees it; viewing the masked sample is recorded."""
    listing = await get_listing(dataset_id)
    await _usage(
        ctx,
        provider_id=listing["provider_tenant_id"],
        buyer_id=None if listing["provider_tenant_id"] == ctx.tenant_id else ctx.tenant_id,
        dataset_id=dataset_id,
        grant_id=None,
        action="sample",
        rows=len(listing["sample"] or []),
    )
    return listing


async def view_listing_as_person(user_id: uuid.UUID, dataset_id: uuid.UUID) -> dict[str, Any]:
    """A listing as a signed-in person outside any organisation sees it (the public,
    read-only catalogue). The view of the masked sample is recorded on the provider's side
    (``side = viewer``, no buyer organisation) with the person as the user."""
    listing = await get_listing(dataset_id)
    provider = listing["provider_tenant_id"]
    async with db.tenant_scope(provider, user_id):
        await UsageEvent.insert(
            UsageEvent(
                tenant_id=provider,
                side="viewer",
                provider_tenant_id=provider,
                buyer_tenant_id=None,
                dataset_id=dataset_id,
                grant_id=None,
                user_id=user_id,
                action="sample",
                rows=len(listing["sample"] or []),
                detail="public catalogue",
            )
        )
    return listing


async def _usage(
    ctx: TenantContext,
    *,
    provider_id: uuid.UUID,
    buyer_id: uuid.UUID | None,
    dataset_id: uuid.UUID,
    grant_id: uuid.UUID | None,
    action: str,
    rows: int,
    amount_fen: int = 0,
    detail: str = "",
) -> None:
    """One usage event for each party, in each party's own tenant, in one transaction."""
    common: dict[str, Any] = {
        "provider_tenant_id": provider_id,
        "buyer_tenant_id": buyer_id,
        "dataset_id": dataset_id,
        "grant_id": grant_id,
        "user_id": ctx.user_id,
        "action": action,
        "rows": rows,
        "amount_fen": amount_fen,
        "detail": detail[:200],
    }
    async with db.tenant_scope(provider_id, ctx.user_id):
        await UsageEvent.insert(UsageEvent(tenant_id=provider_id, side="provider", **common))
        if buyer_id is not None and buyer_id != provider_id:
            async with db.tenant_scope(buyer_id, ctx.user_id):
                await UsageEvent.insert(UsageEvent(tenant_id=buyer_id, side="buyer", **common))


# --- access requests and grants -------------------------------------------------------------


async def request_access(
    ctx: TenantContext, dataset_id: uuid.UUID, purpose: str, modes: Sequence[str], *, ip: str = ""
) -> dict[str, Any]:
    listing = await get_listing(dataset_id)
    errors = []
    purpose = purpose.strip()
    if not 10 <= len(purpose) <= 2000:
        errors.append(
            _err(
                "purpose",
                "purpose_length",
                "请用 10 至 2000 字说明使用目的。",
                "State the purpose of use in 10 to 2000 characters.",
            )
        )
    chosen = [m for m in modes if m in listing["delivery_modes"]]
    if not chosen or len(chosen) != len(set(modes)):
        errors.append(
            _err(
                "modes",
                "modes_invalid",
                "请从该数据集提供的交付方式中选择。",
                "Choose among the delivery modes this dataset offers.",
            )
        )
    if errors:
        raise invalid(errors)
    if listing["provider_tenant_id"] == ctx.tenant_id:
        raise CanalError(
            "own_dataset",
            "不能申请本单位自己的数据集。",
            "You cannot request your own dataset.",
            status=409,
        )
    provider_id = listing["provider_tenant_id"]
    grant = Grant(
        tenant_id=provider_id,
        dataset_id=dataset_id,
        buyer_tenant_id=ctx.tenant_id,
        buyer_name=ctx.tenant.name,
        requested_by=ctx.user_id,
        purpose=purpose,
        modes=chosen,
        fingerprint_secret=secrets.token_hex(32),
        hash_salt=secrets.token_hex(16),
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        open_request = await GrantHolding.exists().where(
            (GrantHolding.tenant_id == ctx.tenant_id) & (GrantHolding.dataset_id == dataset_id)
        )
        if open_request:
            async with db.tenant_scope(provider_id, ctx.user_id):
                live = await Grant.exists().where(
                    (Grant.dataset_id == dataset_id)
                    & (Grant.buyer_tenant_id == ctx.tenant_id)
                    & Grant.status.is_in(["requested", "active"])
                )
            if live:
                raise CanalError(
                    "request_exists",
                    "贵单位已有该数据集的申请或授权。",
                    "Your organisation already has a request or grant for this dataset.",
                    status=409,
                )
        async with db.tenant_scope(provider_id, ctx.user_id):
            await grant.save()
            owner = await Dataset.select(Dataset.created_by).where(Dataset.id == dataset_id).first()
            await _tell(
                owner["created_by"] if owner else None,
                provider_id,
                f"/grants/{grant.id}",
                f"{ctx.tenant.name}申请使用「{listing['title']}」",
                f"{ctx.tenant.name} asked for access to '{listing['title']}'",
                purpose,
                purpose,
            )
            await record(
                "exchange.access_requested",
                actor_id=ctx.user_id,
                tenant_id=provider_id,
                target=str(grant.id),
                ip=ip,
                data={"buyer": str(ctx.tenant_id), "modes": chosen},
            )
        await GrantHolding.insert(
            GrantHolding(
                tenant_id=ctx.tenant_id,
                grant_id=grant.id,
                provider_tenant_id=provider_id,
                dataset_id=dataset_id,
                title=listing["title"],
            )
        )
        await record(
            "exchange.access_requested",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(grant.id),
            ip=ip,
            data={"dataset": str(dataset_id)},
        )
    return await buyer_grant(ctx, grant.id)


def _public_grant(row: dict[str, Any]) -> dict[str, Any]:
    hidden = {"fingerprint_secret", "hash_salt"}
    return {k: v for k, v in row.items() if k not in hidden}


async def provider_grants(ctx: TenantContext) -> list[dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await Grant.select()
            .output(load_json=True)
            .where(Grant.tenant_id == ctx.tenant_id)
            .order_by(Grant.created_at, ascending=False)
        )
        titles = {
            d["id"]: d["title"]
            for d in await Dataset.select(Dataset.id, Dataset.title)
            .output(load_json=True)
            .where(Dataset.tenant_id == ctx.tenant_id)
        }
    return [{**_public_grant(r), "title": titles.get(r["dataset_id"], "")} for r in rows]


async def _name(tenant_id: uuid.UUID) -> str:
    from canal.tenants.tables import Tenant

    row = await Tenant.select(Tenant.name).where(Tenant.id == tenant_id).first()
    return str(row["name"]) if row else ""


async def buyer_grants(ctx: TenantContext) -> list[dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        holdings = (
            await GrantHolding.select()
            .output(load_json=True)
            .where(GrantHolding.tenant_id == ctx.tenant_id)
        )
    out = []
    for h in holdings:
        async with db.tenant_scope(h["provider_tenant_id"], ctx.user_id):
            row = (
                await Grant.select()
                .output(load_json=True)
                .where((Grant.id == h["grant_id"]) & (Grant.buyer_tenant_id == ctx.tenant_id))
                .first()
            )
        if row:
            out.append(
                {
                    **_public_grant(row),
                    "title": h["title"],
                    "provider_name": await _name(row["tenant_id"]),
                }
            )
    out.sort(key=lambda r: r["created_at"], reverse=True)
    return out


async def _grant_row_for_buyer(ctx: TenantContext, grant_id: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        holding = (
            await GrantHolding.select()
            .output(load_json=True)
            .where((GrantHolding.grant_id == grant_id) & (GrantHolding.tenant_id == ctx.tenant_id))
            .first()
        )
        if holding is None:
            raise not_found()
        async with db.tenant_scope(holding["provider_tenant_id"], ctx.user_id):
            row = (
                await Grant.select()
                .output(load_json=True)
                .where((Grant.id == grant_id) & (Grant.buyer_tenant_id == ctx.tenant_id))
                .first()
            )
    if row is None:
        raise not_found()
    row["title"] = holding["title"]
    return row


async def buyer_grant(ctx: TenantContext, grant_id: uuid.UUID) -> dict[str, Any]:
    return _public_grant(await _grant_row_for_buyer(ctx, grant_id))


async def grant_for_party(ctx: TenantContext, grant_id: uuid.UUID) -> dict[str, Any]:
    """A grant as either party sees it (provider: its row; buyer: through its holding)."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Grant.select()
            .output(load_json=True)
            .where((Grant.id == grant_id) & (Grant.tenant_id == ctx.tenant_id))
            .first()
        )
        if row is not None:
            dataset = (
                await Dataset.select(Dataset.title)
                .output(load_json=True)
                .where(Dataset.id == row["dataset_id"])
                .first()
            )
            row["title"] = dataset["title"] if dataset else ""
            row["side"] = "provider"
            return _public_grant(row)
    row = await _grant_row_for_buyer(ctx, grant_id)
    row["side"] = "buyer"
    return _public_grant(row)


async def decide_request(
    ctx: TenantContext,
    grant_id: uuid.UUID,
    *,
    approve: bool,
    reason: str = "",
    days: int | None = None,
    versions: Sequence[int] | None = None,
    ip: str = "",
) -> None:
    reason = reason.strip()
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Grant.select()
            .output(load_json=True)
            .where((Grant.id == grant_id) & (Grant.tenant_id == ctx.tenant_id))
            .first()
        )
        if row is None:
            raise not_found()
        dataset = (
            await Dataset.select()
            .output(load_json=True)
            .where(Dataset.id == row["dataset_id"])
            .first()
        )
        assert dataset is not None
        if row["status"] != "requested":
            raise CanalError(
                "not_requested",
                "该申请已处理。",
                "This request has already been decided.",
                status=409,
            )
        if not approve and not reason:
            raise invalid(
                [
                    _err(
                        "reason",
                        "reason_required",
                        "拒绝时请填写理由。",
                        "Give a reason for declining.",
                    )
                ]
            )
        licence = int(dataset["licence_days"])
        days = licence if days is None else days
        if approve and not 1 <= days <= licence:
            raise invalid(
                [
                    _err(
                        "days",
                        "days_range",
                        f"授权期限为 1 至 {licence} 天(许可条款上限)。",
                        f"A grant lasts 1 to {licence} days (the licence's limit).",
                    )
                ]
            )
        pinned = sorted(set(versions or []))
        if approve and pinned:
            ready = {
                v["number"]
                for v in await DatasetVersion.select(DatasetVersion.number).where(
                    (DatasetVersion.dataset_id == row["dataset_id"])
                    & (DatasetVersion.status == "ready")
                )
            }
            if not set(pinned) <= ready:
                raise invalid(
                    [
                        _err(
                            "versions",
                            "versions_invalid",
                            "只能授权已就绪的版本:" + "、".join(str(n) for n in sorted(ready)),
                            "Only ready versions can be granted: "
                            + ", ".join(str(n) for n in sorted(ready)),
                        )
                    ]
                )
        # A Stripe subscription's paid periods set the expiry (none until the first is paid).
        billed_periods = dataset["price_model"] == "subscription" and not _no_charge()
        await Grant.update(
            {
                Grant.versions: pinned if approve else [],
                Grant.status: "active" if approve else "declined",
                Grant.reason: reason,
                Grant.decided_by: ctx.user_id,
                Grant.decided_at: _now(),
                Grant.expires_at: _now() + dt.timedelta(days=days)
                if approve and not billed_periods
                else None,
            }
        ).where(Grant.id == grant_id)
        await _tell(
            row["requested_by"],
            row["buyer_tenant_id"],
            f"/grants/{grant_id}",
            f"「{dataset['title']}」的使用申请" + ("已获批准" if approve else "被拒绝"),
            f"Your request for '{dataset['title']}' was " + ("approved" if approve else "declined"),
            reason,
            reason,
        )
        await record(
            "exchange.access_approved" if approve else "exchange.access_declined",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(grant_id),
            ip=ip,
            data={"buyer": str(row["buyer_tenant_id"]), "days": days, "reason": reason},
        )
    if approve and dataset["price_model"] in PAID_UP_FRONT and _no_charge():
        # No-charge mode (demo): recorded as paid at once. With Stripe the buyer pays from
        # the grant page (Checkout) or the API (a PaymentIntent / subscription Checkout).
        # After the commit: a payment call never holds a database transaction open.
        try:
            await request_payment(grant_id, row, dataset)
        except CanalError:
            log.warning("payment for grant %s not created yet", grant_id, exc_info=True)


def _no_charge() -> bool:
    from canal.platform.billing.services import no_charge

    return no_charge()


def _payment_key(grant_id: uuid.UUID) -> str:
    return f"exchange-{grant_id}"


def _payment_label(dataset: dict[str, Any]) -> str:
    return f"数据集「{dataset['title'][:80]}」使用授权"


@dataclass(frozen=True)
class PaymentStart:
    status: str  # the payment's status, "open" while a Checkout page waits, "" before any
    client_secret: str | None = None  # a one-off PaymentIntent, for Stripe.js (API)
    checkout_url: str | None = None  # Stripe-hosted Checkout (page; subscriptions also API)
    amount_fen: int = 0


async def request_payment(
    grant_id: uuid.UUID,
    grant: dict[str, Any],
    dataset: dict[str, Any],
    *,
    checkout: tuple[str, str] | None = None,
    hosted: bool = False,
) -> PaymentStart:
    """The buyer's payment for a paid grant through the shared billing, idempotent by grant.

    No-charge mode: recorded as paid at once (a subscription: one grant period). With
    Stripe, a one-off price is a CNY PaymentIntent (its client secret for Stripe.js), or with
    ``hosted`` a Checkout page; a subscription is always a Checkout page in subscription
    mode. ``checkout=(success_url, cancel_url)`` is where Stripe sends the buyer back.
    The webhook (billing's hooks below) opens the grant."""
    from canal.platform.billing import services as billing

    buyer = _system_ctx(grant["buyer_tenant_id"], grant["requested_by"])
    amount = int(dataset["price_fen"])
    if not billing.no_charge() and dataset["price_model"] == "subscription":
        here = _return_urls(checkout)
        url = await billing.start_item_subscription(
            buyer,
            kind=SUBSCRIPTION_KIND,
            reference=str(grant_id),
            product_id=f"canal_exchange_{dataset['id'].hex}",
            product_name=f"数据集订阅 {dataset['title']}",
            amount_fen=amount,
            success_url=here[0],
            cancel_url=here[1],
        )
        return PaymentStart("open", checkout_url=url, amount_fen=amount)
    if not billing.no_charge() and hosted:
        here = _return_urls(checkout)
        url = await billing.start_payment_checkout(
            buyer,
            amount,
            _payment_label(dataset),
            _payment_key(grant_id),
            success_url=here[0],
            cancel_url=here[1],
        )
        return PaymentStart("open", checkout_url=url, amount_fen=amount)
    payment = await billing.create_payment(
        buyer, amount, _payment_label(dataset), _payment_key(grant_id)
    )
    if payment.status == "succeeded" and payment.no_charge:
        async with db.tenant_scope(grant["tenant_id"]):
            await _mark_paid(grant, dataset, amount, by_subscription=False)
            if dataset["price_model"] == "subscription":
                # One grant period, paid at once (no recurring charge without Stripe).
                await Grant.update({Grant.subscription_status: "no_charge"}).where(
                    Grant.id == grant_id
                )
    return PaymentStart(payment.status, payment.client_secret, amount_fen=amount)


def _return_urls(checkout: tuple[str, str] | None) -> tuple[str, str]:
    if checkout is None:
        raise CanalError(
            "return_url_required",
            "缺少付款完成后的返回地址。",
            "A return address for after the payment is required.",
            status=422,
        )
    return checkout


async def _mark_paid(
    grant: dict[str, Any], dataset: dict[str, Any], amount_fen: int, *, by_subscription: bool
) -> bool:
    """Inside the caller's transaction (the provider's scope): the grant's first payment
    succeeded — once only (``paid_at``); the purchase is a usage event (the revenue chart),
    the buyer's requester and the dataset's owner are told, and the audit has it."""
    claimed = (
        await Grant.update({Grant.paid_at: _now()})
        .where((Grant.id == grant["id"]) & Grant.paid_at.is_null())
        .returning(Grant.id)
    )
    if not claimed:
        return False
    buyer = _system_ctx(grant["buyer_tenant_id"], grant["requested_by"])
    await _usage(
        buyer,
        provider_id=grant["tenant_id"],
        buyer_id=grant["buyer_tenant_id"],
        dataset_id=dataset["id"],
        grant_id=grant["id"],
        action="purchase",
        rows=0,
        amount_fen=amount_fen,
        detail=dataset["price_model"],
    )
    title = dataset["title"]
    await _tell(
        grant["requested_by"],
        grant["buyer_tenant_id"],
        f"/grants/{grant['id']}",
        f"「{title}」已付款,数据已开通",
        f"Payment for '{title}' succeeded; the data is open to you",
    )
    await _tell(
        dataset["created_by"],
        grant["tenant_id"],
        f"/grants/{grant['id']}",
        f"{grant['buyer_name']}已为「{title}」付款 ¥{amount_fen / 100:.2f}",
        f"{grant['buyer_name']} paid ¥{amount_fen / 100:.2f} for '{title}'",
    )
    await record(
        "exchange.grant_paid",
        tenant_id=grant["tenant_id"],
        target=str(grant["id"]),
        data={
            "buyer": str(grant["buyer_tenant_id"]),
            "amount_fen": amount_fen,
            "subscription": by_subscription,
        },
    )
    return True


async def _grant_payment_succeeded(tenant_id: uuid.UUID, key: str) -> None:
    """billing's hook (webhook job, in its transaction): the buyer ``tenant_id`` paid a
    one-off grant — open it and tell both parties now, not on the next read."""
    try:
        grant_id = uuid.UUID(key.removeprefix("exchange-"))
    except ValueError:
        return
    found = await _locked_grant(tenant_id, grant_id)
    if found is None:
        return
    provider_id, grant, dataset = found
    async with db.tenant_scope(provider_id):
        amount = await _payment_amount(tenant_id, key)
        await _mark_paid(grant, dataset, amount, by_subscription=False)


async def _payment_amount(buyer_id: uuid.UUID, key: str) -> int:
    from canal.platform.billing.tables import Payment

    async with db.tenant_scope(buyer_id):
        row = (
            await Payment.select(Payment.amount_fen)
            .where((Payment.tenant_id == buyer_id) & (Payment.idempotency_key == key))
            .first()
        )
    return int(row["amount_fen"]) if row else 0


async def _locked_grant(
    buyer_id: uuid.UUID, grant_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, Any], dict[str, Any]] | None:
    """(provider, grant locked FOR UPDATE, dataset) reached from the buyer's holding, for
    billing's hooks; None if the buyer holds no such grant."""
    async with db.tenant_scope(buyer_id):
        holding = (
            await GrantHolding.select(GrantHolding.provider_tenant_id)
            .where((GrantHolding.grant_id == grant_id) & (GrantHolding.tenant_id == buyer_id))
            .first()
        )
        if holding is None:
            return None
        provider_id = holding["provider_tenant_id"]
        async with db.tenant_scope(provider_id):
            rows = await Grant.raw(
                "SELECT * FROM exchange_grants WHERE id = {} AND buyer_tenant_id = {} FOR UPDATE",
                grant_id,
                buyer_id,
            )
            if not rows:
                return None
            grant = rows[0]
            for key in ("modes", "versions", "fingerprint_columns"):
                if isinstance(grant[key], str):
                    grant[key] = json.loads(grant[key])
            dataset = (
                await Dataset.select()
                .output(load_json=True)
                .where(Dataset.id == grant["dataset_id"])
                .first()
            )
    if dataset is None:
        return None
    return provider_id, grant, dataset


async def _grant_subscription_changed(
    tenant_id: uuid.UUID, sub: dict[str, Any], seen_at: int
) -> str:
    """billing's hook for a dataset subscription's state (any order, any number of times):
    an active period sets the grant's expiry to the period's end (a renewal extends it);
    failed payment (past_due) or cancellation never extends it, so the grant ends when the
    last paid period does; a subscription ended early ends the grant then. An older state
    never overwrites a newer one and a cancelled subscription never comes back."""
    from canal.platform.billing.services import _period

    try:
        grant_id = uuid.UUID(str((sub.get("metadata") or {}).get("reference", "")))
    except ValueError:
        return "unmatched"
    found = await _locked_grant(tenant_id, grant_id)
    if found is None:
        return "unmatched"
    provider_id, grant, dataset = found
    status = str(sub.get("status", ""))
    if grant["subscription_id"] and grant["subscription_id"] != sub.get("id"):
        return "superseded"  # one subscription per grant
    if grant["subscription_status"] in ENDED_SUBSCRIPTION and status not in ENDED_SUBSCRIPTION:
        return "terminal"
    if int(grant["billing_seen_at"] or 0) > seen_at:
        return "stale"
    _start, end = _period(sub)
    values: dict[Any, Any] = {
        Grant.subscription_id: sub.get("id"),
        Grant.subscription_status: status,
        Grant.cancel_at_period_end: bool(sub.get("cancel_at_period_end")),
        Grant.billing_seen_at: seen_at,
    }
    expires = grant["expires_at"]
    renewed = False
    if status in LIVE_SUBSCRIPTION and end and grant["status"] == "active":
        period_end = dt.datetime.fromtimestamp(int(end), dt.UTC)
        if expires is None or period_end > expires:
            values[Grant.expires_at] = period_end
            renewed = expires is not None
    elif status in ENDED_SUBSCRIPTION:
        ended = sub.get("ended_at") or sub.get("canceled_at")
        if ended and expires is not None:
            values[Grant.expires_at] = min(expires, dt.datetime.fromtimestamp(int(ended), dt.UTC))
    amount = _subscription_amount(sub, dataset)
    title = dataset["title"]
    async with db.tenant_scope(tenant_id), db.tenant_scope(provider_id):
        await Grant.update(values).where(Grant.id == grant_id)
        live = status in LIVE_SUBSCRIPTION and grant["status"] == "active"
        first = live and await _mark_paid(grant, dataset, amount, by_subscription=True)
        if live and renewed and not first:
            await _usage(
                _system_ctx(grant["buyer_tenant_id"], grant["requested_by"]),
                provider_id=provider_id,
                buyer_id=grant["buyer_tenant_id"],
                dataset_id=dataset["id"],
                grant_id=grant_id,
                action="purchase",
                rows=0,
                amount_fen=amount,
                detail="renewal",
            )
        if status in ENDED_SUBSCRIPTION and grant["subscription_status"] not in ENDED_SUBSCRIPTION:
            for user, tenant in (
                (grant["requested_by"], grant["buyer_tenant_id"]),
                (dataset["created_by"], provider_id),
            ):
                await _tell(
                    user,
                    tenant,
                    f"/grants/{grant_id}",
                    f"「{title}」的订阅已结束,授权随已付周期结束",
                    f"The subscription to '{title}' ended; the grant ends with the paid period",
                )
            await record(
                "exchange.subscription_ended",
                tenant_id=provider_id,
                target=str(grant_id),
                data={"status": status, "subscription": sub.get("id")},
            )
    return status


def _subscription_amount(sub: dict[str, Any], dataset: dict[str, Any]) -> int:
    items = ((sub.get("items") or {}).get("data")) or []
    if items:
        price = items[0].get("price") or items[0].get("plan") or {}
        amount = price.get("unit_amount") or price.get("amount")
        if amount:
            return int(amount)
    return int(dataset["price_fen"])


async def cancel_subscription(ctx: TenantContext, grant_id: uuid.UUID, *, ip: str = "") -> None:
    """The buyer stops renewing its dataset subscription: the grant stays usable until the
    paid period ends, then ends (Stripe cancels the subscription and tells us by webhook)."""
    from canal.platform.billing.services import cancel_item_subscription, now_epoch

    grant = await _grant_row_for_buyer(ctx, grant_id)
    if not grant["subscription_id"] or grant["subscription_status"] in ENDED_SUBSCRIPTION:
        raise CanalError(
            "no_subscription",
            "该授权没有可取消的订阅。",
            "This grant has no subscription to cancel.",
            status=409,
        )
    sub = await cancel_item_subscription(ctx, grant["subscription_id"])
    async with db.transaction():
        await _grant_subscription_changed(ctx.tenant_id, sub, now_epoch())
        async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
            await record(
                "exchange.subscription_cancelled",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=str(grant_id),
                ip=ip,
                data={"subscription": grant["subscription_id"]},
            )


async def payment_status(ctx: TenantContext, grant_id: uuid.UUID) -> str | None:
    """The buyer's payment for this grant, if any (its own billing row, under its own scope)."""
    from canal.platform.billing.tables import Payment

    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Payment.select(Payment.status)
            .where(
                (Payment.tenant_id == ctx.tenant_id)
                & (Payment.idempotency_key == _payment_key(grant_id))
            )
            .first()
        )
    return str(row["status"]) if row else None


async def grant_payment(ctx: TenantContext, grant: dict[str, Any]) -> dict[str, Any] | None:
    """What the buyer owes for a grant and whether it is paid; None for free / per-query
    datasets. ``status`` is the one-off payment's (billing) or the subscription's (Stripe)."""
    try:
        listing = await get_listing(grant["dataset_id"])
    except CanalError:
        return None
    model = listing["price_model"]
    if model not in PAID_UP_FRONT:
        return None
    if model == "one_off":
        status = await payment_status(ctx, grant["id"]) or ""
        paid = status == "succeeded"
    else:
        status = grant.get("subscription_status") or ""
        paid = grant.get("paid_at") is not None
    return {
        "model": model,
        "amount_fen": int(listing["price_fen"]),
        "paid": paid,
        "status": status,
        "cancel_at_period_end": bool(grant.get("cancel_at_period_end")),
        "renews": model == "subscription"
        and status in LIVE_SUBSCRIPTION
        and not grant.get("cancel_at_period_end"),
    }


async def pay_for_grant(
    ctx: TenantContext,
    grant_id: uuid.UUID,
    *,
    checkout: tuple[str, str] | None = None,
    hosted: bool = False,
) -> PaymentStart:
    """The buyer pays (or retries paying) an approved paid grant; see ``request_payment``."""
    grant = await _grant_row_for_buyer(ctx, grant_id)
    async with db.tenant_scope(grant["tenant_id"], ctx.user_id):
        dataset = (
            await Dataset.select()
            .output(load_json=True)
            .where(Dataset.id == grant["dataset_id"])
            .first()
        )
    if (
        grant["status"] != "active"
        or dataset is None
        or dataset["price_model"] not in PAID_UP_FRONT
    ):
        raise CanalError(
            "nothing_to_pay",
            "该授权无需付款。",
            "There is nothing to pay for this grant.",
            status=409,
        )
    # Billing's payment is the truth for a one-off price; a subscription already paying (or
    # its no-charge period) shows on the grant.
    if (grant["paid_at"] is not None and dataset["price_model"] == "subscription") or (
        dataset["price_model"] == "one_off" and await payment_status(ctx, grant_id) == "succeeded"
    ):
        raise CanalError(
            "already_paid",
            "该授权已付款。",
            "This grant has already been paid for.",
            status=409,
        )
    return await request_payment(grant_id, grant, dataset, checkout=checkout, hosted=hosted)


async def revoke_grant(
    ctx: TenantContext, grant_id: uuid.UUID, *, reason: str = "", ip: str = ""
) -> None:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Grant.select()
            .output(load_json=True)
            .where((Grant.id == grant_id) & (Grant.tenant_id == ctx.tenant_id))
            .first()
        )
        if row is None:
            raise not_found()
        if row["status"] != "active":
            raise CanalError(
                "not_active",
                "只能撤销生效中的授权。",
                "Only an active grant can be revoked.",
                status=409,
            )
        await Grant.update(
            {Grant.status: "revoked", Grant.reason: reason.strip(), Grant.decided_at: _now()}
        ).where(Grant.id == grant_id)
        await _tell(
            row["requested_by"],
            row["buyer_tenant_id"],
            f"/grants/{grant_id}",
            "数据授权已被提供方撤销",
            "A data grant was revoked by its provider",
            reason.strip(),
            reason.strip(),
        )
        await record(
            "exchange.grant_revoked",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(grant_id),
            ip=ip,
            data={"buyer": str(row["buyer_tenant_id"])},
        )
    if row["subscription_id"] and row["subscription_status"] in (*LIVE_SUBSCRIPTION, "past_due"):
        # A revoked grant must not renew: the buyer's subscription stops at its period end.
        from canal.platform.billing.services import cancel_item_subscription

        try:
            await cancel_item_subscription(
                _system_ctx(row["buyer_tenant_id"], row["requested_by"]), row["subscription_id"]
            )
        except Exception:
            log.exception("subscription of revoked grant %s still renews", grant_id)


async def _usable_grant(
    ctx: TenantContext, grant_id: uuid.UUID, mode: str, number: int | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(grant, dataset, version) for a buyer about to use ``mode``; every mode checks here, so
    expiry or revocation stops them all at once. The version is ``number`` if given, else the
    newest ready one — either way only among the versions the grant covers."""
    grant = await _grant_row_for_buyer(ctx, grant_id)
    if grant["status"] != "active" or (grant["expires_at"] and grant["expires_at"] <= _now()):
        raise CanalError(
            "grant_inactive",
            "该授权已过期、被撤销或尚未批准,无法使用。",
            "This grant has expired, was revoked or is not approved yet.",
            status=403,
        )
    if mode not in grant["modes"]:
        raise CanalError(
            "mode_not_granted",
            "该授权不包含此交付方式。",
            "This grant does not include that delivery mode.",
            status=403,
        )
    provider = grant["tenant_id"]
    async with db.tenant_scope(provider, ctx.user_id):
        dataset = (
            await Dataset.select()
            .output(load_json=True)
            .where(Dataset.id == grant["dataset_id"])
            .first()
        )
        versions = (
            await DatasetVersion.select()
            .output(load_json=True)
            .where(
                (DatasetVersion.dataset_id == grant["dataset_id"])
                & (DatasetVersion.status == "ready")
            )
            .order_by(DatasetVersion.number, ascending=False)
        )
    # Only what the operator's review has seen: a version added after approval waits for the
    # dataset to be submitted and approved again (the listing names the reviewed version).
    async with db.transaction():
        listing = (
            await Listing.select(Listing.version_id)
            .where(Listing.id == grant["dataset_id"])
            .first()
        )
    reviewed = next(
        (v["number"] for v in versions if listing and v["id"] == listing["version_id"]), 0
    )
    versions = [v for v in versions if v["number"] <= reviewed]
    if grant["versions"]:
        versions = [v for v in versions if v["number"] in grant["versions"]]
    if number is not None and dataset is not None:
        versions = [v for v in versions if v["number"] == number]
        if not versions:
            raise CanalError(
                "version_not_granted",
                f"该授权不包含第 {number} 版(或该版本尚未就绪、尚未通过合规审核)。",
                f"This grant does not cover version {number} (or it is not ready or not "
                "reviewed yet).",
                status=403,
            )
    if dataset is None or not versions or dataset["status"] != "approved":
        raise CanalError(
            "dataset_unavailable",
            "该数据集当前不可用。",
            "This dataset is not available now.",
            status=409,
        )
    if (
        dataset["price_model"] == "one_off" and await payment_status(ctx, grant_id) != "succeeded"
    ) or (dataset["price_model"] == "subscription" and grant["paid_at"] is None):
        raise CanalError(
            "payment_pending",
            "该数据集需付费,付款完成后即可使用。",
            "This dataset is paid for before use; it opens once the payment has succeeded.",
            status=402,
        )
    return grant, dataset, versions[0]


# --- delivery 1: masked, fingerprinted download ----------------------------------------------


async def deliver_download(
    ctx: TenantContext, grant_id: uuid.UUID, *, version_number: int | None = None, ip: str = ""
) -> str:
    grant, dataset, version = await _usable_grant(ctx, grant_id, "download", version_number)
    path = await _local_parquet(version)
    columns, rows = await asyncio.to_thread(profiling.read_rows, path)
    types = [c["type"] for c in version["profile"]["columns"] if c["name"] in columns]
    rules = dataset["masking_rules"] or {}
    masked = [
        [masking.spreadsheet_safe(v) for v in r]
        for r in masking.mask_rows(
            columns, rows, rules, _kinds(version), grant["hash_salt"].encode()
        )
    ]
    out_columns = masking.delivered_columns(columns, rules)
    out_types = [t for c, t in zip(columns, types, strict=True) if c in out_columns]
    keep = {c for c in out_columns if rules.get(c, "keep") == "keep"}
    marked = {
        c: s
        for c, s in fingerprint.choose_columns(
            out_columns,
            [t if c in keep else "VARCHAR" for c, t in zip(out_columns, out_types, strict=True)],
            masked,
        ).items()
    }
    stored_marks = grant["fingerprint_columns"] or {}
    if stored_marks and set(stored_marks) <= set(out_columns):
        marked = stored_marks
    marked_rows = fingerprint.embed(
        bytes.fromhex(grant["fingerprint_secret"]), out_columns, masked, marked
    )
    data = profiling.rows_as_csv(out_columns, marked_rows)
    name = f"{dataset['title'][:60]}-v{version['number']}.csv"
    stored = await object_store().upload_bytes(ctx, "dataset", data, filename=name, ip=ip)
    url = await object_store().presigned_get(stored, ctx, expires=dt.timedelta(minutes=5))
    async with db.tenant_scope(grant["tenant_id"], ctx.user_id):
        if marked != stored_marks:
            await Grant.update({Grant.fingerprint_columns: marked}).where(Grant.id == grant_id)
        await record(
            "exchange.download",
            actor_id=ctx.user_id,
            tenant_id=grant["tenant_id"],
            target=str(grant_id),
            ip=ip,
            data={"rows": len(rows), "version": version["number"]},
        )
        await _usage(
            ctx,
            provider_id=grant["tenant_id"],
            buyer_id=ctx.tenant_id,
            dataset_id=dataset["id"],
            grant_id=grant_id,
            action="download",
            rows=len(rows),
            detail=f"v{version['number']}",
        )
    return url


@dataclass
class Identified:
    grant_id: uuid.UUID
    provider_tenant_id: uuid.UUID
    buyer_tenant_id: uuid.UUID
    buyer_name: str
    dataset_id: uuid.UUID
    matches: int
    checked: int


async def identify(data: bytes) -> Identified | None:
    """Which grant a leaked CSV was delivered under (platform scope: a command, not a route)."""
    header, rows = fingerprint.read_csv_bytes(data)
    async with db.platform_scope():
        grants = await Grant.select().output(load_json=True).where(Grant.fingerprint_columns != {})
    best: Identified | None = None
    for g in grants:
        marks = g["fingerprint_columns"] or {}
        if not marks:
            continue
        matches, total = fingerprint.score(
            bytes.fromhex(g["fingerprint_secret"]), header, rows, marks
        )
        if fingerprint.is_match(matches, total) and (
            best is None or matches / total > best.matches / best.checked
        ):
            best = Identified(
                g["id"],
                g["tenant_id"],
                g["buyer_tenant_id"],
                g["buyer_name"],
                g["dataset_id"],
                matches,
                total,
            )
    return best


# --- delivery 2: compute-to-data ------------------------------------------------------------


@dataclass
class QueryAnswer:
    id: uuid.UUID
    columns: list[str]
    rows: list[list[Any]]
    margins: list[list[float | None]]  # ± at privacy.CONFIDENCE per cell; None for group keys
    hidden: list[bool]  # per row: too few people (by the noisy count) to show values
    epsilon: float  # charged to the dataset's budget by this query (0 when answered again)
    cached: bool
    budget: dict[str, Any]
    remaining_today: int


async def _compute_copy(
    dataset: dict[str, Any], version: dict[str, Any]
) -> tuple[Path, set[str], set[str], set[str]]:
    """A Parquet with only the columns kept as is (others never enter the sandbox)."""
    rules = dataset["masking_rules"] or {}
    kinds = _kinds(version)
    columns = [c for c in kinds if rules.get(c, "keep") == "keep" and not kinds[c]]
    sensitive = set(kinds) - set(columns)
    digest = hashlib.sha256(json.dumps(sorted(columns)).encode()).hexdigest()[:16]
    cache = get_settings().var_dir / "exchange-cache"
    path = cache / f"{version['parquet_file_id']}-compute-{digest}.parquet"
    if not path.exists():
        source = await _local_parquet(version)

        def build() -> None:
            con = profiling.connect()
            try:
                select = ", ".join('"' + c.replace('"', '""') + '"' for c in columns) or "1 AS _"
                partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
                src = str(source).replace("'", "''")
                con.execute(
                    f"COPY (SELECT {select} FROM read_parquet('{src}')) "
                    f"TO '{str(partial).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)"
                )
                partial.replace(path)
            finally:
                con.close()

        await asyncio.to_thread(build)
    rows = max(1, int(version["rows"] or 0))
    identifying = {
        c["name"]
        for c in version["profile"]["columns"]
        if c["name"] in columns
        and rows >= 20
        and c["distinct"] / rows > IDENTIFYING_RATIO
        and not str(c["type"]).upper().startswith(("DOUBLE", "DECIMAL", "FLOAT", "REAL"))
    }
    return path, set(columns), sensitive, identifying


def _answer_key(
    dataset: dict[str, Any],
    version: dict[str, Any],
    plan: sandbox.Plan,
    epsilon: float,
    settings: privacy.Settings,
) -> str:
    """What makes two queries the same measurement: the statistics SQL (groups, WHERE,
    clamping), the version, the settings and the ε. ORDER BY, LIMIT and names are
    presentation, so rewording those is answered from the same noise."""
    material = json.dumps(
        [
            str(dataset["id"]),
            str(version["id"]),
            plan.sql,
            [s.name for s in plan.stats],
            settings.as_json(),
            epsilon,
        ],
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _budget_exhausted(status: dict[str, Any]) -> CanalError:
    ends = status["period_ends"]
    day = ends.astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat() if ends else ""
    return CanalError(
        "privacy_budget_exhausted",
        f"该数据集本期的隐私预算已用完,在 {day} 之前不再回答任何计算查询(对所有买方都一样)。"
        "这是为了防止多次查询拼凑出个人数据。",
        f"This dataset's privacy budget for the period is spent: it answers no more "
        f"compute-to-data queries, from anyone, until {day}. This stops many answers from "
        "being combined to single out a person.",
        status=429,
    )


def _budget_view(row: dict[str, Any] | None, dataset: dict[str, Any]) -> dict[str, Any]:
    if row is None:
        total, spent, days, started = (
            float(dataset["epsilon_total"]),
            0.0,
            int(dataset["budget_period_days"]),
            None,
        )
    else:
        total, spent, days, started = (
            float(row["epsilon_total"]),
            float(row["epsilon_spent"]),
            int(row["period_days"]),
            row["period_started_at"],
        )
        if started + dt.timedelta(days=days) <= _now():
            spent, started = 0.0, None  # a new period starts with the next query
    per_query = float(dataset["epsilon_per_query"])
    remaining = max(0.0, total - spent)
    return {
        "epsilon_total": total,
        "epsilon_spent": round(spent, 6),
        "epsilon_remaining": round(remaining, 6),
        "epsilon_per_query": per_query,
        "queries_left": int((remaining + 1e-9) // per_query) if per_query > 0 else 0,
        "period_days": days,
        "period_ends": started + dt.timedelta(days=days) if started else None,
    }


async def privacy_budget(provider_id: uuid.UUID, dataset: dict[str, Any]) -> dict[str, Any]:
    """The dataset's budget as the provider and every buyer may see it (provider's row)."""
    async with db.tenant_scope(provider_id):
        row = await PrivacyBudget.select().where(PrivacyBudget.dataset_id == dataset["id"]).first()
    return _budget_view(row, dataset)


async def grant_budget(grant: dict[str, Any]) -> dict[str, Any] | None:
    """The budget of a compute grant's dataset, for either party's grant page."""
    if "compute" not in (grant.get("modes") or []):
        return None
    async with db.tenant_scope(grant["tenant_id"]):
        dataset = await Dataset.select().where(Dataset.id == grant["dataset_id"]).first()
    return await privacy_budget(grant["tenant_id"], dataset) if dataset else None


async def spend_budget(
    provider_id: uuid.UUID, dataset: dict[str, Any], epsilon: float
) -> dict[str, Any]:
    """Charge ``epsilon`` to the dataset's budget, or refuse (429) if it would overspend.

    Every buyer's queries compose sequentially on the same people, so this is one row per
    dataset, not per grant. The row is locked (FOR UPDATE) from the check to the update, so
    concurrent queries are charged one after another and cannot both pass the check with the
    same remainder; the table's CHECK constraint refuses an overspend even if code forgot.
    """
    async with db.tenant_scope(provider_id):
        await PrivacyBudget.raw(
            "INSERT INTO exchange_privacy_budgets "
            "(id, tenant_id, dataset_id, epsilon_total, epsilon_spent, delta_spent, "
            "period_days, period_started_at, updated_at) "
            "VALUES ({}, {}, {}, {}, 0, 0, {}, {}, {}) ON CONFLICT (dataset_id) DO NOTHING",
            uuid.uuid4(),
            provider_id,
            dataset["id"],
            float(dataset["epsilon_total"]),
            int(dataset["budget_period_days"]),
            _now(),
            _now(),
        )
        locked = await PrivacyBudget.raw(
            "SELECT * FROM exchange_privacy_budgets WHERE dataset_id = {} FOR UPDATE",
            dataset["id"],
        )
        row = locked[0]
        if row["period_started_at"] + dt.timedelta(days=int(row["period_days"])) <= _now():
            row["epsilon_spent"], row["delta_spent"], row["period_started_at"] = 0.0, 0.0, _now()
            await PrivacyBudget.update(
                {
                    PrivacyBudget.epsilon_spent: 0.0,
                    PrivacyBudget.delta_spent: 0.0,
                    PrivacyBudget.period_started_at: row["period_started_at"],
                }
            ).where(PrivacyBudget.dataset_id == dataset["id"])
        if float(row["epsilon_spent"]) + epsilon > float(row["epsilon_total"]) + 1e-9:
            raise _budget_exhausted(_budget_view(row, dataset))
        # An increment, not the value read: the CHECK constraint sees the true total even
        # if the lock above were ever lost.
        await PrivacyBudget.raw(
            "UPDATE exchange_privacy_budgets SET epsilon_spent = epsilon_spent + {}, "
            "updated_at = {} WHERE dataset_id = {}",
            epsilon,
            _now(),
            dataset["id"],
        )
        row["epsilon_spent"] = float(row["epsilon_spent"]) + epsilon
    return _budget_view(row, dataset)


async def _record_delta(provider_id: uuid.UUID, dataset_id: uuid.UUID, delta: float) -> None:
    if delta <= 0:
        return
    async with db.tenant_scope(provider_id):
        await PrivacyBudget.raw(
            "UPDATE exchange_privacy_budgets SET delta_spent = delta_spent + {} "
            "WHERE dataset_id = {}",
            delta,
            dataset_id,
        )


async def builder_columns(
    ctx: TenantContext, grant_id: uuid.UUID, version_number: int | None = None
) -> list[dict[str, Any]]:
    """The columns the query builder offers on a usable compute grant: what the sandbox holds,
    each with its plain kind (text/integer/decimal/date) and its public categories (the only
    columns it groups by). Empty when the grant answers no queries now."""
    from canal.exchange import builder

    try:
        _, dataset, version = await _usable_grant(ctx, grant_id, "compute", version_number)
    except CanalError:
        return []
    settings = privacy.Settings.from_json(version.get("privacy"))
    return [
        {
            "name": c["name"],
            "type": c["type"],
            "kind": builder.type_kind(c["type"]),
            "categories": settings.categories.get(c["name"], []),
        }
        for c in compute_columns(dataset, version)
    ]


async def run_built_query(
    ctx: TenantContext,
    grant_id: uuid.UUID,
    data: Any,
    *,
    version_number: int | None = None,
    ip: str = "",
) -> tuple[str, QueryAnswer]:
    """The builder's choices as SQL (``builder.build_sql``), run like a typed query."""
    from canal.exchange import builder

    columns = await builder_columns(ctx, grant_id, version_number)
    if not columns:
        # The same refusal a typed query gets (expired, unpaid, not a compute grant …).
        await _usable_grant(ctx, grant_id, "compute", version_number)
        raise builder.no_columns()
    sql = builder.build_sql(data, columns)
    answer = await run_compute(ctx, grant_id, sql, version_number=version_number, ip=ip)
    return sql, answer


async def run_compute(
    ctx: TenantContext,
    grant_id: uuid.UUID,
    sql: str,
    *,
    version_number: int | None = None,
    ip: str = "",
) -> QueryAnswer:
    """One compute-to-data query, answered with differential privacy (decision 0043): the
    checked SQL becomes per-group statistics in the sandbox, OpenDP adds noise calibrated to
    the declared bounds, the ε is charged to the dataset's budget (shared by every buyer),
    and the same query asked again gets the same noisy answer at no cost."""
    grant, dataset, version = await _usable_grant(ctx, grant_id, "compute", version_number)
    provider = grant["tenant_id"]
    today = _now().replace(hour=0, minute=0, second=0, microsecond=0)
    async with db.tenant_scope(provider, ctx.user_id):
        used = await QueryRun.count().where(
            (QueryRun.grant_id == grant_id)
            & (QueryRun.created_at >= today)
            & (QueryRun.status == "done")
        )
    budget = int(dataset["daily_query_budget"])
    if used >= budget:
        raise CanalError(
            "query_budget_exhausted",
            f"该授权今日的 {budget} 次查询已用完,请明天再试。",
            f"This grant's {budget} queries for today are used up; try again tomorrow.",
            status=429,
        )
    settings = privacy.Settings.from_json(version.get("privacy"))
    if not settings.confirmed:
        raise CanalError(
            "privacy_unconfirmed",
            "提供方尚未确认该版本的隐私设置(取值范围与公开分类),暂不能计算查询。",
            "The provider has not confirmed this version's privacy settings (value ranges "
            "and public categories) yet, so it answers no queries.",
            status=409,
        )
    path, columns, sensitive, identifying = await _compute_copy(dataset, version)
    started = time.monotonic()
    # PostgreSQL text and JSONB cannot hold NUL; the query is still recorded (as U+FFFD).
    shown_sql = sql.replace("\x00", "\ufffd")
    run = QueryRun(
        tenant_id=provider,
        grant_id=grant_id,
        buyer_tenant_id=ctx.tenant_id,
        user_id=ctx.user_id,
        sql=shown_sql[:4000],
        status="done",
    )
    epsilon = float(dataset["epsilon_per_query"])
    exact_rows = 0
    charged = 0.0  # once spent, a failure later in the run does not give the ε back
    try:
        plan = sandbox.plan_query(
            sql,
            columns=columns,
            sensitive=sensitive,
            identifying=identifying,
            settings=settings,
        )
        assert plan.spec is not None
        key = _answer_key(dataset, version, plan, epsilon, settings)
        async with db.tenant_scope(provider, ctx.user_id):
            stored = (
                await CachedAnswer.select(CachedAnswer.answer)
                .output(load_json=True)
                .where(CachedAnswer.query_key == key)
                .first()
            )
        if stored is not None:
            noisy = privacy.Noisy.from_json(stored["answer"])
            run.cached = True
            status = await privacy_budget(provider, dataset)
        else:
            status = await spend_budget(provider, dataset, epsilon)
            charged = epsilon
            _, raw = await sandbox.run_query(
                path,
                plan,
                timeout=QUERY_TIMEOUT,
                max_rows=sandbox.MAX_CANDIDATE_GROUPS
                if plan.spec.threshold(settings)
                else sandbox.MAX_ROWS,
            )
            exact = sandbox.exact_statistics(raw, plan)
            exact_rows = int(sum(v.get("rows:", 0) for v in exact.values()))
            noisy = privacy.measure(plan.spec, exact, settings, epsilon=epsilon)
            if noisy.epsilon > epsilon * (1 + 1e-9):
                log.error(
                    "query on %s measured ε %s over the %s charged",
                    dataset["id"],
                    noisy.epsilon,
                    epsilon,
                )
            await _record_delta(provider, dataset["id"], noisy.delta)
            async with db.tenant_scope(provider, ctx.user_id):
                await CachedAnswer.raw(
                    "INSERT INTO exchange_dp_answers "
                    "(id, tenant_id, dataset_id, query_key, answer, epsilon, created_at) "
                    "VALUES ({}, {}, {}, {}, {}, {}, {}) ON CONFLICT (query_key) DO NOTHING",
                    uuid.uuid4(),
                    provider,
                    dataset["id"],
                    key,
                    json.dumps(noisy.as_json(), ensure_ascii=False),
                    noisy.epsilon,
                    _now(),
                )
        released = privacy.present(
            plan.spec, noisy, settings, min_cohort=int(dataset["min_cohort"])
        )
        if len(released.rows) > sandbox.MAX_ROWS:
            raise sandbox.refused(
                "sql_too_many_groups",
                f"结果超过 {sandbox.MAX_ROWS} 组,请减少分组。",
                f"The result has more than {sandbox.MAX_ROWS} groups; group more coarsely.",
            )
    except CanalError as error:
        run.status, run.error_code = "refused", error.code
        run.elapsed_ms = int((time.monotonic() - started) * 1000)
        async with db.tenant_scope(provider, ctx.user_id):
            await run.save()
        await _audit_query(ctx, grant, dataset, run, shown_sql, ip=ip, epsilon=0.0, code=error.code)
        raise
    run.result_rows = len(released.rows)
    run.epsilon = charged
    run.elapsed_ms = int((time.monotonic() - started) * 1000)
    price = int(dataset["price_fen"]) if dataset["price_model"] == "per_query" else 0
    async with db.tenant_scope(provider, ctx.user_id):
        await run.save()
        await _usage(
            ctx,
            provider_id=provider,
            buyer_id=ctx.tenant_id,
            dataset_id=dataset["id"],
            grant_id=grant_id,
            action="query",
            rows=len(released.rows),
            amount_fen=price,
            detail=f"ε {charged:g}" + (" (cached)" if run.cached else ""),
        )
    await _audit_query(
        ctx,
        grant,
        dataset,
        run,
        shown_sql,
        ip=ip,
        epsilon=charged,
        rows_noisy=released.rows_touched,
        rows_exact=exact_rows if not run.cached else None,
    )
    if price > 0:
        await _meter_query(ctx, run.id, price)
    return QueryAnswer(
        run.id,
        released.names,
        released.rows,
        released.margins,
        released.hidden,
        charged,
        bool(run.cached),
        status,
        budget - used - 1,
    )


async def _audit_query(
    ctx: TenantContext,
    grant: dict[str, Any],
    dataset: dict[str, Any],
    run: QueryRun,
    sql: str,
    *,
    ip: str,
    epsilon: float,
    code: str = "",
    rows_noisy: int | None = None,
    rows_exact: int | None = None,
) -> None:
    """Every query, answered or refused, is an audit event twice: in the buyer's trail with
    the person, the SQL, the ε and the rows it touched as released (noisy — the exact number
    would be an un-noised answer); in the provider's trail with the SQL, the ε and the buyer
    organisation, never the person (docs/exchange.md: the provider learns the organisation).
    The operator reads both."""
    action = "exchange.query_answered" if run.status == "done" else "exchange.query_refused"
    common = {
        "dataset": str(dataset["id"]),
        "grant": str(grant["id"]),
        "query": str(run.id),
        "sql": sql[:1000],
        "epsilon": epsilon,
        **({"code": code} if code else {}),
        **({"cached": True} if run.cached else {}),
    }
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await record(
            action,
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(grant["id"]),
            ip=ip,
            data={**common, **({"rows_touched": rows_noisy} if rows_noisy is not None else {})},
        )
    async with db.tenant_scope(grant["tenant_id"]):
        await record(
            action,
            actor_id=None,
            tenant_id=grant["tenant_id"],
            target=str(grant["id"]),
            data={
                **common,
                "buyer": grant["buyer_name"],
                **({"rows_touched": rows_exact} if rows_exact is not None else {}),
            },
        )


QUERY_METER = "exchange_query"  # billing's priced meter: quantity = fen


async def _meter_query(ctx: TenantContext, run_id: uuid.UUID, price_fen: int) -> None:
    """A per-query price goes to the buyer's billing as priced usage (once per query: the
    run id names it); billing invoices each month's total as one Stripe invoice item
    (decision 0035). After the query's commit; a failure here is logged, never shown as a
    failed query (the usage event already holds the amount, so it can be re-billed)."""
    from canal.platform.billing.services import ensure_customer, no_charge, record_usage

    try:
        await record_usage(ctx, QUERY_METER, price_fen, f"exq-{run_id}")
        if not no_charge():
            await ensure_customer(ctx)  # so the month's invoice item has someone to bill
    except Exception:
        log.exception("per-query usage of run %s not recorded in billing", run_id)


async def query_statement(ctx: TenantContext) -> list[dict[str, Any]]:
    """The buyer's per-query charges by month (Beijing time), from billing's usage rows:
    total, number of queries and whether the month has been invoiced."""
    from canal.platform.billing.tables import UsageRecord

    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await UsageRecord.raw(
            "SELECT to_char(created_at AT TIME ZONE {}, 'YYYY-MM') AS month, "
            "sum(quantity) AS amount_fen, count(*) AS queries, "
            "bool_and(invoice_item_id IS NOT NULL) AS invoiced "
            "FROM billing_usage WHERE tenant_id = {} AND meter = {} "
            "GROUP BY 1 ORDER BY 1 DESC LIMIT 24",
            clock.zone_name(),
            ctx.tenant_id,
            QUERY_METER,
        )
    return [
        {
            "month": r["month"],
            "amount_fen": int(r["amount_fen"]),
            "queries": int(r["queries"]),
            "invoiced": bool(r["invoiced"]),
        }
        for r in rows
    ]


async def grant_queries(ctx: TenantContext, grant_id: uuid.UUID) -> list[dict[str, Any]]:
    """Recent queries of a grant. The run time is kept for the operator's audit but never
    shown: how long a query took says how much data it touched before suppression (see
    docs/exchange.md, "Timing")."""
    grant = await grant_for_party(ctx, grant_id)
    # The provider learns the buyer organisation, not who in it asked (docs/exchange.md).
    hidden = {"elapsed_ms", "suppressed_groups"} | (
        {"user_id"} if grant["side"] != "buyer" else set()
    )
    async with db.tenant_scope(grant["tenant_id"], ctx.user_id):
        rows = (
            await QueryRun.select(
                *[c for c in QueryRun.all_columns() if c._meta.name not in hidden]
            )
            .output(load_json=True)
            .where(QueryRun.grant_id == grant_id)
            .order_by(QueryRun.created_at, ascending=False)
            .limit(50)
        )
    return list(rows)


# --- delivery 3: paged, masked API ----------------------------------------------------------


async def rate_limit(redis: Any, grant_id: uuid.UUID) -> None:
    """At most API_RATE_PER_MINUTE pages in any 60 seconds (a sliding log, not per clock
    minute: a fixed window let a burst across a minute boundary through at twice the rate)."""
    now = clock.timestamp()
    key = f"canal:exchange:rate:{grant_id}"
    member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, 0, now - 60)
        pipe.zadd(key, {member: now})
        pipe.zcard(key)
        pipe.expire(key, 61)
        _, _, count, _ = await pipe.execute()
    if count > API_RATE_PER_MINUTE:
        await redis.zrem(key, member)  # a refused page does not use up the allowance
        raise CanalError(
            "rate_limited",
            f"该授权每分钟最多请求 {API_RATE_PER_MINUTE} 页,请稍后再试。",
            f"This grant allows {API_RATE_PER_MINUTE} pages a minute; try again shortly.",
            status=429,
        )


@dataclass
class RowsPage:
    columns: list[str]
    rows: list[list[Any]]
    page: int
    size: int
    total: int


async def api_rows(
    ctx: TenantContext,
    grant_id: uuid.UUID,
    *,
    page: int,
    size: int,
    redis: Any,
    version_number: int | None = None,
    ip: str = "",
) -> RowsPage:
    if not 1 <= page <= API_PAGE_LIMIT or not 1 <= size <= API_PAGE_MAX:
        raise invalid(
            [
                _err(
                    "size",
                    "page_range",
                    f"页码为 1 至 {API_PAGE_LIMIT},每页 1 至 {API_PAGE_MAX} 行。",
                    f"Pages run from 1 to {API_PAGE_LIMIT} and hold 1 to {API_PAGE_MAX} rows.",
                )
            ]
        )
    grant, dataset, version = await _usable_grant(ctx, grant_id, "api", version_number)
    await rate_limit(redis, grant_id)
    path = await _local_parquet(version)
    columns, rows = await asyncio.to_thread(
        profiling.read_rows, path, offset=(page - 1) * size, limit=size
    )
    rules = dataset["masking_rules"] or {}
    masked = masking.mask_rows(columns, rows, rules, _kinds(version), grant["hash_salt"].encode())
    await _usage(
        ctx,
        provider_id=grant["tenant_id"],
        buyer_id=ctx.tenant_id,
        dataset_id=dataset["id"],
        grant_id=grant_id,
        action="api_page",
        rows=len(masked),
        detail=f"page {page}",
    )
    return RowsPage(
        masking.delivered_columns(columns, rules),
        [[_json_value(v) for v in r] for r in masked],
        page,
        size,
        int(version["rows"]),
    )


# --- usage audit ----------------------------------------------------------------------------


async def usage_events(ctx: TenantContext, *, limit: int = 200) -> list[dict[str, Any]]:
    """The operator sees every party's events; anyone else its own tenant's. Each event also
    names who and what (``dataset_title``, ``buyer_name``, ``user_name``)."""
    if is_operator(ctx):
        async with db.platform_scope(ctx.user_id):
            events = (
                await UsageEvent.select()
                .where(UsageEvent.side == "provider")
                .order_by(UsageEvent.created_at, ascending=False)
                .limit(limit)
            )
            await _name_usage(ctx, events, everyone=True)
        return events
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        events = (
            await UsageEvent.select()
            .where(UsageEvent.tenant_id == ctx.tenant_id)
            .order_by(UsageEvent.created_at, ascending=False)
            .limit(limit)
        )
        await _name_usage(ctx, events, everyone=False)
    return events


async def _name_usage(ctx: TenantContext, events: list[dict[str, Any]], *, everyone: bool) -> None:
    """Titles from the listing (or the provider's own dataset), the buyer organisation from the
    grant both parties hold, and a person's name only to their own organisation (or the
    operator): a provider learns which organisation used its data, not who works there."""
    from canal.platform.identity.tables import User
    from canal.tenants.tables import Membership, Tenant

    dataset_ids = list({e["dataset_id"] for e in events})
    grant_ids = list({e["grant_id"] for e in events if e["grant_id"]})
    user_ids = list({e["user_id"] for e in events})
    titles: dict[Any, str] = {}
    buyers: dict[Any, str] = {}
    names: dict[Any, str] = {}
    if dataset_ids:
        own = await Dataset.select(Dataset.id, Dataset.title).where(Dataset.id.is_in(dataset_ids))
        listed = await Listing.select(Listing.id, Listing.title).where(
            Listing.id.is_in(dataset_ids)
        )
        titles = {r["id"]: r["title"] for r in [*own, *listed]}
    if grant_ids:
        rows = await Grant.select(Grant.id, Grant.buyer_name).where(Grant.id.is_in(grant_ids))
        buyers = {r["id"]: r["buyer_name"] for r in rows}
    # A sample view has no grant: name the viewing organisation (tenants is a global table).
    orgs = list(
        {e["buyer_tenant_id"] for e in events if e["buyer_tenant_id"] and not e["grant_id"]}
    )
    if orgs:
        rows = await Tenant.select(Tenant.id, Tenant.name).where(Tenant.id.is_in(orgs))
        org_names = {r["id"]: r["name"] for r in rows}
    else:
        org_names = {}
    if user_ids:
        visible = user_ids
        if not everyone:
            members = await Membership.select(Membership.user_id).where(
                (Membership.tenant_id == ctx.tenant_id) & Membership.user_id.is_in(user_ids)
            )
            visible = [m["user_id"] for m in members]
        if visible:  # users is a global table: readable in this scope
            people = await User.select(User.id, User.display_name).where(User.id.is_in(visible))
            names = {p["id"]: p["display_name"] for p in people}
    for e in events:
        e["dataset_title"] = titles.get(e["dataset_id"], "")
        e["buyer_name"] = buyers.get(e["grant_id"]) or org_names.get(e["buyer_tenant_id"], "")
        e["user_name"] = names.get(e["user_id"], "")


def usage_series(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per day (Beijing time): uses by action, and revenue in yuan."""
    days: dict[str, dict[str, float]] = {}
    for e in events:
        day = clock.local_date(e["created_at"]).isoformat()
        bucket = days.setdefault(
            day,
            {"sample": 0, "download": 0, "query": 0, "api_page": 0, "purchase": 0, "revenue": 0.0},
        )
        bucket[e["action"]] = bucket.get(e["action"], 0) + 1
        bucket["revenue"] += e["amount_fen"] / 100
    ordered = sorted(days)
    return {
        "days": ordered,
        "series": {
            k: [days[d].get(k, 0) for d in ordered]
            for k in ("sample", "download", "query", "api_page", "purchase", "revenue")
        },
    }


def _register_billing_hooks() -> None:
    from canal.platform.billing.services import on_payment_succeeded, on_subscription_changed

    on_payment_succeeded("exchange-", _grant_payment_succeeded)
    on_subscription_changed(
        SUBSCRIPTION_KIND, _grant_subscription_changed, refs=_followed_subscriptions
    )


async def _followed_subscriptions() -> list[str]:
    """Dataset subscriptions not ended yet (billing's reconciliation re-applies them)."""
    async with db.platform_scope():
        rows = await Grant.select(Grant.subscription_id).where(
            Grant.subscription_id.is_not_null()
            & Grant.subscription_status.not_in(list(ENDED_SUBSCRIPTION))
        )
    return [str(r["subscription_id"]) for r in rows]


_register_billing_hooks()
