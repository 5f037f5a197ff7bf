"""Demo data in Chinese that feels real: the operator, a park, enterprises, a community, a resident.

Idempotent: a second run finds the operator and changes nothing. All or nothing: a seeding that
stops half-way (an error, Ctrl-C, a killed process) leaves no half-made district behind — the
demo database and its search indexes are made afresh, on the spot or at the next start. Dated
from the day it is seeded: modules write their dates as of ``DEMO_WRITTEN_ON`` and move them by
``shift_dates`` to today, so ``canal demo`` tells the same story on any day. Passwords are random
per checkout (kept in ``var/demo-logins.json``), so no credential ever sits in the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyotp

from canal.platform import clock, db
from canal.platform.http.context import TenantContext
from canal.platform.runtime import Runtime


@dataclass
class DemoWorld:
    """What a module's ``seed_demo`` gets: the organisations and people already made."""

    runtime: Runtime
    users: dict[str, uuid.UUID]  # login -> user id
    contexts: dict[str, TenantContext]  # organisation slug -> its owner's context

    def ctx(self, slug: str) -> TenantContext:
        return self.contexts[slug]


@dataclass
class DemoLogin:
    role: str
    login: str
    password: str
    tenant_slug: str | None
    totp_secret: str | None = None


# Credit codes below carry valid GB 32100 check characters (computed, not real companies').
ORGS: list[dict[str, Any]] = [
    {
        "slug": "szdc",
        "name": "数字东昌大数据有限公司",
        "kind": "operator",
        "code17": "91371502MA3C8K2Q7",
    },
    {
        "slug": "jiaming-park",
        "name": "嘉明经济开发区",
        "kind": "park",
        "code17": "12371502MB285611X",
    },
    {
        "slug": "lc-bearing",
        "name": "聊城恒通轴承保持架有限公司",
        "kind": "enterprise",
        "code17": "91371502MA3D4F7NX",
    },
    {
        "slug": "dc-steelpipe",
        "name": "东昌府区鑫源钢管贸易有限公司",
        "kind": "enterprise",
        "code17": "91371502MA3EKR5T7",
    },
    {
        "slug": "shuzhi-soft",
        "name": "聊城数智软件科技有限公司",
        "kind": "enterprise",
        "code17": "91371502MA7BQ1W67",
    },
    {
        "slug": "dc-kjj",
        "name": "聊城市东昌府区科学技术局",
        "kind": "government",
        "code17": "1137150200412852X",
    },
    {
        "slug": "lc-mingde",
        "name": "聊城明德财税咨询有限公司",
        "kind": "enterprise",
        "code17": "91371502MA3F6H8P0",
    },
    {
        "slug": "guangming-community",
        "name": "古楼街道光明社区居民委员会",
        "kind": "community",
        "code17": "55371502MEA4136L7",
    },
]

PEOPLE: list[dict[str, Any]] = [
    {
        "role": "运营方管理员 operator admin",
        "login": "admin@szdc.example.cn",
        "name": "王海燕",
        "org": "szdc",
        "roles": ["owner"],
        "totp": True,
    },
    {
        "role": "园区运营方 park operator",
        "login": "13806351001",
        "name": "李建国",
        "org": "jiaming-park",
        "roles": ["owner"],
    },
    {
        "role": "企业管理员 enterprise admin",
        "login": "13806351002",
        "name": "张伟",
        "org": "lc-bearing",
        "roles": ["owner"],
    },
    {
        "role": "企业管理员 enterprise admin",
        "login": "13806351003",
        "name": "刘芳",
        "org": "dc-steelpipe",
        "roles": ["owner"],
    },
    {
        "role": "企业管理员 enterprise admin",
        "login": "dev@shuzhi-soft.example.cn",
        "name": "陈晓明",
        "org": "shuzhi-soft",
        "roles": ["owner"],
    },
    {
        "role": "社区工作人员 community staff",
        "login": "13806351005",
        "name": "赵丽",
        "org": "guangming-community",
        "roles": ["owner"],
    },
    {
        "role": "政策主管部门 policy authority",
        "login": "13806351009",
        "name": "周敏",
        "org": "dc-kjj",
        "roles": ["owner"],
    },
    {
        "role": "服务商 service provider",
        "login": "13806351010",
        "name": "马强",
        "org": "lc-mingde",
        "roles": ["owner"],
    },
    {"role": "居民 resident", "login": "13806351006", "name": "孙秀英", "org": None, "roles": []},
    {
        "role": "企业员工 enterprise staff",
        "login": "13806351007",
        "name": "王磊",
        "org": None,
        "roles": [],
    },
]

