"""Tenant A's policy objects for the cross-tenant matrix.

A's owner gets a published policy of A's own (``policy_id``: the authority pages, the matches
and the apply page), a portrait with a match, and an application to that policy — so A is both
the applicant and the authority of ``application_id`` and every GET page answers 200 for A.
``public_policy_id`` is A's *draft*: the public catalogue must not show it to anyone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from canal.platform import clock, db


async def add_samples(world: Any, ctx_a: Any) -> None:
    from canal.park.policy import services
    from canal.park.policy.tables import Application, CataloguePolicy, Policy, PolicyVersion, Review

    marker = world.markers[0]
    today = clock.today()
    version = {
        "title": f"{marker}的政策",
        "issuer": "测试发文机关",
        "level": "district",
        "support_type": "subsidy",
        "window_opens": today - dt.timedelta(days=1),
        "window_closes": today + dt.timedelta(days=30),
        "materials": [],
        "criteria": {"fact": "region_code", "op": "prefix_in", "prefixes": ["3715"]},
    }
    published, draft = uuid.uuid4(), uuid.uuid4()
    version_id = uuid.uuid4()
    async with db.tenant_scope(ctx_a.tenant_id, ctx_a.user_id):
        # Written directly: A is an enterprise, which the service would refuse as an authority.
        await Policy.insert(
            Policy(id=published, tenant_id=ctx_a.tenant_id, status="published"),
            Policy(id=draft, tenant_id=ctx_a.tenant_id),
        )
        await PolicyVersion.insert(
            PolicyVersion(
                id=version_id, tenant_id=ctx_a.tenant_id, policy_id=published, number=1, **version
            ),
            PolicyVersion(tenant_id=ctx_a.tenant_id, policy_id=draft, number=1, **version),
        )
    async with db.transaction():
        await CataloguePolicy.insert(
            CataloguePolicy(
                id=published,
                authority_id=ctx_a.tenant_id,
                authority_name="A",
                version_id=version_id,
                version_number=1,
                **version,
            )
        )
    await services.set_facts(ctx_a, {"region_code": "371502", "employees": 12})
    await services.rematch_enterprise(ctx_a.tenant_id)
    app_id = uuid.uuid4()
    common = {
        "policy_id": published,
        "version_id": version_id,
        "version_number": 1,
        "policy_title": version["title"],
        "form": {"contact": marker, "portrait": {}},
        # A's own file as the material: the queue's material link answers for A only.
        "materials": [{"id": world.samples["file_id"], "name": f"{marker}.txt", "size": 1}],
    }
    async with db.tenant_scope(ctx_a.tenant_id, ctx_a.user_id):
        await Application.insert(
            Application(
                id=app_id, tenant_id=ctx_a.tenant_id, authority_id=ctx_a.tenant_id, **common
            )
        )
        await Review.insert(
            Review(
                id=app_id,
                tenant_id=ctx_a.tenant_id,
                applicant_id=ctx_a.tenant_id,
                applicant_name=marker,
                **common,
            )
        )
    # A's owner's saved catalogue search (a person's own: anyone else gets 404).
    from canal.park.policy import saved_searches

    saved = await saved_searches.save_search(
        world.alice.user_id, f"{marker}的搜索", saved_searches.SearchParams(query=marker)
    )
    world.samples["saved_search_id"] = str(saved)
    world.samples["policy_id"] = str(published)
    world.samples["public_policy_id"] = str(draft)
    world.samples["application_id"] = str(app_id)
    # A is an enterprise: the live count of a draft rule is an authority's tool only (for an
    # enterprise it would be an oracle over other enterprises' facts), so A gets 403 there.
    world.samples["refused_by_kind"] = (
        "/t/{tenant_slug:str}/m/policy/criteria/count",
        "/api/v1/t/{tenant_slug:str}/m/policy/criteria/count",
    )
