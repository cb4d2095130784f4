"""User strings in Streamlit's Markdown, shown as text: one place that escapes them.

Streamlit renders every message (``st.error``, ``st.caption``, ``st.markdown``, a widget's label and help) as
GitHub Markdown with its own additions (``:red[...]`` directives, ``$`` maths, ``:material/...:`` icons). A string
that came from a user (a URL value, a file, folder or class name, a label, a layer name, or an error message that
quotes one) must reach the page as the characters it holds: ``[sign in](http://attacker)`` a bracket, not a link,
``![](http://attacker/px)`` not an image that loads at once, ``<img src=...>`` not an element.

- :func:`plain` escapes a whole message (prose that quotes input anywhere in it, such as a qcore error): every
  character that starts Markdown is backslash-escaped, a line cannot start a block (heading, list, quote, code,
  table), and the bare addresses GitHub Markdown turns into links (``http://``, ``www.``, ``a@b.c``) and Streamlit's
  ``:name`` directives and icons are broken with an invisible word joiner (U+2060).
- :func:`code` quotes one value as an inline code span, shown character for character (a file name in a message
  the app writes).

Escape at display time, in the UI: qcore's messages stay plain text for the CLI and the logs.
"""

from __future__ import annotations

import re

__all__ = ["plain", "code", "SHOWN"]

SHOWN = 200  # characters of a value quoted by :func:`code`
_JOINER = "\u2060"  # WORD JOINER: invisible, breaks GitHub Markdown's autolink literals
# Characters that start inline Markdown (or Streamlit's directives, maths, tables, an entity: ``&#91;``) wherever
# they are. ``_`` is escaped only where it can start or end emphasis (not between two letters or digits:
# ``keep_float`` stays).
_ALWAYS = re.compile(r"([\\`*\[\]<>$~|{}&])")
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# A line that would start a block: heading, quote, list, thematic break, setext underline, fenced code.
_BLOCK = re.compile(r"^([#>+=-]|\d{1,9}[.)])")
# A colon that would start a Streamlit directive (``:red[...]``), icon (``:material/home:``) or emoji shortcode: one
# not after a letter or digit, before one (the word joiner goes between).
_DIRECTIVE = re.compile(r"(?<![0-9A-Za-z]):(?=[A-Za-z])")
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(?=://)|(?<=\bwww)(?=\.)|(?=@)")


def plain(text: object) -> str:
    """``text`` as Markdown that renders as exactly its characters (line breaks kept as Markdown line breaks):
    no link, image, HTML, emphasis, heading, list, table, maths or directive, whatever it holds."""
    lines = []
    for line in str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _UNDERSCORE.sub(r"\\_", _ALWAYS.sub(r"\\\1", line.lstrip(" \t")))
        line = _DIRECTIVE.sub(":" + _JOINER, line)
        line = _BLOCK.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], line)
        lines.append(_AUTOLINK.sub(_JOINER, line))
    return "  \n".join(lines)


def code(text: object) -> str:
    """``text`` as a Markdown inline code span, shown character for character: inside one, CommonMark reads no
    link, image, emphasis or HTML. The fence is longer than any run of backticks in ``text``, the padding spaces
    are the ones a code span drops, line breaks become spaces (a blank line would end the span); over
    :data:`SHOWN` characters it is cut, with ``...``."""
    text = re.sub(r"[\r\n]+", " ", str(text))
    if len(text) > SHOWN:
        text = text[:SHOWN] + "..."
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"
