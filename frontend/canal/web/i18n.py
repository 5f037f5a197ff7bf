"""Translations: Chinese (zh_CN) first, English second.

Templates and code write English source text, ``_("Sign in")``; the zh_CN catalogs
(``locales/zh_CN/LC_MESSAGES/*.po``, read with Babel at start-up) give the Chinese. The
locale comes from ``?lang=`` (remembered in a cookie), then the signed-in user's choice, then
Accept-Language, then zh_CN.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LANG_COOKIE = "canal_lang"
LOCALE_DIR = Path(__file__).with_name("locales")
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


@cache
def catalog(locale: str) -> dict[str, str]:
    messages: dict[str, str] = {}
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    if not folder.is_dir():
        return messages
    for po in sorted(folder.glob("*.po")):
        with po.open("rb") as handle:
            for message in read_po(handle, locale=locale):
                if message.id and message.string and isinstance(message.id, str):
                    messages[message.id] = str(message.string)
    return messages


def gettext(locale: str, text: str, **params: Any) -> str:
    translated = catalog(locale).get(text, text) if locale != "en" else text
    return translated.format(**params) if params else translated


def normalise(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().replace("-", "_")
    if value.lower().startswith("zh"):
        return "zh_CN"
    if value.lower().startswith("en"):
        return "en"
    return None


def negotiate(
    query_lang: str | None,
    cookie_lang: str | None,
    user_lang: str | None,
    accept_language: str | None,
) -> str:
    for candidate in (query_lang, cookie_lang, user_lang):
        found = normalise(candidate)
        if found:
            return found
    if accept_language:
        for part in accept_language.split(","):
            found = normalise(part.split(";")[0])
            if found:
                return found
    return DEFAULT_LOCALE


def request_locale(request: Any) -> str:
    state = request.scope.setdefault("state", {})
    if "locale" in state:
        return str(state["locale"])
    user = request.scope.get("user")
    locale = negotiate(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        getattr(user, "locale", None),
        request.headers.get("accept-language"),
    )
    state["locale"] = locale
    return locale
