"""GB/T 2260 administrative division codes: does a six-digit region code exist?

The list is ``data/gbt2260.tsv`` (its header says where it comes from and when): every code in
force — province, prefecture and county level — and the codes of the 2002–2014 revisions
since abolished. Two questions are asked of it:

* ``registration_region(code)`` — the region of a unified social credit code (characters
  3–8): the registration authority's division when the code was issued, which never changes
  afterwards, so an abolished code is still valid; also 100000 (a national registration) and
  the development-zone codes 71–80 under a known prefecture (统计用区划代码, used by the market
  regulators of 经济技术开发区 and 高新区, which GB/T 2260 itself does not list).
* ``is_province(prefix)`` — the first two digits of a resident ID number. An ID keeps the
  county code of its first issue for life, and counties and even prefectures have been
  renumbered since the 1980s (聊城地区 3725 became 聊城市 3715), so only the province level is
  certain enough to refuse a number on; 83 is the residence permit of Taiwan residents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).parent / "data" / "gbt2260.tsv"
NATIONAL = "100000"
# 港澳台居民居住证: 810000 Hong Kong, 820000 Macao, 830000 Taiwan residents.
RESIDENCE_PERMIT_PREFIXES = {"81", "82", "83"}


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    current: bool


@cache
def _regions() -> dict[str, Region]:
    found: dict[str, Region] = {}
    for line in DATA_FILE.read_text("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        code, name, status = line.split("\t")
        found[code] = Region(code, name, status == "current")
    return found


def region(code: str) -> Region | None:
    return _regions().get(code)


def provinces() -> dict[str, str]:
    """Two-digit prefix → the province's name (31 provinces, 台湾, 香港, 澳门)."""
    return {r.code[:2]: r.name for r in _regions().values() if r.code.endswith("0000")}


def is_province(prefix: str) -> bool:
    return prefix in provinces()


def registration_region(code: str) -> bool:
    """Whether ``code`` can be the registration authority's region in a credit code."""
    if code == NATIONAL or code in _regions():
        return True
    prefecture, county = code[:4] + "00", code[4:]
    if county.isdigit() and 71 <= int(county) <= 80:
        return prefecture in _regions() and not prefecture.endswith("0000")
    return False


def county_codes(prefix: str = "", *, current: bool = True) -> list[str]:
    """County-level codes (not ending 00) under ``prefix``: e.g. ``county_codes("3715")``."""
    return sorted(
        r.code
        for r in _regions().values()
        if r.code.startswith(prefix) and not r.code.endswith("00") and r.current == current
    )
