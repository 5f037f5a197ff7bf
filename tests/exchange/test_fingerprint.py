"""The delivered CSV carries a per-grant fingerprint that survives re-saving (csv module with
shuffled rows, other quoting and deleted rows; DuckDB; a GB18030 "Excel" save) and
identifies the right grant — including through the ``canal exchange identify`` command."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import duckdb
import httpx

from canal.exchange import fingerprint
from canal.exchange.cli import identify_file
from canal.exchange.services import identify
from tests.exchange.helpers import active_grant, approved_provider, make_org, published_dataset
from tests.factories import sign_in


def resave_with_csv_module(data: bytes) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    header, body = rows[0], rows[1:]
    rng = random.Random(3)
    rng.shuffle(body)
    body = body[: int(len(body) * 0.8)]  # a leaker keeps only part of it
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    for row in body:
        writer.writerow([f" {v} " if i == 1 else v for i, v in enumerate(row)])
    return out.getvalue().encode("utf-8-sig")


def resave_with_duckdb(data: bytes, tmp: Path) -> bytes:
    src, dst = tmp / "in.csv", tmp / "out.csv"
    src.write_bytes(data)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_csv('{src}') ORDER BY random()) TO '{dst}' (HEADER)")
    con.close()
    return dst.read_bytes()


def resave_like_excel(data: bytes) -> bytes:
    """Excel in a Chinese locale: GB18030, trailing zeros dropped from numbers."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for i, row in enumerate(rows):
        if i:
            row = [
                v.rstrip("0").rstrip(".") if v.replace(".", "", 1).isdigit() and "." in v else v
                for v in row
            ]
        writer.writerow(row)
    return out.getvalue().encode("gb18030")


async def _download(client, buyer, grant_id) -> bytes:
    await sign_in(client, buyer.owner)
    response = await client.post(f"{buyer.api}/grants/{grant_id}/download")
    assert response.status_code == 201, response.text
    async with httpx.AsyncClient() as s3:
        return (await s3.get(response.json()["url"])).content


async def test_fingerprint_survives_resaves_and_names_the_grant(client, op, tmp_path):
    provider = await approved_provider()
    buyer_a = await make_org("甲买方")
    buyer_b = await make_org("乙买方")
    dataset_id = await published_dataset(client, provider, op)
    grant_a = await active_grant(client, provider, buyer_a, dataset_id, modes=["download"])
    grant_b = await active_grant(client, provider, buyer_b, dataset_id, modes=["download"])
    file_a = await _download(client, buyer_a, grant_a)
    file_b = await _download(client, buyer_b, grant_b)
    assert file_a != file_b  # the same rows, marked differently

    for leaked, expected in [
        (file_a, grant_a),
        (file_b, grant_b),
        (resave_with_csv_module(file_a), grant_a),
        (resave_with_duckdb(file_b, tmp_path), grant_b),
        (resave_like_excel(file_a), grant_a),
    ]:
        found = await identify(leaked)
        assert found is not None and str(found.grant_id) == expected
        assert found.matches / found.checked >= 0.99

    leak = tmp_path / "leak.csv"
    leak.write_bytes(resave_with_duckdb(file_a, tmp_path))
    assert await identify_file(leak) == 0


async def test_marks_change_values_by_at_most_one_unit_and_unmarked_files_match_nothing(client, op):
    header = ["企业", "月份", "用电量"]
    rows = [[f"E{i}", f"2025-{1 + i % 12:02d}", f"{1000 + i * 3.7:.1f}"] for i in range(200)]
    marked = fingerprint.embed(b"k" * 32, header, rows, {"用电量": 1})
    for before, after in zip(rows, marked, strict=True):
        assert abs(float(before[2]) - float(after[2])) <= 0.1 + 1e-9
    assert fingerprint.is_match(*fingerprint.score(b"k" * 32, header, marked, {"用电量": 1}))
    assert not fingerprint.is_match(*fingerprint.score(b"x" * 32, header, marked, {"用电量": 1}))
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    assert await identify(out.getvalue().encode()) is None


def test_hashed_values_that_read_as_huge_numbers_stay_text():
    """A per-grant hash such as "5e1234567" parses as a number whose normalisation overflows:
    it must be keyed as text, not answer 500 for one buyer in many (the salt decides)."""
    from canal.exchange import fingerprint

    columns = ["id", "amount"]
    rows = [["5e1234567", "12.50"], ["8E9999999", "3.25"], ["a1", "7.00"]]
    marked = fingerprint.embed(b"grant-secret", columns, rows, {"amount": 2})
    assert [r[0] for r in marked] == ["5e1234567", "8E9999999", "a1"]
    assert all(abs(float(m[1]) - float(r[1])) <= 0.01 for m, r in zip(marked, rows, strict=True))
    assert fingerprint._norm("5e1234567") == "5e1234567"
    assert fingerprint._norm("1.50") == "1.5"
