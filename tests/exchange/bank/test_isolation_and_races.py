"""Attacks and races: a person reaching another's bank by id, a member sharing or purging, another
organisation's folder as a move target, bad input answering 500 (or a "0 days" link made for
7 days), crossing folder moves, a move into a folder being deleted, links revived by a restore."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.exchange.bank.helpers import make_org, make_resident
from tests.factories import csrf_from, make_user, sign_in

API = "/api/v1"


def _other(client) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url="https://testserver.local")


async def _upload(client, base: str, name: str, data: bytes, folder: str | None = None):
    params = {"name": name, **({"folder": folder} if folder else {})}
    return await client.post(f"{API}{base}/upload", params=params, content=data)


async def _victim_ids(client, base: str) -> dict[str, str]:
    folder = (await client.post(f"{API}{base}/folders", json={"name": "私密"})).json()["id"]
    made = await _upload(client, base, "病历.txt", b"secret v1", folder)
    assert made.status_code == 201, made.text
    file_id = made.json()["id"]
    await _upload(client, base, "病历.txt", b"secret v2", folder)
    detail = (await client.get(f"{API}{base}/files/{file_id}")).json()
    share = (await client.post(f"{API}{base}/files/{file_id}/shares", json={"days": 2})).json()
    upload = (await client.post(f"{API}{base}/uploads", json={"name": "大.txt", "size": 5})).json()
    binned = (await _upload(client, base, "废.txt", b"bin")).json()["id"]
    await client.post(f"{API}{base}/files/{binned}/delete")
    [item] = (await client.get(f"{API}{base}/trash")).json()
    return {
        "folder": folder,
        "file": file_id,
        "version": detail["versions"][-1]["id"],
        "share": share["share"]["id"],
        "upload": upload["id"],
        "trash": item["trash_id"],
    }


def _id_routes(ids: dict[str, str]) -> list[tuple[str, str, dict | None]]:
    f, fi, v = ids["folder"], ids["file"], ids["version"]
    return [
        ("GET", f"/folders/{f}", None),
        ("POST", f"/folders/{f}/rename", {"name": "x"}),
        ("POST", f"/folders/{f}/move", {"target_id": None}),
        ("POST", f"/folders/{f}/delete", None),
        ("GET", f"/files/{fi}", None),
        ("GET", f"/files/{fi}/download", None),
        ("GET", f"/files/{fi}/versions/{v}/download", None),
        ("POST", f"/files/{fi}/versions/{v}/restore", None),
        ("POST", f"/files/{fi}/rename", {"name": "x.txt"}),
        ("POST", f"/files/{fi}/move", {"target_id": None}),
        ("POST", f"/files/{fi}/shares", {"days": 1}),
        ("POST", f"/files/{fi}/shares/{ids['share']}/revoke", None),
        ("POST", f"/files/{fi}/delete", None),
        ("GET", f"/uploads/{ids['upload']}", None),
        ("POST", f"/uploads/{ids['upload']}/complete", None),
        ("POST", f"/trash/{ids['trash']}/restore", None),
    ]


async def test_a_person_never_reaches_another_persons_bank_by_id(client):
    victim, attacker = await make_resident(), await make_resident()
    await sign_in(client, victim)
    ids = await _victim_ids(client, "/me/bank")
    async with _other(client) as other:
        await sign_in(other, attacker)
        for method, path, body in _id_routes(ids):
            answer = await other.request(method, f"{API}/me/bank{path}", json=body)
            assert answer.status_code == 404, (method, path, answer.status_code)
        part = await other.put(f"{API}/me/bank/uploads/{ids['upload']}/parts/0", content=b"12345")
        assert part.status_code == 404
        # Another person's folder as a place: not a target, not an upload folder.
        own = (await other.post(f"{API}/me/bank/folders", json={"name": "mine"})).json()["id"]
        moved = await other.post(
            f"{API}/me/bank/folders/{own}/move", json={"target_id": ids["folder"]}
        )
        assert moved.status_code == 404
        into = await _upload(other, "/me/bank", "a.txt", b"x", ids["folder"])
        assert into.status_code == 404
        chunked = await other.post(
            f"{API}/me/bank/uploads", json={"name": "a.txt", "size": 3, "file_id": ids["file"]}
        )
        assert chunked.status_code == 404
        mkdir = await other.post(
            f"{API}/me/bank/folders", json={"name": "in", "parent_id": ids["folder"]}
        )
        assert mkdir.status_code == 404
        assert (await other.post(f"{API}/me/bank/trash/empty")).json() == {"count": 0}
    # Nothing of the victim's changed.
    detail = (await client.get(f"{API}/me/bank/files/{ids['file']}")).json()
    assert detail["file"]["name"] == "病历.txt" and len(detail["versions"]) == 2
    assert detail["shares"][0]["revoked_at"] is None
    assert len((await client.get(f"{API}/me/bank/trash")).json()) == 1


async def test_another_organisations_folder_is_no_move_target(owner_client, org):
    other_org = await make_org()
    async with _other(owner_client) as other:
        await sign_in(other, other_org.owner)
        theirs = (
            await other.post(f"{API}{other_org.base}/folders", json={"name": "theirs"})
        ).json()["id"]
    mine = (await owner_client.post(f"{API}{org.base}/folders", json={"name": "mine"})).json()
    file_id = (await _upload(owner_client, org.base, "a.txt", b"a")).json()["id"]
    for path in (f"/folders/{mine['id']}/move", f"/files/{file_id}/move"):
        moved = await owner_client.post(f"{API}{org.base}{path}", json={"target_id": theirs})
        assert moved.status_code == 404, path
    assert (await _upload(owner_client, org.base, "b.txt", b"b", theirs)).status_code == 404


async def test_a_member_adds_and_organises_but_does_not_share_archive_or_purge(
    client, owner_client, org
):
    """Decision 0041: ``bank:write`` (members too) adds and organises; sharing outside,
    the archive, backups and emptying the bin need ``files:write`` (admins, owners)."""
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.tenants.tables import Membership

    ids = await _victim_ids(owner_client, org.base)
    member = await make_user("普通成员")
    async with db.tenant_scope(org.ctx.tenant_id):
        await Membership.insert(Membership(tenant_id=org.ctx.tenant_id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", org.ctx.tenant_id)
    fi = ids["file"]
    managed = [
        ("POST", f"/files/{fi}/shares", {"days": 1}),
        ("POST", f"/files/{fi}/shares/{ids['share']}/revoke", None),
        ("POST", "/trash/empty", None),
        ("POST", f"/files/{fi}/archive", None),
        ("POST", f"/files/{fi}/retrieve", None),
        ("POST", f"/folders/{ids['folder']}/backup", {"schedule": "daily", "keep": 2}),
        ("POST", f"/folders/{ids['folder']}/backup/run", None),
    ]
    async with _other(client) as colleague:
        await sign_in(colleague, member)
        for method, path, body in managed:
            answer = await colleague.request(method, f"{API}{org.base}{path}", json=body)
            assert answer.status_code == 403, (path, answer.status_code)
        token = csrf_from((await colleague.get(org.base)).text)
        form = await colleague.post(f"{org.base}/trash/empty", data={"_csrf": token})
        assert form.status_code == 403
        # What a member may do: upload (a new version of a colleague's file too), make a
        # folder, rename, move to the bin and back, start and cancel a resumable upload.
        made = await _upload(colleague, org.base, "周报.txt", "第一周".encode())
        assert made.status_code == 201, made.text
        again = await _upload(colleague, org.base, "病历.txt", b"v3", ids["folder"])
        assert again.status_code == 201 and again.json()["versions"] == 3
        folder = await colleague.post(f"{API}{org.base}/folders", json={"name": "成员的"})
        assert folder.status_code == 201
        renamed = await colleague.post(
            f"{API}{org.base}/files/{made.json()['id']}/rename", json={"name": "周报-1.txt"}
        )
        assert renamed.status_code == 200
        assert (
            await colleague.post(f"{API}{org.base}/files/{made.json()['id']}/delete")
        ).status_code == 204
        restored = await colleague.post(f"{API}{org.base}/trash/{ids['trash']}/restore")
        assert restored.status_code == 204
        started = await colleague.post(
            f"{API}{org.base}/uploads", json={"name": "大.csv", "size": 10}
        )
        assert started.status_code == 201
        gone = await colleague.delete(f"{API}{org.base}/uploads/{started.json()['id']}")
        assert gone.status_code == 204
        # The pages offer exactly that: upload and folder forms, no share or empty-bin form.
        home = (await colleague.get(org.base)).text
        assert 'name="file"' in home and 'action="/t/' in home
        file_page = (await colleague.get(f"{org.base}/files/{fi}")).text
        assert '/shares"' not in file_page and '/archive"' not in file_page
        assert f"/files/{fi}/upload" in file_page
        trash_page = (await colleague.get(f"{org.base}/trash")).text
        assert "/trash/empty" not in trash_page
    detail = (await owner_client.get(f"{API}{org.base}/files/{fi}")).json()
    assert detail["shares"][0]["revoked_at"] is None
    assert detail["file"]["storage_class"] == "standard"


@pytest.mark.parametrize("space", ["tenant", "personal"])
async def test_bad_input_never_answers_500(client, org, space):
    if space == "tenant":
        await sign_in(client, org.owner)
        base = org.base
    else:
        await sign_in(client, await make_resident())
        base = "/me/bank"
    file_id = (await _upload(client, base, "a.txt", b"a")).json()["id"]
    folder = (await client.post(f"{API}{base}/folders", json={"name": "f"})).json()["id"]
    upload = (await client.post(f"{API}{base}/uploads", json={"name": "b.txt", "size": 3})).json()
    token = csrf_from((await client.get(base)).text)
    huge = "9" * 40
    api_cases = [
        ("POST", "/folders", {"name": "x" * 10_000}),
        ("POST", "/folders", {"name": 5}),
        ("POST", "/folders", {}),
        ("POST", "/folders", {"name": "x", "parent_id": "nope"}),
        ("POST", f"/files/{file_id}/shares", {"days": -5}),
        ("POST", f"/files/{file_id}/shares", {"days": int(huge)}),
        ("POST", f"/files/{file_id}/shares", {"days": 1, "max_downloads": -1}),
        ("POST", "/uploads", {"name": "x.txt", "size": -1}),
        ("POST", "/uploads", {"name": "x.txt", "size": int(huge)}),
        ("POST", "/uploads", {"name": "x.txt"}),
        ("POST", "/uploads", {"name": "", "size": 3}),
        ("POST", "/uploads", {"name": "x.txt", "size": 3, "folder_id": "zzz"}),
        ("GET", "/folders/not-a-uuid", None),
        ("GET", "/files/12345", None),
        ("POST", f"/folders/{folder}/move", {"target_id": "../.."}),
        ("POST", f"/files/{file_id}/rename", {"name": "x" * 300}),
        ("POST", f"/files/{file_id}/rename", {"name": None}),
        ("POST", "/upload?folder=nope&name=a.txt", None),
        ("POST", "/upload", None),  # no name at all
        ("PUT", f"/uploads/{upload['id']}/parts/-1", None),
        ("PUT", f"/uploads/{upload['id']}/parts/{huge}", None),
        ("PUT", f"/uploads/{upload['id']}/parts/abc", None),
        ("GET", f"/uploads/{upload['id']}x", None),
    ]
    if space == "tenant":
        api_cases += [
            ("POST", f"/folders/{folder}/backup", {"schedule": "hourly", "keep": int(huge)}),
            ("POST", f"/folders/{folder}/backup", {"schedule": "daily", "keep": -3}),
            ("POST", f"/folders/{folder}/backup", {}),
        ]
    for method, path, body in api_cases:
        kwargs = {"json": body} if body is not None else {"content": b"abc"}
        answer = await client.request(method, f"{API}{base}{path}", **kwargs)
        assert 400 <= answer.status_code < 500, (method, path, body, answer.status_code)
        assert answer.headers["content-type"].startswith("application/problem+json"), path
        problem = answer.json()
        assert problem.get("code"), (path, problem)
    form_cases = [
        ("/folders", {"name": "x", "parent": "not-a-uuid"}),
        ("/folders", {"name": "x" * 10_000}),
        (f"/files/{file_id}/shares", {"days": huge}),
        (f"/files/{file_id}/shares", {"days": "abc", "max_downloads": "-4"}),
        (f"/files/{file_id}/shares", {"days": "0"}),
        (f"/files/{file_id}/move", {"target": "garbage"}),
        (f"/folders/{folder}/move", {"target": "garbage"}),
        (f"/files/{file_id}/rename", {}),
    ]
    if space == "tenant":
        form_cases += [
            (f"/folders/{folder}/backup", {"schedule": "daily", "keep": huge}),
            (f"/folders/{folder}/backup", {"schedule": "yearly", "keep": "0"}),
        ]
    for path, data in form_cases:
        answer = await client.post(f"{base}{path}", data={"_csrf": token, **data})
        assert 400 <= answer.status_code < 500, (path, data, answer.status_code)
        assert "<html" in answer.text.lower()[:200], path  # the page, re-rendered


async def test_the_generic_file_routes_leave_the_banks_objects_alone(owner_client, org):
    """A bank version's object deleted through /files would leave the version dangling (and
    a backup copy deleted there would break its restore); uploads into the bank's purposes
    would make objects no bank row knows."""
    made = (await _upload(owner_client, org.base, "账本.txt", b"ledger")).json()
    detail = (await owner_client.get(f"{API}{org.base}/files/{made['id']}")).json()
    object_id = detail["versions"][0]["object_id"]
    slug = org.slug
    refused = await owner_client.delete(f"{API}/t/{slug}/files/{object_id}")
    assert refused.status_code == 409 and refused.json()["code"] == "file_managed"
    token = csrf_from((await owner_client.get(f"/t/{slug}/storage")).text)
    form = await owner_client.post(f"/t/{slug}/files/{object_id}/delete", data={"_csrf": token})
    assert form.status_code == 409
    storage_page = await owner_client.get(f"/t/{slug}/storage")
    assert f"/files/{object_id}/delete" not in storage_page.text
    for purpose in ("bank", "bank-backup", "bank-cold"):
        stray = await owner_client.post(
            f"{API}/t/{slug}/files", params={"purpose": purpose, "name": "x.txt"}, content=b"x"
        )
        assert stray.status_code == 409, purpose
        direct = await owner_client.post(
            f"{API}/t/{slug}/files/direct", json={"purpose": purpose, "name": "x.txt", "size": 1}
        )
        assert direct.status_code == 409, purpose
    url = (await owner_client.get(f"{API}{org.base}/files/{made['id']}/download")).json()["url"]
    async with httpx.AsyncClient() as s3:
        assert (await s3.get(url)).content == b"ledger"


async def test_two_crossing_folder_moves_at_once_cannot_make_a_cycle(owner_client, org):
    """A into B and B into A at the same moment: each check alone sees no cycle; without a
    lock both could pass and leave two folders that reach only each other (gone from the
    tree). One move wins; the other is refused."""

    async def mkdir(name: str) -> str:
        made = await owner_client.post(f"{API}{org.base}/folders", json={"name": name})
        return str(made.json()["id"])

    for _ in range(5):
        a, b = await mkdir(f"甲{_}"), await mkdir(f"乙{_}")
        answers = await asyncio.gather(
            owner_client.post(f"{API}{org.base}/folders/{a}/move", json={"target_id": b}),
            owner_client.post(f"{API}{org.base}/folders/{b}/move", json={"target_id": a}),
        )
        assert sorted(x.status_code for x in answers) == [200, 422]
        top = (await owner_client.get(f"{API}{org.base}")).json()["listing"]["folders"]
        assert {f["id"] for f in top} & {a, b}  # one of them is still reachable from the top


async def test_a_file_moved_into_a_folder_being_deleted_goes_to_the_bin_with_it(owner_client, org):
    """Move and delete at once: the file must end up either in the bin with the folder or
    still at the top — never alive inside a deleted folder (invisible everywhere, yet using
    space)."""
    from canal.exchange.bank import services

    for round_ in range(8):
        folder = (
            await owner_client.post(f"{API}{org.base}/folders", json={"name": f"去{round_}"})
        ).json()["id"]
        file_id = (await _upload(owner_client, org.base, f"件{round_}.txt", b"x")).json()["id"]
        await asyncio.gather(
            owner_client.post(f"{API}{org.base}/files/{file_id}/move", json={"target_id": folder}),
            owner_client.post(f"{API}{org.base}/folders/{folder}/delete"),
        )
        async with services.db.tenant_scope(org.ctx.tenant_id):
            rows = await services.BankFile.raw(
                "SELECT f.deleted_at IS NULL AS alive, d.deleted_at IS NULL AS folder_alive "
                "FROM bank_files f LEFT JOIN bank_folders d ON d.id = f.folder_id "
                "WHERE f.id = {}",
                file_id,
            )
        [row] = rows
        assert not (row["alive"] and row["folder_alive"] is False), round_


@pytest.mark.parametrize("what", ["file", "folder"])
async def test_a_link_stopped_by_deleting_stays_stopped_after_a_restore(owner_client, org, what):
    folder = (await owner_client.post(f"{API}{org.base}/folders", json={"name": "外发"})).json()
    file_id = (await _upload(owner_client, org.base, "报价.txt", b"price", folder["id"])).json()[
        "id"
    ]
    link = (
        await owner_client.post(f"{API}{org.base}/files/{file_id}/shares", json={"days": 5})
    ).json()["url"]
    token = link.rsplit("/", 1)[-1]
    async with _other(owner_client) as anon:
        anon.cookies.clear()
        anon.headers.pop("X-CSRF-Token", None)
        assert (await anon.get(f"{API}/bank/s/{token}")).status_code == 200
        target = f"/files/{file_id}" if what == "file" else f"/folders/{folder['id']}"
        await owner_client.post(f"{API}{org.base}{target}/delete")
        assert (await anon.get(f"{API}/bank/s/{token}")).status_code == 404
        [item] = (await owner_client.get(f"{API}{org.base}/trash")).json()
        await owner_client.post(f"{API}{org.base}/trash/{item['trash_id']}/restore")
        assert (await owner_client.get(f"{API}{org.base}/files/{file_id}")).status_code == 200
        assert (await anon.get(f"{API}/bank/s/{token}")).status_code == 404
    shares = (await owner_client.get(f"{API}{org.base}/files/{file_id}")).json()["shares"]
    assert shares[0]["revoked_at"] is not None  # shown as revoked on the file page


async def test_every_personal_route_with_an_id_finds_nothing_of_another_person(app, client):
    """Not a hand-picked list: every /api/v1/me/bank route that names an object, filled
    with another person's ids, answers 404 (personal tables have no row-level security;
    only the owner filter protects them)."""
    import re

    victim, attacker = await make_resident(), await make_resident()
    await sign_in(client, victim)
    ids = await _victim_ids(client, "/me/bank")
    values = {
        "bank_folder_id": ids["folder"],
        "bank_file_id": ids["file"],
        "version_id": ids["version"],
        "share_id": ids["share"],
        "upload_id": ids["upload"],
        "trash_id": ids["trash"],
        "part": "0",
    }
    checked = 0
    async with _other(client) as other:
        await sign_in(other, attacker)
        for route in app.routes:
            if not route.path.startswith("/api/v1/me/bank/") or "{" not in route.path:
                continue
            path = re.sub(r"\{(\w+):\w+\}", lambda m: values[m.group(1)], route.path)
            for method in route.methods - {"HEAD", "OPTIONS"}:
                bodies = {"/rename": {"name": "x"}, "/move": {"target_id": None}}
                bodies["/shares"] = {"days": 1}
                body = next((b for k, b in bodies.items() if route.path.endswith(k)), None)
                kwargs = {"content": b"12345"} if method == "PUT" else {"json": body}
                answer = await other.request(method, path, **kwargs)
                assert answer.status_code == 404, (method, route.path, answer.status_code)
                checked += 1
    assert checked >= 18
    detail = (await client.get(f"{API}/me/bank/files/{ids['file']}")).json()
    assert detail["file"]["name"] == "病历.txt" and len(detail["versions"]) == 2
