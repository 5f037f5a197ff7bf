"""Compute-to-data (数据可用不可见): check the buyer's SQL, run it in a sandbox, release only
aggregates of large enough groups.

Layers, each enough to stop a class of attack on its own:

1. **Parse, not pattern-match.** DuckDB's own parser (``json_serialize_sql``) turns the text
   into a tree; anything that is not one plain SELECT (COPY, ATTACH, INSTALL, LOAD, SET,
   PRAGMA, writes, several statements) does not even serialise and is refused.
2. **Shape rules on the tree.** FROM must be the table ``data`` itself — no table functions
   (``read_csv``), no joins, subqueries, CTEs or set operations (each could pad or reshape
   rows so that the cohort count below stops describing what an aggregate saw). No ``*``, no
   window functions. Every output column is an aggregate from an allow-list (count, sum, avg,
   stddev, variance — never min/max/first/list/string_agg, which return a row's value) or a
   GROUP BY column. Functions outside a small allow-list are refused.
3. **Sensitive and identifying columns.** Columns whose masking rule is not ``keep`` are not in
   the sandbox's copy at all; naming one gets a clear refusal. Columns that nearly identify a
   row (distinct ratio above 0.5) may be aggregated but not grouped or filtered on — that is
   how "GROUP BY a unique column" and "WHERE id <> 42" differencing are stopped.
4. **Cohorts.** ``count(*)`` is added to the query; groups below the provider's minimum
   cohort (default 10) are suppressed, whatever WHERE/LIMIT did. HAVING is refused (exact
   comparisons); WHERE, non-aggregate expressions and aggregate arguments are rewritten so
   no row can make the query fail (an error would be a yes/no about the rows a WHERE
   isolated).
5. **Differencing across queries.** Released aggregates get noise relative to the group size
   (σ = |value| / cohort), so two overlapping queries differing by one person disagree by about
   that person's share again; and each grant has a daily query budget, so averaging the
   noise away over many rewordings runs out. (A heuristic, not formal differential privacy;
   see docs/decisions/0031.)
6. **The process.** A separate ``python -I`` process with address-space, CPU-time and
   file-size limits, DuckDB with external access off except the one file, no extensions,
   configuration locked; killed at the wall-clock limit.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from canal.exchange import privacy
from canal.platform.http.errors import CanalError

CHILD = Path(__file__).with_name("sandbox_child.py")
AGGREGATES = {
    "count",
    "count_star",
    "sum",
    "avg",
    "mean",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
}
# Aggregates that hand back one row's value (or all of them) — named so the refusal can say so.
ROW_REVEALING = {
    "min",
    "max",
    "first",
    "last",
    "any_value",
    "arg_min",
    "arg_max",
    "argmin",
    "argmax",
    "min_by",
    "max_by",
    "list",
    "array_agg",
    "string_agg",
    "group_concat",
    "listagg",
    "mode",
    "median",
    "quantile",
    "quantile_cont",
    "quantile_disc",
    "histogram",
    "approx_quantile",
    "reservoir_quantile",
    "bit_or",
    "bit_and",
    "bool_or",
    "bool_and",
}
SCALARS = {
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "round",
    "abs",
    "floor",
    "ceil",
    "year",
    "month",
    "quarter",
    "date_trunc",
    "lower",
    "upper",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "length",
    "substr",
    "substring",
    "left",
    "~~",
    "!~~",
}
# Inside an aggregate: arithmetic with constants only (no floor/abs/% that build indicators).
ARITHMETIC = {"+", "-", "*", "/"}
MAX_SQL = 4000
MAX_ROWS = 1000  # groups released
# Groups a threshold query may hand to the DP layer (most are never released).
MAX_CANDIDATE_GROUPS = 100_000


def refused(code: str, zh: str, en: str, status: int = 422) -> CanalError:
    return CanalError(code, zh, en, status=status)


def _conditional() -> CanalError:
    return refused(
        "sql_conditional_aggregate",
        "聚合函数内只能是一列与常数的加减乘除,不能使用 CASE、比较、FILTER 或多列。",
        "Inside an aggregate only one column with + - * / and constants is allowed: no CASE, "
        "comparisons, FILTER or several columns.",
    )


@dataclass
class Plan:
    """What the sandbox runs: ``sql`` returns one row per group, the group keys (as text)
    first, then the exact statistics ``stats`` in order; ``spec`` says how they become the
    released answer (canal.exchange.privacy)."""

    sql: str
    spec: privacy.Spec | None = None
    stats: list[privacy.Statistic] = field(default_factory=list)


_parser_connection: duckdb.DuckDBPyConnection | None = None


def _parser() -> duckdb.DuckDBPyConnection:
    """One in-memory connection (no data, no file access) used only to parse and print SQL;
    the buyer's text is passed as a parameter, never executed here."""
    global _parser_connection
    if _parser_connection is None:
        _parser_connection = duckdb.connect(
            config={"enable_external_access": False, "autoload_known_extensions": False}
        )
    return _parser_connection.cursor()


