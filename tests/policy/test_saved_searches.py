"""Saved catalogue searches: saving from the catalogue page, listing, renaming, deleting (page
and API), isolation between people, and the alert job — a matching policy alerts its owner
once per version, a non-matching one does not."""

from __future__ import annotations

import uuid

from canal.park.policy import saved_searches, services
from canal.platform import db
from canal.platform.jobs.tables import JobOutbox
from canal.platform.notifications.tables import Notification
from tests.factories import csrf_from, make_user, sign_in, unique
from tests.policy.helpers import CRITERIA, org, policy_json

API = "/api/v1/policies/saved"


async def _alerts(user_id: uuid.UUID) -> list[dict]:
    async with db.transaction():
        return await Notification.select().where(
            (Notification.user_id == user_id) & (Notification.kind == "policy_search_alert")
        )


async def test_save_list_rename_delete_from_the_pages_and_the_api(client):
    person = await make_user(unique("订阅者"))
    await sign_in(client, person)
    word = unique("dy")
    page = await client.get("/policies", params={"q": word, "level": "city", "open": "1"})
    assert page.status_code == 200 and 'action="/policies/saved"' in page.text
    csrf = csrf_from(page.text)
    # An empty name is refused, in both languages, nothing saved; the search is kept.
    form = {"_csrf": csrf, "q": word, "level": "city", "open": "1", "name": " "}
    r = await client.post("/policies/saved", data=form)
    assert r.status_code == 422 and 'id="f-name-error"' in r.text and word in r.text
    assert await saved_searches.list_saved(person.user_id) == []
    r = await client.post("/policies/saved", data=form | {"name": f"市级 {word}"})
    assert r.status_code == 303 and r.headers["location"] == "/policies/saved"
    listing = await client.get("/policies/saved")
    assert f"市级 {word}" in listing.text
    [item] = (await client.get(API)).json()
    assert (item["q"], item["level"], item["open"], item["closing"]) == (word, "city", True, False)
    assert item["url"] == f"/policies?q={word}&level=city&open=1"
    opened = await client.get(f"/policies/saved/{item['id']}")
    assert opened.status_code == 303 and opened.headers["location"] == item["url"]
    # Rename (page, then API); a too-long name is refused next to the row.
    r = await client.post(f"/policies/saved/{item['id']}", data={"_csrf": csrf, "name": "x" * 61})
    assert r.status_code == 422 and f'id="f-rename-{item["id"]}-error"' in r.text
    r = await client.post(f"/policies/saved/{item['id']}", data={"_csrf": csrf, "name": "改名"})
    assert r.status_code == 303
    r = await client.post(f"{API}/{item['id']}", json={"name": "再改名"})
    assert r.status_code == 200 and r.json()["name"] == "再改名"
    # API: bad level refused; a good one saved.
    r = await client.post(API, json={"name": "n", "level": "galactic"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "level"
    r = await client.post(API, json={"name": "补贴", "support_type": "subsidy", "closing": True})
    assert r.status_code == 201
    second = r.json()["id"]
    assert {s["name"] for s in (await client.get(API)).json()} == {"再改名", "补贴"}

    # Another person: every one of them is 404, and nothing changes.
    other = await make_user(unique("旁人"))
    await sign_in(client, other)
    csrf2 = csrf_from((await client.get("/policies/saved")).text)
    assert (await client.get(API)).json() == []
    for method, url, kwargs in (
        ("get", f"{API}/{second}", {}),
        ("get", f"/policies/saved/{second}", {}),
        ("post", f"{API}/{second}", {"json": {"name": "偷改"}}),
        ("post", f"{API}/{second}/delete", {}),
        ("post", f"/policies/saved/{second}", {"data": {"_csrf": csrf2, "name": "偷改"}}),
        ("post", f"/policies/saved/{second}/delete", {"data": {"_csrf": csrf2}}),
    ):
        r = await getattr(client, method)(url, **kwargs)
        assert r.status_code == 404, (method, url, r.status_code)
    assert {s["name"] for s in await saved_searches.list_saved(person.user_id)} == {
        "再改名",
        "补贴",
    }

    # The owner deletes them (page, then API).
    await sign_in(client, person)
    csrf = csrf_from((await client.get("/policies/saved")).text)
    r = await client.post(f"/policies/saved/{item['id']}/delete", data={"_csrf": csrf})
    assert r.status_code == 303
    assert (await client.post(f"{API}/{second}/delete")).json() == {"ok": True}
    assert (await client.get(API)).json() == []
    # Anonymous: no saving.
    client.cookies.clear()
    assert (await client.post(API, json={"name": "x"})).status_code in (401, 403)


async def test_publishing_alerts_matching_saved_searches_once_per_version(client):
    word = unique("zcdy")
    fan = await make_user(unique("关注者"))  # keyword + city level: finds the city policy
    bystander = await make_user(unique("路人"))  # talent policies only: finds neither
    await saved_searches.save_search(
        fan.user_id, "市级轴承", saved_searches.SearchParams(query=word, level="city")
    )
    await saved_searches.save_search(  # a second matching search: still one alert
        fan.user_id, "全部轴承", saved_searches.SearchParams(query=word)
    )
    await saved_searches.save_search(
        bystander.user_id, "人才", saved_searches.SearchParams(query=word, support_type="talent")
    )
    _owner, _gov, gctx = await org("government")
    city = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title=f"轴承升级 {word}", level="city")),
        publish=True,
    )
    # Publishing enqueued the alert job for this version, through the outbox.
    async with db.transaction():
        queued = await JobOutbox.select().where(
            JobOutbox.dedup_key == f"policy-search-alerts:{city}:1"
        )
    assert [q["function"] for q in queued] == ["policy_saved_search_alerts"]

    # The job, run here as the worker would.
    assert await saved_searches.policy_saved_search_alerts({}, str(city), 1) == 1
    [alert] = await _alerts(fan.user_id)
    assert alert["link"] == f"/policies/{city}" and word in alert["title_zh"]
    assert "市级轴承" in alert["body_zh"]
    assert await _alerts(bystander.user_id) == []
    # Run again (arq may): no second alert.
    assert await saved_searches.policy_saved_search_alerts({}, str(city), 1) == 0
    assert len(await _alerts(fan.user_id)) == 1

    # A district policy with the same word: only "全部轴承" finds it — one alert for it.
    district = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title=f"轴承区级 {word}", level="district")),
        publish=True,
    )
    assert await saved_searches.policy_saved_search_alerts({}, str(district), 1) == 1
    # A policy without the word: nobody.
    other = await services.create_policy(
        gctx,
        services.parse_policy(policy_json(CRITERIA, title=unique("无关政策"), level="city")),
        publish=True,
    )
    assert await saved_searches.policy_saved_search_alerts({}, str(other), 1) == 0
    assert len(await _alerts(fan.user_id)) == 2 and await _alerts(bystander.user_id) == []

    # A new version of the city policy alerts again (once); the old version's job is stale.
    await services.update_policy(
        gctx,
        city,
        services.parse_policy(policy_json(CRITERIA, title=f"轴承升级(修订){word}", level="city")),
    )
    assert await saved_searches.policy_saved_search_alerts({}, str(city), 1) == 0
    assert await saved_searches.policy_saved_search_alerts({}, str(city), 2) == 1
    titles = [a["title_zh"] for a in await _alerts(fan.user_id)]
    assert len(titles) == 3 and any(t.startswith("政策更新") for t in titles)
