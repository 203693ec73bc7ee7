"""SLA policies, calendars and holidays: pure; deadlines from values."""

from triage.core.sla.policies import *  # noqa: F403
from triage.core.sla.policies import __all__  # noqa: F401
