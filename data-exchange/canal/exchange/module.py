"""Registry entry of the data bank & trading module (数据银行与数据交易)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="exchange",
    name_zh="数据银行与数据交易",
    name_en="Data bank & trading",
    summary_zh="数据存储、确权上架、脱敏、可用不可见的计算与全程使用审计。",
    summary_en="Data storage, listings, masking, compute-to-data and an audit of every use.",
    status="coming_soon",
    tenant_kinds=("enterprise", "park", "community", "government", "operator"),
)
