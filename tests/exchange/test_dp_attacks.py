"""The three attacks of issue #12 against compute-to-data, on our own 2,000-person table
(name, ID number and mobile are personal data; minimum cohort 10; two districts hold fewer
than 10 people), through the API as a buyer runs them. Each attack is repeated until the
dataset's privacy budget is spent; then the attacker's estimate is checked against what the
answers allow: the 95 % interval of the estimate (from the mechanism's stated noise and from
the answers' own spread) is wider than ±10 % of the value, and a simulation of the same attack
on the mechanism recovers the value within 10 % far less than 95 % of the time.

Also: a second buyer organisation gets no fresh budget; no count of hidden groups is ever
returned; concurrent queries cannot overspend (row lock; the CHECK constraint behind it);
the same query asked again is answered from the same noise; the provider's audit trail holds
the query and its ε but not the person."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
import statistics
import uuid

import asyncpg
import pytest

from canal.exchange import privacy, services
from canal.exchange.tables import Dataset, PrivacyBudget
from canal.platform import db
from canal.platform.http.errors import CanalError
from tests.exchange.helpers import (
    active_grant,
    approved_provider,
    id_number,
    make_org,
    published_dataset,
)
from tests.factories import sign_in

BIG = ["古楼街道", "柳园街道", "新区街道", "湖西街道", "道口铺街道", "闫寺街道"]
SMALL = {"梁水镇": 4, "朱老庄镇": 7}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
EPSILON_PER_QUERY = 0.5
EPSILON_TOTAL = 5.0  # ten new queries for everyone together
INCOME = (0.0, 50000.0)
AGE = (0.0, 100.0)


def population(seed: int = 12) -> list[dict[str, object]]:
    rng = random.Random(seed)
    people: list[dict[str, object]] = []
    districts = [d for d, n in SMALL.items() for _ in range(n)]
    districts += [BIG[i % len(BIG)] for i in range(2000 - len(districts))]
    for i, district in enumerate(districts):
        people.append(
            {
                "姓名": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                "身份证号": id_number(rng),
                "手机号": f"139{rng.randint(10_000_000, 99_999_999)}",
                "街道": district,
                "年龄": rng.randint(18, 90),
                "月收入": rng.randint(2000, 30000) + i % 7,
            }
        )
    return people


def as_csv(people: list[dict[str, object]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(people[0]))
    writer.writeheader()
    writer.writerows(people)
    return out.getvalue().encode()


PRIVACY = {
    "max_rows_per_person": 1,
    "bounds": {"年龄": list(AGE), "月收入": list(INCOME)},
    "categories": {"街道": BIG + list(SMALL)},  # the district list is public knowledge
    "epsilon_per_query": EPSILON_PER_QUERY,
    "epsilon_total": EPSILON_TOTAL,
}


@pytest.fixture
async def world(client, op):
    provider = await approved_provider("人口统计公司")
    buyer = await make_org("研究机构")
    people = population()
    dataset_id = await published_dataset(
        client,
        provider,
        op,
        data=as_csv(people),
        privacy=PRIVACY,
        title="全区居民收入",
        sensitivity="sensitive",
        delivery_modes=["compute"],
    )
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["compute"])
    await sign_in(client, buyer.owner)
    url = f"{buyer.api}/grants/{grant_id}/queries"

    async def ask(sql: str):
        return await client.post(url, json={"sql": sql})

    return {
        "ask": ask,
        "people": people,
        "dataset_id": dataset_id,
        "grant_id": grant_id,
        "provider": provider,
        "buyer": buyer,
    }


async def until_spent(ask, queries):
    """Answers to ``queries`` (each asked once) until the budget refuses; the answers' rows."""
    answers = []
    for sql in queries:
        response = await ask(sql)
        if response.status_code == 429:
            assert response.json()["code"] == "privacy_budget_exhausted", response.text
            return answers
        assert response.status_code == 201, response.text
        body = response.json()
        assert "suppressed_groups" not in body  # never an exact count of anything hidden
        assert body["epsilon"] == pytest.approx(EPSILON_PER_QUERY) and not body["cached"]
        answers.append(body)
    raise AssertionError("the budget never ran out")


