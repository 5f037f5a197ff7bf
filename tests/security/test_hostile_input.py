"""Hostile input on every JSON operation of the OpenAPI document answers 4xx, never 5xx.

Walks ``/api/schema``: for each operation with a JSON body or query parameters it sends, as
the owner of an organisation with real objects in every path (the cross-tenant matrix's
world), or as operator staff for the operator console:

* the plausible body itself (``PLAUSIBLE``: enough to get past the first checks);
* a body nested 1,000 deep, as the whole body and as a field's value;
* each text field (one at a time, the others plausible) with a NUL byte, 10,000 characters,
  and JSON text nested 1,000 deep (fields such as a policy's criteria are parsed as JSON);
* each query parameter likewise (2,000 characters: a URL has its own limits);
* the body as ``text/plain`` (a JSON route accepts only ``application/json``: 415);
* malformed JSON.

Every answer must be below 500; every refusal a bilingual problem+json; a NUL byte or a deep
body is always refused; and no refusal may come from the database's own limits (the safety
net in ``canal.platform.http.input``) instead of the field's validation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from tests.factories import credit_code, make_operator_staff, make_tenant, sign_in, unique
from tests.security.test_cross_tenant_matrix import World, _build_world, _fill

LONG = "长" * 10_000
LONG_QUERY = "长" * 2_000  # percent-encoded, 18 kB of URL
NUL = "a\x00b"
DEEP = "[" * 1000 + "]" * 1000

# Values that get an operation past its first checks, by "Schema.field" or field name; the
# rest by type. "@name" is the matrix sample of that name.
PLAUSIBLE: dict[str, Any] = {
    "login": "fuzz@example.cn",
    "password": "correct-horse-battery",
    "current_password": "correct-horse-battery",
    "new_password": "another-horse-battery",
    "display_name": "模糊测试",
    "description": "园区各企业每月的用电量统计。",
    "locale": "zh_CN",
    "recipient": "fuzz-invitee@example.cn",
    "kind": "enterprise",
    "OrgIn.slug": "@new_slug",
    "credit_code": "@credit_code",
    "id_number": "@id_number",
    "plan": "free",
    "enabled": True,
    "DirectIn.purpose": "document",
    "RequestIn.purpose": "用于园区能耗分析的统计研究,不做其他用途。",
    "modes": ["compute"],
    "name": "模糊测试.csv",
    "size": 10,
    "schedule": "daily",
    "keep": 3,
    "parent_id": None,
    "folder_id": None,
    "file_id": None,
    "target_id": None,
    "voucher_id": None,
    "statement": "本单位承诺数据来源合法合规,已取得全部授权。",
    "DatasetIn.category": "energy",
    "update_frequency": "monthly",
    "sensitivity": "internal",
    "source_statement": "本单位园区能耗监测系统自动采集。",
    "licence_purpose": "用于能耗分析与节能研究。",
    "delivery_modes": ["compute"],
    "licence_days": 365,
    "DatasetIn.price_model": "free",
    "price_yuan": "0",
    "min_cohort": 5,
    "tags": ["能耗"],
    "VersionIn.file_id": "@file_id",
    "sql": "SELECT 1",
    "price": "100",
    "price_model": "fixed",
    "area": "online",
    "category": "tax",
    "subcategory": "",
    "delivery_days": 3,
    "qualification_file_ids": ["@file_id"],
    "counter_price": "90",
    "valid_until": "2030-01-01",
    "valid_through": "2030-01-01",
    "holder": "@tenant_slug",
    "VoucherIn.kind": "service",
    "percent": "",
    "amount": "100",
    "categories": ["tax"],
    "decision": "approve",
    "outcome": "none",
    "rate": "10",
    "auto_confirm_days": "7",
    "TransitionIn.action": "cancel",
    "DecideIn.action": "more",
    "window_opens": "2025-01-01",
    "window_closes": "2030-12-31",
    "published_on": "2025-01-01",
    "effective_on": "2025-01-01",
    "expires_on": "2031-12-31",
    "as_of": "2026-01-01",
    "date_from": "2025-01-01",
    "date_to": "2030-01-01",
    "level": "district",
    "support_type": "subsidy",
    "criteria": {"fact": "region_code", "op": "prefix_in", "prefixes": ["3715"]},
    "facts": {"employees": 10},
    "contact": "13806351000",
    "role": "member",
    "code": "123456",
    "rating": 5,
    "stars": 5,
    "limit": 10,
    "page_no": 1,
    "module_key": "policy",
}


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _resolve(options[0], doc) if options else {"type": "null"}
    return schema


def _plausible(
    name: str,
    schema: dict[str, Any],
    doc: dict[str, Any],
    samples: dict[str, str],
    owner: str = "",
):
    schema = _resolve(schema, doc)
    for key in (f"{owner}.{name}", name):
        if key in PLAUSIBLE:
            return _sampled(PLAUSIBLE[key], samples)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "uuid":
            return samples.get(name, samples["file_id"])
        if schema.get("format") == "date":
            return "2026-01-01"
        return "模糊测试"
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        properties = schema.get("properties", {})
        title = schema.get("title", "")
        return {k: _plausible(k, v, doc, samples, title) for k, v in properties.items()}
    return None


def _sampled(value: Any, samples: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return samples[value[1:]]
    if isinstance(value, list):
        return [_sampled(v, samples) for v in value]
    return value


def _text_fields(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    schema = _resolve(schema, doc)
    found = []
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(prop, doc)
        if prop.get("type") == "string" and "enum" not in prop and prop.get("format") != "uuid":
            found.append(name)
    return found


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            has_query = any(p["in"] == "query" for p in op.get("parameters", []))
            if op.get("requestBody") or has_query:
                found.append((method.upper(), path, op))
    return found


def _is_problem(response) -> bool:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return False
    body = response.json()
    return bool(body.get("code") and body.get("detail_zh") and body.get("detail_en"))


@pytest.fixture(scope="module")
async def world(app) -> World:
    """The matrix's world, with more switched on so the requests reach deeper: A has every
    module it may have, Alice is real-name verified (her own data bank), and she also owns a
    government department (the policy authority's routes)."""
    from canal.platform.http.context import TenantContext, TenantRef
    from canal.platform.identity import realname
    from canal.platform.settings import get_settings
    from canal.tenants.services import set_module
    from tests.identity.helpers import id_number

    world = await _build_world(app)
    a = world.tenant_a
    ctx_a = TenantContext(TenantRef(a.id, a.slug, a.name, a.kind, "active"), world.alice.user_id)
    for key in ("policy", "services", "exchange"):
        await set_module(ctx_a, key, enabled=True)
    await realname.grant_consent(world.alice.user_id)
    await realname.verify(get_settings(), world.alice.user_id, "王芳", id_number())
    gov = await make_tenant(world.alice, kind="government", name="模糊测试区科学技术局")
    ctx_gov = TenantContext(
        TenantRef(gov.id, gov.slug, gov.name, gov.kind, "active"), world.alice.user_id
    )
    await set_module(ctx_gov, "policy", enabled=True)
    world.samples["authority_slug"] = gov.slug
    world.samples["new_slug"] = unique("fuzz-")
    world.samples["credit_code"] = credit_code()
    world.samples["id_number"] = id_number()
    return world


async def _client(app, person) -> AsyncClient:
    client = AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver.local",
        follow_redirects=False,
    )
    await sign_in(client, person)
    return client


