"""TEMPORARY walk-through screenshots (not committed)."""
from __future__ import annotations
import pytest
from tests.e2e import test_browser_journey as journey
from tests.e2e.test_databank_journey import browser, _sign_in  # noqa: F401
from tests.exchange.bank.conftest import make_org, make_resident
from tests.factories import make_user

pytestmark = pytest.mark.browser
server = journey.server
chromium = journey.chromium
OUT = "/tmp/bankwalk"

async def shots(browser, server, person, pages, tag):
    for w, h, label in ((1280, 900, "d"), (390, 844, "m")):
        ctx = await browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN")
        p = await ctx.new_page()
        await _sign_in(p, server, person.login, person.password)
        for name, url in pages:
            await p.goto(server + url)
            await p.screenshot(path=f"{OUT}/{tag}-{name}-{label}.png", full_page=True)
        await ctx.close()

async def test_walk(app, server, browser):
    from canal.exchange.bank import services
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.platform.storage.services import iterate_bytes
    from canal.tenants.tables import Membership
    org = await make_org()
    sp = services.tenant_space(org.ctx)
    folder = await services.create_folder(sp, None, "财务报表")
    sub = await services.create_folder(sp, folder.id, "2026年月报")
    f = await services.upload(sp, folder.id, iterate_bytes("月份,金额\n1,100\n".encode()), filename="一月.csv")
    await services.upload(sp, folder.id, iterate_bytes("月份,金额\n1,100\n2,3\n".encode()), filename="一月.csv")
    g = await services.upload(sp, None, iterate_bytes("旧合同".encode()), filename="旧合同.txt")
    await services.archive_file(sp, g.id)
    await services.set_backup(sp, folder.id, schedule="daily", keep=7)
    await services.run_backup(org.ctx, folder.id, trigger="manual")
    await services.create_share(sp, f.id, days=3, max_downloads=5)
    d = await services.upload(sp, None, iterate_bytes("草稿".encode()), filename="草稿.txt")
    await services.delete_file(sp, d.id)
    await services.start_upload(sp, name="大文件.csv", size=20*1024*1024, folder_id=folder.id)
    b = org.base
    pages = [("home", b), ("folder", f"{b}/folders/{folder.id}"), ("sub", f"{b}/folders/{sub.id}"),
             ("file", f"{b}/files/{f.id}"), ("archived", f"{b}/files/{g.id}"), ("trash", f"{b}/trash")]
    await shots(browser, server, org.owner, pages, "owner")
    member = await make_user("普通成员")
    async with db.tenant_scope(org.ctx.tenant_id):
        await Membership.insert(Membership(tenant_id=org.ctx.tenant_id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", org.ctx.tenant_id)
    await shots(browser, server, member, pages[:4] + [("trash", f"{b}/trash")], "member")
    r = await make_resident()
    rs = await services.personal_space(r.user_id)
    await services.upload(rs, None, iterate_bytes("血压".encode()), filename="体检.txt")
    await shots(browser, server, r, [("home", "/me/bank"), ("trash", "/me/bank/trash")], "resident")
    u = await make_resident(verified=False)
    await shots(browser, server, u, [("home", "/me/bank"), ("trash", "/me/bank/trash")], "unverified")
