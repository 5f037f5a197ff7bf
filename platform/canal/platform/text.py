"""Text people type: one rule for what a name, a title or a body may hold.

``check_text`` is what every domain's validation calls for a free-text field: trimmed and
NFC-normalised, at most ``limit`` characters (refused with a message naming the limit, never
silently cut), no control characters (a body may keep line breaks and tabs), and no
bidirectional-override or -isolate marks (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F): in a
catalogue title or a file name they make text display as something other than what it is
("invoice<U+202E>fdp.exe" shows as "invoiceexe.pdf"). A NUL byte never gets this far
(``canal.platform.http.input``).
"""

from __future__ import annotations

import unicodedata

from canal.platform.http.errors import FieldError

BIDI_CONTROLS = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
_BODY_WHITESPACE = frozenset("\n\r\t")


def has_bidi_controls(value: str) -> bool:
    return any(c in BIDI_CONTROLS for c in value)


def check_text(
    errors: list[FieldError],
    field: str,
    value: object,
    *,
    limit: int,
    required: bool = False,
    multiline: bool = False,
    minimum: int = 0,
    zh: str = "此项",
    en: str = "This field",
) -> str:
    """The field's text, normalised; each problem appended to ``errors`` (zh/en, naming the
    field by ``zh``/``en``). Returns the text even when refused, for the form's re-render."""
    text = "" if value is None else unicodedata.normalize("NFC", str(value)).strip()
    if not text:
        if required or minimum:
            errors.append(FieldError(field, "required", f"请填写{zh}。", f"{en} is required."))
        return text
    if len(text) > limit:
        errors.append(
            FieldError(
                field,
                "too_long",
                f"{zh}最多 {limit} 个字符(现为 {len(text)} 个)。",
                f"{en} has at most {limit} characters ({len(text)} now).",
            )
        )
    elif len(text) < minimum:
        errors.append(
            FieldError(
                field,
                "too_short",
                f"{zh}至少 {minimum} 个字符。",
                f"{en} needs at least {minimum} characters.",
            )
        )
    if has_bidi_controls(text):
        errors.append(
            FieldError(
                field,
                "bidi_characters",
                f"{zh}不能包含改变文字方向的控制字符(如 U+202E)。",
                f"{en} may not contain text-direction control characters (such as U+202E).",
            )
        )
    elif any(
        unicodedata.category(c) == "Cc" and not (multiline and c in _BODY_WHITESPACE) for c in text
    ):
        errors.append(
            FieldError(
                field,
                "control_characters",
                f"{zh}不能包含控制字符。",
                f"{en} may not contain control characters.",
            )
        )
    return text
