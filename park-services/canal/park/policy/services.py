"""Policy matching services (惠企政策): policies and versions, the public catalogue, portraits,
matching runs, applications and their review.

Rules of the road (docs/policy.md):
* an authority (a government tenant or the operator) owns its policies and versions; publishing
  copies the version into the public ``policy_catalogue`` and the search index;
* an enterprise owns its facts, matches and applications; an application's queue row
  (``policy_reviews``, same id) belongs to the authority. Both rows change in one transaction,
  each written under its own tenant's scope, so neither side ever reads the other's tables;
* matching runs in jobs: a changed portrait → that enterprise against the open policies, a
  published or changed policy → that policy against every subscribed enterprise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from asyncpg.exceptions import UniqueViolationError

from canal.park.policy import store
from canal.park.policy.facts import FACTS, Certification, FactType
from canal.park.policy.matcher import CompiledPolicies
from canal.park.policy.rules import AS_OF, Result, RuleError, evaluate, parse_rule
from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.jobs.outbox import enqueue_after_commit
from canal.platform.notifications.services import notify
from canal.platform.text import check_text
from canal.tenants.tables import Membership, ModuleSubscription, Tenant

from .tables import (
    Application,
    CataloguePolicy,
    Dismissal,
    Fact,
    Policy,
    PolicyVersion,
    Review,
)

MODULE = "policy"
SEARCH_KIND = "policies"
AUTHORITY_KINDS = ("government", "operator")

LEVELS = {
    "national": ("国家级", "national"),
    "provincial": ("省级", "provincial"),
    "city": ("市级", "city"),
    "district": ("区级", "district"),
}
SUPPORT_TYPES = {
    "subsidy": ("资金补贴", "subsidy"),
    "tax": ("税收减免", "tax relief"),
    "loan": ("贷款贴息", "loan interest subsidy"),
    "award": ("奖励", "award"),
    "talent": ("人才支持", "talent"),
    "voucher": ("创新券", "voucher"),
}
SOURCES = {
    "self": ("企业自报", "self-declared"),
    "verified": ("运营方核验", "verified by the operator"),
}
STATUSES = {
    "submitted": ("待审核", "submitted"),
    "more_info": ("需补充材料", "more material requested"),
    "accepted": ("已通过", "accepted"),
    "rejected": ("未通过", "rejected"),
    "disbursed": ("资金已拨付", "funds disbursed"),
}
GROUPS = {
    "eligible": ("符合条件", "eligible"),
    "nearly": ("差一项", "nearly eligible"),
    "not_eligible": ("不符合", "not eligible"),
}
# Each at most its column (titles, names, the amount line) or what a catalogue page can show.
TEXT_LIMITS = {
    "title": 200,
    "issuer": 100,
    "doc_number": 100,
    "amount_text": 200,
    "summary": 2000,
    "full_text": 50_000,
    "material": 200,
}
TEXT_LABELS = {
    "title": ("政策标题", "The title"),
    "issuer": ("发文机关", "The issuer"),
    "doc_number": ("文号", "The document number"),
    "amount_text": ("支持金额说明", "The amount line"),
    "summary": ("政策摘要", "The summary"),
    "full_text": ("政策原文", "The full text"),
    "materials": ("申报材料", "Each required material"),
}
MULTILINE = {"summary", "full_text"}
MATERIALS_MAX = 30
# An application still "submitted" after this long is overdue (马上督).
REVIEW_DAYS = 10


def label(table: Mapping[str, tuple[str, str]], key: str, locale: str) -> str:
    zh, en = table.get(key, (key, key))
    return zh if locale.startswith("zh") else en


def today() -> dt.date:
    return clock.today()


def _now() -> dt.datetime:
    return clock.now()


# --------------------------------------------------------------------------------------------
# Input parsing


def _text(data: Mapping[str, Any], name: str, errors: list[FieldError], *, required: bool) -> str:
    """A policy's text field at its limit (TEXT_LIMITS); titles and names refuse direction
    controls like every public catalogue text (``canal.platform.text``)."""
    label_zh, label_en = TEXT_LABELS.get(name, ("此项", "This field"))
    return check_text(
        errors,
        name,
        data.get(name),
        limit=TEXT_LIMITS.get(name, 2000),
        required=required,
        multiline=name in MULTILINE,
        zh=label_zh,
        en=label_en,
    )


def _date(
    data: Mapping[str, Any], name: str, errors: list[FieldError], *, required: bool
) -> dt.date | None:
    raw = data.get(name)
    if isinstance(raw, dt.date):
        return raw
    raw = "" if raw is None else str(raw).strip()
    if not raw:
        if required:
            errors.append(FieldError(name, "required", "此项必填。", "This field is required."))
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        errors.append(
            FieldError(
                name,
                "date_invalid",
                f"「{raw}」不是有效日期,请按 YYYY-MM-DD 填写。",
                f"{raw!r} is not a valid date (YYYY-MM-DD).",
            )
        )
        return None


def _yuan_to_fen(raw: object, name: str, errors: list[FieldError]) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = float(str(raw).strip().replace(",", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        errors.append(FieldError(name, "amount_invalid", "金额须为数字。", "Enter a number."))
        return None
    if value < 0:
        errors.append(
            FieldError(
                name, "amount_negative", "金额不能为负数。", "The amount cannot be negative."
            )
        )
        return None
    if value > 1e12:
        errors.append(
            FieldError(name, "amount_too_large", "金额过大。", "The amount is too large.")
        )
        return None
    return round(value * 100)


def _lines(raw: object) -> list[str]:
    if isinstance(raw, list):
        return [str(x).strip() for x in raw if str(x).strip()]
    return [line.strip() for line in str(raw or "").splitlines() if line.strip()]


def _materials(raw: object, errors: list[FieldError]) -> list[str]:
    """The required materials, one per line (form) or list item (API): each a short name."""
    items = _lines(raw)
    if len(items) > MATERIALS_MAX:
        errors.append(
            FieldError(
                "materials",
                "too_many",
                f"申报材料最多 {MATERIALS_MAX} 项。",
                f"At most {MATERIALS_MAX} required materials.",
            )
        )
        return items
    label_zh, label_en = TEXT_LABELS["materials"]
    found: list[FieldError] = []
    names = [
        check_text(
            found, "materials", item, limit=TEXT_LIMITS["material"], zh=label_zh, en=label_en
        )
        for item in items
    ]
    if found:
        errors.append(found[0])  # one message for the field, however many lines break it
    return names


def parse_criteria(raw: object, errors: list[FieldError], name: str = "criteria") -> Any:
    """The criteria as JSON (text or already parsed), validated by ``parse_rule``."""
    if isinstance(raw, str):
        if not raw.strip():
            errors.append(FieldError(name, "required", "请填写申报条件。", "Enter the criteria."))
            return None
        try:
            raw = json.loads(raw)
        except RecursionError:
            errors.append(_too_deep(name))
            return None
        except json.JSONDecodeError as exc:
            errors.append(
                FieldError(
                    name,
                    "criteria_not_json",
                    f"申报条件不是有效的 JSON(第 {exc.lineno} 行第 {exc.colno} 列)。",
                    f"The criteria are not valid JSON (line {exc.lineno}, column {exc.colno}).",
                )
            )
            return None
    try:
        parse_rule(raw)
    except RuleError as exc:
        errors.append(
            FieldError(name, f"rule_{exc.code}", f"{exc.path}:{exc.zh}", f"{exc.path}: {exc.en}")
        )
        return None
    except RecursionError:
        errors.append(_too_deep(name))
        return None
    return raw


def _too_deep(name: str) -> FieldError:
    return FieldError(
        name, "criteria_too_deep", "申报条件嵌套层数过多。", "The criteria are nested too deeply."
    )


@dataclasses.dataclass
class PolicyInput:
    title: str
    issuer: str
    level: str
    doc_number: str
    support_type: str
    published_on: dt.date | None
    effective_on: dt.date | None
    window_opens: dt.date
    window_closes: dt.date
    expires_on: dt.date | None
    summary: str
    full_text: str
    amount_text: str
    amount_max_fen: int | None
    materials: list[str]
    criteria: Any

    def columns(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_policy(data: Mapping[str, Any]) -> PolicyInput:
    """Validate a policy form or JSON object; every problem at once, each at its field."""
    errors: list[FieldError] = []
    title = _text(data, "title", errors, required=True)
    issuer = _text(data, "issuer", errors, required=True)
    doc_number = _text(data, "doc_number", errors, required=False)
    level = str(data.get("level") or "")
    if level not in LEVELS:
        errors.append(
            FieldError(
                "level",
                "level_unknown",
                "请选择政策级别(国家/省/市/区)。",
                "Choose a level: national, provincial, city or district.",
            )
        )
    support_type = str(data.get("support_type") or "")
    if support_type not in SUPPORT_TYPES:
        errors.append(
            FieldError(
                "support_type",
                "support_type_unknown",
                "请选择支持方式。",
                "Choose a support type: " + ", ".join(SUPPORT_TYPES) + ".",
            )
        )
    published_on = _date(data, "published_on", errors, required=False)
    effective_on = _date(data, "effective_on", errors, required=False)
    window_opens = _date(data, "window_opens", errors, required=True)
    window_closes = _date(data, "window_closes", errors, required=True)
    expires_on = _date(data, "expires_on", errors, required=False)
    if window_opens and window_closes and window_closes < window_opens:
        errors.append(
            FieldError(
                "window_closes",
                "window_reversed",
                "申报截止日不能早于申报开始日。",
                "The application window cannot close before it opens.",
            )
        )
    if expires_on and window_closes and expires_on < window_closes:
        errors.append(
            FieldError(
                "expires_on",
                "expires_before_window",
                "政策失效日不能早于申报截止日。",
                "The policy cannot expire before its application window closes.",
            )
        )
    amount_raw = data.get("amount_max_yuan")
    amount_max_fen = _yuan_to_fen(amount_raw, "amount_max_yuan", errors)
    criteria = parse_criteria(data.get("criteria"), errors)
    summary = _text(data, "summary", errors, required=False)
    full_text = _text(data, "full_text", errors, required=False)
    amount_text = _text(data, "amount_text", errors, required=False)
    materials = _materials(data.get("materials"), errors)
    if errors:
        raise invalid(errors)
    assert window_opens and window_closes  # checked above
    return PolicyInput(
        title=title,
        issuer=issuer,
        level=level,
        doc_number=doc_number,
        support_type=support_type,
        published_on=published_on,
        effective_on=effective_on,
        window_opens=window_opens,
        window_closes=window_closes,
        expires_on=expires_on,
        summary=summary,
        full_text=full_text,
        amount_text=amount_text,
        amount_max_fen=amount_max_fen,
        materials=materials,
        criteria=criteria,
    )


# --------------------------------------------------------------------------------------------
# Policies (authority side)


def require_authority(ctx: TenantContext) -> None:
    if ctx.tenant.kind not in AUTHORITY_KINDS:
        raise CanalError(
            "not_policy_authority",
            "只有政府部门或平台运营方可以发布政策。",
            "Only a government department or the operator can publish policies.",
            status=403,
        )


async def create_policy(
    ctx: TenantContext, data: PolicyInput, *, ip: str = "", publish: bool = False
) -> uuid.UUID:
    require_authority(ctx)
    policy_id = uuid.uuid4()
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await Policy.insert(Policy(id=policy_id, tenant_id=ctx.tenant_id))
        await PolicyVersion.insert(
            PolicyVersion(
                tenant_id=ctx.tenant_id,
                policy_id=policy_id,
                number=1,
                created_by=ctx.user_id,
                **data.columns(),
            )
        )
        await record(
            "policy.created",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(policy_id),
            ip=ip,
            data={"title": data.title},
        )
        if publish:
            await _publish(ctx, policy_id, ip=ip)
    return policy_id


async def _policy_row(ctx: TenantContext, policy_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await Policy.select()
        .where((Policy.id == policy_id) & (Policy.tenant_id == ctx.tenant_id))
        .first()
    )
    if row is None:
        raise not_found()
    return row


async def update_policy(
    ctx: TenantContext, policy_id: uuid.UUID, data: PolicyInput, *, ip: str = ""
) -> int:
    """Editing adds a version; a published policy's catalogue entry moves to it."""
    require_authority(ctx)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await _policy_row(ctx, policy_id)
        number = int(row["current_version"]) + 1
        await PolicyVersion.insert(
            PolicyVersion(
                tenant_id=ctx.tenant_id,
                policy_id=policy_id,
                number=number,
                created_by=ctx.user_id,
                **data.columns(),
            )
        )
        await Policy.update({Policy.current_version: number, Policy.updated_at: _now()}).where(
            Policy.id == policy_id
        )
        await record(
            "policy.versioned",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(policy_id),
            ip=ip,
            data={"version": number},
        )
        if row["status"] == "published":
            await _publish(ctx, policy_id, ip=ip, audit=False)
    return number


