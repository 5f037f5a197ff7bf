"""Profiling throughput: a 1,000,000-row CSV (UTF-8 and GB18030) through the same steps a new
dataset version takes — encoding detection, the row-width check with Python's csv module,
DuckDB's conversion to Parquet, then the profile (types, nulls, distinct, min/max, personal
data detection on a sample per column). Reports rows/s per step and in total.

    .venv/bin/python bench/profiling.py          (BENCH_ROWS to change the size;
                                                  --smoke: 5,000 rows)

Goal: ≥ 100,000 rows/s end to end for the UTF-8 file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import benchkit
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = benchkit.size(int(os.environ.get("BENCH_ROWS", "1000000")), 5_000)


SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹")
GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚英华玉兰红梅建国志文"
    "斌宇浩凯鹏飞俊峰辉健亮波宁琳雪晶燕萍倩婷欣怡佳慧嘉瑞思源晨曦涵"
)[:60]


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(f"'{x}'" for x in items) + "]"


def make_csv(path: Path) -> None:
    assert len(SURNAMES) == 30 and len(GIVEN) == 60, (len(SURNAMES), len(GIVEN))
    con = duckdb.connect()
    con.execute(
        f"""COPY (
          SELECT 'C' || lpad((i % 50000)::VARCHAR, 6, '0') AS 企业编号,
                 ['轴承制造', '钢管加工', '软件信息', '食品加工'][1 + i % 4] AS 行业,
                 '2025-' || lpad((1 + i % 12)::VARCHAR, 2, '0') AS 月份,
                 round(1000 + random() * 50000, 1) AS 用电量,
                 round(random() * 30000, 2) AS 电费,
                 '13' || lpad((i * 7919 % 1000000000)::VARCHAR, 9, '0') AS 联系电话,
                 -- 30 surnames x 60 x 60 given-name characters: 108,000 distinct names, so
                 -- the column reads as names at every size (a handful of names repeated over
                 -- a million rows is a category, not people: profiling's distinct-value rule).
                 {_sql_list(SURNAMES)}[1 + i % 30] || {_sql_list(GIVEN)}[1 + (i // 30) % 60]
                     || {_sql_list(GIVEN)}[1 + (i // 1800) % 60] AS 联系人
          FROM range({ROWS}) t(i)
        ) TO '{path}' (HEADER, DELIMITER ',')"""
    )
    con.close()


def main() -> int:
    from canal.exchange import profiling

    results = {}
    with tempfile.TemporaryDirectory(prefix="canal-bench-profile-") as tmp:
        utf8 = Path(tmp) / "utf8.csv"
        make_csv(utf8)
        gbk = Path(tmp) / "gbk.csv"
        gbk.write_bytes(utf8.read_text(encoding="utf-8").encode("gb18030"))
        size_mb = utf8.stat().st_size / 1e6
        for name, src in (("utf8", utf8), ("gb18030", gbk)):
            out = Path(tmp) / f"{name}.parquet"
            began = time.perf_counter()
            encoding = profiling.normalise(src, "csv", out)
            normalised = time.perf_counter() - began
            began = time.perf_counter()
            summary = profiling.profile(out)
            profiled = time.perf_counter() - began
            assert summary["rows"] == ROWS, summary["rows"]
            kinds = {c["name"]: c["pii"] for c in summary["columns"]}
            assert kinds["联系电话"] == "mobile" and kinds["联系人"] == "name", kinds
            total = normalised + profiled
            results[name] = {
                "encoding": encoding,
                "normalise_s": round(normalised, 2),
                "profile_s": round(profiled, 2),
                "rows_per_s": round(ROWS / total),
            }
            print(
                f"{name}: {size_mb:.0f} MB, {ROWS:,} rows: normalise {normalised:.2f} s, "
                f"profile {profiled:.2f} s, {ROWS / total:,.0f} rows/s",
                file=sys.stderr,
            )
    goal = results["utf8"]["rows_per_s"] >= 100_000
    return benchkit.finish(
        {
            "bench": "profiling",
            "rows": ROWS,
            "csv_mb": round(size_mb, 1),
            **results,
            "goal_met": goal,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
