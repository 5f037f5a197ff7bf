"""Saved catalogue searches and their alerts (issue #4: "saved searches alert on new policies").

A signed-in person saves the catalogue search they are looking at (keyword and filters) under a
name; lists, renames and deletes them. When a policy is published, or a new version of a
published policy, ``policy_saved_search_alerts`` runs (through the outbox, after the commit):
it indexes that version's catalogue document, asks Meilisearch — with each saved search's
keyword and filters, the catalogue's own, plus the policy's id — whether the search finds it,
and notifies each owner once per policy version (``SearchAlert.key``) through the
notifications service, which applies their channel choices for ``policy_search_alert``.
Saved searches belong to a person, not an organisation: every query filters on ``user_id``,
another person's search answers 404.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from canal.park.policy import services
from canal.park.policy.search_tables import SavedSearch, SearchAlert
from canal.park.policy.tables import CataloguePolicy
from canal.platform import clock, db
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.notifications.kinds import NotificationKind, register_kind
from canal.platform.notifications.services import notify

ALERT_KIND = register_kind(
    NotificationKind("policy_search_alert", "政策订阅提醒", "Saved policy search alerts")
)
MAX_PER_PERSON = 50
NAME_MAX = 60
QUERY_MAX = 200
CLOSING_DAYS = 30  # the catalogue's "closes within 30 days"


@dataclasses.dataclass(frozen=True)
class SearchParams:
    """A catalogue search: what ``/policies`` reads from its query string."""

    query: str = ""
    level: str = ""
    support_type: str = ""
    open_now: bool = False
    closing_soon: bool = False
    issuer: str = ""

    def catalogue_kwargs(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "level": self.level,
            "support_type": self.support_type,
            "issuer": self.issuer,
            "open_now": self.open_now,
            "closing_days": CLOSING_DAYS if self.closing_soon else None,
        }

    def query_string(self) -> dict[str, str]:
        """The ``/policies`` query string that shows this search."""
        out = {
            "q": self.query,
            "level": self.level,
            "support_type": self.support_type,
            "issuer": self.issuer,
        }
        if self.open_now:
            out["open"] = "1"
        if self.closing_soon:
            out["closing"] = "1"
        return {k: v for k, v in out.items() if v}


def params_of(row: Mapping[str, Any]) -> SearchParams:
    return SearchParams(
        row["query"],
        row["level"],
        row["support_type"],
        row["open_now"],
        row["closing_soon"],
        row["issuer"],
    )


def parse_params(data: Mapping[str, Any]) -> tuple[str, SearchParams]:
    """A name and search from a form or JSON; every problem at once, nothing saved."""
    errors: list[FieldError] = []
    name = str(data.get("name") or "").strip()
    if not name:
        errors.append(FieldError("name", "required", "请为此搜索取个名字。", "Name this search."))
    elif len(name) > NAME_MAX:
        errors.append(
            FieldError(
                "name",
                "too_long",
                f"名称不能超过 {NAME_MAX} 个字符。",
                f"At most {NAME_MAX} characters.",
            )
        )
    query = str(data.get("q") or data.get("query") or "").strip()
    if len(query) > QUERY_MAX:
        errors.append(
            FieldError(
                "q",
                "too_long",
                f"关键词不能超过 {QUERY_MAX} 个字符。",
                f"At most {QUERY_MAX} characters.",
            )
        )
    level = str(data.get("level") or "")
    if level and level not in services.LEVELS:
        errors.append(
            FieldError("level", "level_unknown", "未知的政策级别。", "Unknown policy level.")
        )
    support_type = str(data.get("support_type") or "")
    if support_type and support_type not in services.SUPPORT_TYPES:
        errors.append(
            FieldError(
                "support_type", "support_type_unknown", "未知的支持方式。", "Unknown support type."
            )
        )
    issuer = str(data.get("issuer") or "").strip()
    if len(issuer) > services.TEXT_LIMITS["issuer"]:
        errors.append(
            FieldError(
                "issuer",
                "too_long",
                f"发文机关不能超过 {services.TEXT_LIMITS['issuer']} 个字符。",
                f"The issuing body is at most {services.TEXT_LIMITS['issuer']} characters.",
            )
        )
    if errors:
        raise invalid(errors)
    return name, SearchParams(
        query,
        level,
        support_type,
        _flag(data.get("open") if "open" in data else data.get("open_now")),
        _flag(data.get("closing") if "closing" in data else data.get("closing_soon")),
        issuer,
    )


def _flag(value: object) -> bool:
    return value is True or value in ("1", "on", "true")


async def list_saved(user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.user_scope(user_id):
        return await (
            SavedSearch.select()
            .where(SavedSearch.user_id == user_id)
            .order_by(SavedSearch.created_at, ascending=False)
        )


async def get_saved(user_id: uuid.UUID, search_id: uuid.UUID) -> dict[str, Any]:
    """One of the person's own saved searches; anyone else's answers like a missing one."""
    async with db.user_scope(user_id):
        row = (
            await SavedSearch.select()
            .where((SavedSearch.id == search_id) & (SavedSearch.user_id == user_id))
            .first()
        )
    if row is None:
        raise not_found()
    return row


async def save_search(user_id: uuid.UUID, name: str, params: SearchParams) -> uuid.UUID:
    async with db.user_scope(user_id):
        count = await SavedSearch.count().where(SavedSearch.user_id == user_id)
        if count >= MAX_PER_PERSON:
            raise CanalError(
                "too_many_saved_searches",
                f"最多保存 {MAX_PER_PERSON} 个搜索,请先删除不再需要的。",
                f"At most {MAX_PER_PERSON} saved searches; delete one you no longer need.",
                status=409,
            )
        row = SavedSearch(
            user_id=user_id,
            name=name,
            query=params.query,
            level=params.level,
            support_type=params.support_type,
            issuer=params.issuer,
            open_now=params.open_now,
            closing_soon=params.closing_soon,
        )
        await row.save()
    return row.id


async def rename_search(user_id: uuid.UUID, search_id: uuid.UUID, name: str) -> None:
    async with db.user_scope(user_id):
        await get_saved(user_id, search_id)  # someone else's: 404 before any other answer
        new_name, _ = parse_params({"name": name})
        await SavedSearch.update({SavedSearch.name: new_name}).where(
            (SavedSearch.id == search_id) & (SavedSearch.user_id == user_id)
        )


async def delete_search(user_id: uuid.UUID, search_id: uuid.UUID) -> None:
    async with db.user_scope(user_id):
        await get_saved(user_id, search_id)
        await SavedSearch.delete().where(
            (SavedSearch.id == search_id) & (SavedSearch.user_id == user_id)
        )


# --------------------------------------------------------------------------------------------
# Alerts


async def finds(params: SearchParams, policy_id: uuid.UUID) -> bool:
    """Whether the catalogue search ``params`` finds the policy (the catalogue's own keyword
    and filter semantics, through Meilisearch, narrowed to that one policy's id)."""
    from canal.platform.search.services import get_service

    kwargs = params.catalogue_kwargs()
    filters = services.catalogue_filters(
        level=kwargs["level"],
        support_type=kwargs["support_type"],
        issuer=kwargs["issuer"],
        open_now=kwargs["open_now"],
        closing_days=kwargs["closing_days"],
    )
    filters["id"] = str(policy_id)
    result = await get_service().search(
        services.SEARCH_KIND, params.query, caller=None, filters=filters, per_page=1
    )
    return result.total > 0


async def alert_saved_searches(policy_id: uuid.UUID, version_number: int) -> int:
    """Notify the owners of saved searches that find this published policy version, once per
    person and version. Answers how many people were notified."""
    from canal.platform.search.services import get_service

    async with db.transaction():
        row = await CataloguePolicy.select().where(CataloguePolicy.id == policy_id).first()
    if row is None or row["version_number"] != version_number:
        return 0  # withdrawn, or a newer version is published (its own job alerts)
    # Index this version first: the search job enqueued with it may not have run yet.
    document = services.search_document(row["id"], row["authority_id"], row["authority_name"], row)
    await get_service().upsert(services.SEARCH_KIND, [document], wait=True)
    async with db.transaction():
        searches = await SavedSearch.select().order_by(SavedSearch.created_at)
    first_match: dict[uuid.UUID, dict[str, Any]] = {}
    for search in searches:
        if search["user_id"] in first_match:
            continue
        if await finds(params_of(search), policy_id):
            first_match[search["user_id"]] = search
    sent = 0
    for user_id, search in first_match.items():
        async with db.transaction():
            inserted = await SearchAlert.raw(
                "INSERT INTO policy_search_alerts "
                "(id, key, user_id, policy_id, version_number, search_id, created_at) "
                "VALUES ({}, {}, {}, {}, {}, {}, {}) ON CONFLICT (key) DO NOTHING RETURNING id",
                uuid.uuid4(),
                f"{user_id}:{policy_id}:{version_number}",
                user_id,
                policy_id,
                version_number,
                search["id"],
                clock.now(),
            )
            if not inserted:
                continue
            new = version_number == 1
            await notify(
                [user_id],
                ALERT_KIND.key,
                title_zh=f"{'新政策' if new else '政策更新'}:{row['title']}",
                title_en=f"{'New policy' if new else 'Policy updated'}: {row['title']}",
                body_zh=f"符合您保存的搜索「{search['name']}」。{row['authority_name']}发布,"
                f"申报截止 {row['window_closes']:%Y-%m-%d}。",
                body_en=f"Matches your saved search “{search['name']}”. Published by "
                f"{row['authority_name']}; applications close {row['window_closes']:%Y-%m-%d}.",
                link=f"/policies/{policy_id}",
            )
            sent += 1
    return sent


async def policy_saved_search_alerts(
    ctx: dict[str, Any], policy_id: str, version_number: int
) -> int:
    """Job: a policy version was published; alert the saved searches that find it."""
    return await alert_saved_searches(uuid.UUID(policy_id), int(version_number))


JOBS = (policy_saved_search_alerts,)