# Which modules each demo organisation has switched on.
DEMO_MODULES = {
    "lc-bearing": ["policy", "services", "smartpark"],
    "dc-steelpipe": ["policy", "services"],
    "shuzhi-soft": ["policy", "services", "modelstore", "exchange"],
    "jiaming-park": ["smartpark", "exchange"],
    "dc-kjj": ["policy"],
    "lc-mingde": ["services"],
    "guangming-community": ["community", "sscard"],
}


log = logging.getLogger("canal.demo")

# The day the demo's fixed dates (policy windows, certificates, founding dates) were written for.
DEMO_WRITTEN_ON = dt.date(2026, 11, 24)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def shift_dates(value: Any, days: int | None = None) -> Any:
    """``value`` (JSON-like) with every ISO date string moved by ``days`` — by default from
    ``DEMO_WRITTEN_ON`` to today (Beijing), so windows that were open on that day are open today
    and a certificate that lapsed a month before still lapsed a month before."""
    if days is None:
        days = (clock.today() - DEMO_WRITTEN_ON).days
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            moved = dt.date.fromisoformat(value) + dt.timedelta(days=days)
        except ValueError:
            return value
        return moved.isoformat()
    return value


def _credit_code(code17: str) -> str:
    from canal.tenants.validators import credit_code_check_char

    return code17 + credit_code_check_char(code17)


def logins_path(runtime: Runtime) -> Path:
    """``var/demo-logins.json`` for the demo database; another database gets its own file."""
    name = runtime.settings.database_name
    suffix = "" if name == "canal" else f"-{name}"
    return runtime.settings.var_dir / f"demo-logins{suffix}.json"


async def seed_demo(runtime: Runtime) -> list[DemoLogin]:
    """Seed the demo district once; later calls return the logins of the first.

    A database with people but no logins file is what an interrupted seeding leaves: it is
    made afresh before seeding again. A seeding that fails makes it afresh before re-raising.
    """
    from canal.platform.identity.tables import User
    from canal.tenants.tables import Tenant

    logins_file = logins_path(runtime)
    await db.start_pool(runtime.app_dsn, min_size=1, max_size=4)
    try:
        if logins_file.exists() and await Tenant.exists().where(Tenant.slug == "szdc"):
            return [DemoLogin(**item) for item in json.loads(logins_file.read_text())]
        half_made = await User.exists()
    finally:
        await db.close_pool()
    if half_made:
        log.warning("an earlier demo seeding stopped half-way: making the demo database afresh")
        await reset_demo_database(runtime)
    try:
        return await _seed(runtime, logins_file)
    except BaseException:
        log.error("demo seeding failed: making the demo database afresh (nothing half-made)")
        await reset_demo_database(runtime)
        raise


def _write_logins(path: Path, logins: list[DemoLogin]) -> None:
    # Written last: its presence is what says the seeding completed.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(x) for x in logins], ensure_ascii=False, indent=2))
    path.chmod(0o600)


async def reset_demo_database(runtime: Runtime) -> None:
    """Drop the demo database and its search indexes, then migrate an empty one."""
    from canal.platform.runtime import migrate
    from canal.platform.search.services import SearchService

    logins_path(runtime).unlink(missing_ok=True)
    await db.drop_database(runtime.settings, runtime.server_url)
    await migrate(runtime)
    search = SearchService(
        runtime.meili_url, runtime.meili_key, prefix=runtime.settings.meili_index_prefix
    )
    for kind in search.indexes:
        await search.drop(kind)


