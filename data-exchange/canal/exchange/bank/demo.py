"""Demo data for the data bank: a few folders and files for an enterprise and for the
resident (who is real-name verified here, as the personal bank requires)."""

from __future__ import annotations

from typing import Any

from canal.platform.storage.services import iterate_bytes

from . import services

RESIDENT = "13806351006"
# A fictional ID number (valid check character) for the demo resident 孙秀英.
RESIDENT_ID_17 = "37150219680504002"


async def _file(space: services.Space, folder: Any, name: str, text: str) -> services.File:
    data = text.encode()
    return await services.upload(
        space,
        folder.id if folder else None,
        iterate_bytes(data),
        filename=name,
        declared_size=len(data),
    )


async def seed_bank(world: Any) -> None:
    from canal.platform.identity import realname
    from canal.platform.identity.validators import id_number_check_char
    from canal.platform.runtime import open_services
    from canal.platform.storage import services as storage

    if storage._store is None:  # seeding runs before the app's lifespan connects storage
        await open_services(world.runtime)

    ctx = world.ctx("lc-bearing")
    org = services.tenant_space(ctx)
    finance = await services.create_folder(org, None, "财务报表")
    quality = await services.create_folder(org, None, "质量检测")
    monthly = await services.create_folder(org, finance.id, "2026年月报")
    await _file(
        org, monthly, "10月销售.csv", "月份,产品,数量,金额(元)\n10,轴承保持架,12000,356000\n"
    )
    await _file(
        org, monthly, "10月销售.csv", "月份,产品,数量,金额(元)\n10,轴承保持架,12400,368200\n"
    )
    await _file(org, quality, "检测规程.txt", "保持架尺寸检测规程(第三版)\n")
    await _file(org, None, "说明.txt", "本组织的数据银行:按文件夹存放,重要资料已设定时备份。\n")
    await services.set_backup(org, finance.id, schedule="daily", keep=7)
    await services.run_backup(ctx, finance.id, trigger="manual")

    user_id = world.users[RESIDENT]
    await realname.grant_consent(user_id)
    await realname.verify(
        world.runtime.settings,
        user_id,
        "孙秀英",
        RESIDENT_ID_17 + id_number_check_char(RESIDENT_ID_17),
    )
    me = await services.personal_space(user_id)
    health = await services.create_folder(me, None, "家庭健康")
    await _file(me, health, "体检记录.txt", "2026年体检:血压、血糖正常。\n")
    await _file(me, None, "社保卡办理清单.txt", "身份证复印件、一寸照片、申请表。\n")
