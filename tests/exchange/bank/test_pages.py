"""The data bank's pages: forms re-render with 422 and the reason beside the field, the
public share page, and the personal bank's refusal before real-name verification."""

from __future__ import annotations

from tests.exchange.bank.helpers import make_resident
from tests.factories import csrf_from, sign_in


async def test_pages_render_and_bad_forms_come_back_with_the_reason(owner_client, org):
    home = await owner_client.get(org.base)
    assert home.status_code == 200 and "数据银行" in home.text
    token = csrf_from(home.text)
    bad = await owner_client.post(
        f"{org.base}/folders", data={"_csrf": token, "name": "a/b", "parent": ""}
    )
    assert bad.status_code == 422
    assert 'id="f-name-error"' in bad.text and "不能包含" in bad.text
    good = await owner_client.post(
        f"{org.base}/folders", data={"_csrf": token, "name": "合同", "parent": ""}
    )
    assert good.status_code == 303
    folder_url = good.headers["location"]
    page = await owner_client.get(folder_url)
    assert "合同" in page.text and "定时备份" in page.text  # the backup settings of a folder


async def test_upload_form_over_quota_rerenders_with_the_message(owner_client, org):
    from canal.platform.storage.services import set_tenant_quota

    await set_tenant_quota(org.ctx.tenant_id, 100, actor_id=None)
    token = csrf_from((await owner_client.get(org.base)).text)
    refused = await owner_client.post(
        f"{org.base}/upload",
        data={"_csrf": token, "folder": ""},
        files={"file": ("big.txt", b"x" * 500, "text/plain")},
    )
    assert refused.status_code == 413
    assert 'id="f-file-error"' in refused.text and "存储空间不足" in refused.text
    assert "big.txt" not in refused.text.split("f-file-error")[0].split("<table")[-1]


async def test_personal_bank_page_asks_for_verification(client):
    person = await make_resident(verified=False)
    await sign_in(client, person)
    page = await client.get("/me/bank")
    assert page.status_code == 403 and "实名认证" in page.text
    assert 'href="/account/real-name"' in page.text  # where to go, not just "no"
    assert (await client.get("/me/bank/trash")).status_code == 403


async def test_a_guessed_share_link_finds_nothing(client):
    for token in ["t" + "0" * 32 + "x" * 32, "nonsense", "u" + "f" * 60]:
        assert (await client.get(f"/bank/s/{token}")).status_code == 404
        assert (await client.get(f"/api/v1/bank/s/{token}/download")).status_code == 404


async def test_a_member_uploads_through_the_page_but_makes_no_share_link(client, owner_client, org):
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.tenants.tables import Membership
    from tests.factories import make_user

    made = await owner_client.post(
        f"/api/v1{org.base}/upload", params={"name": "制度.txt"}, content="员工手册".encode()
    )
    file_id = made.json()["id"]
    member = await make_user("普通成员")
    async with db.tenant_scope(org.ctx.tenant_id):
        await Membership.insert(Membership(tenant_id=org.ctx.tenant_id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", org.ctx.tenant_id)
    import httpx

    async with httpx.AsyncClient(
        transport=client._transport, base_url="https://testserver.local"
    ) as colleague:
        await sign_in(colleague, member)
        home = await colleague.get(org.base)
        assert home.status_code == 200 and "制度.txt" in home.text
        download = await colleague.get(f"{org.base}/files/{file_id}/download")
        assert download.status_code == 302
        # The upload form is there for a member, and works.
        token = csrf_from(home.text)
        posted = await colleague.post(
            f"{org.base}/upload",
            data={"_csrf": token, "folder": ""},
            files={"file": ("会议纪要.txt", "周一例会".encode(), "text/plain")},
        )
        assert posted.status_code in (302, 303), posted.text
        made_by_member = posted.headers["location"].rsplit("/", 1)[-1]
        page = await colleague.get(f"{org.base}/files/{made_by_member}")
        assert "会议纪要.txt" in page.text
        assert 'action="/t/' + org.slug + f'/bank/files/{made_by_member}/shares"' not in page.text
        # Sharing outside the organisation is an admin's call.
        refused = await colleague.post(
            f"{org.base}/files/{made_by_member}/shares", data={"_csrf": token, "days": "3"}
        )
        assert refused.status_code == 403
    mine = await owner_client.get(f"/api/v1{org.base}/files/{made_by_member}")
    assert mine.status_code == 200 and mine.json()["shares"] == []


async def test_listing_comes_first_and_phone_cards_keep_each_name_in_one_cell(owner_client, org):
    """On a phone the stacked table puts each cell's children in a grid: a badge and a link
    side by side must be one item, or the name wraps under its label. The files come
    before the forms (a phone would otherwise scroll past two forms to reach them)."""
    folder = (await owner_client.post(f"/api/v1{org.base}/folders", json={"name": "年报"})).json()[
        "id"
    ]
    await owner_client.post(f"/api/v1{org.base}/folders", json={"name": "子", "parent_id": folder})
    page = (await owner_client.get(f"{org.base}/folders/{folder}")).text
    assert page.index('id="items-title"') < page.index('id="upload-title"')
    assert '<td data-label="名称"><span><small class="badge">文件夹</small>' in page
    assert "<h1>年报</h1>" in page


async def test_one_version_is_singular_in_english(owner_client, org):
    made = await owner_client.post(
        f"/api/v1{org.base}/upload", params={"name": "one.txt"}, content=b"one"
    )
    page = await owner_client.get(f"{org.base}/files/{made.json()['id']}?lang=en")
    assert "1 version" in page.text and "1 versions" not in page.text
    zh = await owner_client.get(f"{org.base}/files/{made.json()['id']}?lang=zh-CN")
    assert "1 个版本" in zh.text


async def test_destructive_forms_ask_first(owner_client, org):
    """Emptying the bin, moving to the bin, revoking, archiving and restoring a backup copy
    carry a question the page's script asks before posting."""
    folder = (await owner_client.post(f"/api/v1{org.base}/folders", json={"name": "问"})).json()
    made = await owner_client.post(
        f"/api/v1{org.base}/upload",
        params={"name": "确认.txt", "folder": folder["id"]},
        content=b"sure",
    )
    file_id = made.json()["id"]
    await owner_client.post(f"/api/v1{org.base}/files/{file_id}/shares", json={"days": 1})
    await owner_client.post(f"/api/v1{org.base}/folders/{folder['id']}/backup/run")
    listing = (await owner_client.get(f"{org.base}/folders/{folder['id']}?lang=zh-CN")).text
    assert "确定从此备份恢复全部文件吗" in listing
    top = (await owner_client.get(f"{org.base}?lang=zh-CN")).text
    assert "确定将文件夹「问」及其中的全部内容移到回收站吗" in top
    page = (await owner_client.get(f"{org.base}/files/{file_id}?lang=zh-CN")).text
    for question in ("确定将「确认.txt」移到回收站吗", "确定撤销此链接吗", "确定归档此文件吗"):
        assert question in page, question
    await owner_client.post(f"/api/v1{org.base}/files/{file_id}/delete")
    trash = await owner_client.get(f"{org.base}/trash?lang=zh-CN")
    assert trash.status_code == 200 and "确定永久删除回收站中的全部内容吗" in trash.text
    assert '<script src="/static/bank-upload.js"' in trash.text


async def test_an_empty_bank_says_how_to_start(owner_client, org):
    home = await owner_client.get(f"{org.base}?lang=zh-CN")
    assert "这里还没有文件。 可在下方上传文件或新建文件夹。" in home.text
