"""sqlite-utils, imported without numpy and pandas.

sqlite-utils imports numpy and pandas whenever they are installed, only to map their
scalar types to column types; triage never stores either. matplotlib (the report's
charts) brings numpy, whose import cost about 80 ms at the start of every command and
of the daemon. The two are hidden for the duration of this one import only: whatever
imports numpy afterwards (the report) gets it as usual.
"""

from __future__ import annotations

import sys
from types import ModuleType

_HIDDEN = ("numpy", "pandas")


def _load() -> ModuleType:
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import numpy" raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return sqlite_utils


sqlite_utils = _load()