def _parse(sql: str) -> dict[str, Any]:
    if not sql.strip():
        raise refused("sql_empty", "请输入查询语句。", "Enter a query.")
    if len(sql) > MAX_SQL:
        raise refused(
            "sql_too_long",
            f"查询语句不能超过 {MAX_SQL} 个字符。",
            f"Queries are limited to {MAX_SQL} characters.",
        )
    raw = _parser().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]  # type: ignore[index]
    tree = json.loads(raw)
    if tree.get("error"):
        message = str(tree.get("error_message", ""))
        if "Only SELECT" in message:
            raise refused(
                "sql_not_select",
                "只允许单条只读的 SELECT 查询;写入、COPY、ATTACH、INSTALL/LOAD、SET 等均不允许。",
                "Only one read-only SELECT is allowed; writes, COPY, ATTACH, INSTALL/LOAD and SET "
                "are not.",
            )
        raise refused(
            "sql_syntax",
            f"查询语句有语法错误:{message[:200]}",
            f"The query has a syntax error: {message[:200]}",
        )
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise refused("sql_one_statement", "一次只能提交一条查询。", "Submit exactly one query.")
    return statements[0]


def _nodes(node: Any):
    if isinstance(node, dict):
        if "class" in node:
            yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _column(node: dict[str, Any]) -> str:
    return str(node.get("column_names", [""])[-1])


