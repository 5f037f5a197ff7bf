"""The supermarket's pages: forms re-render with errors next to the fields (422), uploads are
checked by content, and the operator desk lists the queues."""

from __future__ import annotations

from tests.factories import csrf_from, sign_in, unique
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator

EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\0" * 200


async def test_provider_application_refuses_an_executable(app, client):
    side = await make_side(f"页面申请{unique('')}")
    await sign_in(client, side.person)
    page = await client.get(f"{side.pages}/provider")
    assert page.status_code == 200 and "申请成为服务商" in page.text
    answer = await client.post(
        f"{side.pages}/provider",
        data={"_csrf": csrf_from(page.text), "business_scope": "财务咨询"},
        files={"qualification": ("licence.pdf", EXE, "application/pdf")},
    )
    assert answer.status_code in {415, 422}, answer.text
    assert 'id="f-qualifications-error"' in answer.text
    assert (await client.get(f"{side.api}/provider")).json() is None


async def test_listing_form_shows_errors_next_to_fields_and_saves(app, client):
    staff = await operator()
    provider = await approved_provider(f"页面服务商{unique('')}", staff.user_id)
    await sign_in(client, provider.person)
    form = await client.get(f"{provider.pages}/listings/new")
    assert form.status_code == 200
    data = {
        "_csrf": csrf_from(form.text),
        "category": "legal",
        "title": "劳动合同审查",
        "description": "审查劳动合同条款",
        "area": "online",
        "delivery_days": "3",
        "price_model": "fixed",
        "price": "-100",
    }
    bad = await client.post(f"{provider.pages}/listings/new", data=data)
    assert bad.status_code == 422
    assert 'id="f-price-error"' in bad.text and "价格不能为负数" in bad.text
    assert 'value="劳动合同审查"' in bad.text  # what was typed is kept
    data["price"] = "600"
    good = await client.post(f"{provider.pages}/listings/new", data=data)
    assert good.status_code == 303
    detail = await client.get(good.headers["location"])
    assert "待审核" in detail.text and "¥600.00" in detail.text


async def test_operator_desk_lists_queues_and_refuses_a_bad_rate(app, client):
    staff = await operator()
    provider = await approved_provider(f"运营台{unique('')}", staff.user_id)
    await live_listing(provider, staff.user_id)
    await sign_in(client, staff)
    desk = await client.get("/operator/m/services/")
    assert desk.status_code == 200 and provider.tenant.name in desk.text
    bad = await client.post(
        "/operator/m/services/commission",
        data={"_csrf": csrf_from(desk.text), "category": "tax", "rate": "45"},
    )
    assert bad.status_code == 422 and "佣金比例不能超过 30%" in bad.text
    ok = await client.post(
        "/operator/m/services/commission",
        data={"_csrf": csrf_from(desk.text), "category": "exchange", "rate": "3.5"},
    )
    assert ok.status_code == 303
    rates = (await client.get("/api/v1/operator/m/services/")).json()["commission_bp"]
    assert rates["exchange"] == 350


async def test_listing_with_pictures_shown_to_buyers(app, client):
    from tests.storage.test_uploads import png_bytes

    staff = await operator()
    provider = await approved_provider(f"图片服务商{unique('')}", staff.user_id)
    await sign_in(client, provider.person)
    form = await client.get(f"{provider.pages}/listings/new")
    data = {
        "_csrf": csrf_from(form.text),
        "category": "exchange",
        "title": "班组长培训",
        "description": "两天现场培训",
        "area": "dongchangfu",
        "delivery_days": "14",
        "price_model": "fixed",
        "price": "9800",
    }
    too_many = await client.post(
        f"{provider.pages}/listings/new",
        data=data,
        files=[("images", (f"{i}.png", png_bytes(), "image/png")) for i in range(5)],
    )
    assert too_many.status_code == 422 and 'id="f-images-error"' in too_many.text
    not_image = await client.post(
        f"{provider.pages}/listings/new",
        data=data,
        files=[("images", ("cover.png", EXE, "image/png"))],
    )
    assert not_image.status_code in {415, 422} and 'id="f-images-error"' in not_image.text
    made = await client.post(
        f"{provider.pages}/listings/new",
        data=data,
        files=[("images", ("cover.png", png_bytes(), "image/png"))],
    )
    assert made.status_code == 303, made.text
    listing_id = made.headers["location"].rsplit("/", 1)[1]
    from canal.marketplace import market

    await market.review_listing(staff.user_id, __import__("uuid").UUID(listing_id), "approve")
    buyer = await make_side(f"看图买方{unique('')}")
    await sign_in(client, buyer.person)
    listing = (await client.get(f"{buyer.api}/listings/{listing_id}")).json()
    [image] = listing["image_ids"]
    shown = await client.get(f"{buyer.pages}/listings/{listing_id}")
    assert f"/images/{image}" in shown.text
    picture = await client.get(f"{buyer.pages}/listings/{listing_id}/images/{image}")
    # Served from the portal itself: the CSP (img-src 'self') would block the object store.
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(b"\x89PNG")
    linked = await client.get(f"{buyer.api}/listings/{listing_id}/images/{image}")
    assert "X-Amz-Signature" in linked.json()["url"]
    other = await client.get(f"{buyer.pages}/listings/{listing_id}/images/{listing_id}")
    assert other.status_code == 404


