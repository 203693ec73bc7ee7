"""Header values as text: RFC 2047 words, raw 8-bit bytes and the charsets they hint at.

A header is decoded in pieces (the stdlib's decoding is quadratic in the number of
encoded words), 8-bit bytes nobody declared are read by guess, and the lone
surrogates some codecs leave behind are replaced, since SQLite and UTF-8 refuse them.
Only display names and free text are decoded here: addresses and Message-IDs are
read as they came (`raw_text`), so an encoded word can never spell one.
"""

from __future__ import annotations

import re
from email.header import Header, decode_header

from triage.core import charsets
from triage.core.addresses import unfold

# Text handed to the stdlib's RFC 2047 decoding (quadratic in the number of
# encoded words) at a time.
DECODE_PIECE = 16 * 1024
_SURROGATES = re.compile("[\ud800-\udfff]")


def decode(value: object, hint: str | None = None) -> str:
    """A header value as one line of text; RFC 2047 decoded, unknown charsets best-effort.

    Raw 8-bit bytes in a header (no RFC 2047) are tried as UTF-8, then as the
    charset the message declares for its text (`hint`), then as Latin-1.
    """
    if isinstance(value, Header):
        text = "".join(_chunk(c, cs, hint) for c, cs in decode_header(value))
    else:
        text = undo_surrogates(str(value), hint)
        if "=?" in text:
            text = "".join(
                _decode_words(piece, hint) + sep for piece, sep in _pieces(text, DECODE_PIECE)
            )
    if "\x1b" in text:  # raw ISO-2022-JP, which no charset declaration announces
        text = charsets.unescape(text)
    return " ".join(text.split())


def _decode_words(text: str, hint: str | None) -> str:
    try:
        chunks = decode_header(text)
    except Exception:  # noqa: BLE001 - a header the stdlib cannot split stays literal
        chunks = [(text, None)]
    return "".join(_chunk(c, cs, hint) for c, cs in chunks)


def _pieces(text: str, size: int) -> list[tuple[str, str]]:
    """`text` as (piece, separator) pairs of about `size` characters, cut at a space if one is near.

    The stdlib joins the bytes of adjacent encoded words one by one, and pops
    its word list from the front (both quadratic): a long header is decoded
    piece by piece, best effort at the seams.
    """
    out = []
    start = 0
    while len(text) - start > size:
        cut = text.find(" ", start + size, start + 2 * size)
        if cut == -1:
            out.append((text[start : start + size], ""))
            start += size
        else:
            out.append((text[start:cut], " "))
            start = cut + 1
    out.append((text[start:], ""))
    return out


def clean(text: str) -> str:
    """`text` without lone surrogates (some codecs make them; SQLite and UTF-8 refuse them)."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def undo_surrogates(text: str, hint: str | None) -> str:
    """`text` with the 8-bit bytes kept as surrogates read as text: UTF-8, `hint`, Latin-1."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _chunk(text.encode("ascii", "surrogateescape"), None, hint)


def _chunk(data: bytes | str, charset: str | None, hint: str | None = None) -> str:
    if isinstance(data, str):
        return clean(data)
    if charset in (None, "unknown-8bit"):
        for guess in ("utf-8", charsets.codec_for(hint)):
            if guess:
                try:
                    return clean(data.decode(guess))
                except (UnicodeError, LookupError, ValueError):
                    pass
        return data.decode("latin-1")
    return clean(charsets.decode(data, charset))


def header_charset(grouped: dict[str, list[str]]) -> str | None:
    """One guess for the raw 8-bit bytes in this message's headers, when no text part
    declares a charset to read them with (None when every header is ASCII)."""
    raw = [
        v for values in grouped.values() for v in values if isinstance(v, str) and not v.isascii()
    ]
    if not raw:
        return None
    try:
        data = "\n".join(raw).encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return charsets.guess(data)


def raw_text(value: object, hint: str | None) -> str:
    """A header value as it came, on one line: 8-bit bytes read as text, nothing decoded."""
    return unfold(undo_surrogates(str(value), hint))
