"""The app starts on the real stack and answers its operational endpoints."""

from tests.factories import make_tenant, make_user, sign_in


async def test_health_and_ready(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_home_lists_my_organisations(client):
    owner = await make_user("王小明")
    tenant = await make_tenant(owner, name="聊城测试轴承有限公司")
    await sign_in(client, owner)
    page = await client.get("/")
    assert page.status_code == 200
    assert "聊城测试轴承有限公司" in page.text
    assert f"/t/{tenant.slug}" in page.text


async def test_module_catalogue_twin_lists_all_seven(client):
    catalogue = (await client.get("/api/v1/modules")).json()
    keys = {m["key"] for m in catalogue}
    assert keys == {
        "smartpark",
        "policy",
        "sscard",
        "community",
        "services",
        "modelstore",
        "exchange",
    }
    policy = next(m for m in catalogue if m["key"] == "policy")
    assert policy["name_zh"] == "惠企政策" and policy["name_en"] == "Policy matching"
    schema = (await client.get("/api/schema/openapi.json")).json()
    assert "/api/v1/modules" in schema["paths"]
    assert "/api/v1/t/{tenant_slug}/members" in schema["paths"]
