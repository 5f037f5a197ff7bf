"""The supermarket's categories (seed 专栏21 1a): eight kinds of service with sub-categories,
and the default commission rate the operator can change per category."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    key: str
    zh: str
    en: str
    subcategories: tuple[tuple[str, str, str], ...]  # (key, zh, en)

    def name(self, locale: str) -> str:
        return self.zh if locale.startswith("zh") else self.en


CATEGORIES: tuple[Category, ...] = (
    Category(
        "finance",
        "金融服务",
        "Finance",
        (("loans", "融资贷款", "Loans"), ("insurance", "保险", "Insurance")),
    ),
    Category(
        "talent",
        "人才服务",
        "Talent",
        (("recruiting", "招聘", "Recruiting"), ("hr_outsourcing", "人事外包", "HR outsourcing")),
    ),
    Category(
        "startup",
        "创业创新服务",
        "Start-up and innovation",
        (("incubation", "孵化", "Incubation"), ("ip", "知识产权", "Intellectual property")),
    ),
    Category(
        "legal",
        "法律服务",
        "Legal",
        (("contracts", "合同审查", "Contracts"), ("disputes", "纠纷处理", "Disputes")),
    ),
    Category(
        "tax",
        "财税服务",
        "Finance and tax",
        (
            ("bookkeeping", "代理记账", "Bookkeeping"),
            ("tax_filing", "纳税申报", "Tax filing"),
            ("audit", "审计", "Audit"),
        ),
    ),
    Category(
        "management",
        "经营管理服务",
        "Management consulting",
        (
            ("lean", "精益生产", "Lean production"),
            ("brand", "品牌培育", "Brand building"),
            ("supply_chain", "供应链管理", "Supply chain"),
            ("equity", "股权激励", "Equity incentives"),
        ),
    ),
    Category(
        "technology",
        "技术平台服务",
        "Technology platform and transfer",
        (
            ("development", "技术开发", "Technology development"),
            ("transfer", "技术转移", "Technology transfer"),
            ("digital", "数字化改造", "Digital transformation"),
        ),
    ),
    Category(
        "exchange",
        "交流沟通服务",
        "Exchange and training",
        (("training", "企业培训", "Training"), ("events", "专题活动", "Events")),
    ),
)

BY_KEY = {c.key: c for c in CATEGORIES}
# 5 %: what the operator charges until it sets a rate for a category.
DEFAULT_COMMISSION_BP = 500

AREAS: tuple[tuple[str, str, str], ...] = (
    ("dongchangfu", "东昌府区", "Dongchangfu district"),
    ("liaocheng", "聊城市", "Liaocheng city"),
    ("shandong", "山东省", "Shandong province"),
    ("online", "线上服务", "Online"),
)
AREA_KEYS = {a[0] for a in AREAS}

PRICE_MODELS: tuple[tuple[str, str, str], ...] = (
    ("fixed", "固定价格", "Fixed price"),
    ("quote", "询价", "Quote on request"),
    ("free", "免费咨询", "Free consultation"),
)


def category_name(key: str, locale: str) -> str:
    category = BY_KEY.get(key)
    return category.name(locale) if category else key


def subcategory_name(category: str, key: str, locale: str) -> str:
    for sub_key, zh, en in BY_KEY[category].subcategories if category in BY_KEY else ():
        if sub_key == key:
            return zh if locale.startswith("zh") else en
    return key


def area_name(key: str, locale: str) -> str:
    for area_key, zh, en in AREAS:
        if area_key == key:
            return zh if locale.startswith("zh") else en
    return key