async def publish_policy(ctx: TenantContext, policy_id: uuid.UUID, *, ip: str = "") -> None:
    require_authority(ctx)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await _policy_row(ctx, policy_id)
        await _publish(ctx, policy_id, ip=ip)


async def _publish(
    ctx: TenantContext, policy_id: uuid.UUID, *, ip: str, audit: bool = True
) -> None:
    from canal.platform.search.jobs import index_documents

    row = await _policy_row(ctx, policy_id)
    version = (
        await PolicyVersion.select()
        .where(
            (PolicyVersion.policy_id == policy_id)
            & (PolicyVersion.number == row["current_version"])
        )
        .first()
    )
    assert version is not None
    await Policy.update({Policy.status: "published", Policy.updated_at: _now()}).where(
        Policy.id == policy_id
    )
    columns = {
        k: version[k]
        for k in (
            "title",
            "issuer",
            "level",
            "doc_number",
            "support_type",
            "published_on",
            "effective_on",
            "window_opens",
            "window_closes",
            "expires_on",
            "summary",
            "full_text",
            "amount_text",
            "amount_max_fen",
            "materials",
            "criteria",
        )
    }
    for key in ("materials", "criteria"):
        if isinstance(columns[key], str):
            columns[key] = json.loads(columns[key])
    # The catalogue is global (no tenant_id): delete + insert keeps it one row per policy.
    await CataloguePolicy.delete().where(CataloguePolicy.id == policy_id)
    await CataloguePolicy.insert(
        CataloguePolicy(
            id=policy_id,
            authority_id=ctx.tenant_id,
            authority_name=ctx.tenant.name,
            version_id=version["id"],
            version_number=version["number"],
            updated_at=_now(),
            **columns,
        )
    )
    await index_documents(
        SEARCH_KIND, [search_document(policy_id, ctx.tenant_id, ctx.tenant.name, columns)]
    )
    await enqueue_after_commit(
        "policy_match_policy",
        str(policy_id),
        key=f"policy-match:{policy_id}:{version['number']}",
    )
    # Saved catalogue searches that find this version alert their owners (saved_searches).
    await enqueue_after_commit(
        "policy_saved_search_alerts",
        str(policy_id),
        version["number"],
        key=f"policy-search-alerts:{policy_id}:{version['number']}",
    )
    if audit:
        await record(
            "policy.published",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(policy_id),
            ip=ip,
            data={"version": version["number"]},
        )


def _ordinal_day(value: Any) -> int:
    return value.toordinal() if isinstance(value, dt.date) else 0


def search_document(
    policy_id: uuid.UUID, authority_id: uuid.UUID, authority_name: str, c: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "id": str(policy_id),
        "tenant_id": str(authority_id),
        "visibility": "public",
        "title": c["title"],
        "summary": c.get("summary") or "",
        "issuer": c["issuer"],
        "authority": authority_name,
        "doc_number": c.get("doc_number") or "",
        "level": c["level"],
        "support_type": c["support_type"],
        "window_opens_day": _ordinal_day(c["window_opens"]),
        "window_closes_day": _ordinal_day(c["window_closes"]),
    }


