"""Resumable uploads under attack: open uploads reserve their size against the quota (no
staging without limit), and one upload completed twice at once makes one version."""

from __future__ import annotations

import asyncio

from tests.exchange.bank.helpers import make_resident
from tests.factories import sign_in

API = "/api/v1"


async def test_staged_parts_count_against_the_quota(owner_client, org):
    """Open uploads reserve their size: many of them cannot stage more than the quota."""
    from canal.platform.storage.services import set_tenant_quota

    await set_tenant_quota(org.ctx.tenant_id, 5000, actor_id=None)
    first = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "a.csv", "size": 4000}
    )
    assert first.status_code == 201
    second = await owner_client.post(
        f"{API}{org.base}/uploads", json={"name": "b.csv", "size": 4000}
    )
    assert second.status_code == 413 and second.json()["code"] == "storage_quota_exceeded"


async def test_personal_staged_parts_count_against_the_quota(client, monkeypatch):
    from canal.exchange.bank import services

    monkeypatch.setattr(services, "PERSONAL_QUOTA", 5000)
    await sign_in(client, await make_resident())
    first = await client.post(f"{API}/me/bank/uploads", json={"name": "a.csv", "size": 4000})
    assert first.status_code == 201, first.text
    second = await client.post(f"{API}/me/bank/uploads", json={"name": "b.csv", "size": 4000})
    assert second.status_code == 413


async def test_completing_twice_at_once_makes_one_version(owner_client, org):
    data = b"a,b\n1,2\n"
    upload = (
        await owner_client.post(
            f"{API}{org.base}/uploads", json={"name": "twice.csv", "size": len(data)}
        )
    ).json()
    url = f"{API}{org.base}/uploads/{upload['id']}"
    assert (await owner_client.put(f"{url}/parts/0", content=data)).status_code == 204
    answers = await asyncio.gather(
        owner_client.post(f"{url}/complete"), owner_client.post(f"{url}/complete")
    )
    assert sorted(a.status_code for a in answers) == [201, 404]
    files = (await owner_client.get(f"{API}{org.base}")).json()["listing"]["files"]
    assert [(f["name"], f["versions"]) for f in files] == [("twice.csv", 1)]


async def test_a_storage_hiccup_at_completion_keeps_the_upload_for_another_try(
    owner_client, org, monkeypatch
):
    from canal.exchange.bank import services

    data = b"a,b\n3,4\n"
    upload = (
        await owner_client.post(
            f"{API}{org.base}/uploads", json={"name": "retry.csv", "size": len(data)}
        )
    ).json()
    url = f"{API}{org.base}/uploads/{upload['id']}"
    assert (await owner_client.put(f"{url}/parts/0", content=data)).status_code == 204
    real_upload = services.upload

    async def hiccup(*args, **kwargs):
        raise ConnectionError("S3 went away")

    monkeypatch.setattr(services, "upload", hiccup)
    space = services.tenant_space(org.ctx)
    import uuid

    import pytest

    with pytest.raises(ConnectionError):
        await services.complete_upload(space, uuid.UUID(upload["id"]))
    monkeypatch.setattr(services, "upload", real_upload)
    status = (await owner_client.get(url)).json()
    assert status["received"] == [0]  # record and parts are still there
    done = await owner_client.post(f"{url}/complete")
    assert done.status_code == 201, done.text
    assert done.json()["size"] == len(data)
