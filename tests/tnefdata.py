"""winmail.dat (TNEF) written for tests, from Microsoft's published format, [MS-OXTNEF].

So that the unpacking is proved on bytes this repository may hold. The layout (section 2.1.3):

* the stream: signature 0x223E9F78, a 16-bit legacy key, then attributes, message
  attributes first; each attachment's attributes begin with attAttachRendData and end
  with attAttachment;
* an attribute: level (1 message, 2 attachment), a 32-bit id (its type in the high word),
  the data's length, the data, and a checksum, the sum of the data's bytes modulo 65536;
* attMsgProps, attAttachment and each row of attRecipTable hold a property list
  (section 2.1.3.4): a 32-bit count, then each property's type and id, and its value:
  fixed-length types as they are, padded to 4 bytes; variable-length types and
  multi-valued ones as a count of values, then (variable-length) each value's size and
  bytes, padded with zeros to a multiple of 4 (the padding not counted in the size).

Everything here writes what the caller asks, lies included (a count of four billion values
in a few bytes): the tests decide what a sender may send.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime

SIGNATURE = 0x223E9F78
MESSAGE, ATTACHMENT = 1, 2

# Attribute ids, [MS-OXTNEF] 2.1.3.3: the attribute's type in the high word.
attSubject = 0x00018004
attMessageClass = 0x00078008
attAttachData = 0x0006800F
attAttachTitle = 0x00018010
attAttachModifyDate = 0x00038013
attAttachRendData = 0x00069002
attMsgProps = 0x00069003
attRecipTable = 0x00069004
attAttachment = 0x00069005
attTnefVersion = 0x00089006
attOemCodepage = 0x00069007

# Property types, [MS-OXCDATA] 2.11.1, and the multi-valued flag.
PtypInteger32 = 0x0003
PtypObject = 0x000D
PtypString8 = 0x001E
PtypString = 0x001F
PtypBinary = 0x0102
MULTIPLE = 0x1000
_VARIABLE = {PtypObject, PtypString8, PtypString, PtypBinary}
_FIXED = {PtypInteger32: "<i"}

# Property ids, [MS-OXPROPS].
PidTagBody = 0x1000
PidTagHtml = 0x1013  # PtypBinary; PidTagBodyHtml is the same id as PtypString
PidTagDisplayName = 0x3001
PidTagAttachDataBinary = 0x3701  # as PtypBinary
PidTagAttachDataObject = 0x3701  # the same id as PtypObject
PidTagAttachMethod = 0x3705
PidTagAttachLongFilename = 0x3707
PidTagInternetCodepage = 0x3FDE
PidTagSmtpAddress = 0x39FE
PidTagScheduleInfoMonthsBusy = 0x6853  # PtypMultipleInteger32

AFBYVALUE, AFEMBEDDEDMESSAGE = 1, 5  # PidTagAttachMethod
IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")  # {00020307-...-000000000046}


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def attribute(level: int, att_id: int, data: bytes) -> bytes:
    """One attribute: level, id, length, data, checksum."""
    return struct.pack("<BII", level, att_id, len(data)) + data + struct.pack("<H", checksum(data))


def stream(*attributes: bytes, key: int = 0x0001) -> bytes:
    """A TNEF stream: the signature, the legacy key, the attributes as given."""
    return struct.pack("<IH", SIGNATURE, key) + b"".join(attributes)


def _padded(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value + bytes(-len(value) % 4)


def prop(ptype: int, pid: int, *values: bytes | str | int, declared: int | None = None) -> bytes:
    """One property of a property list: its tag, then its value or values.

    Strings are given as str (PtypString: UTF-16LE; PtypString8: give bytes in the
    stream's code page, or str for ASCII), both written with their terminating zero.
    `declared` writes a count of values other than the true one.
    """
    base = ptype & ~MULTIPLE
    encoded = [_value(base, v) for v in values]
    out = struct.pack("<HH", ptype, pid)
    count = len(encoded) if declared is None else declared
    if ptype & MULTIPLE or base in _VARIABLE:
        out += struct.pack("<I", count)
    if base in _VARIABLE:
        return out + b"".join(_padded(v) for v in encoded)
    body = b"".join(encoded)
    return out + body + bytes(-len(body) % 4)


def _value(base: int, value: bytes | str | int) -> bytes:
    if base == PtypString:
        return str(value).encode("utf-16-le") + b"\0\0"
    if base == PtypString8:
        return (value.encode("ascii") if isinstance(value, str) else bytes(value)) + b"\0"
    if base in _FIXED:
        return struct.pack(_FIXED[base], int(value))
    return bytes(value)  # PtypBinary; PtypObject: the interface id, then the object


def props(*properties: bytes, declared: int | None = None) -> bytes:
    """A property list: the count (or `declared`), then the properties."""
    count = len(properties) if declared is None else declared
    return struct.pack("<I", count) + b"".join(properties)


def date(when: datetime) -> bytes:
    """An attDate value: year, month, day, hour, minute, second, day of week (Sunday 0)."""
    fields = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    return struct.pack("<7H", *fields, (when.weekday() + 1) % 7)


def head(codepage: int = 1252, message_class: str = "IPM.Note") -> list[bytes]:
    """The message attributes a writer starts with: version, code page, class."""
    return [
        attribute(MESSAGE, attTnefVersion, struct.pack("<I", 0x00010000)),
        attribute(MESSAGE, attOemCodepage, struct.pack("<II", codepage, 0)),
        attribute(MESSAGE, attMessageClass, message_class.encode("ascii") + b"\0"),
    ]


def rend_data(ole: bool = False) -> bytes:
    """attAttachRendData: a file (or an OLE object), no position, no rendering, no MacBinary."""
    return attribute(
        ATTACHMENT, attAttachRendData, struct.pack("<HiHHI", 2 if ole else 1, -1, 0, 0, 0)
    )


def file(
    title: str | bytes | None,
    data: bytes | None,
    *,
    long_name: str | None = None,
    long_name8: bytes | None = None,
    data_first: bool = False,
    modified: datetime | None = None,
) -> bytes:
    """One attachment as Outlook writes a file: rendering data, title, data, properties.

    `title` is attAttachTitle (str for ASCII, bytes in the stream's code page); the long
    name goes in attAttachment as PidTagAttachLongFilename, PtypString (`long_name`) or
    PtypString8 (`long_name8`). `data_first` writes attAttachData before the title.
    """
    title_attr = b""
    if title is not None:
        raw = title.encode("ascii") if isinstance(title, str) else title
        title_attr = attribute(ATTACHMENT, attAttachTitle, raw + b"\0")
    data_attr = b"" if data is None else attribute(ATTACHMENT, attAttachData, data)
    middle = data_attr + title_attr if data_first else title_attr + data_attr
    if modified is not None:
        middle += attribute(ATTACHMENT, attAttachModifyDate, date(modified))
    properties = [prop(PtypInteger32, PidTagAttachMethod, AFBYVALUE)]
    if long_name is not None:
        properties.append(prop(PtypString, PidTagAttachLongFilename, long_name))
    if long_name8 is not None:
        properties.append(prop(PtypString8, PidTagAttachLongFilename, long_name8))
    return rend_data() + middle + attribute(ATTACHMENT, attAttachment, props(*properties))


def file_in_property(name: str, data: bytes) -> bytes:
    """A file whose bytes travel only in attAttachment, as PidTagAttachDataBinary."""
    properties = props(
        prop(PtypInteger32, PidTagAttachMethod, AFBYVALUE),
        prop(PtypString, PidTagAttachLongFilename, name),
        prop(PtypBinary, PidTagAttachDataBinary, data),
    )
    return rend_data() + attribute(ATTACHMENT, attAttachment, properties)


def embedded_message(name: str, inner: bytes) -> bytes:
    """An attached message: PidTagAttachDataObject holding IID_IMessage and a whole TNEF stream."""
    properties = props(
        prop(PtypInteger32, PidTagAttachMethod, AFEMBEDDEDMESSAGE),
        prop(PtypString, PidTagDisplayName, name),
        prop(PtypObject, PidTagAttachDataObject, IID_IMESSAGE + inner),
    )
    return rend_data() + attribute(ATTACHMENT, attAttachment, properties)


def body_props(text: str | None = None, html: str | None = None, charset: str = "utf-8") -> bytes:
    """attMsgProps with a plain body (PidTagBody) and/or an HTML one (PidTagHtml, bytes in
    `charset`, named by PidTagInternetCodepage)."""
    properties = []
    if text is not None:
        properties.append(prop(PtypString, PidTagBody, text))
    if html is not None:
        codepages = {"utf-8": 65001, "cp1252": 1252, "koi8-r": 20866, "iso-8859-1": 28591}
        properties.append(prop(PtypInteger32, PidTagInternetCodepage, codepages[charset]))
        properties.append(prop(PtypBinary, PidTagHtml, html.encode(charset)))
    return attribute(MESSAGE, attMsgProps, props(*properties))


def winmail(
    *attachments: bytes,
    text: str | None = None,
    html: str | None = None,
    subject: str | None = "Printer logs",
    codepage: int = 1252,
    key: int = 0x0001,
) -> bytes:
    """A whole winmail.dat as Outlook writes one: message attributes, then the attachments."""
    message = head(codepage)
    if subject is not None:
        message.append(attribute(MESSAGE, attSubject, subject.encode("ascii") + b"\0"))
    if text is not None or html is not None:
        message.append(body_props(text, html))
    return stream(*message, *attachments, key=key)


def outlook(
    tnef_bytes: bytes,
    text: str | None = "Please see the attached files.\n",
    message_id: str = "<tnef@acme.example>",
) -> bytes:
    """A message as Outlook sends rich text: a text part (unless `text` is None) and the
    TNEF as winmail.dat."""
    encoded = base64.encodebytes(tnef_bytes).decode("ascii").replace("\n", "\r\n")
    own = (
        "" if text is None else f"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    return (
        "From: Jane Doe <jane@acme.example>\r\nTo: support@msp.example\r\n"
        f"Subject: Printer logs\r\nMessage-ID: {message_id}\r\n"
        "Date: Tue, 10 Mar 2026 09:12:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        f"{own}--B\r\n"
        'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        'Content-Disposition: attachment; filename="winmail.dat"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}\r\n--B--\r\n"
    ).encode("ascii")
