"""Privacy attacks on compute-to-data (数据可用不可见), through the API as a buyer would try
them, plus the sandbox process on its own (defence in depth: even a query that slipped past
the checker cannot read files, load extensions or run for ever)."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from canal.exchange import sandbox
from canal.exchange.tables import Dataset
from canal.platform import db
from canal.platform.http.errors import CanalError
from tests.exchange.helpers import active_grant, approved_provider, make_org, published_dataset
from tests.factories import sign_in

STREETS = ["古楼街道", "柳园街道", "新区街道", "湖西街道"]


def residents_csv(rows: int = 200, seed: int = 11) -> tuple[bytes, list[dict[str, object]]]:
    """One row per person: a unique number, street, age, income, mobile."""
    rng = random.Random(seed)
    people = []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["居民编号", "街道", "年龄", "月收入", "手机号"])
    for i in range(rows):
        person = {
            "id": f"R{i:05d}",
            "street": STREETS[i % len(STREETS)],
            "age": rng.randint(20, 75),
            "income": rng.randint(2000, 30000),
            "mobile": f"139{rng.randint(10_000_000, 99_999_999)}",
        }
        people.append(person)
        writer.writerow(person.values())
    return out.getvalue().encode(), people


@pytest.fixture
async def setup(client, op):
    provider = await approved_provider("人口数据公司")
    buyer = await make_org("研究机构")
    data, people = residents_csv()
    dataset_id = await published_dataset(
        client,
        provider,
        op,
        data=data,
        title="居民收入抽样",
        sensitivity="sensitive",
        delivery_modes=["compute"],
    )
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["compute"])
    await sign_in(client, buyer.owner)
    url = f"{buyer.api}/grants/{grant_id}/queries"

    async def ask(sql: str):
        return await client.post(url, json={"sql": sql})

    return ask, people, dataset_id, grant_id


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM data", "sql_star"),
        ("SELECT 月收入 FROM data LIMIT 1", "sql_not_aggregate"),
        ("SELECT 月收入, count(*) FROM data", "sql_not_aggregate"),
        ("SELECT sum(月收入) FROM (SELECT * FROM data LIMIT 1)", "sql_from"),
        (
            "SELECT sum(月收入) FROM data WHERE 年龄 IN (SELECT 年龄 FROM data LIMIT 1)",
            "sql_subquery",
        ),
        ("SELECT 居民编号, sum(月收入) FROM data GROUP BY 居民编号", "sql_identifying_column"),
        ("SELECT sum(月收入) FROM data WHERE 居民编号 <> 'R00001'", "sql_identifying_column"),
        ("SELECT max(月收入) FROM data", "sql_row_aggregate"),
        ("SELECT string_agg(街道, ',') FROM data", "sql_row_aggregate"),
        ("SELECT count(DISTINCT 手机号) FROM data", "sql_sensitive_column"),
        ("SELECT sum(月收入) OVER () FROM data", "sql_window"),
        ("SELECT sum(月收入) FROM data WHERE 月收入 = 12345", "sql_identifying_column"),
        ("WITH t AS (SELECT * FROM data) SELECT count(*) FROM t", "sql_cte"),
        ("SELECT count(*) FROM data UNION ALL SELECT 1", "sql_set_operation"),
        ("SELECT count(*) FROM read_csv('/etc/passwd')", "sql_table_function"),
        ("SELECT count(*) FROM data, data AS d2", "sql_from"),
        ("COPY data TO '/tmp/leak.csv'", "sql_not_select"),
        ("ATTACH '/tmp/other.db' AS o", "sql_not_select"),
        ("INSTALL httpfs", "sql_not_select"),
        ("LOAD httpfs", "sql_not_select"),
        ("SET enable_external_access = true", "sql_not_select"),
        ("DELETE FROM data", "sql_not_select"),
        ("SELECT count(*) FROM data; SELECT * FROM data", "sql_one_statement"),
        ("SELECT getenv('HOME'), count(*) FROM data", "sql_function"),
        ("SELECT count(*) FROM data USING SAMPLE 1 ROWS", "sql_sample"),
        # Conditional aggregates: one person's value summed inside a large cohort.
        (
            "SELECT sum(CASE WHEN 居民编号 = 'R00001' THEN 月收入 ELSE 0 END) FROM data",
            "sql_conditional_aggregate",
        ),
        ("SELECT sum(月收入) FILTER (WHERE 年龄 = 37) FROM data", "sql_conditional_aggregate"),
        ("SELECT sum(月收入 * (年龄 = 37)::INT) FROM data", "sql_conditional_aggregate"),
        ("SELECT sum(月收入 * (1 // (abs(年龄 - 37) + 1))) FROM data", "sql_conditional_aggregate"),
        ("SELECT avg(月收入 * 年龄) FROM data", "sql_conditional_aggregate"),
        ("SELECT sum(月收入) FROM data GROUP BY 居民编号 = 'R00001'", "sql_identifying_column"),
        # HAVING compares exact sums: a threshold search reads one group's un-noised total.
        (
            "SELECT count(*) FROM data WHERE 街道 = '古楼街道' HAVING sum(月收入) > 1000",
            "sql_having",
        ),
        # ORDER BY an expression compares exact aggregates / evaluates unchecked functions.
        ("SELECT 街道, count(*) FROM data GROUP BY 街道 ORDER BY sum(月收入)", "sql_order"),
        ("SELECT 街道, count(*) FROM data GROUP BY 街道 ORDER BY getenv('HOME')", "sql_order"),
        # A pole at one exact value (its sign says which side) / powers dominated by the max.
        ("SELECT sum(1 / (月收入 - 12345)) FROM data", "sql_nonlinear_aggregate"),
        ("SELECT sum(月收入 * 月收入 * 月收入 * 月收入) FROM data", "sql_nonlinear_aggregate"),
        ("SELECT sum(CAST(月收入 AS HUGEINT) * 100) FROM data", "sql_nonlinear_aggregate"),
        ("SELECT 街道, count(*) * 年龄 FROM data GROUP BY 街道, 年龄", "sql_mixed_expression"),
    ],
)
async def test_attack_is_refused_with_a_reason(setup, sql, code):
    ask, *_ = setup
    response = await ask(sql)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == code
    assert body.get("detail") or body.get("title") or body.get("message")


async def test_error_messages_do_not_quote_values(tmp_path):
    import duckdb

    path = tmp_path / "t.parquet"
    duckdb.connect().execute(f"COPY (SELECT '古楼街道' AS s FROM range(20)) TO '{path}'")
    # An unchecked plan (the checker would make this query error-proof): the sandbox still
    # names only the kind of error, never the value DuckDB quotes.
    with pytest.raises(CanalError) as caught:
        await sandbox.run_query(
            path, sandbox.Plan(sql="SELECT CAST(s AS INT) FROM data"), timeout=10
        )
    assert caught.value.code == "sql_error" and "古楼" not in caught.value.en + caught.value.zh
    assert "Conversion Error" in caught.value.en


async def test_row_values_cannot_raise_errors_that_answer_yes_or_no(setup):
    """An error is an answer: if a WHERE failed only on some person's value, the failure
    would say so past every noise. WHERE runs inside TRY: each such query is answered."""
    ask, people, *_ = setup
    victim = people[0]
    narrow = f"街道 = '{victim['street']}' AND 年龄 = {victim['age']}"
    for predicate in (
        "CAST(街道 AS INTEGER) > 1",
        "街道 = 5",
        f"年龄 * 922337203685477580 > {victim['age']}",
    ):
        response = await ask(f"SELECT count(*) FROM data WHERE {narrow} AND {predicate}")
        assert response.status_code == 201, response.text
    # Arithmetic inside a statistic is refused the same way whatever the constant.
    codes = {
        (await ask(f"SELECT sum(月收入 * {k}) FROM data WHERE {narrow}")).json()["code"]
        for k in (1, 10**14, 10**16)
    }
    assert codes == {"sql_dp_expression"}


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT stddev(月收入) FROM data", "sql_dp_aggregate"),
        ("SELECT 街道, count(*) * 2 FROM data GROUP BY 街道", "sql_dp_expression"),
        ("SELECT count(DISTINCT 街道) FROM data", "sql_dp_distinct"),
        (
            "SELECT substr(街道, 1, 2), count(*) FROM data GROUP BY substr(街道, 1, 2)",
            "sql_dp_group",
        ),
    ],
)
async def test_what_differential_privacy_does_not_answer_is_refused_plainly(setup, sql, code):
    ask, *_ = setup
    response = await ask(sql)
    assert response.status_code == 422 and response.json()["code"] == code, response.text
    assert "sql_" not in response.json()["detail_zh"] + response.json()["detail_en"]


async def test_groups_come_from_the_public_categories_and_nothing_counts_the_hidden(setup):
    ask, people, *_ = setup
    # Street is a public category: every street is answered, and no count of anything hidden.
    response = await ask(
        "SELECT 街道, count(*) AS n, avg(月收入) AS income FROM data GROUP BY 街道"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert sorted(r[0] for r in body["rows"]) == sorted(STREETS)
    assert "suppressed_groups" not in body
    # A street's noisy count may fall under the minimum cohort now and then (ε 0.25 over
    # three statistics: a count's noise scale is 12 against ~50 people), which hides its
    # values: only the groups shown carry margins.
    shown = [m for m, hidden in zip(body["margins"], body["hidden"], strict=True) if not hidden]
    assert shown and all(m[1] >= 1 for m in shown)
    # Age has no declared categories: groups show only above a DP threshold — with 200
    # people spread over 56 ages, none does.
    by_age = await ask("SELECT 年龄, count(*) FROM data GROUP BY 年龄")
    assert by_age.status_code == 201 and by_age.json()["rows"] == []
    # A filter that narrows to one person: the value is hidden, not zero, not exact.
    target = people[0]
    narrow = await ask(
        f"SELECT sum(月收入) FROM data WHERE 街道 = '{target['street']}' AND 年龄 = {target['age']}"
    )
    assert narrow.status_code == 201
    assert narrow.json()["rows"] in ([[None]],) or narrow.json()["margins"][0][0] > 1000


async def test_differencing_gets_noise_not_a_person(setup):
    ask, people, *_ = setup
    street = STREETS[0]
    victim = next(p for p in people if p["street"] == street)
    exact_all = sum(p["income"] for p in people if p["street"] == street)
    first = await ask(f"SELECT sum(月收入) FROM data WHERE 街道 = '{street}'")
    second = await ask(
        f"SELECT sum(月收入) FROM data WHERE 街道 = '{street}' AND 年龄 <> {victim['age']}"
    )
    assert first.status_code == 201 and second.status_code == 201
    noisy_all, noisy_rest = first.json()["rows"][0][0], second.json()["rows"][0][0]
    assert noisy_all != exact_all  # released aggregates carry noise
    # The noise is sized to one person at the top of the declared range, not to the sum.
    assert first.json()["margins"][0][0] >= 30000
    exact_difference = sum(
        p["income"] for p in people if p["street"] == street and p["age"] == victim["age"]
    )
    assert noisy_all - noisy_rest != exact_difference


async def test_many_queries_run_out_of_budget(setup):
    ask, _, dataset_id, _ = setup
    async with db.platform_scope():
        await Dataset.update({Dataset.daily_query_budget: 3}).where(Dataset.id == dataset_id)
    for i in range(3):
        sql = f"SELECT 街道, count(*) FROM data WHERE 年龄 > {i} GROUP BY 街道"
        assert (await ask(sql)).status_code == 201
    refused = await ask("SELECT 街道, count(*) FROM data GROUP BY 街道")
    assert refused.status_code == 429 and refused.json()["code"] == "query_budget_exhausted"


async def test_every_query_is_recorded_with_its_result_size(client, setup):
    ask, _, _, grant_id = setup
    await ask("SELECT 街道, count(*) FROM data GROUP BY 街道")
    await ask("SELECT * FROM data")
    from canal.exchange.tables import QueryRun

    async with db.platform_scope():
        runs = await QueryRun.select().where(QueryRun.grant_id == grant_id)
    statuses = sorted((r["status"], r["result_rows"], r["error_code"]) for r in runs)
    assert ("done", 4, "") in statuses and ("refused", 0, "sql_star") in statuses
    assert {r["epsilon"] for r in runs} == {0.0, 0.25}


# --- the sandbox process on its own ----------------------------------------------------------


@pytest.fixture(scope="module")
def parquet(tmp_path_factory) -> Path:
    import duckdb

    path = tmp_path_factory.mktemp("sandbox") / "d.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS i, range % 5 AS g FROM range(1000)) TO '{path}'")
    con.close()
    return path


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/canal-sandbox-leak.csv'",
        "ATTACH '/tmp/canal-sandbox.db' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT count(*) FROM read_parquet('/etc/hostname')",
    ],
)
async def test_sandbox_blocks_files_and_extensions_even_unchecked(parquet, sql):
    with pytest.raises(CanalError) as caught:
        await sandbox.run_query(parquet, sandbox.Plan(sql=sql), timeout=10)
    assert caught.value.code == "sql_error"
    assert not Path("/tmp/canal-sandbox-leak.csv").exists()  # noqa: S108, ASYNC240


async def test_sandbox_stops_a_query_that_runs_too_long(parquet):
    slow = sandbox.Plan(sql="SELECT count(*) FROM range(100000000000) a")
    with pytest.raises(CanalError) as caught:
        await sandbox.run_query(parquet, slow, timeout=1.0)
    assert caught.value.code == "sql_timeout"


async def test_sandbox_answers_a_plain_aggregate(parquet):
    from canal.exchange import privacy

    settings = privacy.Settings(1, {}, {"g": ["0", "1", "2", "3", "4"]}, True)
    plan = sandbox.plan_query(
        "SELECT g, count(*) AS n FROM data GROUP BY g ORDER BY g",
        columns={"i", "g"},
        sensitive=set(),
        identifying={"i"},
        settings=settings,
    )
    _, rows = await sandbox.run_query(parquet, plan, timeout=10)
    assert plan.spec is not None
    exact = sandbox.exact_statistics(rows, plan)
    assert exact[("0",)]["rows:"] == 200
    result = privacy.release(plan.spec, exact, settings, epsilon=1.0, min_cohort=10)
    assert result.names == ["g", "n"] and [r[0] for r in result.rows] == ["0", "1", "2", "3", "4"]
    assert all(abs(r[1] - 200) <= 15 for r in result.rows)


async def test_a_spare_from_a_closed_event_loop_is_not_reused(parquet):
    """``canal demo`` seeds in one event loop and serves in another: the spare sandbox made
    while seeding belonged to the closed loop, and the first query answered 500 (RuntimeError:
    Event loop is closed)."""
    import asyncio

    await asyncio.to_thread(asyncio.run, sandbox._prepare_spare())
    assert sandbox._spare is not None
    plan = sandbox.Plan(sql="SELECT count(*) FROM data")
    _, rows = await sandbox.run_query(parquet, plan, timeout=10)
    assert rows == [[1000]]
    assert sandbox._spare_usable()  # the new spare belongs to this loop


def test_checker_allows_plain_statistics_and_refuses_arithmetic_inside():
    from canal.exchange import privacy

    settings = privacy.Settings(1, {"v": (0.0, 100.0)}, {"g": ["1", "2"]}, True)
    plan = sandbox.plan_query(
        "SELECT g, sum(v) AS t, count(i), avg(CAST(v AS DOUBLE)) FROM data "
        "WHERE g IN (1, 2) AND v > 10 GROUP BY g ORDER BY t DESC LIMIT 1",
        columns={"i", "g", "v"},
        sensitive=set(),
        identifying={"i"},
        settings=settings,
    )
    assert plan.spec is not None and plan.spec.limit == 1 and plan.spec.order == [(1, True)]
    assert "least(" in plan.sql and "100.0" in plan.sql and "TRY(" in plan.sql
    for sql, code in [
        ("SELECT sum(v * 0.68) FROM data", "sql_dp_expression"),
        ("SELECT sum(v) / 1000 FROM data", "sql_dp_expression"),
        ("SELECT sum(i) FROM data", "sql_dp_no_bounds"),
    ]:
        with pytest.raises(CanalError) as caught:
            sandbox.plan_query(
                sql, columns={"i", "g", "v"}, sensitive=set(), identifying=set(), settings=settings
            )
        assert caught.value.code == code
