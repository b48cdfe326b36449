"""Language negotiation and message tables."""

from __future__ import annotations

import pytest

from streamchat.errors import MESSAGES, pick_language, translate


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "zh"),
        ("", "zh"),
        ("en", "en"),
        ("en-US", "en"),
        ("EN-gb", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR,en;q=0.5", "en"),
        ("fr-FR", "zh"),
        ("zh;q=0.2,en;q=0.7", "en"),
        ("en;q=0", "zh"),
        ("en;q=bogus", "zh"),
    ],
)
def test_pick_language(header: str | None, lang: str) -> None:
    assert pick_language(header) == lang


def test_every_message_has_both_languages_with_the_same_placeholders() -> None:
    for key, (zh, en) in MESSAGES.items():
        assert zh, key
        assert en, key
        assert sorted(_placeholders(zh)) == sorted(_placeholders(en)), key


def test_translate_fills_placeholders() -> None:
    assert translate("message_too_long", "en", limit=5) == "message must be at most 5 characters"
    assert translate("message_too_long", "zh", limit=5) == "消息内容不能超过 5 个字符"


def _placeholders(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]
