"""winmail.dat (application/ms-tnef): the files Outlook wrapped, unpacked.

tnefparse does the reading. Its loops trust the counts written in the file: a
25-byte winmail.dat that claims four billion properties keeps it busy for hours,
one that claims four billion values of one property fills the memory, and it copies
the rest of the file for every object it reads (quadratic in the number of objects).
So every file is read under a budget, checked where tnefparse calls out for each
object, each property list and each value: a count larger than the bytes that
remain, more than `MAX_OBJECTS` objects, `MAX_COPIED` bytes copied, `MAX_VALUES`
values or `MAX_SECONDS` of time stops the reading, and the winmail.dat stays the
attachment it was. So does any file the library cannot read.

tnefparse reads an attribute that runs past the end of the file as if it ended there: a
winmail.dat cut short gave its last file cut short, as if whole, and junk after the end that
reads as attachment data replaced the last file's bytes. So only whole attributes are read.
Junk after them is dropped (a real winmail.dat carries 17 kB of base64 text there); when what
follows is a cut attribute (it starts with a level), the attachment it belongs to is left out
and the original winmail.dat is kept beside the files read.

tnefparse drops the trailing zero bytes of a file it reads from a MAPI property (an
OLE object, an embedded message) instead of from the attachment's data record: when
any file came that way, the original winmail.dat is kept beside the files.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tnefparse.mapi as _mapi
import tnefparse.tnef as _tnef

from triage.core import charsets

SIGNATURE = b"\x78\x9f\x3e\x22"
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
MAX_BYTES = 16 * 1024 * 1024
MAX_OBJECTS = 5_000
MAX_COPIED = 2 * 1024 * 1024 * 1024
MAX_VALUES = 200_000
MAX_FILES = 500
MAX_SECONDS = 1.0
_ATTACH_DATA = 0x800F  # attAttachData: a file's bytes, exactly as written
A = TypeVar("A")

# tnefparse logs every oddity of a sender's file at WARNING or ERROR.
logging.getLogger("tnefparse").setLevel(logging.CRITICAL)


class BudgetSpent(Exception):
    """Reading this file would cost more than a message may."""


class _Budget:
    __slots__ = ("deadline", "objects", "copied", "values", "spent")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.objects = 0
        self.copied = 0
        self.values = 0
        self.spent = ""

    def check(self) -> None:
        if self.spent:
            raise BudgetSpent(self.spent)
        if time.monotonic() > self.deadline:
            self.stop(f"reading took over {MAX_SECONDS:g} s")

    def stop(self, why: str) -> None:
        self.spent = why
        raise BudgetSpent(why)


_local = threading.local()


def _budget() -> _Budget:
    found = getattr(_local, "budget", None)
    return found if found is not None else _Budget()  # outside `unpack`: a fresh budget


class _CountedObject(_tnef.TNEFObject):
    """tnefparse's object, counted: it is handed the whole rest of the file each time."""

    def __init__(self, data: bytes, do_checksum: bool = False) -> None:
        budget = _budget()
        budget.check()
        budget.objects += 1
        budget.copied += len(data)
        if budget.objects > MAX_OBJECTS:
            budget.stop(f"more than {MAX_OBJECTS:,} objects")
        if budget.copied > MAX_COPIED:
            budget.stop(f"over {MAX_COPIED:,} bytes copied while reading")
        super().__init__(data, do_checksum)


_decode_mapi = _mapi.decode_mapi
_parse_property = _mapi.parse_property


def _counted_decode_mapi(data, codepage="cp1252", starting_offset=None):
    """A property list whose count cannot fit in the bytes left is a lie: stop there."""
    budget = _budget()
    budget.check()
    offset = starting_offset or 0
    if len(data) - offset >= 4:
        count = int.from_bytes(data[offset : offset + 4], "little")
        if count > (len(data) - offset) // 4:
            budget.stop(f"a property list claims {count:,} properties")
    return _decode_mapi(data, codepage, starting_offset)


def _counted_parse_property(data, offset, *args):
    """One value; reading past the end means the counts lie (tnefparse would go on)."""
    budget = _budget()
    budget.check()
    budget.values += 1
    if offset >= len(data):
        budget.stop("a value past the end of its property list")
    if budget.values > MAX_VALUES:
        budget.stop(f"more than {MAX_VALUES:,} property values")
    return _parse_property(data, offset, *args)


