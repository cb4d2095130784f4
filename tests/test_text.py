"""ui.text: a user string in Streamlit's Markdown renders as exactly its characters (issue 28, item 2).

Rendered here with markdown-it (CommonMark, tables and strikethrough on: GitHub Markdown less its autolink
literals, which :func:`ui.text.plain` breaks with a word joiner and which are checked on the text instead)."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from ui.text import code, plain

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
JOINER = "\u2060"
PAYLOADS = [
    "[Your session has expired: sign in again](http://attacker/login) ![](http://attacker/px)",
    "<img src=http://attacker/px onerror=alert(1)> <a href='http://attacker'>x</a> <script>alert(1)</script>",
    "<http://attacker/auto> bare http://attacker/bare www.attacker.example me@attacker.example",
    "&#91;x&#93;(http&#58;//attacker) &lt;b&gt; &amp;",
    ":red[alarm] :material/warning: $x^2$ ~~gone~~ *em* _under_ __strong__ `code` \\*",
    "# heading\n- item\n1. item\n> quote\n    indented code\n```\nfence\n```\n| a | b |\n|---|---|\n| 1 | 2 |",
    "[ref][1]\n\n[1]: http://attacker/ref\ntext\n===",
    "layer1.0.conv1;act:features.3.add;keep_float (did you mean x?) 'int9' a=b mobilenet_v3_small",
]
TAGS = re.compile(r"<(?!/?(p|br|code)\b)[a-z/!]", re.I)  # any element but a paragraph, a line break, a code span


def _text(rendered: str) -> str:
    """What a reader sees: the rendered HTML without its tags, entities decoded, line breaks as newlines."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered.replace("<br />\n", "\n"))).strip()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_plain_renders_the_characters_and_no_element(payload):
    rendered = MD.render(plain(payload))
    assert not TAGS.search(rendered), rendered  # no a, img, script, h1, li, table, em, blockquote, pre ...
    seen = _text(rendered)
    assert not re.search(r"(?i)https?://|www\.|\w@\w|(?<![\w]):[a-z]", seen), seen  # no autolink, no directive
    lines = [line.lstrip(" \t") for line in payload.split("\n") if line.strip()]  # a blank line: a new paragraph
    assert [line for line in seen.replace(JOINER, "").split("\n") if line.strip()] == lines


def test_plain_leaves_ordinary_messages_as_they_were():
    for text in ("backend='fx' does not run fp16; allowed: auto, float", "one.pt does not fit resnet18: missing "
                 "keys (121): bn1.bias", "the ort backend cannot keep act:features.3.add in FP32 (keep_float)"):
        assert plain(text) == text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_code_is_one_code_span(payload):
    rendered = MD.render(code(payload)).strip()
    assert rendered.startswith("<p><code>") and rendered.endswith("</code></p>"), rendered
    assert not TAGS.search(rendered)
