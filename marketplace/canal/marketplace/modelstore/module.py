"""Registry entry of the ai model store module (AI 模型商店)."""

from canal.platform.modules import ModuleSpec

MODULE = ModuleSpec(
    key="modelstore",
    name_zh="AI 模型商店",
    name_en="AI model store",
    summary_zh="发布与调用 AI 模型,按次计量计费,可接入园区实时数据。",
    summary_en="Publish and call AI models, metered per call, runnable on live park data.",
    status="coming_soon",
    tenant_kinds=("enterprise", "park", "operator"),
)
