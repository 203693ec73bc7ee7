"""SLA policies, calendars and holidays: pure; deadlines from values.

policies (the values a policy file becomes), loader and calendar_loader (the
files, checked), calendars (open time as a timeline), holidays (closed dates),
notation (how files write durations, hours and zones), deadlines (due,
progress) and explanation (the walk `triage explain` prints).
"""

from triage.core.sla.calendars import SlaError
from triage.core.sla.deadlines import Deadline, due, progress
from triage.core.sla.loader import load_policies
from triage.core.sla.notation import parse_duration
from triage.core.sla.policies import Plan, Policies, Policy, Target

__all__ = [
    "Deadline", "Plan", "Policies", "Policy", "SlaError", "Target",
    "due", "load_policies", "parse_duration", "progress",
]  # fmt: skip