class _Checker:
    def __init__(self, columns: set[str], sensitive: set[str], identifying: set[str]) -> None:
        self.columns = {c.lower(): c for c in columns}
        self.sensitive = {c.lower() for c in sensitive}
        self.identifying = {c.lower() for c in identifying}

    def column(self, node: dict[str, Any], *, where: str) -> str:
        name = _column(node).lower()
        if name in self.sensitive:
            raise refused(
                "sql_sensitive_column",
                f"列「{_column(node)}」含敏感数据,不能在计算中使用。",
                f"Column '{_column(node)}' holds sensitive data and cannot be used in queries.",
            )
        if name not in self.columns:
            raise refused(
                "sql_unknown_column",
                f"数据集中没有列「{_column(node)}」。",
                f"The dataset has no column '{_column(node)}'.",
            )
        if where in ("filter", "group") and name in self.identifying:
            raise refused(
                "sql_identifying_column",
                f"列「{_column(node)}」几乎能唯一确定一行,不能用于分组或筛选。",
                f"Column '{_column(node)}' almost identifies single rows; it cannot be used to "
                "group or filter.",
            )
        return name

    def aggregate_argument(self, node: dict[str, Any]) -> None:
        """What may stand inside an aggregate: one column, constants and + - * / only.

        Anything conditional (CASE, comparisons, FILTER, IS NULL …) or a second column would
        let an aggregate over a large cohort add up a single person's value — ``sum(CASE WHEN
        id = 42 THEN income END)`` — which the cohort count cannot see.
        """
        if node.get("filter"):
            raise _conditional()
        columns: set[str] = set()
        direct = [a.get("expression", a) for a in node.get("arguments") or []]
        for argument in direct:
            for inner in [argument, *_nodes(argument)]:
                if not isinstance(inner, dict) or "class" not in inner:
                    continue
                kind = inner.get("class")
                if kind == "COLUMN_REF":
                    columns.add(self.column(inner, where="aggregate"))
                elif kind == "FUNCTION":
                    inner_name = str(inner.get("function_name", "")).lower()
                    if inner_name in AGGREGATES:
                        raise refused(
                            "sql_nested_aggregate",
                            "不允许嵌套聚合。",
                            "Nested aggregates are not allowed.",
                        )
                    if inner_name not in ARITHMETIC:
                        raise _conditional()
                elif kind not in ("CONSTANT", "CAST", "TYPE"):
                    raise _conditional()
        if len(columns) > 1:
            raise _conditional()
        for argument in direct:
            _linear(argument)

    def expression(self, node: Any, *, where: str, in_aggregate: bool = False) -> bool:
        """Checks one expression; returns whether it contains an aggregate."""
        if not isinstance(node, dict):
            return False
        kind = node.get("class")
        if kind == "STAR":
            raise refused(
                "sql_star",
                "不允许 SELECT *:只能返回聚合结果。",
                "SELECT * is not allowed: only aggregate results are returned.",
            )
        if kind in ("SUBQUERY",):
            raise refused("sql_subquery", "不允许子查询。", "Subqueries are not allowed.")
        if kind == "WINDOW":
            raise refused("sql_window", "不允许窗口函数。", "Window functions are not allowed.")
        if kind == "COLUMN_REF":
            self.column(node, where=where)
            return False
        found = False
        if kind == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in ROW_REVEALING:
                raise refused(
                    "sql_row_aggregate",
                    f"函数 {name} 会返回单行的取值,不允许;可用 count、sum、avg、stddev。",
                    f"{name} returns a single row's value and is not allowed; use count, sum, "
                    "avg or stddev.",
                )
            if name in AGGREGATES:
                if in_aggregate:
                    raise refused(
                        "sql_nested_aggregate",
                        "不允许嵌套聚合。",
                        "Nested aggregates are not allowed.",
                    )
                if where == "filter":
                    raise refused(
                        "sql_aggregate_in_where",
                        "WHERE 中不能使用聚合函数。",
                        "Aggregates cannot be used in WHERE.",
                    )
                self.aggregate_argument(node)
                return True
            if name not in SCALARS:
                raise refused(
                    "sql_function",
                    f"不允许使用函数 {name}。",
                    f"The function {name} is not allowed.",
                )
        for child in node.values():
            for sub in child if isinstance(child, list) else [child]:
                if isinstance(sub, dict) and "class" not in sub and "expression" in sub:
                    sub = sub["expression"]
                if isinstance(sub, dict) and "class" in sub:
                    found |= self.expression(sub, where=where, in_aggregate=in_aggregate)
        return found


