"""Authentication-Results (RFC 8601) parsed, and what our own boundary says about the From.

Pure: header text in, values out. Read as a structure, never searched as text: a
comment such as `(dmarc=fail)` says nothing, a quoted value stays one value, and
only headers written by our own boundary are believed (`trusted`). The `authres`
package was considered: its last release is from 2019 and it refuses real headers
(Microsoft 365 writes no authserv-id and `action=none` without a ptype), so this
small parser reads what the boundaries in use write and skips what it does not know.

"Authenticated" (a `Verdict` of pass) means: the trusted DMARC result for the From's
domain is `pass`; or, where the boundary reports no DMARC result, a DKIM signature
or the SPF-checked envelope sender is aligned with the From's domain and passed.
"Failed" means DMARC `fail`, DMARC judged a different From domain, or (with no DMARC
result) both SPF and DKIM failed and no DKIM signature passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage.core.values import by_position

# A real header is a few hundred characters; a trusted one is written by our boundary.
MAX_CHARS = 16 * 1024
MAX_HEADERS = 50  # Authentication-Results headers looked at, from the top

_TOKEN = re.compile(r'\\.?|[()";]|[^\\()";]+', re.DOTALL)
_METHOD = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*(?:/\s*[0-9]+\s*)?=\s*([A-Za-z0-9][A-Za-z0-9_-]*)(?=\s|$)"
)
_PROPERTY = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9_-]*)(?:\s*\.\s*([A-Za-z0-9][A-Za-z0-9_-]*))?\s*=\s*"
    r'("(?:[^"\\]|\\.)*"?|[^\s"]*)'
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_SKIP = re.compile(r"\S+\s*|\s+")
# The shape nearly every boundary writes: `method=result name.sub=value ...`, no quotes, no
# escapes, no space around "=". Read in one match; anything else takes the general path.
_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_PLAIN_RESULT = re.compile(
    rf"\s*({_NAME})\s*(?:/\s*[0-9]+\s*)?=\s*({_NAME})"
    rf"((?:\s+{_NAME}(?:\.{_NAME})?=[^\s\"\\]+)*)\s*"
)
_INNERMOST_COMMENT = re.compile(r"\([^()]*\)")


@by_position
@dataclass(frozen=True, slots=True)
class Result:
    """One resinfo: `dkim=pass header.d=acme.example` -> ("dkim", "pass", (("header.d", ...),))."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str:
        """The value of property `name` (`header.from`, `smtp.mailfrom` ...), or ''."""
        return next((v for k, v in self.properties if k == name), "")


@by_position
@dataclass(frozen=True, slots=True)
class AuthResults:
    """One header: who wrote it (`authserv_id`, '' when it names none) and its results."""

    authserv_id: str
    results: tuple[Result, ...] = ()


@by_position
@dataclass(frozen=True, slots=True)
class Verdict:
    """What the trusted headers say about the From: pass | fail | none, and why."""

    state: str
    why: str

    @property
    def passed(self) -> bool:
        return self.state == "pass"

    @property
    def failed(self) -> bool:
        return self.state == "fail"


def parse(value: str) -> AuthResults:
    """One header's value; never raises. What is not a result is skipped."""
    segments = _segments(value[:MAX_CHARS])
    first = segments[0].strip()
    authserv_id = ""
    rest = segments[1:]
    head = _word(first)
    if "=" in head:  # no authserv-id (Microsoft 365): the first segment is a result
        rest = segments
    else:
        authserv_id = _unquote(head).lower()
    return AuthResults(authserv_id, tuple(r for r in map(_result, rest) if r is not None))


def trusted(values: tuple[str, ...], authserv_ids: frozenset[str]) -> tuple[AuthResults, ...]:
    """The headers our own boundary wrote, topmost first.

    With no `authserv_ids` configured: the topmost header only (the last hop's).
    With them: the headers from the top whose authserv-id is one of ours, up to the first
    that is not; one of ours below a foreign header came from before our boundary.
    """
    if not authserv_ids:
        return (parse(values[0]),) if values else ()
    out: list[AuthResults] = []
    for value in values[:MAX_HEADERS]:
        header = parse(value)
        if header.authserv_id not in authserv_ids:
            break
        out.append(header)
    return tuple(out)


