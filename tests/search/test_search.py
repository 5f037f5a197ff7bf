"""Search against a real Meilisearch: the tenant boundary, Chinese queries, facets, filters."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid

import httpx
import pytest

from canal.platform import clock
from canal.platform.http.context import TenantContext, TenantRef
from canal.platform.http.errors import CanalError
from canal.platform.search.services import SearchService, quote


def context(tenant_id: uuid.UUID) -> TenantContext:
    ref = TenantRef(
        id=tenant_id, slug=f"org-{tenant_id.hex[:8]}", name="x", kind="enterprise", status="active"
    )
    return TenantContext(tenant=ref, user_id=uuid.uuid4())


A = context(uuid.uuid4())
B = context(uuid.uuid4())
TAG = f"set{uuid.uuid4().hex[:8]}"


def listing(
    key: str,
    owner: TenantContext,
    visibility: str,
    title: str,
    category: str,
    region: str,
    price: int,
) -> dict:
    return {
        "id": f"{TAG}-{key}",
        "tenant_id": str(owner.tenant_id),
        "visibility": visibility,
        "title": title,
        "summary": "",
        "tags": [TAG],
        "category": category,
        "region": region,
        "price": price,
    }


DATASET = [
    listing("a1", A, "public", "苏州工业园区人才政策", "policy", "苏州", 0),
    listing("a2", A, "tenant", "内部补贴测算表 secret budget", "policy", "苏州", 0),
    listing("a3", A, "public", "科技园办公室出租", "office", "苏州", 3000),
    listing("a4", A, "public", "Industrial park policy handbook", "policy", "无锡", 100),
    listing("b1", B, "public", "高新技术企业认定补贴申报", "service", "无锡", 500),
    listing("b2", B, "tenant", "B公司内部政策草案 confidential", "policy", "无锡", 0),
    listing("b3", B, "tenant", "园区食堂承包合同", "service", "无锡", 8000),
    listing("b4", B, "public", "财政补贴资金管理办法", "policy", "常州", 0),
    listing("b5", B, "public", "会议室租赁 meeting room", "office", "常州", 800),
]


@pytest.fixture(scope="module")
async def listings(search_service: SearchService) -> SearchService:
    await search_service.upsert("listings", DATASET, wait=True)
    return search_service


async def ids(
    service: SearchService, query: str, caller: TenantContext | None, **filters
) -> set[str]:
    result = await service.search(
        "listings", query, caller=caller, filters={"tags": TAG, **filters}, per_page=100
    )
    return {hit["id"].removeprefix(f"{TAG}-") for hit in result.hits}


async def test_tenant_sees_public_and_only_its_own_private_documents(listings):
    assert await ids(listings, "", None) == {"a1", "a3", "a4", "b1", "b4", "b5"}
    assert await ids(listings, "", A) == {"a1", "a2", "a3", "a4", "b1", "b4", "b5"}
    assert await ids(listings, "", B) == {"a1", "a3", "a4", "b1", "b2", "b3", "b4", "b5"}
    assert await ids(listings, "confidential", A) == set()
    assert await ids(listings, "confidential", B) == {"b2"}
    assert await ids(listings, "secret", B) == set()


async def test_chinese_one_and_two_character_queries(listings):
    assert await ids(listings, "政策", None) == {"a1"}
    assert await ids(listings, "政策", B) == {"a1", "b2"}
    assert await ids(listings, "补贴", None) == {"b1", "b4"}
    assert await ids(listings, "补贴", A) == {"a2", "b1", "b4"}
    assert await ids(listings, "园", None) == {"a1", "a3"}
    assert await ids(listings, "园", B) == {"a1", "a3", "b3"}
    # One character inside a longer word (工业园区, 园区食堂).
    assert await ids(listings, "区", B) == {"a1", "b3"}
    assert await ids(listings, "园区", B) >= {"a1", "b3"}
    assert await ids(listings, "资金", None) == {"b4"}


async def test_latin_typo_tolerance(listings):
    assert await ids(listings, "polcy", None) == {"a4"}
    assert await ids(listings, "handbok", None) == {"a4"}
    assert await ids(listings, "industral", None) == {"a4"}
    assert await ids(listings, "confidental", B) == {"b2"}


async def test_facets_and_range_filters(listings):
    result = await listings.search(
        "listings", "", caller=None, filters={"tags": TAG}, facets=["category", "region", "price"]
    )
    assert result.total == 6
    assert result.facets["category"] == {"policy": 3, "office": 2, "service": 1}
    assert result.facets["region"] == {"苏州": 2, "无锡": 2, "常州": 2}
    assert result.facet_stats["price"] == {"min": 0, "max": 3000}
    # The tenant's own private documents count in its facets, another's never do.
    mine = await listings.search(
        "listings", "", caller=B, filters={"tags": TAG}, facets=["category"]
    )
    assert mine.facets["category"] == {"policy": 4, "office": 2, "service": 2}
    filtered = {
        "category": ["policy", "service"],
        "price": {"gte": 100, "lte": 1000},
        "region": "无锡",
    }
    assert await ids(listings, "", None, **filtered) == {"a4", "b1"}
    assert await ids(listings, "", B, **filtered) == {"a4", "b1"}
    assert await ids(listings, "", B, price={"gt": 5000}) == {"b3"}
    assert await ids(listings, "", A, price={"gt": 5000}) == set()
    page = await listings.search(
        "listings", "", caller=None, filters={"tags": TAG}, sort=["price:desc"], per_page=2, page=2
    )
    assert page.pages == 3 and [h["price"] for h in page.hits] == [500, 100]


@pytest.mark.parametrize(
    ("filters", "code"),
    [
        ({"tenant_id": str(B.tenant_id)}, "filter_not_allowed"),
        ({"visibility": "tenant"}, "filter_not_allowed"),
        ({"title": "x"}, "filter_not_allowed"),
        ({"category = policy OR visibility": "tenant"}, "filter_not_allowed"),
        ({"category": True}, "bad_filter_value"),
        ({"category": {"gte": 1}}, "bad_filter_value"),
        ({"category": "a\nOR visibility = tenant"}, "bad_filter_value"),
        ({"category": []}, "bad_filter_value"),
        ({"price": {"gte": "1 OR visibility = tenant"}}, "bad_filter_range"),
        ({"price": {"ne": 1}}, "bad_filter_range"),
        ({"price": {"gte": float("nan")}}, "bad_filter_value"),
    ],
)
async def test_filters_outside_the_allowed_list_are_refused(listings, filters, code):
    with pytest.raises(CanalError) as caught:
        await listings.search("listings", "", caller=A, filters=filters)
    assert caught.value.status == 422
    assert caught.value.errors[0].code == code
    assert caught.value.errors[0].zh and caught.value.errors[0].en


async def test_injection_through_values_stays_a_literal(listings):
    for value in [
        'policy" OR visibility = "tenant',
        'policy\\" OR visibility = \\"tenant',
        "policy') OR (visibility = tenant",
        '" OR tenant_id EXISTS OR category = "',
    ]:
        assert await ids(listings, "", A, category=value) == set()
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    for bad in (
        {"facets": ["tenant_id"]},
        {"sort": ["tenant_id:asc"]},
        {"sort": ["price:asc, tenant_id:desc"]},
    ):
        with pytest.raises(CanalError):
            await listings.search("listings", "", caller=A, **bad)


# --- tenant tokens, straight against Meilisearch's HTTP API -----------------------------


# No keep-alive: Meilisearch answers 403 before reading a request body, which leaves a reused
# connection waiting.
_HTTP = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


async def _call(method: str, url: str, key: str, body: object = None) -> httpx.Response:
    return await _HTTP.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"})


async def _direct(search: SearchService, token: str, index: str, body: dict) -> httpx.Response:
    return await _call("POST", f"{search.url}/indexes/{index}/search", token, body)


def _direct_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {h["id"].removeprefix(f"{TAG}-") for h in response.json()["hits"]}


async def test_tenant_token_keeps_the_visibility_rule(listings):
    token = await listings.tenant_token("listings", A, dt.timedelta(minutes=5))
    assert token.index == listings.uid("listings")
    tag = f"tags = {quote(TAG)}"
    own = await _direct(listings, token.token, token.index, {"q": "", "filter": tag, "limit": 100})
    assert _direct_ids(own) == {"a1", "a2", "a3", "a4", "b1", "b4", "b5"}
    # The holder's own filter is ANDed with the token's rule: it cannot widen it.
    for attempt in (
        f'{tag} AND tenant_id = "{B.tenant_id}"',
        f'{tag} AND visibility = "tenant"',
        f'{tag} OR tenant_id = "{B.tenant_id}"',
        f'({tag}) OR visibility = "tenant" OR tenant_id EXISTS',
    ):
        seen = _direct_ids(
            await _direct(
                listings, token.token, token.index, {"q": "", "filter": attempt, "limit": 100}
            )
        )
        assert not seen & {"b2", "b3"}, attempt
    other = await _direct(
        listings,
        token.token,
        token.index,
        {"q": "", "filter": f'{tag} AND tenant_id = "{B.tenant_id}"', "limit": 100},
    )
    assert _direct_ids(other) == {"b1", "b4", "b5"}
    # Facet counts through the token never count another tenant's private documents.
    facets = await _direct(
        listings,
        token.token,
        token.index,
        {"q": "", "filter": tag, "facets": ["category"], "limit": 0},
    )
    assert facets.json()["facetDistribution"]["category"] == {
        "policy": 4,
        "office": 2,
        "service": 1,
    }
    # The token opens only the index it names.
    assert (
        await _direct(listings, token.token, listings.uid("organisations"), {"q": ""})
    ).status_code == 403
    # It cannot read documents outside search, nor write.
    documents = await _call("GET", f"{listings.url}/indexes/{token.index}/documents", token.token)
    assert documents.status_code == 403
    anonymous = await listings.tenant_token("listings", None)
    assert _direct_ids(
        await _direct(
            listings, anonymous.token, anonymous.index, {"q": "", "filter": tag, "limit": 100}
        )
    ) == {"a1", "a3", "a4", "b1", "b4", "b5"}


def _jwt(payload: dict, secret: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


async def test_expired_or_forged_tenant_token_is_refused(listings):
    key_uid, key = await listings.search_key()
    index = listings.uid("listings")
    rules = {index: {"filter": 'visibility = "public"'}}
    fresh = _jwt(
        {"apiKeyUid": key_uid, "searchRules": rules, "exp": int(clock.wall_timestamp()) + 60}, key
    )
    assert (await _direct(listings, fresh, index, {"q": ""})).status_code == 200
    expired = _jwt(
        {"apiKeyUid": key_uid, "searchRules": rules, "exp": int(clock.wall_timestamp()) - 5}, key
    )
    answer = await _direct(listings, expired, index, {"q": ""})
    assert answer.status_code == 403, answer.text
    forged = _jwt({"apiKeyUid": key_uid, "searchRules": {"*": {}}}, "not-the-key-" + key)
    assert (await _direct(listings, forged, index, {"q": ""})).status_code == 403
    # A short-lived token made by the service really expires.
    short = await listings.tenant_token("listings", A, dt.timedelta(seconds=1))
    assert short.expires_at <= clock.now() + dt.timedelta(minutes=1, seconds=1)


async def test_search_only_key_cannot_write_or_read_keys(listings):
    _, key = await listings.search_key()
    index = listings.uid("listings")

    async def call(method: str, path: str, body: object = None) -> int:
        return (await _call(method, f"{listings.url}{path}", key, body)).status_code

    assert await call("POST", f"/indexes/{index}/search", {"q": ""}) == 200
    refused = [
        await call("GET", "/keys"),
        await call("POST", "/keys", {"actions": ["*"], "indexes": ["*"], "expiresAt": None}),
        await call(
            "POST",
            f"/indexes/{index}/documents",
            [{"id": "x", "tenant_id": str(A.tenant_id), "visibility": "public"}],
        ),
        await call("DELETE", f"/indexes/{index}/documents"),
        await call("PATCH", f"/indexes/{index}/settings", {"filterableAttributes": []}),
        await call("DELETE", f"/indexes/{index}"),
        await call("GET", f"/indexes/{index}/documents"),
        await call("POST", "/indexes", {"uid": f"{index}_evil"}),
    ]
    assert refused == [403] * len(refused)
    # The master key is never what a token is signed with.
    token = await listings.tenant_token("listings", A)
    _, body, _ = token.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["apiKeyUid"] == (await listings.search_key())[0]
    assert claims["searchRules"] == {
        token.index: {"filter": f'(visibility = "public" OR tenant_id = "{A.tenant_id}")'}
    }
    assert claims["exp"] > clock.wall_timestamp()
