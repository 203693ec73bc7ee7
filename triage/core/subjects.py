"""Reply and forward prefixes in subjects, in the languages mail clients write them.

Pure: a subject in, its prefixes and the rest out. One table serves every place that
reads a subject: the acknowledgement's subject (no `Re: AW: Fwd:` pile-up), the
hand-forward check (`WG:`, `TR:`, `转发:` …) and the conversation's explanation.

A prefix counts only at the start of the subject (after earlier prefixes) and only
when its separator follows: `:` or the full-width `：`, optionally after a counter
(`Re[2]:`, `AW (3):`). So "Re-install the printer" and "Printer (Rif: 123)" keep
every word. ASCII letters also match their full-width forms (`ＲＥ：`, typed by
Japanese input methods), in any case.

Sources: the clients' own strings as seen in mail (Outlook's localized RE/FW pairs,
Thunderbird, Apple Mail, Gmail), collected in Wikipedia's "List of email subject
abbreviations" (section "Abbreviations in other languages").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REPLY = "reply"
FORWARD = "forward"

# (prefix, kind, languages). Where one word means reply in one language and forward in
# another (VS: Finnish reply, Danish/Norwegian forward), it is listed as a forward: that
# only lets the hand-forward check look for a forwarded block, which must still be there.
PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("Re", REPLY, "Latin, used by most clients in most languages"),
    ("Fwd", FORWARD, "English"),
    ("Fw", FORWARD, "English (Outlook)"),
    ("AW", REPLY, "German (Antwort)"),
    ("WG", FORWARD, "German (Weitergeleitet)"),
    ("SV", REPLY, "Swedish, Danish, Norwegian, Icelandic (Svar)"),
    ("VS", FORWARD, "Danish, Norwegian (Videresendt); Finnish reply (Vastaus)"),
    ("VB", FORWARD, "Swedish (Vidarebefordrat)"),
    ("VL", FORWARD, "Finnish (Välitetty)"),
    ("Antw", REPLY, "Dutch (Antwoord)"),
    ("Doorst", FORWARD, "Dutch (Doorsturen)"),
    ("TR", FORWARD, "French (Transféré)"),
    ("Réf", REPLY, "French"),
    ("RV", FORWARD, "Spanish (Reenviado)"),
    ("RES", REPLY, "Portuguese (Resposta)"),
    ("ENC", FORWARD, "Portuguese (Encaminhado)"),
    ("R", REPLY, "Italian (Risposta)"),
    ("RIF", REPLY, "Italian (Riferimento)"),
    ("I", FORWARD, "Italian (Inoltrato)"),
    ("Odp", REPLY, "Polish, Czech, Slovak (Odpowiedź, Odpověď)"),
    ("PD", FORWARD, "Polish (Przekazanie dalej)"),
    ("PŘ", FORWARD, "Czech (Přeposláno)"),
    ("Odg", REPLY, "Slovenian, Croatian (Odgovor)"),
    ("Vá", REPLY, "Hungarian (Válasz)"),
    ("Továbbítás", FORWARD, "Hungarian"),
    ("Ynt", REPLY, "Turkish (Yanıt)"),
    ("İlt", FORWARD, "Turkish (İletildi)"),
    ("Atb", REPLY, "Latvian (Atbilde)"),
    ("Pārs", FORWARD, "Latvian (Pārsūtīts)"),
    ("Ats", REPLY, "Lithuanian (Atsakymas)"),
    ("Bls", REPLY, "Indonesian (Balas)"),
    ("Trs", FORWARD, "Indonesian (Terusan)"),
    ("ΑΠ", REPLY, "Greek (Απάντηση)"),
    ("ΣΧΕΤ", REPLY, "Greek (Σχετικά)"),
    ("ΠΡΘ", FORWARD, "Greek (Προώθηση)"),
    ("Отв", REPLY, "Russian (Ответ)"),
    ("Ответ", REPLY, "Russian"),
    ("Пересл", FORWARD, "Russian (Переслано)"),
    ("השב", REPLY, "Hebrew"),
    ("הועבר", FORWARD, "Hebrew"),
    ("رد", REPLY, "Arabic"),
    ("回复", REPLY, "Chinese, simplified"),
    ("答复", REPLY, "Chinese, simplified (Outlook)"),
    ("回覆", REPLY, "Chinese, traditional"),
    ("答覆", REPLY, "Chinese, traditional (Outlook)"),
    ("转发", FORWARD, "Chinese, simplified"),
    ("轉寄", FORWARD, "Chinese, traditional"),
    ("轉發", FORWARD, "Chinese, traditional"),
    ("返信", REPLY, "Japanese"),
    ("転送", FORWARD, "Japanese"),
    ("답장", REPLY, "Korean"),
    ("회신", REPLY, "Korean"),
    ("전달", FORWARD, "Korean"),
)


def _letters(word: str) -> str:
    """`word` as a regex in which each ASCII letter also matches its full-width form."""
    out = []
    for ch in word:
        if ch.isascii() and ch.isalpha():
            low, up = ch.lower(), ch.upper()
            out.append(f"[{low}{up}{chr(ord(low) + 0xFEE0)}{chr(ord(up) + 0xFEE0)}]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _words(kind: str) -> str:
    return "|".join(_letters(w) for w, k, _ in PREFIXES if k == kind)


# One prefix: the word, an optional counter, the separator, and the spaces after it. The
# separator is required, so the regex engine backs out of "R" in "RV:" and "Re" in "Rework".
_ONE = re.compile(
    rf"\s*(?:(?P<forward>{_words(FORWARD)})|(?P<reply>{_words(REPLY)}))"
    r"[ \t\u3000]*(?:[\[(（［][0-9０-９]{1,4}[\])）］][ \t\u3000]*)?[:：]\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Subject:
    """A subject split into the prefixes clients added and what the author wrote."""

    prefixes: tuple[str, ...]  # as written, in order ("Re", "AW", "Fwd")
    kinds: tuple[str, ...]  # reply | forward, one per prefix
    rest: str

    @classmethod
    def parse(cls, subject: str, limit: int = 50) -> Subject:
        """Strip up to `limit` stacked prefixes (a subject of a million "Re:" stays cheap)."""
        text = subject or ""
        words: list[str] = []
        kinds: list[str] = []
        at = 0
        while len(words) < limit and (m := _ONE.match(text, at)):
            words.append(m.group(FORWARD) or m.group(REPLY))
            kinds.append(FORWARD if m.group(FORWARD) else REPLY)
            at = m.end()
        return cls(tuple(words), tuple(kinds), text[at:].strip())

    @property
    def is_reply(self) -> bool:
        return bool(self.kinds) and self.kinds[0] == REPLY

    @property
    def is_forward(self) -> bool:
        """The outermost prefix forwards (`WG: AW: x` is a forward of a reply)."""
        return bool(self.kinds) and self.kinds[0] == FORWARD


def bare(subject: str) -> str:
    """The subject without reply and forward prefixes, for display and for comparing."""
    return Subject.parse(subject).rest


def is_forward(subject: str) -> bool:
    return Subject.parse(subject, limit=1).is_forward
