"""`triage explain`: the decision one message would get now, with its trace, nothing written.

Steps 1-3 of the engine for one message: analysed here, decided against the
facts of `store` (`--db`: the conversations and the history it holds). For
explain its key is not looked up: it tells why a message gets its decision,
also one already stored (replay and the daemon would call that a duplicate).
"""

from __future__ import annotations

from datetime import datetime

from triage.core.analysis import Analysis, analyse
from triage.core.decide import decide
from triage.core.decision import Decision
from triage.core.facts import needs
from triage.core.rules import Rules
from triage.store.facts import read as read_facts
from triage.store.sqlite import Store


def explain(raw: bytes, source: str, rules: Rules, store: Store, now: datetime) -> Decision:
    """The decision for `raw` at `now` against what `store` holds (an empty store: none)."""
    return decide_against(analyse(raw, source, rules), rules, store, now, duplicates=False)


def decide_against(
    analysis: Analysis, rules: Rules, store: Store, now: datetime, duplicates: bool = True
) -> Decision:
    """`analysis` decided against the facts `store` holds at `now`; nothing is written.

    `duplicates` False: a stored key does not make it a duplicate.
    """
    wanted = needs([analysis], rules.config.ticket_prefix, keys=duplicates)
    return decide(analysis, read_facts(store, wanted, now), rules, now)