def verdict(values: tuple[str, ...], from_domain: str, authserv_ids: frozenset[str]) -> Verdict:
    """What our boundary's Authentication-Results say about `from_domain`."""
    headers = trusted(values, authserv_ids)
    if not headers:
        if not values:
            return Verdict("none", "no Authentication-Results header")
        ids = ", ".join(sorted(authserv_ids))
        return Verdict("none", f"no Authentication-Results header written by {ids}")
    source = "/".join(dict.fromkeys(h.authserv_id or "(no authserv-id)" for h in headers))
    domain = from_domain.lower().strip(".")
    dmarc = _topmost(headers, "dmarc")
    for r in dmarc:
        judged = _domain_of(r.get("header.from"))
        if judged and judged != domain:
            return Verdict(
                "fail",
                f"dmarc={r.result} for header.from={judged}, not the From's {domain or '?'} ({source})",
            )
    for r in dmarc:
        if r.result == "fail":
            return Verdict("fail", f"dmarc=fail header.from={domain} ({source})")
    if any(r.result == "pass" for r in dmarc):
        return Verdict("pass", f"dmarc=pass header.from={domain} ({source})")
    dkim, spf = _topmost(headers, "dkim"), _topmost(headers, "spf")
    for r in dkim:
        signer = _domain_of(r.get("header.d") or r.get("header.i"))
        if r.result == "pass" and _aligned(signer, domain):
            return Verdict("pass", f"dkim=pass header.d={signer}, aligned with {domain} ({source})")
    for r in spf:
        sender = _domain_of(r.get("smtp.mailfrom") or r.get("smtp.mail"))
        if r.result == "pass" and _aligned(sender, domain):
            return Verdict(
                "pass", f"spf=pass smtp.mailfrom={sender}, aligned with {domain} ({source})"
            )
    if (
        any(r.result == "fail" for r in spf)
        and any(r.result == "fail" for r in dkim)
        and not any(r.result == "pass" for r in dkim)
    ):
        return Verdict("fail", f"spf=fail and dkim=fail, no DMARC result ({source})")
    said = (
        ", ".join(f"{r.method}={r.result}" for r in (*dmarc, *dkim, *spf))
        or "no DMARC, DKIM or SPF result"
    )
    return Verdict("none", f"{said}: not authenticated, not failed ({source})")


def _topmost(headers: tuple[AuthResults, ...], method: str) -> tuple[Result, ...]:
    """The `method` results of the topmost trusted header that reports that method."""
    for header in headers:
        found = tuple(r for r in header.results if r.method == method)
        if found:
            return found
    return ()


def _aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment, by suffix: the same domain, or one a subdomain of the other."""
    if not domain or not from_domain:
        return False
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2].strip().strip("<>.").lower()


def _segments(text: str) -> list[str]:
    """`text` split at the semicolons between results, comments removed, quotes kept whole.

    Without quotes or escapes (nearly every real header), comments are removed innermost
    first, each outermost one leaving one space as `_segments_tokens` does; with them,
    `_segments_tokens` reads the text token by token.
    """
    if '"' in text or "\\" in text:
        return _segments_tokens(text)
    if "(" in text or ")" in text:
        removed = 1
        while removed:
            text, removed = _INNERMOST_COMMENT.subn(" ", text)
        unclosed = text.find("(")  # a comment never closed runs to the end
        if unclosed >= 0:
            text = text[:unclosed]
        text = text.replace(")", " ")
    return text.split(";")


def _segments_tokens(text: str) -> list[str]:
    """`_segments`, token by token: quoted strings and quoted-pairs taken into account.

    RFC 5322: a comment is parentheses (nested, with quoted-pairs), and a quote inside
    a comment is only a character; a semicolon in a comment or a quoted string splits nothing.
    A comment never closed runs to the end.
    """
    segments: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    for match in _TOKEN.finditer(text):
        token = match.group()
        if quoted:
            current.append(token)
            quoted = token != '"'
        elif depth:
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if not depth:
                    current.append(" ")
        elif token == "(":
            depth = 1
        elif token == ";":
            segments.append("".join(current))
            current = []
        elif token == ")":
            current.append(" ")
        else:
            current.append(token)
            quoted = token == '"'
    segments.append("".join(current))
    return segments


def _word(text: str) -> str:
    """The first word of `text`: a quoted string whole, else up to white space."""
    if text.startswith('"'):
        return _QUOTED.match(text).group()  # type: ignore[union-attr]  # it always matches a quote
    return text.split(None, 1)[0] if text else ""


def _result(segment: str) -> Result | None:
    """One resinfo; the plain shape in one match, anything else by `_result_general`."""
    plain = _PLAIN_RESULT.fullmatch(segment)
    if plain is None:
        return _result_general(segment)
    method, result, rest = plain.groups()
    properties = tuple(
        (name.lower(), value) for name, _, value in map(_split_at_equals, rest.split())
    )
    return Result(method.lower(), result.lower(), properties)


def _split_at_equals(token: str) -> tuple[str, str, str]:
    return token.partition("=")


def _result_general(segment: str) -> Result | None:
    found = _METHOD.match(segment)
    if found is None:
        return None  # "none", a stray property, or text that is no result
    method, result = found.group(1).lower(), found.group(2).lower()
    properties: list[tuple[str, str]] = []
    at = found.end()
    while at < len(segment):
        prop = _PROPERTY.match(segment, at)
        if prop is None or prop.end() == at:
            at = _SKIP.match(segment, at).end()  # type: ignore[union-attr]  # at < len: it matches
            continue
        name = prop.group(1).lower() + (f".{prop.group(2).lower()}" if prop.group(2) else "")
        properties.append((name, _unquote(prop.group(3))))
        at = prop.end()
    return Result(method, result, tuple(properties))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value
