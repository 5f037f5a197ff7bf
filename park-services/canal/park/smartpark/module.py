"""Registry entry of the smart park module (智慧园区)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="smartpark",
    name_zh="智慧园区",
    name_en="Smart park",
    summary_zh="设备、遥测、告警、能耗与碳排、访客、停车与工单,一屏管好园区。",
    summary_en=(
        "Devices, telemetry, alarms, energy and carbon, "
        "visitors, parking and work orders for the park."
    ),
    status="coming_soon",
    tenant_kinds=("park", "enterprise", "operator"),
)
