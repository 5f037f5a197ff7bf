"""Reading an uploaded dataset and profiling it with DuckDB.

Every version is first normalised into Parquet (UTF-8, typed columns): profiling, masking,
delivery and compute-to-data all read that copy, so a CSV's encoding and quoting are dealt
with once. CSV files are checked with Python's csv module before DuckDB sees them, because
DuckDB's sniffer quietly accepts a ragged file as one wide text column; the check names the
first bad line instead.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from canal.exchange.pii import detect_column
from canal.platform.http.errors import CanalError

FORMATS = ("csv", "jsonl", "parquet")
PII_SAMPLE = 1000
MAX_COLUMNS = 500
# Low-cardinality text columns whose values profiling proposes as public categories (only
# values seen at least CATEGORY_MIN_ROWS times; the provider confirms or edits the list).
CATEGORY_MAX_DISTINCT = 50
CATEGORY_MIN_ROWS = 10


class DatasetError(CanalError):
    """A file that cannot be read as a dataset; the message says why."""

    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(code, zh, en, status=422)


NUMERIC_PREFIXES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
    "DECIMAL",
)


def sniff_format(head: bytes, name: str) -> str:
    if head.startswith(b"PAR1"):
        return "parquet"
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")) or head.lstrip()[:1] in (b"{",):
        return "jsonl"
    return "csv"


def _decoder_for(path: Path) -> str:
    """utf-8 (with or without BOM) or gb18030 (a superset of GBK); anything else is refused."""
    for encoding in ("utf-8-sig", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError:
            continue
    raise DatasetError(
        "dataset_encoding",
        "文件编码无法识别:请另存为 UTF-8 或 GBK/GB18030 编码的 CSV。",
        "The file's encoding is not recognised: save it as UTF-8 or GBK/GB18030 CSV.",
    )


def _checked_utf8_csv(path: Path, workdir: Path) -> tuple[Path, str]:
    """A UTF-8 copy of the CSV (or the file itself), after checking every row's width."""
    encoding = _decoder_for(path)
    out = workdir / "clean.csv"
    with (
        path.open("r", encoding=encoding, newline="") as src,
        out.open("w", encoding="utf-8", newline="") as dst,
    ):
        reader = csv.reader(src, strict=True)
        writer = csv.writer(dst)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DatasetError(
                "dataset_empty", "文件为空或缺少表头行。", "The file is empty or has no header row."
            )
        names = [h.strip() for h in header]
        if len(names) > MAX_COLUMNS:
            raise DatasetError(
                "dataset_too_wide",
                f"列数超过上限 {MAX_COLUMNS}。",
                f"The file has more than {MAX_COLUMNS} columns.",
            )
        if len(set(names)) != len(names) or "" in names:
            raise DatasetError(
                "dataset_header",
                "表头的列名不能为空或重复。",
                "Column names in the header must be present and distinct.",
            )
        writer.writerow(names)
        width = len(names)
        try:
            for row in reader:
                if len(row) != width:
                    if not row:
                        continue  # a blank line
                    line = reader.line_num
                    raise DatasetError(
                        "dataset_ragged",
                        f"第 {line} 行有 {len(row)} 列,表头有 {width} 列;请修正后重新上传。",
                        f"Line {line} has {len(row)} fields but the header has {width}; "
                        "fix it and upload again.",
                    )
                writer.writerow(row)
        except csv.Error as error:
            raise DatasetError(
                "dataset_malformed",
                f"第 {reader.line_num} 行格式有误(引号不配对等)。",
                f"Line {reader.line_num} is malformed (e.g. an unclosed quote): {error}",
            ) from None
    return out, ("UTF-8" if encoding == "utf-8-sig" else "GB18030")


def connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": max(1, min(4, os.cpu_count() or 1)),
        }
    )


