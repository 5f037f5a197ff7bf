"""Data trading in a real browser (phone-sized Chromium): a provider lists a dataset and
uploads a CSV, sees the profile with the personal data found; the operator approves; a buyer
finds it in the catalogue, sees the masked sample and requests compute access; the provider
approves; the buyer's aggregate query is answered and a raw-row query refused.
Screenshots in ``test-artifacts/e2e/exchange-*.png``."""

from __future__ import annotations

import pytest

from canal.exchange import services
from canal.platform.http.context import TenantContext, TenantRef
from tests.e2e import test_browser_journey as journey
from tests.e2e.test_browser_journey import ARTIFACTS, chromium, page  # noqa: F401
from tests.exchange.helpers import approved_provider, electricity_csv, make_org
from tests.factories import make_operator_staff

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def _shot(tab, name: str) -> None:
    await tab.screenshot(path=str(ARTIFACTS / f"exchange-{name}.png"), full_page=True)


async def _sign_in(tab, server_url: str, person) -> None:
    await tab.context.clear_cookies()
    await tab.goto(f"{server_url}/login")
    await tab.fill("#f-login", person.login)
    await tab.fill("#f-password", person.password)
    await tab.click("form[action='/login'] button[type=submit]")
    await tab.wait_for_load_state("networkidle")
    assert "/login" not in tab.url, await tab.inner_text("main")


async def _operator_ctx() -> TenantContext:
    from canal.tenants.tables import Tenant

    staff = await make_operator_staff()
    row = await Tenant.select().where(Tenant.id == staff["operator_id"]).first()
    assert row is not None
    return TenantContext(
        TenantRef(row["id"], row["slug"], row["name"], "operator", "active"),
        staff["admin"].user_id,
        ("owner",),
    )


@pytest.fixture(scope="module")
async def people(app):
    """Made before the server process starts, so it loads their roles with the policy."""
    return await approved_provider("数智软件"), await make_org("明德财税")


@pytest.fixture(scope="module")
async def staff(app):
    """Operator staff made (and the module turned on for the operator) before the server
    starts, for the same reason."""
    from tests.exchange.helpers import operator_org

    made = await make_operator_staff()
    return made["admin"], await operator_org(made["admin"])


@pytest.fixture(scope="module")
def server(people, staff, runtime, settings):
    yield from journey.server.__wrapped__(runtime, settings)  # type: ignore[attr-defined]


