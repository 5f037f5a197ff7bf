"""The buyers' point-and-click query builder (issue #12): a measure, count/sum/avg, a grouping
by a public-category column and simple filters become the SQL the sandbox already accepts; the
SQL textarea stays as the advanced view; column types are shown in plain words."""

from __future__ import annotations

import pytest

from canal.exchange import builder
from canal.platform.http.errors import CanalError
from tests.exchange.helpers import active_grant, approved_provider, make_org, published_dataset
from tests.factories import csrf_from, sign_in

COLUMNS = [
    {"name": "行业", "kind": "text", "categories": ["机械制造", "软件信息"]},
    {"name": "企业编号", "kind": "text", "categories": []},
    {"name": "用电量", "kind": "decimal", "categories": []},
    {"name": "年份", "kind": "integer", "categories": []},
]


def test_type_names_in_plain_words():
    assert builder.type_kind("VARCHAR") == "text"
    assert builder.type_kind("BIGINT") == "integer"
    assert builder.type_kind("DOUBLE") == "decimal"
    assert builder.type_kind("DECIMAL(18,2)") == "decimal"
    assert builder.type_kind("DATE") == "date"
    assert builder.type_kind("TIMESTAMP WITH TIME ZONE") == "date"
    assert builder.TYPE_WORDS["text"][0] == "文本" and builder.TYPE_WORDS["decimal"][0] == "小数"


def test_choices_become_sql():
    assert builder.build_sql(builder.BuilderInput(), COLUMNS) == "SELECT count(*) FROM data"
    sql = builder.build_sql(
        builder.BuilderInput(
            "avg",
            "用电量",
            "行业",
            [builder.Filter("年份", ">=", "2024"), builder.Filter("企业编号", "!=", "E'1")],
        ),
        COLUMNS,
    )
    assert sql == (
        'SELECT "行业", avg("用电量") FROM data WHERE "年份" >= 2024 AND "企业编号" != \'E\'\'1\' '
        'GROUP BY "行业" ORDER BY "行业"'
    )


@pytest.mark.parametrize(
    ("choices", "field", "code"),
    [
        (builder.BuilderInput("sum", "行业"), "measure", "builder_measure"),
        (builder.BuilderInput("avg", ""), "measure", "builder_measure"),
        (builder.BuilderInput("median", "用电量"), "aggregate", "builder_aggregate"),
        (builder.BuilderInput("count", "", "企业编号"), "group_by", "builder_group"),
        (
            builder.BuilderInput("count", "", "", [builder.Filter("年份", ">", "1 OR 1=1")]),
            "filter-value-1",
            "builder_filter",
        ),
        (
            builder.BuilderInput("count", "", "", [builder.Filter("年份", "LIKE", "1")]),
            "filter-value-1",
            "builder_filter",
        ),
        (
            builder.BuilderInput("count", "", "", [builder.Filter("手机号", "=", "1")]),
            "filter-value-1",
            "builder_filter",
        ),
    ],
)
def test_choices_the_form_could_not_offer_are_refused_per_field(choices, field, code):
    with pytest.raises(CanalError) as caught:
        builder.build_sql(choices, COLUMNS)
    [error] = caught.value.errors
    assert (error.field, error.code) == (field, code)


@pytest.fixture
async def grant(client, op):
    provider = await approved_provider("点选数据")
    buyer = await make_org("点选买方")
    dataset_id = await published_dataset(
        client,
        provider,
        op,
        privacy={"max_rows_per_person": 12, "epsilon_per_query": 5, "epsilon_total": 100},
        delivery_modes=["compute"],
    )
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["compute"])
    await sign_in(client, buyer.owner)
    return buyer, grant_id


async def test_the_api_builds_and_answers_like_a_typed_query(client, grant):
    buyer, grant_id = grant
    url = f"{buyer.api}/grants/{grant_id}/queries/build"
    answer = await client.post(
        url,
        json={
            "aggregate": "avg",
            "measure": "用电量",
            "group_by": "行业",
            "filters": [{"column": "月份", "op": "=", "value": "2025-03"}],
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["sql"] == (
        'SELECT "行业", avg("用电量") FROM data WHERE "月份" = \'2025-03\' '
        'GROUP BY "行业" ORDER BY "行业"'
    )
    assert {r[0] for r in body["rows"]} >= {"机械制造", "软件信息"}
    assert body["epsilon"] > 0 and "margins" in body
    # The same SQL typed in the advanced view is the same measurement: no new cost.
    typed = await client.post(f"{buyer.api}/grants/{grant_id}/queries", json={"sql": body["sql"]})
    assert typed.status_code == 201 and typed.json()["cached"] is True
    refused = await client.post(url, json={"aggregate": "count", "group_by": "用电量"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "builder_group"


async def test_the_page_offers_the_builder_with_plain_types_and_sql_as_advanced(client, grant):
    buyer, grant_id = grant
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    assert page.status_code == 200
    html = page.text
    assert 'id="query-builder"' in html and 'id="advanced-sql"' in html
    assert "用电量 (小数)" in html and "行业 (文本)" in html
    assert "DOUBLE" not in html and "VARCHAR" not in html
    group_options = html[
        html.index('id="f-group_by"') : html.index("</select>", html.index('id="f-group_by"'))
    ]
    # Public-category columns only.
    assert 'value="行业"' in group_options and 'value="用电量"' not in group_options

    # The listing's schema shows types in plain words too (DuckDB's name only as a tooltip).
    dataset_id = (await client.get(f"{buyer.api}/grants/{grant_id}")).json()["dataset_id"]
    listing = await client.get(f"{buyer.web}/catalogue/{dataset_id}")
    assert '<span title="DOUBLE">小数</span>' in listing.text
    assert (
        '<span title="VARCHAR">文本</span>' in listing.text
        and "<code>DOUBLE</code>" not in listing.text
    )

    token = csrf_from(html)
    built = await client.post(
        f"{buyer.web}/grants/{grant_id}/queries/build",
        data={
            "_csrf": token,
            "aggregate": "sum",
            "measure": "用电量",
            "group_by": "行业",
            "filter-column-1": "",
            "filter-op-1": "=",
            "filter-value-1": "",
        },
    )
    assert built.status_code == 200, built.text
    assert 'id="query-result"' in built.text and "机械制造" in built.text
    # The SQL it produced fills the advanced view, open.
    assert "sum(&#34;用电量&#34;)" in built.text or 'sum("用电量")' in built.text
    assert '<details id="advanced-sql" open>' in built.text

    wrong = await client.post(
        f"{buyer.web}/grants/{grant_id}/queries/build",
        data={"_csrf": token, "aggregate": "avg", "measure": "", "group_by": "用电量"},
    )
    assert wrong.status_code == 422
    assert 'id="f-measure-error"' in wrong.text and 'id="f-group_by-error"' in wrong.text
