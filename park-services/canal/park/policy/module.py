"""Registry entry of the policy matching module (惠企政策)."""

from typing import Any

from canal.park.policy import controllers, jobs, saved_search_routes, saved_searches
from canal.park.policy.demo_data import seed_demo
from canal.platform.modules import ModuleSpec, NavEntry, Permission, ScheduledJob
from canal.platform.search.indexes import SearchIndex


def _load_policies() -> Any:
    from canal.park.policy.services import load_search_documents

    return load_search_documents()


POLICIES_INDEX = SearchIndex(
    kind="policies",
    searchable=("title", "summary", "issuer", "authority", "doc_number"),
    # "id": a saved search is checked against one newly published policy (saved_searches).
    filters=("level", "support_type", "issuer", "authority", "id"),
    ranges=("window_opens_day", "window_closes_day"),
    facets=("level", "support_type", "issuer"),
    sortable=("window_closes_day",),
    chinese=("title", "summary", "issuer", "authority"),
    loader=_load_policies,
    dictionary=("专精特新", "高新技术企业", "科技型中小企业", "规上企业", "东昌府区", "聊城市"),
)


MODULE = ModuleSpec(
    key="policy",
    name_zh="惠企政策",
    name_en="Policy matching",
    summary_zh="政策找企业:机器可读的申报条件、企业画像精准匹配、一次申报。",
    summary_en=(
        "The policy finds the enterprise: machine-readable el"
        "igibility, explained matches, one-stop applications."
    ),
    status="available",
    tenant_kinds=("enterprise", "government", "operator"),
    route_handlers=controllers.PAGE_ROUTES,
    api_handlers=controllers.API_ROUTES,
    public_handlers=[*controllers.PUBLIC_ROUTES, *saved_search_routes.ROUTES],
    nav=(
        NavEntry("/matches", "政策匹配", "Matches", ("policy", "read"), ("enterprise",)),
        NavEntry("/portrait", "企业画像", "Portrait", ("policy", "read"), ("enterprise",)),
        NavEntry("/applications", "我的申报", "Applications", ("policy", "read"), ("enterprise",)),
        NavEntry(
            "/policies", "政策管理", "Policies", ("policy", "publish"), ("government", "operator")
        ),
        NavEntry(
            "/queue", "申报审核", "Review queue", ("policy", "review"), ("government", "operator")
        ),
        NavEntry("/stats", "统计", "Statistics", ("policy", "review"), ("government", "operator")),
    ),
    permissions=(
        Permission("policy", "read", "查看政策匹配", "View policy matches"),
        Permission("policy", "apply", "维护画像与申报政策", "Edit the portrait and apply"),
        Permission("policy", "publish", "发布政策", "Write and publish policies"),
        Permission("policy", "review", "审核政策申报", "Review applications"),
    ),
    roles={
        "policy_clerk": (("policy", "read"), ("policy", "apply")),
        "policy_officer": (("policy", "read"), ("policy", "publish"), ("policy", "review")),
    },
    role_names={
        "policy_clerk": ("政策申报专员", "Policy clerk"),
        "policy_officer": ("政策审核员", "Policy officer"),
    },
    piccolo_apps=("canal.park.policy.piccolo_app",),
    jobs=(*jobs.JOBS, *saved_searches.JOBS),
    cron=(
        ScheduledJob(jobs.policy_match_all, minute={35}, hour={0}),
        ScheduledJob(jobs.policy_window_reminders, minute={5}, hour={1}),
        ScheduledJob(jobs.policy_weekly_digest, minute={15}, hour={1}, weekday={0}),
    ),
    search_indexes=(POLICIES_INDEX,),
    audit_labels={
        "policy.created": "Policy created",
        "policy.versioned": "Policy edited (new version)",
        "policy.published": "Policy published",
        "policy.portrait_changed": "Enterprise portrait changed",
        "policy.applied": "Applied for a policy",
        "policy.resubmitted": "Application resubmitted",
        "policy.application_accepted": "Application accepted",
        "policy.application_rejected": "Application rejected",
        "policy.application_more_info": "More material requested",
        "policy.application_disbursed": "Funds disbursed",
        "policy.overdue_reminded": "Overdue applications reminded",
        "policy.material_opened": "Application material opened by the authority",
    },
    seed_demo=seed_demo,
)
