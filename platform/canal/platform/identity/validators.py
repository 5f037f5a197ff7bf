"""Validators for identity data: phone numbers, e-mail addresses, resident ID numbers."""

from __future__ import annotations

import datetime as dt
import re

from canal.platform import clock, regions
from canal.platform.http.errors import FieldError

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)
# Mainland mobile numbers: 11 digits starting 1[3-9]; an optional +86 / 86 prefix.
_PHONE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")

# GB 11643-1999: weights of the first 17 digits and the check character for sum mod 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def normalise_email(value: str) -> str | None:
    value = value.strip().lower()
    return value if len(value) <= 254 and _EMAIL.match(value) else None


def normalise_phone(value: str) -> str | None:
    match = _PHONE.match(re.sub(r"[\s-]", "", value.strip()))
    return f"+86{match.group(1)}" if match else None


def classify_login(value: str) -> tuple[str, str] | None:
    """('email' | 'phone', normalised value) or None."""
    if "@" in value:
        email = normalise_email(value)
        return ("email", email) if email else None
    phone = normalise_phone(value)
    return ("phone", phone) if phone else None


def id_number_check_char(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def parse_id_number(value: str, *, today: dt.date | None = None) -> tuple[str, dt.date, str]:
    """Validate an 18-character resident ID number (GB 11643; the province per GB/T 2260 —
    see ``canal.platform.regions`` for why not the county).

    Returns (normalised number, birth date, gender "male"/"female"); raises ValueError with a
    FieldError describing exactly what is wrong.
    """
    number = value.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", number):
        raise ValueError(
            FieldError(
                "id_number",
                "id_number_format",
                "身份证号应为 18 位,前 17 位为数字,最后一位为数字或 X。",
                "The ID number must be 18 characters: 17 digits followed by a digit or X.",
            )
        )
    if not (regions.is_province(number[:2]) or number[:2] in regions.RESIDENCE_PERMIT_PREFIXES):
        raise ValueError(
            FieldError(
                "id_number",
                "id_number_region",
                f"身份证号前两位「{number[:2]}」不是有效的省级行政区划代码(GB/T 2260)。",
                f"The ID number's first two digits, {number[:2]}, are not a province code "
                "(GB/T 2260).",
            )
        )
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise ValueError(
            FieldError(
                "id_number",
                "id_number_birth_date",
                "身份证号中的出生日期无效。",
                "The birth date inside the ID number is not a real date.",
            )
        ) from None
    today = today or clock.today()
    if birth > today or birth.year < 1900:
        raise ValueError(
            FieldError(
                "id_number",
                "id_number_birth_date",
                "身份证号中的出生日期不合理。",
                "The birth date inside the ID number is out of range.",
            )
        )
    if id_number_check_char(number[:17]) != number[17]:
        raise ValueError(
            FieldError(
                "id_number",
                "id_number_checksum",
                "身份证号校验位不正确,请核对后重新输入。",
                "The ID number's check digit does not match; please check the number.",
            )
        )
    gender = "male" if int(number[16]) % 2 == 1 else "female"
    return number, birth, gender


def mask_id_number(number: str) -> str:
    """3715**********123X: region prefix and the last four stay, the rest is hidden."""
    return number[:4] + "*" * 10 + number[-4:]


def mask_phone(phone: str) -> str:
    digits = phone.removeprefix("+86")
    return digits[:3] + "****" + digits[-4:] if len(digits) == 11 else phone
