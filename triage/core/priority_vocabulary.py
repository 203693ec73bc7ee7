"""The priority vocabulary (rules/priority.toml): loaded, checked and compiled once.

Words per level, declared labels ("Sev 2") and negations are data, so an operator
can add a language without code. Loading checks every key and says which file,
key and fix; compiling turns the words into the regular expressions
`triage.core.priority.scan` reads text with:
  * Whole words only, case-insensitive; separators are tolerated ("Sev-1", "sev 1").
    Words written in Han, kana or Hangul get their own expression, matched wherever
    they stand: those languages put no spaces around words ("サーバーが停止しました").
  * Negation phrases sit in the same expression as the words, so a phrase that starts
    earlier swallows the word it negates ("not urgent"). Cues come before the word
    ("nicht dringend", "pas urgent", "不紧急") or, in Japanese and Korean, after it
    ("至急ではありません", "急ぎません", "긴급하지 않습니다").
  * Shared prefixes are tested once (the words form a trie), longer phrases first.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from triage.errors import TriageError

LEVELS = (1, 2, 3, 4)

# Unicode's hyphens and dashes (U+2010-U+2015) are read as "-": `scan` replaces them in
# the text. Written into each separator class instead, that range cost the regex compiler
# ~75 µs an occurrence, and the vocabulary holds hundreds (40 ms of every start).
DASHES = "".join(map(chr, range(0x2010, 0x2016)))
_SEP_WORDS = r"[\s\-_/]+"  # "production-down", "how  to"
_SEP_NUMBER = r"[\s\-_:#.]{0,3}"  # "Sev 1", "Severity: 1", "Priority #1"
_SEP_SHORT = r"-?"  # "S-1", never "s 1" (too common in prose)
_SEP_CUE = r"[\s\-]+"  # "not urgent", "non-urgent"
_TOKEN = re.compile(r"\d+|[^\W\d_]+(?:['’][^\W\d_]+)*")
# Scripts written without spaces between words: Han, kana, Hangul.
_CJK_START = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# A match starts on the character before the word, which proves the left word boundary
# and lets the regex engine skip ahead with a bitmap test: exact ASCII non-word characters
# for ASCII text (the usual case, ~3x faster), any non-word character otherwise. (`scan`
# puts a space before the text, the boundary before a first word.)
_BEFORE_ASCII = r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
_BEFORE_ANY = r"[^\w]"
_LEVEL_KEYS = {"name", "declared", "words"}
_NEGATION_KEYS = {"phrases", "cues", "fillers", "after"}


class PriorityError(TriageError, ValueError):
    """The vocabulary file is unusable; the message names the file, the key and the fix."""

    def __init__(self, source: str, key: str, problem: str, fix: str):
        super().__init__(f"{source}: [{key}] {problem}; fix: {fix}")


@dataclass(frozen=True, slots=True)
class _Entry:
    level: int  # 0 marks a negation phrase
    declared: bool


class LazyPattern:
    """A regex compiled when first searched with, in the process that searches (a parsing
    worker), not at every start: the vocabulary's regex for non-ASCII text and the one for
    the words inside a negation take ~10 ms each to compile, and many runs need neither."""

    __slots__ = ("pattern", "_compiled")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern[str] | None = None

    def finditer(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[re.Match]:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self.pattern)
        return compiled.finditer(text, pos, endpos)


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Words per level and negations, compiled once; build with from_toml/default."""

    declared: tuple[tuple[int, tuple[str, ...]], ...]
    words: tuple[tuple[int, tuple[str, ...]], ...]
    negation_phrases: tuple[str, ...]
    negation_cues: tuple[str, ...]
    negation_fillers: tuple[str, ...]
    negation_after: tuple[str, ...] = ()
    source: str = "<memory>"
    # Compiled by `_compiled`, read by `triage.core.priority.scan`. Each phrase ends in an
    # empty named group; `entries` maps the group's name to the phrase's level.
    spaced_ascii: re.Pattern[str] | None = field(repr=False, compare=False, default=None)
    spaced_any: LazyPattern | None = field(repr=False, compare=False, default=None)
    entries: Mapping[str, _Entry] = field(repr=False, compare=False, default_factory=dict)
    spaced_words: LazyPattern | None = field(repr=False, compare=False, default=None)
    cue_before: re.Pattern[str] | None = field(repr=False, compare=False, default=None)
    unspaced: re.Pattern[str] | None = field(repr=False, compare=False, default=None)
    unspaced_words: re.Pattern[str] | None = field(repr=False, compare=False, default=None)
    unspaced_cue_before: re.Pattern[str] | None = field(repr=False, compare=False, default=None)
    unspaced_cue_after: re.Pattern[str] | None = field(repr=False, compare=False, default=None)

    @classmethod
    def from_toml(cls, path: str | Path) -> Vocabulary:
        """Load and validate a vocabulary file; raise PriorityError naming key and fix."""
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise PriorityError(
                source, "file", f"cannot be read ({e.strerror})", "check the path"
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise PriorityError(
                source, "file", f"is not valid TOML ({e})", "correct the syntax"
            ) from None
        return cls.from_mapping(data, source)

    @classmethod
    @cache
    def default(cls) -> Vocabulary:
        """The shipped rules/priority.toml (inside the wheel, or at the repository top)."""
        from triage.config import shipped_rules

        return cls.from_toml(shipped_rules() / "priority.toml")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], source: str = "<memory>") -> Vocabulary:
        """Validate parsed TOML and compile it."""
        for key in data:
            if key not in ("levels", "negations"):
                raise PriorityError(
                    source, key, "is not a known section", "use [levels.N] or [negations]"
                )
        levels = data.get("levels")
        if not isinstance(levels, Mapping) or not levels:
            raise PriorityError(source, "levels", "is missing", '[levels.1] words = ["urgent"]')
        declared: dict[int, tuple[str, ...]] = {}
        words: dict[int, tuple[str, ...]] = {}
        seen: dict[str, tuple[str, str]] = {}
        for key, table in levels.items():
            where = f"levels.{key}"
            if key not in {str(n) for n in LEVELS}:
                raise PriorityError(
                    source, where, "is not a level", "use levels 1 (most urgent) to 4 (low)"
                )
            if not isinstance(table, Mapping):
                raise PriorityError(
                    source, where, "must be a table", f'[levels.{key}] words = ["urgent"]'
                )
            for unknown in set(table) - _LEVEL_KEYS:
                raise PriorityError(
                    source, where, f"has unknown key {unknown!r}", "use name, declared or words"
                )
            if not isinstance(table.get("name", ""), str):
                raise PriorityError(source, where, "'name' must be a string", 'name = "Urgent"')
            for kind, target in (("declared", declared), ("words", words)):
                phrases = _strings(table.get(kind, []), source, where, kind)
                for phrase in phrases:
                    first = seen.setdefault(_fragment(phrase), (where, kind))
                    if first[0] != where:
                        raise PriorityError(
                            source,
                            where,
                            f"{kind!r} repeats {phrase!r}, already in [{first[0]}] {first[1]!r}",
                            "keep each word in one level",
                        )
                target[int(key)] = phrases
        if not seen:
            raise PriorityError(source, "levels", "holds no words", '[levels.1] words = ["urgent"]')
        negations = data.get("negations", {})
        if not isinstance(negations, Mapping):
            raise PriorityError(source, "negations", "must be a table", 'phrases = ["not urgent"]')
        for unknown in set(negations) - _NEGATION_KEYS:
            raise PriorityError(
                source,
                "negations",
                f"has unknown key {unknown!r}",
                "use phrases, cues, fillers or after",
            )
        return cls._compiled(
            declared=tuple(sorted(declared.items())),
            words=tuple(sorted(words.items())),
            negation_phrases=_strings(negations.get("phrases", []), source, "negations", "phrases"),
            negation_cues=_strings(negations.get("cues", []), source, "negations", "cues"),
            negation_fillers=_strings(negations.get("fillers", []), source, "negations", "fillers"),
            negation_after=_strings(negations.get("after", []), source, "negations", "after"),
            source=source,
        )

    @classmethod
    def _compiled(cls, **values: object) -> Vocabulary:
        blank = cls(**values)  # type: ignore[arg-type]
        entries: dict[str, _Entry] = {}
        # Words in Han, kana or Hangul go to their own regex, matched without word
        # boundaries: those scripts put no spaces between words.
        trie: dict[str, dict] = {}
        words_only: dict[str, dict] = {}
        cjk: dict[str, dict] = {}
        cjk_words: dict[str, dict] = {}
        for table, declared in ((blank.declared, True), (blank.words, False)):
            for level, phrases in table:
                for phrase in phrases:
                    pair = (cjk, cjk_words) if _is_cjk(phrase) else (trie, words_only)
                    for target in pair:
                        _insert(target, _atoms(phrase), _Entry(level, declared), entries)
        for phrase in blank.negation_phrases:
            # In the same regex, so a negation phrase starting earlier swallows the word
            # it negates ("not urgent"); the word is then found again inside it.
            target = cjk if _is_cjk(phrase) else trie
            if not _insert(target, _atoms(phrase), _Entry(0, False), entries):
                raise PriorityError(
                    blank.source,
                    "negations",
                    f"'phrases' holds {phrase!r}, which is also a level word",
                    "keep it in one place",
                )
        cue_tail = cjk_cue_tail = after = None
        spaced = [c for c in blank.negation_cues if not _is_cjk(c)]
        unspaced = [c for c in blank.negation_cues if _is_cjk(c)]
        if spaced:
            fillers = "|".join(_fragment(f) for f in blank.negation_fillers if not _is_cjk(f))
            filler = rf"(?:(?:{fillers}){_SEP_CUE}){{0,2}}" if fillers else ""
            cue_alts = "|".join(_fragment(c) for c in spaced)
            cue_tail = re.compile(rf"(?<!\w)(?:{cue_alts}){_SEP_CUE}{filler}\Z")
        if unspaced:  # "不紧急", "不是很紧急": the cue and a filler sit right before the word
            fillers = "|".join(_fragment(f) for f in blank.negation_fillers if _is_cjk(f))
            filler = rf"(?:{fillers})?" if fillers else ""
            cue_alts = "|".join(_fragment(c) for c in unspaced)
            cjk_cue_tail = re.compile(rf"(?:{cue_alts})\s*{filler}\s*\Z")
        if blank.negation_after:  # "至急ではありません": the cue follows the word
            alts = "|".join(
                re.escape(a.lower()).replace(r"\ ", r"\s*") for a in blank.negation_after
            )
            after = re.compile(rf"\s*(?:{alts})")
        return cls(
            **values,  # type: ignore[arg-type]
            spaced_ascii=re.compile(_BEFORE_ASCII + _emit(trie)),
            spaced_any=LazyPattern(_BEFORE_ANY + _emit(trie)),
            spaced_words=LazyPattern(_BEFORE_ANY + _emit(words_only)),
            entries=entries,
            cue_before=cue_tail,
            unspaced=re.compile(_emit(cjk, bounded=False)) if cjk else None,
            unspaced_words=re.compile(_emit(cjk_words, bounded=False)) if cjk_words else None,
            unspaced_cue_before=cjk_cue_tail,
            unspaced_cue_after=after,
        )


