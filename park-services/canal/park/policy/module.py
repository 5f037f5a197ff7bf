"""Registry entry of the policy matching module (惠企政策)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="policy",
    name_zh="惠企政策",
    name_en="Policy matching",
    summary_zh="政策找企业:机器可读的申报条件、企业画像精准匹配、一次申报。",
    summary_en=(
        "The policy finds the enterprise: machine-readable el"
        "igibility, explained matches, one-stop applications."
    ),
    status="coming_soon",
    tenant_kinds=("enterprise", "government", "operator"),
)
