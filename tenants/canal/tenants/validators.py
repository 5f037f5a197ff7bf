"""Organisation identifiers: the unified social credit code (GB 32100-2015) and slugs."""

from __future__ import annotations

import re
import unicodedata

from canal.platform import regions
from canal.platform.http.errors import FieldError

# GB 32100: 31 characters (no I, O, Z, S, V); check = 31 - (Σ value×weight mod 31).
CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 11714: the organisation code inside (characters 9–17), 8 characters and a check
# character: 11 - (Σ value×weight mod 11), 10 written X and 11 written 0; A–Z count 10–35.
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$")
NAME_MAX = 100
RESERVED_SLUGS = {
    "admin",
    "api",
    "static",
    "login",
    "logout",
    "signup",
    "account",
    "new",
    "operator",
    "platform",
    "t",
    "m",
    "healthz",
    "readyz",
    "metrics",
    "orgs",
    "invite",
    "www",
    "root",
    "system",
    "canal",
    "notifications",
    "preferences",
}


def credit_code_check_char(first17: str) -> str:
    total = sum(
        CREDIT_CODE_CHARSET.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True)
    )
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    total = sum(int(c, 36) * w for c, w in zip(first8, ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def parse_credit_code(value: str) -> str:
    """Normalise and validate; raises ValueError(FieldError) naming the exact problem.

    Full-width characters (common with Chinese input methods) become half-width and spaces
    are dropped, so "9137 1502 ..." typed off a licence is accepted.
    """
    code = re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).upper()
    if len(code) != 18:
        raise ValueError(
            FieldError(
                "credit_code",
                "credit_code_length",
                f"统一社会信用代码应为 18 位,您输入了 {len(code)} 位。",
                f"The unified social credit code has 18 characters; you entered {len(code)}.",
            )
        )
    bad = sorted({c for c in code if c not in CREDIT_CODE_CHARSET})
    if bad:
        shown = "、".join(bad)
        raise ValueError(
            FieldError(
                "credit_code",
                "credit_code_charset",
                f"统一社会信用代码不能包含字符:{shown}(不使用 I、O、Z、S、V)。",
                f"The code may not contain: {', '.join(bad)} (I, O, Z, S and V are never used).",
            )
        )
    if not code[2:8].isdigit():
        raise ValueError(
            FieldError(
                "credit_code",
                "credit_code_region",
                "统一社会信用代码第 3–8 位应为行政区划码(数字)。",
                "Characters 3–8 of the code must be the administrative region code (digits).",
            )
        )
    if credit_code_check_char(code[:17]) != code[17]:
        raise ValueError(
            FieldError(
                "credit_code",
                "credit_code_checksum",
                "统一社会信用代码校验位不正确,请核对营业执照。",
                "The code's check character does not match; please check the business licence.",
            )
        )
    if not regions.registration_region(code[2:8]):
        raise ValueError(
            FieldError(
                "credit_code",
                "credit_code_region",
                f"统一社会信用代码第 3–8 位「{code[2:8]}」不是有效的行政区划代码(GB/T 2260),"
                "请核对营业执照。",
                f"Characters 3–8 of the code, {code[2:8]}, are not an administrative region "
                "code (GB/T 2260); please check the business licence.",
            )
        )
    if org_code_check_char(code[8:16]) != code[16]:
        raise ValueError(
            FieldError(
                "credit_code",
                "credit_code_org_checksum",
                "统一社会信用代码第 9–17 位的组织机构代码校验位不正确(GB 11714),请核对营业执照。",
                "The organisation code inside the code (characters 9–17) fails its check "
                "character (GB 11714); please check the business licence.",
            )
        )
    return code


def parse_slug(value: str) -> str:
    slug = value.strip().lower()
    if len(slug) < 3 or len(slug) > 40:
        raise ValueError(
            FieldError(
                "slug",
                "slug_length",
                f"网址标识须为 3–40 个字符,您输入了 {len(slug)} 个。",
                f"The web address name must be 3–40 characters; you entered {len(slug)}.",
            )
        )
    if not _SLUG.match(slug) or "--" in slug:
        raise ValueError(
            FieldError(
                "slug",
                "slug_format",
                "网址标识须为 3–40 位小写字母、数字或连字符,且以字母或数字开头和结尾。",
                "The web address name must be 3–40 lowercase letters, digits or hyphens, starting "
                "and ending with a letter or digit.",
            )
        )
    if slug in RESERVED_SLUGS:
        raise ValueError(
            FieldError(
                "slug",
                "slug_reserved",
                "该网址标识为系统保留,请换一个。",
                "That web address name is reserved; choose another.",
            )
        )
    return slug


def parse_org_name(value: str) -> str:
    """An organisation's display name: 1–100 characters, no control characters."""
    name = " ".join(unicodedata.normalize("NFC", value).split())
    if not name or len(name) > NAME_MAX:
        raise ValueError(
            FieldError(
                "name",
                "name_length",
                f"组织名称须为 1–{NAME_MAX} 个字符。",
                f"The organisation name must be 1–{NAME_MAX} characters.",
            )
        )
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValueError(
            FieldError(
                "name",
                "name_characters",
                "组织名称不能包含控制字符或不可见字符。",
                "The organisation name may not contain control or invisible characters.",
            )
        )
    return name


def suggest_slug(name: str) -> str:
    """A web address name from the Latin letters and digits of ``name`` ("" if too few)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    return slug if len(slug) >= 3 and slug not in RESERVED_SLUGS else ""
