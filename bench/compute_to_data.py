"""Compute-to-data overhead: one aggregate over a 10-million-row Parquet dataset, through the
API (HTTP request in-process over ASGI: session, CSRF, guard, grant checks in PostgreSQL, SQL
parse and rewrite, the privacy budget row, the sandbox process, OpenDP noise on every group,
the cached noisy answer, usage rows and audit events) vs the same query
straight in DuckDB on the same file, in the same run. Also the peak memory of the sandbox
process (the largest child RSS seen) and of this process.

Workload: 10,000,000 rows (1,000 companies × 10,000 readings: industry, street, month, kWh),
generated with DuckDB itself. Needs the embedded PostgreSQL/S3/Redis/Meilisearch (started if
missing); uses its own database ``canal_bench_exchange``.

    .venv/bin/python bench/compute_to_data.py            (BENCH_ROWS to change the size;
                                                         --smoke: 100,000 rows, one round)

Goal: API time ≤ 1.10 × DuckDB time + 200 ms (median of the rounds).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import benchkit
import duckdb
import msgspec

from canal.platform import clock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = benchkit.size(int(os.environ.get("BENCH_ROWS", "10000000")), 100_000)
ROUNDS = benchkit.size(int(os.environ.get("BENCH_ROUNDS", "5")), 1)
DATABASE = benchkit.scratch("canal_bench_exchange")
# Each round asks a new query (a new WHERE bound): the same query would be answered from the
# cached noisy answer without running (decision 0043), which is not what is measured.
QUERY = (
    "SELECT 行业, 月份, count(*) AS n, avg(用电量) AS kwh, sum(用电量) AS total "
    "FROM data WHERE 用电量 >= {floor} GROUP BY 行业, 月份"
)


def make_parquet(path: Path) -> None:
    con = duckdb.connect()
    con.execute(
        f"""COPY (
          SELECT 'C' || lpad((i % 1000)::VARCHAR, 5, '0') AS 企业编号,
                 ['轴承', '钢管', '软件', '食品', '纺织', '化工', '装备', '物流']
                   [1 + (i % 1000) % 8] AS 行业,
                 ['古楼', '柳园', '新区', '湖西', '道口铺', '闫寺'][1 + (i // 7) % 6] AS 街道,
                 '2025-' || lpad((1 + (i // 1000) % 12)::VARCHAR, 2, '0') AS 月份,
                 round(1000 + random() * 50000, 1) AS 用电量
          FROM range({ROWS}) t(i)
        ) TO '{path}' (FORMAT parquet)"""
    )
    con.close()


def straight(path: Path, floor: int) -> float:
    con = duckdb.connect(config={"threads": 2})
    began = time.perf_counter()
    sql = QUERY.format(floor=floor).replace("FROM data", f"FROM read_parquet('{path}')")
    con.execute(sql).fetchall()
    took = time.perf_counter() - began
    con.close()
    return took


class ChildPeak:
    """Samples the RSS of this process's children (the sandbox) every 20 ms."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                if fields.get("PPid", "").strip() == str(me) and "VmRSS" in fields:
                    self.peak_kb = max(self.peak_kb, int(fields["VmRSS"].split()[0]))
            time.sleep(0.02)

    def __enter__(self) -> ChildPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@asynccontextmanager
async def lifespan(application):
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        application(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put
        )
    )
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def main() -> int:
    from httpx import ASGITransport, AsyncClient

    from canal.exchange import services
    from canal.exchange.tables import Dataset
    from canal.platform import db
    from canal.platform.app import create_app
    from canal.platform.http.context import TenantContext, TenantRef
    from canal.platform.identity.services import create_user, start_session
    from canal.platform.runtime import migrate, prepare
    from canal.platform.settings import load_settings
    from canal.platform.storage.services import object_store
    from canal.tenants.services import create_operator_tenant, create_tenant, set_module
    from canal.tenants.tables import Tenant
    from tests.factories import credit_code

    settings = msgspec.structs.replace(
        load_settings(), database_name=DATABASE, log_json=False, access_log=False
    )
    if benchkit.SMOKE:  # a full run writes into the configured buckets, as it always has
        settings = msgspec.structs.replace(
            settings, s3_bucket_prefix=benchkit.bucket_prefix("canal_bench")
        )
    runtime = prepare(settings)
    if benchkit.SMOKE:
        await benchkit.fresh_database(runtime)
    else:  # a full run keeps its database between runs, as it always has
        await migrate(runtime)
    application = create_app(runtime, pool_size=4)
    with tempfile.TemporaryDirectory(prefix="canal-bench-") as tmp:
        path = Path(tmp) / "readings.parquet"
        began = time.perf_counter()
        make_parquet(path)
        print(
            f"generated {ROWS:,} rows ({path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
        )
        async with lifespan(application):
            stamp = str(int(clock.timestamp()))

            async def org(kind: str, name: str) -> TenantContext:
                user = await create_user(
                    f"bench{stamp}{kind}{name[:2]}@example.cn", "bench-password-2026", name
                )
                if kind == "operator" and not await Tenant.exists().where(
                    Tenant.kind == "operator"
                ):
                    t = await create_operator_tenant(
                        creator_id=user, name=name, slug=f"op{stamp}", credit_code=credit_code()
                    )
                elif kind == "operator":
                    row = await Tenant.select().where(Tenant.kind == "operator").first()
                    from canal.platform.access.services import access
                    from canal.tenants.tables import Membership

                    async with db.tenant_scope(row["id"]):
                        await Membership.insert(Membership(tenant_id=row["id"], user_id=user))
                        await access().assign_role(user, "owner", row["id"])
                    t = type("T", (), row)
                else:
                    t = await create_tenant(
                        creator_id=user,
                        name=f"{name}{stamp}",
                        slug=f"b{stamp}{name[:1].encode().hex()}",
                        kind=kind,
                        credit_code=credit_code(),
                    )
                ctx = TenantContext(
                    TenantRef(t.id, t.slug, t.name, kind, "active"), user, ("owner",)
                )
                from canal.tenants.services import module_enabled

                if not await module_enabled(ctx.tenant_id, "exchange"):
                    await set_module(ctx, "exchange", enabled=True)
                return ctx

            operator = await org("operator", "运营")
            provider = await org("enterprise", "提供方")
            buyer = await org("enterprise", "买方")
            await services.approve_provider_directly(provider.tenant_id, provider.user_id)
            dataset = await services.create_dataset(
                provider,
                services.DatasetInput(
                    title="千万行用电读数",
                    description="基准测试用的合成用电读数数据。",
                    category="energy",
                    update_frequency="daily",
                    source_statement="DuckDB 生成的合成数据,仅用于基准测试。",
                    sensitivity="internal",
                    licence_purpose="基准测试",
                    delivery_modes=["compute"],
                ),
            )
            async with db.tenant_scope(provider.tenant_id):
                await Dataset.update({Dataset.daily_query_budget: 1000}).where(
                    Dataset.id == dataset["id"]
                )
            stored = await object_store().upload_bytes(
                provider, "dataset", path.read_bytes(), filename="readings.parquet"
            )
            began = time.perf_counter()
            version = await services.add_version(provider, dataset["id"], stored.id)
            await services.profile_version(provider.tenant_id, version["id"])
            print(f"profiled in {time.perf_counter() - began:.1f} s", file=sys.stderr)
            # Each company has 10,000 readings: that is what one "person" contributes here.
            # A large budget, so the rounds are answered (each round is a new query).
            await services.confirm_privacy(
                provider,
                dataset["id"],
                services.PrivacyInput(
                    max_rows_per_person=10_000, epsilon_per_query=1.0, epsilon_total=100.0
                ),
            )
            await services.submit_for_review(provider, dataset["id"])
            await services.review_dataset(operator, dataset["id"], approve=True, reason="已核对。")
            grant = await services.request_access(
                buyer, dataset["id"], "基准测试的聚合查询。", ["compute"]
            )
            await services.decide_request(provider, grant["id"], approve=True)
            session = await start_session(settings, buyer.user_id, mfa_passed=True)
            async with AsyncClient(
                transport=ASGITransport(app=application), base_url="https://bench.local"
            ) as client:
                client.cookies.set("__Host-canal_session", session.token, domain="bench.local")
                client.headers["X-CSRF-Token"] = session.csrf_token
                url = f"/api/v1/t/{buyer.tenant.slug}/m/exchange/grants/{grant['id']}/queries"
                # Builds the local copies once.
                warm = await client.post(url, json={"sql": QUERY.format(floor=0)})
                assert warm.status_code == 201, warm.text
                straight(path, 0)
                api_times, duck_times = [], []
                with ChildPeak() as peak:
                    for floor in range(1, ROUNDS + 1):
                        began = time.perf_counter()
                        response = await client.post(url, json={"sql": QUERY.format(floor=floor)})
                        api_times.append(time.perf_counter() - began)
                        assert response.status_code == 201 and len(response.json()["rows"]) == 96, (
                            response.text
                        )
                        assert not response.json()["cached"]
                        duck_times.append(straight(path, floor))
    api, duck = statistics.median(api_times), statistics.median(duck_times)
    overhead = api - duck
    goal = api <= 1.10 * duck + 0.200
    print(
        f"API {api * 1000:.0f} ms vs DuckDB {duck * 1000:.0f} ms over {ROWS:,} rows; "
        f"sandbox peak RSS {peak.peak_kb / 1024:.0f} MB",
        file=sys.stderr,
    )
    return benchkit.finish(
        {
            "bench": "compute_to_data",
            "rows": ROWS,
            "rounds": ROUNDS,
            "api_ms": round(api * 1000, 1),
            "duckdb_ms": round(duck * 1000, 1),
            "overhead_ms": round(overhead * 1000, 1),
            "ratio": round(api / duck, 2),
            "sandbox_peak_rss_mb": round(peak.peak_kb / 1024, 1),
            "bench_process_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "goal_met": goal,
        }
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
