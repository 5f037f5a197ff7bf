"""Demo data: 数智软件 (shuzhi-soft) is an approved provider with two datasets generated with a
fixed seed — enterprise electricity use by month and industry (published), and employment
with social-insurance contributions (sensitive, waiting in the operator's review queue); the
bearing maker (lc-bearing) holds a compute + API grant on the first and has run a query."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

INDUSTRIES = [
    "轴承制造",
    "钢管加工",
    "软件信息",
    "食品加工",
    "纺织服装",
    "化工材料",
    "机械装备",
    "物流仓储",
]
STREETS = ["古楼街道", "柳园街道", "新区街道", "湖西街道", "道口铺街道", "闫寺街道"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def electricity_csv(companies: int = 600, seed: int = 2025) -> bytes:
    rng = random.Random(seed)  # noqa: S311 — reproducible demo data, not secrets
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["企业编号", "行业", "街道", "月份", "用电量千瓦时", "电费元", "联系人", "联系电话"]
    )
    for c in range(companies):
        industry = INDUSTRIES[rng.randrange(len(INDUSTRIES))]
        street = STREETS[rng.randrange(len(STREETS))]
        base = rng.lognormvariate(10, 0.8)
        contact = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        phone = f"1{rng.choice('35789')}{rng.randint(100_000_000, 999_999_999)}"
        for month in range(1, 13):
            season = 1.25 if month in (1, 2, 7, 8) else 1.0
            kwh = round(base * season * rng.uniform(0.85, 1.15), 1)
            writer.writerow(
                [
                    f"LC{c:05d}",
                    industry,
                    street,
                    f"2025-{month:02d}",
                    kwh,
                    f"{kwh * 0.6848:.2f}",
                    contact,
                    phone,
                ]
            )
    return out.getvalue().encode()


def employment_csv(people: int = 1500, seed: int = 7) -> bytes:
    from canal.exchange.pii import ID_CHECK, ID_WEIGHTS

    rng = random.Random(seed)  # noqa: S311 — reproducible demo data, not secrets
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["姓名", "身份证号", "行业", "街道", "月工资元", "社保缴费基数元"])
    for _ in range(people):
        birth = f"{rng.randint(1965, 2003)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        body = f"371502{birth}{rng.randint(0, 999):03d}"
        ident = body + ID_CHECK[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]
        wage = round(rng.lognormvariate(8.6, 0.35))
        writer.writerow(
            [
                rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                ident,
                INDUSTRIES[rng.randrange(len(INDUSTRIES))],
                STREETS[rng.randrange(len(STREETS))],
                wage,
                max(3996, min(wage, 19980)),
            ]
        )
    return out.getvalue().encode()


async def seed(world: Any) -> None:
    from canal.exchange import services
    from canal.platform.runtime import close_services, open_services
    from canal.platform.storage import services as storage
    from canal.tenants.services import module_enabled, set_module

    if await services.provider_of(world.ctx("shuzhi-soft").tenant_id) is not None:
        return  # seeded before (canal demo runs the seed on every start)
    opened = False
    try:
        storage.object_store()
    except RuntimeError:
        await open_services(world.runtime)
        opened = True
    try:
        provider, operator, buyer = (
            world.ctx("shuzhi-soft"),
            world.ctx("szdc"),
            world.ctx("lc-bearing"),
        )
        for ctx in (operator, buyer):
            if not await module_enabled(ctx.tenant_id, "exchange"):
                await set_module(ctx, "exchange", enabled=True)
        await services.approve_provider_directly(provider.tenant_id, operator.user_id)
        electricity = await services.create_dataset(
            provider,
            services.DatasetInput(
                title="东昌府区企业月度用电量(2025)",
                description="全区 600 家企业 2025 年逐月用电量与电费,按行业、街道分类;"
                "可用于产业景气、"
                "能耗双控与招商分析。联系人与电话已脱敏。",
                category="energy",
                tags="用电,能耗,产业景气",
                update_frequency="monthly",
                source_statement="数智软件为企业提供的能源管理平台采集的电表读数,经企业书面授权用于统计分析。",
                sensitivity="internal",
                licence_purpose="产业分析、政策研究与规划;不得用于营销或识别具体企业联系人。",
                licence_days="365",
                price_model="per_query",
                price_yuan="2.00",
                delivery_modes=["download", "compute", "api"],
            ),
        )
        stored = await storage.object_store().upload_bytes(
            provider, "dataset", electricity_csv(), filename="企业月度用电量2025.csv"
        )
        await services.add_version(provider, electricity["id"], stored.id)
        # One enterprise is twelve rows (a year of months): the noise covers all of them.
        await services.confirm_privacy(
            provider, electricity["id"], services.PrivacyInput(max_rows_per_person=12)
        )
        # Profiling finds the contacts' names and phones: without this statement the dataset
        # would be listed as personal data.
        await services.justify_sensitivity(
            provider,
            electricity["id"],
            "联系人姓名与电话为企业对外公开的业务联系方式,交付时已脱敏;"
            "数据描述的是企业用电,不是个人。",
        )
        await services.submit_for_review(provider, electricity["id"])
        await services.review_dataset(
            operator,
            electricity["id"],
            approve=True,
            reason="来源有企业书面授权,联系人已脱敏,提供方对定级的说明成立。",
        )

        employment = await services.create_dataset(
            provider,
            services.DatasetInput(
                title="园区企业用工与社保缴费",
                description="嘉明产业园入驻企业职工的行业、街道、月工资与社保缴费基数,用于人才与薪酬研究。",
                category="enterprise",
                tags="用工,社保,薪酬",
                update_frequency="quarterly",
                source_statement="园区企业经职工同意后报送的用工台账,由数智软件汇总整理。",
                sensitivity="sensitive",
                licence_purpose="薪酬水平与人才政策研究,仅限聚合统计。",
                licence_days="180",
                delivery_modes=["compute"],
                min_cohort="20",
            ),
        )
        stored = await storage.object_store().upload_bytes(
            provider, "dataset", employment_csv(), filename="用工社保.csv"
        )
        await services.add_version(provider, employment["id"], stored.id)
        await services.confirm_privacy(provider, employment["id"], services.PrivacyInput())
        await services.submit_for_review(provider, employment["id"])

        grant = await services.request_access(
            buyer,
            electricity["id"],
            "分析本行业与上下游企业的季节性用电规律,用于排产规划。",
            ["compute", "api"],
        )
        await services.decide_request(provider, grant["id"], approve=True, days=180)
        await services.run_compute(
            buyer,
            grant["id"],
            "SELECT 行业, 月份, count(*) AS 企业数, avg(用电量千瓦时) AS 平均用电 FROM data "
            "GROUP BY 行业, 月份 ORDER BY 行业, 月份",
        )
    finally:
        if opened:
            close_services()