def check_query(
    sql: str, *, columns: set[str], sensitive: set[str], identifying: set[str]
) -> dict[str, Any]:
    """The parsed statement, once every shape rule holds (decision 0031)."""
    statement = _parse(sql)
    node = statement["node"]
    if node.get("type") != "SELECT_NODE":
        raise refused(
            "sql_set_operation",
            "不允许 UNION/INTERSECT/EXCEPT 等集合运算或递归查询。",
            "Set operations (UNION, INTERSECT, EXCEPT) and recursive queries are not allowed.",
        )
    if node.get("cte_map", {}).get("map"):
        raise refused("sql_cte", "不允许 WITH 子句。", "WITH clauses are not allowed.")
    source = node.get("from_table") or {}
    if (
        source.get("type") != "BASE_TABLE"
        or str(source.get("table_name", "")).lower() != "data"
        or (source.get("schema_name") or source.get("catalog_name"))
    ):
        if source.get("type") == "TABLE_FUNCTION":
            raise refused(
                "sql_table_function",
                "不允许读取文件或调用表函数(如 read_csv),只能查询 data 表。",
                "Reading files or calling table functions (such as read_csv) is not allowed; "
                "query the table data.",
            )
        raise refused(
            "sql_from",
            "只能查询 data 表(不允许连接、子查询或其他表)。",
            "Only the table data may be queried (no joins, subqueries or other tables).",
        )
    if source.get("sample") or node.get("sample") or node.get("qualify"):
        raise refused(
            "sql_sample", "不允许 SAMPLE/QUALIFY。", "SAMPLE and QUALIFY are not allowed."
        )
    # Shapes refused wherever they appear, before any per-column rule gives a vaguer reason.
    for found in _nodes(node):
        kind = found.get("class")
        if kind == "STAR" or (kind == "COLUMN_REF" and found.get("type") == "STAR"):
            raise refused(
                "sql_star",
                "不允许 SELECT *:只能返回聚合结果。",
                "SELECT * is not allowed: only aggregate results are returned.",
            )
        if kind == "SUBQUERY":
            raise refused("sql_subquery", "不允许子查询。", "Subqueries are not allowed.")
        if kind == "WINDOW":
            raise refused("sql_window", "不允许窗口函数。", "Window functions are not allowed.")
    checker = _Checker(columns, sensitive, identifying)
    group_names: set[str] = set()
    for expr in node.get("group_expressions") or []:
        if checker.expression(expr, where="group"):
            raise refused(
                "sql_group_aggregate",
                "GROUP BY 中不能使用聚合。",
                "GROUP BY cannot contain aggregates.",
            )
        group_names |= {_column(n).lower() for n in _nodes(expr) if n.get("class") == "COLUMN_REF"}
    if node.get("aggregate_handling") not in (None, "STANDARD_HANDLING"):
        raise refused(
            "sql_group_all", "请逐一写出 GROUP BY 的列。", "List the GROUP BY columns explicitly."
        )
    if node.get("where_clause"):
        checker.expression(node["where_clause"], where="filter")
    if node.get("having"):
        # HAVING compares exact, un-noised aggregates: a threshold search on it reads one
        # group's exact sum, and two such sums differing by one person give that person.
        raise refused(
            "sql_having",
            "不允许 HAVING:它比较的是未加噪声的精确聚合值。请在结果中自行筛选。",
            "HAVING is not allowed: it compares exact, un-noised aggregates. Filter the "
            "released results instead.",
        )
    for expr in node.get("select_list") or []:
        has_aggregate = checker.expression(expr, where="select")
        outside = _outside_aggregates(expr)
        if not has_aggregate and not outside <= group_names | {""}:
            raise refused(
                "sql_not_aggregate",
                "只能返回聚合结果:每个输出列须为聚合函数或 GROUP BY 的列。",
                "Only aggregate results can be returned: every output column must be an "
                "aggregate or a GROUP BY column.",
            )
        if has_aggregate and outside:
            raise refused(
                "sql_mixed_expression",
                "同一输出列不能既含聚合又在聚合外引用列。",
                "An output column cannot mix aggregates with columns outside them.",
            )
        if has_aggregate and not outside <= group_names:
            raise refused(
                "sql_not_aggregate",
                "聚合函数之外引用的列必须出现在 GROUP BY 中。",
                "Columns used outside aggregates must appear in GROUP BY.",
            )
        if not has_aggregate and not group_names:
            raise refused(
                "sql_not_aggregate",
                "只能返回聚合结果(如 count、sum、avg),不能返回原始行。",
                "Only aggregate results (such as count, sum, avg) can be returned, not rows.",
            )
    aliases = {str(e.get("alias", "")).lower() for e in node.get("select_list") or []} - {""}
    for modifier in node.get("modifiers") or []:
        if modifier.get("type") not in ("ORDER_MODIFIER", "LIMIT_MODIFIER", "DISTINCT_MODIFIER"):
            raise refused(
                "sql_modifier", "查询包含不支持的子句。", "The query has an unsupported clause."
            )
        for order in modifier.get("orders") or []:
            _check_order(order.get("expression") or {}, group_names, aliases)
        for expr in _nodes(modifier):
            if expr.get("class") == "COLUMN_REF" and _column(expr).lower() not in aliases:
                checker.column(expr, where="order")
    return statement


