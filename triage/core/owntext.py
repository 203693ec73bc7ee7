"""What the sender wrote: a body without its quoted reply, forwarded block and signature.

Pure. Priority reads only this part, so "> URGENT" quoted from an old mail, an Outlook
header block of the message below, or "Notfall-Hotline" in a signature is no evidence.
The markers are those clients write in the languages customers use.
"""

from __future__ import annotations

import re

_ORIGINAL = re.compile(
    r"-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"messaggio originale|oorspronkelijk bericht|originalmeddelande|元のメッセージ|原始邮件|原始郵件)"
    r"\s*-{2,}"
)
# How clients introduce a quoted reply ("On <date>, <name> wrote:") in the languages
# customers write; the line must also hold a digit or an address.
_WROTE = (
    "wrote:", "schrieb:", "a écrit :", "a écrit:", "escribió:", "ha scritto:", "schreef:",
    "skrev:", "kirjoitti:", "napisał(a):", "napisał:", "написал(а):", "написал:", "のメッセージ:",
    "写道：", "寫道：", "写道:", "寫道:", "작성:",
)  # fmt: skip
_WROTE_STARTS = ("on ", "am ", "le ", "el ", "il ", "op ", "den ", "w dniu ")
# Outlook's header block of the message below: a From line, then Sent/Date within 3 lines.
_HEADER_FROM = (
    "from:", "von:", "de:", "de :", "da:", "van:", "od:", "från:", "fra:", "差出人:", "差出人：",
    "发件人:", "发件人：", "寄件者:", "寄件者：", "보낸 사람:",
)  # fmt: skip
_HEADER_SENT = (
    "sent:", "date:", "gesendet:", "datum:", "envoyé :", "envoyé:", "date :", "enviado:",
    "fecha:", "inviato:", "data:", "verzonden:", "wysłano:", "skickat:", "sendt:", "送信日時:",
    "送信日時：", "日付:", "发送时间:", "发送时间：", "寄件日期:", "寄件日期：", "日期:", "보낸 날짜:",
)  # fmt: skip
# A line that is only one of these closes the message: what follows is the signature.
_CLOSINGS = frozenset(
    {
        "best regards", "kind regards", "regards", "sincerely", "yours sincerely",
        "mit freundlichen grüßen", "mit freundlichen grüssen", "freundliche grüße",
        "viele grüße", "beste grüße", "cordialement", "bien cordialement", "salutations",
        "bien à vous", "atentamente", "saludos", "saludos cordiales", "un saludo",
        "cordiales saludos", "よろしくお願いいたします", "よろしくお願い致します",
        "よろしくお願いします", "以上、よろしくお願いいたします", "以上", "此致", "此致敬礼",
    }
)  # fmt: skip
_CLOSING_TRIM = " \t,.!。、！，"


def own_text(body: str) -> str:
    """The part of a body the sender wrote: no quoted reply, no forwarded block, no signature.

    In the languages customers write: "Am ... schrieb:", "El ... escribió:", Gmail's
    Japanese "2026年3月10日 ... <a@b>:", Outlook's "Von:/Gesendet:" and "差出人:/送信日時:"
    blocks, "-----Ursprüngliche Nachricht-----", full-width "＞" quotes, and a closing
    line ("Mit freundlichen Grüßen", "Cordialement", "よろしくお願いいたします") before
    the signature.
    """
    if not body:
        return ""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if line in ("-- ", "--"):
            break
        if stripped.startswith((">", "＞")):
            continue
        low = stripped.lower()
        if low.startswith("-") and _ORIGINAL.fullmatch(low):
            break
        if low.endswith(_WROTE) and ("@" in low or any(ch.isdigit() for ch in low)):
            break
        if low.startswith(_WROTE_STARTS) and (
            i + 1 < len(lines) and lines[i + 1].strip().lower().endswith(_WROTE)
        ):
            break
        if low.endswith(">:") and "@" in low and any(ch.isdigit() for ch in low):
            break
        if low.startswith(_HEADER_FROM) and any(
            nxt.strip().lower().startswith(_HEADER_SENT) for nxt in lines[i + 1 : i + 4]
        ):
            break
        if low.strip(_CLOSING_TRIM) in _CLOSINGS:
            break
        kept.append(line)
    return "\n".join(kept)
