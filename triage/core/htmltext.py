"""HTML -> readable text, for messages that carry no text/plain part.

The stdlib parser is enough: we need the words a person wrote (for filters,
priority and the ticket), not a faithful rendering.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

# html.parser is quadratic on some broken markup (an unclosed "<" or "<!--"
# rescans the rest of the document each time; CPython gh-135462) and reads
# about a megabyte a second: markup is bounded and tidied before it runs.
MAX_MARKUP = 1_000_000
_DATA_URI = re.compile(r"data:[^,\"'<>\s]{0,100},[^\"'<>\s]{256,}")
_DECLARATION = re.compile(r"<[!?][^<>]*>")
_STRAY_LT = re.compile(r"""<(?![a-zA-Z/](?:[^<>"']|"[^"]*"|'[^']*')*>)""")

_BLOCK = frozenset(
    [
        "p",
        "div",
        "br",
        "tr",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "blockquote",
        "pre",
        "hr",
        "section",
        "article",
        "header",
        "footer",
    ]
)
_SKIP = frozenset({"script", "style", "head", "title"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(data)


def html_to_text(markup: str) -> str:
    """The text of an HTML document, one line per block, no blank lines."""
    markup = _tidy(markup)
    parser = _Text()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # noqa: BLE001 - broken markup still has words in it
        return html.unescape(markup)
    lines = (" ".join(line.split()) for line in "".join(parser.out).splitlines())
    return "\n".join(line for line in lines if line)


def _tidy(markup: str) -> str:
    """`markup` the parser reads in linear time: inline images' data, comments and
    declarations dropped, the first MAX_MARKUP characters, and every "<" that opens
    no complete tag written as text (which is what the parser makes of it anyway)."""
    if "data:" in markup:
        markup = _DATA_URI.sub("data:,", markup)
    markup = _drop_comments(markup[:MAX_MARKUP])
    return _STRAY_LT.sub("&lt;", _DECLARATION.sub("", markup))


def _drop_comments(markup: str) -> str:
    """Without `<!-- ... -->`; an unclosed comment runs to the end, as in a browser."""
    if "<!--" not in markup:
        return markup
    out = []
    pos = 0
    while (start := markup.find("<!--", pos)) != -1:
        out.append(markup[pos:start])
        end = markup.find("-->", start + 4)
        if end == -1:
            return "".join(out)
        pos = end + 3
    out.append(markup[pos:])
    return "".join(out)
