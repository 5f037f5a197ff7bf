"""Registry entry of the enterprise service supermarket module (企业服务超市)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="services",
    name_zh="企业服务超市",
    name_en="Enterprise service supermarket",
    summary_zh="金融、人才、创业创新、法律、财税、咨询、技术与培训服务,询价下单一站办。",
    summary_en=(
        "Finance, talent, legal, tax, consulting, technology an"
        "d training services: quote, order and pay in one place."
    ),
    status="coming_soon",
    tenant_kinds=("enterprise", "park", "operator"),
)
