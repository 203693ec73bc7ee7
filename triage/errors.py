"""Errors shared by the configuration readers."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A configuration that cannot be used: names the file, the key and the fix."""

    def __init__(self, path: Path | str, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{path}: [{key}] {problem}\n  fix: {fix}")
