"""Registry entry of the social-security card module (社保卡一卡通)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="sscard",
    name_zh="社保卡一卡通",
    name_en="Social-security card",
    summary_zh="电子社保卡申领与一卡通用:园区门禁、访客、停车、图书馆、景区。",
    summary_en=(
        "Apply for the social-security card and use it at every"
        " gate: park, visitors, parking, library, scenic spots."
    ),
    status="coming_soon",
    tenant_kinds=("community", "enterprise", "government", "operator"),
)
