"""Registry entry of the data bank & trading module (数据银行与数据交易)."""

from canal.exchange.jobs import exchange_profile_version
from canal.platform.modules import ModuleSpec, NavEntry, Permission
from canal.platform.notifications.kinds import NotificationKind, register_kind

# Requests, decisions, reviews and revocations of data trading reach the people concerned.
register_kind(NotificationKind("exchange", "数据交易", "Data trading"))


def _routes() -> tuple[list[object], list[object], list[object]]:
    from canal.exchange.controllers import API, PAGES, PUBLIC

    return list(PAGES), list(API), list(PUBLIC)


def _search_indexes() -> tuple[object, ...]:
    from canal.exchange.search import DATASETS

    return (DATASETS,)


async def _seed_demo(world: object) -> None:
    from canal.exchange.demo import seed

    await seed(world)


_PAGES, _API, _PUBLIC = _routes()

MODULE = ModuleSpec(
    key="exchange",
    name_zh="数据银行与数据交易",
    name_en="Data bank & trading",
    summary_zh="数据存储、确权上架、脱敏、可用不可见的计算与全程使用审计。",
    summary_en="Data storage, listings, masking, compute-to-data and an audit of every use.",
    status="available",
    tenant_kinds=("enterprise", "park", "community", "government", "operator"),
    route_handlers=_PAGES,
    api_handlers=_API,
    public_handlers=_PUBLIC,
    person_nav=(NavEntry("/exchange/catalogue", "数据目录", "Data catalogue"),),
    nav=(
        NavEntry("/catalogue", "数据目录", "Data catalogue", permission=("exchange", "read")),
        NavEntry("/provider", "我的数据集", "My datasets", permission=("exchange", "publish")),
        NavEntry("/grants", "申请与授权", "Requests & grants", permission=("exchange", "read")),
        NavEntry("/usage", "使用审计", "Usage audit", permission=("exchange", "read")),
        NavEntry("/review", "合规审核", "Compliance review", ("exchange", "review"), ("operator",)),
    ),
    permissions=(
        Permission("exchange", "read", "查看数据目录与授权", "View the data catalogue and grants"),
        Permission("exchange", "publish", "上架与管理数据集", "List and manage datasets"),
        Permission(
            "exchange",
            "trade",
            "申请、审批与撤销数据授权",
            "Request, approve and revoke data grants",
        ),
        Permission("exchange", "use", "使用已授权数据", "Use granted data"),
        Permission("exchange", "review", "数据合规审核", "Review datasets for compliance"),
    ),
    roles={
        "data_analyst": (("exchange", "read"), ("exchange", "use")),
    },
    role_names={"data_analyst": ("数据分析员", "Data analyst")},
    piccolo_apps=("canal.exchange.piccolo_app",),
    jobs=(exchange_profile_version,),
    search_indexes=_search_indexes(),
    audit_labels={
        "exchange.provider_applied": "Applied to be a data provider",
        "exchange.provider_reviewed": "Data provider application reviewed",
        "exchange.dataset_created": "Dataset listed",
        "exchange.version_added": "Dataset version added",
        "exchange.dataset_submitted": "Dataset sent for compliance review",
        "exchange.dataset_reviewed": "Dataset compliance review",
        "exchange.masking_changed": "Masking rules changed",
        "exchange.access_requested": "Data access requested",
        "exchange.access_approved": "Data access approved",
        "exchange.access_declined": "Data access declined",
        "exchange.grant_revoked": "Data grant revoked",
        "exchange.download": "Masked dataset downloaded",
        "exchange.query_refused": "Compute-to-data query refused",
        "exchange.query_answered": "Compute-to-data query answered",
        "exchange.privacy_confirmed": "Privacy settings confirmed",
        "exchange.grant_paid": "Data grant paid",
        "exchange.subscription_cancelled": "Dataset subscription set to end",
        "exchange.subscription_ended": "Dataset subscription ended",
        "exchange.version_submitted": "Dataset version sent for compliance review",
        "exchange.version_reviewed": "Dataset version compliance review",
        "exchange.sensitivity_justified": "Sensitivity grade justified despite personal data",
    },
    seed_demo=_seed_demo,
)