async def _seed(runtime: Runtime, logins_file: Path) -> list[DemoLogin]:
    from canal.platform.access.services import access
    from canal.platform.identity.services import create_user
    from canal.platform.identity.tables import User
    from canal.tenants.services import create_operator_tenant, create_tenant
    from canal.tenants.tables import Membership, Tenant

    await db.start_pool(runtime.app_dsn, min_size=1, max_size=4)
    try:
        await access().reload()
        password = "Dc-" + secrets.token_urlsafe(9)
        users: dict[str, uuid.UUID] = {}
        logins: list[DemoLogin] = []
        for person in PEOPLE:
            user_id = await create_user(person["login"], password, person["name"])
            users[person["login"]] = user_id
            totp_secret = None
            if person.get("totp"):
                totp_secret = pyotp.random_base32()
                await User.update({User.totp_secret: totp_secret, User.totp_enabled: True}).where(
                    User.id == user_id
                )
            logins.append(
                DemoLogin(person["role"], person["login"], password, person["org"], totp_secret)
            )
        owners = {p["org"]: users[p["login"]] for p in PEOPLE if p["org"]}
        for org in ORGS:
            code = _credit_code(org["code17"])
            if org["kind"] == "operator":
                await create_operator_tenant(
                    creator_id=owners[org["slug"]],
                    name=org["name"],
                    slug=org["slug"],
                    credit_code=code,
                )
            else:
                await create_tenant(
                    creator_id=owners[org["slug"]],
                    name=org["name"],
                    slug=org["slug"],
                    kind=org["kind"],
                    credit_code=code,
                )
        # The software firm's admin also belongs to the park (switching organisations).
        park = await Tenant.select(Tenant.id).where(Tenant.slug == "jiaming-park").first()
        assert park is not None
        member = users["dev@shuzhi-soft.example.cn"]
        async with db.tenant_scope(park["id"]):
            await Membership.insert(Membership(tenant_id=park["id"], user_id=member))
            await access().assign_role(member, "member", park["id"])
        world = await _seed_organisation_life(runtime, users)
        from canal.platform.modules import registry

        for module in registry().values():
            if module.seed_demo is not None:
                await module.seed_demo(world)
        from canal.exchange.bank.demo import seed_bank  # every organisation's, not a module

        await seed_bank(world)
        _write_logins(logins_file, logins)
        return logins
    finally:
        await db.close_pool()


async def _seed_organisation_life(runtime: Runtime, users: dict[str, uuid.UUID]) -> DemoWorld:
    """Members with roles, modules switched on and a pending invitation, through the same
    services the pages use (so the audit trail tells the story too)."""
    from canal.platform.access.services import access
    from canal.platform.http.context import TenantRef
    from canal.tenants.services import invite_member, set_module
    from canal.tenants.tables import Membership, Tenant

    rows = await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind, Tenant.status)
    by_slug = {r["slug"]: r for r in rows}
    owners = {p["org"]: users[p["login"]] for p in PEOPLE if p["org"]}

    def ctx(slug: str) -> TenantContext:
        r = by_slug[slug]
        ref = TenantRef(id=r["id"], slug=slug, name=r["name"], kind=r["kind"], status=r["status"])
        return TenantContext(tenant=ref, user_id=owners[slug], roles=("owner",))

    for slug, keys in DEMO_MODULES.items():
        for key in keys:
            await set_module(ctx(slug), key, enabled=True)
    # A colleague at the bearing-cage maker, as a plain member.
    bearing = by_slug["lc-bearing"]["id"]
    staff = users["13806351007"]
    async with db.tenant_scope(bearing):
        await Membership.insert(Membership(tenant_id=bearing, user_id=staff))
        await access().assign_role(staff, "member", bearing)
    await invite_member(
        ctx("lc-bearing"),
        recipient="13806351008",
        role="member",
        base_url=runtime.settings.base_url,
    )
    from canal.platform.notifications.services import notify

    async with db.transaction():
        await notify(
            list(users.values()),
            "system",
            title_zh="欢迎使用数字东昌生态门户",
            title_en="Welcome to the Digital Dongchang portal",
            body_zh="在「模块目录」中开通所需服务;账号页可设置两步验证与通知方式。",
            body_en="Switch on the services you need in the module catalogue; set up two-factor "
            "authentication and notifications on your account page.",
            link="/",
        )
    return DemoWorld(runtime, users, {slug: ctx(slug) for slug in owners})


def print_logins(logins: list[DemoLogin], url: str) -> None:
    print()
    print(f"  Canal 演示已启动 · demo running at {url}")
    print("  演示账号 demo logins:")
    for item in logins:
        where = f"/t/{item.tenant_slug}" if item.tenant_slug else "/"
        extra = f"  TOTP secret: {item.totp_secret}" if item.totp_secret else ""
        print(f"    {item.role:<34} {item.login:<28} {item.password}  {where}{extra}")
    print("  邮件发往本地 SMTP 收件箱 var/mail/,短信写入 var/outbox.log")
    print("  mail goes to the local SMTP sink (var/mail/), SMS to var/outbox.log")
    print()
