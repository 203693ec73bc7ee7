"""Text whose charset is missing, wrong, or named more narrowly than what clients write.

Three cases, all seen in real Japanese and Chinese mail:

* ISO-2022-JP is 7-bit: its escape sequences (`ESC $ B` ... `ESC ( B`) pass every
  ASCII check, so undeclared (and, with 7bit transfer encoding, declared) text reaches
  the reader as escape codes. `unescape` decodes them wherever they are; JIS pairs the
  standard codec refuses (Outlook writes NEC and IBM extensions such as ① and ㈱, as
  Microsoft's CP50220 does) are read through CP932, which holds them.
* 8-bit text that declares no charset, or `us-ascii`: UTF-8 if it decodes, else a
  bounded guess by charset-normalizer among the charsets mail in these languages uses
  (Shift_JIS/CP932, EUC-JP, GBK/GB18030, Big5, and Windows-1252 for Western text).
  The guess runs only on this rare path, on at most `SAMPLE_BYTES`, at most
  `MAX_GUESSES` times per message: the hot path pays one `isascii()` per text part.
* Declared names whose Microsoft superset is what clients really write (`shift_jis`
  carrying ①, `gb2312` carrying GBK characters): read with the superset, as the WHATWG
  Encoding Standard and every browser do.
"""

from __future__ import annotations

import codecs
import email.message
import re
from collections.abc import Iterable