# tnefparse looks these names up in its modules at every call, so the budget applies
# everywhere, embedded messages included. test_tnef checks the guards are in place.
_tnef.TNEFObject = _CountedObject
_tnef.decode_mapi = _counted_decode_mapi
_mapi.decode_mapi = _counted_decode_mapi
_mapi.parse_property = _counted_parse_property


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What one winmail.dat held: files (name, content type, bytes) and the message body."""

    files: tuple[tuple[str, str, bytes], ...]
    text: str
    html: str
    exact: bool  # every file's bytes came straight from its data record


def is_tnef(filename: str, content_type: str, data: bytes) -> bool:
    """A TNEF container: the signature, and the type or the name Outlook gives it."""
    if not data.startswith(SIGNATURE):
        return False
    name = filename.lower()
    return content_type.lower() in TNEF_TYPES or name.endswith(".dat")


def unpack(data: bytes) -> Unpacked | None:
    """The files and body in `data`, or None when it cannot be read within the budget."""
    if len(data) > MAX_BYTES:
        return None
    data, cut = _whole_attributes(data)
    _local.budget = budget = _Budget()
    try:
        parsed = _tnef.TNEF(data, do_checksum=False)
        files: list[tuple[str, str, bytes]] = []
        exact = _collect(parsed, files, depth=0) and not cut
        budget.check()
    except BudgetSpent:
        return None
    except Exception:  # noqa: BLE001 - a sender's broken file stays the attachment it was
        return None
    finally:
        _local.budget = None
    return Unpacked(tuple(files), _text(parsed.body), _text(parsed.htmlbody), exact)


def _whole_attributes(data: bytes) -> tuple[bytes, bool]:
    """`data` up to its last whole attribute, and whether a cut attribute followed.

    A tail shorter than an attribute is padding (tnefparse skips it too), and one that does
    not start with a level is junk. A cut attachment attribute takes the rest of its
    attachment with it: its other attributes may be whole but its data not. Walks at most
    `MAX_OBJECTS` attributes: past that the object budget stops the reading anyway.
    """
    offset, last = 6, None  # after signature and key; where the last attachment starts
    for _ in range(MAX_OBJECTS + 1):
        if offset + _tnef.TNEF.MIN_OBJ_SIZE >= len(data):
            return data, False
        end = offset + 11 + int.from_bytes(data[offset + 5 : offset + 9], "little")
        if end > len(data):
            break
        if int.from_bytes(data[offset + 1 : offset + 3], "little") == _tnef.TNEF.ATTATTACHRENDDATA:
            last = offset
        offset = end
    else:
        return data, False
    level, name = data[offset], int.from_bytes(data[offset + 1 : offset + 3], "little")
    if level not in (_tnef.TNEF.LVL_MESSAGE, _tnef.TNEF.LVL_ATTACHMENT):
        return data[:offset], False  # junk after the last attribute, not a cut one
    if level == _tnef.TNEF.LVL_MESSAGE or name == _tnef.TNEF.ATTATTACHRENDDATA or last is None:
        return data[:offset], True  # the attachments before it are whole
    return data[:last], True


def expand(
    attachments: list[A], make: Callable[[str, str, bytes], A], name_of: Callable[[A], tuple]
) -> tuple[list[A], str, str, list[str]]:
    """`attachments` with each winmail.dat replaced by its files; the TNEF body; notes.

    `name_of(a)` gives (filename, content type, bytes) of an attachment and `make`
    builds one from them. A winmail.dat that cannot be read, holds no file, or gave a
    file through tnefparse's inexact path stays in the list.
    """
    out: list[A] = []
    text = html = ""
    notes: list[str] = []
    for a in attachments:
        filename, content_type, data = name_of(a)
        if not is_tnef(filename, content_type, data):
            out.append(a)
            continue
        found = unpack(data)
        if found is None:
            notes.append(f"{filename}: TNEF not readable within the limits; kept as it is")
            out.append(a)
            continue
        out.extend(make(*f) for f in found.files)
        if not found.files or not found.exact:
            out.append(a)
        text, html = text or found.text, html or found.html
    return out, text, html, notes


def _collect(parsed, files: list[tuple[str, str, bytes]], depth: int) -> bool:
    """Add the files of `parsed` (and of messages embedded in it, two levels deep)."""
    exact = True
    raw = [o.data for o in parsed.objects if o.name == _ATTACH_DATA]
    for att in parsed.attachments:
        if len(files) >= MAX_FILES:
            raise BudgetSpent(f"more than {MAX_FILES} files")
        embedded = getattr(att, "embed", None)
        if embedded is not None and depth < 2:
            exact = _collect(embedded, files, depth + 1) and exact
            continue
        data = att.data if isinstance(att.data, bytes) else b""
        name = _name(att)
        if not data and not name:
            continue
        exact = exact and any(r == data for r in raw)
        entry = (name or "attachment", _content_type(name), data)
        if entry not in files:  # Outlook lists an inline picture twice
            files.append(entry)
    return exact


def _name(att) -> str:
    try:
        name = att.long_filename()
    except UnicodeDecodeError:
        # tnefparse reads attAttachTitle as UTF-8; [MS-OXTNEF] writes it in the stream's
        # code page (attOemCodepage; 437 when the stream names none).
        title = getattr(att, "_name", b"")
        raw = title.rstrip(b"\x00") if isinstance(title, bytes) else b""
        name = charsets.decode(raw, getattr(att, "codepage", None) or "cp437")
    except Exception:  # noqa: BLE001 - a name in a charset the library guessed wrong
        name = ""
    if isinstance(name, bytes):
        name = charsets.decode(name, "cp1252")
    name = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    return name.replace("/", "_").replace("\\", "_")[:255]


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip("\x00")
    if isinstance(value, bytes) and value:
        return charsets.decode(value.rstrip(b"\x00"), charsets.guess(value) or "cp1252")
    return ""