def interval_wider_than(values: list[float], truth: float, *, scale: float) -> None:
    """Neither the mechanism's stated noise nor the answers' own spread lets an average of
    ``values`` pin ``truth`` within ±10 % at 95 % confidence."""
    n = len(values)
    assert n >= 1
    stated = 1.96 * scale * math.sqrt(2) / math.sqrt(n)  # Laplace(b): sd = b √2
    assert stated > 0.1 * abs(truth)
    if n >= 2:
        observed = 1.96 * statistics.stdev(values) / math.sqrt(n)
        assert observed > 0.1 * abs(truth)


def simulated_recovery(
    spec: privacy.Spec,
    exact_pairs: tuple[dict, dict],
    settings: privacy.Settings,
    pairs: int,
    truth: float,
    runs: int = 400,
) -> float:
    """How often the differencing attack, with ``pairs`` pairs of answers from the real
    mechanism, lands within 10 % of ``truth``."""
    hits = 0
    for _ in range(runs):
        diffs = []
        for _ in range(pairs):
            one = privacy.release(
                spec, exact_pairs[0], settings, epsilon=EPSILON_PER_QUERY, min_cohort=10
            )
            two = privacy.release(
                spec, exact_pairs[1], settings, epsilon=EPSILON_PER_QUERY, min_cohort=10
            )
            diffs.append(float(one.rows[0][0]) - float(two.rows[0][0]))
        hits += abs(statistics.fmean(diffs) - truth) <= 0.1 * abs(truth)
    return hits / runs


SETTINGS = privacy.Settings(1, {"年龄": AGE, "月收入": INCOME}, {"街道": BIG + list(SMALL)}, True)
SUM_SPEC = privacy.Spec([], [privacy.Measure("sum", "月收入", "s")], [("measure", 0)], ["s"])
# sum + row count share the query's ε: the sum's Laplace scale is sensitivity / (ε / 2).
SUM_SCALE = INCOME[1] / (EPSILON_PER_QUERY / 2)


async def test_centring_then_differencing_does_not_recover_a_person(world):
    ask, people = world["ask"], world["people"]
    district = BIG[0]
    members = [p for p in people if p["街道"] == district]
    ages = [p["年龄"] for p in members]
    victim = next(p for p in members if ages.count(p["年龄"]) == 1)
    # Centring: a constant near the mean subtracted inside the sum — refused outright; and
    # the noise never depended on the value anyway (test_dp_properties).
    mean = await ask("SELECT avg(月收入) FROM data")
    centre = round(mean.json()["rows"][0][0])
    centred = await ask(f"SELECT sum(月收入 - {centre}) FROM data WHERE 街道 = '{district}'")
    assert centred.status_code == 422 and centred.json()["code"] == "sql_dp_expression"
    # Differencing: sets that differ by the victim alone, reworded each time (a repeated
    # query is answered from the same noise, so rewording is the only way to new noise).
    queries = []
    for i in range(50):
        queries.append(f"SELECT sum(月收入) FROM data WHERE 街道 = '{district}' AND 年龄 > -{i}")
        queries.append(
            f"SELECT sum(月收入) FROM data WHERE 街道 = '{district}' AND 年龄 <> {victim['年龄']} "
            f"AND 年龄 > -{i}"
        )
    answers = await until_spent(ask, queries)
    pairs = len(answers) // 2
    assert 1 <= pairs <= EPSILON_TOTAL / EPSILON_PER_QUERY / 2
    diffs = [answers[2 * i]["rows"][0][0] - answers[2 * i + 1]["rows"][0][0] for i in range(pairs)]
    truth = float(victim["月收入"])
    interval_wider_than(diffs, truth, scale=SUM_SCALE * math.sqrt(2))
    with_victim = {(): {"rows:": len(members), "sum:月收入": sum(p["月收入"] for p in members)}}
    without = {
        (): {"rows:": len(members) - 1, "sum:月收入": sum(p["月收入"] for p in members) - truth}
    }
    assert simulated_recovery(SUM_SPEC, (with_victim, without), SETTINGS, pairs, truth) < 0.5