async def load_search_documents() -> Any:
    async with db.transaction():
        rows = await CataloguePolicy.select()
    for r in rows:
        yield search_document(r["id"], r["authority_id"], r["authority_name"], r)


@dataclasses.dataclass
class PolicyView:
    id: uuid.UUID
    status: str
    current_version: int
    versions: list[dict[str, Any]]

    @property
    def current(self) -> dict[str, Any]:
        return next(v for v in self.versions if v["number"] == self.current_version)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("materials", "criteria", "form", "history", "evidence", "value"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


async def list_policies(ctx: TenantContext) -> list[dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        policies = await Policy.select().where(Policy.tenant_id == ctx.tenant_id)
        versions = await PolicyVersion.select(
            PolicyVersion.policy_id,
            PolicyVersion.number,
            PolicyVersion.title,
            PolicyVersion.level,
            PolicyVersion.window_closes,
        ).where(PolicyVersion.tenant_id == ctx.tenant_id)
    titles = {(v["policy_id"], v["number"]): v for v in versions}
    out = []
    for p in policies:
        v = titles.get((p["id"], p["current_version"]), {})
        out.append({**p, **{k: v.get(k) for k in ("title", "level", "window_closes")}})
    out.sort(key=lambda r: r["updated_at"], reverse=True)
    return out


async def get_policy(ctx: TenantContext, policy_id: uuid.UUID) -> PolicyView:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await _policy_row(ctx, policy_id)
        versions = (
            await PolicyVersion.select()
            .where(PolicyVersion.policy_id == policy_id)
            .order_by(PolicyVersion.number, ascending=False)
        )
    return PolicyView(
        row["id"], row["status"], row["current_version"], [_decode(v) for v in versions]
    )


def version_to_json(v: Mapping[str, Any]) -> dict[str, Any]:
    """The import/export shape of a policy (``parse_policy`` reads it back)."""
    out: dict[str, Any] = {}
    for key in (
        "title",
        "issuer",
        "level",
        "doc_number",
        "support_type",
        "published_on",
        "effective_on",
        "window_opens",
        "window_closes",
        "expires_on",
        "summary",
        "full_text",
        "amount_text",
        "materials",
        "criteria",
    ):
        value = v.get(key)
        out[key] = value.isoformat() if isinstance(value, dt.date) else value
    fen = v.get("amount_max_fen")
    out["amount_max_yuan"] = None if fen is None else fen / 100
    return out


async def export_policies(ctx: TenantContext) -> list[dict[str, Any]]:
    out = []
    for p in await list_policies(ctx):
        view = await get_policy(ctx, p["id"])
        out.append(version_to_json(view.current))
    return out


async def import_policies(
    ctx: TenantContext, items: object, *, publish: bool, ip: str = ""
) -> list[uuid.UUID]:
    """Import a JSON list of policies: all or nothing, errors named ``[i].field``."""
    require_authority(ctx)
    if not isinstance(items, list) or not items:
        raise invalid(
            [
                FieldError(
                    "policies",
                    "import_not_list",
                    "导入文件须为非空的政策 JSON 数组。",
                    "The import must be a non-empty JSON array of policies.",
                )
            ]
        )
    parsed: list[PolicyInput] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(
                FieldError(f"[{i}]", "import_not_object", "应为对象。", "Expected an object.")
            )
            continue
        try:
            parsed.append(parse_policy(item))
        except CanalError as exc:
            # The message names the policy too: a page shows messages, not field paths.
            title = str(item.get("title") or "")[:40]
            where_zh = f"第 {i + 1} 条政策" + (f"「{title}」" if title else "")
            where_en = f"Policy {i + 1}" + (f" ({title})" if title else "")
            errors += [
                dataclasses.replace(
                    e,
                    field=f"[{i}].{e.field}",
                    zh=f"{where_zh}:{e.zh}",
                    en=f"{where_en}: {e.en}",
                )
                for e in exc.errors
            ]
    if errors:
        raise invalid(errors)
    ids = []
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        for data in parsed:
            ids.append(await create_policy(ctx, data, ip=ip, publish=publish))
    return ids


# --------------------------------------------------------------------------------------------
# The public catalogue


async def catalogue_get(policy_id: uuid.UUID) -> dict[str, Any]:
    async with db.transaction():
        row = await CataloguePolicy.select().where(CataloguePolicy.id == policy_id).first()
    if row is None:
        raise not_found()
    return _decode(row)


async def catalogue_issuers() -> list[str]:
    """The issuing departments of the published policies (the catalogue's department filter
    offers these, so a filter never names a department without policies)."""
    async with db.transaction():
        rows = await CataloguePolicy.select(CataloguePolicy.issuer).distinct()
    return sorted({r["issuer"] for r in rows})


def window_state(row: Mapping[str, Any], day: dt.date) -> str:
    if day < row["window_opens"]:
        return "upcoming"
    if day > row["window_closes"]:
        return "closed"
    return "open"


def catalogue_filters(
    *,
    level: str = "",
    support_type: str = "",
    issuer: str = "",
    open_now: bool = False,
    closing_days: int | None,
) -> dict[str, Any]:
    """The catalogue's filters as search-service filters (saved searches reuse them)."""
    filters: dict[str, Any] = {}
    if level:
        filters["level"] = level
    if support_type:
        filters["support_type"] = support_type
    if issuer:
        filters["issuer"] = issuer
    day = today().toordinal()
    if open_now or closing_days is not None:
        filters["window_opens_day"] = {"lte": day}
        filters["window_closes_day"] = {"gte": day}
        if closing_days is not None:
            filters["window_closes_day"]["lte"] = day + closing_days
    return filters


async def catalogue_search(
    query: str,
    *,
    level: str = "",
    support_type: str = "",
    issuer: str = "",
    open_now: bool = False,
    closing_days: int | None = None,
    page: int = 1,
) -> tuple[list[dict[str, Any]], int]:
    """Search the public catalogue through Meilisearch (public documents only)."""
    from canal.platform.search.services import get_service

    filters = catalogue_filters(
        level=level,
        support_type=support_type,
        issuer=issuer,
        open_now=open_now,
        closing_days=closing_days,
    )
    result = await get_service().search(
        SEARCH_KIND,
        query,
        caller=None,
        filters=filters,
        sort=["window_closes_day:asc"] if closing_days is not None else [],
        page=page,
    )
    return result.hits, result.total


# --------------------------------------------------------------------------------------------
# Portraits


class FactProblem(ValueError):
    """A fact value that does not validate (carries the field error to show)."""

    def __init__(self, error: FieldError) -> None:
        super().__init__(error.en)
        self.error = error


def _fact_error(name: str, zh: str, en: str) -> FactProblem:
    return FactProblem(FieldError(name, "fact_invalid", zh, en))


def parse_fact(name: str, raw: object) -> Any:
    """A fact's JSON value from a form string or a JSON value; ``None`` clears it.

    Raises ``FactProblem`` so callers can collect every problem.
    """
    spec = FACTS.get(name)
    if spec is None:
        raise FactProblem(
            FieldError(
                name, "fact_unknown", f"未知的企业信息项「{name}」。", f"Unknown fact {name!r}."
            )
        )
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if spec.type is FactType.STR:
        value = str(raw).strip()
        if len(value) > 40:
            raise _fact_error(name, "不能超过 40 个字符。", "At most 40 characters.")
        return value
    if spec.type in (FactType.NUMBER, FactType.INT):
        try:
            number = float(str(raw).strip().replace(",", "")) if isinstance(raw, str) else raw
        except ValueError:
            raise _fact_error(name, "请填写数字。", "Enter a number.") from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise _fact_error(name, "请填写数字。", "Enter a number.")
        if isinstance(number, int) and abs(number) > FACT_MAX:
            number = math.inf  # an int too large for a float: refuse it below, not with a 500
        if not math.isfinite(number) or number < 0:
            raise _fact_error(name, "须为不小于 0 的数字。", "Enter a number of at least 0.")
        if number > FACT_MAX:
            raise _fact_error(name, "数值过大。", f"At most {FACT_MAX:,.0f}.")
        if spec.type is FactType.INT:
            if float(number) != int(number):
                raise _fact_error(name, "请填写整数。", "Enter a whole number.")
            return int(number)
        return float(number)
    if spec.type is FactType.DATE:
        try:
            day = dt.date.fromisoformat(str(raw).strip())
        except ValueError:
            raise _fact_error(
                name, "不是有效日期(YYYY-MM-DD)。", "Not a valid date (YYYY-MM-DD)."
            ) from None
        if day > today():
            raise _fact_error(name, "日期不能晚于今天。", "The date cannot be in the future.")
        return day.isoformat()
    return _parse_certs(name, raw)


# The largest number a fact may hold (10¹² 万元 is beyond any enterprise; it keeps floats exact
# enough and stops absurd values from skewing statistics).
FACT_MAX = 1e12


def _parse_certs(name: str, raw: object) -> list[dict[str, str]]:
    """Certifications: a JSON list of {name, valid_from, valid_to} or form lines
    ``名称,起始日,截止日``."""
    items: list[Any]
    if isinstance(raw, str):
        items = []
        for line in raw.splitlines():
            if line.strip():
                items.append([p.strip() for p in line.replace(",", ",").split(",")])
    elif isinstance(raw, list):
        items = list(raw)
    else:
        raise _fact_error(name, "资质格式有误。", "Certifications must be a list.")
    out = []
    for n, item in enumerate(items, 1):
        parts: list[Any]
        if isinstance(item, dict):
            parts = [item.get("name"), item.get("valid_from"), item.get("valid_to")]
        else:
            parts = list(item)
        if len(parts) != 3 or not all(isinstance(p, str) and p for p in parts):
            raise _fact_error(
                name,
                f"第 {n} 项应为「名称,起始日,截止日」。",
                f"Item {n} must be 'name, valid from, valid to'.",
            )
        try:
            start, end = dt.date.fromisoformat(parts[1]), dt.date.fromisoformat(parts[2])
        except ValueError:
            raise _fact_error(
                name, f"第 {n} 项的日期无效。", f"Item {n} has an invalid date."
            ) from None
        if end < start:
            raise _fact_error(
                name,
                f"第 {n} 项的截止日早于起始日。",
                f"Item {n} ends before it starts.",
            )
        out.append(
            {"name": parts[0][:40], "valid_from": start.isoformat(), "valid_to": end.isoformat()}
        )
    return out


def to_portrait_value(name: str, value: Any) -> Any:
    """Stored JSON → the typed value ``facts.FACTS`` expects."""
    if value is None:
        return None
    spec = FACTS[name]
    if spec.type is FactType.DATE:
        return dt.date.fromisoformat(value)
    if spec.type is FactType.CERTS:
        return [
            Certification(
                c["name"],
                dt.date.fromisoformat(c["valid_from"]),
                dt.date.fromisoformat(c["valid_to"]),
            )
            for c in value
        ]
    if spec.type is FactType.INT:
        return int(value)
    if spec.type is FactType.NUMBER:
        return float(value)
    return value


async def portrait_rows(ctx: TenantContext) -> dict[str, dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await Fact.select().where(Fact.tenant_id == ctx.tenant_id)
    return {r["fact"]: _decode(r) for r in rows}


def portrait_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {r["fact"]: to_portrait_value(r["fact"], r["value"]) for r in rows}


async def set_facts(
    ctx: TenantContext,
    values: Mapping[str, object],
    *,
    as_of: object = None,
    source: str = "self",
    evidence: Sequence[uuid.UUID] = (),
    ip: str = "",
) -> list[str]:
    """Correct the portrait: only facts whose value changed are rewritten (with the new
    source and as-of date); a change schedules re-matching of this enterprise."""
    errors: list[FieldError] = []
    parsed: dict[str, Any] = {}
    for name, raw in values.items():
        try:
            parsed[name] = parse_fact(name, raw)
        except FactProblem as exc:
            errors.append(exc.error)
    day = today()
    if as_of not in (None, ""):
        got = _date({"as_of": as_of}, "as_of", errors, required=False)
        if got and got > day:
            errors.append(
                FieldError(
                    "as_of",
                    "as_of_future",
                    "截至日期不能晚于今天。",
                    "As-of cannot be in the future.",
                )
            )
        day = got or day
    if errors:
        raise invalid(errors)
    from canal.platform.storage.services import get_object_in_tenant

    for file_id in evidence:
        await get_object_in_tenant(file_id, ctx)  # 404 for another tenant's file
    changed = []
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        current = {
            r["fact"]: _decode(r)
            for r in await Fact.select().where(Fact.tenant_id == ctx.tenant_id)
        }
        for name, value in parsed.items():
            old = current.get(name)
            if (
                old is not None
                and old["value"] == value
                and not evidence
                and old["source"] == source
            ):
                continue
            await Fact.delete().where((Fact.tenant_id == ctx.tenant_id) & (Fact.fact == name))
            await Fact.insert(
                Fact(
                    tenant_id=ctx.tenant_id,
                    fact=name,
                    # Piccolo passes a str through as JSON text, so encode every value.
                    value=json.dumps(value, ensure_ascii=False),
                    source=source,
                    as_of=day,
                    evidence=[str(e) for e in evidence],
                    updated_by=ctx.user_id,
                )
            )
            changed.append(name)
        if changed:
            await record(
                "policy.portrait_changed",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=str(ctx.tenant_id),
                ip=ip,
                data={"facts": changed, "source": source},
            )
            await enqueue_after_commit(
                "policy_match_enterprise", str(ctx.tenant_id), key=f"pme:{uuid.uuid4()}"
            )
    return changed


async def supply_facts(
    tenant_id: uuid.UUID, module_key: str, values: Mapping[str, object], as_of: dt.date
) -> list[str]:
    """The interface for other modules: facts they know, recorded with ``module:<key>``."""
    tenant = await Tenant.select().where(Tenant.id == tenant_id).first()
    if tenant is None:
        raise not_found()
    from canal.platform.http.context import TenantRef

    ctx = TenantContext(
        TenantRef(tenant["id"], tenant["slug"], tenant["name"], tenant["kind"], tenant["status"]),
        uuid.UUID(int=0),
    )
    return await set_facts(ctx, values, as_of=as_of.isoformat(), source=f"module:{module_key}")


# --------------------------------------------------------------------------------------------
# Matching


def bind_refs(criteria: Any, refs: Mapping[str, dt.date]) -> Any:
    """Replace named reference dates (``window_open``) with the policy's ISO dates, so all
    policies compile with one shared reference map (the evaluation day stays ``as_of``)."""
    if isinstance(criteria, dict):
        out = {}
        for k, v in criteria.items():
            if k in ("date", "on") and isinstance(v, str) and v in refs and v != AS_OF:
                out[k] = refs[v].isoformat()
            else:
                out[k] = bind_refs(v, refs)
        return out
    if isinstance(criteria, list):
        return [bind_refs(x, refs) for x in criteria]
    return criteria


def policy_rule(row: Mapping[str, Any]) -> Any:
    criteria = row["criteria"]
    if isinstance(criteria, str):
        criteria = json.loads(criteria)
    return parse_rule(bind_refs(criteria, {"window_open": row["window_opens"]}))


def is_open(row: Mapping[str, Any], day: dt.date) -> bool:
    return row["window_closes"] >= day and (row["expires_on"] is None or row["expires_on"] >= day)


async def _subscribed_enterprises() -> list[uuid.UUID]:
    async with db.platform_scope():
        rows = await ModuleSubscription.raw(
            "SELECT DISTINCT s.tenant_id FROM module_subscriptions s JOIN tenants t "
            "ON t.id = s.tenant_id WHERE s.module_key = {} AND s.status = 'active' "
            "AND t.kind = 'enterprise' AND t.status = 'active'",
            MODULE,
        )
    return [r["tenant_id"] for r in rows]


async def open_catalogue(day: dt.date) -> list[dict[str, Any]]:
    async with db.transaction():
        rows = await CataloguePolicy.select()
    return [_decode(r) for r in rows if is_open(r, day)]


async def rematch_enterprise(tenant_id: uuid.UUID, day: dt.date | None = None) -> int:
    """One enterprise against every open policy (after its portrait changed)."""
    day = day or today()
    policies = await open_catalogue(day)
    async with db.tenant_scope(tenant_id):
        portrait = portrait_of(
            _decode(r) for r in await Fact.select().where(Fact.tenant_id == tenant_id)
        )
    compiled = CompiledPolicies([policy_rule(p) for p in policies], day)
    codes: list[int] = [int(c) for c in compiled.enterprise(portrait)] if policies else []
    return await store.store_enterprise(tenant_id, policies, codes, day)


async def rematch_policy(policy_id: uuid.UUID, day: dt.date | None = None) -> int:
    """One (new or changed) policy against every subscribed enterprise."""
    from canal.park.policy.matcher import PortraitTable, match_policy

    day = day or today()
    async with db.transaction():
        policy = await CataloguePolicy.select().where(CataloguePolicy.id == policy_id).first()
    if policy is None or not is_open(_decode(policy), day):
        # Withdrawn from the catalogue or closed: it leaves everyone's matches.
        await store.drop_policy(policy_id)
        return 0
    policy = _decode(policy)
    tenants, portraits = await _all_portraits()
    if not tenants:
        return 0
    codes = match_policy(PortraitTable(portraits), policy_rule(policy), day)
    return await store.store_policy(policy, tenants, codes, day)


async def rematch_all(day: dt.date | None = None) -> int:
    """Every subscribed enterprise against every open policy (nightly: criteria such as
    "established 3 years before" or a certificate's validity change with the date alone)."""
    from canal.park.policy.matcher import PortraitTable, match_matrix

    day = day or today()
    async with store.lock_for_full_run():
        policies = await open_catalogue(day)
        tenants, portraits = await _all_portraits()
        if policies and tenants:
            rules = [policy_rule(p) for p in policies]
            matrix = match_matrix(PortraitTable(portraits), rules, day)
        else:
            matrix = np.empty((len(policies), len(tenants)), dtype=np.int8)
        return await store.store_matrix(tenants, policies, matrix, day)


@dataclasses.dataclass
class MatchView:
    policy: dict[str, Any]
    group: str
    result: Result
    dismissed: bool
    version_number: int
    facts: dict[str, dict[str, Any]]
    application_id: uuid.UUID | None


async def matches_view(ctx: TenantContext, day: dt.date | None = None) -> list[MatchView]:
    """The enterprise's matches, each re-explained from the current portrait; ``day``
    evaluates "as of" another date (policies open then, certificates valid then)."""
    day = day or today()
    stored = await store.read_enterprise(ctx.tenant_id)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        facts = {
            r["fact"]: _decode(r)
            for r in await Fact.select().where(Fact.tenant_id == ctx.tenant_id)
        }
        applied = {
            r["policy_id"]: r["id"]
            for r in await Application.select(Application.id, Application.policy_id).where(
                Application.tenant_id == ctx.tenant_id
            )
        }
    portrait = portrait_of(facts.values())
    out = []
    # Every open policy is shown: a stored pair carries the version matched against; a
    # policy without one is one the enterprise is not (nearly) eligible for.
    for policy in await open_catalogue(day):
        m = stored.codes.get(policy["id"])
        result = evaluate(policy_rule(policy), portrait, day)
        out.append(
            MatchView(
                policy,
                result.group.value,
                result,
                policy["id"] in stored.dismissed,
                m[1] if m else policy["version_number"],
                facts,
                applied.get(policy["id"]),
            )
        )
    order = {"eligible": 0, "nearly": 1, "not_eligible": 2}
    out.sort(key=lambda v: (order[v.group], v.policy["window_closes"]))
    return out


async def set_dismissed(ctx: TenantContext, policy_id: uuid.UUID, dismissed: bool) -> None:
    await catalogue_get(policy_id)  # a policy that is not in the catalogue answers 404
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        if not dismissed:
            await Dismissal.delete().where(
                (Dismissal.tenant_id == ctx.tenant_id) & (Dismissal.policy_id == policy_id)
            )
            return
        await Dismissal.raw(
            "INSERT INTO policy_dismissals (id, tenant_id, policy_id, created_at) "
            "VALUES ({}, {}, {}, {}) ON CONFLICT (tenant_id, policy_id) DO NOTHING",
            uuid.uuid4(),
            ctx.tenant_id,
            policy_id,
            clock.now(),
        )


# --------------------------------------------------------------------------------------------
# Applications


def _event(status: str, actor: uuid.UUID, side: str, note: str = "") -> dict[str, Any]:
    return {
        "at": _now().isoformat(),
        "status": status,
        "by": str(actor),
        "side": side,
        "note": note,
    }


async def _members(tenant_id: uuid.UUID) -> list[uuid.UUID]:
    async with db.tenant_scope(tenant_id):
        rows = await Membership.select(Membership.user_id).where(Membership.tenant_id == tenant_id)
    return [r["user_id"] for r in rows]


async def _slug(tenant_id: uuid.UUID) -> str:
    row = await Tenant.select(Tenant.slug).where(Tenant.id == tenant_id).first()
    return row["slug"] if row else ""


# An application that still stands: an enterprise has at most one per policy. The partial
# unique index LIVE_APPLICATION_INDEX (migration policy_2026_12_07t19_08_00) holds the same
# list; a rejected application may be followed by a new one.
LIVE_APPLICATION_STATUSES = ("submitted", "more_info", "accepted", "disbursed")
LIVE_APPLICATION_INDEX = "policy_applications_live_once"


def _already_applied() -> CanalError:
    return CanalError(
        "already_applied",
        "贵企业已申报该政策。",
        "Your enterprise has already applied for this policy.",
        status=409,
    )


@contextlib.asynccontextmanager
async def _one_live_application() -> AsyncIterator[None]:
    """Two applications at once both count no live one; the index lets the first in and
    fails the second (at its insert, once the first commits): the same refusal as the count."""
    try:
        yield
    except UniqueViolationError as exc:
        if getattr(exc, "constraint_name", "") == LIVE_APPLICATION_INDEX:
            raise _already_applied() from None
        raise


async def apply(
    ctx: TenantContext,
    policy_id: uuid.UUID,
    *,
    contact: str,
    note: str,
    materials: Sequence[uuid.UUID],
    ip: str = "",
) -> uuid.UUID:
    """Submit an application against the policy's published version (pre-filled portrait)."""
    from canal.platform.storage.services import get_object_to_share

    policy = await catalogue_get(policy_id)
    day = today()
    errors: list[FieldError] = []
    contact = check_text(
        errors, "contact", contact, limit=200, required=True, zh="联系人及电话", en="The contact"
    )
    note = check_text(errors, "note", note, limit=2000, multiline=True, zh="备注", en="The note")
    files = []
    for file_id in materials:
        # The authority opens the materials: attaching the organisation's files needs files:read.
        stored = await get_object_to_share(file_id, ctx)
        files.append({"id": str(stored.id), "name": stored.original_name, "size": stored.size})
    if policy["materials"] and not files:
        errors.append(
            FieldError(
                "materials",
                "materials_missing",
                "请上传申报材料。",
                "Upload the required materials.",
            )
        )
    if errors:
        raise invalid(errors)
    if window_state(policy, day) != "open":
        raise CanalError(
            "window_closed",
            f"不在申报期内(申报期 {policy['window_opens']} 至 {policy['window_closes']})。",
            f"Applications are accepted only from {policy['window_opens']} to "
            f"{policy['window_closes']}.",
            status=422,
        )
    portrait = await portrait_rows(ctx)
    form = {
        "contact": contact,
        "note": note,
        "portrait": {k: v["value"] for k, v in portrait.items()},
        "enterprise": ctx.tenant.name,
    }
    app_id = uuid.uuid4()
    history = [_event("submitted", ctx.user_id, "applicant")]
    async with _one_live_application(), db.tenant_scope(ctx.tenant_id, ctx.user_id):
        pending = await Application.count().where(
            (Application.tenant_id == ctx.tenant_id)
            & (Application.policy_id == policy_id)
            & Application.status.is_in(list(LIVE_APPLICATION_STATUSES))
        )
        if pending:
            raise _already_applied()
        common = {
            "policy_id": policy_id,
            "version_id": policy["version_id"],
            "version_number": policy["version_number"],
            "policy_title": policy["title"],
            "form": form,
            "materials": files,
            "history": history,
        }
        await Application.insert(
            Application(
                id=app_id, tenant_id=ctx.tenant_id, authority_id=policy["authority_id"], **common
            )
        )
        await record(
            "policy.applied",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(app_id),
            ip=ip,
            data={"policy": str(policy_id), "version": policy["version_number"]},
        )
        industry = portrait.get("industry_code", {}).get("value") or ""
        async with db.tenant_scope(policy["authority_id"], ctx.user_id):
            await Review.insert(
                Review(
                    id=app_id,
                    tenant_id=policy["authority_id"],
                    applicant_id=ctx.tenant_id,
                    applicant_name=ctx.tenant.name,
                    industry_code=str(industry)[:20],
                    **common,
                )
            )
            authority_slug = await _slug(policy["authority_id"])
            await notify(
                await _members(policy["authority_id"]),
                "policy_match",
                title_zh=f"新的政策申报:{policy['title']}",
                title_en=f"New application: {policy['title']}",
                body_zh=ctx.tenant.name,
                body_en=ctx.tenant.name,
                link=f"/t/{authority_slug}/m/policy/queue/{app_id}",
                tenant_id=policy["authority_id"],
            )
    return app_id


async def list_applications(ctx: TenantContext) -> list[dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await Application.select()
            .where(Application.tenant_id == ctx.tenant_id)
            .order_by(Application.submitted_at, ascending=False)
        )
    return [_decode(r) for r in rows]


async def get_application(ctx: TenantContext, application_id: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Application.select()
            .where((Application.id == application_id) & (Application.tenant_id == ctx.tenant_id))
            .first()
        )
    if row is None:
        raise not_found()
    return _decode(row)


async def list_reviews(ctx: TenantContext, status: str = "") -> list[dict[str, Any]]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        query = Review.select().where(Review.tenant_id == ctx.tenant_id)
        if status:
            query = query.where(Review.status == status)
        rows = await query.order_by(Review.submitted_at)
    return [_decode(r) for r in rows]


async def get_review(ctx: TenantContext, application_id: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Review.select()
            .where((Review.id == application_id) & (Review.tenant_id == ctx.tenant_id))
            .first()
        )
    if row is None:
        raise not_found()
    return _decode(row)


async def review_material_url(
    ctx: TenantContext, application_id: uuid.UUID, file_id: uuid.UUID, *, ip: str = ""
) -> str:
    """A five-minute link to one material file of an application to this authority's policy.

    The application must be in this authority's queue and the file one of the application's
    materials; anything else answers like a missing file. Every opening is audited, in the
    authority's log and in the applicant's.
    """
    from canal.platform.storage.services import get_object_granted, object_store

    row = await get_review(ctx, application_id)
    if str(file_id) not in {str(m.get("id")) for m in row["materials"]}:
        raise not_found()
    stored = await get_object_granted(file_id, row["applicant_id"], ctx.user_id)
    data = {"file": str(file_id), "name": stored.original_name, "policy": str(row["policy_id"])}
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await record(
            "policy.material_opened",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(application_id),
            ip=ip,
            data={**data, "applicant": str(row["applicant_id"])},
        )
        if row["applicant_id"] != ctx.tenant_id:
            async with db.tenant_scope(row["applicant_id"], ctx.user_id):
                await record(
                    "policy.material_opened",
                    actor_id=ctx.user_id,
                    tenant_id=row["applicant_id"],
                    target=str(application_id),
                    ip=ip,
                    data={**data, "authority": str(ctx.tenant_id)},
                )
    return await object_store().presigned_get_granted(stored)


def _wrong_state(status: str) -> CanalError:
    zh, en = STATUSES.get(status, (status, status))
    return CanalError(
        "wrong_status",
        f"该申报当前状态为「{zh}」,不能执行此操作。",
        f"The application is {en}; this step is not possible now.",
        status=409,
    )


DECISIONS = {"accept": "accepted", "reject": "rejected", "more": "more_info"}
DISBURSEMENT_REF_MAX = 100


async def decide(
    ctx: TenantContext,
    application_id: uuid.UUID,
    action: str,
    *,
    amount_yuan: object = None,
    reason: str = "",
    reference: str = "",
    ip: str = "",
) -> str:
    """The authority's decision: accept (with an amount), reject or ask for more (reason);
    then record the disbursement with its payment voucher number (``reference``)."""
    errors: list[FieldError] = []
    if action not in DECISIONS and action != "disburse":
        errors.append(
            FieldError("action", "action_unknown", "请选择处理方式。", "Choose an action.")
        )
    amount = None
    if action == "accept":
        amount = _yuan_to_fen(amount_yuan, "amount_yuan", errors)
        if amount is None and not any(e.field == "amount_yuan" for e in errors):
            errors.append(
                FieldError(
                    "amount_yuan", "required", "请填写核定金额。", "Enter the approved amount."
                )
            )
    if action in ("reject", "more") and not reason.strip():
        errors.append(FieldError("reason", "required", "请说明理由。", "State the reason."))
    else:
        reason = check_text(
            errors, "reason", reason, limit=2000, multiline=True, zh="理由", en="The reason"
        )
    reference = reference.strip()
    if action == "disburse" and not reference:
        errors.append(
            FieldError(
                "reference",
                "required",
                "请填写拨付凭证号。",
                "Enter the payment voucher number.",
            )
        )
    elif len(reference) > DISBURSEMENT_REF_MAX:
        errors.append(
            FieldError(
                "reference",
                "too_long",
                f"拨付凭证号不能超过 {DISBURSEMENT_REF_MAX} 个字符。",
                f"The payment voucher number is at most {DISBURSEMENT_REF_MAX} characters.",
            )
        )
    if errors:
        raise invalid(errors)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        review = await get_review(ctx, application_id)
        if action == "disburse":
            if review["status"] != "accepted":
                raise _wrong_state(review["status"])
            new_status = "disbursed"
        else:
            if review["status"] != "submitted":
                raise _wrong_state(review["status"])
            new_status = DECISIONS[action]
        note = reference if action == "disburse" else reason.strip()
        history = [*review["history"], _event(new_status, ctx.user_id, "authority", note)]
        changes: dict[str, Any] = {"status": new_status, "history": history, "updated_at": _now()}
        if amount is not None:
            changes["amount_fen"] = amount
        if action in ("reject", "more"):
            changes["reason"] = reason.strip()
        elif action == "accept":
            # An earlier "more material" note is history now, not the reviewer's word on it.
            changes["reason"] = ""
        if action == "disburse":
            changes["disbursed_at"] = _now()
            changes["disbursement_ref"] = reference
        await Review.update({getattr(Review, k): v for k, v in changes.items()}).where(
            Review.id == application_id
        )
        await record(
            f"policy.application_{new_status}",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(application_id),
            ip=ip,
            data={"amount_fen": amount} if amount is not None else {"reference": reference},
        )
        applicant = review["applicant_id"]
        if new_status == "accepted" and amount is not None:
            await _grant_service_voucher(ctx, review, amount, ip=ip)
        async with db.tenant_scope(applicant, ctx.user_id):
            await Application.update(
                {getattr(Application, k): v for k, v in changes.items()}
            ).where((Application.id == application_id) & (Application.tenant_id == applicant))
            zh, en = STATUSES[new_status]
            await notify(
                await _members(applicant),
                "policy_match",
                title_zh=f"申报进度:{review['policy_title']} — {zh}",
                title_en=f"Application update: {review['policy_title']} — {en}",
                body_zh=f"拨付凭证号:{reference}" if reference else reason.strip(),
                body_en=f"Payment voucher: {reference}" if reference else reason.strip(),
                link=f"/t/{await _slug(applicant)}/m/policy/applications/{application_id}",
                tenant_id=applicant,
            )
    return new_status


# A voucher granted by an approved application is usable for a year (decision 0026): long
# enough for a procurement round, short enough that the authority's budget year closes.
VOUCHER_VALID_DAYS = 365


async def _grant_service_voucher(
    ctx: TenantContext, review: Mapping[str, Any], amount_fen: int, *, ip: str = ""
) -> None:
    """An approved application to a voucher policy (创新券) grants the enterprise a voucher in
    the service supermarket, in the approval's transaction, idempotent on the application.

    Nothing is granted when the supermarket (module ``services``) is not installed or not on
    for the enterprise: the approval itself stands (decision 0026)."""
    from canal.platform.modules import get_module
    from canal.tenants.services import module_enabled

    version = (
        await PolicyVersion.select(PolicyVersion.support_type)
        .where(PolicyVersion.id == review["version_id"])
        .first()
    )
    if version is None or version["support_type"] != "voucher":
        return
    if amount_fen <= 0:
        raise invalid(
            [
                FieldError(
                    "amount_yuan",
                    "voucher_amount_zero",
                    "创新券的核定金额须大于零。",
                    "A voucher's approved amount must be above zero.",
                )
            ]
        )
    applicant = review["applicant_id"]
    if get_module("services") is None or not await module_enabled(applicant, "services"):
        return
    from canal.marketplace import catalogue, market

    await market.issue_voucher(
        ctx.user_id,
        holder_id=applicant,
        kind="innovation",
        amount=amount_fen,
        # The policy names no service categories: the voucher is good for all of them.
        categories=[c.key for c in catalogue.CATEGORIES],
        valid_through=today() + dt.timedelta(days=VOUCHER_VALID_DAYS),
        source="policy",
        source_ref=f"policy-application:{review['id']}",
        ip=ip,
    )


async def resubmit(
    ctx: TenantContext,
    application_id: uuid.UUID,
    *,
    note: str,
    materials: Sequence[uuid.UUID],
    ip: str = "",
) -> None:
    from canal.platform.storage.services import get_object_to_share

    errors: list[FieldError] = []
    note = check_text(
        errors, "note", note, limit=2000, multiline=True, zh="补充说明", en="The note"
    )
    if errors:
        raise invalid(errors)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await get_application(ctx, application_id)
        if row["status"] != "more_info":
            raise _wrong_state(row["status"])
        files = list(row["materials"])
        for file_id in materials:
            stored = await get_object_to_share(file_id, ctx)
            files.append({"id": str(stored.id), "name": stored.original_name, "size": stored.size})
        history = [*row["history"], _event("submitted", ctx.user_id, "applicant", note.strip())]
        form = {**row["form"], "note": note or row["form"].get("note", "")}
        changes = {
            "status": "submitted",
            "history": history,
            "materials": files,
            "form": form,
            "updated_at": _now(),
        }
        await Application.update({getattr(Application, k): v for k, v in changes.items()}).where(
            Application.id == application_id
        )
        await record(
            "policy.resubmitted",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(application_id),
            ip=ip,
        )
        authority = row["authority_id"]
        async with db.tenant_scope(authority, ctx.user_id):
            await Review.update({getattr(Review, k): v for k, v in changes.items()}).where(
                (Review.id == application_id) & (Review.tenant_id == authority)
            )
            await notify(
                await _members(authority),
                "policy_match",
                title_zh=f"申报已补充材料:{row['policy_title']}",
                title_en=f"Material added: {row['policy_title']}",
                link=f"/t/{await _slug(authority)}/m/policy/queue/{application_id}",
                tenant_id=authority,
            )


async def rate(
    ctx: TenantContext, application_id: uuid.UUID, stars: object, comment: str = ""
) -> None:
    """在线评: one rating of the service after a decision."""
    try:
        value = int(str(stars))
    except ValueError:
        value = 0
    errors: list[FieldError] = []
    if not 1 <= value <= 5:
        errors.append(
            FieldError("rating", "rating_range", "请选择 1 到 5 星。", "Choose 1 to 5 stars.")
        )
    comment = check_text(
        errors, "comment", comment, limit=500, multiline=True, zh="评价内容", en="The comment"
    )
    if errors:
        raise invalid(errors)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await get_application(ctx, application_id)
        if row["status"] not in ("accepted", "rejected", "disbursed"):
            raise _wrong_state(row["status"])
        if row["rating"] is not None:
            raise CanalError(
                "already_rated", "您已评价过本次服务。", "You have already rated this.", status=409
            )
        await Application.update(
            {Application.rating: value, Application.rating_comment: comment}
        ).where(Application.id == application_id)
        async with db.tenant_scope(row["authority_id"], ctx.user_id):
            await Review.update({Review.rating: value}).where(
                (Review.id == application_id) & (Review.tenant_id == row["authority_id"])
            )


# --------------------------------------------------------------------------------------------
# Statistics and oversight


# GB/T 4754-2017 sections: an industry code's first letter (``C3451`` → manufacturing).
INDUSTRY_SECTIONS = {
    "A": ("农、林、牧、渔业", "Agriculture, forestry, animal husbandry and fishery"),
    "B": ("采矿业", "Mining"),
    "C": ("制造业", "Manufacturing"),
    "D": ("电力、热力、燃气及水生产和供应业", "Electricity, heat, gas and water supply"),
    "E": ("建筑业", "Construction"),
    "F": ("批发和零售业", "Wholesale and retail trade"),
    "G": ("交通运输、仓储和邮政业", "Transport, storage and post"),
    "H": ("住宿和餐饮业", "Accommodation and catering"),
    "I": ("信息传输、软件和信息技术服务业", "Information transmission, software and IT services"),
    "J": ("金融业", "Finance"),
    "K": ("房地产业", "Real estate"),
    "L": ("租赁和商务服务业", "Leasing and business services"),
    "M": ("科学研究和技术服务业", "Scientific research and technical services"),
    "N": ("水利、环境和公共设施管理业", "Water, environment and public facilities"),
    "O": ("居民服务、修理和其他服务业", "Resident services, repair and other services"),
    "P": ("教育", "Education"),
    "Q": ("卫生和社会工作", "Health and social work"),
    "R": ("文化、体育和娱乐业", "Culture, sports and entertainment"),
    "S": ("公共管理、社会保障和社会组织", "Public administration and social organisations"),
    "T": ("国际组织", "International organisations"),
    "?": ("行业未填", "Industry not given"),
}


def industry_section(code: object) -> str:
    """The GB/T 4754 section letter of an industry code, ``?`` when there is none."""
    letter = str(code or "")[:1].upper()
    return letter if letter in INDUSTRY_SECTIONS else "?"


def _application_buckets(reviews: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Applications, decisions, approvals, approval rate and amounts, in total and by policy
    and by industry section."""

    def bucket() -> dict[str, Any]:
        return {"applications": 0, "decided": 0, "accepted": 0, "amount_fen": 0}

    total = bucket()
    by_policy: dict[str, dict[str, Any]] = {}
    by_industry: dict[str, dict[str, Any]] = {}
    for r in reviews:
        for b in (
            total,
            by_policy.setdefault(r["policy_title"], bucket()),
            by_industry.setdefault(industry_section(r["industry_code"]), bucket()),
        ):
            b["applications"] += 1
            if r["status"] in ("accepted", "rejected", "disbursed"):
                b["decided"] += 1
            if r["status"] in ("accepted", "disbursed"):
                b["accepted"] += 1
                b["amount_fen"] += r["amount_fen"] or 0
    for b in (total, *by_policy.values(), *by_industry.values()):
        b["approval_rate"] = round(b["accepted"] / b["decided"], 3) if b["decided"] else None
    return total | {"by_policy": by_policy, "by_industry": by_industry}


async def _eligible_now(policies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How many subscribed enterprises each published policy finds eligible today, in total
    per policy and per industry section, evaluated now from the portraits (counts only; an
    industry count below the reporting threshold is ``None``, as in the live count)."""
    from canal.park.policy.criteria import reportable
    from canal.park.policy.matcher import ELIGIBLE, PortraitTable, match_policy

    by_policy: dict[str, int] = {}
    by_industry: dict[str, int] = {}
    _, portraits = await _all_portraits()
    if portraits and policies:
        table = PortraitTable(portraits)
        sections = [industry_section(p.get("industry_code")) for p in portraits]
        day = today()
        for row in policies:
            codes = match_policy(table, policy_rule(row), day)
            eligible = [i for i, code in enumerate(codes) if code == ELIGIBLE]
            by_policy[row["title"]] = by_policy.get(row["title"], 0) + len(eligible)
            for i in eligible:
                by_industry[sections[i]] = by_industry.get(sections[i], 0) + 1
    return {
        "eligible_by_policy": by_policy,
        "eligible_by_industry": {k: reportable(n) for k, n in sorted(by_industry.items())},
    }


async def authority_stats(ctx: TenantContext) -> dict[str, Any]:
    """Applications, approvals and amounts by policy and by industry (GB/T 4754 section
    letter), plus how many enterprises each published policy currently matches."""
    reviews = await list_reviews(ctx)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        mine = await Policy.select(Policy.id).where(
            (Policy.tenant_id == ctx.tenant_id) & (Policy.status == "published")
        )
    ids = [p["id"] for p in mine]
    # Eligible counts are evaluated now from the portraits (like the operator's), not read
    # from stored matches: the same figures whatever the match store, never stale.
    async with db.transaction():
        published = (
            await CataloguePolicy.select().where(CataloguePolicy.id.is_in(ids)) if ids else []
        )
    eligible = await _eligible_now([_decode(p) for p in published])
    return {
        "scope": "authority",
        **_application_buckets(reviews),
        **eligible,
    }


async def platform_stats_allowed(ctx: TenantContext) -> bool:
    return await _platform_reader(ctx)


async def platform_stats(ctx: TenantContext) -> dict[str, Any] | None:
    """The operator's statistics over every authority (``None`` for anyone else): the same
    figures as an authority's, from queue metadata only, never an application's form."""
    if not await _platform_reader(ctx):
        return None
    async with db.platform_scope(ctx.user_id):
        reviews = await Review.raw(
            "SELECT r.policy_title, r.industry_code, r.status, r.amount_fen FROM policy_reviews r"
        )
        published = await CataloguePolicy.select()
    return {
        "scope": "platform",
        **_application_buckets(reviews),
        **await _eligible_now([_decode(p) for p in published]),
    }


def overdue(
    reviews: Iterable[Mapping[str, Any]], now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    now = now or _now()
    limit = dt.timedelta(days=REVIEW_DAYS)
    return [
        dict(r) for r in reviews if r["status"] == "submitted" and now - r["submitted_at"] > limit
    ]


async def remind_overdue(ctx: TenantContext, *, ip: str = "") -> int:
    """马上督: remind the authority's members of applications waiting past the limit."""
    rows = overdue(await list_reviews(ctx, "submitted"))
    if not rows:
        return 0
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await notify(
            await _members(ctx.tenant_id),
            "policy_match",
            title_zh=f"{len(rows)} 件政策申报已超过 {REVIEW_DAYS} 天未处理",
            title_en=f"{len(rows)} applications waiting over {REVIEW_DAYS} days",
            link=f"/t/{ctx.tenant.slug}/m/policy/queue",
            tenant_id=ctx.tenant_id,
        )
        await Review.update({Review.reminded_at: _now()}).where(
            Review.id.is_in([r["id"] for r in rows])
        )
        await record(
            "policy.overdue_reminded",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(ctx.tenant_id),
            ip=ip,
            data={"count": len(rows)},
        )
    return len(rows)


async def _all_portraits() -> tuple[list[uuid.UUID], list[dict[str, Any]]]:
    tenants = await _subscribed_enterprises()
    if not tenants:
        return [], []
    async with db.platform_scope():
        rows = await Fact.select().where(Fact.tenant_id.is_in(tenants))
    by_tenant: dict[uuid.UUID, list[dict[str, Any]]] = {t: [] for t in tenants}
    for r in rows:
        by_tenant[r["tenant_id"]].append(_decode(r))
    return tenants, [portrait_of(by_tenant[t]) for t in tenants]


async def count_matches(rule: Any, as_of: dt.date | None = None) -> tuple[int, int, int]:
    """The criteria builder's live count: (eligible, nearly, enterprises) on ``as_of``
    (today by default). Only numbers leave this function, never which enterprise matched;
    ``criteria.reportable`` hides the small ones."""
    from canal.park.policy.matcher import ELIGIBLE, PortraitTable, match_policy

    _, portraits = await _all_portraits()
    if not portraits:
        return 0, 0, 0
    codes = match_policy(PortraitTable(portraits), rule, as_of or today())
    return int((codes == ELIGIBLE).sum()), int((codes >= 0).sum()), len(portraits)


async def _platform_reader(ctx: TenantContext) -> bool:
    """The operator's staff with the platform read right may look across authorities."""
    from canal.platform.access.services import access

    return ctx.tenant.kind == "operator" and access().enforce(
        ctx.user_id, ctx.tenant_id, "platform.tenants", "read"
    )


async def oversight(ctx: TenantContext) -> list[dict[str, Any]] | None:
    """马上督 for the operator: every authority's applications waiting past the limit
    (``None`` for anyone else). Only queue metadata is read, never the application form."""
    if not await _platform_reader(ctx):
        return None
    async with db.platform_scope(ctx.user_id):
        rows = await Review.raw(
            "SELECT r.id, r.tenant_id, t.name AS authority_name, r.applicant_name, "
            "r.policy_title, r.status, r.submitted_at, r.reminded_at FROM policy_reviews r "
            "JOIN tenants t ON t.id = r.tenant_id WHERE r.status = 'submitted' "
            "ORDER BY r.submitted_at"
        )
    return overdue(rows)


async def remind_all_overdue(ctx: TenantContext, *, ip: str = "") -> int:
    """The operator reminds each authority that has overdue applications (one notice each)."""
    rows = await oversight(ctx)
    if rows is None:
        raise CanalError(
            "operator_only",
            "只有平台运营方可以督办。",
            "Only the operator can send these reminders.",
            status=403,
        )
    by_authority: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in rows:
        by_authority.setdefault(r["tenant_id"], []).append(r)
    for authority, items in by_authority.items():
        async with db.tenant_scope(authority, ctx.user_id):
            await notify(
                await _members(authority),
                "policy_match",
                title_zh=f"运营方督办:{len(items)} 件政策申报已超过 {REVIEW_DAYS} 天未处理",
                title_en=f"Operator reminder: {len(items)} applications waiting over "
                f"{REVIEW_DAYS} days",
                link=f"/t/{await _slug(authority)}/m/policy/queue",
                tenant_id=authority,
            )
            await Review.update({Review.reminded_at: _now()}).where(
                Review.id.is_in([r["id"] for r in items])
            )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await record(
            "policy.overdue_reminded",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target="all",
            ip=ip,
            data={"count": len(rows), "authorities": len(by_authority)},
        )
    return len(rows)