async def test_operator_opens_qualification_files_from_the_desk(app, client):
    """The desk links each qualification file to a short-lived presigned URL; opening one is
    audited; a file the application does not name, or another provider's, is 404; a
    non-operator cannot open any."""
    from canal.marketplace import market
    from canal.platform import db
    from canal.platform.audit.tables import AuditEvent
    from canal.platform.storage.services import object_store
    from tests.marketplace.helpers import PDF

    staff = await operator()
    side = await make_side(f"资质审核{unique('')}")
    licence = await object_store().upload_bytes(side.ctx, "document", PDF, filename="执照.pdf")
    stray = await object_store().upload_bytes(side.ctx, "document", PDF, filename="其他.pdf")
    applied = await market.apply_as_provider(
        side.ctx, business_scope="财务咨询", qualification_file_ids=[licence.id]
    )
    other = await approved_provider(f"别的服务商{unique('')}", staff.user_id)
    await sign_in(client, staff)
    desk = await client.get("/operator/m/services/")
    link = f"/operator/m/services/providers/{applied.id}/files/{licence.id}"
    assert link in desk.text and "执照.pdf" in desk.text
    opened = await client.get(link)
    assert opened.status_code == 302 and "X-Amz-Signature" in opened.headers["location"]
    api = await client.get("/api/v1" + link)
    assert api.status_code == 200 and "X-Amz-Signature" in api.json()["url"]
    for bad in (
        f"/operator/m/services/providers/{applied.id}/files/{stray.id}",
        f"/operator/m/services/providers/{applied.id}/files/{other.tenant.id}",
        f"/operator/m/services/providers/{other.tenant.id}/files/{licence.id}",
    ):
        assert (await client.get(bad)).status_code == 404, bad
    async with db.platform_scope():
        seen = await AuditEvent.select().where(
            (AuditEvent.action == "market.qualification_viewed")
            & (AuditEvent.target == str(licence.id))
        )
    assert len(seen) == 2 and all(e["actor_id"] == staff.user_id for e in seen)
    await sign_in(client, side.person)
    assert (await client.get(link)).status_code in {403, 404}


async def test_pictures_added_to_a_live_listing_wait_for_review(app, client):
    """Editing a live listing can add and remove pictures; buyers keep the reviewed pictures
    until the operator approves the edit; more than four in all is refused (422)."""
    import uuid

    from canal.marketplace import market
    from tests.storage.test_uploads import png_bytes

    staff = await operator()
    provider = await approved_provider(f"改图服务商{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id)
    assert listing.image_ids == []
    await sign_in(client, provider.person)
    form = await client.get(f"{provider.pages}/listings/{listing.id}/edit")
    assert 'enctype="multipart/form-data"' in form.text
    data = {
        "_csrf": csrf_from(form.text),
        "category": listing.category,
        "subcategory": listing.subcategory,
        "title": listing.title,
        "description": listing.description,
        "area": listing.area,
        "delivery_days": str(listing.delivery_days),
        "price_model": listing.price_model,
        "price": f"{listing.price_fen / 100:.2f}",
    }
    too_many = await client.post(
        f"{provider.pages}/listings/{listing.id}/edit",
        data=data,
        files=[("images", (f"{i}.png", png_bytes(), "image/png")) for i in range(5)],
    )
    assert too_many.status_code == 422 and 'id="f-images-error"' in too_many.text
    edited = await client.post(
        f"{provider.pages}/listings/{listing.id}/edit",
        data=data,
        files=[("images", ("new.png", png_bytes(), "image/png"))],
    )
    assert edited.status_code == 303, edited.text
    buyer = await make_side(f"看新图{unique('')}")
    assert (await market.get_listing(listing.id, buyer.ctx)).image_ids == []  # not yet
    await market.review_listing(staff.user_id, listing.id, "approve")
    [image] = (await market.get_listing(listing.id, buyer.ctx)).image_ids
    await sign_in(client, buyer.person)
    picture = await client.get(f"{buyer.pages}/listings/{listing.id}/images/{image}")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    # Removing it is an edit too.
    await sign_in(client, provider.person)
    form = await client.get(f"{provider.pages}/listings/{listing.id}/edit")
    assert f'value="{image}"' in form.text
    removed = await client.post(
        f"{provider.pages}/listings/{listing.id}/edit",
        data={**data, "_csrf": csrf_from(form.text), "remove_images": image},
    )
    assert removed.status_code == 303
    await market.review_listing(staff.user_id, listing.id, "approve")
    assert (await market.get_listing(listing.id, buyer.ctx)).image_ids == []
    assert uuid.UUID(image)