def normalise(src: Path, fmt: str, out: Path) -> str:
    """Write ``src`` as Parquet to ``out``; returns the source encoding (or the format)."""
    con = connect()
    try:
        with tempfile.TemporaryDirectory(prefix="canal-norm-") as tmp:
            if fmt == "csv":
                clean, encoding = _checked_utf8_csv(src, Path(tmp))
                relation = (
                    "read_csv(?, header=true, delim=',', quote='\"', escape='\"', "
                    "strict_mode=true, sample_size=20480)"
                )
                source = str(clean)
            elif fmt == "jsonl":
                encoding, relation, source = (
                    "JSON",
                    "read_json(?, format='newline_delimited')",
                    str(src),
                )
            else:
                encoding, relation, source = "Parquet", "read_parquet(?)", str(src)
            try:
                con.execute(
                    f"COPY (SELECT * FROM {relation}) TO '{_quote(out)}' (FORMAT parquet)",
                    [source],
                )
            except duckdb.Error as error:
                raise DatasetError(
                    "dataset_unreadable",
                    "无法读取该文件,请检查格式(CSV、JSON Lines 或 Parquet)。",
                    f"The file cannot be read as CSV, JSON Lines or Parquet: "
                    f"{str(error).splitlines()[0][:200]}",
                ) from None
        return encoding
    finally:
        con.close()


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


@dataclass
class ColumnProfile:
    name: str
    type: str
    nulls: int
    null_ratio: float
    distinct: int
    min: str | None
    max: str | None
    pii: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def profile(parquet: Path) -> dict[str, Any]:
    """Rows, and per column: type, nulls, distinct values, min/max and personal-data kind."""
    con = connect()
    try:
        source = f"read_parquet('{_quote(parquet)}')"
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]  # type: ignore[index]
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        columns: list[dict[str, Any]] = []
        categories: dict[str, list[str]] = {}
        for name, col_type, *_ in described:
            ident = '"' + name.replace('"', '""') + '"'
            nulls, distinct, low, high = con.execute(
                f"SELECT count(*) - count({ident}), approx_count_distinct({ident}), "
                f"min({ident})::VARCHAR, max({ident})::VARCHAR FROM {source}"
            ).fetchone()  # type: ignore[misc]
            # A sample spread over the whole file (a file sorted by district starts with one
            # district for thousands of rows), and how repetitive the column is.
            sample = [
                r[0]
                for r in con.execute(
                    f"SELECT {ident}::VARCHAR FROM {source} WHERE {ident} IS NOT NULL "
                    f"USING SAMPLE reservoir({PII_SAMPLE} ROWS) REPEATABLE (7)"
                ).fetchall()
            ]
            present = int(rows) - int(nulls)
            ratio = min(1.0, int(distinct) / present) if present else 0.0
            kind = detect_column(name, sample, distinct_ratio=ratio if present >= 100 else None)
            if (
                kind is None
                and not str(col_type).upper().startswith(NUMERIC_PREFIXES)
                and 0 < int(distinct) <= CATEGORY_MAX_DISTINCT
            ):
                categories[name] = [
                    str(r[0])
                    for r in con.execute(
                        f"SELECT {ident}::VARCHAR AS v FROM {source} WHERE {ident} IS NOT NULL "
                        f"GROUP BY v HAVING count(*) >= {CATEGORY_MIN_ROWS} ORDER BY v "
                        f"LIMIT {CATEGORY_MAX_DISTINCT}"
                    ).fetchall()
                ]
            columns.append(
                ColumnProfile(
                    name=name,
                    type=str(col_type),
                    nulls=int(nulls),
                    null_ratio=round(nulls / rows, 4) if rows else 0.0,
                    distinct=min(int(distinct), int(rows)),
                    min=None if kind else low,  # never show a raw ID number as "min"
                    max=None if kind else high,
                    pii=kind,
                ).as_dict()
            )
        # Proposed public categories stay with the provider (never published as profile).
        return {"rows": int(rows), "columns": columns, "proposed_categories": categories}
    finally:
        con.close()


def read_rows(
    parquet: Path, *, offset: int = 0, limit: int | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = connect()
    try:
        query = f"SELECT * FROM read_parquet('{_quote(parquet)}')"
        if limit is not None:
            query += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description]
        return names, cursor.fetchall()
    finally:
        con.close()


def rows_as_csv(columns: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode("utf-8")
