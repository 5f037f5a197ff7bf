"""The buyers' point-and-click query builder: a measure, an aggregate, an optional grouping by
a public-category column and simple filters become the SQL the sandbox already accepts
(``sandbox.plan_query`` checks it like any typed query; nothing here widens what is answered).
Column types in plain words (文本/整数/小数/日期) instead of DuckDB's names."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from canal.platform.http.errors import CanalError, FieldError, invalid

AGGREGATES = {
    "count": ("计数", "Count"),
    "sum": ("合计", "Sum"),
    "avg": ("平均", "Average"),
}
OPERATORS = {
    "=": ("等于", "equals"),
    "!=": ("不等于", "is not"),
    ">": ("大于", "greater than"),
    ">=": ("不小于", "at least"),
    "<": ("小于", "less than"),
    "<=": ("不大于", "at most"),
}
TYPE_WORDS = {
    "text": ("文本", "Text"),
    "integer": ("整数", "Whole number"),
    "decimal": ("小数", "Decimal number"),
    "date": ("日期", "Date"),
    "boolean": ("是/否", "Yes/no"),
}
MAX_FILTERS = 3
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT")
_INTEGER_U = ("UINTEGER", "UBIGINT", "INT")
_DECIMAL = ("FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC")


def type_kind(type_name: str) -> str:
    """DuckDB's type name in one of the plain kinds of ``TYPE_WORDS``."""
    name = str(type_name).upper()
    if name.startswith(_DECIMAL):
        return "decimal"
    if name.startswith(_INTEGER) or name.startswith(_INTEGER_U):
        return "integer"
    if name.startswith(("DATE", "TIMESTAMP", "TIME")):
        return "date"
    if name.startswith("BOOL"):
        return "boolean"
    return "text"


@dataclass
class Filter:
    column: str = ""
    op: str = "="
    value: str = ""


@dataclass
class BuilderInput:
    aggregate: str = "count"  # count | sum | avg
    measure: str = ""  # a numeric column for sum/avg; empty: count rows
    group_by: str = ""  # a column with public categories, or empty
    filters: list[Filter] = field(default_factory=list)


def _err(name: str, code: str, zh: str, en: str) -> FieldError:
    return FieldError(name, code, zh, en)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str, kind: str) -> str | None:
    """The value as an SQL literal for a column of ``kind``; None if it does not fit."""
    text = value.strip()
    if kind in ("integer", "decimal"):
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        if kind == "integer" and number.is_integer():
            return str(int(number))
        return repr(number)
    if "\x00" in text or len(text) > 200:
        return None
    return "'" + text.replace("'", "''") + "'"


def build_sql(data: BuilderInput, columns: list[dict[str, Any]]) -> str:
    """The SQL for the builder's choices over ``columns`` (what the sandbox holds: name,
    ``kind``, ``categories``). Refuses choices the form could not have offered, per field."""
    by_name = {c["name"]: c for c in columns}
    errors: list[FieldError] = []
    if data.aggregate not in AGGREGATES:
        errors.append(
            _err(
                "aggregate",
                "builder_aggregate",
                "请选择计数、合计或平均。",
                "Choose count, sum or average.",
            )
        )
    measure = data.measure.strip()
    if data.aggregate in ("sum", "avg"):
        column = by_name.get(measure)
        if column is None or column["kind"] not in ("integer", "decimal"):
            errors.append(
                _err(
                    "measure",
                    "builder_measure",
                    "合计和平均需要选择一个数值列。",
                    "A sum or an average needs a numeric column.",
                )
            )
    elif measure and measure not in by_name:
        errors.append(
            _err("measure", "builder_measure", "请选择可计算的列。", "Choose a column of the data.")
        )
    group = data.group_by.strip()
    if group and not (group in by_name and by_name[group].get("categories")):
        errors.append(
            _err(
                "group_by",
                "builder_group",
                "只能按提供方公开了分类的列分组。",
                "Group only by a column whose categories the provider made public.",
            )
        )
    conditions: list[str] = []
    for i, flt in enumerate(data.filters[:MAX_FILTERS], start=1):
        if not flt.column.strip():
            continue
        column = by_name.get(flt.column.strip())
        literal = _literal(flt.value, column["kind"]) if column else None
        if column is None or flt.op not in OPERATORS or literal is None:
            errors.append(
                _err(
                    f"filter-value-{i}",
                    "builder_filter",
                    f"第 {i} 个筛选条件无效:请选择列和比较方式,并填写与该列类型相符的值。",
                    f"Filter {i} is not valid: choose a column and a comparison, and give a "
                    "value of the column's type.",
                )
            )
            continue
        conditions.append(f"{_ident(column['name'])} {flt.op} {literal}")
    if len(data.filters) > MAX_FILTERS:
        errors.append(
            _err(
                "filters",
                "builder_filters",
                f"最多 {MAX_FILTERS} 个筛选条件。",
                f"At most {MAX_FILTERS} filters.",
            )
        )
    if errors:
        raise invalid(errors)
    if data.aggregate == "count":
        statistic = f"count({_ident(measure)})" if measure else "count(*)"
    else:
        statistic = f"{data.aggregate}({_ident(measure)})"
    select = f"{_ident(group)}, {statistic}" if group else statistic
    sql = f"SELECT {select} FROM data"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    if group:
        sql += f" GROUP BY {_ident(group)} ORDER BY {_ident(group)}"
    return sql


def no_columns() -> CanalError:
    return CanalError(
        "builder_unavailable",
        "该授权当前不能计算查询。",
        "This grant cannot answer queries now.",
        status=409,
    )