async def test_list_review_find_request_and_compute(page, server, people):  # noqa: F811
    provider, buyer = people

    # 1. The provider lists a dataset and uploads its first version.
    await _sign_in(page, server, provider.owner)
    response = await page.goto(f"{server}{provider.web}/datasets/new")
    assert response is not None and response.status == 200, await page.inner_text("main")
    await page.fill("#f-title", "东昌府区企业月度用电量")
    await page.fill("#f-description", "2025 年各企业按月的用电量与电费,按行业分类。")
    await page.select_option("#f-category", "energy")
    await page.select_option("#f-update_frequency", "monthly")
    await page.fill("#f-source_statement", "本公司能源管理平台采集的企业电表数据,经企业授权。")
    await page.select_option("#f-sensitivity", "internal")
    await page.fill("#f-licence_purpose", "产业分析与政策研究")
    await _shot(page, "01-new-dataset")
    await page.click("form[action$='/datasets'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "/datasets/" in page.url, await page.inner_text("main")
    await page.set_input_files(
        "#f-file", files=[{"name": "用电.csv", "mimeType": "text/csv", "buffer": electricity_csv()}]
    )
    await page.click("form[action$='/versions'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    main = await page.inner_text("main")
    assert "手机号" in main and "身份证号" in main and "240" in main
    await _shot(page, "02-profile")
    # Compute-to-data waits for the provider to confirm the proposed privacy settings.
    assert await page.locator("#f-bound-lo-用电量").input_value() != ""
    await page.fill("#f-max_rows_per_person", "12")
    await page.click("form[action$='/privacy'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "已确认" in await page.inner_text("#privacy-status")
    # Profiling found names and phones: 个人信息 until the provider justifies 内部 in writing.
    assert "个人信息" in await page.inner_text("#sensitivity-grade")
    await page.fill("#f-justification", "联系人与电话是企业公开的业务联系方式,交付前已脱敏。")
    await page.click("form[action$='/sensitivity'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "内部" in await page.inner_text("#sensitivity-grade")
    await page.click("form[action$='/submit'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    dataset_id = page.url.rstrip("/").rsplit("/", 1)[1]

    # 2. The operator approves (its staff sign in with TOTP; done here through the service).
    await services.review_dataset(
        await _operator_ctx(), dataset_id, approve=True, reason="已核对。"
    )

    # 3. The buyer finds it, sees the masked sample and asks for compute access.
    await _sign_in(page, server, buyer.owner)
    await page.goto(f"{server}{buyer.web}/catalogue?q=用电")
    await page.click(f"a[href$='/catalogue/{dataset_id}']")
    await page.wait_for_load_state("networkidle")
    assert "****" in await page.inner_text("main")
    await _shot(page, "03-listing")
    await page.fill("#f-purpose", "研究本区制造业用电的季节性变化。")
    await page.check("input[name=modes][value=compute]")
    await page.click("form[action$='/request'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    grant_path = page.url.split(server, 1)[1]
    grant_id = grant_path.rsplit("/", 1)[1]
    assert "已申请" in await page.inner_text("main")

    # 4. The provider approves.
    await _sign_in(page, server, provider.owner)
    await page.goto(f"{server}{provider.web}/grants/{grant_id}")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_load_state("networkidle")
    assert "生效中" in await page.inner_text("main")

    # 5. The buyer queries: an aggregate is answered, raw rows are refused with the reason.
    await _sign_in(page, server, buyer.owner)
    await page.goto(f"{server}{buyer.web}/grants/{grant_id}")
    await page.click("#advanced-sql summary")  # the SQL textarea is the advanced view
    await page.fill("#f-sql", "SELECT * FROM data")
    await page.click("form[action$='/queries'] button[type=submit]")
    await page.wait_for_selector("#f-sql-error")
    assert "SELECT *" in await page.inner_text("#f-sql-error")
    await _shot(page, "04-refused")
    await page.fill(
        "#f-sql",
        "SELECT 行业, count(*) AS 企业月数, avg(用电量) AS 平均用电 FROM data GROUP BY 行业",
    )
    await page.click("form[action$='/queries'] button[type=submit]")
    await page.wait_for_selector("#query-result")
    table = await page.inner_text("#query-result")
    assert "机械制造" in table and "平均用电" in table and "误差约" in table
    await _shot(page, "05-answer")

    # 6. The catalogue's filters in the browser, then the usage audit with its chart and the
    # listing, on a phone and on a desktop screen.
    await page.goto(f"{server}{buyer.web}/catalogue")
    await page.fill("#f-q", "用电")
    await page.select_option("#f-category", "energy")
    await page.select_option("#f-sensitivity", "internal")
    await page.fill("#f-provider", "数智")
    await page.fill("#f-price_max", "abc")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "不小于 0" in await page.inner_text("#f-price_max-error")
    await _shot(page, "11-catalogue-bad-price")
    await page.fill("#f-price_max", "100")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "category=energy" in page.url and "price_max=100" in page.url
    assert await page.locator(f"a[href$='/catalogue/{dataset_id}']").count() == 1
    await _shot(page, "12-catalogue-filtered")
    await page.select_option("#f-category", "transport")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert await page.locator(f"a[href$='/catalogue/{dataset_id}']").count() == 0
    for width, name in ((390, "08-usage-phone"), (1280, "09-usage-desktop")):
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto(f"{server}{buyer.web}/usage")
        assert await page.locator("#usage-chart").count() == 1
        main = await page.inner_text("main")
        assert "查询" in main and "查看样本" in main
        await _shot(page, name)
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(f"{server}{buyer.web}/catalogue/{dataset_id}")
    await _shot(page, "10-listing-desktop")
    await page.set_viewport_size({"width": 390, "height": 844})


async def test_resident_browses_and_a_subscription_grant_shows_its_state(
    page,  # noqa: F811
    server,
    people,
):
    """A resident without an organisation browses the catalogue read-only and is told buying
    needs an organisation; a buyer's subscription grant (no-charge mode) shows its state and
    the button to stop renewing is absent (nothing recurs without Stripe)."""
    from canal.platform.storage.services import object_store
    from tests.factories import make_user

    provider, buyer = people
    operator = await _operator_ctx()
    dataset = await services.create_dataset(
        provider.ctx,
        services.DatasetInput(
            title="聊城市企业月度用电订阅",
            description="按月更新的企业用电数据,订阅后每月自动续订。",
            category="energy",
            update_frequency="monthly",
            source_statement="本公司能源管理平台采集的企业电表数据,经企业授权。",
            sensitivity="internal",
            licence_purpose="产业分析",
            delivery_modes=["api"],
            price_model="subscription",
            price_yuan="99",
        ),
    )
    stored = await object_store().upload_bytes(
        provider.ctx, "dataset", electricity_csv(), filename="电量.csv"
    )
    await services.add_version(provider.ctx, dataset["id"], stored.id)
    await services.submit_for_review(provider.ctx, dataset["id"])
    await services.review_dataset(operator, dataset["id"], approve=True, reason="已核对。")

    resident = await make_user("居民李四")
    await _sign_in(page, server, resident)
    await page.goto(f"{server}/exchange/catalogue?q=订阅")
    await page.click(f"a[href='/exchange/catalogue/{dataset['id']}']")
    await page.wait_for_load_state("networkidle")
    main = await page.inner_text("main")
    assert "购买数据需要以单位身份进行" in main and "****" in main
    assert await page.locator("form[action$='/request']").count() == 0
    await _shot(page, "06-resident-listing")

    grant = await services.request_access(
        buyer.ctx, dataset["id"], "按月跟踪本区企业用电变化。", ["api"]
    )
    # Approved in the browser: the server (no Stripe key) records the payment at once.
    await _sign_in(page, server, provider.owner)
    await page.goto(f"{server}{provider.web}/grants/{grant['id']}")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_load_state("networkidle")
    await _sign_in(page, server, buyer.owner)
    await page.goto(f"{server}{buyer.web}/grants/{grant['id']}")
    state = await page.inner_text("#subscription-state")
    assert "免收费模式" in state
    assert await page.locator("form[action$='/subscription/cancel']").count() == 0
    await _shot(page, "07-subscription-grant")


async def test_masking_review_download_rows_and_revocation_in_the_browser(
    page,  # noqa: F811
    server,
    people,
    staff,
):
    """The rest of the journey by hand: the provider tightens a masking rule, the operator
    rejects without a reason (told why) then approves on its own review page, the buyer is
    granted download and API modes, downloads the masked file (a presigned link) and pages
    masked rows; the provider sees that use on its usage page and revokes — the buyer's page
    then offers neither mode and the rows page is refused."""
    from canal.platform.storage.services import object_store
    from tests.e2e.test_services_desk import _as_operator

    provider, buyer = people
    dataset = await services.create_dataset(
        provider.ctx,
        services.DatasetInput(
            title="东昌府区企业用电明细(接口)",
            description="各企业按月的用电明细,供授权单位分页读取。",
            category="energy",
            update_frequency="monthly",
            source_statement="本公司能源管理平台采集的企业电表数据,经企业授权。",
            sensitivity="internal",
            licence_purpose="产业分析",
            delivery_modes=["download", "api"],
        ),
    )
    stored = await object_store().upload_bytes(
        provider.ctx, "dataset", electricity_csv(), filename="明细.csv"
    )
    await services.add_version(provider.ctx, dataset["id"], stored.id)
    dataset_path = f"/datasets/{dataset['id']}"

    # 1. The provider drops the contact column on the page, then submits.
    await _sign_in(page, server, provider.owner)
    await page.goto(f"{server}{provider.web}{dataset_path}")
    await page.select_option("#f-rule-联系人", "drop")
    await page.click("form[action$='/masking'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("#f-rule-联系人").input_value() == "drop"
    await page.click("form[action$='/submit'] button[type=submit]")
    await page.wait_for_load_state("networkidle")

    # 2. The operator's review page: rejecting needs a reason; approving publishes.
    operator, op = staff
    await page.context.clear_cookies()
    await _as_operator(page.context, server, operator)
    op_web = op.web
    await page.goto(f"{server}{op_web}/review")
    assert await page.locator(f"a[href$='{dataset_path}']").count() == 1, await page.inner_text(
        "main"
    )
    await page.click(f"a[href$='{dataset_path}']")
    await page.wait_for_load_state("networkidle")
    main = await page.inner_text("main")
    assert "手机号" in main and "身份证号" in main
    # Personal data found and not justified: the warning, and the masked sample buyers get.
    assert await page.locator("#personal-data-warning").count() == 1
    sample = await page.inner_text("#review-sample")
    assert "****" in sample and "联系人" not in sample
    await page.click("button[name=decision][value=reject]")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("#f-reason-error").count() == 1
    await _shot(page, "13-review-needs-reason")
    # Approving needs a reason too.
    await page.fill("#f-reason", "来源已核对,联系人已删除,其余个人信息已脱敏。")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_load_state("networkidle")

    # 3. The buyer requests download + API; the provider approves.
    await _sign_in(page, server, buyer.owner)
    await page.goto(f"{server}{buyer.web}/catalogue/{dataset['id']}")
    listing = await page.inner_text("main")
    assert "****" in listing and "联系人" not in listing
    await page.fill("#f-purpose", "分析本区企业用电结构,支持招商决策。")
    await page.check("input[name=modes][value=download]")
    await page.check("input[name=modes][value=api]")
    await page.click("form[action$='/request'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    grant_id = page.url.rstrip("/").rsplit("/", 1)[1]
    await _sign_in(page, server, provider.owner)
    await page.goto(f"{server}{provider.web}/grants/{grant_id}")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_load_state("networkidle")

    # 4. The buyer downloads (the page offers a presigned link) and pages masked rows.
    await _sign_in(page, server, buyer.owner)
    await page.goto(f"{server}{buyer.web}/grants/{grant_id}")
    await _shot(page, "14-grant-download-api")
    await page.click("form[action$='/download'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    link = await page.get_attribute("#download-link", "href")
    assert link is not None and "X-Amz-Signature" in link, await page.inner_text("main")
    await _shot(page, "14b-download-ready")
    delivered = await page.request.get(link)
    assert delivered.ok
    text = (await delivered.body()).decode("utf-8-sig")
    assert "****" in text and "联系人" not in text
    await page.goto(f"{server}{buyer.web}/grants/{grant_id}")
    await page.click(f"a[href$='/grants/{grant_id}/rows']")
    await page.wait_for_load_state("networkidle")
    rows = await page.inner_text("main")
    assert "****" in rows and "联系人" not in rows and "240" in rows
    await _shot(page, "15-rows-phone")

    # 5. The provider sees the download and the page on its usage page, and revokes.
    await _sign_in(page, server, provider.owner)
    await page.goto(f"{server}{provider.web}/usage")
    usage = await page.inner_text("main")
    assert "下载" in usage and "第 1 页" in usage
    await page.goto(f"{server}{provider.web}/grants/{grant_id}")
    await page.fill("#f-reason", "对方超出约定用途使用数据。")
    await page.click("form[action$='/revoke'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "已撤销" in await page.inner_text("main")

    # 6. The buyer: no mode offered any more, and the rows page is refused.
    await _sign_in(page, server, buyer.owner)
    await page.goto(f"{server}{buyer.web}/grants/{grant_id}")
    assert "超出约定用途" in await page.inner_text("main")
    assert await page.locator("form[action$='/download']").count() == 0
    assert await page.locator(f"a[href$='/grants/{grant_id}/rows']").count() == 0
    refused = await page.goto(f"{server}{buyer.web}/grants/{grant_id}/rows")
    assert refused is not None and refused.status == 403
    await _shot(page, "16-revoked-rows-refused")