def _nonlinear() -> CanalError:
    return refused(
        "sql_nonlinear_aggregate",
        "聚合函数内的列只能乘以或除以常数(不能除以列、列乘列或转换为非浮点类型):"
        "这类表达式会放大单个人的取值。",
        "Inside an aggregate a column may only be multiplied or divided by constants (no "
        "division by the column, column times column, or casts to non-floating types): such "
        "expressions single out one person's value.",
    )


def _linear(node: Any) -> bool:
    """Whether ``node`` (inside an aggregate) depends on the column; refuses anything that is
    not linear in it. ``sum(1 / (income - 5000))`` has a pole at one person's exact income
    and its sign tells on which side it lies; ``sum(income * income * …)`` is dominated by the
    largest value — both hand back a single row's value the way ``max`` would."""
    if not isinstance(node, dict):
        return False
    node = node.get("expression", node) if "class" not in node else node
    kind = node.get("class")
    if kind == "CONSTANT":
        return False
    if kind == "COLUMN_REF":
        return True
    if kind == "CAST":
        target = str((node.get("type_expr") or {}).get("type_name", "")).lower()
        if target not in ("double", "float", "real", "float4", "float8"):
            raise _nonlinear()
        return _linear(node.get("child"))
    if kind == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        parts = [_linear(a) for a in node.get("children") or node.get("arguments") or []]
        if name in ("+", "-"):
            return any(parts)
        if name == "*" and sum(parts) <= 1:
            return any(parts)
        if name == "/" and len(parts) == 2 and not parts[1]:
            return parts[0]
        raise _nonlinear()
    raise _conditional()


def _check_order(expr: dict[str, Any], group_names: set[str], aliases: set[str]) -> None:
    """ORDER BY names an output column (alias, GROUP BY column or position), nothing else:
    ordering by an arbitrary expression compares exact, un-noised aggregates or evaluates
    expressions that could fail on one row's value."""
    if expr.get("class") == "CONSTANT":
        return
    if expr.get("class") == "COLUMN_REF" and _column(expr).lower() in group_names | aliases:
        return
    raise refused(
        "sql_order",
        "ORDER BY 只能使用输出列的别名、GROUP BY 的列或列序号。",
        "ORDER BY may only name an output column (its alias, a GROUP BY column or its position).",
    )


