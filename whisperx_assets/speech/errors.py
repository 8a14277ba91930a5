"""Errors raised by the speech engine.

`MediaError` is the one exception for bad input: callers (the Dagster layer, the CLI) treat it as
permanent and never retry it. Everything else is an ordinary, possibly transient, failure.
"""

from __future__ import annotations

from pathlib import Path


class MediaError(ValueError):
    """The input cannot be processed: empty, not media, truncated, no audio, unsupported, too large."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelUnavailableError(RuntimeError):
    """A configured model cannot be loaded (offline, gated, unknown); the message says what to do."""
