"""Errors shared by every layer of the package."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that cannot work, with what to change (the message names the key)."""
