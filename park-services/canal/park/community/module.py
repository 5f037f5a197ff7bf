"""Registry entry of the community services module (智慧社区)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="community",
    name_zh="智慧社区",
    name_en="Community services",
    summary_zh="社区公告、报修、缴费、养老、志愿服务、议事投票与网格上报。",
    summary_en="Announcements, repairs, fees, elderly care, volunteers, votes and grid reports.",
    status="coming_soon",
    tenant_kinds=("community", "operator"),
)
