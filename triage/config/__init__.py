"""The configuration: a TOML file read into frozen values; every error names the file, the
key and the fix.

    values       Config and Queue, the shipped defaults (zero configuration works)
    loading      load_config: the file's sections and keys, checked
    endpoints    the mailboxes, the SMTP relay and the daemon's settings
    credentials  where a password or token comes from (never the file)
    fields       typed readers shared by the above
    preflight    what `triage check` verifies on this machine: files, modes, secrets
"""

from __future__ import annotations

from triage.config.loading import known_keys, load_config
from triage.config.values import Config, Queue, shipped_rules
from triage.errors import ConfigError

__all__ = ["Config", "ConfigError", "Queue", "known_keys", "load_config", "shipped_rules"]