def _attempts(
    method: str, path: str, op: dict[str, Any], doc: dict[str, Any], samples: dict[str, str]
):
    """(label, query, content type, raw body) for each hostile request of one operation."""
    query_params = [p for p in op.get("parameters", []) if p["in"] == "query"]
    query = {
        p["name"]: _plausible(p["name"], p.get("schema", {}), doc, samples)
        for p in query_params
        if p.get("required")
    }
    body_schema = None
    if op.get("requestBody"):
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
    base = _plausible("", body_schema, doc, samples) if body_schema else None
    base_raw = json.dumps(base, ensure_ascii=False) if body_schema else None
    for p in query_params:
        if _resolve(p.get("schema", {}), doc).get("type") in {"string", None}:
            for label, value in (("nul", NUL), ("long", LONG_QUERY), ("json", DEEP)):
                yield f"query {p['name']} {label}", {**query, p["name"]: value}, None, base_raw
    if body_schema is None:
        return
    yield "baseline", query, "application/json", base_raw
    yield "deep body", query, "application/json", DEEP
    yield "malformed", query, "application/json", '{"a": '
    yield "text/plain", query, "text/plain", base_raw
    fields = _text_fields(body_schema, doc)
    if isinstance(base, dict):
        props = list(_resolve(body_schema, doc).get("properties", {}))
        if props:
            yield f"deep {props[0]}", query, "application/json", _deep_field(base, props[0])
        for name in fields:
            for label, value in (("nul", NUL), ("long", LONG), ("json", DEEP)):
                raw = json.dumps({**base, name: value}, ensure_ascii=False)
                yield f"{name} {label}", query, "application/json", raw


def _deep_field(base: dict[str, Any], name: str) -> str:
    """Python's json cannot hold 1,000 levels either: splice the deep array in as text."""
    placeholder = "__DEEP__"
    return json.dumps({**base, name: placeholder}, ensure_ascii=False).replace(
        f'"{placeholder}"', DEEP
    )


async def test_no_hostile_input_gets_a_server_error(app, world):
    async with await _client(app, world.alice) as alice:
        doc = (await alice.get("/api/schema/openapi.json")).json()
    staff = (await make_operator_staff())["admin"]
    samples = dict(world.samples)
    problems: list[str] = []
    runs = [(method, path, op, samples) for method, path, op in _operations(doc)]
    # The authority's side of policy matching, in the government department Alice owns.
    authority = {**samples, "tenant_slug": samples["authority_slug"]}
    runs += [(m, p, op, authority) for m, p, op in _operations(doc) if "/m/policy/" in p]
    assert len(runs) >= 90, "the OpenAPI document lost its JSON operations"
    for method, path, op, samples in runs:
        person = staff if path.startswith("/api/v1/operator") else world.alice
        url = _fill(path, samples)
        for label, query, content_type, raw in _attempts(method, path, op, doc, samples):
            headers = {"content-type": content_type} if content_type else {}
            # A fresh session each time: a hostile request that signs in or out (or a plausible
            # one that succeeds) must not change what the next one is tested as.
            async with await _client(app, person) as client:
                response = await client.request(
                    method,
                    url,
                    params=query,
                    content=raw.encode() if raw is not None else None,
                    headers=headers,
                )
            status = response.status_code
            where = f"{method} {path} [{label}] -> {status}"
            if status >= 500:
                problems.append(where)
            elif status >= 400 and not _is_problem(response):
                problems.append(f"{where}: not a bilingual problem+json")
            elif label == "text/plain" and status not in {415, 401, 403, 404}:
                problems.append(f"{where}: expected 415")
            elif re.search(r"nul|deep", label) and status < 400:
                problems.append(f"{where}: accepted")
            elif status == 422 and response.json().get("code") == "invalid_value":
                # Refused only by the database (http/input.py's safety net): the field needs
                # its own limit, with a message that names it.
                problems.append(f"{where}: refused by the database, not by validation")
    assert problems == [], "\n".join(problems)