SAMPLE_BYTES = 16 * 1024
MAX_GUESSES = 4
# What charset-normalizer may choose among (its own codec names).
CANDIDATES = ("cp932", "euc_jp", "gb18030", "big5", "cp1252", "koi8_r", "cp1251")
_CJK_CODECS = frozenset({"cp932", "euc_jp", "gb18030", "big5"})
_CYRILLIC_CODECS = frozenset({"koi8_r", "cp1251"})
ASCII_NAMES = frozenset({"us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "iso646-us", "646"})
SUPERSETS = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "csshiftjis": "cp932",
    "windows-31j": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "big5": "cp950",
    "x-big5": "cp950",
    "iso-2022-jp": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
}
# Han, kana, Hangul: what a right guess among the CJK codecs produces; half-width
# katakana is what a wrong Shift_JIS guess produces from single-byte text.
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_HALF_KANA = re.compile("[\uff66-\uff9f]")
_CYRILLIC = re.compile("[\u0400-\u04ff]")
_LETTER_8BIT = re.compile(r"[^\W\d_\x00-\x7f]")
_NOT_ASCII = re.compile(r"([^\x00-\x7f]+)")
_JIS_ERRORS = "triage-jis-via-cp932"


def _jis_via_cp932(exc: UnicodeError) -> tuple[str, int]:
    """Decode a JIS X 0208 pair the ISO-2022-JP codec refused through CP932, else U+FFFD."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    pair = exc.object[exc.start : exc.start + 2]
    if len(pair) == 2 and all(0x21 <= b <= 0x7E for b in pair):
        j1, j2 = pair
        s1 = ((j1 + 1) >> 1) + (0x70 if j1 < 0x5F else 0xB0)
        s2 = j2 + (0x1F + (j2 >= 0x60) if j1 & 1 else 0x7E)
        try:
            return bytes((s1, s2)).decode("cp932"), exc.start + 2
        except UnicodeDecodeError:
            pass
    return "\ufffd", exc.end


codecs.register_error(_JIS_ERRORS, _jis_via_cp932)


def codec_for(declared: str | None) -> str | None:
    """The codec to read a declared charset with: its superset when clients write one."""
    if not declared:
        return None
    name = declared.strip().strip('"').lower()
    return SUPERSETS.get(name, name)


def decode(data: bytes, declared: str) -> str:
    """`data` in its declared charset (or the superset), best effort; never raises."""
    codec = codec_for(declared) or "utf-8"
    errors = _JIS_ERRORS if codec.startswith("iso2022_jp") else "replace"
    try:
        return data.decode(codec, errors)
    except (LookupError, ValueError):  # unknown, or a codec that cannot "replace"
        return data.decode("utf-8", "replace")


def unescape(text: str) -> str:
    """`text` with its ISO-2022-JP runs decoded (call it when "\\x1b" is in the text)."""
    pieces = _NOT_ASCII.split(text)  # ASCII runs at even positions, linear time
    for i in range(0, len(pieces), 2):
        if "\x1b" in pieces[i]:
            pieces[i] = pieces[i].encode("ascii").decode("iso2022_jp_ext", _JIS_ERRORS)
    return "".join(pieces)


def guess(data: bytes) -> str | None:
    """The charset of 8-bit bytes that declare none: UTF-8 if they decode, else a guess.

    charset-normalizer ranks the candidates; the first whose reading is plausible wins:
    a CJK reading needs three CJK characters and no half-width katakana, a Cyrillic one
    three Cyrillic letters, mostly lower case, and no other 8-bit letters (on a few
    bytes, "Ünal" reads as Big5 and "Müller" as Windows-1251). Very short text stays
    ambiguous whatever is done. Windows-1252 is the last resort; None when even
    that does not decode (the caller keeps its old reading).
    """
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    sample = data
    if len(sample) > SAMPLE_BYTES:  # cut after a newline: never inside a two-byte character
        cut = sample.rfind(b"\n", 0, SAMPLE_BYTES)
        sample = sample[: cut + 1 if cut > 0 else SAMPLE_BYTES]
    from charset_normalizer import from_bytes  # only this rare path pays for the import

    for match in from_bytes(sample, cp_isolation=list(CANDIDATES)):
        if _plausible(str(match.encoding), str(match)):
            return str(match.encoding)
    return "cp1252" if _fits(sample, "cp1252") else None


def _plausible(codec: str, text: str) -> bool:
    if codec in _CJK_CODECS:
        return len(_CJK.findall(text)) >= 3 and not _HALF_KANA.search(text)
    if codec in _CYRILLIC_CODECS:
        # KOI8-R and Windows-1251 swap the cases: prose read with the wrong one is capitals.
        cyrillic = _CYRILLIC.findall(text)
        lower = sum(ch.islower() for ch in cyrillic)
        return (
            len(cyrillic) >= 3
            and len(cyrillic) == len(_LETTER_8BIT.findall(text))
            and lower * 2 >= len(cyrillic)
        )
    return True


def settle(parts: Iterable[tuple[email.message.Message, str | None]]) -> tuple[str, ...]:
    """Give body text parts the charset their bytes are in, before they are decoded.

    `parts` are (part, declared charset) for text parts that declared none, an ASCII
    name or a name with a superset. Returns one note per guess, for the defects list.
    """
    notes: list[str] = []
    guesses: list[str] = []
    for part, declared in parts:
        name = (declared or "").strip().lower()
        if name and name not in ASCII_NAMES:
            wider = SUPERSETS.get(name)
            if wider and not wider.startswith("iso2022"):  # ISO-2022-JP: see `unescape`
                _declare(part, wider)
            continue
        data = _eight_bit(part)
        if data is None:
            continue
        chosen = next((g for g in guesses if _fits(data, g)), None)
        if chosen is None and len(guesses) < MAX_GUESSES:
            chosen = guess(data)
            if chosen:
                guesses.append(chosen)
                notes.append(f"text declared {declared or 'no charset'}; read as {chosen}")
        if chosen:
            _declare(part, chosen)
    return tuple(notes)


def _declare(part: email.message.Message, charset: str) -> None:
    """Make `charset` the part's declared charset, for mail-parser to decode it with.

    Put first, it is the one read; the parameters after it stay as they came. The
    stdlib's `set_param` writes every parameter again and raised on any it could not
    write (raw 8-bit bytes, a mail client's unencoded name or comment; an RFC 2231
    value in a charset Python lacks): the message was quarantined as `pipeline_error`.
    """
    raw = next((v for k, v in part.raw_items() if k.lower() == "content-type"), None)
    rest = raw.partition(";")[2] if isinstance(raw, str) else ""
    declared = f'{part.get_content_type()}; charset="{charset}"'
    if rest.strip():
        declared += f";{rest}"
    if raw is None:
        part["Content-Type"] = declared
    else:
        part.replace_header("Content-Type", declared)


def _eight_bit(part: email.message.Message) -> bytes | None:
    """The part's decoded bytes when they hold 8-bit data, else None (cheaply, for ASCII)."""
    # The stored payload: get_payload() would already have replaced the 8-bit bytes.
    payload = part._payload  # noqa: SLF001 - the stdlib keeps raw bytes only here
    if not isinstance(payload, str):
        return None
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte in ("base64", "quoted-printable"):
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) and not data.isascii() else None
    if payload.isascii():
        return None
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # already text (a message built from str), nothing to guess
        return None


def _fits(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
        return True
    except (UnicodeDecodeError, LookupError):
        return False