def _outside_aggregates(expr: Any) -> set[str]:
    """Column names referenced in ``expr`` but not inside an aggregate."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("class") == "FUNCTION"
                and str(node.get("function_name", "")).lower() in AGGREGATES
            ):
                return
            if node.get("class") == "COLUMN_REF":
                names.add(_column(node).lower())
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(expr)
    return names


# --- the differentially private plan ----------------------------------------------------------

DP_AGGREGATES = {"count_star": "rows", "count": "count", "sum": "sum", "avg": "avg", "mean": "avg"}
WHERE_PLACEHOLDER = "__canal_where__"


def _dp_refusal(code: str, zh: str, en: str) -> CanalError:
    return refused(code, zh, en)


def _bare_column(node: Any) -> str | None:
    """The column an aggregate argument names: ``col`` or ``CAST(col AS DOUBLE)``."""
    if not isinstance(node, dict):
        return None
    node = node.get("expression", node) if "class" not in node else node
    if node.get("class") == "COLUMN_REF":
        return _column(node)
    if node.get("class") == "CAST":
        target = str((node.get("type_expr") or {}).get("type_name", "")).lower()
        if target in ("double", "float", "real", "float4", "float8"):
            return _bare_column(node.get("child"))
    return None


def plan_query(
    sql: str,
    *,
    columns: set[str],
    sensitive: set[str],
    identifying: set[str],
    settings: privacy.Settings,
) -> Plan:
    """Check the buyer's SQL (decision 0031), then reduce it to what differential privacy
    answers (decision 0043): count(*), count(col), sum(col) and avg(col) of bare columns,
    grouped by bare columns, with any checked WHERE, ORDER BY output columns and LIMIT."""
    statement = check_query(sql, columns=columns, sensitive=sensitive, identifying=identifying)
    node = statement["node"]
    canonical = {c.lower(): c for c in columns}
    groups: list[str] = []
    for expr in node.get("group_expressions") or []:
        if expr.get("class") != "COLUMN_REF":
            raise _dp_refusal(
                "sql_dp_group",
                "只能按列本身分组(如 GROUP BY 街道),不能按表达式分组。",
                "Group by columns themselves (such as GROUP BY district), not by expressions.",
            )
        name = canonical[_column(expr).lower()]
        if name not in groups:
            groups.append(name)
    measures: list[privacy.Measure] = []
    outputs: list[tuple[str, int]] = []
    names: list[str] = []
    for item in node.get("select_list") or []:
        alias = str(item.get("alias") or "")
        if item.get("class") == "COLUMN_REF":
            name = canonical[_column(item).lower()]
            outputs.append(("group", groups.index(name)))
            names.append(alias or name)
            continue
        function = str(item.get("function_name", "")).lower()
        kind = DP_AGGREGATES.get(function) if item.get("class") == "FUNCTION" else None
        if kind is None:
            if item.get("class") == "FUNCTION" and function in AGGREGATES:
                raise _dp_refusal(
                    "sql_dp_aggregate",
                    f"{function} 不在可用的统计之列:只能计算 count、sum 和 avg。",
                    f"{function} is not offered: only count, sum and avg are answered.",
                )
            raise _dp_refusal(
                "sql_dp_expression",
                "每个输出列须是一个统计(如 sum(收入))或分组列本身;"
                "如需换算,请在拿到结果后自行计算。",
                "Each output column must be one statistic (such as sum(income)) or a group "
                "column itself; do any arithmetic on the answer afterwards.",
            )
        if item.get("distinct"):
            raise _dp_refusal(
                "sql_dp_distinct",
                "不支持 count(DISTINCT …)。",
                "count(DISTINCT …) is not offered.",
            )
        arguments = item.get("arguments") or []
        column: str | None = None
        if kind != "rows":
            column_name = _bare_column(arguments[0]) if len(arguments) == 1 else None
            if column_name is None:
                raise _dp_refusal(
                    "sql_dp_expression",
                    "统计函数内只能写一个列名(如 avg(收入)),不能写表达式;"
                    "如需换算,请在拿到结果后自行计算。",
                    "Name one column inside a statistic (such as avg(income)), not an "
                    "expression; do any arithmetic on the answer afterwards.",
                )
            column = canonical[column_name.lower()]
            if kind in ("sum", "avg") and column not in settings.bounds:
                raise _dp_refusal(
                    "sql_dp_no_bounds",
                    f"列「{column}」没有提供方声明的取值范围,不能求和或求平均。",
                    f"Column '{column}' has no range declared by the provider, so it cannot be "
                    "summed or averaged.",
                )
        measure = privacy.Measure(kind, column, alias)
        default = "count(*)" if kind == "rows" else f"{function}({column})"
        measures.append(measure)
        outputs.append(("measure", len(measures) - 1))
        names.append(alias or default)
    if not measures:
        raise _dp_refusal(
            "sql_not_aggregate",
            "只能返回聚合结果(如 count、sum、avg),不能返回原始行。",
            "Only aggregate results (such as count, sum, avg) can be returned, not rows.",
        )
    spec = privacy.Spec(groups, measures, outputs, names)
    keys = 1
    for g in groups:
        keys *= len(settings.categories.get(g, [])) or 1
    if keys > MAX_ROWS:
        raise refused(
            "sql_too_many_groups",
            f"结果超过 {MAX_ROWS} 组,请减少分组。",
            f"The result has more than {MAX_ROWS} groups; group more coarsely.",
        )
    lowered = [n.lower() for n in names]
    for modifier in node.get("modifiers") or []:
        if modifier.get("type") == "DISTINCT_MODIFIER":
            raise _dp_refusal(
                "sql_dp_distinct", "不支持 SELECT DISTINCT。", "SELECT DISTINCT is not offered."
            )
        if modifier.get("type") == "LIMIT_MODIFIER":
            limit, offset = modifier.get("limit"), modifier.get("offset")
            if offset or not _int_constant(limit):
                raise refused(
                    "sql_limit",
                    "LIMIT 只能是一个整数,且不支持 OFFSET。",
                    "LIMIT must be a whole number, without OFFSET.",
                )
            spec.limit = _int_constant(limit)
        for order in modifier.get("orders") or []:
            expr = order.get("expression") or {}
            position = _int_constant(expr)
            if position is not None and 1 <= position <= len(names):
                index = position - 1
            elif expr.get("class") == "COLUMN_REF" and _column(expr).lower() in lowered:
                index = lowered.index(_column(expr).lower())
            else:
                raise refused(
                    "sql_order",
                    "ORDER BY 只能使用输出列的别名、GROUP BY 的列或列序号。",
                    "ORDER BY may only name an output column (its alias, a GROUP BY column "
                    "or its position).",
                )
            spec.order.append((index, order.get("type") == "DESCENDING"))
    stats = privacy.statistics(spec)
    return Plan(sql=_statistics_sql(node, spec, stats, settings), spec=spec, stats=stats)


def _int_constant(node: Any) -> int | None:
    if isinstance(node, dict) and node.get("class") == "CONSTANT":
        literal = node.get("literal") or {}
        if str(literal.get("kind", "")).upper() in ("INTEGER", "BIGINT", "HUGEINT"):
            try:
                return int(str(literal.get("text") or literal.get("value")))
            except (TypeError, ValueError):
                return None
    return None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _statistics_sql(
    node: dict[str, Any],
    spec: privacy.Spec,
    stats: list[privacy.Statistic],
    settings: privacy.Settings,
) -> str:
    """The query the sandbox runs: per group, the key as text and the exact statistics of
    values clamped to the declared bounds. The buyer's WHERE is spliced in, inside ``TRY``
    (no row can make it fail, decision 0031 2a); rows outside declared categories are left out."""
    select = [f"CAST({_ident(g)} AS VARCHAR)" for g in spec.groups]
    for stat in stats:
        if stat.kind == "rows":
            select.append("count(*)")
            continue
        column = str(stat.column)
        as_double = f"TRY(CAST({_ident(column)} AS DOUBLE))"
        if stat.kind == "count":
            select.append(f"count({as_double if column in settings.bounds else _ident(column)})")
            continue
        lo, hi = settings.bounds[column]
        select.append(
            f"sum(CASE WHEN {as_double} IS NULL OR isnan({as_double}) THEN NULL "
            f"ELSE greatest({lo!r}::DOUBLE, least({hi!r}::DOUBLE, {as_double})) END)"
        )
    conditions = []
    if node.get("where_clause"):
        conditions.append(f"TRY({WHERE_PLACEHOLDER})")
    for g in spec.groups:
        declared = settings.categories.get(g)
        if declared:
            values = ", ".join(_literal(v) for v in declared)
            conditions.append(f"CAST({_ident(g)} AS VARCHAR) IN ({values})")
    text = f"SELECT {', '.join(select)} FROM data"
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    if spec.groups:
        text += " GROUP BY " + ", ".join(_ident(g) for g in spec.groups)
    if not node.get("where_clause"):
        return text
    template = json.loads(
        _parser().execute("SELECT json_serialize_sql(?)", [text]).fetchone()[0]  # type: ignore[index]
    )

    def splice(tree: Any) -> Any:
        if isinstance(tree, list):
            return [splice(v) for v in tree]
        if not isinstance(tree, dict):
            return tree
        if tree.get("class") == "COLUMN_REF" and _column(tree) == WHERE_PLACEHOLDER:
            return copy.deepcopy(node["where_clause"])
        return {k: splice(v) for k, v in tree.items()}

    document = json.dumps({"error": False, "statements": [splice(template["statements"][0])]})
    return str(
        _parser().execute("SELECT json_deserialize_sql(?::JSON)", [document]).fetchone()[0]  # type: ignore[index]
    )


def exact_statistics(rows: list[list[Any]], plan: Plan) -> dict[tuple[str, ...], dict[str, float]]:
    """The sandbox's rows as {group key: {statistic: exact value}} (parent process only)."""
    assert plan.spec is not None
    width = len(plan.spec.groups)
    out: dict[tuple[str, ...], dict[str, float]] = {}
    for row in rows:
        key = tuple("" if v is None else str(v) for v in row[:width])
        out[key] = {
            s.name: float(v) if v is not None else 0.0
            for s, v in zip(plan.stats, row[width:], strict=True)
        }
    return out


