"""Contact directory and matcher: who wrote this message, and how sure are we?

Pure: the directory is built once from values (`Directory.build`) and `match` reads
only that index. Steps, first hit wins:

  exact   the address is a contact's address (case-insensitive)         verified
  plus    the address without its +tag is (jane+billing@ -> jane@)       verified
  alias   the address (or it without its +tag) is a contact's alias      verified
  domain  the address's domain belongs to a known company; the person    unverified
          is unknown, the company's most common plan and time zone apply
  fuzzy   the display name is close to exactly one contact's name        unverified
          (a suggestion for a person to confirm: no company, plan, zone, VIP)
  none    nothing matched                                                unverified

Free-mail domains (gmail.com, gmx.de, ...) never map to a company: many unrelated
people share them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr

from rapidfuzz import fuzz, process, utils

from triage.core.values import by_position

# Shared mailbox providers. Brands are matched with any short country suffix too
# (gmx.at, yahoo.co.uk, hotmail.fr), see is_free_mail.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "icloud.com", "me.com",
        "mac.com", "gmx.de", "gmx.net", "gmx.com", "web.de", "proton.me", "protonmail.com",
        "protonmail.ch", "pm.me", "mail.com", "zoho.com", "yandex.ru", "yandex.com",
        "mail.ru", "tutanota.com", "tuta.io", "fastmail.com", "hey.com", "qq.com",
        "163.com", "126.com", "t-online.de", "freenet.de", "orange.fr", "free.fr",
        "laposte.net", "libero.it", "comcast.net", "att.net", "verizon.net", "btinternet.com",
    }
)  # fmt: skip
FREE_MAIL_BRANDS = frozenset(
    {"gmail", "googlemail", "gmx", "yahoo", "hotmail", "outlook", "live", "ymail", "aol",
     "icloud", "proton", "protonmail", "yandex", "zoho", "mail"}
)  # fmt: skip
KINDS = ("exact", "plus", "alias", "domain", "fuzzy", "none")
DEFAULT_FUZZY_THRESHOLD = 92.0


def is_free_mail(domain: str) -> bool:
    """True for shared mailbox providers, whose domain says nothing about a company."""
    domain = domain.lower().strip(".")
    if domain in FREE_MAIL_DOMAINS:
        return True
    brand, _, suffix = domain.partition(".")
    labels = suffix.split(".") if suffix else []
    return brand in FREE_MAIL_BRANDS and 1 <= len(labels) <= 2 and all(len(x) <= 3 for x in labels)


def normalize_address(address: str) -> str:
    """Lowercase bare address from 'Jane <Jane@X>', '<jane@x>' or 'mailto:jane@x'."""
    address = (address or "").strip()
    if "<" in address:
        address = parseaddr(address)[1] or address
    address = address.strip().strip("<>").strip()
    if address.lower().startswith("mailto:"):
        address = address[7:]
    return address.lower()


@by_position
@dataclass(frozen=True, slots=True)
class Contact:
    """A known person. Addresses are stored lowercase; build with Contact.create."""

    email: str
    name: str = ""
    company: str | None = None
    site: str | None = None
    plan: str | None = None
    timezone: str | None = None
    vip: bool = False
    aliases: tuple[str, ...] = ()
    approved: bool = True  # unapproved contacts are recognised but not served (SOW)

    @classmethod
    def create(
        cls,
        email: str,
        name: str = "",
        company: str | None = None,
        site: str | None = None,
        plan: str | None = None,
        timezone: str | None = None,
        vip: bool = False,
        aliases: Iterable[str] = (),
        approved: bool = True,
    ) -> Contact:
        """Normalise: lowercase addresses, blank strings to None, no alias equal to email."""
        email = normalize_address(email)
        own = tuple(dict.fromkeys(a for a in map(normalize_address, aliases) if a and a != email))
        return cls(
            email,
            (name or "").strip(),
            _blank(company),
            _blank(site),
            _blank(plan),
            _blank(timezone),
            bool(vip),
            own,
            bool(approved),
        )

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


@by_position
@dataclass(frozen=True, slots=True)
class Match:
    """The outcome of matching one sender, with a one-line reason for `triage explain`."""

    kind: str  # exact | plus | alias | domain | fuzzy | none
    contact: Contact | None
    company: str | None
    plan: str | None
    timezone: str | None
    vip: bool
    verified: bool
    score: float | None
    why: str

    @classmethod
    def none(cls, why: str = "no contact matched") -> Match:
        return cls("none", None, None, None, None, False, False, None, why)

    @classmethod
    def of_contact(cls, kind: str, contact: Contact, why: str) -> Match:
        """A verified match on a known address (exact, plus or alias)."""
        return cls(
            kind,
            contact,
            contact.company,
            contact.plan,
            contact.timezone,
            contact.vip,
            True,
            None,
            why,
        )

    def unverified(self, reason: str) -> Match:
        """Downgrade (e.g. DMARC failed): who it claims to be stays visible, no privileges."""
        return replace(self, verified=False, vip=False, plan=None, why=f"{self.why}; {reason}")

    downgraded = unverified  # the name pipeline.py uses


@dataclass(frozen=True, slots=True)
class CompanyInfo:
    """What a company domain tells about an unknown sender from it."""

    company: str
    plan: str | None
    timezone: str | None


@dataclass(frozen=True, slots=True, eq=False)
class Directory:
    """Index over contacts, built once; `match` is a few dict lookups or one fuzzy search."""

    by_email: Mapping[str, Contact]
    by_alias: Mapping[str, Contact]
    by_domain: Mapping[str, CompanyInfo]
    fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD
    # Fuzzy index: unique processed names (tokens sorted, so plain ratio equals
    # token_sort_ratio), the contacts per name, and blocks: 3-letter token prefix ->
    # name ids. A name within the threshold almost always keeps one token prefix intact.
    _names: tuple[str, ...] = field(default=(), repr=False)
    _holders: tuple[tuple[Contact, ...], ...] = field(default=(), repr=False)
    _blocks: Mapping[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls, contacts: Iterable[Contact], fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD
    ) -> Directory:
        """Index contacts. A repeated address keeps its first contact; so does an alias."""
        if not 0 < fuzzy_threshold <= 100:
            raise ValueError(f"fuzzy_threshold must be in (0, 100], got {fuzzy_threshold}")
        by_email: dict[str, Contact] = {}
        by_alias: dict[str, Contact] = {}
        domain_companies: defaultdict[str, Counter[str]] = defaultdict(Counter)
        plans: defaultdict[str, Counter[str]] = defaultdict(Counter)
        zones: defaultdict[str, Counter[str]] = defaultdict(Counter)
        name_ids: dict[str, int] = {}
        holders: list[list[Contact]] = []
        for c in contacts:
            if c.email in by_email:
                continue
            by_email[c.email] = c
            for alias in c.aliases:
                by_alias.setdefault(alias, c)
            if c.company:
                if not is_free_mail(c.domain):
                    domain_companies[c.domain][c.company] += 1
                if c.plan:
                    plans[c.company][c.plan] += 1
                if c.timezone:
                    zones[c.company][c.timezone] += 1
            key = _name_key(c.name)
            if key:
                if key not in name_ids:
                    name_ids[key] = len(holders)
                    holders.append([])
                holders[name_ids[key]].append(c)
        by_domain = {}
        for domain, counts in domain_companies.items():
            ranked = counts.most_common(2)
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                continue  # two companies equally likely: better no guess than a wrong one
            company = ranked[0][0]
            by_domain[domain] = CompanyInfo(
                company, _most_common(plans[company]), _most_common(zones[company])
            )
        blocks: defaultdict[str, list[int]] = defaultdict(list)
        for key, i in name_ids.items():
            for prefix in _prefixes(key):
                blocks[prefix].append(i)
        return cls(
            by_email,
            {a: c for a, c in by_alias.items() if a not in by_email},
            by_domain,
            float(fuzzy_threshold),
            tuple(name_ids),
            tuple(tuple(h) for h in holders),
            {k: tuple(v) for k, v in blocks.items()},
        )

    def __len__(self) -> int:
        return len(self.by_email)

    def match(self, address: str, display_name: str = "") -> Match:
        """Match a sender: exact, plus, alias, domain, fuzzy, none; the first hit wins."""
        address = normalize_address(address)
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            local, domain = "", ""
        if contact := self.by_email.get(address):
            return Match.of_contact("exact", contact, f"address {address} is a known contact")
        base = address
        if "+" in local and (stem := local.split("+", 1)[0]):
            base = f"{stem}@{domain}"
            if contact := self.by_email.get(base):
                return Match.of_contact("plus", contact, f"{address} is {base} with a +tag")
        for candidate in dict.fromkeys((address, base)):
            if contact := self.by_alias.get(candidate):
                why = f"{candidate} is an alias of {contact.email}"
                if candidate != address:
                    why += f" (+tag of {address} removed)"
                return Match.of_contact("alias", contact, why)
        if info := self._company_of(domain):
            why = f"domain {domain} belongs to {info.company}; sender not in the directory"
            return Match(
                "domain", None, info.company, info.plan, info.timezone, False, False, None, why
            )
        return self._fuzzy(display_name)

    def _company_of(self, domain: str) -> CompanyInfo | None:
        """The company of a domain or of its parent (eu.acme.example -> acme.example)."""
        labels = domain.split(".")
        for i in range(len(labels) - 1):
            if info := self.by_domain.get(".".join(labels[i:])):
                return info
        return None

    def _fuzzy(self, display_name: str) -> Match:
        key = _name_key(display_name)
        if not key:
            return Match.none("unknown sender, no usable display name")
        ids: set[int] = set()
        for prefix in _prefixes(key):
            ids.update(self._blocks.get(prefix, ()))
        order = tuple(ids)
        best = process.extract(
            key,
            [self._names[i] for i in order],
            scorer=fuzz.ratio,
            processor=None,
            score_cutoff=self.fuzzy_threshold,
            limit=2,
        )
        if not best:
            return Match.none(f"unknown sender; no contact named like {display_name!r}")
        score = best[0][1]
        holders = [
            c for _, s, position in best if s == score for c in self._holders[order[position]]
        ]
        if len(holders) > 1:  # "Paul Werner" between "Paul D. Werner" and "Paul E. Werner"
            return Match.none(
                f"display name {display_name!r} fits {len(holders)} contacts equally; no guess"
            )
        contact = holders[0]
        why = (
            f"display name {display_name!r} ~ {contact.name!r} (score {score:.0f}); a suggestion"
            " to confirm, with no company, plan, time zone or VIP"
        )
        # Anyone can write any name: the contact is shown, nothing of theirs is granted.
        return Match("fuzzy", contact, None, None, None, False, False, score, why)


def _name_key(name: str) -> str:
    """Comparable form of a person's name: lowercase words in sorted order; '' if unusable
    (empty, fewer than three letters, or an address used as the name)."""
    if not name or "@" in name:
        return ""
    tokens = sorted(utils.default_process(name).split())
    key = " ".join(tokens)
    return key if sum(ch.isalpha() for ch in key) >= 3 else ""


def _prefixes(key: str) -> set[str]:
    return {token[:3] for token in key.split() if len(token) >= 2}


def _most_common(counts: Counter[str]) -> str | None:
    return counts.most_common(1)[0][0] if counts else None


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None
