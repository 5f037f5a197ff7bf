"""Versions in each of the three formats the issue names — CSV (the other tests), JSON Lines
and Parquet — are normalised, profiled with the personal data found, and delivered; a
malformed JSON Lines file is refused with nothing recorded."""

from __future__ import annotations

import csv
import io
import json
import uuid

import duckdb

from canal.exchange.tables import DatasetVersion
from canal.platform import db
from tests.exchange.helpers import (
    active_grant,
    approved_provider,
    create_dataset,
    electricity_csv,
    make_org,
    upload_version,
)
from tests.factories import sign_in


def _records() -> list[dict]:
    return list(csv.DictReader(io.StringIO(electricity_csv(120).decode())))


def as_jsonl() -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records()).encode()


def as_parquet(tmp_path) -> bytes:
    source, out = tmp_path / "in.csv", tmp_path / "out.parquet"
    source.write_bytes(electricity_csv(120))
    duckdb.sql(
        f"COPY (SELECT * FROM read_csv('{source}', all_varchar=true)) TO '{out}' (FORMAT parquet)"
    )
    return out.read_bytes()


async def _profiled(client, provider, dataset_id, data: bytes, name: str) -> dict:
    response = await upload_version(client, provider, dataset_id, data, name=name)
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["status"] == "ready" and version["rows"] == 120
    columns = {c["name"]: c for c in version["profile"]["columns"]}
    assert columns["手机号"]["pii"] == "mobile" and columns["身份证号"]["pii"] == "id_card"
    assert columns["联系人"]["pii"] == "name" and columns["行业"]["distinct"] == 6
    return version


async def test_jsonl_and_parquet_versions_are_profiled_and_delivered(client, op, tmp_path):
    provider = await approved_provider("格式数据")
    dataset = await create_dataset(client, provider)
    first = await _profiled(client, provider, dataset["id"], as_jsonl(), "电量.jsonl")
    second = await _profiled(client, provider, dataset["id"], as_parquet(tmp_path), "电量.parquet")
    assert (first["number"], second["number"]) == (1, 2)
    confirmed = await client.post(f"{provider.api}/datasets/{dataset['id']}/privacy", json={})
    assert confirmed.status_code == 200, confirmed.text

    submitted = await client.post(f"{provider.api}/datasets/{dataset['id']}/submit")
    assert submitted.status_code == 204, submitted.text
    await sign_in(client, op.owner)
    reviewed = await client.post(
        f"{op.api}/review/{dataset['id']}", json={"approve": True, "reason": "已核对。"}
    )
    assert reviewed.status_code == 204, reviewed.text
    buyer = await make_org("格式买方")
    grant_id = await active_grant(client, provider, buyer, str(dataset["id"]), ["api"])
    await sign_in(client, buyer.owner)
    for number in (1, 2):
        rows = await client.get(
            f"{buyer.api}/grants/{grant_id}/rows", params={"version": number, "size": 5}
        )
        assert rows.status_code == 200, rows.text
        body = rows.json()
        phone = body["columns"].index("手机号")
        assert body["rows"], body
        assert all("****" in str(r[phone]) for r in body["rows"])  # masked on the way out


async def test_malformed_jsonl_is_refused_and_nothing_recorded(client):
    provider = await approved_provider("格式数据")
    dataset = await create_dataset(client, provider)
    broken = b'{"a": 1}\n{"a": 2\n{"a": 3}\n'
    response = await upload_version(client, provider, dataset["id"], broken, name="坏.jsonl")
    assert response.status_code == 422, response.text
    assert response.json()["code"].startswith("dataset_")
    async with db.transaction():
        count = await DatasetVersion.count().where(
            DatasetVersion.dataset_id == uuid.UUID(str(dataset["id"]))
        )
    assert count == 0
