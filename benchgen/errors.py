"""Errors that the CLI turns into one clear line and a non-zero exit."""

from __future__ import annotations


class BenchgenError(ValueError):
    """A user-facing error: bad config, bad input file, bad dataset directory."""


class ConfigError(BenchgenError):
    """A config option has an impossible value; the message names the option."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(f"option '{option.replace('_', '-')}': {message}")


class DatasetError(BenchgenError):
    """A dataset directory is missing, incomplete or corrupt."""
