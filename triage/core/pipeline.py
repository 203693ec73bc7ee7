"""The pure core composed: bytes -> Analysis -> Decision -> Rendered, with every reason kept.

One name to import the steps by; each lives in the module named for its concern:

1. `analyse` (core.analysis): bytes and rules only (parse, filter, contact, priority), so it
   runs in the parsing workers, on every core.
2. `decide` (core.decide): one analysis against the `Facts` of its batch (threading, the
   unknown-sender policy, SLA, the acknowledgement guard).
3. `render` (core.outgoing): the acknowledgement a decision sends, with ids from the caller.

The engine (triage.engine) reads the facts, runs these and writes the result.
"""

from __future__ import annotations

from triage.core.analysis import Analysis, analyse
from triage.core.conversation import TicketRef
from triage.core.decide import decide
from triage.core.decision import Action, Decision
from triage.core.facts import Facts, Needs, needs
from triage.core.outgoing import Rendered, render
from triage.core.rules import Rules, evidence_file

__all__ = [
    "Action",
    "Analysis",
    "Decision",
    "Facts",
    "Needs",
    "Rendered",
    "Rules",
    "TicketRef",
    "analyse",
    "decide",
    "evidence_file",
    "needs",
    "render",
]
