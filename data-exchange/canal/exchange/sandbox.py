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
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from canal.platform.http.errors import CanalError

CHILD = Path(__file__).with_name("sandbox_child.py")
COHORT_COLUMN = "__canal_cohort"
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
MAX_ROWS = 1000


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
    sql: str  # the rewritten query, with the cohort column last
    aggregate_columns: list[int] = field(default_factory=list)  # output positions to noise
    count_columns: list[int] = field(default_factory=list)  # noised, then rounded to integers


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


def plan_query(sql: str, *, columns: set[str], sensitive: set[str], identifying: set[str]) -> Plan:
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
    aggregate_columns: list[int] = []
    for position, expr in enumerate(node.get("select_list") or []):
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
        if has_aggregate:
            aggregate_columns.append(position)
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
    rewritten = copy.deepcopy(statement)
    count_columns = _error_proof(rewritten["node"])
    rewritten["node"]["select_list"].append(
        {
            "class": "FUNCTION",
            "type": "FUNCTION",
            "alias": COHORT_COLUMN,
            "query_location": 0,
            "query_location_length": 0,
            "function_name": "count_star",
            "schema": "",
            "filter": None,
            "order_bys": {"type": "ORDER_MODIFIER", "orders": []},
            "distinct": False,
            "is_operator": False,
            "export_state": False,
            "catalog": "",
            "arguments": [],
            "qualified_name": {"path": ["count_star"]},
        }
    )
    document = json.dumps({"error": False, "statements": [rewritten]})
    text = _parser().execute("SELECT json_deserialize_sql(?::JSON)", [document]).fetchone()[0]  # type: ignore[index]
    return Plan(sql=str(text), aggregate_columns=aggregate_columns, count_columns=count_columns)


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


def _template(sql: str) -> list[dict[str, Any]]:
    raw = _parser().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]  # type: ignore[index]
    return json.loads(raw)["statements"][0]["node"]["select_list"]


_TEMPLATES: list[dict[str, Any]] = []


def _wrap(kind: int, child: dict[str, Any], alias: str = "") -> dict[str, Any]:
    """TRY(child) (kind 0) or CAST(child AS DOUBLE) (kind 1), built from a parsed template."""
    if not _TEMPLATES:
        _TEMPLATES.extend(_template("SELECT TRY(x), CAST(x AS DOUBLE)"))
    node = copy.deepcopy(_TEMPLATES[kind])
    if kind == 0:
        node["children"] = [child]
    else:
        node["child"] = child
    node["alias"] = alias
    return node


def _printed(node: dict[str, Any], item: dict[str, Any]) -> str:
    """DuckDB's default name of a select item (its printed form), for the alias it keeps
    once the item is wrapped."""
    bare = {
        **copy.deepcopy(node),
        "select_list": [{**item, "alias": ""}],
        "group_expressions": [],
        "group_sets": [],
        "where_clause": None,
        "having": None,
        "modifiers": [],
    }
    document = json.dumps({"error": False, "statements": [{"node": bare, "named_param_map": []}]})
    text = str(
        _parser().execute("SELECT json_deserialize_sql(?::JSON)", [document]).fetchone()[0]  # type: ignore[index]
    )
    text = text.removeprefix("SELECT ")
    return text.rsplit(" FROM ", 1)[0]


def _error_proof(node: dict[str, Any]) -> list[int]:
    """Rewrite a checked query so that no row's value can make it fail.

    A runtime error is an answer too: ``sum(income * 1e15)`` overflows only when someone in a
    one-person WHERE has a high income, ``CAST(x AS INT)`` fails only on some values — each a
    yes/no about a single person that the cohort rule never sees (the error comes before any
    group is counted). So the WHERE clause and every non-aggregate expression run inside
    ``TRY`` (an error becomes NULL), every aggregate sums ``TRY(CAST(arg AS DOUBLE))`` and
    returns a DOUBLE (no integer overflow, in or around the aggregate). Returns the positions
    of plain ``count`` columns (rounded back to integers on release).
    """
    if node.get("where_clause"):
        node["where_clause"] = _wrap(0, node["where_clause"])
    groups = node.get("group_expressions") or []
    for i, expr in enumerate(groups):
        if expr.get("class") not in ("COLUMN_REF", "CONSTANT"):
            groups[i] = _wrap(0, expr)
    counts: list[int] = []
    select = node.get("select_list") or []
    for position, item in enumerate(select):
        if item.get("class") in ("COLUMN_REF", "CONSTANT"):
            continue  # cannot fail; keeps DuckDB's own name
        alias = str(item.get("alias") or "") or _printed(node, item)
        if not _has_aggregate(item):
            inner = {**item, "alias": ""}
            select[position] = _wrap(0, inner, alias)
            continue
        if item.get("class") == "FUNCTION" and str(item.get("function_name", "")).lower() in (
            "count",
            "count_star",
        ):
            counts.append(position)
        select[position] = _proof_aggregates({**item, "alias": ""})
        select[position]["alias"] = alias
    return counts


