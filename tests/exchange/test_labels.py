"""All .po files are merged into one catalogue, so a msgid another domain translates too
takes whichever file is read last. The exchange's labels must not come out in the service
marketplace's words (分类 read as 服务类别, 提供方 as 服务商, …)."""

from __future__ import annotations

from babel.messages.pofile import read_po

from canal.web.i18n import LOCALE_DIR, catalog


def test_exchange_labels_keep_their_own_chinese():
    merged = catalog("zh_CN")
    folder = LOCALE_DIR / "zh_CN" / "LC_MESSAGES"
    wrong = {}
    for name in ("exchange.po", "databank.po"):
        with (folder / name).open("rb") as handle:
            for message in read_po(handle, locale="zh_CN"):
                if not (message.id and message.string and isinstance(message.id, str)):
                    continue
                shown = merged[message.id]
                if "服务" in shown and "服务" not in str(message.string):
                    wrong[message.id] = (str(message.string), shown)
    assert wrong == {}


def test_catalogue_and_listing_labels():
    merged = catalog("zh_CN")
    assert merged["Data category"] == "数据分类"
    assert merged["Data provider"] == "数据提供方"
    assert merged["Dataset description"] == "数据集描述"