async def test_complement_differencing_does_not_release_a_small_group(world):
    ask, people = world["ask"], world["people"]
    small = next(iter(SMALL))
    truth = float(sum(p["月收入"] for p in people if p["街道"] == small))
    everyone = float(sum(p["月收入"] for p in people))
    # The small district itself: listed (a public category) but its values are not shown.
    direct = await ask("SELECT 街道, sum(月收入) AS s FROM data GROUP BY 街道")
    assert direct.status_code == 201, direct.text
    body = direct.json()
    shown = {r[0]: r[1] for r in body["rows"]}
    assert set(shown) == set(BIG) | set(SMALL)  # every declared group, whatever its size
    # Its value, if its noisy count happened to clear the cohort, is lost in noise far
    # larger than the district's whole total.
    at = [r[0] for r in body["rows"]].index(small)
    assert body["rows"][at][1] is None or body["margins"][at][1] > truth
    queries = []
    for i in range(50):
        queries.append(f"SELECT sum(月收入) FROM data WHERE 年龄 > -{i}")
        queries.append(f"SELECT sum(月收入) FROM data WHERE 街道 <> '{small}' AND 年龄 > -{i}")
    answers = await until_spent(ask, queries)
    pairs = len(answers) // 2
    diffs = [answers[2 * i]["rows"][0][0] - answers[2 * i + 1]["rows"][0][0] for i in range(pairs)]
    interval_wider_than(diffs, truth, scale=SUM_SCALE * math.sqrt(2))
    pair = (
        {(): {"rows:": 2000, "sum:月收入": everyone}},
        {(): {"rows:": 2000 - SMALL[small], "sum:月收入": everyone - truth}},
    )
    assert simulated_recovery(SUM_SPEC, pair, SETTINGS, pairs, truth) < 0.5


async def test_hidden_groups_are_no_oracle_for_a_small_groups_ages(world):
    """The old oracle counted suppressed groups exactly. Now nothing counts them; a group too
    small to show looks the same whatever it holds, and the large complement's count carries
    noise of several people. A binary search for the oldest member's age of the 4-person
    district, one comparison per query until the budget is spent, does not find it within
    10 %; simulated on the mechanism, it almost never does."""
    ask, people = world["ask"], world["people"]
    small = next(iter(SMALL))
    oldest = max(p["年龄"] for p in people if p["街道"] == small)
    total = len(people)

    def complement(t: int) -> str:
        return f"SELECT count(*) FROM data WHERE NOT (街道 = '{small}' AND 年龄 >= {t})"

    # Asked inside the small district, the answer is hidden — and the body says nothing of
    # how many rows or groups are behind it.
    inside = await ask(f"SELECT count(*) FROM data WHERE 街道 = '{small}' AND 年龄 >= 18")
    assert inside.json()["rows"] == [[None]] and inside.json()["hidden"] == [True]
    low, high, asked = 18, 90, 0
    while True:
        middle = (low + high + 1) // 2
        response = await ask(complement(middle) + f" AND {asked} = {asked}")
        if response.status_code == 429:
            break
        assert response.status_code == 201, response.text
        asked += 1
        # Someone that old is there if the complement lost at least one person.
        if response.json()["rows"][0][0] <= total - 1:
            low = middle
        else:
            high = middle - 1
        if low >= high:
            low, high = 18, 90  # start over: more answers, the same noise level
    guess = low
    count_scale = 1 / EPSILON_PER_QUERY  # count(*) alone: the whole ε, sensitivity 1
    rng = random.Random(3)
    hits = 0
    runs = 300
    member_ages = sorted(p["年龄"] for p in people if p["街道"] == small)
    for _ in range(runs):
        low, high = 18, 90
        for _ in range(asked):
            middle = (low + high + 1) // 2
            lost = sum(a >= middle for a in member_ages)
            noise = rng.expovariate(1 / count_scale) - rng.expovariate(1 / count_scale)
            if total - lost + noise <= total - 1:
                low = middle
            else:
                high = middle - 1
            if low >= high:
                low, high = 18, 90
        hits += abs(low - oldest) <= 0.1 * oldest
    assert hits / runs < 0.95
    assert asked <= EPSILON_TOTAL / EPSILON_PER_QUERY
    assert isinstance(guess, int)


async def test_a_second_buyer_gets_no_fresh_budget(client, world):
    ask = world["ask"]
    await until_spent(ask, [f"SELECT count(*) FROM data WHERE 年龄 > -{i}" for i in range(30)])
    other = await make_org("另一研究机构")
    grant = await active_grant(
        client, world["provider"], other, world["dataset_id"], modes=["compute"]
    )
    await sign_in(client, other.owner)
    refused = await client.post(
        f"{other.api}/grants/{grant}/queries", json={"sql": "SELECT count(*) FROM data"}
    )
    assert refused.status_code == 429 and refused.json()["code"] == "privacy_budget_exhausted"
    assert "隐私预算" in refused.json()["detail_zh"] and "budget" in refused.json()["detail_en"]
    shown = (await client.get(f"{other.api}/grants/{grant}")).json()["budget"]
    assert shown["epsilon_remaining"] == 0 and shown["queries_left"] == 0


