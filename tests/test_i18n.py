"""Chinese first: every string a template shows has a zh_CN translation."""

import re
from pathlib import Path

import canal
from canal.web.i18n import catalog, gettext, negotiate

MSGID = re.compile(r"""_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def template_strings() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for root in canal.__path__:
        for path in Path(root).rglob("*.html"):
            for match in MSGID.finditer(path.read_text(encoding="utf-8")):
                text = match.group(1) if match.group(1) is not None else match.group(2)
                found.setdefault(text, set()).add(str(path.relative_to(Path(root).parent)))
    return found


def test_templates_use_translatable_strings():
    assert len(template_strings()) >= 10  # the scan finds the templates at all


def test_every_template_string_has_a_chinese_translation():
    zh = catalog("zh_CN")
    missing = {text: sorted(paths) for text, paths in template_strings().items() if text not in zh}
    assert missing == {}, f"no zh_CN translation for: {missing}"


def test_language_negotiation_prefers_explicit_choice():
    assert negotiate(None, None, None, None) == "zh_CN"
    assert negotiate(None, None, None, "en-US,en;q=0.9") == "en"
    assert negotiate("en", "zh_CN", None, "zh-CN") == "en"
    assert negotiate(None, "en", "zh_CN", None) == "en"
    assert negotiate("fr", None, None, "de") == "zh_CN"


def test_gettext_translates_and_formats():
    zh = catalog("zh_CN")
    some_id = next(iter(zh))
    assert gettext("zh_CN", some_id) == zh[some_id]
    assert gettext("en", some_id) == some_id


def test_times_are_shown_in_beijing_time():
    import datetime as dt

    from canal.web.render import beijing_time

    stored = dt.datetime(2026, 11, 24, 17, 30, tzinfo=dt.UTC)
    assert beijing_time(stored) == "2026-11-25 01:30"  # the next day here
    assert beijing_time(None) == ""
    # A time kept inside JSON (an application's history) reads the same way, not as UTC text.
    assert beijing_time("2026-12-07T17:32:00+00:00") == "2026-12-08 01:32"