def _as_double(expr: Any) -> Any:
    if isinstance(expr, list):
        return [_as_double(v) for v in expr]
    if not isinstance(expr, dict):
        return expr
    if expr.get("class") == "COLUMN_REF":
        return _wrap(0, _wrap(1, {**expr, "alias": ""}))
    return {k: _as_double(v) for k, v in expr.items()}


def _has_aggregate(expr: Any) -> bool:
    return any(
        n.get("class") == "FUNCTION" and str(n.get("function_name", "")).lower() in AGGREGATES
        for n in _nodes(expr)
    )


def _proof_aggregates(expr: Any) -> Any:
    if isinstance(expr, list):
        return [_proof_aggregates(v) for v in expr]
    if not isinstance(expr, dict):
        return expr
    if expr.get("class") == "FUNCTION" and str(expr.get("function_name", "")).lower() in AGGREGATES:
        name = str(expr.get("function_name", "")).lower()
        arguments = expr.get("arguments") or []
        wrapped = []
        for argument in arguments:
            inner = argument.get("expression", argument)
            # count: nothing inside can fail it; the others compute in DOUBLE from the column
            # on (no integer overflow), so no row's value can turn into an error or a NULL.
            inner = _wrap(0, inner) if name in ("count", "count_star") else _as_double(inner)
            wrapped.append({**argument, "expression": inner} if "expression" in argument else inner)
        expr["arguments"] = wrapped
        alias = expr.get("alias", "")
        expr["alias"] = ""
        return _wrap(1, expr, alias)
    return {k: _proof_aggregates(v) for k, v in expr.items()}


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


_spare: asyncio.subprocess.Process | None = None


async def _spawn() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        str(CHILD),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _take_process() -> asyncio.subprocess.Process:
    """A fresh sandbox process for one query (never reused), and a spare started for the next:
    starting Python and DuckDB costs ~150 ms, which the spare takes off the request."""
    global _spare
    process = _spare if _spare is not None and _spare.returncode is None else await _spawn()
    _spare = None
    return process


async def _prepare_spare() -> None:
    """Started after a query finished, so its start-up never competes with a running query."""
    global _spare
    if _spare is None or _spare.returncode is not None:
        _spare = await _spawn()


@dataclass
class Result:
    columns: list[str]
    rows: list[list[Any]]
    suppressed_groups: int


async def run_query(
    parquet: Path,
    plan: Plan,
    *,
    timeout: float,  # noqa: ASYNC109 — the sandbox's own wall-clock limit, enforced below
    memory_mb: int = 512,
    threads: int = 2,
) -> tuple[list[str], list[list[Any]]]:
    job = {
        "path": str(parquet),
        "sql": plan.sql,
        "memory_mb": memory_mb,
        "cpu_seconds": max(1, int(timeout * threads) + 1),
        "threads": threads,
        "max_rows": MAX_ROWS,
    }
    process = await _take_process()
    try:
        out, _ = await asyncio.wait_for(process.communicate(json.dumps(job).encode()), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
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
    if len(answer["rows"]) > MAX_ROWS:
        raise refused(
            "sql_too_many_groups",
            f"结果超过 {MAX_ROWS} 组,请减少分组。",
            f"The result has more than {MAX_ROWS} groups; group more coarsely.",
        )
    return answer["columns"], answer["rows"]


def _too_long(timeout: float) -> CanalError:
    return refused(
        "sql_timeout",
        f"查询超过 {timeout:g} 秒已被终止。",
        f"The query ran longer than {timeout:g} s and was stopped.",
    )


def release(
    columns: list[str],
    rows: list[list[Any]],
    plan: Plan,
    *,
    min_cohort: int,
    rng: random.Random | None = None,
) -> Result:
    """Drop small groups and the cohort column; add size-relative noise to aggregates."""
    rng = rng or random.SystemRandom()
    released: list[list[Any]] = []
    suppressed = 0
    for row in rows:
        cohort = int(row[-1] or 0)
        if cohort < min_cohort:
            suppressed += 1
            continue
        out = list(row[:-1])
        for i in plan.aggregate_columns:
            value = out[i]
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                out[i] = None
                continue
            noisy = value + rng.gauss(0.0, abs(value) / cohort)
            integral = isinstance(value, int) or i in plan.count_columns
            out[i] = round(noisy) if integral else round(noisy, 4)
        released.append(out)
    return Result(columns[:-1], released, suppressed)
