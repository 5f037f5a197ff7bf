"""The same journey through the server-rendered pages: forms with the CSRF field, 422
re-renders with the error next to the field, redirects after success."""

from __future__ import annotations

from tests.exchange.helpers import DATASET, approved_provider, electricity_csv, make_org
from tests.factories import csrf_from, sign_in

BOUNDARY = "exchangeboundary93"


def multipart(token: str, filename: str, content: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n{token}\r\n'
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="{filename}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def test_journey_through_the_pages(client, op):
    provider = await approved_provider()
    buyer = await make_org("买方企业")
    await sign_in(client, provider.owner)
    client.headers.pop("X-CSRF-Token")  # plain browser forms: the token travels in the body

    form_page = await client.get(f"{provider.web}/datasets/new")
    assert form_page.status_code == 200
    token = csrf_from(form_page.text)
    bad = await client.post(f"{provider.web}/datasets", data={"_csrf": token, "title": "x"})
    assert bad.status_code == 422
    assert 'id="f-title-error"' in bad.text and 'aria-invalid="true"' in bad.text
    fields = {
        **DATASET,
        "_csrf": token,
        "licence_days": "365",
        "min_cohort": "10",
        "price_yuan": "0",
    }
    fields.pop("tags")
    created = await client.post(f"{provider.web}/datasets", data=fields)
    assert created.status_code == 303, created.text
    dataset_url = created.headers["location"]

    page = await client.get(dataset_url)
    token = csrf_from(page.text)
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    ragged = await client.post(
        f"{dataset_url}/versions",
        content=multipart(token, "坏.csv", b"a,b\n1,2\n3\n"),
        headers=headers,
    )
    assert ragged.status_code == 422 and "f-file" in ragged.text
    assert "第 3 行" in ragged.text
    uploaded = await client.post(
        f"{dataset_url}/versions",
        content=multipart(token, "电量.csv", electricity_csv()),
        headers=headers,
    )
    assert uploaded.status_code == 303, uploaded.text
    page = await client.get(dataset_url)
    assert "手机号" in page.text
    loosen = await client.post(
        f"{dataset_url}/masking", data={"_csrf": token, "rule-手机号": "keep"}
    )
    assert loosen.status_code == 422
    # Compute-to-data waits for the provider to confirm the privacy settings profiling proposed.
    early = await client.post(f"{dataset_url}/submit", data={"_csrf": token})
    assert early.status_code == 409 and "隐私设置" in early.text
    assert "隐私" in page.text and 'name="bound-lo-用电量"' in page.text
    bad = await client.post(
        f"{dataset_url}/privacy",
        data={"_csrf": token, "bound-lo-用电量": "9", "bound-hi-用电量": "1"},
    )
    assert bad.status_code == 422 and "取值范围无效" in bad.text
    confirmed = await client.post(
        f"{dataset_url}/privacy", data={"_csrf": token, "max_rows_per_person": "12"}
    )
    assert confirmed.status_code == 303, confirmed.text
    assert "已确认" in (await client.get(dataset_url)).text
    submitted = await client.post(f"{dataset_url}/submit", data={"_csrf": token})
    assert submitted.status_code == 303
    dataset_id = dataset_url.rsplit("/", 1)[1]

    await sign_in(client, op.owner)
    client.headers.pop("X-CSRF-Token")
    queue = await client.get(f"{op.web}/review")
    assert dataset_id in queue.text
    review_page = await client.get(f"{op.web}/datasets/{dataset_id}")
    assert review_page.status_code == 200 and "手机号" in review_page.text
    token = csrf_from(review_page.text)
    no_reason = await client.post(
        f"{op.web}/review/{dataset_id}", data={"_csrf": token, "decision": "reject"}
    )
    assert no_reason.status_code == 422 and "f-reason-error" in no_reason.text
    # Approving needs a reason too.
    bare = await client.post(
        f"{op.web}/review/{dataset_id}", data={"_csrf": token, "decision": "approve"}
    )
    assert bare.status_code == 422 and "f-reason-error" in bare.text
    approved = await client.post(
        f"{op.web}/review/{dataset_id}",
        data={"_csrf": token, "decision": "approve", "reason": "来源与脱敏已核对。"},
    )
    assert approved.status_code == 303

    await sign_in(client, buyer.owner)
    client.headers.pop("X-CSRF-Token")
    catalogue = await client.get(f"{buyer.web}/catalogue", params={"q": "用电量"})
    assert DATASET["title"] in catalogue.text
    # Pico styles role="search" as one pill-shaped row: five filters broke on a phone.
    assert 'class="filters"' in catalogue.text and 'role="search"' not in catalogue.text
    listing = await client.get(f"{buyer.web}/catalogue/{dataset_id}")
    assert "****" in listing.text
    token = csrf_from(listing.text)
    short = await client.post(
        f"{buyer.web}/catalogue/{dataset_id}/request", data={"_csrf": token, "purpose": "短"}
    )
    assert short.status_code == 422 and "f-purpose-error" in short.text
    asked = await client.post(
        f"{buyer.web}/catalogue/{dataset_id}/request",
        data={
            "_csrf": token,
            "purpose": "研究本区产业用电的季节规律。",
            "modes": ["compute", "download"],
        },
    )
    assert asked.status_code == 303
    grant_url = asked.headers["location"]
    grant_id = grant_url.rsplit("/", 1)[1]

    await sign_in(client, provider.owner)
    client.headers.pop("X-CSRF-Token")
    grant_page = await client.get(f"{provider.web}/grants/{grant_id}")
    token = csrf_from(grant_page.text)
    decided = await client.post(
        f"{provider.web}/grants/{grant_id}/decision",
        data={"_csrf": token, "decision": "approve", "days": "30"},
    )
    assert decided.status_code == 303

    await sign_in(client, buyer.owner)
    client.headers.pop("X-CSRF-Token")
    page = await client.get(grant_url)
    token = csrf_from(page.text)
    # The buyer sees which columns the query may use; masked personal data is not among them.
    usable_columns = page.text.split('id="compute-columns"', 1)[1].split("</p>", 1)[0]
    assert "<code>行业</code>" in usable_columns and "手机号" not in usable_columns
    refused = await client.post(
        f"{grant_url}/queries", data={"_csrf": token, "sql": "SELECT * FROM data"}
    )
    assert refused.status_code == 422 and 'id="f-sql-error"' in refused.text
    answered = await client.post(
        f"{grant_url}/queries",
        data={"_csrf": token, "sql": "SELECT 行业, count(*) FROM data GROUP BY 行业"},
    )
    assert answered.status_code == 200 and 'id="query-result"' in answered.text
    download = await client.post(f"{grant_url}/download", data={"_csrf": token})
    # A link on the page, not a redirect (the CSP's form-action would block one in a browser).
    assert download.status_code == 200 and 'id="download-link"' in download.text
    assert "X-Amz-Signature" in download.text and download.headers["cache-control"] == "no-store"
    usage = await client.get(f"{buyer.web}/usage")
    assert usage.status_code == 200 and "data-chart=" in usage.text
    # Details are shown in the reader's language, not as the stored English note.
    assert "suppressed" not in usage.text and "组" in usage.text