# The warm spare is a plain ``subprocess.Popen``, talked to from a worker thread: it belongs to
# no event loop. (It was an asyncio subprocess, whose pipes belong to the loop that made it:
# ``canal demo`` seeds its data in one ``asyncio.run`` and serves in another, and the first
# query after start-up met the seeding's spare and answered 500, "Event loop is closed".)
_spare: subprocess.Popen[bytes] | None = None
_spare_lock = threading.Lock()


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", str(CHILD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _take_process() -> subprocess.Popen[bytes]:
    """A fresh sandbox process for one query (never reused), and a spare started for the next:
    starting Python and DuckDB costs ~150 ms, which the spare takes off the request."""
    global _spare
    with _spare_lock:
        process, _spare = _spare, None
    if process is not None and process.poll() is None:
        return process
    return _spawn()


async def _prepare_spare() -> None:
    """Started after a query finished, so its start-up never competes with a running query."""
    global _spare
    with _spare_lock:
        if _spare is not None and _spare.poll() is None:
            return
        _spare = _spawn()


def _spare_usable() -> bool:
    return _spare is not None and _spare.poll() is None


async def run_query(
    parquet: Path,
    plan: Plan,
    *,
    timeout: float,  # noqa: ASYNC109 — the sandbox's own wall-clock limit, enforced below
    memory_mb: int = 512,
    threads: int = 2,
    max_rows: int = MAX_ROWS,
) -> tuple[list[str], list[list[Any]]]:
    job = {
        "path": str(parquet),
        "sql": plan.sql,
        "memory_mb": memory_mb,
        "cpu_seconds": max(1, int(timeout * threads) + 1),
        "threads": threads,
        "max_rows": max_rows,
    }
    process = _take_process()
    try:
        out, _ = await asyncio.to_thread(
            process.communicate, json.dumps(job).encode(), timeout=timeout
        )
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.communicate)
        raise _too_long(timeout) from None
    finally:
        await _prepare_spare()
    if process.returncode != 0 or not out:
        # Killed by the CPU or memory limit.
        raise (
            _too_long(timeout)
            if process.returncode in (-24, -9)
            else refused(
                "sql_failed", "查询未能完成。", "The query could not be completed.", status=422
            )
        )
    answer = json.loads(out)
    if answer.get("error") == "memory":
        raise refused(
            "sql_memory",
            "查询超出内存上限,请缩小范围。",
            "The query exceeded the memory limit; narrow it down.",
        )
    if answer.get("error"):
        # Only the kind of error goes back: DuckDB's messages quote the offending value
        # ("Could not convert string 'E0001' to INT32"), which would leak a raw row.
        kind = str(answer.get("detail", "")).split(":", 1)[0][:60] or "Error"
        raise refused(
            "sql_error",
            f"查询执行出错({kind}),请检查列类型与表达式。",
            f"The query failed ({kind}); check the column types and expressions.",
        )
    if len(answer["rows"]) > max_rows:
        raise refused(
            "sql_too_many_groups",
            f"结果超过 {max_rows} 组,请减少分组。",
            f"The result has more than {max_rows} groups; group more coarsely.",
        )
    return answer["columns"], answer["rows"]


def _too_long(timeout: float) -> CanalError:
    return refused(
        "sql_timeout",
        f"查询超过 {timeout:g} 秒已被终止。",
        f"The query ran longer than {timeout:g} s and was stopped.",
    )