def _strings(value: object, source: str, where: str, key: str) -> tuple[str, ...]:
    example = {"declared": '["P1"]', "words": '["urgent"]'}.get(key, '["not urgent"]')
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PriorityError(
            source, where, f"{key!r} must be a list of strings", f"{key} = {example}"
        )
    for v in value:
        if not _TOKEN.search(v):
            raise PriorityError(
                source, where, f"{key!r} holds {v!r} with no letters or digits", "remove it"
            )
    return tuple(value)


def _atoms(phrase: str) -> list[str]:
    """A phrase as regex atoms: one per character, plus separators between its tokens."""
    atoms: list[str] = []
    previous = ""
    for token in _TOKEN.findall(phrase.lower()):
        if previous:
            if previous[-1].isdigit() or not token[0].isdigit():
                atoms.append(_SEP_WORDS)
            else:
                atoms.append(_SEP_SHORT if len(previous) == 1 else _SEP_NUMBER)
        atoms.extend("['’]" if ch in "'’" else re.escape(ch) for ch in token)
        previous = token
    return atoms


def _fragment(phrase: str) -> str:
    return "".join(_atoms(phrase))


def _insert(trie: dict, atoms: list[str], entry: _Entry, entries: dict[str, _Entry]) -> bool:
    """Add a phrase; False when an equivalent one ("Sev1" ~ "Sev 1") is already there."""
    node = trie
    for atom in atoms:
        node = node.setdefault(atom, {})
    if "" in node:
        return entries[node[""]].level == entry.level
    node[""] = name = f"k{len(entries)}"
    entries[name] = entry
    return True


def _is_cjk(phrase: str) -> bool:
    """Written in a script without spaces between words (it starts with Han, kana, Hangul)."""
    return bool(_CJK_START.match(phrase.strip()))


def _emit(node: dict, bounded: bool = True) -> str:
    """The trie as one regex: shared prefixes are tested once, longer phrases first."""
    alternatives = [atom + _emit(child, bounded) for atom, child in sorted(node.items()) if atom]
    if "" in node:  # an empty named group marks which phrase ended here
        boundary = r"(?!\w)" if bounded else ""
        alternatives.append(rf"{boundary}(?P<{node['']}>)")
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"