async def test_the_same_query_again_is_the_same_answer_at_no_cost(world):
    ask = world["ask"]
    sql = "SELECT 街道, count(*) AS n, avg(月收入) AS income FROM data GROUP BY 街道"
    first = (await ask(sql)).json()
    again = (await ask(sql.replace("GROUP BY 街道", "GROUP BY 街道 ORDER BY n DESC"))).json()
    assert again["cached"] and again["epsilon"] == 0
    assert sorted(map(str, first["rows"])) == sorted(map(str, again["rows"]))
    assert again["budget"]["epsilon_spent"] == pytest.approx(EPSILON_PER_QUERY)
    # Rounded to what the noise allows, with the margin beside each value.
    row = next(r for r in first["rows"] if r[0] == BIG[0])
    margin = first["margins"][first["rows"].index(row)]
    assert margin[0] is None and margin[1] >= 1 and margin[2] > 0
    step = privacy.step_for(margin[2], False)
    assert isinstance(row[1], int) and abs(row[2] / step - round(row[2] / step)) < 1e-6


async def test_the_provider_sees_the_query_and_epsilon_not_the_person(client, world, op):
    from canal.platform.audit.tables import AuditEvent

    ask, provider, buyer = world["ask"], world["provider"], world["buyer"]
    assert (await ask("SELECT count(*) FROM data")).status_code == 201
    assert (await ask("SELECT 姓名, count(*) FROM data GROUP BY 姓名")).status_code == 422
    async with db.platform_scope():
        events = await AuditEvent.select().where(
            AuditEvent.action.is_in(["exchange.query_answered", "exchange.query_refused"])
            & AuditEvent.tenant_id.is_in([provider.tenant.id, buyer.tenant.id])
        )
    provider_side = [e for e in events if e["tenant_id"] == provider.tenant.id]
    buyer_side = [e for e in events if e["tenant_id"] == buyer.tenant.id]
    assert len(provider_side) == 2 and len(buyer_side) == 2
    assert all(e["actor_id"] is None for e in provider_side)
    assert all(e["actor_id"] == buyer.owner.user_id for e in buyer_side)
    text = str(provider_side)
    assert "SELECT count(*) FROM data" in text and str(buyer.owner.user_id) not in text
    assert buyer.owner.login not in text and "研究机构" in text  # the organisation, by name
    assert "epsilon" in text and "0.5" in text
    # The provider's page of queries names no person either.
    await sign_in(client, provider.owner)
    queries = (await client.get(f"{provider.api}/grants/{world['grant_id']}")).json()["queries"]
    assert queries and all("user_id" not in q for q in queries)


async def test_concurrent_queries_cannot_overspend(world):
    """Eight spends at once against room for three: exactly three pass. Without the row
    lock all eight read the same remainder; the CHECK constraint is the database's backstop."""
    provider = world["provider"]
    async with db.tenant_scope(provider.tenant.id):
        dataset = await Dataset.select().where(Dataset.id == world["dataset_id"]).first()
    dataset["epsilon_total"] = 1.5
    dataset["id"] = uuid.UUID(str(world["dataset_id"]))

    async def spend():
        try:
            await services.spend_budget(provider.tenant.id, dataset, 0.5)
            return "spent"
        except CanalError as error:
            return error.code

    results = await asyncio.gather(*[spend() for _ in range(8)])
    assert sorted(results) == ["privacy_budget_exhausted"] * 5 + ["spent"] * 3
    async with db.tenant_scope(provider.tenant.id):
        row = (
            await PrivacyBudget.select()
            .where(PrivacyBudget.dataset_id == world["dataset_id"])
            .first()
        )
    assert row["epsilon_spent"] == pytest.approx(1.5)
    with pytest.raises(asyncpg.exceptions.CheckViolationError):
        async with db.tenant_scope(provider.tenant.id):
            await PrivacyBudget.raw(
                "UPDATE exchange_privacy_budgets SET epsilon_spent = epsilon_total + 1 "
                "WHERE dataset_id = {}",
                world["dataset_id"],
            )
