"""Contact CSV import: bytes in, contacts and per-row rejections out, never a traceback.

Pure: `parse(data, source)` reads nothing but `data`. Rows stream one physical line at a
time (`RowReader`), so a 100 MB export costs one pass and the memory of its contacts.

What spreadsheets send and how each is handled:
  * UTF-8 with or without BOM; Windows (CRLF) or old Mac (CR) line endings.
  * A line that is not UTF-8 is read as Windows-1252 (Excel's "CSV" on Windows; every
    byte decodes, so no row is lost) and a note names the lines: names may need a
    look, addresses are ASCII anyway. UTF-16 files are refused as a whole.
  * The delimiter (",", ";", tab or "|") is sniffed from the header line.
  * Header names are matched loosely ("E-Mail", "Time zone"); only `email` is required.
  * Each bad row is rejected with its physical line number (1 = header) and why:
    invalid address, duplicate (the later row loses), unknown time zone, vip that is
    not yes/no, plan not allowed, a quote left open, more fields than the header.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from zoneinfo import available_timezones

from triage.core.contacts import Contact
from triage.errors import TriageError

COLUMNS = ("email", "name", "company", "site", "plan", "timezone", "vip", "aliases", "approved")
EXAMPLE_HEADER = "email,name,company,site,plan,timezone,vip,aliases"
_SYNONYMS = {
    "e_mail": "email",
    "mail": "email",
    "email_address": "email",
    "emailaddress": "email",
    "full_name": "name",
    "fullname": "name",
    "time_zone": "timezone",
    "tz": "timezone",
    "alias": "aliases",
    "organisation": "company",
    "organization": "company",
}
_DELIMITERS = (",", ";", "\t", "|")
_TRUE = frozenset({"yes", "y", "true", "1", "x"})
_FALSE = frozenset({"no", "n", "false", "0", ""})
_EMAIL = re.compile(
    r"(?!\.)(?!.*\.\.)[a-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}(?<!\.)"
    r"@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9\-]{0,61}[a-z0-9]"
)
_ALIAS_SPLIT = re.compile(r"[;,\s]+")
_RAW_LIMIT = 300
_NOTE_LINES = 5


class CsvError(TriageError, ValueError):
    """The file as a whole cannot be imported; the message names the file and the fix."""

    def __init__(self, source: str, key: str, problem: str, fix: str):
        super().__init__(f"{source}: [{key}] {problem}; fix: {fix}")


@dataclass(frozen=True, slots=True)
class Rejected:
    """One row that was not imported: its physical line, why, and the text (shortened)."""

    line: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    rows: tuple[Contact, ...]
    rejected: tuple[Rejected, ...]
    notes: tuple[str, ...] = ()  # file-level remarks: encoding fallback, unused columns


def parse(data: bytes, source: str, allowed_plans: Iterable[str] | None = None) -> ImportResult:
    """Read a whole contacts CSV; raise CsvError only when no row can be read at all."""
    reader = RowReader(data, source, allowed_plans)
    rows: list[Contact] = []
    rejected: list[Rejected] = []
    for item in reader:
        (rows if isinstance(item, Contact) else rejected).append(item)  # type: ignore[arg-type]
    return ImportResult(tuple(rows), tuple(rejected), tuple(reader.notes))


class RowReader:
    """Streams a contacts CSV: iterate for Contact or Rejected items, then read `notes`.

    The header is checked on construction (CsvError for whole-file problems).
    """

    def __init__(self, data: bytes, source: str, allowed_plans: Iterable[str] | None = None):
        self.source = source
        self.notes: list[str] = []
        self._plans = None if allowed_plans is None else {p.strip().lower() for p in allowed_plans}
        self._cp1252_lines: list[int] = []
        self._cp1252_count = 0
        self._count = 0  # physical lines handed to the csv module so far
        self._pending: list[str] = []  # text of the record being read
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise CsvError(source, "file", "is UTF-16", "save it as 'CSV UTF-8' (comma delimited)")
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        self._lines = self._physical(data)
        header = next(self._lines, "")
        self._count = 1
        if not header.strip():
            raise CsvError(
                source, "line 1", "has no header", f"start the file with {EXAMPLE_HEADER}"
            )
        self.delimiter, self.columns = _sniff(header, source)
        unused = [c for c in self.columns if c and c not in COLUMNS]
        if unused:
            self.notes.append(f"{source}: columns {', '.join(unused)} are not used")

    def __iter__(self) -> Iterator[Contact | Rejected]:
        reader = csv.reader(self._feed(), delimiter=self.delimiter)
        index = {name: i for i, name in enumerate(self.columns) if name in COLUMNS}
        owners: dict[str, int] = {}  # every address and alias -> line that claimed it
        while True:
            start = self._count + 1
            self._pending.clear()
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                yield self._reject(
                    start, f"unreadable: {e}; an opening quote is probably not closed"
                )
                continue
            if not any(f.strip() for f in fields):
                continue  # blank line
            if self._count > start and any("\n" in f or "\r" in f for f in fields):
                yield self._reject(
                    start,
                    f"a quoted field spans lines {start}-{self._count} (a quote left open?); "
                    "keep each contact on one line",
                )
                continue
            outcome = self._contact(fields, index)
            if isinstance(outcome, str):
                yield self._reject(start, outcome)
                continue
            claimed = [(outcome.email, "duplicate of line {}")] + [
                (a, "alias " + a + " is already used on line {}") for a in outcome.aliases
            ]
            clash = next(((a, msg) for a, msg in claimed if a in owners), None)
            if clash:
                yield self._reject(start, clash[1].format(owners[clash[0]]))
                continue
            for address, _ in claimed:
                owners[address] = start
            yield outcome
        self._finish_notes()

    def _contact(self, fields: list[str], index: dict[str, int]) -> Contact | str:
        """The row as a Contact, or the reason it cannot be one."""
        if len(fields) > len(self.columns) and any(f.strip() for f in fields[len(self.columns) :]):
            shown = "tab" if self.delimiter == "\t" else repr(self.delimiter)
            return (
                f"has {len(fields)} fields but the header has {len(self.columns)}; "
                f"put values containing {shown} in double quotes"
            )

        def get(name: str) -> str:
            i = index.get(name)
            return fields[i].strip() if i is not None and i < len(fields) else ""

        email = get("email").lower()
        if not email:
            return "email is empty"
        if "<" in email or " " in email:
            return f"email {email!r} must be the bare address; put the person's name in 'name'"
        if not _EMAIL.fullmatch(email) or len(email) > 254:
            return f"email {email!r} is not a valid address"
        aliases = tuple(a for a in _ALIAS_SPLIT.split(get("aliases").lower()) if a)
        for alias in aliases:
            if not _EMAIL.fullmatch(alias):
                return f"alias {alias!r} is not a valid address; separate aliases with ';'"
        vip = _flag(get("vip"), False)
        if vip is None:
            return f"vip {get('vip')!r} is not one of yes/no/true/false/1/0/x or empty"
        approved = _flag(get("approved"), True)
        if approved is None:
            return f"approved {get('approved')!r} is not one of yes/no/true/false/1/0/x or empty"
        zone = get("timezone")
        if zone:
            canonical = _zones().get(zone.lower())
            if canonical is None:
                return f"time zone {zone!r} is unknown; use an IANA name such as Europe/Berlin"
            zone = canonical
        plan = get("plan").lower()
        if plan and self._plans is not None and plan not in self._plans:
            allowed = ", ".join(sorted(self._plans)) or "none"
            return f"plan {plan!r} is not one of: {allowed}"
        return Contact.create(
            email,
            get("name"),
            _shared(get("company")),
            _shared(get("site")),
            _shared(plan),
            _shared(zone),
            vip,
            aliases,
            approved,
        )

    def _physical(self, data: bytes) -> Iterator[str]:
        """Decoded physical lines with their endings; CR-only files are split on CR."""
        head = data[:65536]
        if b"\n" not in head and b"\r" in head:
            chunks: Iterable[bytes] = (part + b"\r\n" for part in data.split(b"\r"))
        else:
            chunks = io.BytesIO(data)
        for number, chunk in enumerate(chunks, start=1):
            try:
                yield chunk.decode("utf-8")
            except UnicodeDecodeError:
                self._cp1252_count += 1
                if len(self._cp1252_lines) < _NOTE_LINES:
                    self._cp1252_lines.append(number)
                yield chunk.decode("cp1252", errors="replace")

    def _feed(self) -> Iterator[str]:
        for line in self._lines:
            self._count += 1
            self._pending.append(line)
            yield line

    def _reject(self, line: int, reason: str) -> Rejected:
        raw = "".join(self._pending).rstrip("\r\n")
        if len(raw) > _RAW_LIMIT:
            raw = raw[: _RAW_LIMIT - 1] + "…"
        return Rejected(line, reason, raw)

    def _finish_notes(self) -> None:
        count = self._cp1252_count
        if not count:
            return
        shown = ", ".join(map(str, self._cp1252_lines))
        if count > len(self._cp1252_lines):
            shown += f" and {count - len(self._cp1252_lines)} more"
        which = f"line {shown} is" if count == 1 else f"lines {shown} are"
        self.notes.append(
            f"{self.source}: {which} not UTF-8, read as Windows-1252; "
            "check the names, and save the file as 'CSV UTF-8' next time"
        )


def _sniff(header: str, source: str) -> tuple[str, tuple[str, ...]]:
    """The delimiter that makes the header most recognisable, and the column names."""
    best: tuple[int, str, tuple[str, ...]] | None = None
    for delimiter in _DELIMITERS:
        try:
            fields = next(csv.reader([header.rstrip("\r\n")], delimiter=delimiter), [])
        except csv.Error:  # a stray CR or NUL: nothing recognisable with this delimiter
            fields = []
        names = tuple(_column(n) for n in fields)
        known = sum(n in COLUMNS for n in names)
        if best is None or known > best[0]:
            best = (known, delimiter, names)
    assert best is not None
    _, delimiter, names = best
    if "email" not in names:
        found = ", ".join(repr(n) for n in names if n) or "nothing"
        raise CsvError(
            source,
            "line 1",
            f"the header has no 'email' column (found {found})",
            f"make the first line a header such as {EXAMPLE_HEADER}",
        )
    for name in names:
        if name and name in COLUMNS and names.count(name) > 1:
            raise CsvError(source, "line 1", f"column {name!r} appears twice", "keep one of them")
    return delimiter, names


def _column(name: str) -> str:
    key = re.sub(r"[\s\-]+", "_", name.strip().strip('"').strip().lower())
    return _SYNONYMS.get(key, key)


def _flag(value: str, default: bool) -> bool | None:
    value = value.strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


@cache
def _zones() -> dict[str, str]:
    """IANA zone names by lowercase spelling ("america/new_york" -> "America/New_York")."""
    return {z.lower(): z for z in available_timezones()}


def _shared(value: str) -> str:
    """One string object per distinct company, plan, zone: a big import repeats them."""
    return sys.intern(value) if value else value
