"""Personal-data detectors and the standard Chinese masking formats.

Detection looks at values, not only at column names: a column is flagged with a kind when
most of its sampled non-empty values match that kind (an 18-digit number only counts as an ID
number when its check digit is right, a 16-19 digit number only as a bank card when its Luhn
sum is). Names and addresses have no checksum, so the column name counts as evidence too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
ID_RE = re.compile(r"^[1-9]\d{5}(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dXx]$")
MOBILE_RE = re.compile(r"^(?:\+?86[- ]?)?1[3-9]\d{9}$")
CARD_RE = re.compile(r"^\d{16,19}$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
NAME_RE = re.compile(r"^[\u4e00-\u9fff]{2,4}$")
ADDRESS_RE = re.compile(r"[\u4e00-\u9fff].*(省|市|区|县|镇|乡|村|路|街|巷|号|小区|栋|室)")
# The commonest surnames cover most of the population; enough to tell names from words.
SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺"
    "顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧"
    "耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙"
    "鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫"
    "米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
NAME_HINTS = ("姓名", "名字", "联系人", "name", "contact")
ADDRESS_HINTS = ("地址", "住址", "address", "addr")

KINDS = ("id_card", "mobile", "bank_card", "email", "name", "address")
KIND_LABELS = {
    "id_card": ("身份证号", "ID card number"),
    "mobile": ("手机号", "Mobile number"),
    "bank_card": ("银行卡号", "Bank card number"),
    "email": ("电子邮箱", "E-mail address"),
    "name": ("姓名", "Personal name"),
    "address": ("地址", "Address"),
}
THRESHOLD = 0.6
# A column of people's names or home addresses repeats little: below this share of distinct
# values (e.g. two district names over a whole file) it is a category, not people.
PEOPLE_MIN_DISTINCT_RATIO = 0.05


def id_card_valid(value: str) -> bool:
    if not ID_RE.match(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == value[17].upper()


def luhn_valid(value: str) -> bool:
    if not CARD_RE.match(value):
        return False
    total = 0
    for i, ch in enumerate(reversed(value)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def value_kind(value: str) -> str | None:
    v = value.strip()
    if not v:
        return None
    if id_card_valid(v):
        return "id_card"
    if MOBILE_RE.match(v):
        return "mobile"
    if luhn_valid(v):
        return "bank_card"
    if EMAIL_RE.match(v):
        return "email"
    return None


def detect_column(
    name: str, values: Iterable[str], *, distinct_ratio: float | None = None
) -> str | None:
    """The personal-data kind of a column, or None. ``values`` should be a sample spread over
    the whole column; ``distinct_ratio`` (distinct values / non-empty rows, when known over
    enough rows) keeps a repetitive column of place names from passing for people's names."""
    sample = [v.strip() for v in values if v is not None and str(v).strip()]
    if not sample:
        return None
    counts: dict[str, int] = {}
    for v in sample:
        kind = value_kind(v)
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    if counts:
        kind, hits = max(counts.items(), key=lambda kv: kv[1])
        if hits / len(sample) >= THRESHOLD:
            return kind
    lowered = name.lower()
    if distinct_ratio is not None and distinct_ratio < PEOPLE_MIN_DISTINCT_RATIO:
        return None
    names = sum(1 for v in sample if NAME_RE.match(v) and v[0] in SURNAMES)
    if names / len(sample) >= THRESHOLD and (
        any(h in lowered for h in NAME_HINTS) or names / len(sample) >= 0.9
    ):
        return "name"
    addresses = sum(1 for v in sample if len(v) >= 6 and ADDRESS_RE.search(v))
    if addresses / len(sample) >= THRESHOLD and (
        any(h in lowered for h in ADDRESS_HINTS) or addresses / len(sample) >= 0.9
    ):
        return "address"
    return None


def mask_value(kind: str | None, value: str) -> str:
    """The standard display masks: 138****5678, 3715**********123X, 张**, …"""
    v = value.strip()
    if not v:
        return v
    if kind == "mobile" and len(v) >= 11:
        d = v[-11:]
        return f"{d[:3]}****{d[-4:]}"
    if kind == "id_card" and len(v) == 18:
        return f"{v[:4]}{'*' * 10}{v[-4:]}"
    if kind == "bank_card" and len(v) >= 12:
        return f"{v[:4]} **** **** {v[-4:]}"
    if kind == "email" and "@" in v:
        local, domain = v.split("@", 1)
        return f"{local[:1]}***@{domain}"
    if kind == "name":
        return v[0] + "*" * (len(v) - 1)
    if kind == "address":
        return v[:6] + "****"
    if len(v) <= 2:
        return "*" * len(v)
    return v[0] + "*" * (len(v) - 2) + v[-1]
